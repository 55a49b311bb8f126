//! Kernel attribute files under a sysfs root: the real tree (`/` on a Pi, or any prepared
//! directory), and an in-memory fake that can also model timing and flaky reads.
//!
//! Paths are relative to the root and use the kernel's layout, e.g.
//! `sys/bus/w1/devices/28-0316a2795bff/temperature`. Pointing the root at a directory other than
//! `/` (config `sysfs_root`) lets the agent read a copied or hand-made tree.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
    thread,
    time::Duration,
};

/// Reads and writes of sysfs attributes.
pub trait SysfsBus: Send + Sync {
    /// The whole content of the attribute at `path`.
    fn read(&self, path: &str) -> io::Result<String>;
    /// Writes `value` to the attribute at `path` (one `write(2)`, as the kernel expects).
    fn write(&self, path: &str, value: &str) -> io::Result<()>;
    /// The entries of directory `dir`, sorted by name.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// True if `path` exists.
    fn exists(&self, path: &str) -> bool;
    /// What `path` is once every symlink in it is followed and `..` resolved (realpath(3)),
    /// relative to the root when it stays inside it. sysfs ties a class device to its parent
    /// this way: `class/hwmon/hwmon0/device` → `../../../1-0048`.
    fn real_path(&self, path: &str) -> io::Result<String>;
}

impl std::fmt::Debug for dyn SysfsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SysfsBus")
    }
}

/// The real sysfs, under `root`.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

impl SysfsBus for Sysfs {
    fn read(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(path))
    }

    fn write(&self, path: &str, value: &str) -> io::Result<()> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(path))?
            .write_all(value.as_bytes())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    fn real_path(&self, path: &str) -> io::Result<String> {
        let real = std::fs::canonicalize(self.path(path))?;
        let root = std::fs::canonicalize(&self.root)?;
        let shown = real.strip_prefix(&root).unwrap_or(&real);
        Ok(shown.to_string_lossy().into_owned())
    }
}

/// What a fake attribute returns when read.
#[derive(Clone, Debug)]
enum FakeAttr {
    /// Always this content.
    Fixed(String),
    /// One result per read, the last one repeating (e.g. EIO, EIO, then a value); errors are
    /// errno values, as the kernel returns them.
    Sequence(VecDeque<Result<String, i32>>),
}

#[derive(Debug, Default)]
struct FakeState {
    attrs: BTreeMap<String, FakeAttr>,
    /// Symlinks, by path, to where they resolve (relative to the root).
    links: BTreeMap<String, String>,
    /// Attributes whose reads take time (a DS18B20 conversion), and how long.
    delays: BTreeMap<String, Duration>,
    writes: Vec<(String, String)>,
    reads: u64,
    /// DS18B20 conversion time, when 1-Wire conversions are modelled.
    w1_conversion: Option<Duration>,
    /// Devices holding a bulk-converted value not yet read.
    w1_converted: std::collections::BTreeSet<String>,
}

const W1_DEVICES: &str = "sys/bus/w1/devices/";

/// The 1-Wire device id of a `w1_slave` / `temperature` attribute path.
fn w1_device(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(W1_DEVICES)?;
    let (id, attr) = rest.split_once('/')?;
    (matches!(attr, "w1_slave" | "temperature") && id.starts_with("28-")).then_some(id)
}

/// An in-memory sysfs tree. Directories exist implicitly where files are.
#[derive(Debug, Default)]
pub struct FakeSysfs {
    state: Mutex<FakeState>,
}

