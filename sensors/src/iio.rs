//! Industrial I/O devices in sysfs (`/sys/bus/iio/devices/iio:device<N>/`), as the kernel's
//! bmp280 and dht11 drivers expose them (Documentation/ABI/testing/sysfs-bus-iio): `name`, and
//! processed values `in_temp_input` (milli °C), `in_humidityrelative_input` (milli %RH),
//! `in_pressure_input` (kPa).

use std::sync::Arc;

use crate::{
    bus::sysfs::{io_error, parse_float, SysfsBus},
    SensorError,
};

/// Where the kernel lists IIO devices.
pub const IIO: &str = "sys/bus/iio/devices";

/// Every IIO device whose `name` is one of `names`: (directory, name).
pub fn discover(sysfs: &dyn SysfsBus, names: &[&str]) -> Vec<(String, String)> {
    sysfs
        .list(IIO)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.starts_with("iio:device"))
        .filter_map(|d| {
            let n = sysfs
                .read(&format!("{IIO}/{d}/name"))
                .ok()?
                .trim()
                .to_owned();
            names.contains(&n.as_str()).then_some((d, n))
        })
        .collect()
}

/// One IIO device: configured by directory, or the first device with a matching name.
#[derive(Debug)]
pub struct IioDevice {
    sysfs: Arc<dyn SysfsBus>,
    configured: Option<String>,
    names: &'static [&'static str],
    dir: Option<String>,
}

impl IioDevice {
    pub fn new(
        sysfs: Arc<dyn SysfsBus>,
        device: Option<&str>,
        names: &'static [&'static str],
    ) -> IioDevice {
        IioDevice {
            sysfs,
            configured: device.map(str::to_owned),
            names,
            dir: device.map(str::to_owned),
        }
    }

    fn dir(&mut self) -> Result<String, SensorError> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let found = discover(&*self.sysfs, self.names)
            .into_iter()
            .next()
            .map(|(d, _)| d);
        let d = found.ok_or_else(|| SensorError::NotPresent {
            what: format!("IIO device named {}", self.names.join(" or ")),
        })?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    /// Reads attribute `attr` as a number. A vanished device is looked up again next time
    /// (unless configured by directory).
    pub fn read(&mut self, attr: &str) -> Result<f64, SensorError> {
        let dir = self.dir()?;
        let path = format!("{IIO}/{dir}/{attr}");
        match self.sysfs.read(&path) {
            Ok(s) => parse_float(attr, &s),
            Err(e) => {
                if self.configured.is_none() && !self.sysfs.exists(&format!("{IIO}/{dir}")) {
                    self.dir = None;
                }
                Err(io_error(&path, e))
            }
        }
    }

    /// True if the device has attribute `attr`.
    pub fn has(&mut self, attr: &str) -> bool {
        self.dir()
            .is_ok_and(|d| self.sysfs.exists(&format!("{IIO}/{d}/{attr}")))
    }
}
