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

mod charts;
mod fleet;
mod guard;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use edgesense_net::page;
use serde::Serialize;
use serde_json::{json, Value};

use fleet::{Node, NodeAlert};

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
        .route("/api/range", get(charts::range))
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

type Fields = BTreeMap<String, BTreeMap<String, serde_json::Map<String, Value>>>;

/// Instance → sensor → its fields. A failing sensor's values are gone from the exposition: its
/// last good ones (within the hour) and when it last read well make it "stale" instead of
/// current.
async fn sensor_fields(d: &Dash) -> Result<Fields, String> {
    const FIELDS: [(&str, &str); 8] = [
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
        // Over the hour, like the last values: a down agent's sensors keep their age.
        (
            "last_over_time(edgesense_sensor_last_success_timestamp_seconds[1h])",
            "last_success_s",
        ),
        ("edgesense_sensor_up", "up"),
    ];
    let answers =
        futures_util::future::try_join_all(FIELDS.iter().map(|(q, _)| query(d, q))).await?;
    let mut sensors = Fields::new();
    for ((_, key), rows) in FIELDS.iter().zip(answers) {
        for r in rows {
            let s = sensors
                .entry(label(&r, "instance").to_owned())
                .or_default()
                .entry(label(&r, "sensor").to_owned())
                .or_default();
            s.insert("kind".into(), json!(label(&r, "kind")));
            s.insert((*key).into(), json!(number(&r)));
        }
    }
    Ok(sensors)
}

/// Instance → LED → what it shows and why (edgesense_led_state), lit or not (led_on).
async fn led_fields(d: &Dash) -> Result<Fields, String> {
    let (state, on) = tokio::join!(
        query(d, "edgesense_led_state"),
        query(d, "edgesense_led_on")
    );
    let mut leds = Fields::new();
    for r in state? {
        let l = leds
            .entry(label(&r, "instance").to_owned())
            .or_default()
            .entry(label(&r, "led").to_owned())
            .or_default();
        l.insert("mode".into(), json!(label(&r, "mode")));
        l.insert("reason".into(), json!(label(&r, "reason")));
    }
    for r in on? {
        leds.entry(label(&r, "instance").to_owned())
            .or_default()
            .entry(label(&r, "led").to_owned())
            .or_default()
            .insert("lit".into(), json!(number(&r) == Some(1.0)));
    }
    Ok(leds)
}

/// Instance → the value of an instant query `q`.
async fn by_instance(d: &Dash, q: &str) -> Result<HashMap<String, f64>, String> {
    Ok(query(d, q)
        .await?
        .iter()
        .filter_map(|r| Some((label(r, "instance").to_owned(), number(r)?)))
        .collect())
}

/// `fields` of one instance as a list, each with its name under `key`.
fn listed(fields: &Fields, instance: &str, key: &str) -> Vec<Value> {
    fields
        .get(instance)
        .into_iter()
        .flatten()
        .map(|(name, f)| {
            let mut f = f.clone();
            f.insert(key.into(), json!(name));
            Value::Object(f)
        })
        .collect()
}

async fn cluster_json(d: &Dash) -> Result<Value, String> {
    let (names, up, sensors, leds, backfilling, alerts) = tokio::join!(
        names(d),
        by_instance(d, "up{job=\"edgesense\"}"),
        sensor_fields(d),
        led_fields(d),
        // Readings an agent still pushes to Prometheus (it was cut off, or Prometheus away).
        by_instance(d, "edgesense_backfill_samples_waiting > 0"),
        fetch_alerts(d),
    );
    let (names, up, sensors, leds, backfilling) = (names?, up?, sensors?, leds?, backfilling?);
    let mut instances: Vec<&String> = up.keys().chain(names.keys()).collect();
    instances.sort();
    instances.dedup();
    let mut nodes: Vec<Node> = instances
        .into_iter()
        .map(|i| {
            let (node, model, version) = names.get(i).cloned().unwrap_or_default();
            Node {
                instance: i.clone(),
                node: if node.is_empty() { i.clone() } else { node },
                model,
                version,
                up: up.get(i).copied() == Some(1.0),
                backfilling: backfilling.get(i).copied(),
                sensors: listed(&sensors, i, "sensor"),
                leds: listed(&leds, i, "led"),
                ..Node::default()
            }
        })
        .collect();
    fleet::fold_replaced(&mut nodes);
    let (alertmanager, cluster_alerts) = match &alerts {
        Ok(list) => (json!({ "ok": true }), attach(&mut nodes, list)),
        Err(e) => (json!({ "ok": false, "error": e }), 0),
    };
    for n in &mut nodes {
        n.classify();
    }
    fleet::order(&mut nodes);
    Ok(json!({
        "summary": fleet::summary(&nodes, cluster_alerts),
        "nodes": nodes,
        "alertmanager": alertmanager,
        "now_s": now_s(),
    }))
}

