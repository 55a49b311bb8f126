//! Recent values of every sensor, for the node page's sparklines (`GET /api/v1/history`).
//!
//! One ring per sensor and quantity, sized for the retention at the sensor's interval, so memory
//! is fixed at start: each sample is 12 bytes (its time to the millisecond, the value as `f32`);
//! the built-in simulated node keeps 1 h of its 6 series (at 2–5 s) in 6 486 samples, 76 KiB.
//! Times are exact to the millisecond because the backfill ([`crate::backfill`]) pushes a
//! reading at its own time, and tells the readings a scrape served from those it missed by
//! comparing that time with the scrape's.
//! Only the hub writes; readers take the lock for the time of a copy.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, UNIX_EPOCH},
};

use edgesense_sensors::{Quantity, Readings, SensorKind};
use serde_json::{json, Value};

use crate::spec::NodeSpec;

/// Bytes one sample takes in a ring.
pub const SAMPLE_BYTES: usize = std::mem::size_of::<Sample>();

/// One reading of one quantity: when (Unix seconds and the milliseconds beyond), and the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    secs: u32,
    millis: u16,
    pub value: f32,
}

impl Sample {
    pub fn new(at_ms: i64, value: f32) -> Sample {
        let at_ms = at_ms.max(0);
        Sample {
            secs: u32::try_from(at_ms / 1000).unwrap_or(u32::MAX),
            millis: u16::try_from(at_ms % 1000).unwrap_or(0),
            value,
        }
    }

    /// When, in ms since the Unix epoch.
    pub fn at_ms(&self) -> i64 {
        i64::from(self.secs) * 1000 + i64::from(self.millis)
    }

    /// The value as the decimal it was read as: `21.437f32` is 21.43700027…, whose shortest
    /// form "21.437" is the `f64` the scrape showed.
    pub fn value_f64(&self) -> f64 {
        self.value
            .to_string()
            .parse()
            .unwrap_or(f64::from(self.value))
    }
}

struct Series {
    quantity: Quantity,
    samples: VecDeque<Sample>,
    capacity: usize,
}

struct SensorHistory {
    name: String,
    kind: SensorKind,
    series: Vec<Series>,
}

/// Samples of one series taken inside a time range ([`History::between`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples<'a> {
    pub sensor: &'a str,
    pub kind: SensorKind,
    pub quantity: Quantity,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// What [`History::between`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice<'a> {
    pub series: Vec<SeriesSamples<'a>>,
    /// The latest time (ms) the slice covers: every sample up to it is in `series`.
    pub until_ms: i64,
}

impl Slice<'_> {
    pub fn samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// The history of every sensor of a node.
pub struct History {
    retention: Duration,
    sensors: Vec<SensorHistory>,
}

/// A shared handle: the hub records, the HTTP side reads.
pub type SharedHistory = Arc<Mutex<History>>;

impl History {
    /// Rings for every sensor of `spec`, each holding `spec.history` at the sensor's interval.
    pub fn new(spec: &NodeSpec) -> History {
        let sensors = spec
            .sensors
            .iter()
            .map(|s| {
                let per_interval = spec.history.as_millis() / s.interval.as_millis().max(1);
                let capacity = usize::try_from(per_interval)
                    .unwrap_or(usize::MAX)
                    .clamp(1, 100_000)
                    + 1;
                SensorHistory {
                    name: s.name.clone(),
                    kind: s.kind,
                    series: s
                        .kind
                        .quantities()
                        .iter()
                        .map(|&quantity| Series {
                            quantity,
                            samples: VecDeque::with_capacity(capacity),
                            capacity,
                        })
                        .collect(),
                }
            })
            .collect();
        History {
            retention: spec.history,
            sensors,
        }
    }

    pub fn shared(spec: &NodeSpec) -> SharedHistory {
        Arc::new(Mutex::new(History::new(spec)))
    }

    /// Appends a successful read of sensor `i`.
    pub fn record(&mut self, i: usize, r: &Readings) {
        let Some(s) = self.sensors.get_mut(i) else {
            return;
        };
        let at =
            r.at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let oldest = at - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        for series in &mut s.series {
            let Some(v) = r.get(series.quantity) else {
                continue;
            };
            while series.samples.len() >= series.capacity
                || series.samples.front().is_some_and(|x| x.at_ms() < oldest)
            {
                series.samples.pop_front();
            }
            series.samples.push_back(Sample::new(at, v as f32));
        }
    }

