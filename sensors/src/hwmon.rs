//! Any hwmon temperature input: `/sys/class/hwmon/hwmon<N>/temp<K>_input` (milli °C), with the
//! chip's `name` and the optional `temp<K>_label` (Documentation/hwmon/sysfs-interface.rst).
//!
//! # Telling chips apart
//! hwmon numbers are assigned at boot in probe order and can change, so a sensor is configured by
//! chip `name` (`cpu_thermal`, `drivetemp`, `lm75`, a DS18B20's `w1_slave_temp`, …) and input
//! (`temp1`), and the number is looked up again whenever the input disappears. Two chips of one
//! driver share a name (two LM75s at 0x48 and 0x49, both sockets' `coretemp`), so a chip also has
//! its device: the last component of where `hwmon<N>/device` points, stable across boots because
//! it is the parent's bus address (`1-0048`: I2C bus 1, address 0x48; `coretemp.1`: platform
//! device 1). One driver may register several chips on one device (a wifi card's
//! `mt7996_phy0_0` … `_2` on `phy0`); their names differ. A chip without a `name` attribute is
//! known by its directory, `hwmon<N>`, as node_exporter does (collector/hwmon_linux.go), and so
//! is one that shares both name and device with another; those may change between boots.
//!
//! Older drivers keep their attributes in the physical device's directory, `hwmon<N>/device/`,
//! rather than the class directory (sysfs-interface.rst); inputs there are read too, as
//! libsensors and node_exporter do. Such a chip has no `name` of its own, so its `device` picks it.
//!
//! # Troubleshooting
//! - "matches more than one device": two chips share the configured `chip`; add the `device` of
//!   the one you mean (the message lists them; `edgesense-agent --list-sensors` prints one table
//!   per chip).
//! - A chip that `sensors` (lm-sensors) shows is missing here: inside a container, mount the host's
//!   `/sys` read-only; an I2C chip without a device tree overlay needs
//!   `echo lm75 0x48 > /sys/bus/i2c/devices/i2c-1/new_device` or `dtoverlay=i2c-sensor,lm75`.

use std::{fmt, sync::Arc, time::SystemTime};

use crate::{
    bus::sysfs::{io_error, parse_int, SysfsBus},
    Quantity, Readings, Sensor, SensorError, SensorKind,
};

/// Where the kernel lists hwmon devices.
pub const HWMON: &str = "sys/class/hwmon";

/// Which temperature input a hwmon sensor reads, in terms that survive a reboot. A chip matches
/// when it has every key given; at least one of `chip` and `device` is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// The chip's `name` attribute, or `hwmon<N>` for a chip without one.
    pub chip: Option<String>,
    /// The chip's device (`1-0048`, `coretemp.1`), or its `hwmon<N>` directory.
    pub device: Option<String>,
    /// `temp1`, `temp2`, …
    pub input: String,
}

impl Selector {
    /// The chip keys as a config writes them: `chip = "coretemp", device = "coretemp.1"`.
    pub fn keys(&self) -> String {
        let chip = self.chip.as_ref().map(|c| format!("chip = {c:?}"));
        let device = self.device.as_ref().map(|d| format!("device = {d:?}"));
        chip.into_iter()
            .chain(device)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hwmon input {} of {}", self.input, self.keys())
    }
}

/// One hwmon chip as the kernel lists it under [`HWMON`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chip {
    /// `hwmon<N>`.
    pub dir: String,
    /// The `name` attribute, if the chip has a non-empty one.
    pub name: Option<String>,
    /// The last component of `hwmon<N>/device`'s real path, if the chip has a parent device.
    pub device: Option<String>,
}

