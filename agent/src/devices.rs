//! Which device each configured sensor is: the per-kind fields of a `[[sensor]]` table checked
//! and resolved to a [`Device`], and the sensors that `sensors = "auto"` adds.

use std::{ops::Range, path::Path, time::Duration};

use edgesense_sensors::{
    bme280,
    bus::{
        i2c::RppalI2c,
        sysfs::{Sysfs, SysfsBus},
    },
    detect::{self, Device, Found},
    hwmon::{self, FindError},
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
        SensorKind::Hwmon => "`chip`, `device` and `input`",
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
            | (SensorKind::Hwmon, "chip" | "device" | "input")
            | (
                SensorKind::Bme280 | SensorKind::Bmp280,
                "bus" | "device" | "i2c_bus" | "address"
            )
            | (SensorKind::Dht22, "device")
    )
}

/// The device `s` names. `None` only when `simulate` and the kind needs an identifier the table
/// does not give (the built-in simulated node has no serial numbers). A hwmon table that fits
/// more than one chip found in `sysfs` is an error naming the chips to choose from.
pub fn device_of(
    loaded: &Loaded,
    s: &SensorConfig,
    simulate: bool,
    sysfs: &dyn SysfsBus,
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
            if !hwmon::is_temp_input(input) {
                let span = s.input.as_ref().map_or(s.kind.span(), |i| i.span());
                return Err(loaded.error_at(
                    span,
                    format!("input \"{input}\" is not a temperature input: write \"temp1\", \"temp2\", …"),
                ));
            }
            if let Some(d) = &s.device {
                let v = d.get_ref();
                if v.is_empty() || v.contains(['/', ' ']) || v == "." || v == ".." {
                    return Err(loaded.error_at(
                        d.span(),
                        format!("\"{v}\" is not a hwmon device: write the last part of where /sys/class/hwmon/hwmon*/device points, e.g. \"1-0048\" or \"coretemp.1\""),
                    ));
                }
            }
            if s.chip.is_none() && s.device.is_none() {
                if simulate {
                    return Ok(None);
                }
                return Err(missing(
                    "`chip = \"…\"`, the `name` of its /sys/class/hwmon/hwmon*/ directory (and `device = \"…\"` when two chips share it)",
                ));
            }
            let selector = hwmon::Selector {
                chip: s.chip.as_ref().map(|c| c.get_ref().clone()),
                device: s.device.as_ref().map(|d| d.get_ref().clone()),
                input: input.to_owned(),
            };
            if !simulate {
                check_unambiguous(loaded, s, &selector, sysfs)?;
            }
            Device::Hwmon(selector)
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

/// An error at the table's `chip` (or `device`) when `selector` fits more than one chip now on
/// the node. Fitting none is fine: the driver may load later, and the sensor reads as down.
fn check_unambiguous(
    loaded: &Loaded,
    s: &SensorConfig,
    selector: &hwmon::Selector,
    sysfs: &dyn SysfsBus,
) -> Result<(), ConfigError> {
    let Err(FindError::Ambiguous { choices, .. }) = hwmon::find(sysfs, selector) else {
        return Ok(());
    };
    let span = s
        .chip
        .as_ref()
        .map(|c| c.span())
        .or_else(|| s.device.as_ref().map(|d| d.span()))
        .unwrap_or_else(|| s.kind.span());
    Err(loaded.error_at(
        span,
        format!(
            "{} (input {}) matches {} hwmon chips: {}; write the keys of the one you mean (`edgesense-agent --list-sensors` prints a table for each)",
            selector.keys(),
            selector.input,
            choices.len(),
            hwmon::choice_list(&choices)
        ),
    ))
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

/// True if `a` and `b` are the same device: equal, or hwmon keys that select the same input
/// in `sysfs` (`chip = "drivetemp"` and `chip = "drivetemp", device = "0:0:0:0"`).
fn same_device(a: &Device, b: &Device, sysfs: &dyn SysfsBus) -> bool {
    match (a, b) {
        (Device::Hwmon(a), Device::Hwmon(b)) if a != b => {
            match (hwmon::find(sysfs, a), hwmon::find(sysfs, b)) {
                (Ok(a), Ok(b)) => a.path == b.path,
                _ => false,
            }
        }
        _ => a == b,
    }
}

/// Adds the `found` sensors that no `[[sensor]]` table already names, reading each every
/// `interval`; a found name already taken gets a `-2`, `-3`, … suffix.
pub fn add_detected(
    sensors: &mut Vec<SensorSpec>,
    found: Vec<Found>,
    interval: Duration,
    sysfs: &dyn SysfsBus,
) {
    let configured = sensors.len();
    for f in found {
        // Configured tables may name a found hwmon input by other keys; found ones are unique.
        let known = sensors.iter().enumerate().any(|(i, s)| {
            s.kind == f.kind
                && s.device.as_ref().is_some_and(|d| {
                    if i < configured {
                        same_device(d, &f.device, sysfs)
                    } else {
                        *d == f.device
                    }
                })
        });
        if known {
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
#[path = "../../sensors/testdata/node_exporter/fixture.rs"]
pub(crate) mod node_exporter;

#[cfg(test)]
mod tests {
    use super::node_exporter;
    use crate::{
        config, hardware,
        spec::{self, NodeSpec, Overrides},
    };
    use edgesense_sensors::{
        bus::sysfs::{Sysfs, SysfsBus},
        detect::Device,
        hwmon::{self, Selector},
        Quantity, SensorKind,
    };
    use std::{
        path::{Path, PathBuf},
        sync::Arc,
    };

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

    /// The `hwmon<N>` a hwmon sensor reads under `sysfs`.
    fn hwmon_dir(device: &Option<Device>, sysfs: &dyn SysfsBus) -> String {
        let Some(Device::Hwmon(selector)) = device else {
            panic!("not hwmon: {device:?}")
        };
        node_exporter::hwmon_dir(&hwmon::find(sysfs, selector).unwrap().path)
    }

    #[test]
    fn each_kind_resolves_its_device() {
        let empty = tempfile::tempdir().unwrap();
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
[[sensor]]
name = "socket1"
kind = "hwmon"
chip = "coretemp"
device = "coretemp.1"
"#,
            Some(empty.path().to_owned()),
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
                Device::Hwmon(Selector {
                    chip: Some("drivetemp".into()),
                    device: None,
                    input: "temp1".into()
                }),
                Device::I2c {
                    bus: 1,
                    address: 0x77
                },
                Device::Iio {
                    device: Some("iio:device1".into())
                },
                Device::Hwmon(Selector {
                    chip: Some("coretemp".into()),
                    device: Some("coretemp.1".into()),
                    input: "temp1".into()
                }),
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
        let e = err("[[sensor]]\nname = \"h\"\nkind = \"hwmon\"\ninput = \"temp2\"\n");
        assert_eq!(e.location, Some((3, 8)), "{e}");
        assert!(e.message.contains("`device"), "{e}");
        let e = err("[[sensor]]\nname = \"h\"\nkind = \"hwmon\"\ndevice = \"../1-0048\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
    }

    /// node_exporter's hwmon fixture read with `sensors = "auto"`: every temperature it reports,
    /// the same values, one sensor per node_exporter series.
    #[test]
    fn sensors_auto_reads_every_temperature_node_exporter_reports() {
        let tree = node_exporter::tree();
        let n = resolve("sensors = \"auto\"\n", Some(tree.path().to_owned())).unwrap();
        assert_eq!(n.sensors.len(), node_exporter::TEMPERATURES);
        let sysfs: Arc<dyn SysfsBus> = Arc::new(Sysfs::new(tree.path()));
        let labels = node_exporter::chip_labels(tree.path());
        let mut bulk = Default::default();
        let mut got = Vec::new();
        for s in &n.sensors {
            assert_eq!(s.kind, SensorKind::Hwmon);
            let chip = labels[&hwmon_dir(&s.device, &*sysfs)].clone();
            let Some(Device::Hwmon(selector)) = &s.device else {
                unreachable!()
            };
            let reading = hardware::open_sensor(s, &sysfs, &mut bulk).read().unwrap();
            let value = reading.get(Quantity::Temperature).unwrap();
            got.push((chip, selector.input.clone(), value));
        }
        got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let expected = node_exporter::expected_temps();
        assert_eq!(expected.len(), 15);
        assert_eq!(got, expected);
    }

    #[test]
    fn a_chip_name_on_two_chips_is_an_error_naming_their_devices() {
        let tree = node_exporter::tree();
        let root = Some(tree.path().to_owned());
        let e = resolve(
            "[[sensor]]\nname = \"cpu\"\nkind = \"hwmon\"\nchip = \"coretemp\"\n",
            root.clone(),
        )
        .unwrap_err();
        assert_eq!(e.location, Some((4, 8)), "{e}");
        assert!(
            e.message.contains(r#"device = "coretemp.0" (hwmon0)"#),
            "{e}"
        );
        assert!(
            e.message.contains(r#"device = "coretemp.1" (hwmon1)"#),
            "{e}"
        );
        // Three wifi chips on one device: their names pick them.
        let e = resolve(
            "[[sensor]]\nname = \"wifi\"\nkind = \"hwmon\"\ndevice = \"phy0\"\n",
            root.clone(),
        )
        .unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(
            e.message.contains(r#"chip = "mt7996_phy0_2" (hwmon10)"#),
            "{e}"
        );
        // With the device, the second socket; a configured sensor is not added again by auto.
        let n = resolve(
            "sensors = \"auto\"\n[[sensor]]\nname = \"socket1-core1\"\nkind = \"hwmon\"\nchip = \"coretemp\"\ndevice = \"coretemp.1\"\ninput = \"temp3\"\n[[sensor]]\nname = \"phy0-2\"\nkind = \"hwmon\"\ndevice = \"hwmon10\"\n",
            root,
        )
        .unwrap();
        assert_eq!(n.sensors.len(), node_exporter::TEMPERATURES);
        let sysfs = Sysfs::new(tree.path());
        assert_eq!(hwmon_dir(&n.sensors[0].device, &sysfs), "hwmon1");
        assert_eq!(hwmon_dir(&n.sensors[1].device, &sysfs), "hwmon10");
        let names: Vec<&str> = n.sensors.iter().map(|s| s.name.as_str()).collect();
        assert!(!names.contains(&"coretemp.1-temp3"), "{names:?}");
        assert!(!names.contains(&"mt7996_phy0_2-temp1"), "{names:?}");
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
