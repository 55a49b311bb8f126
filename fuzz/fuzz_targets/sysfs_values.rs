//! Attribute contents as the kernel would give them (thermal, hwmon, IIO BME280 and DHT22
//! attributes), read through the drivers: never a panic, and only values in range.
#![no_main]
use std::sync::Arc;

use edgesense_sensors::{
    bme280::Bme280Iio, bus::sysfs::FakeSysfs, dht22::Dht22, hwmon::Hwmon, thermal::Thermal,
    Sensor, SensorKind,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The input feeds every attribute, split on NUL so attributes can differ.
    let mut parts = text.split('\0');
    let mut next = || parts.next().unwrap_or("21000").to_owned();
    let f = Arc::new(FakeSysfs::new());
    f.set("sys/class/thermal/thermal_zone0/temp", next());
    f.set("sys/class/hwmon/hwmon0/name", "chip\n");
    f.set("sys/class/hwmon/hwmon0/temp1_input", next());
    let d = "sys/bus/iio/devices/iio:device0";
    f.set(&format!("{d}/name"), "bme280\n");
    f.set(&format!("{d}/in_temp_input"), next());
    f.set(&format!("{d}/in_humidityrelative_input"), next());
    f.set(&format!("{d}/in_pressure_input"), next());
    let h = "sys/bus/iio/devices/iio:device1";
    f.set(&format!("{h}/name"), "dht11\n");
    f.set(&format!("{h}/in_temp_input"), next());
    f.set(&format!("{h}/in_humidityrelative_input"), next());
    let mut sensors: Vec<Box<dyn Sensor>> = vec![
        Box::new(Thermal::new("t", 0, f.clone())),
        Box::new(Hwmon::new("h", "chip", "temp1", f.clone())),
        Box::new(Bme280Iio::new("b", SensorKind::Bme280, f.clone(), None)),
        Box::new(Dht22::new("d", f.clone(), Some("iio:device1")).with_backoff(std::time::Duration::ZERO)),
    ];
    for s in &mut sensors {
        if let Ok(r) = s.read() {
            for v in r.iter() {
                let (lo, hi) = s.kind().range(v.quantity);
                assert!(v.value.is_finite() && (lo..=hi).contains(&v.value), "{:?} {}", s.kind(), v.value);
            }
        }
    }
});
