//! The Alertmanager webhook through the real router: alerts light LEDs by their labels, the
//! highest severity wins, re-deliveries change nothing, resolves and expiry give the LED back,
//! other nodes' alerts are ignored, and bad requests change nothing.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use common::{node, Node};
use serde_json::Value;

const NODE: &str = r#"
node = "test-node"
poll_interval = "100ms"
[[sensor]]
name = "room"
kind = "ds18b20"
[[led]]
name = "red"
pin = 17
[[led]]
name = "amber"
pin = 27
[[led]]
name = "green"
pin = 22
idle = "on"
[[alert]]
match = { severity = "critical" }
led = "red"
mode = "blink"
period_ms = 250
[[alert]]
match = { severity = "warning" }
led = "amber"
mode = "on"
[[alert]]
match = { team = "ops" }
led = "red"
mode = "on"
[[alert]]
led = "green"
mode = "off"
"#;

const HOOK: &str = "/api/v1/alertmanager";

/// RFC 3339 for `t` (UTC, milliseconds), as Alertmanager writes it.
fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

struct A<'a> {
    status: &'a str,
    fp: &'a str,
    labels: &'a str,
    ends_at: Option<SystemTime>,
}

fn firing<'a>(fp: &'a str, labels: &'a str) -> A<'a> {
    A {
        status: "firing",
        fp,
        labels,
        ends_at: None,
    }
}

fn resolved<'a>(fp: &'a str, labels: &'a str) -> A<'a> {
    A {
        status: "resolved",
        fp,
        labels,
        ends_at: Some(SystemTime::now()),
    }
}

fn payload(alerts: &[A]) -> String {
    let alerts: Vec<String> = alerts
        .iter()
        .map(|a| {
            let ends = a
                .ends_at
                .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339);
            format!(
                r#"{{"status":"{}","labels":{{{}}},"annotations":{{"summary":"it is hot"}},"startsAt":"2026-11-25T10:00:00.000Z","endsAt":"{ends}","generatorURL":"http://prometheus/graph","fingerprint":"{}"}}"#,
                a.status, a.labels, a.fp
            )
        })
        .collect();
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"Hot\"}}","truncatedAlerts":0,"status":"firing","receiver":"edgesense","groupLabels":{{"alertname":"Hot"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093","alerts":[{}]}}"#,
        alerts.join(",")
    )
}

const CRIT: &str = r#""alertname":"Hot","severity":"critical","node":"test-node""#;
const WARN_OPS: &str = r#""alertname":"Warm","severity":"warning","team":"ops""#;

async fn post(n: &Node, body: &str) -> (StatusCode, Value) {
    n.call(Method::POST, HOOK, None, body).await
}

/// Waits until LED `name` shows `mode` (and the snapshot is published).
async fn wait_led(n: &Node, name: &'static str, mode: &'static str) -> u64 {
    n.wait_for(&format!("{name} {mode}"), |s| {
        s.leds
            .iter()
            .any(|l| l.name == name && l.mode.name() == mode)
    })
    .await
    .seq
}