impl Chip {
    /// What [`Selector::chip`] is compared with.
    pub fn key(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.dir)
    }

    fn matches(&self, chip: Option<&str>, device: Option<&str>) -> bool {
        chip.is_none_or(|c| c == self.key())
            && device.is_none_or(|d| d == self.dir || Some(d) == self.device.as_deref())
    }

    /// Where `input`'s attributes are: `hwmon<N>`, or `hwmon<N>/device` for an old driver.
    fn attribute_dir(&self, sysfs: &dyn SysfsBus, input: &str) -> Option<String> {
        let own = format!("{HWMON}/{}", self.dir);
        let parent = format!("{own}/device");
        [own, parent]
            .into_iter()
            .find(|d| sysfs.exists(&format!("{d}/{input}_input")))
    }

    /// `temp<K>` inputs, each with its attribute directory, in the kernel's order (by `K`).
    fn inputs(&self, sysfs: &dyn SysfsBus) -> Vec<(String, String)> {
        let own = format!("{HWMON}/{}", self.dir);
        let mut out: Vec<(String, String)> = Vec::new();
        for dir in [own.clone(), format!("{own}/device")] {
            for f in sysfs.list(&dir).unwrap_or_default() {
                let Some(input) = f.strip_suffix("_input").filter(|i| is_temp_input(i)) else {
                    continue;
                };
                if !out.iter().any(|(i, _)| i == input) {
                    out.push((input.to_owned(), dir.clone()));
                }
            }
        }
        out.sort_by_key(|(i, _)| number(i, "temp"));
        out
    }
}

/// `temp` and a number: the name of a temperature input.
pub fn is_temp_input(input: &str) -> bool {
    input
        .strip_prefix("temp")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The number after `prefix` in `s`, for sorting `hwmon2` before `hwmon10`.
fn number(s: &str, prefix: &str) -> (u64, String) {
    let n = s.strip_prefix(prefix).and_then(|n| n.parse().ok());
    (n.unwrap_or(u64::MAX), s.to_owned())
}

/// Every hwmon chip, by number.
pub fn chips(sysfs: &dyn SysfsBus) -> Vec<Chip> {
    let mut dirs = sysfs.list(HWMON).unwrap_or_default();
    dirs.sort_by_key(|d| number(d, "hwmon"));
    dirs.into_iter()
        .map(|dir| {
            let name = sysfs
                .read(&format!("{HWMON}/{dir}/name"))
                .ok()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty());
            // A plain `device` directory (a hand-made tree) names no device.
            let device = sysfs
                .real_path(&format!("{HWMON}/{dir}/device"))
                .ok()
                .and_then(|p| Some(p.trim_end_matches('/').rsplit('/').next()?.to_owned()))
                .filter(|d| !d.is_empty() && d != "device");
            Chip { dir, name, device }
        })
        .collect()
}

/// The chip keys that select `chip` alone among `chips`: its name, with its device only when
/// another chip has the same name; `hwmon<N>` when nothing stable tells it apart.
pub fn selector_for(chips: &[Chip], chip: &Chip, input: &str) -> Selector {
    let name = chip.name.as_deref();
    let device = chip.device.as_deref();
    let dir = chip.dir.as_str();
    let last = (Some(chip.key()), Some(dir));
    let choices = [
        (name, None),
        (name, device),
        (None, device),
        (name.is_none().then_some(dir), None),
        last,
    ];
    let (c, d) = choices
        .into_iter()
        .filter(|(c, d)| c.is_some() || d.is_some())
        .find(|(c, d)| chips.iter().filter(|o| o.matches(*c, *d)).count() == 1)
        .unwrap_or(last);
    Selector {
        chip: c.map(str::to_owned),
        device: d.map(str::to_owned),
        input: input.to_owned(),
    }
}

/// Why [`find`] found no input to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// No chip with these keys has the input: the driver is not loaded, the device is gone, or the
    /// config names another chip than the node has.
    #[error("{0} not present")]
    NotFound(Selector),
    /// More than one chip fits; `choices` hold the keys that select each, with its `hwmon<N>`.
    #[error("{wanted} matches {} chips: {}", .choices.len(), choice_list(.choices))]
    Ambiguous {
        wanted: Selector,
        choices: Vec<(Selector, String)>,
    },
}

/// `chip = "lm75", device = "1-0048" (hwmon0); chip = "lm75", device = "1-0049" (hwmon1)`.
pub fn choice_list(choices: &[(Selector, String)]) -> String {
    let all: Vec<String> = choices
        .iter()
        .map(|(s, dir)| format!("{} ({dir})", s.keys()))
        .collect();
    all.join("; ")
}

