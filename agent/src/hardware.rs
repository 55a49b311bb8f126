//! Opening the node's devices: every configured sensor on its kernel interface (or simulated),
//! every LED on its GPIO pin.

use std::{collections::HashMap, sync::Arc};

use edgesense_sensors::{
    bme280::{Bme280I2c, Bme280Iio},
    bus::{
        gpio::{GpioBus, GpioError, InputPin, MockGpio, RppalGpio},
        i2c::{I2cBus, I2cError, RppalI2c},
        sysfs::{Sysfs, SysfsBus},
    },
    detect::Device,
    dht22::Dht22,
    ds18b20::{BulkRead, Ds18b20},
    hwmon::Hwmon,
    led::Led,
    sim::{SimControl, SimSensor},
    thermal::Thermal,
    Readings, Sensor, SensorError, SensorKind,
};

use crate::spec::{NodeSpec, SensorSpec};

/// The node's devices, opened and ready.
pub struct Hardware {
    pub sensors: Vec<Box<dyn Sensor>>,
    pub leds: Vec<Led>,
    /// The `[[button]]` inputs, in spec order.
    pub buttons: Vec<Box<dyn InputPin>>,
    /// Controls of simulated sensors, by sensor index (empty for real hardware).
    pub sim: Vec<SimControl>,
    /// The mock GPIO the LEDs are on, when they are (its record is served to tests).
    pub gpio_record: Option<MockGpio>,
}

/// Why the hardware could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// The LED's pin could not be opened (the source says why and what to do).
    #[error("LED \"{led}\"")]
    Led {
        led: String,
        #[source]
        source: GpioError,
    },
    /// The button's pin could not be opened.
    #[error("button \"{button}\"")]
    Button {
        button: String,
        #[source]
        source: GpioError,
    },
}

impl Hardware {
    /// Simulated sensors (drifting from `spec.seed`) and LEDs on `gpio`.
    pub fn simulated(spec: &NodeSpec, gpio: &dyn GpioBus) -> Result<Hardware, HardwareError> {
        let sensors: Vec<SimSensor> = spec
            .sensors
            .iter()
            .map(|s| SimSensor::new(&s.name, s.kind, spec.seed, &[]))
            .collect();
        let sim = sensors.iter().map(SimSensor::control).collect();
        Ok(Hardware {
            sensors: sensors
                .into_iter()
                .map(|s| Box::new(s) as Box<dyn Sensor>)
                .collect(),
            leds: open_leds(spec, gpio)?,
            buttons: open_buttons(spec, gpio)?,
            sim,
            gpio_record: None,
        })
    }

    /// The Pi's own devices: sensors under `spec.sysfs_root` and on I2C, LEDs through rppal.
    /// Fails with a hint to use `--simulate` when LEDs are configured on a machine that is not a
    /// Pi. A sensor that is missing does not fail here: it reads as `not_present` until it
    /// appears.
    pub fn real(spec: &NodeSpec) -> Result<Hardware, HardwareError> {
        let (leds, buttons) = if spec.leds.is_empty() && spec.buttons.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let gpio = RppalGpio::open().map_err(|source| match spec.leds.first() {
                Some(l) => HardwareError::Led {
                    led: l.name.clone(),
                    source,
                },
                None => HardwareError::Button {
                    button: spec.buttons[0].name.clone(),
                    source,
                },
            })?;
            (open_leds(spec, &gpio)?, open_buttons(spec, &gpio)?)
        };
        Ok(Hardware {
            sensors: open_sensors(spec),
            leds,
            buttons,
            sim: Vec::new(),
            gpio_record: None,
        })
    }

    /// Real sensors, LEDs on `gpio` (a test node: fake sysfs tree, mock GPIO).
    pub fn real_sensors(spec: &NodeSpec, gpio: &dyn GpioBus) -> Result<Hardware, HardwareError> {
        Ok(Hardware {
            sensors: open_sensors(spec),
            leds: open_leds(spec, gpio)?,
            buttons: open_buttons(spec, gpio)?,
            sim: Vec::new(),
            gpio_record: None,
        })
    }
}

fn open_buttons(
    spec: &NodeSpec,
    gpio: &dyn GpioBus,
) -> Result<Vec<Box<dyn InputPin>>, HardwareError> {
    spec.buttons
        .iter()
        .map(|b| {
            // Active low: the pin to ground, the internal pull-up keeps it high until pressed.
            gpio.input(b.pin, b.active_low)
                .map_err(|source| HardwareError::Button {
                    button: b.name.clone(),
                    source,
                })
        })
        .collect()
}