#[tokio::test(flavor = "current_thread")]
async fn critical_alert_blinks_red_until_resolved_and_repeats_change_nothing() {
    let n = node(NODE, None, true);
    wait_led(&n, "green", "on").await;
    let before = n.gpio.writes_to(17).len();

    let fire = payload(&[firing("a1b2c3d4", CRIT)]);
    let (s, v) = post(&n, &fire).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["fired"].as_u64(), v["relayed"].as_bool()),
        (Some(1), Some(false))
    );
    wait_led(&n, "red", "blink").await;
    wait_led(&n, "green", "off").await;
    let red = n.led("red").await;
    assert_eq!(red["source"]["kind"], "alert");
    assert_eq!(red["source"]["name"], "Hot");
    assert_eq!(red["period_ms"], 250);

    // The blink in the mock GPIO's record: on/off every 125 ms, from the clock.
    let writes = loop {
        let w = n.gpio.writes_to(17);
        if w.len() >= before + 6 {
            break w[before..].to_vec();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let duties: Vec<f64> = writes.iter().map(|w| w.drive.duty()).collect();
    assert_eq!(&duties[..4], [1.0, 0.0, 1.0, 0.0]);
    for pair in writes.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(100) && gap <= Duration::from_millis(200),
            "blink step {gap:?}, expected about 125 ms"
        );
    }

    // Alertmanager re-sends: the same payload changes nothing, not even the snapshot.
    let (s, v) = post(&n, &fire).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["fired"].as_u64(), v["unchanged"].as_u64()),
        (Some(0), Some(1))
    );
    let (_, readings) = n.call(Method::GET, "/api/v1/readings", None, "").await;
    let alerts = readings["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{readings}");
    assert_eq!(alerts[0]["origin"], "alertmanager");
    assert_eq!(alerts[0]["summary"], "it is hot");
    assert_eq!(alerts[0]["leds"], serde_json::json!(["red", "green"]));
    assert_eq!(
        n.running.as_ref().unwrap().snapshot.borrow().alerts.len(),
        1
    );

    let (s, v) = post(&n, &payload(&[resolved("a1b2c3d4", CRIT)])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["resolved"].as_u64(), Some(1));
    wait_led(&n, "red", "off").await;
    wait_led(&n, "green", "on").await;
    let metrics = n.text("/metrics").await;
    assert_eq!(
        common::metric(&metrics, "edgesense_alerts_active{severity=\"critical\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn highest_severity_wins_and_the_led_falls_back_claim_by_claim() {
    let n = node(NODE, None, true);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/leds/red",
            None,
            r#"{"mode":"pulse","period_ms":1000}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    wait_led(&n, "red", "pulse").await;

    // A warning routed to red (team=ops) beats the manual setting.
    post(&n, &payload(&[firing("0001", WARN_OPS)])).await;
    wait_led(&n, "red", "on").await;
    wait_led(&n, "amber", "on").await;
    // A critical one beats the warning.
    post(&n, &payload(&[firing("0002", CRIT)])).await;
    wait_led(&n, "red", "blink").await;
    let metrics = n.text("/metrics").await;
    assert_eq!(
        common::metric(&metrics, "edgesense_alerts_active{severity=\"critical\"}"),
        Some(1.0)
    );
    assert_eq!(
        common::metric(&metrics, "edgesense_alerts_active{severity=\"warning\"}"),
        Some(1.0)
    );
    // Resolving gives the LED to the next claim down, one at a time.
    post(&n, &payload(&[resolved("0002", CRIT)])).await;
    wait_led(&n, "red", "on").await;
    post(&n, &payload(&[resolved("0001", WARN_OPS)])).await;
    wait_led(&n, "red", "pulse").await;
    assert_eq!(n.led("red").await["source"]["kind"], "manual");
    wait_led(&n, "amber", "off").await;
}

#[tokio::test(flavor = "current_thread")]
async fn only_this_nodes_and_cluster_wide_alerts_apply() {
    let n = node(NODE, None, true);
    let other = r#""alertname":"Hot","severity":"critical","node":"pi-other""#;
    let cluster = r#""alertname":"AgentDown","severity":"warning""#;
    let (s, v) = post(&n, &payload(&[firing("0a", other), firing("0b", cluster)])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["other_nodes"].as_u64(), v["fired"].as_u64()),
        (Some(1), Some(1))
    );
    wait_led(&n, "amber", "on").await;
    assert_eq!(
        n.led("red").await["mode"],
        "off",
        "the other node's alert lit nothing"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_alert_whose_end_passes_without_a_resolve_expires() {
    let n = node(NODE, None, true);
    let soon = A {
        status: "firing",
        fp: "ee01",
        labels: CRIT,
        ends_at: Some(SystemTime::now() + Duration::from_millis(600)),
    };
    let (s, v) = post(&n, &payload(&[soon])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_led(&n, "red", "blink").await;
    wait_led(&n, "red", "off").await;
    wait_led(&n, "green", "on").await;
    assert!(n
        .running
        .as_ref()
        .unwrap()
        .snapshot
        .borrow()
        .alerts
        .is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn bad_webhooks_are_refused_and_change_nothing() {
    let n = node(NODE, Some("tok"), true);
    wait_led(&n, "green", "on").await;
    let leds = n.call(Method::GET, "/api/v1/leds", None, "").await.1;
    let good = payload(&[firing("ab", CRIT)]);
    let bad_alert = payload(&[firing("ab", CRIT), firing("", CRIT)]);
    let huge = payload(&[firing(
        "ab",
        &format!(r#""alertname":"{}""#, "x".repeat(1_100_000)),
    )]);
    let cases: [(Option<&str>, &str, StatusCode); 7] = [
        (None, &good, StatusCode::UNAUTHORIZED),
        (Some("toke"), &good, StatusCode::UNAUTHORIZED),
        (Some("tok"), &huge, StatusCode::PAYLOAD_TOO_LARGE),
        (Some("tok"), "{\"version\":\"4\"", StatusCode::BAD_REQUEST),
        (
            Some("tok"),
            &good.replace(r#""version":"4""#, r#""version":"3""#),
            StatusCode::BAD_REQUEST,
        ),
        (Some("tok"), &bad_alert, StatusCode::BAD_REQUEST),
        (Some("tok"), r#"{"alerts":[]}"#, StatusCode::BAD_REQUEST),
    ];
    for (token, body, expected) in cases {
        let (s, v) = n.call(Method::POST, HOOK, token, body).await;
        assert_eq!(s, expected, "{v}");
        assert!(v["error"].is_string(), "{v}");
    }
    assert_eq!(
        n.call(Method::GET, "/api/v1/leds", None, "").await.1,
        leds,
        "nothing changed"
    );
    assert!(n
        .running
        .as_ref()
        .unwrap()
        .snapshot
        .borrow()
        .alerts
        .is_empty());
    let (s, _) = n.call(Method::POST, HOOK, Some("tok"), &good).await;
    assert_eq!(s, StatusCode::OK);
    wait_led(&n, "red", "blink").await;
}

#[tokio::test(flavor = "current_thread")]
async fn edge_rule_alerts_go_through_the_same_routes() {
    let text = format!(
        "{NODE}\n[[rule]]\nname = \"room-hot\"\nsensor = \"room\"\nabove = 30\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\nseverity = \"warning\"\n"
    );
    let n = node(&text, None, true);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/sim/sensors/room",
            None,
            r#"{"value":35}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    wait_led(&n, "red", "blink").await;
    // The rule's alert (severity warning) matches the warning route and the catch-all.
    wait_led(&n, "amber", "on").await;
    wait_led(&n, "green", "off").await;
    n.call(
        Method::PUT,
        "/api/v1/sim/sensors/room",
        None,
        r#"{"value":20}"#,
    )
    .await;
    wait_led(&n, "green", "on").await;
    wait_led(&n, "amber", "off").await;
}

/// A deterministic pseudo-random sequence (LCG), so the storm is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "current_thread")]
async fn alert_storm_with_repeats_and_out_of_order_resolves_ends_right() {
    // 1 500 alerts, each with 1–3 incarnations; every incarnation but perhaps the last is resolved.
    // Deliveries are shuffled (resolves may come before their firing, older incarnations after
    // newer ones) and some repeated, then sent as 100 posts of 100 alerts: 10 000 in all.
    let n = node(NODE, None, true);
    let mut rng = Lcg(7);
    let mut events: Vec<(u32, u32, bool)> = Vec::new(); // (alert, incarnation, resolved)
    let mut truth: Vec<bool> = Vec::new(); // active at the end?
    for a in 0..1500u32 {
        let incarnations = 1 + rng.next(3) as u32;
        let last_open = rng.next(3) == 0;
        for i in 0..incarnations {
            events.push((a, i, false));
            if i + 1 < incarnations || !last_open {
                events.push((a, i, true));
            }
        }
        truth.push(last_open);
    }
    while events.len() < 10_000 {
        let e = events[rng.next(events.len() as u64) as usize];
        events.push(e); // repeats
    }
    events.truncate(10_000);
    for i in (1..events.len()).rev() {
        events.swap(i, rng.next(i as u64 + 1) as usize);
    }
    let severity = |a: u32| if a % 5 == 0 { "critical" } else { "warning" };
    let node_label = |a: u32| if a % 7 == 0 { "pi-other" } else { "test-node" };
    for chunk in events.chunks(100) {
        let alerts: Vec<String> = chunk
            .iter()
            .map(|&(a, i, resolved)| {
                let starts = format!("2026-11-25T{:02}:{:02}:00Z", i, a % 60);
                let ends = if resolved { format!("2026-11-25T{:02}:{:02}:30Z", i, a % 60) } else { "0001-01-01T00:00:00Z".into() };
                format!(
                    r#"{{"status":"{}","labels":{{"alertname":"A{a}","severity":"{}","node":"{}"}},"annotations":{{}},"startsAt":"{starts}","endsAt":"{ends}","generatorURL":"","fingerprint":"f{a}"}}"#,
                    if resolved { "resolved" } else { "firing" },
                    severity(a),
                    node_label(a)
                )
            })
            .collect();
        let body = format!(
            r#"{{"version":"4","groupKey":"storm","truncatedAlerts":0,"status":"firing","receiver":"r","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"","alerts":[{}]}}"#,
            alerts.join(",")
        );
        let (s, v) = post(&n, &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let mine = |a: u32| node_label(a) == "test-node";
    let expected: Vec<u32> = (0..1500u32)
        .filter(|&a| truth[a as usize] && mine(a))
        .collect();
    let crit = expected.iter().any(|&a| severity(a) == "critical");
    let warn = expected.iter().any(|&a| severity(a) == "warning");
    assert!(crit && warn, "the scenario leaves both kinds firing");
    let snap = n
        .wait_for("the storm applied", |s| {
            s.alerts
                .iter()
                .filter(|a| a.origin == "alertmanager")
                .count()
                == expected.len()
        })
        .await;
    let mut names: Vec<String> = snap.alerts.iter().map(|a| a.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|a| format!("A{a}")).collect();
    want.sort();
    assert_eq!(
        names, want,
        "exactly the alerts whose last incarnation is open, on this node"
    );
    wait_led(&n, "red", "blink").await;
    wait_led(&n, "amber", "on").await;
    wait_led(&n, "green", "off").await;
}