    /// The samples taken after `after_ms` and before `before_ms` (both exclusive), oldest
    /// first, about `limit` of them in all: the slice ends at one time for every series (so
    /// each series' samples stay in order across slices), and takes every sample of that last
    /// millisecond even beyond `limit`.
    pub fn between(&self, after_ms: i64, before_ms: i64, limit: usize) -> Slice<'_> {
        let inside = |t: i64| t > after_ms && t < before_ms;
        let mut times: Vec<i64> = self
            .sensors
            .iter()
            .flat_map(|s| &s.series)
            .flat_map(|se| se.samples.iter().map(Sample::at_ms))
            .filter(|&t| inside(t))
            .collect();
        let until_ms = if times.len() > limit.max(1) {
            let (_, nth, _) = times.select_nth_unstable(limit.max(1) - 1);
            *nth
        } else {
            before_ms - 1
        };
        let series = self
            .sensors
            .iter()
            .flat_map(|s| {
                s.series.iter().map(move |se| SeriesSamples {
                    sensor: &s.name,
                    kind: s.kind,
                    quantity: se.quantity,
                    samples: se
                        .samples
                        .iter()
                        .copied()
                        .filter(|x| inside(x.at_ms()) && x.at_ms() <= until_ms)
                        .collect(),
                })
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        Slice { series, until_ms }
    }

    /// How many samples [`History::between`] would find without a limit.
    pub fn count_between(&self, after_ms: i64, before_ms: i64) -> usize {
        self.sensors
            .iter()
            .flat_map(|s| &s.series)
            .flat_map(|se| &se.samples)
            .filter(|x| x.at_ms() > after_ms && x.at_ms() < before_ms)
            .count()
    }

    /// The oldest sample's time (ms) over every series, if any.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.sensors
            .iter()
            .flat_map(|s| &s.series)
            .filter_map(|se| se.samples.front())
            .map(Sample::at_ms)
            .min()
    }

    /// Samples held, over every series.
    pub fn len(&self) -> usize {
        self.sensors
            .iter()
            .flat_map(|s| &s.series)
            .map(|se| se.samples.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every series: (sensor, quantity, samples oldest first).
    pub fn all(&self) -> Vec<(&str, Quantity, Vec<Sample>)> {
        self.sensors
            .iter()
            .flat_map(|s| {
                s.series.iter().map(move |se| {
                    (
                        s.name.as_str(),
                        se.quantity,
                        se.samples.iter().copied().collect(),
                    )
                })
            })
            .collect()
    }

    /// Puts back `samples` of `sensor`'s `quantity` (kept over a restart) before what the ring
    /// holds, within its capacity and retention; returns how many went in (none for a sensor
    /// or quantity this node no longer has).
    pub fn restore(&mut self, sensor: &str, quantity: Quantity, samples: &[Sample]) -> usize {
        let Some(se) = self
            .sensors
            .iter_mut()
            .filter(|s| s.name == sensor)
            .flat_map(|s| s.series.iter_mut())
            .find(|se| se.quantity == quantity)
        else {
            return 0;
        };
        let first_now = se.samples.front().map_or(i64::MAX, Sample::at_ms);
        let newest = se
            .samples
            .back()
            .map(Sample::at_ms)
            .or(samples.last().map(Sample::at_ms));
        let oldest = newest.map_or(i64::MIN, |n| {
            n - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)
        });
        let room = se.capacity.saturating_sub(se.samples.len());
        let older: Vec<Sample> = samples
            .iter()
            .copied()
            .filter(|s| s.at_ms() < first_now && s.at_ms() >= oldest)
            .collect();
        let keep = &older[older.len().saturating_sub(room)..];
        for s in keep.iter().rev() {
            se.samples.push_front(*s);
        }
        keep.len()
    }

    /// How long the rings keep a sample (`history`).
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Memory the rings reserve, in bytes.
    pub fn reserved_bytes(&self) -> usize {
        self.sensors
            .iter()
            .flat_map(|s| &s.series)
            .map(|s| s.capacity * SAMPLE_BYTES)
            .sum()
    }

    /// `{"retention_s": …, "sensors": [{"name", "series": {"temperature_celsius": [[t_ms, v], …]}}]}`
    /// (times in ms since the Unix epoch), for one sensor when `only` is given.
    pub fn to_json(&self, only: Option<&str>) -> Option<Value> {
        let sensors: Vec<Value> = self
            .sensors
            .iter()
            .filter(|s| only.is_none_or(|n| n == s.name))
            .map(|s| {
                let series: serde_json::Map<String, Value> = s
                    .series
                    .iter()
                    .map(|se| {
                        let key = format!("{}_{}", se.quantity.as_str(), se.quantity.unit());
                        let points: Vec<Value> = se
                            .samples
                            .iter()
                            .map(|x| json!([x.at_ms(), x.value_f64()]))
                            .collect();
                        (key, Value::Array(points))
                    })
                    .collect();
                json!({ "name": s.name, "series": series })
            })
            .collect();
        if only.is_some() && sensors.is_empty() {
            return None;
        }
        Some(json!({ "retention_s": self.retention.as_secs(), "sensors": sensors }))
    }
}

/// Locks `h`, surviving a poisoned lock (a panic elsewhere must not take the page down).
pub fn lock(h: &SharedHistory) -> std::sync::MutexGuard<'_, History> {
    h.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;
    use std::time::SystemTime;

