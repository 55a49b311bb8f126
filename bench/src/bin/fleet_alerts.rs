//! Alerts to LEDs across the multi-node swarm (tests/fleet.sh: `mgr`, `pi-a`, `pi-b`): the stack
//! on the manager (1 s scrape and evaluation, `for: 0s`, `group_wait: 0s`) and 30 simulated
//! agents, 15 on each worker (`node run --name`).
//!
//! Red lights only for the rounds' own alerts (`EdgesenseTemperatureHigh`, and the bench's
//! cluster-wide ones, label `bench="wide"`): never for `EdgesenseAgentDown` or anything else an
//! earlier round left behind. Every round starts from a checked clean state: the LEDs it times
//! are off and Alertmanager has nothing of the round's kind firing.
//!
//! - Threshold → LED on a remote worker: a round holds one agent's `room` at 40 °C and times
//!   its red pin's first write (the agent's own mock GPIO record, on the agent's clock) through
//!   Prometheus, Alertmanager and the relay. Each round uses another agent, so each alert is a
//!   new group and `group_wait` applies (a group's second alert waits `group_interval`).
//! - The relay's fan-out: one webhook posted by this bench to one agent (as Alertmanager would),
//!   then the time until the last of the 30 red pins is written, each agent's record put on this
//!   machine's clock by a (host time, agent clock) pair taken just before.
//! - A cluster-wide alert through Alertmanager: an alert without a `node` label posted into
//!   Alertmanager, which notifies one agent by its webhook (that agent's pin is the first
//!   written); the figure is that first write → the last of the 30.
//!
//! Prints markdown rows. Run by bench/fleet.sh, which starts the fleet.

use std::time::{Duration, Instant};

use edgesense_bench::{arg, quantile};
use edgesense_tests::{
    fleet::Fleet,
    payload::Alert,
    remote::{
        fresh_stack, threshold_round, through_alertmanager, wide_round, Remote, AGENT_CONFIG,
        FIRST_PORT, TOKEN,
    },
    wait_until,
};

const PER_WORKER: u16 = 15;

/// The webhook Alertmanager would send for a cluster-wide bench alert (`bench="wide"`: the
/// agents' config lights red for it).
fn webhook(alertname: &str, status: &str) -> String {
    let alert = Alert::new(alertname)
        .label("severity", "critical")
        .label("bench", "wide");
    match status {
        "firing" => alert.webhook(),
        _ => alert.resolved_at("2026-01-01T00:01:00Z").webhook(),
    }
}

fn main() {
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let wide_rounds: usize = arg("--wide-rounds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let fleet = Fleet::lock();
    let mgr = fleet.manager().clone();
    let f = fresh_stack(&fleet, TOKEN, "1s");
    // The built-in node without its edge rule, so the LED can only come through the stack.
    let cfg = AGENT_CONFIG;
    let mut agents = Vec::new();
    for w in ["pi-a", "pi-b"] {
        let node = fleet.node(w).clone();
        std::fs::write(node.etc_dir().join("bench.toml"), cfg).expect("config");
        node.install_bundle(&f);
        for i in 0..PER_WORKER {
            let name = format!("{w}-{i:02}");
            agents.push(Remote::start(&node, &f, &name, FIRST_PORT + i));
        }
    }
    let prom = f.operator(mgr.at(9090), "prometheus");
    let t = Instant::now();
    wait_until("all 30 agents scraped", Duration::from_secs(300), || {
        let r = prom
            .try_request(
                "GET",
                "/api/v1/query?query=count(up%7Bjob%3D%22edgesense%22%7D%3D%3D1)",
                &[],
                "",
            )
            .ok()?;
        let v = r.json();
        (v["data"]["result"][0]["value"][1] == "30").then_some(())
    });
    eprintln!(
        "30 agents scraped {:.1} s after the last node run",
        t.elapsed().as_secs_f64()
    );

    let am = f.operator(mgr.at(9093), "alertmanager");
    let mut fire = Vec::new();
    for round in 0..rounds {
        let a = &agents[(round * 7) % agents.len()];
        let d = threshold_round(a, &am);
        eprintln!(
            "round {}: {} threshold → red {:.0} ms",
            round + 1,
            a.name,
            d.as_secs_f64() * 1e3
        );
        fire.push(d);
    }
    fire.sort();

    // The relay's fan-out: a webhook this bench posts to one agent.
    let mut fan_out = Vec::new();
    for round in 0..wide_rounds {
        let alertname = format!("FanOut{round}");
        let (_, last) = wide_round(&agents, &am, || {
            assert_eq!(
                agents[0].send(
                    "POST",
                    "/api/v1/alertmanager",
                    &webhook(&alertname, "firing")
                ),
                200
            );
        });
        eprintln!(
            "fan-out round {}: webhook posted → last of {} LEDs {:.0} ms",
            round + 1,
            agents.len(),
            last.as_secs_f64() * 1e3
        );
        fan_out.push(last);
        assert_eq!(
            agents[0].send(
                "POST",
                "/api/v1/alertmanager",
                &webhook(&alertname, "resolved")
            ),
            200
        );
    }
    // Which round was slowest (the first opens every relay connection, over TLS).
    let slowest = fan_out
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| **d)
        .map_or(0, |(i, _)| i + 1);
    fan_out.sort();

    // A cluster-wide alert through Alertmanager: its webhook reaches one agent (the first LED),
    // the relay and the reconciles the rest.
    let mut through_am = Vec::new();
    for round in 0..wide_rounds {
        let (first, spread) = through_alertmanager(&agents, &am, &format!("FleetWide{round}"));
        eprintln!(
            "through Alertmanager, round {}: first LED {:.0} ms after the post, last {:.0} ms after the first",
            round + 1,
            first.as_secs_f64() * 1e3,
            spread.as_secs_f64() * 1e3
        );
        through_am.push(spread);
    }
    through_am.sort();

    for a in &agents {
        a.stop();
    }
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);

    let s = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    println!(
        "| threshold → LED on a remote worker via Prometheus + Alertmanager + relay (3-node swarm, 1 s scrape/eval, group_wait 0; each round from red off and nothing firing), median of {rounds} | {} (max {}) |  |  |  |  |",
        s(quantile(&fire, 0.5)),
        s(quantile(&fire, 1.0))
    );
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    println!(
        "| relay fan-out: one webhook posted to one agent → last LED of {n} agents on 2 workers (TLS), median of {wide_rounds} | {} (max {}, round {slowest}{}) |  |  |  |  |",
        ms(quantile(&fan_out, 0.5)),
        ms(quantile(&fan_out, 1.0)),
        if slowest == 1 { ": new connections" } else { "" },
        n = agents.len()
    );
    println!(
        "| cluster-wide alert through Alertmanager: its webhook (the first LED) → last LED of {n} agents, median of {wide_rounds} | {} (max {}) |  |  |  |  |",
        ms(quantile(&through_am, 0.5)),
        ms(quantile(&through_am, 1.0)),
        n = agents.len()
    );
}