fn open_leds(spec: &NodeSpec, gpio: &dyn GpioBus) -> Result<Vec<Led>, HardwareError> {
    spec.leds
        .iter()
        .map(|l| {
            gpio.output(l.pin)
                .and_then(|pin| Led::new(pin, l.active_low))
                .map_err(|source| HardwareError::Led {
                    led: l.name.clone(),
                    source,
                })
        })
        .collect()
}

/// Every sensor of `spec` on its kernel interface. DS18B20s on a bus master that offers
/// `therm_bulk_read` share one bulk reader, so a poll round costs one conversion.
pub fn open_sensors(spec: &NodeSpec) -> Vec<Box<dyn Sensor>> {
    let sysfs: Arc<dyn SysfsBus> = Arc::new(Sysfs::new(&spec.sysfs_root));
    let mut bulk: HashMap<String, Arc<BulkRead>> = HashMap::new();
    spec.sensors
        .iter()
        .map(|s| open_sensor(s, &sysfs, &mut bulk))
        .collect()
}

/// One sensor on `sysfs` (or I2C); `bulk` collects the bulk readers by 1-Wire master.
pub fn open_sensor(
    s: &SensorSpec,
    sysfs: &Arc<dyn SysfsBus>,
    bulk: &mut HashMap<String, Arc<BulkRead>>,
) -> Box<dyn Sensor> {
    let sysfs = Arc::clone(sysfs);
    let Some(device) = &s.device else {
        return Box::new(Unlocated {
            name: s.name.clone(),
            kind: s.kind,
        });
    };
    match (s.kind, device) {
        (SensorKind::Ds18b20, Device::W1 { id }) => {
            let reader = Ds18b20::master_of(&*sysfs, id).map(|master| {
                Arc::clone(
                    bulk.entry(master.clone())
                        .or_insert_with(|| Arc::new(BulkRead::new(Arc::clone(&sysfs), &master))),
                )
            });
            Box::new(Ds18b20::new(&s.name, id, sysfs, reader))
        }
        (SensorKind::Thermal, Device::Thermal { zone }) => {
            Box::new(Thermal::new(&s.name, *zone, sysfs))
        }
        (SensorKind::Hwmon, Device::Hwmon(selector)) => {
            Box::new(Hwmon::select(&s.name, selector.clone(), sysfs))
        }
        (SensorKind::Bme280 | SensorKind::Bmp280, Device::Iio { device }) => {
            Box::new(Bme280Iio::new(&s.name, s.kind, sysfs, device.as_deref()))
        }
        (SensorKind::Bme280 | SensorKind::Bmp280, Device::I2c { bus, address }) => Box::new(
            Bme280I2c::new(&s.name, s.kind, LazyI2c::new(*bus), *address),
        ),
        (SensorKind::Dht22, Device::Iio { device }) => {
            Box::new(Dht22::new(&s.name, sysfs, device.as_deref()))
        }
        _ => Box::new(Unlocated {
            name: s.name.clone(),
            kind: s.kind,
        }),
    }
}

/// `/dev/i2c-<bus>`, opened on first use and again after a failure, so a bus enabled (or a
/// permission fixed) while the agent runs is picked up without a restart.
struct LazyI2c {
    bus: u8,
    open: Option<RppalI2c>,
}

impl LazyI2c {
    fn new(bus: u8) -> LazyI2c {
        LazyI2c { bus, open: None }
    }

    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut RppalI2c) -> Result<T, I2cError>,
    ) -> Result<T, I2cError> {
        let i2c = match &mut self.open {
            Some(i2c) => i2c,
            None => self.open.insert(RppalI2c::open(self.bus)?),
        };
        let r = f(i2c);
        if matches!(r, Err(I2cError::Transfer { .. })) {
            self.open = None;
        }
        r
    }
}

impl I2cBus for LazyI2c {
    fn write_read(&mut self, address: u16, write: &[u8], read: &mut [u8]) -> Result<(), I2cError> {
        self.with(|i2c| i2c.write_read(address, write, read))
    }

    fn write(&mut self, address: u16, bytes: &[u8]) -> Result<(), I2cError> {
        self.with(|i2c| i2c.write(address, bytes))
    }
}

/// A sensor whose config does not say where it is (only possible with a kind/device mismatch
/// the config check rules out); every read says so.
struct Unlocated {
    name: String,
    kind: SensorKind,
}

impl Sensor for Unlocated {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SensorKind {
        self.kind
    }

    fn read(&mut self) -> Result<Readings, SensorError> {
        Err(SensorError::NotPresent {
            what: format!(
                "{} sensor \"{}\" (no device configured)",
                self.kind, self.name
            ),
        })
    }
}
