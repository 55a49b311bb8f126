//! `edgesense dashboard`: the cluster at a glance, from Prometheus and Alertmanager. Every node as
//! a card (name from `edgesense_node_info`, up or down, its sensors and values), history charts
//! from `query_range` (1 h / 24 h / 7 d), active and silenced alerts, and a button to silence
//! one. The page (embedded, no CDN) talks only to this server, which asks Prometheus and
//! Alertmanager; when either is unreachable the page says so instead of showing stale data.
//!
//! The silence button is an LED control (agents follow Alertmanager's silences), so the
//! dashboard guards it ([`guard`]): writes must be JSON from the dashboard's own origin, a
//! non-loopback listener needs the operator's password, and on loopback only the loopback host
//! names are answered (a DNS-rebinding page cannot reach it). It reaches Prometheus and
//! Alertmanager over https with the fleet CA, as the operator.

mod guard;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{RawQuery, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use edgesense_net::page;
use serde_json::{json, Value};

use crate::http;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
/// uPlot (MIT; stack/assets/vendor/uplot/, vendored by scripts/vendor-uplot.sh): the charts.
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");
/// Scripts only from the dashboard itself (uPlot and the page's own file), no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Dash {
    pub prometheus: Arc<str>,
    pub alertmanager: Arc<str>,
    /// The fleet CA and the operator's login for both.
    pub access: http::Access,
}

pub use guard::Guard;

/// The dashboard's routes behind `guard`.
pub fn router(d: Dash, guard: Guard) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/vendor/uPlot.iife.min.js", get(uplot_js))
        .route("/vendor/uPlot.min.css", get(uplot_css))
        .route("/api/cluster", get(cluster))
        .route("/api/range", get(range))
        .route("/api/alerts", get(alerts))
        .route("/api/silence", post(silence))
        .with_state(d)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
}

async fn page() -> impl IntoResponse {
    (page::html(CSP), Html(PAGE))
}

async fn script() -> impl IntoResponse {
    (page::SCRIPT, SCRIPT)
}

async fn uplot_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        UPLOT_JS,
    )
}

async fn uplot_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        UPLOT_CSS,
    )
}

/// Prometheus `/api/v1/query` → the result vector, or why not.
async fn query(d: &Dash, q: &str) -> Result<Vec<Value>, String> {
    let url = format!("{}/api/v1/query?query={}", d.prometheus, http::urlencode(q));
    let (status, body) = d.access.get(&url, TIMEOUT).await?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("Prometheus answered {status}: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "Prometheus: {}",
            v["error"].as_str().unwrap_or("query failed")
        ));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn label<'a>(r: &'a Value, name: &str) -> &'a str {
    r["metric"][name].as_str().unwrap_or("")
}

fn number(r: &Value) -> Option<f64> {
    r["value"][1].as_str()?.parse().ok()
}

/// Instance → node name, from node_info over the last hour (so a node that just went down keeps
/// its name).
async fn names(d: &Dash) -> Result<HashMap<String, (String, String, String)>, String> {
    Ok(query(
        d,
        "max by (instance, node, model, version) (max_over_time(edgesense_node_info[1h]))",
    )
    .await?
    .iter()
    .map(|r| {
        (
            label(r, "instance").to_owned(),
            (
                label(r, "node").to_owned(),
                label(r, "model").to_owned(),
                label(r, "version").to_owned(),
            ),
        )
    })
    .collect())
}

