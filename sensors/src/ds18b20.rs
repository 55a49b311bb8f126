//! Maxim DS18B20 1-Wire thermometers, through the kernel's `w1-gpio` master and `w1_therm` slave
//! drivers.
//!
//! # Wiring and overlay
//! Data to GPIO4 (the default; `dtoverlay=w1-gpio,gpiopin=N` for another pin) with a 4.7 kΩ
//! pull-up to 3V3; VDD to 3V3, GND to GND. Each sensor appears as
//! `/sys/bus/w1/devices/28-<serial>/` (family code 0x28).
//!
//! # What the kernel gives (Documentation/w1/slaves/w1_therm.rst)
//! - `w1_slave`: two lines, the 9-byte scratchpad with the driver's CRC verdict
//!   (`… : crc=57 YES`), then the scratchpad again with `t=<milli °C>`.
//! - `temperature` (Linux 5.9+): just the milli °C, CRC already checked (EIO on failure). Used
//!   when present.
//! - `therm_bulk_read` on the master (`w1_bus_master1`): writing `trigger` starts one conversion on
//!   every sensor of the bus at once; reading each sensor afterwards returns its converted value
//!   without another conversion. N sensors then cost one conversion time (750 ms at 12-bit, DS18B20
//!   datasheet table 2) instead of N.
//!
//! # Troubleshooting
//! - No `28-*` directories: `dtoverlay=w1-gpio` missing, no pull-up, or VDD not connected.
//! - `crc=.. NO` now and then: long cable or weak pull-up; try 2.2 kΩ or a shorter cable.
//! - 85.000 °C: the power-on reset value of the scratchpad, read before any conversion finished
//!   (datasheet, "Operation — measuring temperature"); usually a power glitch. Rejected unless a
//!   second read confirms it.
//! - All-zero scratchpad or −127 °C style values: data line shorted or the sensor fell off the bus.

use std::{
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    bus::sysfs::{errno, io_error, parse_int, SysfsBus},
    Quantity, Readings, Sensor, SensorError, SensorKind,
};

/// Where the kernel lists 1-Wire devices.
pub const W1_DEVICES: &str = "sys/bus/w1/devices";
/// Scratchpad temperature after power-on, before the first conversion (datasheet, memory map).
const POWER_ON_RESET_MILLI: i64 = 85_000;
/// How long a bulk conversion result is good for the sensors of one poll round.
pub const BULK_FRESH: Duration = Duration::from_millis(500);
/// Longest wait for a bulk conversion (12-bit takes 750 ms).
const BULK_LIMIT: Duration = Duration::from_secs(2);

/// The serial-number directories of every DS18B20 under `sysfs`.
pub fn discover(sysfs: &dyn SysfsBus) -> Vec<String> {
    sysfs
        .list(W1_DEVICES)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.starts_with("28-"))
        .collect()
}

/// The bus master (`w1_bus_master1`, …) that device `id` hangs on, if it offers bulk reads.
fn bulk_master(sysfs: &dyn SysfsBus, id: &str) -> Option<String> {
    sysfs
        .list(W1_DEVICES)
        .ok()?
        .into_iter()
        .filter(|m| m.starts_with("w1_bus_master"))
        .find(|m| {
            sysfs.exists(&format!("{W1_DEVICES}/{m}/{id}"))
                && sysfs.exists(&format!("{W1_DEVICES}/{m}/therm_bulk_read"))
        })
}

/// One bulk conversion at a time per master, shared by every sensor on it: the first sensor of
/// a poll round triggers it and waits; the others, waiting on the lock, find it fresh and read
/// at once.
#[derive(Debug)]
pub struct BulkRead {
    sysfs: Arc<dyn SysfsBus>,
    attr: String,
    last: Mutex<Option<Instant>>,
}

impl BulkRead {
    /// The bulk reader of `master` (e.g. `w1_bus_master1`).
    pub fn new(sysfs: Arc<dyn SysfsBus>, master: &str) -> BulkRead {
        BulkRead {
            sysfs,
            attr: format!("{W1_DEVICES}/{master}/therm_bulk_read"),
            last: Mutex::new(None),
        }
    }

