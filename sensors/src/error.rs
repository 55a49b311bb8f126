//! Why a sensor read failed.

use std::{fmt, io, time::Duration};

use crate::Quantity;

/// A failed read. The agent counts each failure under its [`ErrorReason`] in
/// `edgesense_sensor_read_errors_total{reason}` and marks the sensor `edgesense_sensor_up 0`; the
/// scrape itself never fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SensorError {
    /// The device is not there: its sysfs directory vanished (1-Wire sensor unplugged), the I2C
    /// address does not answer, or the kernel driver is not loaded. Check wiring and the
    /// `dtoverlay=` line in `config.txt`.
    #[error("{what} not present")]
    NotPresent { what: String },

    /// More than one device fits the sensor's config (two hwmon chips with one `name` and no
    /// `device` to tell them apart), so none is read rather than perhaps the wrong one. Add one
    /// of the `choices` to the sensor's table; `edgesense-agent --list-sensors` prints a table
    /// per device. Counted as `not_present`: the configured device cannot be found as one.
    #[error("{what} matches more than one device; choose one: {choices}")]
    Ambiguous { what: String, choices: String },

    /// The device answered but its checksum did not match (1-Wire `crc=.. NO`, DHT22 parity).
    /// Usually a long cable, a missing 4.7 kΩ pull-up or electrical noise; occasional ones are
    /// normal and the next read usually succeeds.
    #[error("CRC check failed{}", detail_suffix(.detail))]
    Crc { detail: String },

    /// The device or driver returned something that is not a number in the expected format.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },

    /// The value is outside what the device can measure (a DS18B20 reads −55 … +125 °C), which
    /// means a bad read, not a real temperature.
    #[error("{} {value} {} is outside the sensor's range {min} … {max}", .quantity.as_str(), .quantity.unit())]
    OutOfRange {
        quantity: Quantity,
        value: f64,
        min: f64,
        max: f64,
    },

    /// The read did not finish in time (the agent's per-read timeout, or the kernel's ETIMEDOUT).
    #[error("read timed out after {0:?}")]
    Timeout(Duration),

    /// Any other I/O error from the bus.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl SensorError {
    /// The metric label for this error.
    pub fn reason(&self) -> ErrorReason {
        match self {
            SensorError::NotPresent { .. } | SensorError::Ambiguous { .. } => {
                ErrorReason::NotPresent
            }
            SensorError::Crc { .. } => ErrorReason::Crc,
            SensorError::Parse { .. } => ErrorReason::Parse,
            SensorError::OutOfRange { .. } => ErrorReason::OutOfRange,
            SensorError::Timeout(_) => ErrorReason::Timeout,
            SensorError::Io(_) => ErrorReason::Io,
        }
    }

    /// Checks `value` against `kind`'s measuring range for `quantity`.
    pub fn check_range(
        kind: crate::SensorKind,
        quantity: Quantity,
        value: f64,
    ) -> Result<f64, SensorError> {
        let (min, max) = kind.range(quantity);
        if value.is_finite() && (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(SensorError::OutOfRange {
                quantity,
                value,
                min,
                max,
            })
        }
    }
}

/// The kind of a [`SensorError`], used as the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    NotPresent,
    Crc,
    Parse,
    OutOfRange,
    Timeout,
    Io,
}

impl ErrorReason {
    /// Every reason, so counters can start at zero for each (then `rate()` works from the start).
    pub const ALL: [ErrorReason; 6] = [
        ErrorReason::NotPresent,
        ErrorReason::Crc,
        ErrorReason::Parse,
        ErrorReason::OutOfRange,
        ErrorReason::Timeout,
        ErrorReason::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::NotPresent => "not_present",
            ErrorReason::Crc => "crc",
            ErrorReason::Parse => "parse",
            ErrorReason::OutOfRange => "out_of_range",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Io => "io",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorReason> {
        ErrorReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failed attempts by reason, for drivers that retry inside one read (DHT22).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetriedErrors([u32; ErrorReason::ALL.len()]);

impl RetriedErrors {
    pub fn add(&mut self, reason: ErrorReason) {
        self.0[reason as usize] += 1;
    }

    pub fn count(&self, reason: ErrorReason) -> u32 {
        self.0[reason as usize]
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// (reason, count) for every reason with a count above zero.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorReason, u32)> + '_ {
        ErrorReason::ALL
            .into_iter()
            .map(|r| (r, self.count(r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorKind;

    #[test]
    fn range_check_rejects_out_of_range_and_nan() {
        let k = SensorKind::Ds18b20;
        assert_eq!(
            SensorError::check_range(k, Quantity::Temperature, 21.0).ok(),
            Some(21.0)
        );
        let err = SensorError::check_range(k, Quantity::Temperature, -127.0).unwrap_err();
        assert_eq!(err.reason(), ErrorReason::OutOfRange);
        assert!(err.to_string().contains("-55"), "{err}");
        assert!(SensorError::check_range(k, Quantity::Temperature, f64::NAN).is_err());
    }

    #[test]
    fn reasons_round_trip() {
        for r in ErrorReason::ALL {
            assert_eq!(ErrorReason::parse(r.as_str()), Some(r));
        }
    }
}