async fn cluster_json(d: &Dash) -> Result<Value, String> {
    let names = names(d).await?;
    let up: HashMap<String, f64> = query(d, "up{job=\"edgesense\"}")
        .await?
        .iter()
        .filter_map(|r| Some((label(r, "instance").to_owned(), number(r)?)))
        .collect();
    // instance → sensor → fields
    let mut sensors: BTreeMap<String, BTreeMap<String, serde_json::Map<String, Value>>> =
        BTreeMap::new();
    // A failing sensor's values are gone from the exposition: its last good ones (within the
    // hour) and when it last read well make it "stale" instead of current.
    for (metric, key) in [
        ("edgesense_temperature_celsius", "temperature_celsius"),
        ("edgesense_humidity_ratio", "humidity_ratio"),
        ("edgesense_pressure_pascals", "pressure_pascals"),
        (
            "last_over_time(edgesense_temperature_celsius[1h])",
            "last_temperature_celsius",
        ),
        (
            "last_over_time(edgesense_humidity_ratio[1h])",
            "last_humidity_ratio",
        ),
        (
            "last_over_time(edgesense_pressure_pascals[1h])",
            "last_pressure_pascals",
        ),
        (
            "edgesense_sensor_last_success_timestamp_seconds",
            "last_success_s",
        ),
        ("edgesense_sensor_up", "up"),
    ] {
        for r in query(d, metric).await? {
            let s = sensors
                .entry(label(&r, "instance").to_owned())
                .or_default()
                .entry(label(&r, "sensor").to_owned())
                .or_default();
            s.insert("kind".into(), json!(label(&r, "kind")));
            s.insert(key.into(), json!(number(&r)));
        }
    }
    // instance → LEDs: what each shows and why (edgesense_led_state), lit or not (led_on).
    let mut leds: BTreeMap<String, BTreeMap<String, serde_json::Map<String, Value>>> =
        BTreeMap::new();
    for r in query(d, "edgesense_led_state").await? {
        let l = leds
            .entry(label(&r, "instance").to_owned())
            .or_default()
            .entry(label(&r, "led").to_owned())
            .or_default();
        l.insert("mode".into(), json!(label(&r, "mode")));
        l.insert("reason".into(), json!(label(&r, "reason")));
    }
    for r in query(d, "edgesense_led_on").await? {
        leds.entry(label(&r, "instance").to_owned())
            .or_default()
            .entry(label(&r, "led").to_owned())
            .or_default()
            .insert("lit".into(), json!(number(&r) == Some(1.0)));
    }
    // instance → readings it still pushes to Prometheus (it was cut off, or Prometheus away).
    let backfilling: HashMap<String, f64> = query(d, "edgesense_backfill_samples_waiting > 0")
        .await?
        .iter()
        .filter_map(|r| Some((label(r, "instance").to_owned(), number(r)?)))
        .collect();
    let mut instances: Vec<&String> = up.keys().chain(names.keys()).collect();
    instances.sort();
    instances.dedup();
    let mut nodes: Vec<Value> = instances
        .into_iter()
        .map(|i| {
            let (node, model, version) = names.get(i).cloned().unwrap_or_default();
            let list: Vec<Value> = sensors
                .get(i)
                .map(|m| {
                    m.iter()
                        .map(|(name, f)| {
                            let mut f = f.clone();
                            f.insert("sensor".into(), json!(name));
                            Value::Object(f)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let led_list: Vec<Value> = leds
                .get(i)
                .map(|m| {
                    m.iter()
                        .map(|(name, f)| {
                            let mut f = f.clone();
                            f.insert("led".into(), json!(name));
                            Value::Object(f)
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "instance": i,
                "node": if node.is_empty() { i.clone() } else { node },
                "model": model,
                "version": version,
                "up": up.get(i).copied() == Some(1.0),
                "backfilling": backfilling.get(i).copied(),
                "sensors": list,
                "leds": led_list,
            })
        })
        .collect();
    fold_replaced(&mut nodes);
    Ok(json!({ "nodes": nodes, "now_s": now_s() }))
}

/// One card per node, sorted: an agent that was replaced (a new container, a new address)
/// leaves its old instance in the last hour's node_info, but the node is the instance that is
/// up, not a second, down card; a node with no instance up keeps one (down) card.
fn fold_replaced(nodes: &mut Vec<Value>) {
    let live: std::collections::HashSet<String> = nodes
        .iter()
        .filter(|n| n["up"] == true)
        .filter_map(|n| n["node"].as_str().map(str::to_owned))
        .collect();
    nodes.retain(|n| n["up"] == true || !n["node"].as_str().is_some_and(|x| live.contains(x)));
    nodes.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
    nodes.dedup_by(|a, b| a["node"] == b["node"] && a["up"] == false && b["up"] == false);
}

/// `GET /api/cluster`: every node with its sensors; `prometheus.ok` false with the reason when
/// Prometheus cannot be asked.
async fn cluster(State(d): State<Dash>) -> Json<Value> {
    Json(match cluster_json(&d).await {
        Ok(mut v) => {
            v["prometheus"] = json!({ "ok": true, "url": &*d.prometheus });
            v
        }
        Err(e) => {
            json!({ "prometheus": { "ok": false, "url": &*d.prometheus, "error": e }, "nodes": [] })
        }
    })
}

fn params(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /api/range?metric=temperature|humidity|pressure&range=1h|24h|7d`: one series per
/// node and sensor, up to 600 points.
async fn range(State(d): State<Dash>, RawQuery(q): RawQuery) -> Response {
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
    let end = now_s();
    let step = (seconds / 600).max(1);
    let url = format!(
        "{}/api/v1/query_range?query={}&start={}&end={end}&step={step}",
        d.prometheus,
        http::urlencode(metric),
        end - seconds
    );
    let answer = match d.access.get(&url, TIMEOUT).await {
        Ok((_, body)) => body,
        Err(e) => {
            return Json(json!({ "error": format!("Prometheus unreachable: {e}") })).into_response()
        }
    };
    let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    let names = names(&d).await.unwrap_or_default();
    let series: Vec<Value> = v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let inst = label(r, "instance");
            let node = names.get(inst).map_or(inst, |n| n.0.as_str());
            let points: Vec<Value> = r["values"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|p| {
                    Some(json!([
                        p[0].as_f64()? * 1000.0,
                        p[1].as_str()?.parse::<f64>().ok()?
                    ]))
                })
                .collect();
            json!({ "node": node, "sensor": label(r, "sensor"), "points": points })
        })
        .collect();
    Json(json!({ "metric": metric, "range_s": seconds, "end_s": end, "step_s": step, "series": series }))
        .into_response()
}

/// `GET /api/alerts`: active, silenced and inhibited alerts from Alertmanager.
async fn alerts(State(d): State<Dash>) -> Json<Value> {
    let url = format!(
        "{}/api/v2/alerts?active=true&silenced=true&inhibited=true",
        d.alertmanager
    );
    let v = match d.access.get(&url, TIMEOUT).await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        Ok((status, _)) => {
            return Json(
                json!({ "ok": false, "error": format!("Alertmanager answered {status}"), "alerts": [] }),
            )
        }
        Err(e) => {
            return Json(
                json!({ "ok": false, "error": format!("Alertmanager unreachable: {e}"), "alerts": [] }),
            )
        }
    };
    // Who silenced what, until when (the alerts name their silences by id).
    let silences: std::collections::HashMap<String, Value> = match d
        .access
        .get(&format!("{}/api/v2/silences", d.alertmanager), TIMEOUT)
        .await
    {
        Ok((200, body)) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some((s["id"].as_str()?.to_owned(), s)))
            .collect(),
        _ => Default::default(),
    };
    let list: Vec<Value> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let by: Vec<&Value> = a["status"]["silencedBy"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| silences.get(id.as_str()?))
                .collect();
            json!({
                "silenced_by": by.iter().filter_map(|s| s["createdBy"].as_str()).collect::<Vec<_>>(),
                "silenced_until": by.iter().filter_map(|s| s["endsAt"].as_str()).max(),
                "name": a["labels"]["alertname"],
                "severity": a["labels"]["severity"],
                "node": a["labels"]["node"].as_str().or(a["labels"]["down_node"].as_str()),
                "sensor": a["labels"]["sensor"],
                "state": a["status"]["state"],
                "silenced": !a["status"]["silencedBy"].as_array().is_none_or(Vec::is_empty),
                "summary": a["annotations"]["summary"],
                "starts_at": a["startsAt"],
                "fingerprint": a["fingerprint"],
            })
        })
        .collect();
    Json(json!({ "ok": true, "alerts": list }))
}

/// RFC 3339 UTC for Unix seconds `t` (H. Hinnant's civil_from_days).
pub fn rfc3339(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `POST /api/silence {"alertname": …, "node": …, "hours": 2, "comment": …}`: a silence in
/// Alertmanager for that alert (on that node, when given).
async fn silence(State(d): State<Dash>, body: axum::body::Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("invalid JSON: {e}")),
    };
    let Some(name) = v["alertname"].as_str().filter(|s| !s.is_empty()) else {
        return bad("\"alertname\" is required".into());
    };
    let hours = v["hours"].as_f64().unwrap_or(2.0);
    if !(0.0..=24.0 * 30.0).contains(&hours) || hours == 0.0 {
        return bad("\"hours\" must be between 0 and 720".into());
    }
    let mut matchers =
        vec![json!({ "name": "alertname", "value": name, "isRegex": false, "isEqual": true })];
    if let Some(node) = v["node"].as_str().filter(|s| !s.is_empty()) {
        matchers.push(json!({ "name": "node", "value": node, "isRegex": false, "isEqual": true }));
    }
    let now = now_s();
    let req = json!({
        "matchers": matchers,
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + (hours * 3600.0) as u64),
        "createdBy": "edgesense dashboard",
        "comment": v["comment"].as_str().unwrap_or("silenced from the edgesense dashboard"),
    });
    match d
        .access
        .post_json(
            &format!("{}/api/v2/silences", d.alertmanager),
            req.to_string(),
            TIMEOUT,
        )
        .await
    {
        Ok((200, body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok((status, body)) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": format!("Alertmanager answered {status}: {body}") })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": format!("Alertmanager unreachable: {e}") })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_agent_is_one_card_and_a_down_node_stays_one() {
        let n =
            |node: &str, inst: &str, up: bool| json!({"node": node, "instance": inst, "up": up});
        let mut v = vec![
            n("pi-b", "10.0.1.9:9842", true),
            n("pi-a", "10.0.1.5:9842", false),
            n("pi-a", "10.0.1.7:9842", true),
            n("pi-c", "10.0.1.3:9842", false),
            n("pi-c", "10.0.1.4:9842", false),
        ];
        fold_replaced(&mut v);
        let got: Vec<String> = v
            .iter()
            .map(|x| format!("{}={}", x["node"].as_str().unwrap(), x["up"]))
            .collect();
        assert_eq!(got, ["pi-a=true", "pi-b=true", "pi-c=false"]);
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_600_800), "2026-11-25T10:00:00Z");
    }

    #[tokio::test]
    async fn unreachable_prometheus_is_reported_not_hidden() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let d = Dash {
            prometheus: format!("http://{closed}").into(),
            alertmanager: format!("http://{closed}").into(),
            access: http::Access::default(),
        };
        let Json(v) = cluster(State(d.clone())).await;
        assert_eq!(v["prometheus"]["ok"], false, "{v}");
        assert!(
            v["prometheus"]["error"]
                .as_str()
                .unwrap()
                .contains(&closed.to_string()),
            "{v}"
        );
        let Json(a) = alerts(State(d)).await;
        assert_eq!(a["ok"], false);
    }
}