    /// Makes sure a bulk conversion finished less than [`BULK_FRESH`] ago.
    fn ensure_fresh(&self) -> Result<(), SensorError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < BULK_FRESH) {
            return Ok(());
        }
        let started = Instant::now();
        self.sysfs
            .write(&self.attr, "trigger\n")
            .map_err(|e| io_error("therm_bulk_read", e))?;
        // -1 while any sensor is still converting.
        while self
            .sysfs
            .read(&self.attr)
            .map_err(|e| io_error("therm_bulk_read", e))?
            .trim()
            == "-1"
        {
            if started.elapsed() > BULK_LIMIT {
                return Err(SensorError::Timeout(BULK_LIMIT));
            }
            thread::sleep(Duration::from_millis(10));
        }
        *last = Some(Instant::now());
        Ok(())
    }
}

/// A DS18B20 identified by its serial directory (`28-0316a2795bff`).
pub struct Ds18b20 {
    name: String,
    id: String,
    sysfs: Arc<dyn SysfsBus>,
    bulk: Option<Arc<BulkRead>>,
}

impl Ds18b20 {
    /// The sensor `id`; `bulk` is the shared bulk reader of its master, if it has one.
    pub fn new(
        name: &str,
        id: &str,
        sysfs: Arc<dyn SysfsBus>,
        bulk: Option<Arc<BulkRead>>,
    ) -> Ds18b20 {
        Ds18b20 {
            name: name.to_owned(),
            id: id.to_owned(),
            sysfs,
            bulk,
        }
    }

    /// The master of `id` if it offers `therm_bulk_read`.
    pub fn master_of(sysfs: &dyn SysfsBus, id: &str) -> Option<String> {
        bulk_master(sysfs, id)
    }

    /// One read of the temperature in milli °C, preferring the `temperature` attribute.
    fn read_milli(&self) -> Result<i64, SensorError> {
        let dir = format!("{W1_DEVICES}/{}", self.id);
        if !self.sysfs.exists(&dir) {
            return Err(SensorError::NotPresent {
                what: format!("1-Wire device {}", self.id),
            });
        }
        let temperature = format!("{dir}/temperature");
        if self.sysfs.exists(&temperature) {
            // The kernel checks the CRC itself and answers EIO when it fails (w1_therm.c,
            // temperature_show), so EIO here is the `crc=.. NO` of `w1_slave`.
            let s = self.sysfs.read(&temperature).map_err(|e| {
                if e.raw_os_error() == Some(errno::EIO) {
                    SensorError::Crc {
                        detail: format!("{temperature}: {e}"),
                    }
                } else {
                    io_error(&temperature, e)
                }
            })?;
            return parse_int("DS18B20 temperature", &s);
        }
        let w1 = format!("{dir}/w1_slave");
        let s = self.sysfs.read(&w1).map_err(|e| io_error(&w1, e))?;
        parse_w1_slave(&s)
    }
}

/// Parses the two lines of `w1_slave` into milli °C.
pub fn parse_w1_slave(s: &str) -> Result<i64, SensorError> {
    let mut lines = s.lines();
    let (Some(first), Some(second)) = (lines.next(), lines.next()) else {
        return Err(SensorError::Parse {
            what: "w1_slave".into(),
            detail: format!("expected two lines, got {:?}", s.trim()),
        });
    };
    let verdict = first.rsplit(' ').next().unwrap_or("");
    match verdict {
        "YES" => {}
        "NO" => {
            return Err(SensorError::Crc {
                detail: first.trim().to_owned(),
            })
        }
        _ => {
            return Err(SensorError::Parse {
                what: "w1_slave".into(),
                detail: format!("no CRC verdict in {first:?}"),
            })
        }
    }
    let bytes = first.split(':').next().unwrap_or("");
    if !bytes.trim().is_empty() && bytes.split_whitespace().all(|b| b == "00") {
        return Err(SensorError::Crc {
            detail: "all-zero scratchpad (data line shorted?)".into(),
        });
    }
    let t = second
        .rsplit_once("t=")
        .map(|(_, t)| t)
        .ok_or_else(|| SensorError::Parse {
            what: "w1_slave".into(),
            detail: format!("no t= in {second:?}"),
        })?;
    parse_int("w1_slave t=", t)
}

