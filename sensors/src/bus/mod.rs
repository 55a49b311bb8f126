//! The buses a driver talks through, one trait per kind of hardware access, each with its real
//! implementation and a fake beside it.
//!
//! | trait | real | fake |
//! |---|---|---|
//! | [`sysfs::SysfsBus`] | [`sysfs::Sysfs`] (files under a root, `/` on a Pi) | [`sysfs::FakeSysfs`] (in memory; timing, flaky reads, 1-Wire conversions) |
//! | [`i2c::I2cBus`] | [`i2c::RppalI2c`] (`/dev/i2c-N`, rppal) | [`i2c::FakeBme280`] (emulated register map) |
//! | [`gpio::GpioBus`] | [`gpio::RppalGpio`] (`/dev/gpiomem`, rppal) | [`gpio::MockGpio`] (records every write with a timestamp) |
//!
//! Drivers own no I/O: they take a bus and are tested against the fake, so the code above the bus
//! is the code that runs on a Pi.

pub mod gpio;
pub mod i2c;
pub mod sysfs;
