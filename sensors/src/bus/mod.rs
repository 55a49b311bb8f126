//! The buses a driver talks through, one trait per kind of hardware access, each with its real
//! implementation and a fake beside it.
//!
//! | trait | real | fake |
//! |---|---|---|
//! | [`gpio::GpioBus`] | [`gpio::RppalGpio`] (`/dev/gpiomem`, rppal) | [`gpio::MockGpio`] (records every write with a timestamp) |
//!
//! Drivers own no I/O: they take a bus and are tested against the fake, so the code above the bus
//! is the code that runs on a Pi.

pub mod gpio;