impl Sensor for Ds18b20 {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SensorKind {
        SensorKind::Ds18b20
    }

    fn read(&mut self) -> Result<Readings, SensorError> {
        if let Some(bulk) = &self.bulk {
            bulk.ensure_fresh()?;
        }
        let mut milli = self.read_milli()?;
        if milli == POWER_ON_RESET_MILLI {
            // Either a real 85 °C or a conversion that never happened: a second read (its own
            // conversion, not the bulk one) tells them apart. 85 again means it is real.
            milli = self.read_milli()?;
        }
        let c = milli as f64 / 1000.0;
        let c = SensorError::check_range(SensorKind::Ds18b20, Quantity::Temperature, c)?;
        Ok(Readings::new(SystemTime::now()).with(Quantity::Temperature, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bus::sysfs::FakeSysfs, ErrorReason};

    pub(crate) fn w1_slave(milli: i64, crc_ok: bool) -> String {
        let raw = (milli * 16 / 1000) as i16 as u16;
        let bytes = format!("{:02x} {:02x} 4b 46 7f ff 0c 10 1c", raw & 0xff, raw >> 8);
        let verdict = if crc_ok { "YES" } else { "NO" };
        format!("{bytes} : crc=1c {verdict}\n{bytes} t={milli}\n")
    }

    fn fake_with(id: &str, content: &str) -> Arc<FakeSysfs> {
        let f = Arc::new(FakeSysfs::new());
        f.set(&format!("{W1_DEVICES}/{id}/w1_slave"), content);
        f
    }

    fn read(f: &Arc<FakeSysfs>, id: &str) -> Result<f64, SensorError> {
        let mut s = Ds18b20::new("t", id, f.clone(), None);
        s.read().map(|r| r.get(Quantity::Temperature).unwrap())
    }

    #[test]
    fn parses_w1_slave() {
        let f = fake_with("28-0316a2795bff", &w1_slave(23_125, true));
        assert_eq!(read(&f, "28-0316a2795bff").unwrap(), 23.125);
        let f = fake_with("28-01", &w1_slave(-10_250, true));
        assert_eq!(read(&f, "28-01").unwrap(), -10.25);
    }

    #[test]
    fn crc_no_is_an_error_not_a_value() {
        let f = fake_with("28-01", &w1_slave(23_125, false));
        assert_eq!(read(&f, "28-01").unwrap_err().reason(), ErrorReason::Crc);
    }

    #[test]
    fn garbage_and_zeros_and_disconnects_are_errors() {
        let f = fake_with("28-01", "garbage\n");
        assert_eq!(read(&f, "28-01").unwrap_err().reason(), ErrorReason::Parse);
        let f = fake_with(
            "28-01",
            "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n",
        );
        assert_eq!(read(&f, "28-01").unwrap_err().reason(), ErrorReason::Crc);
        let f = fake_with("28-01", &w1_slave(-127_000, true));
        assert_eq!(
            read(&f, "28-01").unwrap_err().reason(),
            ErrorReason::OutOfRange
        );
        f.remove(&format!("{W1_DEVICES}/28-01"));
        assert_eq!(
            read(&f, "28-01").unwrap_err().reason(),
            ErrorReason::NotPresent
        );
    }

    #[test]
    fn power_on_85_needs_confirmation() {
        let path = format!("{W1_DEVICES}/28-01/w1_slave");
        let f = Arc::new(FakeSysfs::new());
        f.set_sequence(
            &path,
            vec![Ok(w1_slave(85_000, true)), Ok(w1_slave(21_500, true))],
        );
        assert_eq!(
            read(&f, "28-01").unwrap(),
            21.5,
            "the reset value is replaced by the second read"
        );
        f.set(&path, w1_slave(85_000, true));
        assert_eq!(
            read(&f, "28-01").unwrap(),
            85.0,
            "confirmed twice: really 85 °C"
        );
    }

    #[test]
    fn prefers_the_temperature_attribute() {
        let f = fake_with("28-01", &w1_slave(10_000, true));
        f.set(&format!("{W1_DEVICES}/28-01/temperature"), "19875\n");
        assert_eq!(read(&f, "28-01").unwrap(), 19.875);
    }

    #[test]
    fn eio_on_the_temperature_attribute_is_a_crc_failure() {
        let f = fake_with("28-01", &w1_slave(10_000, true));
        let t = format!("{W1_DEVICES}/28-01/temperature");
        f.set_sequence(&t, vec![Err(errno::EIO), Ok("20500\n".into())]);
        assert_eq!(read(&f, "28-01").unwrap_err().reason(), ErrorReason::Crc);
        assert_eq!(read(&f, "28-01").unwrap(), 20.5, "the next read recovers");
    }

    /// A bus of `n` sensors on `w1_bus_master1`, with conversions modelled.
    pub(crate) fn bus_of(n: usize, conversion: Duration) -> (Arc<FakeSysfs>, Vec<String>) {
        let f = Arc::new(FakeSysfs::new());
        let ids: Vec<String> = (0..n).map(|i| format!("28-00000000{i:04x}")).collect();
        for (i, id) in ids.iter().enumerate() {
            f.set(
                &format!("{W1_DEVICES}/{id}/w1_slave"),
                w1_slave(20_000 + i as i64 * 125, true),
            );
            f.set(&format!("{W1_DEVICES}/w1_bus_master1/{id}/id"), "");
        }
        f.set(
            &format!("{W1_DEVICES}/w1_bus_master1/therm_bulk_read"),
            "0\n",
        );
        f.model_w1_conversions(conversion);
        (f, ids)
    }

    #[test]
    fn bulk_read_costs_one_conversion_for_all() {
        let conv = Duration::from_millis(40);
        let (f, ids) = bus_of(5, conv);
        let dynf: Arc<dyn SysfsBus> = f.clone();
        assert_eq!(
            Ds18b20::master_of(&*dynf, &ids[0]).as_deref(),
            Some("w1_bus_master1")
        );
        let bulk = Arc::new(BulkRead::new(dynf.clone(), "w1_bus_master1"));
        let mut sensors: Vec<Ds18b20> = ids
            .iter()
            .map(|id| Ds18b20::new(id, id, dynf.clone(), Some(bulk.clone())))
            .collect();
        let t0 = Instant::now();
        let values: Vec<f64> = sensors
            .iter_mut()
            .map(|s| s.read().unwrap().get(Quantity::Temperature).unwrap())
            .collect();
        let bulk_took = t0.elapsed();
        assert_eq!(values, [20.0, 20.125, 20.25, 20.375, 20.5]);
        let triggers = f
            .writes()
            .iter()
            .filter(|(p, v)| p.ends_with("therm_bulk_read") && v.trim() == "trigger")
            .count();
        assert_eq!(triggers, 1, "one conversion for the whole bus");
        assert!(bulk_took < conv * 3, "about one conversion: {bulk_took:?}");

        let mut seq: Vec<Ds18b20> = ids
            .iter()
            .map(|id| Ds18b20::new(id, id, dynf.clone(), None))
            .collect();
        let t0 = Instant::now();
        for s in &mut seq {
            s.read().unwrap();
        }
        assert!(
            t0.elapsed() >= conv * 5,
            "sequential reads convert one by one: {:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn discovers_sensors_not_masters() {
        let (f, ids) = bus_of(3, Duration::ZERO);
        assert_eq!(discover(&*f), ids);
    }
}
