//! The SoC temperature from the kernel's thermal framework.
//!
//! `/sys/class/thermal/thermal_zone<N>/temp` is the zone's temperature in milli °C and `type` its
//! name (`cpu-thermal` on a Pi 4/5 with the bcm2711/bcm2712 thermal driver). Zone 0 is the SoC on
//! every Raspberry Pi. The firmware throttles the CPU from 80 °C (85 °C on a Pi 4 with recent
//! firmware); `vcgencmd measure_temp` reads the same sensor.
//!
//! # Troubleshooting
//! - No `thermal_zone0` inside a container: mount the host's `/sys` read-only (the agent
//!   container does by default).

use std::{sync::Arc, time::SystemTime};

use crate::{
    bus::sysfs::{io_error, parse_int, SysfsBus},
    Quantity, Readings, Sensor, SensorError, SensorKind,
};

/// Where the kernel lists thermal zones.
pub const THERMAL: &str = "sys/class/thermal";

/// Every thermal zone: (index, type).
pub fn discover(sysfs: &dyn SysfsBus) -> Vec<(u32, String)> {
    sysfs
        .list(THERMAL)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| d.strip_prefix("thermal_zone")?.parse::<u32>().ok())
        .filter(|n| sysfs.exists(&format!("{THERMAL}/thermal_zone{n}/temp")))
        .map(|n| {
            let t = sysfs
                .read(&format!("{THERMAL}/thermal_zone{n}/type"))
                .unwrap_or_default();
            (n, t.trim().to_owned())
        })
        .collect()
}

/// One thermal zone.
pub struct Thermal {
    name: String,
    path: String,
    sysfs: Arc<dyn SysfsBus>,
}

impl Thermal {
    pub fn new(name: &str, zone: u32, sysfs: Arc<dyn SysfsBus>) -> Thermal {
        Thermal {
            name: name.to_owned(),
            path: format!("{THERMAL}/thermal_zone{zone}/temp"),
            sysfs,
        }
    }
}

impl Sensor for Thermal {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SensorKind {
        SensorKind::Thermal
    }

    fn read(&mut self) -> Result<Readings, SensorError> {
        let s = self
            .sysfs
            .read(&self.path)
            .map_err(|e| io_error(&self.path, e))?;
        let c = parse_int("thermal zone temp", &s)? as f64 / 1000.0;
        let c = SensorError::check_range(SensorKind::Thermal, Quantity::Temperature, c)?;
        Ok(Readings::new(SystemTime::now()).with(Quantity::Temperature, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bus::sysfs::FakeSysfs, ErrorReason};

    #[test]
    fn reads_milli_celsius_and_discovers_zones() {
        let f = Arc::new(FakeSysfs::new());
        f.set("sys/class/thermal/thermal_zone0/temp", "48312\n");
        f.set("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
        f.set("sys/class/thermal/cooling_device0/type", "fan\n");
        let mut t = Thermal::new("soc", 0, f.clone());
        assert_eq!(t.read().unwrap().get(Quantity::Temperature), Some(48.312));
        assert_eq!(discover(&*f), [(0, "cpu-thermal".to_owned())]);
        assert_eq!(
            Thermal::new("x", 3, f.clone()).read().unwrap_err().reason(),
            ErrorReason::NotPresent
        );
        f.set("sys/class/thermal/thermal_zone0/temp", "hot\n");
        assert_eq!(t.read().unwrap_err().reason(), ErrorReason::Parse);
    }
}
