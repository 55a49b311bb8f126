//! What the backfill tests compare: an agent's own record of its readings (`/api/v1/history`)
//! against the raw samples Prometheus holds of the same series.

use std::collections::BTreeMap;

use crate::{http_encode, Endpoint};

/// Now, ms since the Unix epoch (the agents' history and Prometheus use the wall clock).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The `temperature_celsius` series of a `GET /api/v1/history?sensor=…` answer: time (ms) →
/// value.
pub fn temperatures(history: &serde_json::Value) -> BTreeMap<i64, f64> {
    history["sensors"][0]["series"]["temperature_celsius"]
        .as_array()
        .expect("a temperature series in the history")
        .iter()
        .filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?)))
        .collect()
}

/// Every raw sample Prometheus at `prom` holds of `selector` in the `secs` before `at_ms`:
/// time (ms) → value. Panics if the selector matches more than one series.
pub fn raw_samples(prom: &Endpoint, selector: &str, at_ms: i64, secs: i64) -> BTreeMap<i64, f64> {
    let q = http_encode(&format!("{selector}[{secs}s]"));
    let v = prom.get_json(&format!(
        "/api/v1/query?query={q}&time={:.3}",
        at_ms as f64 / 1000.0
    ));
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    assert!(result.len() <= 1, "one series, not {}: {v}", result.len());
    result
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let t = (p[0].as_f64()? * 1000.0).round() as i64;
            Some((t, p[1].as_str()?.parse::<f64>().ok()?))
        })
        .collect()
}

/// Of the `readings` taken after `from_ms` and before `to_ms`, how many Prometheus `held` at
/// their own time with their value, and how many there were.
pub fn coverage(
    readings: &BTreeMap<i64, f64>,
    held: &BTreeMap<i64, f64>,
    from_ms: i64,
    to_ms: i64,
) -> (usize, usize) {
    let inside: Vec<(&i64, &f64)> = readings.range(from_ms + 1..to_ms).collect();
    let found = inside
        .iter()
        .filter(|(t, v)| held.get(t).is_some_and(|h| (h - **v).abs() < 1e-6))
        .count();
    (found, inside.len())
}

/// The `instance` Prometheus at `prom` labels `node`'s agent with (from `edgesense_node_info`).
pub fn instance_of(prom: &Endpoint, node: &str) -> Option<String> {
    let q = http_encode(&format!("edgesense_node_info{{node=\"{node}\"}}"));
    let v = prom.get_json(&format!("/api/v1/query?query={q}"));
    v["data"]["result"][0]["metric"]["instance"]
        .as_str()
        .map(str::to_owned)
}

/// Of the `sensor` readings `node`'s agent took (its `history`) while Prometheus did not scrape
/// it (the longest stretch between two successful scrapes after `since_ms`), how many
/// Prometheus holds at their own time: (held, taken, the stretch in ms).
pub fn node_coverage(
    prom: &Endpoint,
    node: &str,
    sensor: &str,
    history: &serde_json::Value,
    since_ms: i64,
) -> Option<(usize, usize, i64)> {
    let instance = instance_of(prom, node)?;
    let now = wall_ms();
    let secs = (now - since_ms) / 1000 + 30;
    let up = raw_samples(prom, &format!("up{{instance=\"{instance}\"}}"), now, secs);
    let scraped: Vec<i64> = up
        .iter()
        .filter(|(t, v)| **t >= since_ms && **v == 1.0)
        .map(|(t, _)| *t)
        .collect();
    let (from, to) = scraped
        .windows(2)
        .map(|w| (w[0], w[1]))
        .max_by_key(|(a, b)| b - a)?;
    let held = raw_samples(
        prom,
        &format!("edgesense_temperature_celsius{{sensor=\"{sensor}\",instance=\"{instance}\"}}"),
        now,
        secs,
    );
    let (found, total) = coverage(&temperatures(history), &held, from, to);
    Some((found, total, to - from))
}