    fn node(history: &str) -> NodeSpec {
        spec::simulated(&format!("history = \"{history}\"\npoll_interval = \"1s\"\n[[sensor]]\nname = \"env\"\nkind = \"bme280\"\n"))
    }

    #[test]
    fn rings_are_bounded_by_retention_and_keep_order() {
        let n = node("10s");
        let mut h = History::new(&n);
        assert_eq!(
            h.reserved_bytes(),
            3 * 11 * SAMPLE_BYTES,
            "3 quantities × (10 s / 1 s + 1)"
        );
        let t0 = SystemTime::now();
        for i in 0..30u64 {
            let r = Readings::new(t0 + Duration::from_secs(i))
                .with(Quantity::Temperature, i as f64)
                .with(Quantity::Pressure, 100_000.0);
            h.record(0, &r);
        }
        let v = h.to_json(Some("env")).unwrap();
        let temps = v["sensors"][0]["series"]["temperature_celsius"]
            .as_array()
            .unwrap();
        assert!(temps.len() <= 11, "{}", temps.len());
        let values: Vec<f64> = temps.iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert_eq!(*values.last().unwrap(), 29.0);
        assert!(values.windows(2).all(|w| w[0] < w[1]));
        assert!(values[0] >= 19.0, "older than 10 s dropped: {values:?}");
        assert!(v["sensors"][0]["series"]["humidity_ratio"]
            .as_array()
            .unwrap()
            .is_empty());
        assert!(h.to_json(Some("nope")).is_none());
        assert_eq!(v["retention_s"], 10);
    }

    #[test]
    fn slices_cover_a_range_in_order_and_end_at_one_time_for_every_series() {
        let n = node("1h");
        let mut h = History::new(&n);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        for i in 0..100u64 {
            let r = Readings::new(t0 + Duration::from_secs(i))
                .with(Quantity::Temperature, 20.0 + i as f64 / 10.0)
                .with(Quantity::Pressure, 100_000.0 + i as f64);
            h.record(0, &r);
        }
        // (1 010 s, 1 050 s) exclusive: 39 seconds, two series each.
        let (after, before) = (1_010_000, 1_050_000);
        assert_eq!(h.count_between(after, before), 78);
        let whole = h.between(after, before, 1_000);
        assert_eq!(whole.samples(), 78);
        assert_eq!(whole.until_ms, before - 1);
        // In pieces of about 10: every piece ends at one second for both series.
        let mut from = after;
        let mut got = Vec::new();
        while from < before - 1 {
            let s = h.between(from, before, 10);
            assert!(s.samples() >= 10 || s.until_ms == before - 1, "{s:?}");
            assert_eq!(s.series.len(), 2);
            assert_eq!(
                s.series[0].samples.last().map(Sample::at_ms),
                s.series[1].samples.last().map(Sample::at_ms)
            );
            for se in &s.series {
                assert!(se.samples.windows(2).all(|w| w[0].at_ms() < w[1].at_ms()));
            }
            got.extend(s.series.iter().flat_map(|x| x.samples.clone()));
            from = s.until_ms;
        }
        assert_eq!(got.len(), 78, "every sample once");
        assert_eq!(h.oldest_ms(), Some(1_000_000));
        let s = &whole.series[0];
        assert_eq!(
            (s.sensor, s.kind, s.quantity),
            ("env", SensorKind::Bme280, Quantity::Temperature)
        );
    }
}
