//! The fleet at 30 agents on the multi-node swarm (tests/fleet.sh: the manager runs the stack,
//! the simulated agents, `node run --simulate --name`, are spread over the two workers;
//! `EDGESENSE_SCALE_AGENTS` for more): every agent discovered through the one alias, a
//! cluster-wide alert from Alertmanager on every agent's LED, and the cluster dashboard over that
//! fleet in Chromium (summary, problem nodes first, filter, search; screenshots at 1280 and
//! 390 px in target/test-artifacts/). The big N and the figures are in bench/ (fleet-scale).

use std::time::{Duration, Instant};

use edgesense_tests::{
    browser::{artifacts, dashboard, fleet_dashboard},
    fleet::{scraped_nodes, Fleet, Node},
    remote::{firing, fresh_stack, through_alertmanager, Remote, AGENT_CONFIG, TOKEN},
    wait_until,
};

/// The agents reconcile only once an hour: a cluster-wide alert that reaches every LED within
/// the round's minute came by the webhook and the relay, not by a reconcile.
fn config() -> String {
    format!("{AGENT_CONFIG}[alertmanager]\nreconcile_interval = \"1h\"\n")
}

#[test]
fn a_fleet_of_thirty_agents_on_the_swarm() {
    let n: usize = std::env::var("EDGESENSE_SCALE_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    assert!(n >= 4, "at least 4 agents (one down, one hot, one failing)");
    let fleet = Fleet::lock();
    let mgr = fleet.manager().clone();
    let workers: Vec<Node> = fleet.nodes[1..].to_vec();
    assert!(workers.len() >= 2, "the fleet's two workers");
    let f = fresh_stack(&fleet, TOKEN, "2s");
    for w in &workers {
        std::fs::write(w.etc_dir().join("bench.toml"), config()).unwrap();
        w.install_bundle(&f);
    }
    let prom = f.operator(mgr.at(9090), "prometheus");
    let am = f.operator(mgr.at(9093), "alertmanager");

    let t = Instant::now();
    let agents = Remote::spread(&workers, &f, 0, n);
    eprintln!("{n} agents started in {:.1} s", t.elapsed().as_secs_f64());
    let mut names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
    names.sort();
    let t = Instant::now();
    wait_until(
        &format!("exactly the {n} agents scraped"),
        Duration::from_secs(180),
        || (scraped_nodes(&prom) == names).then_some(()),
    );
    eprintln!(
        "all {n} discovered through the alias and scraped {:.1} s after the last start",
        t.elapsed().as_secs_f64()
    );

    // A cluster-wide alert (no `node`), from a clean state: on every red LED, from the one
    // webhook Alertmanager sends and the relay (beyond 16 peers a tree).
    let (first, spread) = through_alertmanager(&agents, &am, "SuiteWide");
    eprintln!(
        "cluster-wide: first LED {:.0} ms after the post, the last of {n} {:.0} ms after it",
        first.as_secs_f64() * 1e3,
        spread.as_secs_f64() * 1e3
    );

    // A fleet with problems: one agent stopped (down), one hot, one sensor failing.
    let (down, hot, failing) = (&agents[1], &agents[n / 2], &agents[n - 1]);
    down.stop();
    assert_eq!(
        hot.send("PUT", "/api/v1/sim/sensors/room", r#"{"value":40}"#),
        200
    );
    assert_eq!(
        failing.send("PUT", "/api/v1/sim/sensors/room", r#"{"fault":"crc"}"#),
        200
    );
    let others: Vec<String> = names.iter().filter(|x| **x != down.name).cloned().collect();
    wait_until(
        "the down agent no longer scraped, the others still",
        Duration::from_secs(120),
        || (scraped_nodes(&prom) == others).then_some(()),
    );
    // The page counts what Alertmanager has: the three alerts there first.
    wait_until(
        "the three problems firing in Alertmanager",
        Duration::from_secs(120),
        || {
            let has = |labels: &[(&str, &str)]| firing(&am, labels).is_some_and(|n| n > 0);
            (has(&[
                ("alertname", "EdgesenseAgentDown"),
                ("down_node", &down.name),
            ]) && has(&[
                ("alertname", "EdgesenseTemperatureHigh"),
                ("node", &hot.name),
            ]) && has(&[
                ("alertname", "EdgesenseSensorDown"),
                ("node", &failing.name),
            ]))
            .then_some(())
        },
    );

    let (_dash, url) = dashboard(
        &prom.url(),
        &am.url(),
        &f.ca_file(),
        &f.operator_password_file(),
    );
    let prefix = artifacts().join(format!("swarm-fleet-{n}"));
    let expect = format!(
        "nodes={n},up={},down=1,alerting=3,stale=1,backfilling=0",
        n - 1
    );
    let m = fleet_dashboard(
        &url,
        n,
        &prefix,
        &[
            "--expect",
            &expect,
            "--select",
            &hot.name,
            "--search",
            &agents[0].name,
            "--charts",
            "temperature",
        ],
    );
    eprintln!("the dashboard over the swarm's {n} nodes: {m}");

    let down = down.name.clone();
    let rest: Vec<Remote> = agents.into_iter().filter(|a| a.name != down).collect();
    Remote::stop_all(&rest);
}
