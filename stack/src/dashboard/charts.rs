//! `GET /api/range`: the history charts, cheap for Prometheus at 300 nodes. By default a
//! chart is the fleet's band per sensor (min, mean and max across nodes, aggregated by
//! Prometheus) and the few highest series of the window (picked by one instant query over the
//! window, then only those range-queried); `node=` gives that node's own lines instead. Every
//! line is one node and sensor however often its agent was replaced (a new container has a new
//! address, so a new `instance`): series are folded by the node name node_info gave each
//! instance over the window.

use std::collections::{BTreeMap, HashMap};

use axum::{
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::{bad, label, now_s, params, query, Dash};
use crate::http;

/// Highest series drawn beside the fleet's bands.
const TOP: usize = 5;
/// With more sensor names than this, the bands are the whole fleet's (by nothing), not per
/// sensor: a fleet whose nodes name their sensors each their own way.
const BAND_SENSORS: usize = 6;
/// Points per series, at most.
const POINTS: u64 = 600;

/// One line of a chart: a node's sensor, or a band (`min`, `mean`, `max`) of a sensor across
/// the fleet (`node` empty, `sensor` empty when the band is across every sensor).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    pub node: String,
    pub sensor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<&'static str>,
    /// `[milliseconds, value]`, in time order.
    pub points: Vec<(f64, f64)>,
}

/// The window asked for: `seconds` ending at `end_s`, one point every `step_s`.
struct Window {
    seconds: u64,
    end_s: u64,
    step_s: u64,
}

impl Window {
    fn new(seconds: u64) -> Window {
        Window {
            seconds,
            end_s: now_s(),
            step_s: (seconds / POINTS).max(1),
        }
    }

    /// `[range:step]`: a subquery over the window at the charts' own resolution (what the
    /// charts show, and as cheap as one range query).
    fn subquery(&self) -> String {
        format!("[{}s:{}s]", self.seconds, self.step_s)
    }
}

/// `GET /api/range?metric=temperature|humidity|pressure&range=1h|24h|7d[&node=NAME]`.
pub async fn range(State(d): State<Dash>, RawQuery(q): RawQuery) -> Response {
    let p = params(q.as_deref());
    let metric = match p.get("metric").map(String::as_str).unwrap_or("temperature") {
        "temperature" => "edgesense_temperature_celsius",
        "humidity" => "edgesense_humidity_ratio",
        "pressure" => "edgesense_pressure_pascals",
        other => {
            return bad(format!(
                "metric {other:?}: temperature, humidity or pressure"
            ))
        }
    };
    let seconds: u64 = match p.get("range").map(String::as_str).unwrap_or("1h") {
        "1h" => 3600,
        "24h" => 86_400,
        "7d" => 7 * 86_400,
        other => return bad(format!("range {other:?}: 1h, 24h or 7d")),
    };
    let w = Window::new(seconds);
    let node = p
        .get("node")
        .map(|n| percent_decode(n))
        .filter(|n| !n.is_empty());
    let series = match &node {
        Some(n) => node_lines(&d, metric, &w, n).await,
        None => fleet_lines(&d, metric, &w).await,
    };
    match series {
        Ok(series) => Json(json!({
            "metric": metric,
            "range_s": w.seconds,
            "end_s": w.end_s,
            "step_s": w.step_s,
            "node": node,
            "series": series,
        }))
        .into_response(),
        Err(e) => Json(json!({ "error": format!("Prometheus: {e}") })).into_response(),
    }
}

/// Instance → node, from node_info over the window (an agent replaced within it keeps its
/// node).
async fn names_over(d: &Dash, w: &Window) -> Result<HashMap<String, String>, String> {
    let q = format!(
        "max by (instance, node) (max_over_time(edgesense_node_info{}))",
        w.subquery()
    );
    Ok(query(d, &q)
        .await?
        .iter()
        .map(|r| (label(r, "instance").to_owned(), label(r, "node").to_owned()))
        .collect())
}

