//! LEDs that follow Alertmanager's truth: the real agent binary (`--simulate`, its mock GPIO and
//! button) against Debian's Alertmanager, whose API v2 it reconciles with every second. A
//! silence takes an alert's LED away and its deletion gives it back without a webhook; an agent
//! restarted while an alert fires shows it again; Alertmanager down leaves the LEDs and edge
//! rules as they are and is reconciled once back; the button silences this node's alerts in
//! Alertmanager and acknowledges its edge rules; a long press hands manual LEDs back.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use edgesense_tests::{
    alerting::start_alertmanager,
    free_port, get_json, metric,
    payload::{Alert, Silence},
    request, try_request, wait_until, Agent, Endpoint, TestFleet,
};
use serde_json::Value;

const TOKEN: &str = "reconcile-token-1618";

fn config(dir: &std::path::Path, am_port: u16) -> std::path::PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"node = "pi-r"
token_file = "{token}"
poll_interval = "250ms"

# An HA pair whose first member is down: every call goes on to the second.
[alertmanager]
url = ["https://127.0.0.1:{dead}", "https://127.0.0.1:{am_port}"]
reconcile_interval = "1s"

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

[[rule]]
name = "room-warm"
sensor = "room"
above = 30.0
for = "1s"
led = "amber"
mode = "on"
severity = "warning"

[[alert]]
match = {{ severity = "critical" }}
led = "red"
mode = "blink"
period_ms = 250

[[button]]
name = "ack"
pin = 23
silence = "1h"
"#,
            token = token.display(),
            dead = free_port(),
        ),
    )
    .unwrap();
    cfg
}

/// Posts `Hot` (critical, this node) to Alertmanager, as Prometheus would every evaluation.
fn post_hot(am: &Endpoint) {
    let hot = Alert::new("Hot")
        .label("node", "pi-r")
        .label("severity", "critical")
        .around_now(60, 3600);
    edgesense_tests::post_alerts(am, &hot.post_body());
}

fn red(agent: &Agent) -> Value {
    agent.led("red")
}

fn red_blinks_for_hot(agent: &Agent) -> bool {
    let r = red(agent);
    r["mode"] == "blink" && r["source"]["name"] == "Hot"
}

