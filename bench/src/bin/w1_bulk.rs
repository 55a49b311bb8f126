//! DS18B20 poll rounds on the fake 1-Wire bus: N sensors read one after another with a
//! conversion each (what a sensor-by-sensor exporter does), against one `therm_bulk_read`
//! conversion for the whole bus followed by N reads (what the agent does when the master offers
//! it). The fake sleeps the conversion time the way the kernel's w1_therm blocks a reader.
//!
//! `cargo run --release -p edgesense-bench --bin w1-bulk [-- --conversion-ms 750 --sensors 1,10,50]`
//! prints a Markdown table.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use edgesense_bench::{arg, arg_list};
use edgesense_sensors::{
    bus::sysfs::{FakeSysfs, SysfsBus},
    ds18b20::{BulkRead, Ds18b20, W1_DEVICES},
    Quantity, Sensor,
};

/// `w1_slave` for `milli` m°C with a good CRC.
fn w1_slave(milli: i64) -> String {
    let raw = (milli * 16 / 1000) as i16 as u16;
    let bytes = format!("{:02x} {:02x} 4b 46 7f ff 0c 10 1c", raw & 0xff, raw >> 8);
    format!("{bytes} : crc=1c YES\n{bytes} t={milli}\n")
}

fn bus(n: usize, conversion: Duration) -> (Arc<FakeSysfs>, Vec<String>) {
    let f = Arc::new(FakeSysfs::new());
    let ids: Vec<String> = (0..n).map(|i| format!("28-0000{i:08x}")).collect();
    for (i, id) in ids.iter().enumerate() {
        f.set(
            &format!("{W1_DEVICES}/{id}/w1_slave"),
            w1_slave(20_000 + i as i64 * 62),
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

/// Reads every sensor once; returns the wall time and checks every value came back.
fn round(sensors: &mut [Ds18b20]) -> Duration {
    let t0 = Instant::now();
    for s in sensors.iter_mut() {
        let r = s.read().expect("fake sensors read");
        assert!(r.get(Quantity::Temperature).is_some());
    }
    t0.elapsed()
}

fn main() {
    let conversion = Duration::from_millis(
        arg("--conversion-ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(750),
    );
    let counts: Vec<usize> = arg_list("--sensors", "1,10,50");
    println!(
        "DS18B20 poll round on the fake 1-Wire bus, {} ms conversion (12-bit)\n",
        conversion.as_millis()
    );
    println!("| sensors | sequential | bulk read | speed-up | bulk triggers |");
    println!("|---:|---:|---:|---:|---:|");
    for n in counts {
        let (f, ids) = bus(n, conversion);
        let dynf: Arc<dyn SysfsBus> = f.clone();
        let mut seq: Vec<Ds18b20> = ids
            .iter()
            .map(|id| Ds18b20::new(id, id, Arc::clone(&dynf), None))
            .collect();
        let seq_t = round(&mut seq);
        let before = f.writes().len();
        let bulk = Arc::new(BulkRead::new(Arc::clone(&dynf), "w1_bus_master1"));
        let mut bulked: Vec<Ds18b20> = ids
            .iter()
            .map(|id| Ds18b20::new(id, id, Arc::clone(&dynf), Some(Arc::clone(&bulk))))
            .collect();
        let bulk_t = round(&mut bulked);
        let triggers = f.writes().len() - before;
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.1}× | {triggers} |",
            seq_t.as_secs_f64(),
            bulk_t.as_secs_f64(),
            seq_t.as_secs_f64() / bulk_t.as_secs_f64()
        );
    }
}