impl FakeSysfs {
    pub fn new() -> FakeSysfs {
        FakeSysfs::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates or replaces the attribute at `path`.
    pub fn set(&self, path: &str, content: impl Into<String>) {
        self.lock()
            .attrs
            .insert(path.to_owned(), FakeAttr::Fixed(content.into()));
    }

    /// Makes `path` a symlink that resolves to `target` (a path relative to the root, as
    /// [`SysfsBus::real_path`] returns it). Only `real_path` follows it: files under `target` are
    /// not visible under `path`, give them their own paths if a test reads them there.
    pub fn set_link(&self, path: &str, target: &str) {
        self.lock()
            .links
            .insert(path.to_owned(), target.trim_end_matches('/').to_owned());
    }

    /// Makes successive reads of `path` return `results` in turn (the last repeats).
    pub fn set_sequence(&self, path: &str, results: Vec<Result<String, i32>>) {
        self.lock()
            .attrs
            .insert(path.to_owned(), FakeAttr::Sequence(results.into()));
    }

    /// Makes every read of `path` take `delay` (the caller's thread sleeps, as in the kernel).
    pub fn set_delay(&self, path: &str, delay: Duration) {
        self.lock().delays.insert(path.to_owned(), delay);
    }

    /// Models the w1_therm driver's timing (Documentation/w1/slaves/w1_therm.rst): reading a
    /// DS18B20's `w1_slave` or `temperature` starts a conversion and blocks for `conversion`
    /// (750 ms at 12-bit), unless a bulk conversion (writing `trigger` to a master's
    /// `therm_bulk_read`, which blocks once for `conversion`) left a value not yet read.
    pub fn model_w1_conversions(&self, conversion: Duration) {
        self.lock().w1_conversion = Some(conversion);
    }

    /// Removes `path` and everything under it (a device unplugged).
    pub fn remove(&self, path: &str) {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut st = self.lock();
        st.attrs.retain(|k, _| k != path && !k.starts_with(&prefix));
        st.links.retain(|k, _| k != path && !k.starts_with(&prefix));
    }

    /// Every write so far, oldest first.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.lock().writes.clone()
    }

    /// How many reads were served.
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }
}

impl SysfsBus for FakeSysfs {
    fn read(&self, path: &str) -> io::Result<String> {
        let (result, delay) = {
            let mut st = self.lock();
            st.reads += 1;
            let mut delay = st.delays.get(path).copied();
            if let (Some(conv), Some(id)) = (st.w1_conversion, w1_device(path)) {
                if !st.w1_converted.remove(id) {
                    delay = Some(conv);
                }
            }
            if path.ends_with("/therm_bulk_read") && st.w1_conversion.is_some() {
                let pending = if st.w1_converted.is_empty() {
                    "0\n"
                } else {
                    "1\n"
                };
                st.attrs
                    .insert(path.to_owned(), FakeAttr::Fixed(pending.into()));
            }
            let result = match st.attrs.get_mut(path) {
                None => Err(io::ErrorKind::NotFound.into()),
                Some(FakeAttr::Fixed(s)) => Ok(s.clone()),
                Some(FakeAttr::Sequence(q)) => {
                    let r = if q.len() > 1 {
                        q.pop_front()
                    } else {
                        q.front().cloned()
                    };
                    r.unwrap_or(Err(errno::ENOENT))
                        .map_err(io::Error::from_raw_os_error)
                }
            };
            (result, delay)
        };
        if let Some(d) = delay.filter(|_| result.is_ok()) {
            thread::sleep(d);
        }
        result
    }

    fn write(&self, path: &str, value: &str) -> io::Result<()> {
        let delay = {
            let mut st = self.lock();
            if !st.attrs.contains_key(path) {
                return Err(io::ErrorKind::NotFound.into());
            }
            st.writes.push((path.to_owned(), value.to_owned()));
            let mut delay = st.delays.get(path).copied();
            if path.ends_with("/therm_bulk_read") && value.trim() == "trigger" {
                if let Some(conv) = st.w1_conversion {
                    let ids: Vec<String> = st
                        .attrs
                        .keys()
                        .filter_map(|k| w1_device(k).map(str::to_owned))
                        .collect();
                    st.w1_converted.extend(ids);
                    delay = Some(conv);
                }
            }
            delay
        };
        if let Some(d) = delay {
            thread::sleep(d);
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let st = self.lock();
        let mut names: Vec<String> = st
            .attrs
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_owned)
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let st = self.lock();
        st.links.contains_key(path)
            || st.attrs.contains_key(path)
            || st.attrs.keys().any(|k| k.starts_with(&prefix))
    }

    fn real_path(&self, path: &str) -> io::Result<String> {
        if let Some(target) = self.lock().links.get(path) {
            return Ok(target.clone());
        }
        if self.exists(path) {
            Ok(path.to_owned())
        } else {
            Err(io::ErrorKind::NotFound.into())
        }
    }
}

