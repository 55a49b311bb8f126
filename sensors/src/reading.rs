//! Typed readings in base units, as Prometheus wants them.

use std::time::SystemTime;

/// A physical quantity a sensor can measure. Values are always in the base unit named by
/// [`Quantity::unit`], so `edgesense_<quantity>_<unit>` is the metric name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    /// Degrees Celsius.
    Temperature,
    /// Relative humidity as a ratio, 0.0 – 1.0 (not percent).
    Humidity,
    /// Pascals (not hPa: 1013.25 hPa is 101 325 Pa).
    Pressure,
}

impl Quantity {
    /// Every quantity, in the order used by [`Readings`].
    pub const ALL: [Quantity; 3] = [
        Quantity::Temperature,
        Quantity::Humidity,
        Quantity::Pressure,
    ];

    /// Lower-case name used in JSON and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::Temperature => "temperature",
            Quantity::Humidity => "humidity",
            Quantity::Pressure => "pressure",
        }
    }

    /// The base unit of this quantity, as used in metric names.
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Temperature => "celsius",
            Quantity::Humidity => "ratio",
            Quantity::Pressure => "pascals",
        }
    }

    /// Parses the name returned by [`Quantity::as_str`].
    pub fn parse(s: &str) -> Option<Quantity> {
        Quantity::ALL.into_iter().find(|q| q.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One value of one quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub quantity: Quantity,
    pub value: f64,
}

/// Everything one read of a sensor returned, taken at one instant. Fixed size and `Copy`, so the
/// poll loop never allocates for a reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Readings {
    values: [Option<f64>; 3],
    /// When the measurement was taken (wall clock, for the API and history).
    pub at: SystemTime,
}

impl Readings {
    /// No values yet, taken at `at`.
    pub fn new(at: SystemTime) -> Self {
        Readings {
            values: [None; 3],
            at,
        }
    }

    /// Adds (or replaces) the value of `quantity`.
    #[must_use]
    pub fn with(mut self, quantity: Quantity, value: f64) -> Self {
        self.values[quantity.index()] = Some(value);
        self
    }

    /// The value of `quantity`, if this read measured it.
    pub fn get(&self, quantity: Quantity) -> Option<f64> {
        self.values[quantity.index()]
    }

    /// The values measured, in [`Quantity::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = Reading> + '_ {
        Quantity::ALL
            .into_iter()
            .filter_map(|quantity| self.get(quantity).map(|value| Reading { quantity, value }))
    }

    /// True when the read returned no value at all.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_keep_values_by_quantity() {
        let r = Readings::new(SystemTime::UNIX_EPOCH)
            .with(Quantity::Pressure, 101_325.0)
            .with(Quantity::Temperature, 21.5);
        assert_eq!(r.get(Quantity::Temperature), Some(21.5));
        assert_eq!(r.get(Quantity::Humidity), None);
        let all: Vec<_> = r.iter().map(|x| x.quantity).collect();
        assert_eq!(all, [Quantity::Temperature, Quantity::Pressure]);
        assert!(!r.is_empty());
        assert!(Readings::new(SystemTime::UNIX_EPOCH).is_empty());
    }

    #[test]
    fn quantity_names_round_trip() {
        for q in Quantity::ALL {
            assert_eq!(Quantity::parse(q.as_str()), Some(q));
        }
        assert_eq!(Quantity::parse("lux"), None);
    }
}
