//! The cluster dashboard over a fleet: N simulated agents on loopback (30 by default,
//! `EDGESENSE_DASHBOARD_NODES` for more), scraped by Debian's Prometheus, with a node down, one
//! alerting, one with a failing sensor and one whose agent was replaced (a new process on a new
//! address). tests/browser/fleet-dashboard.mjs checks the summary's counts, the problem nodes
//! first, the filter, the DOM's size and the charts' legends, takes screenshots at 1280 and
//! 390 px, and prints its measurements (load time, DOM elements, JS heap) as a JSON line.

use std::{net::SocketAddr, path::Path, time::Duration};

use edgesense_tests::{
    alerting::FastStack,
    browser::{artifacts, dashboard, fleet_dashboard},
    free_port, wait_until, Agent, TestFleet,
};

const TOKEN: &str = "scale-token";

/// A simulated agent named `node`, listening on `listen` (else on a port of its choosing).
fn agent(fleet: &TestFleet, dir: &Path, node: &str, listen: Option<SocketAddr>) -> Agent {
    let token = dir.join("token");
    let cfg = dir.join(format!("{node}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "node = \"{node}\"\ntoken_file = \"{}\"\npoll_interval = \"2s\"\n",
            token.display()
        ),
    )
    .unwrap();
    let listen = listen.map(|a| a.to_string());
    let mut args = vec!["--simulate", "--config", cfg.to_str().unwrap()];
    if let Some(l) = &listen {
        args.extend(["--listen", l]);
    }
    fleet.agent(&args)
}

/// Prometheus' file of targets (written whole, then renamed: it never reads half a file).
fn write_targets(file: &Path, targets: &[SocketAddr]) {
    let list: Vec<String> = targets.iter().map(SocketAddr::to_string).collect();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::json!([{ "targets": list }]).to_string()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn count(stack: &FastStack, q: &str) -> Option<usize> {
    let v = stack.prom_api.get_json(&format!(
        "/api/v1/query?query={}",
        edgesense_tests::http_encode(q)
    ));
    Some(v["data"]["result"].as_array()?.len())
}

#[test]
fn the_dashboard_answers_what_is_wrong_where_for_a_fleet() {
    let n: usize = std::env::var("EDGESENSE_DASHBOARD_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    assert!(
        n >= 8,
        "at least 8 nodes (the problem nodes are sim2, sim3, sim5, sim7)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("token"), format!("{TOKEN}\n")).unwrap();
    let fleet = TestFleet::new(d, TOKEN);
    let mut agents: Vec<Agent> = (1..=n)
        .map(|i| agent(&fleet, d, &format!("sim{i}"), None))
        .collect();
    let addrs: Vec<SocketAddr> = agents.iter().map(|a| a.addr).collect();
    // sim2's replacement comes up on an address of its own, scraped from the start.
    let spare: SocketAddr = std::iter::repeat_with(|| ([127, 0, 0, 1], free_port()).into())
        .find(|a| !addrs.contains(a))
        .unwrap();
    let mut targets = addrs.clone();
    targets.push(spare);
    // The agents from a file Prometheus watches, as the swarm's DNS lists them: a replaced
    // agent's old address leaves the list.
    let sd = d.join("targets.json");
    write_targets(&sd, &targets);
    let listed: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
    let listed = format!(
        "    static_configs:\n      - targets: [{}]\n",
        listed.join(", ")
    );
    let watched = format!(
        "    file_sd_configs:\n      - files: ['{}']\n",
        sd.display()
    );
    // Over 100 agents, a scrape every 5 s (the 2-core machines these tests run on).
    let scrape = if n > 100 { "5s" } else { "1s" };
    let stack = FastStack::start_edited(d, &fleet, &targets, free_port(), free_port(), |c| {
        assert!(c.contains(&listed), "the agents' static_configs in {c}");
        c.replace(&listed, &watched)
            .replace("scrape_interval: 1s", &format!("scrape_interval: {scrape}"))
    });
    wait_until(
        "every agent in Prometheus",
        Duration::from_secs(120),
        || (count(&stack, "edgesense_node_info")? == n).then_some(()),
    );
    // sim2 replaced: its agent stops, a new one takes the spare address.
    drop(agents.remove(1));
    agents.push(agent(&fleet, d, "sim2", Some(spare)));
    targets.remove(1);
    write_targets(&sd, &targets);
    // sim3 down (and alerting: EdgesenseAgentDown names it); sim5 hot (an alert with its
    // node); sim7's outside probe failing (stale, and EdgesenseSensorFailing).
    drop(agents.remove(1));
    let put = |i: usize, path: &str, body: &str| {
        let a = agents
            .iter()
            .find(|a| a.addr == addrs[i])
            .expect("a running agent");
        let r = a.put(path, Some(TOKEN), body);
        assert_eq!(r.status, 200, "{}", r.body);
    };
    put(4, "/api/v1/sim/sensors/room", r#"{"value":40}"#);
    put(6, "/api/v1/sim/sensors/outside", r#"{"fault":"crc"}"#);
    wait_until(
        "the fleet's problems in Prometheus",
        Duration::from_secs(120),
        || {
            let alerts = stack.am_api.get_json("/api/v2/alerts");
            let hot = alerts.as_array()?.iter().any(|x| {
                x["labels"]["alertname"] == "EdgesenseTemperatureHigh"
                    && x["labels"]["node"] == "sim5"
            });
            let ok = hot
                && count(&stack, "up{job=\"edgesense\"}")? == n
                && count(&stack, "up{job=\"edgesense\"} == 1")? == n - 1
                && count(&stack, "edgesense_sensor_up == 0")? >= 1;
            ok.then_some(())
        },
    );
    let (ca, pw) = (fleet.ca_file(), fleet.operator_password_file());
    let (_dash, url) = dashboard(&stack.prom_api.url(), &stack.am_api.url(), &ca, &pw);
    let prefix = artifacts().join(format!("fleet-dashboard-{n}"));
    let expect = format!(
        "nodes={n},up={},down=1,alerting=3,stale=1,backfilling=0",
        n - 1
    );
    let last = format!("sim{n}");
    let m = fleet_dashboard(
        &url,
        n,
        &prefix,
        &["--expect", &expect, "--select", "sim2", "--search", &last],
    );
    eprintln!("fleet dashboard at {n} nodes: {m}");
    assert!(m["dom_elements"].as_u64().is_some_and(|e| e < 5000), "{m}");
}
