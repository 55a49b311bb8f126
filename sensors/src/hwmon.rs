//! Any hwmon temperature input: `/sys/class/hwmon/hwmon<N>/temp<K>_input` (milli °C), with the
//! chip's `name` and the optional `temp<K>_label` (Documentation/hwmon/sysfs-interface.rst).
//!
//! hwmon numbers are assigned at boot in probe order and can change, so a sensor is configured by
//! chip name (`cpu_thermal`, `rpi_volt`, `drivetemp`, a DS18B20's `w1_slave_temp`, …) and input
//! (`temp1`), and the number is looked up again whenever the input disappears.

use std::{sync::Arc, time::SystemTime};

use crate::{
    bus::sysfs::{io_error, parse_int, SysfsBus},
    Quantity, Readings, Sensor, SensorError, SensorKind,
};

/// Where the kernel lists hwmon devices.
pub const HWMON: &str = "sys/class/hwmon";

/// One temperature input found by [`discover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwmonInput {
    pub chip: String,
    /// `temp1`, `temp2`, …
    pub input: String,
    pub label: Option<String>,
}

/// Every temperature input of every hwmon chip.
pub fn discover(sysfs: &dyn SysfsBus) -> Vec<HwmonInput> {
    let mut out = Vec::new();
    for dev in sysfs.list(HWMON).unwrap_or_default() {
        let Ok(chip) = sysfs.read(&format!("{HWMON}/{dev}/name")) else {
            continue;
        };
        for f in sysfs.list(&format!("{HWMON}/{dev}")).unwrap_or_default() {
            if let Some(input) = f.strip_suffix("_input").filter(|i| i.starts_with("temp")) {
                let label = sysfs
                    .read(&format!("{HWMON}/{dev}/{input}_label"))
                    .ok()
                    .map(|l| l.trim().to_owned());
                out.push(HwmonInput {
                    chip: chip.trim().to_owned(),
                    input: input.to_owned(),
                    label,
                });
            }
        }
    }
    out
}

/// The `hwmon<N>` directory of chip `chip` that has `input`.
fn locate(sysfs: &dyn SysfsBus, chip: &str, input: &str) -> Option<String> {
    sysfs.list(HWMON).ok()?.into_iter().find(|dev| {
        sysfs
            .read(&format!("{HWMON}/{dev}/name"))
            .is_ok_and(|n| n.trim() == chip)
            && sysfs.exists(&format!("{HWMON}/{dev}/{input}_input"))
    })
}

/// One hwmon temperature input.
pub struct Hwmon {
    name: String,
    chip: String,
    input: String,
    sysfs: Arc<dyn SysfsBus>,
    dir: Option<String>,
}

impl Hwmon {
    pub fn new(name: &str, chip: &str, input: &str, sysfs: Arc<dyn SysfsBus>) -> Hwmon {
        Hwmon {
            name: name.to_owned(),
            chip: chip.to_owned(),
            input: input.to_owned(),
            sysfs,
            dir: None,
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
        let path = |dir: &str| format!("{HWMON}/{dir}/{}_input", self.input);
        let cached = self
            .dir
            .as_deref()
            .map(path)
            .and_then(|p| self.sysfs.read(&p).ok());
        let text = match cached {
            Some(t) => t,
            None => {
                let dir = locate(&*self.sysfs, &self.chip, &self.input).ok_or_else(|| {
                    SensorError::NotPresent {
                        what: format!("hwmon chip \"{}\" input {}", self.chip, self.input),
                    }
                })?;
                let p = path(&dir);
                self.dir = Some(dir);
                self.sysfs.read(&p).map_err(|e| io_error(&p, e))?
            }
        };
        let c = parse_int("hwmon temp input", &text)? as f64 / 1000.0;
        let c = SensorError::check_range(SensorKind::Hwmon, Quantity::Temperature, c)?;
        Ok(Readings::new(SystemTime::now()).with(Quantity::Temperature, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::sysfs::FakeSysfs;

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
                chip: "cpu_thermal".into(),
                input: "temp1".into(),
                label: Some("SoC".into())
            }]
        );
        let mut h = Hwmon::new("cpu", "cpu_thermal", "temp1", f.clone());
        assert_eq!(h.read().unwrap().get(Quantity::Temperature), Some(51.54));
        f.remove("sys/class/hwmon/hwmon1");
        f.set("sys/class/hwmon/hwmon2/name", "cpu_thermal\n");
        f.set("sys/class/hwmon/hwmon2/temp1_input", "49000\n");
        assert_eq!(h.read().unwrap().get(Quantity::Temperature), Some(49.0));
        f.remove("sys/class/hwmon/hwmon2");
        assert!(h.read().is_err());
    }
}
