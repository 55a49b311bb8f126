//! Which device each configured sensor is: the per-kind fields of a `[[sensor]]` table checked
//! and resolved to a [`Device`], and the sensors that `sensors = "auto"` adds.

use std::{ops::Range, path::Path, time::Duration};

use edgesense_sensors::{
    bme280,
    bus::{i2c::RppalI2c, sysfs::Sysfs},
    detect::{self, Device, Found},
    SensorKind,
};

use crate::{
    config::{ConfigError, Loaded, SensorConfig},
    spec::SensorSpec,
};

/// The fields a kind takes, for error messages.
fn fields_for(kind: SensorKind) -> &'static str {
    match kind {
        SensorKind::Ds18b20 => "`id`",
        SensorKind::Thermal => "`zone`",
        SensorKind::Hwmon => "`chip` and `input`",
        SensorKind::Bme280 | SensorKind::Bmp280 => {
            "`bus`, and `device` (bus = \"iio\") or `i2c_bus` and `address` (bus = \"i2c\")"
        }
        SensorKind::Dht22 => "`device`",
    }
}

fn applies(kind: SensorKind, field: &str) -> bool {
    matches!(
        (kind, field),
        (SensorKind::Ds18b20, "id")
            | (SensorKind::Thermal, "zone")
            | (SensorKind::Hwmon, "chip" | "input")
            | (
                SensorKind::Bme280 | SensorKind::Bmp280,
                "bus" | "device" | "i2c_bus" | "address"
            )
            | (SensorKind::Dht22, "device")
    )
}

/// The device `s` names. `None` only when `simulate` and the kind needs an identifier the table
/// does not give (the built-in simulated node has no serial numbers).
pub fn device_of(
    loaded: &Loaded,
    s: &SensorConfig,
    simulate: bool,
) -> Result<Option<Device>, ConfigError> {
    let kind = s.kind.get_ref().0;
    let given: [(&str, Option<Range<usize>>); 8] = [
        ("id", s.id.as_ref().map(|v| v.span())),
        ("zone", s.zone.as_ref().map(|v| v.span())),
        ("chip", s.chip.as_ref().map(|v| v.span())),
        ("input", s.input.as_ref().map(|v| v.span())),
        ("bus", s.bus.as_ref().map(|v| v.span())),
        ("device", s.device.as_ref().map(|v| v.span())),
        ("i2c_bus", s.i2c_bus.as_ref().map(|v| v.span())),
        ("address", s.address.as_ref().map(|v| v.span())),
    ];
    for (field, span) in given {
        if let Some(span) = span.filter(|_| !applies(kind, field)) {
            return Err(loaded.error_at(
                span,
                format!(
                    "`{field}` does not apply to a {kind} sensor; it takes {}",
                    fields_for(kind)
                ),
            ));
        }
    }
    let missing = |what: &str| {
        loaded.error_at(
            s.kind.span(),
            format!("a {kind} sensor needs {what}; `edgesense-agent --list-sensors` prints the sensors it finds, ready to paste"),
        )
    };
    let device = match kind {
        SensorKind::Ds18b20 => match &s.id {
            None if simulate => return Ok(None),
            None => {
                return Err(missing(
                    "`id = \"28-…\"`, its directory under /sys/bus/w1/devices",
                ))
            }
            Some(id) => {
                let v = id.get_ref();
                let serial = v.strip_prefix("28-").unwrap_or("");
                if serial.len() != 12 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(loaded.error_at(
                        id.span(),
                        format!("\"{v}\" is not a DS18B20 id: write \"28-\" and 12 hex digits, as in /sys/bus/w1/devices (e.g. \"28-0316a2795bff\")"),
                    ));
                }
                Device::W1 { id: v.clone() }
            }
        },
        SensorKind::Thermal => Device::Thermal {
            zone: s.zone.as_ref().map_or(0, |z| *z.get_ref()),
        },
        SensorKind::Hwmon => {
            let input = s.input.as_ref().map_or("temp1", |i| i.get_ref().as_str());
            let digits = input.strip_prefix("temp").unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                let span = s.input.as_ref().map_or(s.kind.span(), |i| i.span());
                return Err(loaded.error_at(
                    span,
                    format!("input \"{input}\" is not a temperature input: write \"temp1\", \"temp2\", …"),
                ));
            }
            match &s.chip {
                None if simulate => return Ok(None),
                None => {
                    return Err(missing(
                        "`chip = \"…\"`, the `name` of its /sys/class/hwmon/hwmon*/ directory",
                    ))
                }
                Some(chip) => Device::Hwmon {
                    chip: chip.get_ref().clone(),
                    input: input.to_owned(),
                },
            }
        }
        SensorKind::Bme280 | SensorKind::Bmp280 => {
            let bus = s.bus.as_ref().map_or("iio", |b| b.get_ref().as_str());
            match bus {
                "iio" => {
                    if let Some(f) = s
                        .i2c_bus
                        .as_ref()
                        .map(|v| v.span())
                        .or(s.address.as_ref().map(|v| v.span()))
                    {
                        return Err(loaded.error_at(f, "`i2c_bus` and `address` apply with bus = \"i2c\" only; with the kernel driver (bus = \"iio\") the overlay sets the address"));
                    }
                    Device::Iio {
                        device: iio_device(loaded, s)?,
                    }
                }
                "i2c" => {
                    if let Some(d) = &s.device {
                        return Err(
                            loaded.error_at(d.span(), "`device` applies with bus = \"iio\" only")
                        );
                    }
                    let address = s.address.as_ref().map_or(0x76, |a| *a.get_ref());
                    if !bme280::ADDRESSES.contains(&address) {
                        let span = s.address.as_ref().map_or(s.kind.span(), |a| a.span());
                        return Err(loaded.error_at(
                            span,
                            format!("a {kind} answers at 0x76 (SDO to GND) or 0x77 (SDO to VDDIO), not {address:#04x}; write address = 0x76"),
                        ));
                    }
                    Device::I2c {
                        bus: s.i2c_bus.as_ref().map_or(1, |b| *b.get_ref()),
                        address,
                    }
                }
                other => {
                    let span = s.bus.as_ref().map_or(s.kind.span(), |b| b.span());
                    return Err(loaded.error_at(
                        span,
                        format!("unknown bus \"{other}\": use \"iio\" (kernel driver, dtoverlay=i2c-sensor,{kind}) or \"i2c\" (direct, no overlay)"),
                    ));
                }
            }
        }
        SensorKind::Dht22 => Device::Iio {
            device: iio_device(loaded, s)?,
        },
    };
    Ok(Some(device))
}

