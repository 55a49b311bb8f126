//! Finding every supported sensor on a node: what `sensors = "auto"` in the agent config and
//! `edgesense-agent --list-sensors` use.
//!
//! Everything under the sysfs root is found by listing the kernel's directories (reading only
//! `name` / `type` attributes, never starting a conversion). A BME280/BMP280 without a kernel
//! driver is found by reading its chip-id register at 0x76 and 0x77 ([`probe_i2c`]), a read the
//! chip answers in any mode.
//!
//! Duplicates are left out: on a Pi the SoC's thermal zone also shows up as hwmon chip
//! `cpu_thermal`, and since Linux 5.10 w1_therm registers each DS18B20 as hwmon chip
//! `w1_slave_temp`; those are listed once, under their own kind.

use crate::{
    bme280,
    bus::{i2c::I2cBus, sysfs::SysfsBus},
    dht22, ds18b20, hwmon, iio, thermal, SensorKind,
};

/// Where a sensor is, in the terms of its kernel interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// A 1-Wire thermometer by its serial directory (`28-0316a2795bff`).
    W1 { id: String },
    /// `thermal_zone<zone>`.
    Thermal { zone: u32 },
    /// A hwmon input by chip name (`name`), the chip's device when two chips share the name,
    /// and input (`temp1`): hwmon numbers change between boots, names and devices do not.
    Hwmon(hwmon::Selector),
    /// An IIO device by directory (`iio:device0`), or `None` for the first one whose `name`
    /// matches the kind's driver (IIO numbers follow probe order, so `None` is the robust choice
    /// when there is only one).
    Iio { device: Option<String> },
    /// A chip on `/dev/i2c-<bus>` at a 7-bit address.
    I2c { bus: u8, address: u16 },
}

/// One sensor found on the node.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub kind: SensorKind,
    pub device: Device,
    /// A name to suggest in the config (letters, digits, `-`, `_`, `.`; unique in one result).
    pub name: String,
    /// What tells a human which one it is (zone type, hwmon label), possibly empty.
    pub note: String,
}

/// hwmon chips that duplicate a sensor found through its own interface.
fn duplicate_hwmon(chip: &str, zone_types: &[String]) -> bool {
    chip == "w1_slave_temp" || zone_types.iter().any(|t| t.replace('-', "_") == chip)
}

/// Keeps `s` to the characters a sensor name may have.
fn clean(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let c = c.trim_matches('-');
    let c = if c.len() > 48 { &c[..48] } else { c };
    if c.is_empty() {
        "sensor".into()
    } else {
        c.to_owned()
    }
}

/// `<chip>-<input>`; with a device, `<chip>-<device>-<input>`, or `<device>-<input>` when the
/// device already says the chip (`coretemp.1-temp2`).
fn hwmon_name(s: &hwmon::Selector) -> String {
    match (&s.chip, &s.device) {
        (Some(c), Some(d)) if !d.starts_with(c.as_str()) => format!("{c}-{d}-{}", s.input),
        (_, Some(d)) => format!("{d}-{}", s.input),
        (Some(c), None) => format!("{c}-{}", s.input),
        (None, None) => s.input.clone(),
    }
}

/// Every sensor under `sysfs`, in a stable order: 1-Wire, thermal zones, hwmon, IIO.
pub fn discover(sysfs: &dyn SysfsBus) -> Vec<Found> {
    let mut out = Vec::new();
    for id in ds18b20::discover(sysfs) {
        let serial = id.split_once('-').map_or(id.as_str(), |(_, s)| s);
        out.push(Found {
            kind: SensorKind::Ds18b20,
            name: clean(&format!("ds18b20-{serial}")),
            note: String::new(),
            device: Device::W1 { id },
        });
    }
    let zones = thermal::discover(sysfs);
    for (zone, ty) in &zones {
        out.push(Found {
            kind: SensorKind::Thermal,
            name: clean(if ty.is_empty() { "thermal" } else { ty }),
            note: format!("thermal_zone{zone}"),
            device: Device::Thermal { zone: *zone },
        });
    }
    let zone_types: Vec<String> = zones.into_iter().map(|(_, t)| t).collect();
    for h in hwmon::discover(sysfs) {
        if h.selector
            .chip
            .as_deref()
            .is_some_and(|c| duplicate_hwmon(c, &zone_types))
        {
            continue;
        }
        out.push(Found {
            kind: SensorKind::Hwmon,
            name: clean(&hwmon_name(&h.selector)),
            note: h.label.clone().unwrap_or_default(),
            device: Device::Hwmon(h.selector),
        });
    }
    let iio_kinds = [
        (bme280::IIO_NAMES, None),
        (dht22::IIO_NAMES, Some(SensorKind::Dht22)),
    ];
    for (names, fixed_kind) in iio_kinds {
        let found = iio::discover(sysfs, names);
        let only_one_per_name = |n: &str| found.iter().filter(|(_, m)| m == n).count() == 1;
        for (dir, driver_name) in &found {
            let kind = fixed_kind
                .or_else(|| SensorKind::parse(driver_name))
                .unwrap_or(SensorKind::Bme280);
            let device = if only_one_per_name(driver_name) {
                None
            } else {
                Some(dir.clone())
            };
            let num = dir.trim_start_matches("iio:device");
            out.push(Found {
                kind,
                name: clean(&format!("{kind}-{num}")),
                note: format!("{dir} ({driver_name})"),
                device: Device::Iio { device },
            });
        }
    }
    unique_names(&mut out);
    out
}

