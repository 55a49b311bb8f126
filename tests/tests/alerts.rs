//! Alerts to LEDs with the real parts: Debian's Prometheus and Alertmanager, run on loopback with
//! the shipped `stack/assets` configs (made fast: 1 s scrape and evaluation, `for: 0s`,
//! `group_wait: 0s`), and the real agent binary with simulated hardware, whose mock GPIO record
//! shows the LED pattern. A second test shows two agents relaying a payload.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use edgesense_tests::{
    alerting::FastStack, free_port, payload::Alert, wait_until, Agent, TestFleet,
};
use serde_json::Value;

const TOKEN: &str = "e2e-8f3a1c";

/// A simulated agent with `config` and the fleet's TLS credentials.
fn agent(fleet: &TestFleet, config: &Path, extra: &[&str]) -> Agent {
    let mut args = vec!["--simulate", "--config", config.to_str().unwrap()];
    args.extend(extra);
    fleet.agent(&args)
}

/// A simulated node with the built-in node's LEDs and alert routes, but no edge rule: every LED
/// change in these tests comes through the webhook.
fn node_config(dir: &Path, name: &str, listen: &str, peers: &[String]) -> PathBuf {
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let text = format!(
        r#"
node = "{name}"
listen = "{listen}"
token_file = "{}"
poll_interval = "250ms"
[relay]
peers = [{}]
[[sensor]]
name = "room"
kind = "ds18b20"
[[sensor]]
name = "soc"
kind = "thermal"
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
match = {{ severity = "critical" }}
led = "red"
mode = "blink"
period_ms = 250
[[alert]]
match = {{ severity = "warning" }}
led = "amber"
mode = "on"
[[alert]]
led = "green"
mode = "off"
"#,
        token.display(),
        peers.join(", ")
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn threshold_to_led_through_real_prometheus_and_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fleet = TestFleet::new(d, TOKEN);
    let agent = agent(&fleet, &node_config(d, "pi-e2e", "127.0.0.1:0", &[]), &[]);

    let stack = FastStack::start(d, &fleet, agent.addr);
    let (prom, am) = (&stack.prom_api, &stack.am_api);
    wait_until(
        "Prometheus scraping the agent with its node name",
        Duration::from_secs(30),
        || {
            let q = "/api/v1/query?query=edgesense_node_info%7Bnode%3D%22pi-e2e%22%7D";
            let v = prom.get_json(q);
            (!v["data"]["result"].as_array()?.is_empty()).then_some(())
        },
    );
    assert_eq!(agent.led("red")["mode"], "off");

    // Room above the critical threshold: Prometheus fires, Alertmanager posts, red blinks.
    let t0 = agent.now_ms();
    let started = Instant::now();
    agent.set_sim("room", 40.0, Some(TOKEN));
    let lit = wait_until("red lit by the alert", Duration::from_secs(60), || {
        agent.gpio_writes(17, t0).into_iter().find(|w| w.1 > 0.0)
    });
    let fire_ms = lit.0 - t0;
    let red = agent.led("red");
    assert_eq!(red["mode"], "blink", "{red}");
    assert_eq!(red["source"]["name"], "EdgesenseTemperatureHigh", "{red}");
    assert_eq!(red["source"]["severity"], "critical", "{red}");
    assert_eq!(agent.led("green")["mode"], "off");
    // The blink as the GPIO saw it: on/off steps of 125 ms.
    let blink = wait_until("six blink steps", Duration::from_secs(10), || {
        let w = agent.gpio_writes(17, lit.0 - 0.001);
        (w.len() >= 6).then_some(w)
    });
    for (i, pair) in blink.windows(2).take(5).enumerate() {
        assert_eq!(pair[0].1, if i % 2 == 0 { 1.0 } else { 0.0 }, "{blink:?}");
        let gap = pair[1].0 - pair[0].0;
        assert!(
            (100.0..=200.0).contains(&gap),
            "blink step {gap} ms: {blink:?}"
        );
    }
    // Alertmanager's view: the critical alert for this node, its warning twin inhibited.
    let am_alerts = am.get_json("/api/v2/alerts?active=true&inhibited=false");
    let names: Vec<String> = am_alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["labels"]["alertname"], a["labels"]["severity"]))
        .collect();
    assert!(names.iter().any(|n| n.contains("critical")), "{names:?}");

    // Back below: the resolve turns red off and green on again.
    let t1 = agent.now_ms();
    agent.set_sim("room", 20.0, Some(TOKEN));
    wait_until(
        "red back off after the resolve",
        Duration::from_secs(60),
        || {
            let w = agent.gpio_writes(17, t1);
            let settled = w.last().is_some_and(|l| l.1 == 0.0);
            (settled && agent.led("red")["mode"] == "off").then_some(())
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.led("green")["mode"] != "on" {
        assert!(
            Instant::now() < deadline,
            "green not on again 10 s after red went off: amber {}, green {}; agent log:\n{}",
            agent.led("amber"),
            agent.led("green"),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The warning twin too, even when Alertmanager notified it before the inhibition and muted
    // its resolve (the group's `resolved` payload ends it).
    assert_eq!(agent.led("amber")["mode"], "off", "{}", agent.led("amber"));
    let resolve_ms = agent.now_ms() - t1;
    eprintln!(
        "threshold → red LED: {fire_ms:.0} ms (wall {:.1} s incl. resolve); resolve seen after ≤ {resolve_ms:.0} ms",
        started.elapsed().as_secs_f64()
    );
    let hooks = agent
        .log()
        .lines()
        .filter(|l| l.contains("Alertmanager webhook"))
        .count();
    assert!(
        hooks >= 2,
        "firing and resolved notifications: {}",
        agent.log()
    );
    drop(stack);
}

fn post_hook(agent: &Agent, alert: &Alert) -> Value {
    let body = alert.clone().webhook();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let r = edgesense_tests::request(agent.addr, "POST", "/api/v1/alertmanager", &[&auth], &body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn relay_lights_only_the_node_the_alert_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port_a = free_port();
    let dead = format!("127.0.0.1:{}", free_port());
    // Both with the fleet's certificates: the relay goes over https, each peer verified.
    let fleet = TestFleet::new(d, TOKEN);
    // B lists A as its peer: if B forwarded a relayed payload again, A would log it.
    let b = agent(
        &fleet,
        &node_config(d, "pi-b", "127.0.0.1:0", &[format!("127.0.0.1:{port_a}")]),
        &[],
    );
    let listen_a = format!("127.0.0.1:{port_a}");
    let a = agent(
        &fleet,
        &node_config(d, "pi-a", &listen_a, &[b.addr.to_string(), dead.clone()]),
        &["--listen", &listen_a],
    );

    let hot = Alert::new("Hot")
        .label("severity", "critical")
        .label("node", "pi-b")
        .starts_at("2026-11-25T10:00:00Z");
    let v = post_hook(&a, &hot);
    assert_eq!(v["relayed"], true, "{v}");
    assert_eq!(v["other_nodes"], 1, "{v}");
    // Answered while the dead peer is still being retried (its last attempt is ~15 s away).
    assert!(
        !a.log().contains("peer unreachable"),
        "the response waited for the relay: {}",
        a.log()
    );
    wait_until("B's red blinks", Duration::from_secs(10), || {
        (b.led("red")["mode"] == "blink").then_some(())
    });
    assert!(
        b.log()
            .lines()
            .any(|l| l.contains("Alertmanager webhook") && l.contains("pi-a")),
        "B got it relayed by A: {}",
        b.log()
    );
    assert_eq!(a.led("red")["mode"], "off", "A is not pi-b");
    assert!(
        a.gpio_writes(17, 0.0).iter().all(|w| w.1 == 0.0),
        "A's red pin never lit"
    );

    // The dead peer: retried with back-off, then given up, logged.
    wait_until(
        "A gives up on the dead peer",
        Duration::from_secs(40),
        || {
            let log = a.log();
            log.lines()
                .any(|l| l.contains("peer unreachable") && l.contains(&dead))
                .then_some(())
        },
    );
    let retries = a
        .log()
        .lines()
        .filter(|l| l.contains("relay attempt failed") && l.contains(&dead))
        .count();
    assert_eq!(retries, 6, "one attempt and five retries: {}", a.log());
    assert!(
        !a.log()
            .lines()
            .any(|l| l.contains("Alertmanager webhook") && l.contains("pi-b")),
        "B did not forward the relayed payload back: {}",
        a.log()
    );

    post_hook(&a, &hot.resolved_at("2026-11-25T10:05:00Z"));
    wait_until(
        "B's red off after the relayed resolve",
        Duration::from_secs(10),
        || (b.led("red")["mode"] == "off").then_some(()),
    );
}
