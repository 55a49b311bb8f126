//! The HTTP API against a simulated node, through the real router (no network): auth, limits,
//! error codes, and that nothing changes on any error.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{metric, node, REMOTE};
use edgesense_sensors::bus::gpio::Drive;

const NODE: &str = r#"
node = "test-node"
poll_interval = "100ms"
read_timeout = "300ms"
[[sensor]]
name = "room"
kind = "ds18b20"
[[sensor]]
name = "env"
kind = "bme280"
[[led]]
name = "red"
pin = 17
[[led]]
name = "green"
pin = 22
idle = "on"
[[rule]]
name = "room-hot"
sensor = "room"
above = 30
for = "300ms"
led = "red"
mode = "blink"
period_ms = 250
severity = "critical"
"#;

#[tokio::test(flavor = "current_thread")]
async fn auth_no_token_wrong_token_right_token() {
    let n = node(NODE, Some("s3cret"), true);
    let body = r#"{"mode":"blink","period_ms":500}"#;
    let before = n.led("red").await;
    let (s, v) = n.call(Method::PUT, "/api/v1/leds/red", None, body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _) = n
        .call(Method::PUT, "/api/v1/leds/red", Some("s3cre"), body)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/leds/red",
            Some("s3cret-and-more"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/sim/sensors/room",
            None,
            r#"{"value":40}"#,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "sim writes need the token too");
    assert_eq!(n.led("red").await, before, "nothing changed");
    assert_eq!(n.gpio.level(17), Some(Drive::Low));

    let (s, v) = n
        .call(Method::PUT, "/api/v1/leds/red", Some("s3cret"), body)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["mode"], "blink");
    assert_eq!(v["source"]["kind"], "manual");
    // Reads from this host need no token.
    assert_eq!(
        n.call(Method::GET, "/api/v1/leds", None, "").await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "current_thread")]
