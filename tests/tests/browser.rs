//! The pages in a real browser: Debian's Chromium, headless, driven by playwright-core from npm
//! (tests/browser/, installed by tests/run.sh with `npm ci`). Screenshots are kept in
//! target/test-artifacts/.

use edgesense_tests::{
    browser::{artifacts, dashboard, png, run_browser},
    Agent,
};

#[test]
fn node_page_shows_sensors_follows_changes_and_drives_leds() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "browser-token-77\n").unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"pi-browser\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--simulate", "--config", cfg.to_str().unwrap()]);
    let shot = artifacts().join("node-page.png");
    let _ = std::fs::remove_file(&shot);
    run_browser(
        "node-page.mjs",
        &[
            &format!("http://{}/", agent.addr),
            "browser-token-77",
            shot.to_str().unwrap(),
        ],
    );
    assert!(png(&shot), "screenshot saved at {}", shot.display());
    assert!(png(&artifacts().join("node-page-phone.png")));
    // The page asked for the token and used it: the LED was set through the authenticated API.
    let leds = agent.get("/api/v1/leds").json();
    let amber = leds["leds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "amber")
        .unwrap()
        .clone();
    assert_eq!(amber["mode"], "blink", "{amber}");
}

/// Starts `edgesense dashboard` on a free loopback port; returns it and its URL.
#[test]
fn cluster_page_shows_two_agents_from_prometheus_and_silences_an_alert() {
    use edgesense_tests::{alerting::FastStack, get_json, wait_until, TestFleet};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = d.join("token");
    std::fs::write(&token, "cluster-token\n").unwrap();
    let fleet = TestFleet::new(d, "cluster-token");
    // The agents reconcile against the stack's Alertmanager (its port chosen first).
    let am_port = edgesense_tests::free_port();
    let agent = |name: &str| {
        let cfg = d.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "node = \"{name}\"\ntoken_file = \"{}\"\npoll_interval = \"1s\"\n[alertmanager]\nurl = \"https://127.0.0.1:{am_port}\"\nreconcile_interval = \"1s\"\n",
                token.display()
            ),
        )
        .unwrap();
        fleet.agent(&["--simulate", "--config", cfg.to_str().unwrap()])
    };
    let (a, b) = (agent("pi-a"), agent("pi-b"));
    let stack = FastStack::start_on(d, &fleet, &[a.addr, b.addr], am_port);
    wait_until("both agents in Prometheus", Duration::from_secs(60), || {
        let v = stack
            .prom_api
            .get_json("/api/v1/query?query=edgesense_node_info");
        (v["data"]["result"].as_array()?.len() == 2).then_some(())
    });
    let r = a.put(
        "/api/v1/sim/sensors/room",
        Some("cluster-token"),
        r#"{"value":40}"#,
    );
    assert_eq!(r.status, 200);
    // pi-b's outside probe fails from now on: its last good value must read as stale.
    let r = b.put(
        "/api/v1/sim/sensors/outside",
        Some("cluster-token"),
        r#"{"fault":"crc"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("the alert in Alertmanager", Duration::from_secs(60), || {
        let v = stack.am_api.get_json("/api/v2/alerts");
        v.as_array()?
            .iter()
            .any(|x| x["labels"]["alertname"] == "EdgesenseTemperatureHigh")
            .then_some(())
    });
    let (ca, pw) = (fleet.ca_file(), fleet.operator_password_file());
    let (dash, url) = dashboard(&stack.prom_api.url(), &stack.am_api.url(), &ca, &pw);
    let closed = edgesense_tests::free_port();
    let (_down, down_url) = dashboard(
        &format!("https://127.0.0.1:{closed}"),
        &format!("https://127.0.0.1:{closed}"),
        &ca,
        &pw,
    );
    // A page of another site, opened in the operator's browser, cannot silence through it.
    run_browser("cross-site.mjs", &[&url]);
    let silences = stack.am_api.get_json("/api/v2/silences");
    assert_eq!(
        silences.as_array().map(Vec::len),
        Some(0),
        "no silence from the other site: {silences}"
    );
    // … because the dashboard refused each attempt that reached it: the no-cors text/plain
    // POST, the JSON fetch's preflight and the text/plain form.
    let refused = dash
        .log()
        .lines()
        .filter(|l| l.contains("refused") && l.contains("/api/silence"))
        .count();
    assert!(refused >= 3, "three attempts refused: {}", dash.log());
    let shot = artifacts().join("cluster-page.png");
    let _ = std::fs::remove_file(&shot);
    run_browser(
        "cluster-page.mjs",
        &[&url, &down_url, shot.to_str().unwrap()],
    );
    assert!(png(&shot), "screenshot at {}", shot.display());
    assert!(png(&artifacts().join("cluster-page-phone.png")));
    // The silence is in Alertmanager, for that alert and node.
    let silences = stack.am_api.get_json("/api/v2/silences");
    let s = silences
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"]["state"] == "active")
        .expect("an active silence");
    let matchers = s["matchers"].to_string();
    assert!(
        matchers.contains("EdgesenseTemperatureHigh") && matchers.contains("pi-a"),
        "{matchers}"
    );
    assert_eq!(s["createdBy"], "edgesense dashboard");
    // The agent follows Alertmanager: the silenced alert no longer lights pi-a's LEDs, and its
    // API says who silenced it.
    wait_until(
        "pi-a's LEDs released by the dashboard's silence",
        Duration::from_secs(10),
        || {
            let r = get_json(a.addr, "/api/v1/readings");
            let silenced = r["alerts"].as_array()?.iter().any(|x| {
                x["name"] == "EdgesenseTemperatureHigh"
                    && x["state"] == "silenced"
                    && x["silenced_by"][0] == "edgesense dashboard"
            });
            let leds = get_json(a.addr, "/api/v1/leds");
            let lit_by_it = leds["leds"]
                .as_array()?
                .iter()
                .any(|l| l["source"]["name"] == "EdgesenseTemperatureHigh");
            (silenced && !lit_by_it).then_some(())
        },
    );
}
