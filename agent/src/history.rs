//! Recent values of every sensor, for the node page's sparklines (`GET /api/v1/history`).
//!
//! One ring per sensor and quantity, sized for the retention at the sensor's interval, so memory
//! is fixed at start: each sample is 8 bytes (Unix seconds as `u32`, the value as `f32`); the
//! built-in simulated node keeps 1 h of its 6 series (at 2–5 s) in 6 486 samples, 51 KiB.
//! Only the hub writes; readers take the lock for the time of a copy.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, UNIX_EPOCH},
};

use edgesense_sensors::{Quantity, Readings};
use serde_json::{json, Value};

use crate::spec::NodeSpec;

/// Bytes one sample takes in a ring.
pub const SAMPLE_BYTES: usize = std::mem::size_of::<(u32, f32)>();

struct Series {
    quantity: Quantity,
    samples: VecDeque<(u32, f32)>,
    capacity: usize,
}

struct SensorHistory {
    name: String,
    series: Vec<Series>,
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
                .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let oldest = at.saturating_sub(u32::try_from(self.retention.as_secs()).unwrap_or(u32::MAX));
        for series in &mut s.series {
            let Some(v) = r.get(series.quantity) else {
                continue;
            };
            while series.samples.len() >= series.capacity
                || series.samples.front().is_some_and(|(t, _)| *t < oldest)
            {
                series.samples.pop_front();
            }
            series.samples.push_back((at, v as f32));
        }
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
    /// (times in ms, whole seconds),
    /// for one sensor when `only` is given.
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
                            .map(|(t, v)| json!([u64::from(*t) * 1000, f64::from(*v)]))
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
    use crate::{config, spec};
    use std::time::SystemTime;

    fn node(history: &str) -> NodeSpec {
        let text = format!("history = \"{history}\"\npoll_interval = \"1s\"\n[[sensor]]\nname = \"env\"\nkind = \"bme280\"\n");
        let l = config::parse(std::path::Path::new("h.toml"), text).unwrap();
        spec::resolve(
            &l,
            &spec::Overrides {
                simulate: true,
                ..Default::default()
            },
        )
        .unwrap()
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
}