/// The errno values sysfs reads fail with (asm-generic/errno-base.h, errno.h).
pub mod errno {
    /// The attribute or its device is gone.
    pub const ENOENT: i32 = 2;
    /// The device did not answer properly: w1_therm's CRC failure, dht11's bad frame.
    pub const EIO: i32 = 5;
    /// The device did not answer in time (dht11: no response to the start pulse).
    pub const ETIMEDOUT: i32 = 110;
}

/// Parses an integer attribute (`temp`, `in_temp_input`, …), trimming the newline.
pub fn parse_int(what: &str, s: &str) -> Result<i64, crate::SensorError> {
    s.trim().parse().map_err(|_| crate::SensorError::Parse {
        what: what.to_owned(),
        detail: format!("expected an integer, got {:?}", s.trim()),
    })
}

/// Parses a decimal attribute (IIO `in_pressure_input` is kPa with a fraction).
pub fn parse_float(what: &str, s: &str) -> Result<f64, crate::SensorError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| crate::SensorError::Parse {
            what: what.to_owned(),
            detail: format!("expected a number, got {:?}", s.trim()),
        })
}

/// Maps an I/O error reading `what` to a sensor error: a missing file means the device is gone.
pub fn io_error(what: &str, e: io::Error) -> crate::SensorError {
    // ENODEV / ENXIO: the device went away while its attribute was open.
    let gone = matches!(e.raw_os_error(), Some(19 | 6));
    match e.kind() {
        _ if gone => crate::SensorError::NotPresent {
            what: what.to_owned(),
        },
        io::ErrorKind::NotFound => crate::SensorError::NotPresent {
            what: what.to_owned(),
        },
        io::ErrorKind::TimedOut => crate::SensorError::Timeout(Duration::ZERO),
        _ => crate::SensorError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_and_fake_agree_on_a_small_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/thermal/thermal_zone0")).unwrap();
        std::fs::write(
            dir.path().join("sys/class/thermal/thermal_zone0/temp"),
            "48312\n",
        )
        .unwrap();
        let real = Sysfs::new(dir.path());
        let fake = FakeSysfs::new();
        fake.set("sys/class/thermal/thermal_zone0/temp", "48312\n");
        for bus in [&real as &dyn SysfsBus, &fake] {
            assert_eq!(
                bus.read("sys/class/thermal/thermal_zone0/temp").unwrap(),
                "48312\n"
            );
            assert_eq!(bus.list("sys/class/thermal").unwrap(), ["thermal_zone0"]);
            assert!(bus.exists("sys/class/thermal/thermal_zone0"));
            assert!(!bus.exists("sys/class/thermal/thermal_zone1"));
            assert_eq!(
                bus.read("sys/nope").unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
        }
    }

    #[test]
    fn real_path_follows_device_links_like_the_kernel_tree() {
        let dir = tempfile::tempdir().unwrap();
        let hwmon = dir
            .path()
            .join("sys/devices/platform/soc/phy0/hwmon/hwmon8");
        std::fs::create_dir_all(&hwmon).unwrap();
        std::os::unix::fs::symlink("../..", hwmon.join("device")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/hwmon")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/platform/soc/phy0/hwmon/hwmon8",
            dir.path().join("sys/class/hwmon/hwmon8"),
        )
        .unwrap();
        let real = Sysfs::new(dir.path());
        let fake = FakeSysfs::new();
        fake.set_link(
            "sys/class/hwmon/hwmon8/device",
            "sys/devices/platform/soc/phy0",
        );
        for bus in [&real as &dyn SysfsBus, &fake] {
            assert_eq!(
                bus.real_path("sys/class/hwmon/hwmon8/device").unwrap(),
                "sys/devices/platform/soc/phy0"
            );
            assert!(bus.real_path("sys/class/hwmon/hwmon9/device").is_err());
        }
        fake.remove("sys/class/hwmon/hwmon8");
        assert!(!fake.exists("sys/class/hwmon/hwmon8/device"));
    }

    #[test]
    fn sequences_repeat_their_last_result() {
        let fake = FakeSysfs::new();
        fake.set_sequence("a", vec![Err(errno::EIO), Ok("1".into())]);
        assert!(fake.read("a").is_err());
        assert_eq!(fake.read("a").unwrap(), "1");
        assert_eq!(fake.read("a").unwrap(), "1");
        fake.remove("a");
        assert!(!fake.exists("a"));
    }
}