/// BME280/BMP280 chips answering on `bus` (opened as `/dev/i2c-<bus_number>`) at 0x76 or 0x77.
pub fn probe_i2c(bus: &mut dyn I2cBus, bus_number: u8) -> Vec<Found> {
    let mut out = Vec::new();
    for address in bme280::ADDRESSES {
        let mut id = [0u8];
        if bus
            .write_read(address, &[bme280::REG_CHIP_ID], &mut id)
            .is_err()
        {
            continue;
        }
        let kind = match id[0] {
            bme280::CHIP_ID_BME280 => SensorKind::Bme280,
            bme280::CHIP_ID_BMP280 => SensorKind::Bmp280,
            _ => continue,
        };
        out.push(Found {
            kind,
            name: format!("{kind}-{address:x}"),
            note: format!(
                "/dev/i2c-{bus_number} at {address:#04x}, chip id {:#04x}",
                id[0]
            ),
            device: Device::I2c {
                bus: bus_number,
                address,
            },
        });
    }
    out
}

/// Appends `-2`, `-3`, … to names that repeat.
pub fn unique_names(found: &mut [Found]) {
    let mut seen = std::collections::HashSet::new();
    for f in found.iter_mut() {
        let base = f.name.clone();
        let mut n = 1;
        while !seen.insert(f.name.clone()) {
            n += 1;
            f.name = format!("{base}-{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{i2c::FakeBme280, sysfs::FakeSysfs};

    /// What a Pi 4 with two DS18B20s, a BME280 on the kernel driver and a DHT22 shows.
    fn pi_tree() -> FakeSysfs {
        let f = FakeSysfs::new();
        for id in ["28-0316a2795bff", "28-0000075f8e2a"] {
            f.set(&format!("sys/bus/w1/devices/{id}/w1_slave"), "");
        }
        f.set("sys/bus/w1/devices/w1_bus_master1/therm_bulk_read", "0\n");
        f.set("sys/class/thermal/thermal_zone0/temp", "48312\n");
        f.set("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
        f.set("sys/class/hwmon/hwmon0/name", "cpu_thermal\n");
        f.set("sys/class/hwmon/hwmon0/temp1_input", "48312\n");
        f.set("sys/class/hwmon/hwmon1/name", "w1_slave_temp\n");
        f.set("sys/class/hwmon/hwmon1/temp1_input", "21000\n");
        f.set("sys/class/hwmon/hwmon2/name", "drivetemp\n");
        f.set("sys/class/hwmon/hwmon2/temp1_input", "35000\n");
        f.set("sys/class/hwmon/hwmon2/temp1_label", "SSD\n");
        f.set("sys/bus/iio/devices/iio:device0/name", "bme280\n");
        f.set("sys/bus/iio/devices/iio:device1/name", "dht11\n");
        f.set("sys/bus/iio/devices/iio:device2/name", "mcp3008\n");
        f
    }

    #[test]
    fn finds_each_sensor_once_with_a_usable_name() {
        let found = discover(&pi_tree());
        let got: Vec<(SensorKind, &str, &Device)> = found
            .iter()
            .map(|f| (f.kind, f.name.as_str(), &f.device))
            .collect();
        assert_eq!(
            got,
            [
                (
                    SensorKind::Ds18b20,
                    "ds18b20-0000075f8e2a",
                    &Device::W1 {
                        id: "28-0000075f8e2a".into()
                    }
                ),
                (
                    SensorKind::Ds18b20,
                    "ds18b20-0316a2795bff",
                    &Device::W1 {
                        id: "28-0316a2795bff".into()
                    }
                ),
                (
                    SensorKind::Thermal,
                    "cpu-thermal",
                    &Device::Thermal { zone: 0 }
                ),
                (
                    SensorKind::Hwmon,
                    "drivetemp-temp1",
                    &Device::Hwmon(hwmon::Selector {
                        chip: Some("drivetemp".into()),
                        device: None,
                        input: "temp1".into()
                    })
                ),
                (
                    SensorKind::Bme280,
                    "bme280-0",
                    &Device::Iio { device: None }
                ),
                (SensorKind::Dht22, "dht22-1", &Device::Iio { device: None }),
            ]
        );
        assert_eq!(found[3].note, "SSD");
    }

    #[test]
    fn two_iio_devices_of_one_driver_are_named_by_directory() {
        let f = FakeSysfs::new();
        f.set("sys/bus/iio/devices/iio:device0/name", "bmp280\n");
        f.set("sys/bus/iio/devices/iio:device3/name", "bmp280\n");
        let found = discover(&f);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].kind, SensorKind::Bmp280);
        assert_eq!(
            found[1].device,
            Device::Iio {
                device: Some("iio:device3".into())
            }
        );
    }

    #[test]
    fn chips_of_one_name_get_one_entry_each_named_by_device() {
        let tree = hwmon::node_exporter::tree();
        let found = discover(&crate::bus::sysfs::Sysfs::new(tree.path()));
        assert_eq!(found.len(), hwmon::node_exporter::TEMPERATURES);
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "coretemp.0-temp1",
                "coretemp.0-temp2",
                "coretemp.0-temp3",
                "coretemp.0-temp4",
                "coretemp.0-temp5",
                "coretemp.1-temp1",
                "coretemp.1-temp2",
                "coretemp.1-temp3",
                "coretemp.1-temp4",
                "coretemp.1-temp5",
                "hwmon4-temp1",
                "hwmon4-temp2",
                "mt7996_phy0_0-temp1",
                "mt7996_phy0_1-temp1",
                "mt7996_phy0_2-temp1",
            ]
        );
        let devices: std::collections::HashSet<&Device> = found.iter().map(|f| &f.device).collect();
        assert_eq!(devices.len(), found.len());
        assert_eq!(found[5].note, "Physical id 0");

        let f = FakeSysfs::new();
        for (n, addr) in [(3, "0048"), (4, "0049")] {
            f.set(&format!("sys/class/hwmon/hwmon{n}/name"), "lm75\n");
            f.set(&format!("sys/class/hwmon/hwmon{n}/temp1_input"), "21000\n");
            f.set_link(
                &format!("sys/class/hwmon/hwmon{n}/device"),
                &format!("sys/devices/platform/soc/fe804000.i2c/i2c-1/1-{addr}"),
            );
        }
        let names: Vec<String> = discover(&f).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["lm75-1-0048-temp1", "lm75-1-0049-temp1"]);
    }

    #[test]
    fn empty_tree_finds_nothing() {
        assert!(discover(&FakeSysfs::new()).is_empty());
    }

    #[test]
    fn i2c_probe_reads_only_the_chip_id() {
        let chip = FakeBme280::new(0x77, bme280::CHIP_ID_BMP280, &[0; 26], &[0; 7]);
        let mut bus = chip.clone();
        let found = probe_i2c(&mut bus, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, SensorKind::Bmp280);
        assert_eq!(
            found[0].device,
            Device::I2c {
                bus: 1,
                address: 0x77
            }
        );
        assert!(chip.log().iter().all(|t| matches!(
            t,
            crate::bus::i2c::Transfer::Read {
                register: 0xD0,
                len: 1
            }
        )));
    }

    #[test]
    fn names_are_cleaned_and_made_unique() {
        assert_eq!(clean("CPU Thermal:0"), "cpu-thermal-0");
        assert_eq!(clean("::"), "sensor");
        let mk = |name: &str| Found {
            kind: SensorKind::Thermal,
            device: Device::Thermal { zone: 0 },
            name: name.into(),
            note: String::new(),
        };
        let mut v = vec![mk("a"), mk("a"), mk("a")];
        unique_names(&mut v);
        let names: Vec<_> = v.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "a-2", "a-3"]);
    }
}
