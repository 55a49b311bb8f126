//! Threshold → LED through the whole loop: the real agent binary (`--simulate`), Debian's
//! Prometheus (1 s scrape and evaluation, `for: 0s`) and Alertmanager (`group_wait: 0s`), with the
//! shipped configs. Each round holds the simulated `room` sensor at 40 °C and times the red LED's
//! first pin write in the agent's mock GPIO record, then lowers it and times the LED going off.
//!
//! `cargo build -p edgesense-agent && cargo run --release -p edgesense-bench --bin alert-loop
//! [-- --rounds 10]` (the agent binary comes from `$EDGESENSE_AGENT_BIN` or target/debug).

use std::time::Duration;

use edgesense_bench::{arg, quantile};
use edgesense_tests::{alerting::FastStack, wait_until, Agent, TestFleet};

const TOKEN: &str = "bench-token";

/// Agent-clock time from `t0` to the first write to the red pin with a duty that `want` accepts.
fn time_to(agent: &Agent, t0: f64, want: impl Fn(f64) -> bool) -> Duration {
    let at = wait_until("red LED write", Duration::from_secs(120), || {
        agent
            .gpio_writes(17, t0)
            .into_iter()
            .find(|w| want(w.1))
            .map(|w| w.0)
    });
    Duration::from_secs_f64((at - t0).max(0.0) / 1e3)
}

fn main() {
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let token = d.join("token");
    std::fs::write(&token, TOKEN).expect("token");
    // The built-in node, minus its edge rule: the LED must come through Prometheus.
    let cfg = d.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"bench\"\ntoken_file = \"{}\"\npoll_interval = \"250ms\"\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n[[led]]\nname = \"red\"\npin = 17\n[[alert]]\nmatch = {{ severity = \"critical\" }}\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\n",
            token.display()
        ),
    )
    .expect("config");
    let fleet = TestFleet::new(d, TOKEN);
    let agent = fleet.agent(&["--simulate", "--config", cfg.to_str().expect("utf-8")]);
    let stack = FastStack::start(d, &fleet, agent.addr);
    wait_until(
        "Prometheus scraping the agent",
        Duration::from_secs(30),
        || {
            let v = stack
                .prom_api
                .get_json("/api/v1/query?query=up%7Bjob%3D%22edgesense%22%7D");
            (v["data"]["result"][0]["value"][1] == "1").then_some(())
        },
    );
    let (mut fire, mut clear) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let t0 = agent.now_ms();
        agent.set_sim("room", 40.0, Some(TOKEN));
        let f = time_to(&agent, t0, |d| d > 0.0);
        // Back below: the blink stops when the resolve arrives (seen through the LED API,
        // polled every 50 ms, so this figure is an upper bound).
        let t1 = agent.now_ms();
        agent.set_sim("room", 20.0, Some(TOKEN));
        wait_until("red off", Duration::from_secs(120), || {
            (agent.led("red")["mode"] == "off").then_some(())
        });
        let c = Duration::from_secs_f64((agent.now_ms() - t1).max(0.0) / 1e3);
        eprintln!(
            "round {}: threshold → red {:.0} ms, back → off ≤ {:.0} ms",
            round + 1,
            f.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3
        );
        fire.push(f);
        clear.push(c);
    }
    fire.sort();
    clear.sort();
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!("Threshold → LED through Prometheus (1 s scrape/eval) + Alertmanager (group_wait 0 s), {rounds} rounds\n");
    println!("| figure | min | p50 | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| above threshold → red lit | {} | {} | {} |",
        s(fire[0]),
        s(quantile(&fire, 0.5)),
        s(quantile(&fire, 1.0))
    );
    println!(
        "| back below → red released (≤, polled) | {} | {} | {} |",
        s(clear[0]),
        s(quantile(&clear, 0.5)),
        s(quantile(&clear, 1.0))
    );
}