async fn query_range(d: &Dash, q: &str, w: &Window) -> Result<Vec<Value>, String> {
    let url = format!(
        "{}/api/v1/query_range?query={}&start={}&end={}&step={}",
        d.prometheus,
        http::urlencode(q),
        w.end_s - w.seconds,
        w.end_s,
        w.step_s
    );
    let (status, body) = d.access.get(&url, super::TIMEOUT).await?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("Prometheus answered {status}: {e}"))?;
    if v["status"] != "success" {
        return Err(v["error"].as_str().unwrap_or("query failed").to_owned());
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The fleet's bands per sensor (across every sensor when there are too many names), then the
/// [`TOP`] highest node and sensor pairs of the window.
async fn fleet_lines(d: &Dash, metric: &str, w: &Window) -> Result<Vec<Series>, String> {
    let mut bands = query_range(d, &bands_query(metric, "by (sensor)"), w).await?;
    let sensors: std::collections::BTreeSet<&str> =
        bands.iter().map(|r| label(r, "sensor")).collect();
    if sensors.len() > BAND_SENSORS {
        bands = query_range(d, &bands_query(metric, ""), w).await?;
    }
    let mut lines: Vec<Series> = bands
        .iter()
        .map(|r| Series {
            sensor: label(r, "sensor").to_owned(),
            band: ["min", "mean", "max"]
                .into_iter()
                .find(|b| *b == label(r, "band")),
            points: points(r),
            ..Series::default()
        })
        .collect();
    lines.sort_by(|a, b| (&a.sensor, a.band).cmp(&(&b.sensor, b.band)));
    let names = names_over(d, w).await?;
    let q = highest_query(metric, w);
    let mut top: Vec<(String, String, f64)> = Vec::new();
    for r in query(d, &q).await? {
        let node = node_of(&names, label(&r, "instance"));
        let pair = (node.to_owned(), label(&r, "sensor").to_owned());
        let v = super::number(&r).unwrap_or(f64::NAN);
        if !top.iter().any(|(n, s, _)| (n, s) == (&pair.0, &pair.1)) {
            top.push((pair.0, pair.1, v));
        }
    }
    top.sort_by(|a, b| b.2.total_cmp(&a.2));
    top.truncate(TOP);
    if top.is_empty() {
        return Ok(lines);
    }
    let nodes: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
    let sensors: Vec<&str> = top.iter().map(|t| t.1.as_str()).collect();
    let found = query_range(d, &lines_query(metric, &names, &nodes, &sensors), w).await?;
    let mut highest = fold(&found, &names);
    highest.retain(|s| top.iter().any(|t| (&t.0, &t.1) == (&s.node, &s.sensor)));
    let rank = |s: &Series| {
        top.iter()
            .position(|t| (&t.0, &t.1) == (&s.node, &s.sensor))
    };
    highest.sort_by_key(rank);
    lines.extend(highest);
    Ok(lines)
}

/// `node`'s own lines, one per sensor.
async fn node_lines(d: &Dash, metric: &str, w: &Window, node: &str) -> Result<Vec<Series>, String> {
    let names = names_over(d, w).await?;
    if !names.values().any(|n| n == node) {
        return Ok(Vec::new());
    }
    let found = query_range(d, &lines_query(metric, &names, &[node], &[]), w).await?;
    Ok(fold(&found, &names))
}

/// The series that rose farthest above their sensor's fleet mean over the window (the SoC
/// that is always warmer than a room is not news; a room at 40 °C among rooms at 21 °C is),
/// twice as many as drawn: a replaced agent's old and new instance fold into one.
fn highest_query(metric: &str, w: &Window) -> String {
    let over = w.subquery();
    format!(
        "topk({}, max by (instance, sensor) (max_over_time({metric}{over})) - on (sensor) group_left () avg by (sensor) (avg_over_time({metric}{over})))",
        2 * TOP
    )
}

/// min, mean and max of `metric` across the fleet, `by` (`by (sensor)` or nothing), each
/// labelled `band`: one range query, aggregated by Prometheus.
fn bands_query(metric: &str, by: &str) -> String {
    [("min", "min"), ("mean", "avg"), ("max", "max")]
        .iter()
        .map(|(band, op)| {
            format!("label_replace({op} {by} ({metric}), \"band\", \"{band}\", \"\", \"\")")
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `metric` of every instance the window knows for `nodes` (and only `sensors`, when given),
/// one series per instance and sensor (the labels a backfilled series may lack or add are
/// folded away).
fn lines_query(
    metric: &str,
    names: &HashMap<String, String>,
    nodes: &[&str],
    sensors: &[&str],
) -> String {
    let mut instances: Vec<&str> = names
        .iter()
        .filter(|(_, n)| nodes.contains(&n.as_str()))
        .map(|(i, _)| i.as_str())
        .collect();
    // A node that never had node_info is named by its instance.
    instances.extend(nodes.iter().filter(|n| !names.values().any(|x| x == *n)));
    instances.sort_unstable();
    instances.dedup();
    let mut selector = format!("instance=~\"{}\"", regex_alternatives(&instances));
    if !sensors.is_empty() {
        selector += &format!(",sensor=~\"{}\"", regex_alternatives(sensors));
    }
    format!("max by (instance, sensor) ({metric}{{{selector}}})")
}

/// `values` as one RE2 alternation matching exactly them, quoted for a PromQL string.
pub fn regex_alternatives(values: &[&str]) -> String {
    let mut uniq: Vec<&str> = values.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    uniq.iter()
        .map(|v| {
            let mut out = String::new();
            for c in v.chars() {
                match c {
                    // Escaped for the regex, then each backslash for the string.
                    '\\' => out.push_str(r"\\\\"),
                    '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                        out.push_str(r"\\");
                        out.push(c);
                    }
                    '"' => out.push_str(r#"\""#),
                    c => out.push(c),
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn node_of<'a>(names: &'a HashMap<String, String>, instance: &'a str) -> &'a str {
    names
        .get(instance)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(instance)
}

fn points(r: &Value) -> Vec<(f64, f64)> {
    r["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_f64()? * 1000.0, p[1].as_str()?.parse().ok()?)))
        .filter(|(_, v): &(f64, f64)| v.is_finite())
        .collect()
}

/// Range-query results (one per instance and sensor) → one series per node and sensor, by
/// node name: the instances of one node (its agent replaced) merge, the higher value where
/// both have a point at one time. Sorted by node (naturally), then sensor.
pub fn fold(results: &[Value], names: &HashMap<String, String>) -> Vec<Series> {
    let mut by: BTreeMap<(String, String), BTreeMap<i64, f64>> = BTreeMap::new();
    for r in results {
        let key = (
            node_of(names, label(r, "instance")).to_owned(),
            label(r, "sensor").to_owned(),
        );
        let merged = by.entry(key).or_default();
        for (t, v) in points(r) {
            merged
                .entry(t as i64)
                .and_modify(|x| *x = x.max(v))
                .or_insert(v);
        }
    }
    let mut out: Vec<Series> = by
        .into_iter()
        .map(|((node, sensor), p)| Series {
            node,
            sensor,
            band: None,
            points: p.into_iter().map(|(t, v)| (t as f64, v)).collect(),
        })
        .collect();
    out.sort_by(|a, b| {
        super::fleet::natural_cmp(&a.node, &b.node).then_with(|| a.sensor.cmp(&b.sensor))
    });
    out
}

/// `%XX` and `+` in a query parameter.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(instance: &str, sensor: &str, points: &[(f64, &str)]) -> Value {
        json!({
            "metric": {"instance": instance, "sensor": sensor},
            "values": points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_replaced_agent_folds_into_one_series_per_node_and_sensor() {
        let names: HashMap<String, String> = [
            ("10.0.1.5:9842", "pi-a"),
            ("10.0.1.7:9842", "pi-a"),
            ("10.0.1.9:9842", "pi-10"),
            ("10.0.1.8:9842", "pi-9"),
        ]
        .into_iter()
        .map(|(i, n)| (i.to_owned(), n.to_owned()))
        .collect();
        let results = [
            result("10.0.1.5:9842", "env", &[(100.0, "20.5"), (101.0, "20.6")]),
            result("10.0.1.7:9842", "env", &[(101.0, "20.9"), (102.0, "21")]),
            result("10.0.1.7:9842", "room", &[(102.0, "22")]),
            result("10.0.1.9:9842", "env", &[(100.0, "NaN"), (101.0, "19")]),
            result("10.0.1.8:9842", "env", &[(101.0, "18")]),
            result("10.0.9.9:9842", "env", &[(101.0, "17")]),
        ];
        let got = fold(&results, &names);
        let keys: Vec<String> = got
            .iter()
            .map(|s| format!("{} / {}", s.node, s.sensor))
            .collect();
        assert_eq!(
            keys,
            [
                "10.0.9.9:9842 / env",
                "pi-9 / env",
                "pi-10 / env",
                "pi-a / env",
                "pi-a / room"
            ]
        );
        assert_eq!(
            got[3].points,
            [(100_000.0, 20.5), (101_000.0, 20.9), (102_000.0, 21.0)]
        );
        assert_eq!(got[2].points, [(101_000.0, 19.0)], "NaN is no point");
    }

    #[test]
    fn queries_select_exactly_the_nodes_instances() {
        let names: HashMap<String, String> = [
            ("10.0.1.5:9842", "pi-a"),
            ("10.0.1.7:9842", "pi-a"),
            ("10.0.1.9:9842", "pi-b"),
        ]
        .into_iter()
        .map(|(i, n)| (i.to_owned(), n.to_owned()))
        .collect();
        assert_eq!(
            lines_query("m", &names, &["pi-a"], &["env", "room"]),
            r#"max by (instance, sensor) (m{instance=~"10\\.0\\.1\\.5:9842|10\\.0\\.1\\.7:9842",sensor=~"env|room"})"#
        );
        assert_eq!(regex_alternatives(&["a\"b", "x|y", "x|y"]), r#"a\"b|x\\|y"#);
        assert_eq!(
            bands_query("m", "by (sensor)"),
            r#"label_replace(min by (sensor) (m), "band", "min", "", "") or label_replace(avg by (sensor) (m), "band", "mean", "", "") or label_replace(max by (sensor) (m), "band", "max", "", "")"#
        );
        assert_eq!(
            highest_query("m", &Window::new(3600)),
            "topk(10, max by (instance, sensor) (max_over_time(m[3600s:6s])) - on (sensor) group_left () avg by (sensor) (avg_over_time(m[3600s:6s])))"
        );
        assert_eq!(percent_decode("pi%2Da+07%"), "pi-a 07%");
    }
}
