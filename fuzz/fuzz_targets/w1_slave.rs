//! The `w1_slave` text of a DS18B20, parsed directly and through the driver (CRC verdict, the
//! 85 °C power-on check, range check): never a panic, and a value only inside the sensor's range.
#![no_main]
use std::sync::Arc;

use edgesense_sensors::{
    bus::sysfs::FakeSysfs,
    ds18b20::{parse_w1_slave, Ds18b20, W1_DEVICES},
    Quantity, Sensor,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_w1_slave(text);
    let fake = Arc::new(FakeSysfs::new());
    fake.set(&format!("{W1_DEVICES}/28-000000000001/w1_slave"), text);
    let mut s = Ds18b20::new("t", "28-000000000001", fake, None);
    if let Ok(r) = s.read() {
        let v = r.get(Quantity::Temperature).expect("a DS18B20 read has a temperature");
        assert!((-55.0..=125.0).contains(&v), "{v} passed the range check");
    }
});