fn iio_device(loaded: &Loaded, s: &SensorConfig) -> Result<Option<String>, ConfigError> {
    let Some(d) = &s.device else { return Ok(None) };
    let v = d.get_ref();
    let n = v.strip_prefix("iio:device").unwrap_or("");
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(loaded.error_at(
            d.span(),
            format!(
                "\"{v}\" is not an IIO device: write \"iio:device0\", as in /sys/bus/iio/devices"
            ),
        ));
    }
    Ok(Some(v.clone()))
}

/// Every sensor found on the node under `sysfs_root`; on a real root (`/`) also a BME280/BMP280
/// answering on `/dev/i2c-1` that no kernel driver holds.
pub fn detect(sysfs_root: &Path) -> Vec<Found> {
    let mut found = detect::discover(&Sysfs::new(sysfs_root));
    let iio_bme = found
        .iter()
        .any(|f| matches!(f.kind, SensorKind::Bme280 | SensorKind::Bmp280));
    if sysfs_root == Path::new("/") && !iio_bme && Path::new("/dev/i2c-1").exists() {
        if let Ok(mut bus) = RppalI2c::open(1) {
            found.extend(detect::probe_i2c(&mut bus, 1));
        }
    }
    detect::unique_names(&mut found);
    found
}

/// Adds the `found` sensors that no `[[sensor]]` table already names, reading each every
/// `interval`; a found name already taken gets a `-2`, `-3`, … suffix.
pub fn add_detected(sensors: &mut Vec<SensorSpec>, found: Vec<Found>, interval: Duration) {
    for f in found {
        if sensors
            .iter()
            .any(|s| s.device.as_ref() == Some(&f.device) && s.kind == f.kind)
        {
            continue;
        }
        let mut name = f.name.clone();
        let mut n = 1;
        while sensors.iter().any(|s| s.name == name) {
            n += 1;
            name = format!("{}-{n}", f.name);
        }
        sensors.push(SensorSpec {
            name,
            kind: f.kind,
            interval,
            device: Some(f.device),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        config,
        spec::{self, NodeSpec, Overrides},
    };
    use edgesense_sensors::{detect::Device, SensorKind};
    use std::path::{Path, PathBuf};

    fn resolve(text: &str, root: Option<PathBuf>) -> Result<NodeSpec, config::ConfigError> {
        let loaded = config::parse(Path::new("n.toml"), text.into())?;
        spec::resolve(
            &loaded,
            &Overrides {
                sysfs_root: root,
                ..Overrides::default()
            },
        )
    }

    fn err(text: &str) -> config::ConfigError {
        resolve(text, None).unwrap_err()
    }

    #[test]
    fn each_kind_resolves_its_device() {
        let n = resolve(
            r#"
[[sensor]]
name = "room"
kind = "ds18b20"
id = "28-0316a2795bff"
[[sensor]]
name = "soc"
kind = "thermal"
[[sensor]]
name = "ssd"
kind = "hwmon"
chip = "drivetemp"
[[sensor]]
name = "env"
kind = "bme280"
bus = "i2c"
address = 0x77
[[sensor]]
name = "porch"
kind = "dht22"
device = "iio:device1"
"#,
            None,
        )
        .unwrap();
        let devices: Vec<_> = n
            .sensors
            .iter()
            .map(|s| s.device.clone().unwrap())
            .collect();
        assert_eq!(
            devices,
            [
                Device::W1 {
                    id: "28-0316a2795bff".into()
                },
                Device::Thermal { zone: 0 },
                Device::Hwmon {
                    chip: "drivetemp".into(),
                    input: "temp1".into()
                },
                Device::I2c {
                    bus: 1,
                    address: 0x77
                },
                Device::Iio {
                    device: Some("iio:device1".into())
                },
            ]
        );
        assert!(!n.simulate);
    }

    #[test]
    fn field_errors_point_at_the_field_and_say_what_to_write() {
        let e = err("[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n");
        assert_eq!(e.location, Some((3, 8)), "{e}");
        assert!(e.message.contains("--list-sensors"), "{e}");
        let e = err("[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\nid = \"10-0316a2795bff\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(e.message.contains("28-"), "{e}");
        let e = err("[[sensor]]\nname = \"soc\"\nkind = \"thermal\"\nchip = \"x\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(e.message.contains("`zone`"), "{e}");
        let e = err("[[sensor]]\nname = \"e\"\nkind = \"bme280\"\nbus = \"i2c\"\naddress = 0x40\n");
        assert_eq!(e.location.map(|l| l.0), Some(5), "{e}");
        assert!(e.message.contains("0x76"), "{e}");
        let e = err("[[sensor]]\nname = \"e\"\nkind = \"bme280\"\nbus = \"spi\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        let e = err("[[sensor]]\nname = \"e\"\nkind = \"bme280\"\naddress = 0x76\n");
        assert!(
            e.message.contains("bus = \\\"i2c\\\"") || e.message.contains("bus = \"i2c\""),
            "{e}"
        );
        let e = err("[[sensor]]\nname = \"h\"\nkind = \"hwmon\"\nchip = \"c\"\ninput = \"fan1\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(5), "{e}");
        let e = err("[[sensor]]\nname = \"d\"\nkind = \"dht22\"\ndevice = \"iio0\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        let e = err("sensors = \"all\"\n");
        assert_eq!(e.location, Some((1, 11)), "{e}");
    }

    #[test]
    fn simulated_sensors_need_no_ids() {
        let loaded = config::parse(
            Path::new("n.toml"),
            "[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n".into(),
        )
        .unwrap();
        let n = spec::resolve(
            &loaded,
            &Overrides {
                simulate: true,
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(n.sensors[0].device, None);
    }

    #[test]
    fn auto_adds_what_is_found_but_not_configured() {
        let root = tempfile::tempdir().unwrap();
        let mk = |p: &str, content: &str| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        mk("sys/bus/w1/devices/28-0316a2795bff/temperature", "21000\n");
        mk("sys/bus/w1/devices/28-0000075f8e2a/temperature", "22000\n");
        mk("sys/class/thermal/thermal_zone0/temp", "48000\n");
        mk("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
        let n = resolve(
            "sensors = \"auto\"\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\nid = \"28-0316a2795bff\"\n[[sensor]]\nname = \"cpu-thermal\"\nkind = \"hwmon\"\nchip = \"x\"\n",
            Some(root.path().to_owned()),
        )
        .unwrap();
        let got: Vec<_> = n
            .sensors
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("room", SensorKind::Ds18b20),
                ("cpu-thermal", SensorKind::Hwmon),
                ("ds18b20-0000075f8e2a", SensorKind::Ds18b20),
                ("cpu-thermal-2", SensorKind::Thermal),
            ]
        );
        assert_eq!(n.sysfs_root, root.path());
    }
}