/// Each alert with a node (`node`, or `down_node` for an agent that is down) on that node's
/// card: firing, or silenced (inhibited ones are neither); the number of firing alerts without
/// a node (cluster-wide).
fn attach(nodes: &mut [Node], alerts: &[Alert]) -> usize {
    let mut cluster_wide = 0;
    for a in alerts {
        if !a.silenced && a.state.as_deref() == Some("suppressed") {
            continue;
        }
        let Some(name) = a.node.as_deref() else {
            cluster_wide += usize::from(!a.silenced);
            continue;
        };
        for n in nodes.iter_mut().filter(|n| n.node == name) {
            n.alerts.push(NodeAlert {
                name: a.name.clone().unwrap_or_default(),
                severity: a.severity.clone().unwrap_or_default(),
                sensor: a.sensor.clone().unwrap_or_default(),
                silenced: a.silenced,
                summary: a.summary.clone().unwrap_or_default(),
            });
        }
    }
    cluster_wide
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

/// An alert as Alertmanager has it (`node` is `down_node` for an agent that is down), with who
/// silenced it until when.
#[derive(Clone, Debug, Default, Serialize)]
struct Alert {
    name: Option<String>,
    severity: Option<String>,
    node: Option<String>,
    sensor: Option<String>,
    state: Option<String>,
    silenced: bool,
    silenced_by: Vec<String>,
    silenced_until: Option<String>,
    summary: Option<String>,
    starts_at: Option<String>,
    fingerprint: Option<String>,
}

/// Active, silenced and inhibited alerts from Alertmanager, or why not.
async fn fetch_alerts(d: &Dash) -> Result<Vec<Alert>, String> {
    let url = format!(
        "{}/api/v2/alerts?active=true&silenced=true&inhibited=true",
        d.alertmanager
    );
    let v = match d.access.get(&url, TIMEOUT).await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body)
            .map_err(|e| format!("Alertmanager answered: {e}"))?,
        Ok((status, _)) => return Err(format!("Alertmanager answered {status}")),
        Err(e) => return Err(format!("Alertmanager unreachable: {e}")),
    };
    // Who silenced what, until when (the alerts name their silences by id).
    let silences: HashMap<String, Value> = match d
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
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let by: Vec<&Value> = a["status"]["silencedBy"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| silences.get(id.as_str()?))
                .collect();
            let labels = &a["labels"];
            Alert {
                silenced_by: by.iter().filter_map(|s| text(&s["createdBy"])).collect(),
                silenced_until: by
                    .iter()
                    .filter_map(|s| s["endsAt"].as_str())
                    .max()
                    .map(str::to_owned),
                name: text(&labels["alertname"]),
                severity: text(&labels["severity"]),
                node: text(&labels["node"])
                    .filter(|n| !n.is_empty())
                    .or_else(|| text(&labels["down_node"]).filter(|n| !n.is_empty())),
                sensor: text(&labels["sensor"]),
                state: text(&a["status"]["state"]),
                silenced: !a["status"]["silencedBy"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
                summary: text(&a["annotations"]["summary"]),
                starts_at: text(&a["startsAt"]),
                fingerprint: text(&a["fingerprint"]),
            }
        })
        .collect())
}

/// `GET /api/alerts`: active, silenced and inhibited alerts from Alertmanager.
async fn alerts(State(d): State<Dash>) -> Json<Value> {
    Json(match fetch_alerts(&d).await {
        Ok(list) => json!({ "ok": true, "alerts": list }),
        Err(e) => json!({ "ok": false, "error": e, "alerts": [] }),
    })
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
    fn alerts_go_to_their_nodes_card_and_cluster_wide_ones_are_counted() {
        let alert = |name: &str, node: Option<&str>, state: &str, silenced: bool| Alert {
            name: Some(name.into()),
            node: node.map(str::to_owned),
            state: Some(state.into()),
            silenced,
            ..Alert::default()
        };
        let mut nodes: Vec<Node> = ["pi-a", "pi-b"]
            .iter()
            .map(|n| Node {
                node: (*n).into(),
                up: true,
                ..Node::default()
            })
            .collect();
        let alerts = [
            alert("EdgesenseTemperatureHigh", Some("pi-a"), "active", false),
            // Inhibited by the critical one: neither firing nor silenced.
            alert(
                "EdgesenseTemperatureWarm",
                Some("pi-a"),
                "suppressed",
                false,
            ),
            alert("EdgesenseSensorDown", Some("pi-b"), "suppressed", true),
            alert("EdgesenseAgentDown", None, "active", false),
            alert("Watchdog", None, "suppressed", true),
            alert("EdgesenseAgentDown", Some("pi-gone"), "active", false),
        ];
        assert_eq!(attach(&mut nodes, &alerts), 1);
        for n in &mut nodes {
            n.classify();
        }
        let names: Vec<Vec<&str>> = nodes
            .iter()
            .map(|n| n.alerts.iter().map(|a| a.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["EdgesenseTemperatureHigh"],
                vec!["EdgesenseSensorDown"]
            ]
        );
        assert_eq!(nodes[0].problems, [fleet::Problem::Alerting]);
        assert!(nodes[1].problems.is_empty() && nodes[1].silenced());
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
