//! Sensors and LEDs of an edgesense node.
//!
//! Every driver in this crate is generic over a small bus trait (see [`bus`]) and owns no I/O of
//! its own: on a Raspberry Pi the bus is the kernel (sysfs files, `/dev/i2c-*`, `/dev/gpiomem`),
//! in tests and with `--simulate` it is a fake that lives beside the real implementation.
//!
//! The model is deliberately small:
//! - a [`Sensor`] returns [`Readings`] (one value per [`Quantity`], in base units, with the time it
//!   was taken) or a [`SensorError`] whose [`ErrorReason`] becomes a metric label;
//! - an [`led::Led`] shows an [`led::LedMode`] (off, on, blink, pulse) on an output pin.
//!
//! Reads are blocking: a DS18B20 conversion takes up to 750 ms and the kernel interfaces are
//! synchronous. The agent runs each read on a blocking thread with a timeout, so a slow sensor never
//! holds up another one.

pub mod bme280;
pub mod bus;
pub mod detect;
pub mod dht22;
pub mod ds18b20;
mod error;
pub mod hwmon;
pub mod iio;
mod kind;
pub mod led;
mod reading;
pub mod sim;
pub mod thermal;

pub use error::{ErrorReason, RetriedErrors, SensorError};
pub use kind::SensorKind;
pub use reading::{Quantity, Reading, Readings};

/// One physical (or simulated) sensor.
///
/// Implementations keep whatever state a driver needs between reads (calibration data, the last
/// value for plausibility checks) and are moved to a blocking thread for each read, hence `Send`.
pub trait Sensor: Send {
    /// The name the user gave this sensor in the config (`sensor` label in metrics).
    fn name(&self) -> &str;

    /// What kind of device this is (`kind` label in metrics).
    fn kind(&self) -> SensorKind;

    /// Takes one measurement. May block for as long as the device needs (a DS18B20 conversion is
    /// 750 ms at 12-bit resolution); the caller applies the timeout.
    fn read(&mut self) -> Result<Readings, SensorError>;

    /// Failed attempts that the last [`Sensor::read`] retried (and perhaps recovered from),
    /// taken once: the agent counts them in `edgesense_sensor_read_errors_total` like failed
    /// reads. Drivers that never retry keep the default.
    fn take_retried(&mut self) -> RetriedErrors {
        RetriedErrors::default()
    }
}

impl<S: Sensor + ?Sized> Sensor for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn kind(&self) -> SensorKind {
        (**self).kind()
    }
    fn read(&mut self) -> Result<Readings, SensorError> {
        (**self).read()
    }
    fn take_retried(&mut self) -> RetriedErrors {
        (**self).take_retried()
    }
}
