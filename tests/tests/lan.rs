//! The fleet on a shared LAN (SECURITY.md's threat model), on the multi-node harness: the
//! stack with its ports published, agents on both workers, and one more machine on the same
//! bridge that belongs to nobody in the fleet (tests/fleet.sh stranger).
//!
//! - A capture of the bridge (every packet between the nodes, VXLAN included) while an alert
//!   goes through Prometheus, Alertmanager's webhook and the relay to its LED, a button on the
//!   node silences it in Alertmanager, and the agents reconcile and are scraped: no token,
//!   password or `Authorization` header in it; a marker sent in clear on purpose is (the
//!   capture sees payloads).
//! - The stranger gets 401 or no answer from every published port and every agent, for reads
//!   and writes, over http and https, and a certificate of another CA gets it nothing; nothing
//!   it sent changed anything.

use std::time::Duration;

use edgesense_tests::{
    fleet::{pcap_packets, scraped_nodes, udp_dst_port, Fleet, Node},
    payload::{Alert, Silence},
    remote::fast_stack_up,
    tls::insecure_client,
    wait_until, Endpoint, TestFleet,
};
use serde_json::Value;

/// The agent published on port 9842 of `node`, as the node itself reaches it.
fn on_node(f: &TestFleet, node: &Node, method: &str, path: &str, body: &str) -> Value {
    let r = node
        .request_from(
            &f.agent_at(([127, 0, 0, 1], 9842).into()),
            method,
            path,
            &[],
            body,
        )
        .expect("the agent answers");
    assert_eq!(
        r.status, 200,
        "{method} {path} on {}: {}",
        node.name, r.body
    );
    r.json()
}

fn red(f: &TestFleet, node: &Node) -> Value {
    on_node(f, node, "GET", "/api/v1/leds", "")["leds"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "red").cloned())
        .unwrap_or(Value::Null)
}

