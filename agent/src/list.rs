//! `edgesense-agent --list-sensors`: every sensor found on the node, read once, printed as
//! `[[sensor]]` tables ready to paste into a config.

use std::{
    fmt::Write as _,
    path::Path,
    sync::{mpsc, Arc},
    thread,
    time::Duration,
};

use edgesense_sensors::{
    bus::sysfs::{Sysfs, SysfsBus},
    detect::{Device, Found},
    Readings, SensorError,
};

use crate::{hardware, spec::SensorSpec};

/// How long one read may take here (a DS18B20 conversion is 750 ms, a DHT22 retries).
const READ_LIMIT: Duration = Duration::from_secs(3);

/// Reads each of `found` once, one after another, each within [`READ_LIMIT`].
pub fn read_each(sysfs_root: &Path, found: &[Found]) -> Vec<Result<Readings, SensorError>> {
    let sysfs: Arc<dyn SysfsBus> = Arc::new(Sysfs::new(sysfs_root));
    let mut bulk = Default::default();
    found
        .iter()
        .map(|f| {
            let spec = SensorSpec {
                name: f.name.clone(),
                kind: f.kind,
                interval: Duration::ZERO,
                device: Some(f.device.clone()),
            };
            let mut sensor = hardware::open_sensor(&spec, &sysfs, &mut bulk);
            let (tx, rx) = mpsc::channel();
            // A wedged bus must not hang the listing: the read runs on its own thread.
            thread::spawn(move || {
                let _ = tx.send(sensor.read());
            });
            rx.recv_timeout(READ_LIMIT)
                .unwrap_or(Err(SensorError::Timeout(READ_LIMIT)))
        })
        .collect()
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The TOML block for `found` (with each read's result as a comment).
pub fn render(
    sysfs_root: &Path,
    found: &[Found],
    reads: &[Result<Readings, SensorError>],
) -> String {
    let mut out = String::new();
    if found.is_empty() {
        let _ = writeln!(
            out,
            "# No supported sensor found under {}.\n# Check the overlays in /boot/firmware/config.txt (dtoverlay=w1-gpio, dtparam=i2c_arm=on,\n# dtoverlay=i2c-sensor,bme280, dtoverlay=dht11,gpiopin=N) and reboot; in a container, mount /sys.",
            sysfs_root.display()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "# {} sensor{} found under {}; paste into the agent config and rename as you like.",
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        sysfs_root.display()
    );
    for (f, read) in found.iter().zip(reads) {
        out.push('\n');
        let now = match read {
            Ok(r) => r
                .iter()
                .map(|v| match v.quantity {
                    edgesense_sensors::Quantity::Temperature => format!("{:.2} °C", v.value),
                    edgesense_sensors::Quantity::Humidity => {
                        format!("{:.1} %RH", v.value * 100.0)
                    }
                    edgesense_sensors::Quantity::Pressure => {
                        format!("{:.1} hPa", v.value / 100.0)
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("read failed: {e}"),
        };
        let note = if f.note.is_empty() {
            String::new()
        } else {
            format!("{}; ", f.note)
        };
        let _ = writeln!(out, "# {note}now: {now}");
        let _ = writeln!(out, "[[sensor]]");
        let _ = writeln!(out, "name = {}", toml_str(&f.name));
        let _ = writeln!(out, "kind = \"{}\"", f.kind);
        match &f.device {
            Device::W1 { id } => {
                let _ = writeln!(out, "id = {}", toml_str(id));
            }
            Device::Thermal { zone } => {
                let _ = writeln!(out, "zone = {zone}");
            }
            Device::Hwmon(h) => {
                if let Some(chip) = &h.chip {
                    let _ = writeln!(out, "chip = {}", toml_str(chip));
                }
                if let Some(device) = &h.device {
                    let _ = writeln!(out, "device = {}", toml_str(device));
                }
                let _ = writeln!(out, "input = {}", toml_str(&h.input));
            }
            Device::Iio { device } => {
                if let Some(d) = device {
                    let _ = writeln!(out, "device = {}", toml_str(d));
                }
            }
            Device::I2c { bus, address } => {
                let _ = writeln!(
                    out,
                    "bus = \"i2c\"\ni2c_bus = {bus}\naddress = {address:#04x}"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, spec};
    use edgesense_sensors::{hwmon::Selector, Quantity, SensorKind};
    use std::time::SystemTime;

    #[test]
    fn rendered_block_is_a_config_that_names_the_same_devices() {
        let found = vec![
            Found {
                kind: SensorKind::Ds18b20,
                device: Device::W1 {
                    id: "28-0316a2795bff".into(),
                },
                name: "ds18b20-0316a2795bff".into(),
                note: String::new(),
            },
            Found {
                kind: SensorKind::Hwmon,
                device: Device::Hwmon(Selector {
                    chip: Some("drive\"temp".into()),
                    device: Some("0:0:0:0".into()),
                    input: "temp2".into(),
                }),
                name: "drivetemp-temp2".into(),
                note: "SSD".into(),
            },
            Found {
                kind: SensorKind::Bmp280,
                device: Device::I2c {
                    bus: 1,
                    address: 0x77,
                },
                name: "bmp280-77".into(),
                note: String::new(),
            },
            Found {
                kind: SensorKind::Dht22,
                device: Device::Iio {
                    device: Some("iio:device2".into()),
                },
                name: "dht22-2".into(),
                note: String::new(),
            },
        ];
        let reads = vec![
            Ok(Readings::new(SystemTime::now()).with(Quantity::Temperature, 21.5)),
            Err(SensorError::NotPresent { what: "x".into() }),
            Ok(Readings::new(SystemTime::now()).with(Quantity::Pressure, 101_325.0)),
            Ok(Readings::new(SystemTime::now()).with(Quantity::Humidity, 0.613)),
        ];
        let text = render(Path::new("/"), &found, &reads);
        assert!(text.contains("now: 21.50 °C"), "{text}");
        assert!(text.contains("# SSD; now: read failed"), "{text}");
        assert!(text.contains("1013.2 hPa"), "{text}");
        assert!(text.contains("61.3 %RH"), "{text}");
        let loaded = config::parse(Path::new("listed.toml"), text).unwrap();
        let n = spec::resolve(&loaded, &spec::Overrides::default()).unwrap();
        let devices: Vec<_> = n
            .sensors
            .iter()
            .map(|s| s.device.clone().unwrap())
            .collect();
        let expected: Vec<_> = found.iter().map(|f| f.device.clone()).collect();
        assert_eq!(devices, expected);
        let names: Vec<_> = n.sensors.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[0], "ds18b20-0316a2795bff");
    }

    /// node_exporter's hwmon fixture: two `coretemp` chips, a chip without `name`, three wifi
    /// chips on one device. Every input gets its own table, and the tables select what was read.
    #[test]
    fn every_hwmon_input_gets_a_table_that_selects_it() {
        let tree = crate::devices::node_exporter::tree();
        let found = crate::devices::detect(tree.path());
        let reads = read_each(tree.path(), &found);
        assert!(reads.iter().all(|r| r.is_ok()), "{reads:?}");
        let text = render(tree.path(), &found, &reads);
        let blocks: Vec<&str> = text.split("[[sensor]]\n").skip(1).collect();
        assert_eq!(blocks.len(), crate::devices::node_exporter::TEMPERATURES);
        let keys: std::collections::HashSet<String> = blocks
            .iter()
            .map(|b| {
                b.lines()
                    .filter(|l| !l.starts_with("name") && !l.starts_with('#'))
                    .collect()
            })
            .collect();
        assert_eq!(keys.len(), blocks.len(), "{text}");
        assert!(
            text.contains("chip = \"coretemp\"\ndevice = \"coretemp.1\"\ninput = \"temp1\"\n"),
            "{text}"
        );
        assert!(
            text.contains("chip = \"hwmon4\"\ninput = \"temp2\"\n"),
            "{text}"
        );
        let loaded = config::parse(Path::new("listed.toml"), text).unwrap();
        let flags = spec::Overrides {
            sysfs_root: Some(tree.path().to_owned()),
            ..spec::Overrides::default()
        };
        let n = spec::resolve(&loaded, &flags).unwrap();
        let devices: Vec<_> = n
            .sensors
            .iter()
            .map(|s| s.device.clone().unwrap())
            .collect();
        let expected: Vec<_> = found.iter().map(|f| f.device.clone()).collect();
        assert_eq!(devices, expected);
        let sysfs: Arc<dyn SysfsBus> = Arc::new(Sysfs::new(tree.path()));
        let paths: std::collections::HashSet<String> = n
            .sensors
            .iter()
            .map(|s| match &s.device {
                Some(Device::Hwmon(h)) => edgesense_sensors::hwmon::find(&*sysfs, h).unwrap().path,
                other => panic!("not hwmon: {other:?}"),
            })
            .collect();
        assert_eq!(
            paths.len(),
            n.sensors.len(),
            "each table reads its own input"
        );
        let mut bulk = Default::default();
        for (s, listed) in n.sensors.iter().zip(&reads) {
            let now = hardware::open_sensor(s, &sysfs, &mut bulk).read().unwrap();
            let listed = listed.as_ref().unwrap();
            assert_eq!(
                now.get(Quantity::Temperature),
                listed.get(Quantity::Temperature),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn nothing_found_says_what_to_check() {
        let text = render(Path::new("/tmp/x"), &[], &[]);
        assert!(text.contains("dtoverlay=w1-gpio"), "{text}");
        let loaded = config::parse(Path::new("empty.toml"), text).unwrap();
        assert!(loaded.config.sensors.is_empty());
    }
}