/// One input found by [`find`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Its `temp<K>_input` attribute, relative to the sysfs root.
    pub path: String,
    pub chip: Chip,
}

/// The one input that `wanted` selects.
pub fn find(sysfs: &dyn SysfsBus, wanted: &Selector) -> Result<Located, FindError> {
    let chips = chips(sysfs);
    let mut hits: Vec<Located> = chips
        .iter()
        .filter(|c| c.matches(wanted.chip.as_deref(), wanted.device.as_deref()))
        .filter_map(|c| {
            let dir = c.attribute_dir(sysfs, &wanted.input)?;
            Some(Located {
                path: format!("{dir}/{}_input", wanted.input),
                chip: c.clone(),
            })
        })
        .collect();
    match hits.len() {
        0 => Err(FindError::NotFound(wanted.clone())),
        1 => Ok(hits.remove(0)),
        _ => Err(FindError::Ambiguous {
            wanted: wanted.clone(),
            choices: hits
                .iter()
                .map(|h| {
                    let s = selector_for(&chips, &h.chip, &wanted.input);
                    (s, h.chip.dir.clone())
                })
                .collect(),
        }),
    }
}

/// One temperature input found by [`discover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwmonInput {
    /// Keys that select this input alone on this node.
    pub selector: Selector,
    pub label: Option<String>,
    /// `hwmon<N>` (for people: it can change between boots).
    pub dir: String,
}

/// Every temperature input of every hwmon chip.
pub fn discover(sysfs: &dyn SysfsBus) -> Vec<HwmonInput> {
    let chips = chips(sysfs);
    let mut out = Vec::new();
    for chip in &chips {
        for (input, dir) in chip.inputs(sysfs) {
            let label = sysfs
                .read(&format!("{dir}/{input}_label"))
                .ok()
                .map(|l| l.trim().to_owned());
            out.push(HwmonInput {
                selector: selector_for(&chips, chip, &input),
                label,
                dir: chip.dir.clone(),
            });
        }
    }
    out
}

/// One hwmon temperature input.
pub struct Hwmon {
    name: String,
    selector: Selector,
    sysfs: Arc<dyn SysfsBus>,
    path: Option<String>,
    /// The device of the chip last read, preferred if the selector later matches two.
    last_device: Option<String>,
}

impl Hwmon {
    /// Input `input` of the one chip named `chip`.
    pub fn new(name: &str, chip: &str, input: &str, sysfs: Arc<dyn SysfsBus>) -> Hwmon {
        let selector = Selector {
            chip: Some(chip.to_owned()),
            device: None,
            input: input.to_owned(),
        };
        Hwmon::select(name, selector, sysfs)
    }

    /// The input `selector` names.
    pub fn select(name: &str, selector: Selector, sysfs: Arc<dyn SysfsBus>) -> Hwmon {
        Hwmon {
            name: name.to_owned(),
            selector,
            sysfs,
            path: None,
            last_device: None,
        }
    }

    fn locate(&mut self) -> Result<String, SensorError> {
        let found = match find(&*self.sysfs, &self.selector) {
            Err(FindError::Ambiguous { .. })
                if self.selector.device.is_none() && self.last_device.is_some() =>
            {
                let pinned = Selector {
                    device: self.last_device.clone(),
                    ..self.selector.clone()
                };
                find(&*self.sysfs, &pinned)
            }
            r => r,
        };
        match found {
            Ok(l) => {
                self.last_device = l.chip.device;
                self.path = Some(l.path.clone());
                Ok(l.path)
            }
            Err(FindError::NotFound(s)) => Err(SensorError::NotPresent {
                what: s.to_string(),
            }),
            Err(FindError::Ambiguous { wanted, choices }) => Err(SensorError::Ambiguous {
                what: wanted.to_string(),
                choices: choice_list(&choices),
            }),
        }
    }
}

impl Sensor for Hwmon {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SensorKind {
        SensorKind::Hwmon
    }