/// Whether `needle` is anywhere in `hay`, ASCII case ignored.
fn contains_ci(hay: &[u8], needle: &str) -> bool {
    let n = needle.to_ascii_lowercase().into_bytes();
    hay.windows(n.len())
        .any(|w| w.iter().zip(&n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

#[test]
fn nobody_without_credentials_can_silence_forge_or_read_the_fleet() {
    let fleet = Fleet::lock();
    let (mgr, pi_a, pi_b) = (fleet.node("mgr"), fleet.node("pi-a"), fleet.node("pi-b"));
    fleet.clean();
    let f = fast_stack_up(mgr, "1s", &[]);
    // Simulated agents that reconcile every 2 s (the built-in node: sensors, LEDs, a button).
    std::fs::write(
        mgr.etc_dir().join("lan-agent.toml"),
        "poll_interval = \"1s\"\n[alertmanager]\nreconcile_interval = \"2s\"\n",
    )
    .unwrap();
    for n in [pi_a, pi_b] {
        mgr.edgesense_ok(&[
            "--docker-host",
            &n.tcp_host(),
            "node",
            "run",
            "--simulate",
            "--config",
            "/etc/edgesense/lan-agent.toml",
            "--publish",
            "9842",
        ]);
    }
    let m = mgr.addr.to_string();
    let prom = f.operator(mgr.at(9090), &m);
    let am = f.operator(mgr.at(9093), &m);
    wait_until("both agents scraped", Duration::from_secs(120), || {
        (scraped_nodes(&prom) == ["pi-a", "pi-b"]).then_some(())
    });

    // --- The capture, while every hop carries what it carries.
    let dir = tempfile::tempdir().unwrap();
    let capture = fleet.capture(&dir.path().join("lan.pcap"));
    // A marker in clear, on purpose, from the operator's machine: plain HTTP to a worker's
    // agent, which answers that it speaks HTTPS only.
    let marker = "lan-capture-marker-7f3a";
    let plain = edgesense_tests::try_request(
        pi_a.at(9842),
        "GET",
        &format!("/api/v1/readings?{marker}"),
        &[],
        "",
    )
    .expect("the agent answers plain HTTP");
    assert_eq!(plain.status, 400, "{}", plain.body);
    assert!(plain.body.contains("HTTPS only"), "{}", plain.body);
    // An alert for pi-b: scrape, rule, Alertmanager's webhook to one agent, the relay.
    on_node(
        &f,
        pi_b,
        "PUT",
        "/api/v1/sim/sensors/room",
        r#"{"value":40}"#,
    );
    wait_until("pi-b's red blinking", Duration::from_secs(120), || {
        let r = red(&f, pi_b);
        (r["mode"] == "blink" && r["source"]["name"] == "EdgesenseTemperatureHigh").then_some(())
    });
    // pi-b's button: a silence in Alertmanager from the agent, and its reconcile lets go.
    on_node(
        &f,
        pi_b,
        "PUT",
        "/api/v1/sim/buttons/ack",
        r#"{"press_ms":100}"#,
    );
    wait_until(
        "the button's silence in Alertmanager, red off",
        Duration::from_secs(60),
        || {
            let s = am.get_json("/api/v2/silences");
            let made = s.as_array()?.iter().any(|x| {
                x["createdBy"] == "edgesense button on pi-b" && x["status"]["state"] == "active"
            });
            (made && red(&f, pi_b)["mode"] == "off").then_some(())
        },
    );
    on_node(
        &f,
        pi_b,
        "PUT",
        "/api/v1/sim/sensors/room",
        r#"{"value":21}"#,
    );
    let pcap = capture.stop();
    let packets = pcap_packets(&pcap);
    let vxlan = packets
        .iter()
        .filter(|p| udp_dst_port(p) == Some(4789))
        .count();
    eprintln!(
        "capture of the LAN: {} packets ({vxlan} VXLAN), {} bytes",
        packets.len(),
        pcap.len()
    );
    assert!(
        vxlan >= 100,
        "the overlay's traffic is in the capture: {vxlan}"
    );
    assert!(
        contains_ci(&pcap, marker),
        "the capture holds payloads in clear where there are any"
    );
    let mut secrets: Vec<(&str, String)> = vec![("the webhook token", f.kept.token.clone())];
    for user in ["edgesense", "agent", "prometheus", "self"] {
        secrets.push((user, f.kept.password(user).unwrap().to_owned()));
    }
    for (what, secret) in &secrets {
        assert!(!contains_ci(&pcap, secret), "{what} in clear on the LAN");
    }
    for header in ["authorization:", "bearer ", "basic "] {
        assert!(
            !contains_ci(&pcap, header),
            "{header:?} in clear on the LAN"
        );
    }

    // --- The stranger.
    let stranger = fleet.stranger();
    let silences_before = am.get_json("/api/v2/silences").as_array().unwrap().len();
    let foreign = edgesense::pki::Ca::generate("stranger").unwrap();
    let forged = foreign
        .issue("agent", &["edgesense-agent".to_owned()], 30)
        .unwrap();
    let targets = [
        ("Prometheus", mgr.at(9090), m.as_str()),
        ("Alertmanager", mgr.at(9093), m.as_str()),
        ("pi-a's agent", pi_a.at(9842), "edgesense-agent"),
        ("pi-b's agent", pi_b.at(9842), "edgesense-agent"),
    ];
    let alert = Alert::new("StrangerAlarm")
        .label("node", "pi-a")
        .label("severity", "critical")
        .around_now(5, 600)
        .post_body();
    let silence = Silence::of("EdgesenseTemperatureHigh")
        .by("stranger")
        .comment("all clear")
        .body();
    let json = ["Content-Type: application/json"];
    let calls: [(&str, &str, &str); 8] = [
        ("GET", "/api/v1/query?query=up", ""),
        ("GET", "/api/v2/alerts", ""),
        ("POST", "/api/v2/silences", &silence),
        ("POST", "/api/v2/alerts", &alert),
        ("GET", "/metrics", ""),
        ("GET", "/api/v1/readings", ""),
        ("PUT", "/api/v1/leds/red", r#"{"mode":"on"}"#),
        ("POST", "/api/v1/alertmanager", "{}"),
    ];
    let mut answered = 0;
    for (what, addr, _) in targets {
        for (method, path, body) in calls {
            // Plain HTTP: no service answers it with data.
            // A refused or reset connection is as good as a 400.
            if let Ok(r) = stranger.request(&Endpoint::plain(addr), method, path, &json, body) {
                assert_eq!(
                    r.status, 400,
                    "{what}: plain {method} {path} from the stranger: {} {}",
                    r.status, r.body
                );
            }
            // https, any certificate accepted, no credentials: 401.
            let https = Endpoint::https(addr, insecure_client(None), "x");
            let r = stranger
                .request(&https, method, path, &json, body)
                .unwrap_or_else(|e| panic!("{what}: https {method} {path}: {e}"));
            assert_eq!(
                r.status, 401,
                "{what}: https {method} {path} from the stranger: {}",
                r.body
            );
            answered += 1;
            // A certificate of another CA, made out to the agents' own name.
            let with_forged =
                Endpoint::https(addr, insecure_client(Some(forged.pem.as_bytes())), "x");
            match stranger.request(&with_forged, method, path, &json, body) {
                Ok(r) => assert_eq!(
                    r.status, 401,
                    "{what}: {method} {path} with another CA's certificate: {}",
                    r.body
                ),
                Err(e) => assert!(
                    what.contains("agent"),
                    "{what} refused the handshake ({e}): only agents ask for certificates"
                ),
            }
        }
    }
    assert_eq!(answered, 32);
    // The operator's own credentials do work from the same place (the refusals are not the
    // network's doing).
    let r = stranger
        .request(&prom, "GET", "/api/v1/query?query=up", &[], "")
        .expect("Prometheus answers the operator");
    assert_eq!(r.status, 200, "{}", r.body);
    // Nothing the stranger sent changed anything.
    let silences = am.get_json("/api/v2/silences");
    assert_eq!(
        silences.as_array().unwrap().len(),
        silences_before,
        "no silence from the stranger: {silences}"
    );
    let alerts = am.get_json("/api/v2/alerts");
    assert!(
        !alerts.to_string().contains("StrangerAlarm"),
        "no alert from the stranger: {alerts}"
    );
    edgesense_tests::holds("pi-a's red untouched", Duration::from_secs(3), || {
        let mode = red(&f, pi_a)["mode"].as_str()?.to_owned();
        // Neither the stranger's PUT (on) nor its alert (critical: blink) took it.
        Some((mode == "off", mode))
    });
    drop(stranger);
    for n in [pi_a, pi_b] {
        n.edgesense_ok(&["node", "stop"]);
    }
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
}
