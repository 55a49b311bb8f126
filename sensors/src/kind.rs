//! The kinds of sensor edgesense knows, with what each measures and its measuring range.

use std::fmt;

use crate::Quantity;

/// A supported device. The measuring ranges come from the datasheets; a value outside them is a
/// bad read (see [`crate::SensorError::OutOfRange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SensorKind {
    /// Maxim DS18B20 1-Wire thermometer: −55 … +125 °C (datasheet, "Features").
    Ds18b20,
    /// The SoC's thermal zone (`/sys/class/thermal/thermal_zone0`); BCM2711 is specified for
    /// −40 … +85 °C ambient, the die reads higher, the firmware throttles at 80–85 °C.
    Thermal,
    /// Any hwmon temperature input (`/sys/class/hwmon/hwmon*/temp*_input`).
    Hwmon,
    /// Bosch BME280: −40 … +85 °C, 0 … 100 %RH, 300 … 1100 hPa (datasheet table 1).
    Bme280,
    /// Bosch BMP280: temperature and pressure only, same ranges as the BME280.
    Bmp280,
    /// Aosong DHT22 / AM2302: −40 … +80 °C, 0 … 100 %RH (datasheet section 5).
    Dht22,
}

impl SensorKind {
    pub const ALL: [SensorKind; 6] = [
        SensorKind::Ds18b20,
        SensorKind::Thermal,
        SensorKind::Hwmon,
        SensorKind::Bme280,
        SensorKind::Bmp280,
        SensorKind::Dht22,
    ];

    /// The name used in configs and as the `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorKind::Ds18b20 => "ds18b20",
            SensorKind::Thermal => "thermal",
            SensorKind::Hwmon => "hwmon",
            SensorKind::Bme280 => "bme280",
            SensorKind::Bmp280 => "bmp280",
            SensorKind::Dht22 => "dht22",
        }
    }

    pub fn parse(s: &str) -> Option<SensorKind> {
        SensorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The quantities this kind of device measures.
    pub fn quantities(self) -> &'static [Quantity] {
        match self {
            SensorKind::Ds18b20 | SensorKind::Thermal | SensorKind::Hwmon => {
                &[Quantity::Temperature]
            }
            SensorKind::Bme280 => &[
                Quantity::Temperature,
                Quantity::Humidity,
                Quantity::Pressure,
            ],
            SensorKind::Bmp280 => &[Quantity::Temperature, Quantity::Pressure],
            SensorKind::Dht22 => &[Quantity::Temperature, Quantity::Humidity],
        }
    }

    /// The plausible range of `quantity` for this device, in base units.
    pub fn range(self, quantity: Quantity) -> (f64, f64) {
        match (self, quantity) {
            (_, Quantity::Humidity) => (0.0, 1.0),
            (_, Quantity::Pressure) => (30_000.0, 110_000.0),
            (SensorKind::Ds18b20, _) => (-55.0, 125.0),
            (SensorKind::Thermal | SensorKind::Hwmon, _) => (-40.0, 125.0),
            (SensorKind::Bme280 | SensorKind::Bmp280, _) => (-40.0, 85.0),
            (SensorKind::Dht22, _) => (-40.0, 80.0),
        }
    }
}

impl fmt::Display for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
