//! node_exporter's hwmon test fixture for our tests (prometheus/node_exporter,
//! collector/fixtures, Apache-2.0; see the headers of `sys-hwmon.ttar` and `hwmon-temps.prom`):
//! its sysfs tree unpacked into a temp dir, the temperatures node_exporter reports from it, and
//! the `chip` label node_exporter gives each `hwmon<N>` (collector/hwmon_linux.go), so that our
//! readings can be matched to its series one to one.
//!
//! Test code only: included with `#[path]` by test modules of edgesense-sensors and
//! edgesense-agent.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

/// The hwmon part of node_exporter's `collector/fixtures/sys.ttar`.
pub const SYS_HWMON_TTAR: &str = include_str!("sys-hwmon.ttar");
/// node_exporter's `node_hwmon_temp_celsius` lines for that tree.
pub const HWMON_TEMPS: &str = include_str!("hwmon-temps.prom");
/// How many hwmon temperatures node_exporter reports from it. (From the whole `sys.ttar` it
/// reports 16: the 16th is `node_thermal_zone_temp` of `thermal_zone0`, not hwmon, left out here
/// with the rest of the tree.)
pub const TEMPERATURES: usize = 15;

fn bad(line: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("ttar line {line}: {what}"),
    )
}

/// Unpacks a ttar archive (the plain-text tar of prometheus/procfs and node_exporter) under
/// `root`. Entries: `Directory: p`; `Path: p` then `Lines: n` and n lines of content (a line
/// ending in an unescaped `EOF` has no newline; `\EOF` is a literal `EOF`) or `SymlinkTo: t`;
/// `Mode:` (not applied: the tree stays readable and removable); `#` comments between entries.
/// `NULLBYTE` escapes are refused, no hwmon file needs them.
pub fn unpack(archive: &str, root: &Path) -> io::Result<()> {
    let mut lines = archive.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut path: Option<PathBuf> = None;
    let target = |path: &Option<PathBuf>, n: usize| {
        path.clone()
            .ok_or_else(|| bad(n, "content before any Path:"))
    };
    while let Some((n, line)) = lines.next() {
        if line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(": ")
            .ok_or_else(|| bad(n, &format!("not a ttar keyword: {line:?}")))?;
        let escapes = value.starts_with('/') || value.split('/').any(|c| c == "..");
        if key != "SymlinkTo" && escapes {
            return Err(bad(n, "path leaves the archive root"));
        }
        match key {
            "Directory" => {
                fs::create_dir_all(root.join(value))?;
                path = Some(root.join(value));
            }
            "Path" => path = Some(root.join(value)),
            "Lines" => {
                let count: usize = value.parse().map_err(|_| bad(n, "Lines: not a number"))?;
                let file = target(&path, n)?;
                let mut content = String::new();
                for _ in 0..count {
                    let (n, l) = lines
                        .next()
                        .ok_or_else(|| bad(n, "archive ends in a file"))?;
                    if l.contains("NULLBYTE") {
                        return Err(bad(n, "NULLBYTE escapes are not supported"));
                    }
                    let unterminated = l.len() > 3 && l.ends_with("EOF") && !l.ends_with("\\EOF");
                    let l = l.strip_suffix("EOF").filter(|_| unterminated).unwrap_or(l);
                    content.push_str(&l.replace("\\EOF", "EOF"));
                    if !unterminated {
                        content.push('\n');
                    }
                }
                if let Some(parent) = file.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(file, content)?;
            }
            "SymlinkTo" => {
                let link = target(&path, n)?;
                if let Some(parent) = link.parent() {
                    fs::create_dir_all(parent)?;
                }
                std::os::unix::fs::symlink(value, link)?;
            }
            "Mode" => {}
            other => return Err(bad(n, &format!("unknown keyword {other:?}"))),
        }
    }
    Ok(())
}

/// node_exporter's hwmon fixture, unpacked into a new temp dir (the sysfs root).
pub fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    unpack(SYS_HWMON_TTAR, dir.path()).expect("sys-hwmon.ttar unpacks");
    dir
}

/// (chip, sensor, °C) of every `node_hwmon_temp_celsius` line node_exporter reports, sorted.
pub fn expected_temps() -> Vec<(String, String, f64)> {
    let mut out: Vec<(String, String, f64)> = HWMON_TEMPS
        .lines()
        .filter_map(|l| l.strip_prefix("node_hwmon_temp_celsius{chip=\""))
        .map(|rest| {
            let (chip, rest) = rest.split_once("\",sensor=\"").expect("chip label");
            let (sensor, value) = rest.split_once("\"} ").expect("sensor label");
            let value = value.trim().parse().expect("a number");
            (chip.to_owned(), sensor.to_owned(), value)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// collector/hwmon_linux.go `cleanMetricName`: lower case, `[^a-z0-9:_]` → `_`, `_` trimmed.
fn clean(s: &str) -> String {
    let c: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    c.trim_matches('_').to_owned()
}

fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// collector/hwmon_linux.go `hwmonName`: `<parent dir>_<device>` of the real path of
/// `hwmon<N>/device`, else the `name` attribute, else the real directory's name.
fn hwmon_name(dir: &Path) -> String {
    if let Ok(dev) = fs::canonicalize(dir.join("device")) {
        let name = clean(&base_name(&dev));
        let ty = clean(&dev.parent().map(base_name).unwrap_or_default());
        if !ty.is_empty() && !name.is_empty() {
            return format!("{ty}_{name}");
        }
        if !name.is_empty() {
            return name;
        }
    }
    if let Ok(n) = fs::read_to_string(dir.join("name")) {
        let n = clean(&n);
        if !n.is_empty() {
            return n;
        }
    }
    fs::canonicalize(dir).map_or_else(|_| base_name(dir), |d| clean(&base_name(&d)))
}

/// node_exporter's `chip` label of each `hwmon<N>` under `root` (its `Update`: names that
/// collide get `_<name>`, or `_hwmon<N>` when the names collide too).
pub fn chip_labels(root: &Path) -> BTreeMap<String, String> {
    let class = root.join("sys/class/hwmon");
    let mut entries = Vec::new();
    for e in fs::read_dir(&class).expect("sys/class/hwmon") {
        let dir = e.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let name = fs::read_to_string(dir.join("name")).unwrap_or_default();
        entries.push((base_name(&dir), hwmon_name(&dir), name.trim().to_owned()));
    }
    let count =
        |f: &dyn Fn(&(String, String, String)) -> bool| entries.iter().filter(|e| f(e)).count();
    let mut out = BTreeMap::new();
    for e in &entries {
        let (dir, base, name) = e;
        let mut label = base.clone();
        if count(&|o| o.1 == *base) > 1 {
            let mut suffix = clean(name);
            if suffix.is_empty() || count(&|o| o.1 == *base && o.2 == *name) > 1 {
                suffix = clean(dir);
            }
            label = format!("{base}_{suffix}");
        }
        out.insert(dir.clone(), label);
    }
    out
}

/// The `hwmon<N>` of an attribute path under `sys/class/hwmon/`.
pub fn hwmon_dir(path: &str) -> String {
    path.strip_prefix("sys/class/hwmon/")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_owned()
}