async fn reads_from_another_host_need_a_client_certificate_or_the_token() {
    use base64::Engine as _;
    let n = node(NODE, Some("s3cret"), true);
    let basic = |user_pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pw)
        )
    };
    for path in [
        "/metrics",
        "/api/v1/readings",
        "/healthz",
        "/",
        "/app.js",
        "/no/such/path",
    ] {
        let (s, v) = n
            .call_from(REMOTE, false, Method::GET, path, None, "")
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
        let wrong = basic("edgesense:s3cre");
        let (s, _) = n
            .call_from(REMOTE, false, Method::GET, path, Some(&wrong), "")
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} with a wrong password");
        // Past the check: the path's own answer (404 for one that does not exist).
        let want = if path.starts_with("/no/") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        for ok in [Some("Bearer s3cret".to_owned()), Some(basic("any:s3cret"))] {
            let (s, v) = n
                .call_from(REMOTE, false, Method::GET, path, ok.as_deref(), "")
                .await;
            assert_eq!(s, want, "{path} with {ok:?}: {v}");
        }
        let (s, _) = n.call_from(REMOTE, true, Method::GET, path, None, "").await;
        assert_eq!(s, want, "{path} with a client certificate");
    }
    // Writes need the bearer token: neither basic auth (a browser would resend it on a
    // cross-site request) nor a client certificate will do.
    let body = r#"{"mode":"on"}"#;
    for (cert, auth) in [(false, Some(basic("any:s3cret"))), (true, None)] {
        let (s, _) = n
            .call_from(
                REMOTE,
                cert,
                Method::PUT,
                "/api/v1/leds/red",
                auth.as_deref(),
                body,
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "cert {cert}, {auth:?}");
    }
    let (s, _) = n
        .call_from(
            REMOTE,
            false,
            Method::PUT,
            "/api/v1/leds/red",
            Some("Bearer s3cret"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn bad_requests_change_nothing() {
    let n = node(NODE, None, true);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/leds/red",
            None,
            r#"{"mode":"on","brightness":0.5}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let before = n.led("red").await;

    let big = format!(r#"{{"mode":"off","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let cases: [(&str, &str, StatusCode); 8] = [
        ("/api/v1/leds/red", &big, StatusCode::PAYLOAD_TOO_LARGE),
        ("/api/v1/leds/red", "{\"mode\":", StatusCode::BAD_REQUEST),
        (
            "/api/v1/leds/red",
            r#"{"mode":"off","colour":"blue"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/leds/red",
            r#"{"mode":"strobe"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/leds/red",
            r#"{"mode":"blink","period_ms":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/leds/red",
            r#"{"period_ms":500}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/leds/blue",
            r#"{"mode":"off"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/sim/sensors/room",
            r#"{"fault":"gremlins"}"#,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (uri, body, want) in cases {
        let (s, v) = n.call(Method::PUT, uri, None, body).await;
        assert_eq!(s, want, "{uri} {}: {v}", &body[..body.len().min(40)]);
        assert!(
            v["error"].is_string(),
            "error body is JSON with a message: {v}"
        );
        assert_eq!(n.led("red").await, before, "LED unchanged after {want}");
    }
    assert_eq!(n.gpio.level(17).map(Drive::duty), Some(0.5));
}

#[tokio::test(flavor = "current_thread")]
async fn sim_routes_exist_only_when_simulated() {
    let n = node(NODE, None, false);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/sim/sensors/room",
            None,
            r#"{"value":31.5}"#,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let n = node(NODE, None, true);
    let (s, v) = n
        .call(
            Method::PUT,
            "/api/v1/sim/sensors/room",
            None,
            r#"{"value":31.5}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["held"], 31.5);
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/sim/sensors/attic",
            None,
            r#"{"value":1}"#,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "current_thread")]
async fn scrape_succeeds_while_one_sensor_fails() {
    let n = node(NODE, None, true);
    n.wait_for("first reads", |s| s.sensors.iter().all(|x| x.up))
        .await;
    let (s, _) = n
        .call(
            Method::PUT,
            "/api/v1/sim/sensors/room",
            None,
            r#"{"fault":"crc"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    n.wait_for("room down", |s| {
        !s.sensors[0].up && s.sensors[0].errors_total[1] >= 1
    })
    .await;

    let m = n.text("/metrics").await;
    assert_eq!(
        metric(&m, r#"edgesense_sensor_up{kind="ds18b20",sensor="room"}"#),
        Some(0.0)
    );
    assert!(
        metric(
            &m,
            r#"edgesense_sensor_read_errors_total{kind="ds18b20",reason="crc",sensor="room"}"#
        ) >= Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"edgesense_temperature_celsius{kind="ds18b20",sensor="room"}"#
        ),
        None,
        "no stale value"
    );
    assert_eq!(
        metric(&m, r#"edgesense_sensor_up{kind="bme280",sensor="env"}"#),
        Some(1.0)
    );
    assert!(metric(
        &m,
        r#"edgesense_humidity_ratio{kind="bme280",sensor="env"}"#
    )
    .is_some());
    let (_, r) = n.call(Method::GET, "/api/v1/readings", None, "").await;
    assert_eq!(r["sensors"][0]["up"], false);
    assert_eq!(r["sensors"][0]["error"]["reason"], "crc");

    n.call(
        Method::PUT,
        "/api/v1/sim/sensors/room",
        None,
        r#"{"fault":null}"#,
    )
    .await;
    n.wait_for("room back", |s| s.sensors[0].up).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_hanging_sensor_times_out_without_blocking_the_others() {
    let n = node(NODE, None, true);
    n.call(
        Method::PUT,
        "/api/v1/sim/sensors/room",
        None,
        r#"{"fault":"hang"}"#,
    )
    .await;
    let t0 = n
        .wait_for("room timed out", |s| s.sensors[0].errors_total[4] >= 1)
        .await;
    let env_reads = t0.sensors[1].reads_total;
    // While room stays wedged, env keeps being read on its own schedule.
    let t1 = n
        .wait_for("env keeps going", |s| {
            s.sensors[1].reads_total >= env_reads + 5
        })
        .await;
    assert!(!t1.sensors[0].up);
    n.call(
        Method::PUT,
        "/api/v1/sim/sensors/room",
        None,
        r#"{"fault":null}"#,
    )
    .await;
    n.wait_for("room recovers", |s| s.sensors[0].up).await;
}

#[tokio::test(flavor = "current_thread")]
async fn edge_rule_takes_the_led_and_gives_it_back() {
    let n = node(NODE, None, true);
    n.call(Method::PUT, "/api/v1/leds/red", None, r#"{"mode":"on"}"#)
        .await;
    n.call(
        Method::PUT,
        "/api/v1/sim/sensors/room",
        None,
        r#"{"value":31.5}"#,
    )
    .await;
    n.wait_for("rule fires", |s| !s.alerts.is_empty()).await;
    let red = n.led("red").await;
    assert_eq!(red["mode"], "blink");
    assert_eq!(red["source"]["kind"], "alert");
    assert_eq!(red["source"]["severity"], "critical");
    let m = n.text("/metrics").await;
    assert_eq!(
        metric(&m, r#"edgesense_alerts_active{severity="critical"}"#),
        Some(1.0)
    );
    assert_eq!(metric(&m, r#"edgesense_led_on{led="red"}"#), Some(1.0));

    n.call(
        Method::PUT,
        "/api/v1/sim/sensors/room",
        None,
        r#"{"value":20}"#,
    )
    .await;
    n.wait_for("rule resolves", |s| s.alerts.is_empty()).await;
    let red = n.led("red").await;
    assert_eq!(
        (red["mode"].as_str(), red["source"]["kind"].as_str()),
        (Some("on"), Some("manual")),
        "back to the manual claim"
    );
    let (_, v) = n
        .call(Method::PUT, "/api/v1/leds/red", None, r#"{"mode":"auto"}"#)
        .await;
    assert_eq!(
        (v["mode"].as_str(), v["source"]["kind"].as_str()),
        (Some("off"), Some("idle"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_switches_every_led_off() {
    let mut n = node(NODE, None, true);
    n.call(
        Method::PUT,
        "/api/v1/leds/red",
        None,
        r#"{"mode":"blink","period_ms":100}"#,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while n.gpio.writes_to(17).len() < 4 {
        assert!(std::time::Instant::now() < deadline, "red never blinked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(n.gpio.level(22), Some(Drive::High), "green idles on");
    n.shutdown().await;
    for pin in n.gpio.claimed() {
        assert_eq!(
            n.gpio.level(pin),
            Some(Drive::Low),
            "GPIO{pin} off after shutdown"
        );
    }
    let after = n.gpio.writes().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        n.gpio.writes().len(),
        after,
        "no pattern keeps running after shutdown"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn readings_and_health() {
    let n = node(NODE, None, true);
    n.wait_for("first reads", |s| s.sensors.iter().all(|x| x.up))
        .await;
    let (s, r) = n.call(Method::GET, "/api/v1/readings", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["node"], "test-node");
    let env = &r["sensors"][1];
    assert_eq!(env["kind"], "bme280");
    let h = env["values"]["humidity_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&h), "humidity is a ratio: {h}");
    assert!(
        env["values"]["pressure_pascals"].as_f64().unwrap() > 50_000.0,
        "pressure in Pa"
    );
    let (s, h) = n.call(Method::GET, "/healthz", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["sensors_up"], 2);
}