    fn read(&mut self) -> Result<Readings, SensorError> {
        let cached = self.path.as_deref().and_then(|p| self.sysfs.read(p).ok());
        let text = match cached {
            Some(t) => t,
            None => {
                let p = self.locate()?;
                self.sysfs.read(&p).map_err(|e| io_error(&p, e))?
            }
        };
        let c = parse_int("hwmon temp input", &text)? as f64 / 1000.0;
        let c = SensorError::check_range(SensorKind::Hwmon, Quantity::Temperature, c)?;
        Ok(Readings::new(SystemTime::now()).with(Quantity::Temperature, c))
    }
}

#[cfg(test)]
#[path = "../testdata/node_exporter/fixture.rs"]
pub(crate) mod node_exporter;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::sysfs::{FakeSysfs, Sysfs};

    fn temp(h: &mut Hwmon) -> Result<f64, SensorError> {
        Ok(h.read()?.get(Quantity::Temperature).unwrap_or(f64::NAN))
    }

    fn sel(chip: Option<&str>, device: Option<&str>, input: &str) -> Selector {
        Selector {
            chip: chip.map(str::to_owned),
            device: device.map(str::to_owned),
            input: input.into(),
        }
    }

    #[test]
    fn finds_by_chip_name_even_when_renumbered() {
        let f = Arc::new(FakeSysfs::new());
        f.set("sys/class/hwmon/hwmon0/name", "rpi_volt\n");
        f.set("sys/class/hwmon/hwmon0/in0_lcrit_alarm", "0\n");
        f.set("sys/class/hwmon/hwmon1/name", "cpu_thermal\n");
        f.set("sys/class/hwmon/hwmon1/temp1_input", "51540\n");
        f.set("sys/class/hwmon/hwmon1/temp1_label", "SoC\n");
        assert_eq!(
            discover(&*f),
            [HwmonInput {
                selector: sel(Some("cpu_thermal"), None, "temp1"),
                label: Some("SoC".into()),
                dir: "hwmon1".into(),
            }]
        );
        let mut h = Hwmon::new("cpu", "cpu_thermal", "temp1", f.clone());
        assert_eq!(temp(&mut h).unwrap(), 51.54);
        f.remove("sys/class/hwmon/hwmon1");
        f.set("sys/class/hwmon/hwmon2/name", "cpu_thermal\n");
        f.set("sys/class/hwmon/hwmon2/temp1_input", "49000\n");
        assert_eq!(temp(&mut h).unwrap(), 49.0);
        f.remove("sys/class/hwmon/hwmon2");
        assert!(h.read().is_err());
    }

    /// Two LM75s on I2C bus 1 at 0x48 and 0x49 (`dtoverlay=i2c-sensor,lm75,addr=0x48` twice).
    fn two_lm75(f: &FakeSysfs, first: u32, second: u32) {
        for (n, addr, milli) in [(first, "0048", "21500\n"), (second, "0049", "30000\n")] {
            let dir = format!("sys/class/hwmon/hwmon{n}");
            f.set(&format!("{dir}/name"), "lm75\n");
            f.set(&format!("{dir}/temp1_input"), milli);
            f.set_link(
                &format!("{dir}/device"),
                &format!("sys/devices/platform/soc/fe804000.i2c/i2c-1/1-{addr}"),
            );
        }
    }

    #[test]
    fn two_chips_of_one_name_are_told_apart_by_device() {
        let f = Arc::new(FakeSysfs::new());
        two_lm75(&f, 0, 1);
        let found: Vec<Selector> = discover(&*f).into_iter().map(|h| h.selector).collect();
        assert_eq!(
            found,
            [
                sel(Some("lm75"), Some("1-0048"), "temp1"),
                sel(Some("lm75"), Some("1-0049"), "temp1")
            ]
        );
        let e = Hwmon::new("t", "lm75", "temp1", f.clone())
            .read()
            .unwrap_err();
        assert_eq!(e.reason(), crate::ErrorReason::NotPresent);
        assert!(
            e.to_string().contains(
                r#"device = "1-0048" (hwmon0); chip = "lm75", device = "1-0049" (hwmon1)"#
            ),
            "{e}"
        );
        assert_eq!(
            temp(&mut Hwmon::select("t", found[1].clone(), f.clone())).unwrap(),
            30.0
        );
        // Probed the other way round on the next boot: the device still picks the same chip.
        f.remove("sys/class/hwmon");
        two_lm75(&f, 1, 0);
        assert_eq!(
            temp(&mut Hwmon::select("t", found[1].clone(), f.clone())).unwrap(),
            30.0
        );
        assert_eq!(
            find(&*f, &found[0]).unwrap().path,
            "sys/class/hwmon/hwmon1/temp1_input"
        );
    }

    #[test]
    fn a_chip_read_by_name_alone_keeps_its_device_when_a_twin_appears() {
        let f = Arc::new(FakeSysfs::new());
        f.set("sys/class/hwmon/hwmon0/name", "lm75\n");
        f.set("sys/class/hwmon/hwmon0/temp1_input", "21500\n");
        f.set_link("sys/class/hwmon/hwmon0/device", "sys/devices/i2c-1/1-0048");
        let mut h = Hwmon::new("t", "lm75", "temp1", f.clone());
        assert_eq!(temp(&mut h).unwrap(), 21.5);
        // A second LM75 is added and the first one probed again (hwmon0 gone, now hwmon2).
        f.remove("sys/class/hwmon");
        two_lm75(&f, 2, 1);
        assert_eq!(temp(&mut h).unwrap(), 21.5);
        let fresh = Hwmon::new("t", "lm75", "temp1", f.clone()).read();
        assert!(
            matches!(fresh, Err(SensorError::Ambiguous { .. })),
            "{fresh:?}"
        );
    }

    #[test]
    fn a_chip_without_name_is_its_directory_and_old_drivers_keep_inputs_on_the_device() {
        let f = FakeSysfs::new();
        f.set("sys/class/hwmon/hwmon4/temp1_input", "55000\n");
        f.set("sys/class/hwmon/hwmon2/device/name", "applesmc\n");
        f.set("sys/class/hwmon/hwmon2/device/temp2_input", "40000\n");
        f.set("sys/class/hwmon/hwmon2/device/temp2_label", "TC0P\n");
        f.set_link(
            "sys/class/hwmon/hwmon2/device",
            "sys/devices/platform/applesmc.768",
        );
        let found = discover(&f);
        let keys: Vec<_> = found
            .iter()
            .map(|h| (&h.selector, h.label.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                (&sel(None, Some("applesmc.768"), "temp2"), Some("TC0P")),
                (&sel(Some("hwmon4"), None, "temp1"), None)
            ]
        );
        assert_eq!(
            find(&f, &found[0].selector).unwrap().path,
            "sys/class/hwmon/hwmon2/device/temp2_input"
        );
    }

    #[test]
    fn reads_every_temperature_node_exporter_reports_from_its_fixture() {
        let tree = node_exporter::tree();
        let sysfs: Arc<dyn SysfsBus> = Arc::new(Sysfs::new(tree.path()));
        let labels = node_exporter::chip_labels(tree.path());
        let found = discover(&*sysfs);
        let mut got = Vec::new();
        for h in &found {
            let path = find(&*sysfs, &h.selector).unwrap().path;
            let chip = labels[&node_exporter::hwmon_dir(&path)].clone();
            let mut sensor = Hwmon::select("t", h.selector.clone(), sysfs.clone());
            got.push((chip, h.selector.input.clone(), temp(&mut sensor).unwrap()));
        }
        got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let expected = node_exporter::expected_temps();
        assert_eq!(expected.len(), node_exporter::TEMPERATURES);
        assert_eq!(got, expected);
        let keys = |dir: &str| {
            let h = found.iter().find(|h| h.dir == dir).unwrap();
            (h.selector.chip.as_deref(), h.selector.device.as_deref())
        };
        assert_eq!(keys("hwmon0"), (Some("coretemp"), Some("coretemp.0")));
        assert_eq!(keys("hwmon1"), (Some("coretemp"), Some("coretemp.1")));
        assert_eq!(keys("hwmon4"), (Some("hwmon4"), None));
        assert_eq!(keys("hwmon8"), (Some("mt7996_phy0_0"), None));
        let wifi = find(&*sysfs, &sel(None, Some("phy0"), "temp1")).unwrap_err();
        assert!(
            matches!(&wifi, FindError::Ambiguous { choices, .. } if choices.len() == 3),
            "{wifi}"
        );
    }
}