fn alert_state(agent: &Agent, name: &str) -> Option<Value> {
    get_json(agent.addr, "/api/v1/readings")["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
}

fn silence(am: &Endpoint, by: &str) -> String {
    let r = am.request(
        "POST",
        "/api/v2/silences",
        &["Content-Type: application/json"],
        &Silence::of("Hot").by(by).body(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["silenceID"].as_str().unwrap().to_owned()
}

fn start_agent(cfg: &std::path::Path, fleet: &TestFleet) -> Agent {
    fleet.agent(&["--simulate", "--config", cfg.to_str().unwrap()])
}

#[test]
fn leds_follow_alertmanagers_silences_restarts_and_outages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let am_port = free_port();
    let am_addr: SocketAddr = ([127, 0, 0, 1], am_port).into();
    let cfg = config(d, am_port);
    let fleet = TestFleet::new(d, TOKEN);
    let am_api = fleet.operator(am_addr, "alertmanager");

    // The agent starts before Alertmanager: it says so and keeps trying.
    let mut agent = start_agent(&cfg, &fleet);
    wait_until(
        "edgesense_alertmanager_up 0",
        Duration::from_secs(10),
        || {
            let m = agent.get("/metrics").body;
            (metric(&m, "edgesense_alertmanager_up") == Some(0.0)).then_some(())
        },
    );
    let am = start_alertmanager(d, &fleet, am_addr, agent.addr);
    wait_until(
        "reconciled once Alertmanager is up",
        Duration::from_secs(20),
        || {
            let m = agent.get("/metrics").body;
            (metric(&m, "edgesense_alertmanager_up") == Some(1.0)
                && metric(
                    &m,
                    "edgesense_alertmanager_last_reconcile_timestamp_seconds",
                )
                .is_some_and(|t| t > 0.0))
            .then_some(())
        },
    );

    // --- A firing alert blinks red (webhook).
    post_hot(&am_api);
    wait_until("red blinking for Hot", Duration::from_secs(20), || {
        red_blinks_for_hot(&agent).then_some(())
    });

    // --- A silence created in Alertmanager takes it away within one reconcile interval.
    let t = Instant::now();
    let id = silence(&am_api, "an operator");
    wait_until(
        "red back to idle after the silence",
        Duration::from_secs(10),
        || (red(&agent)["mode"] == "off").then_some(()),
    );
    let took = t.elapsed();
    eprintln!("silence → LED released: {:.0} ms", took.as_secs_f64() * 1e3);
    assert!(
        took < Duration::from_secs(5),
        "within one interval (1 s) and a bit: {took:?}"
    );
    let a = alert_state(&agent, "Hot").expect("still listed");
    assert_eq!(a["state"], "silenced", "{a}");
    assert_eq!(a["silenced_by"][0], "an operator", "{a}");
    assert!(a["until_ms"].as_i64().is_some(), "{a}");

    // --- Deleting the silence gives it back, with no webhook (repeat_interval is an hour).
    let r = am_api.request("DELETE", &format!("/api/v2/silence/{id}"), &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(
        "red blinking again after the silence went",
        Duration::from_secs(10),
        || red_blinks_for_hot(&agent).then_some(()),
    );

    // --- An agent restarted while the alert fires shows it again within one interval.
    drop(agent);
    let t = Instant::now();
    agent = start_agent(&cfg, &fleet);
    wait_until(
        "the restarted agent blinking for Hot",
        Duration::from_secs(10),
        || red_blinks_for_hot(&agent).then_some(()),
    );
    eprintln!(
        "restarted agent → red again: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // --- Alertmanager stopped: LEDs as they were, the edge rule still works, the outage shows.
    am.terminate();
    wait_until(
        "edgesense_alertmanager_up 0",
        Duration::from_secs(10),
        || {
            let m = agent.get("/metrics").body;
            (metric(&m, "edgesense_alertmanager_up") == Some(0.0)).then_some(())
        },
    );
    assert!(
        red_blinks_for_hot(&agent),
        "kept while Alertmanager is away"
    );
    agent.set_sim("room", 35.0, Some(TOKEN));
    wait_until(
        "the edge rule lights amber meanwhile",
        Duration::from_secs(10),
        || {
            let a = agent.led("amber");
            (a["mode"] == "on" && a["source"]["name"] == "room-warm").then_some(())
        },
    );
    let logged = agent.log();
    assert_eq!(
        logged.matches("Alertmanager unreachable").count(),
        1,
        "the outage logged once, not per retry:\n{logged}"
    );

    // --- The button while Alertmanager is down: the edge rule is acknowledged at once.
    let r = agent.put(
        "/api/v1/sim/buttons/ack",
        Some(TOKEN),
        r#"{"press_ms":200}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("amber acknowledged", Duration::from_secs(5), || {
        (agent.led("amber")["mode"] == "off").then_some(())
    });
    assert_eq!(
        alert_state(&agent, "room-warm").unwrap()["state"],
        "acknowledged"
    );
    assert!(red_blinks_for_hot(&agent), "Hot waits for its silence");

    // --- Alertmanager back (its silences kept on disk, its alerts re-sent as Prometheus does):
    // the button's silence is created then, and the reconcile turns red off.
    let am = start_alertmanager(d, &fleet, am_addr, agent.addr);
    post_hot(&am_api);
    wait_until(
        "red off once the button's silence exists",
        Duration::from_secs(20),
        || (red(&agent)["mode"] == "off").then_some(()),
    );
    let silences = am_api.get_json("/api/v2/silences");
    let ours: Vec<&Value> = silences
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["status"]["state"] == "active" && s["createdBy"] == "edgesense button on pi-r"
        })
        .collect();
    assert_eq!(ours.len(), 1, "{silences}");
    let mut m: Vec<(String, String)> = ours[0]["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_owned(),
                x["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    m.sort();
    assert_eq!(
        m,
        [
            ("alertname".to_owned(), "Hot".to_owned()),
            ("node".to_owned(), "pi-r".to_owned())
        ]
    );
    wait_until(
        "Hot silenced by the button",
        Duration::from_secs(10),
        || {
            let a = alert_state(&agent, "Hot")?;
            (a["state"] == "silenced" && a["silenced_by"][0] == "edgesense button on pi-r")
                .then_some(())
        },
    );
    assert!(agent.log().contains("Alertmanager reachable again"));
    // The acknowledged rule comes back only when it clears and fires again.
    agent.set_sim("room", 20.0, Some(TOKEN));
    wait_until("the rule cleared", Duration::from_secs(5), || {
        alert_state(&agent, "room-warm").is_none().then_some(())
    });
    agent.set_sim("room", 35.0, Some(TOKEN));
    wait_until(
        "the rule firing again lights amber",
        Duration::from_secs(10),
        || (agent.led("amber")["mode"] == "on").then_some(()),
    );

    // --- A long press hands every manually set LED back.
    let r = agent.put("/api/v1/leds/green", Some(TOKEN), r#"{"mode":"blink"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(agent.led("green")["source"]["kind"], "manual");
    let r = agent.put(
        "/api/v1/sim/buttons/ack",
        Some(TOKEN),
        r#"{"press_ms":3100}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("green back to auto", Duration::from_secs(5), || {
        (agent.led("green")["source"]["kind"] != "manual").then_some(())
    });
    // The node page's acknowledge needs the token.
    let r = request(agent.addr, "POST", "/api/v1/ack", &[], "");
    assert_eq!(r.status, 401);
    let r = request(
        agent.addr,
        "POST",
        "/api/v1/ack",
        &[&format!("Authorization: Bearer {TOKEN}")],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["rules"][0], "room-warm", "{}", r.body);
    drop(am);
    let _ = try_request(agent.addr, "GET", "/healthz", &[], "");
}

/// An Alertmanager whose certificate comes from another CA (another fleet, or someone posing as
/// the stack's): the agent does not believe it. It never counts as up, its alerts light
/// nothing, and the log says why.
#[test]
fn an_alertmanager_of_another_ca_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let am_port = free_port();
    let am_addr: SocketAddr = ([127, 0, 0, 1], am_port).into();
    let cfg = config(d, am_port);
    let ours = TestFleet::new(&d.join("ours"), TOKEN);
    let theirs = TestFleet::new(&d.join("theirs"), TOKEN);
    // Alertmanager first (the agent logs its first failure once: it must be this one); its
    // webhook goes nowhere, only the agent's reconcile is looked at.
    let nowhere: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _am = start_alertmanager(&d.join("theirs"), &theirs, am_addr, nowhere);
    post_hot(&theirs.operator(am_addr, "alertmanager"));
    let agent = start_agent(&cfg, &ours);
    wait_until(
        "the agent refusing the certificate",
        Duration::from_secs(20),
        || {
            let log = agent.log();
            (log.contains("Alertmanager unreachable") && log.contains("certificate")).then_some(())
        },
    );
    // After the refusal: not up, nothing lit.
    let m = agent.get("/metrics").body;
    assert_eq!(metric(&m, "edgesense_alertmanager_up"), Some(0.0), "{m}");
    assert!(!red_blinks_for_hot(&agent), "{}", red(&agent));
    assert!(
        !agent.log().contains("reconciled"),
        "never reconciled against it: {}",
        agent.log()
    );
}
