//! Aosong DHT22 / AM2302 (temperature and humidity) through the kernel's IIO `dht11` driver,
//! which serves the DHT22 as well.
//!
//! # Wiring and overlay
//! Data to a GPIO with a 10 kΩ pull-up to 3V3 (many modules have it), `dtoverlay=dht11,gpiopin=N`
//! in `config.txt`. The device appears as `/sys/bus/iio/devices/iio:device<N>/` with `name` =
//! `dht11`, `in_temp_input` (milli °C) and `in_humidityrelative_input` (milli %RH).
//!
//! # Known behaviour
//! The sensor's single-wire protocol is bit-banged by the kernel with tight timing; on a busy Pi
//! reads fail often with EIO or ETIMEDOUT. The driver also refuses to poll the sensor more than
//! once every 2 s (datasheet: "sensing period ≥ 2 s") and returns the cached value instead. So a
//! read retries a few times with back-off, counts every failed attempt, and gives up well within
//! the agent's per-read timeout.

use std::{
    sync::Arc,
    thread,
    time::{Duration, SystemTime},
};

use crate::{
    bus::sysfs::SysfsBus, iio::IioDevice, ErrorReason, Quantity, Readings, RetriedErrors, Sensor,
    SensorError, SensorKind,
};

/// IIO device name of the kernel's dht11 driver.
pub const IIO_NAMES: &[&str] = &["dht11"];
/// Attempts per read.
pub const ATTEMPTS: u32 = 3;
/// Back-off before the second attempt; doubles for each further one.
pub const BACKOFF: Duration = Duration::from_millis(100);

pub struct Dht22 {
    name: String,
    dev: IioDevice,
    backoff: Duration,
    retried: RetriedErrors,
}

impl Dht22 {
    /// `device` is the IIO directory (`iio:device1`), or `None` for the first `dht11` device.
    pub fn new(name: &str, sysfs: Arc<dyn SysfsBus>, device: Option<&str>) -> Dht22 {
        Dht22 {
            name: name.to_owned(),
            dev: IioDevice::new(sysfs, device, IIO_NAMES),
            backoff: BACKOFF,
            retried: RetriedErrors::default(),
        }
    }

    /// Changes the back-off (tests use a short one).
    pub fn with_backoff(mut self, backoff: Duration) -> Dht22 {
        self.backoff = backoff;
        self
    }

    fn attempt(&mut self) -> Result<Readings, SensorError> {
        let t = self.dev.read("in_temp_input")? / 1000.0;
        let h = self.dev.read("in_humidityrelative_input")? / 1000.0 / 100.0;
        Ok(Readings::new(SystemTime::now())
            .with(
                Quantity::Temperature,
                SensorError::check_range(SensorKind::Dht22, Quantity::Temperature, t)?,
            )
            .with(
                Quantity::Humidity,
                SensorError::check_range(SensorKind::Dht22, Quantity::Humidity, h)?,
            ))
    }
}

/// EIO and ETIMEDOUT are the protocol's everyday failures; anything else is not worth a retry.
fn transient(e: &SensorError) -> bool {
    matches!(e.reason(), ErrorReason::Io | ErrorReason::Timeout)
}

impl Sensor for Dht22 {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SensorKind {
        SensorKind::Dht22
    }

    fn read(&mut self) -> Result<Readings, SensorError> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match self.attempt() {
                Ok(r) => return Ok(r),
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    self.retried.add(e.reason());
                    thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn take_retried(&mut self) -> RetriedErrors {
        std::mem::take(&mut self.retried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::sysfs::{errno, FakeSysfs};

    fn flaky(temp: Vec<Result<String, i32>>) -> (Arc<FakeSysfs>, Dht22) {
        let f = Arc::new(FakeSysfs::new());
        let d = "sys/bus/iio/devices/iio:device1";
        f.set(&format!("{d}/name"), "dht11\n");
        f.set_sequence(&format!("{d}/in_temp_input"), temp);
        f.set(&format!("{d}/in_humidityrelative_input"), "61300\n");
        let s = Dht22::new("porch", f.clone(), None).with_backoff(Duration::from_millis(1));
        (f, s)
    }

    #[test]
    fn retries_transient_errors_and_counts_them() {
        let (_, mut s) = flaky(vec![
            Err(errno::EIO),
            Err(errno::ETIMEDOUT),
            Ok("18400\n".into()),
        ]);
        let r = s.read().unwrap();
        assert_eq!(r.get(Quantity::Temperature), Some(18.4));
        assert!((r.get(Quantity::Humidity).unwrap() - 0.613).abs() < 1e-9);
        let retried = s.take_retried();
        assert_eq!(
            (
                retried.count(ErrorReason::Io),
                retried.count(ErrorReason::Timeout)
            ),
            (1, 1)
        );
        assert_eq!(s.take_retried().total(), 0, "taken once");
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        let (_, mut s) = flaky(vec![Err(errno::EIO)]);
        assert_eq!(s.read().unwrap_err().reason(), ErrorReason::Io);
        assert_eq!(s.take_retried().total(), ATTEMPTS - 1);
    }

    #[test]
    fn missing_device_is_not_retried() {
        let f = Arc::new(FakeSysfs::new());
        let mut s = Dht22::new("porch", f, None);
        assert_eq!(s.read().unwrap_err().reason(), ErrorReason::NotPresent);
        assert_eq!(s.take_retried().total(), 0);
    }
}
