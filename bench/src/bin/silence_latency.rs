//! A silence in Alertmanager → the LED it lit released: the real agent binary (`--simulate`,
//! its mock GPIO record) reconciling against Debian's Alertmanager with the default
//! `reconcile_interval` (15 s; no webhook tells of a silence). Each round fires an alert through
//! Alertmanager (red on), creates a silence for it through the API at a point of the reconcile
//! period spread evenly over the rounds (a silence comes at any moment; right after the LED came
//! back it would always wait a whole period), and times the red pin's first write to off on the
//! agent's clock; then deletes the silence and waits for red again.
//!
//! `cargo build -p edgesense-agent && cargo run --release -p edgesense-bench --bin
//! silence-latency [-- --rounds 10 --interval 15s]` (needs Debian's prometheus-alertmanager).

use std::{net::SocketAddr, time::Duration};

use edgesense_bench::{arg, quantile};
use edgesense_tests::{
    alerting::start_alertmanager,
    free_port,
    payload::{Alert, Silence},
    wait_until, TestFleet,
};

const TOKEN: &str = "bench-silence-token";

fn main() {
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let interval = arg("--interval").unwrap_or_else(|| "15s".into());
    let period_s: f64 = interval
        .trim_end_matches('s')
        .parse()
        .expect("--interval in seconds, e.g. 15s");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let token = d.join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let am_port = free_port();
    let am_addr: SocketAddr = ([127, 0, 0, 1], am_port).into();
    let cfg = d.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"bench\"\ntoken_file = \"{}\"\n[alertmanager]\nurl = \"https://127.0.0.1:{am_port}\"\nreconcile_interval = \"{interval}\"\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n[[led]]\nname = \"red\"\npin = 17\n[[alert]]\nled = \"red\"\nmode = \"on\"\n",
            token.display()
        ),
    )
    .expect("config");
    let fleet = TestFleet::new(d, TOKEN);
    let agent = fleet.agent(&["--simulate", "--config", cfg.to_str().expect("utf-8")]);
    let _am = start_alertmanager(d, &fleet, am_addr, agent.addr);
    let am = fleet.operator(am_addr, "alertmanager");
    let json = ["Content-Type: application/json"];
    let r = am.request(
        "POST",
        "/api/v2/alerts",
        &json,
        &Alert::new("BenchHot")
            .label("node", "bench")
            .label("severity", "critical")
            .around_now(5, 3600)
            .post_body(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut released = Vec::new();
    for round in 0..rounds {
        wait_until("red on for the alert", Duration::from_secs(120), || {
            (agent.led("red")["mode"] == "on").then_some(())
        });
        // The golden-ratio sequence: evenly spread phases of the reconcile period.
        let phase = (round as f64 * 0.618_033_988_75).fract();
        std::thread::sleep(Duration::from_secs_f64(phase * period_s));
        let t0 = agent.now_ms();
        let r = am.request(
            "POST",
            "/api/v2/silences",
            &json,
            &Silence::of("BenchHot").by("bench").comment("bench").body(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.json()["silenceID"].as_str().expect("id").to_owned();
        let at = wait_until("red released", Duration::from_secs(120), || {
            agent
                .gpio_writes(17, t0)
                .into_iter()
                .find(|w| w.1 == 0.0)
                .map(|w| w.0)
        });
        let took = Duration::from_secs_f64((at - t0).max(0.0) / 1e3);
        eprintln!(
            "round {}: silence → red released {:.0} ms",
            round + 1,
            took.as_secs_f64() * 1e3
        );
        released.push(took);
        let r = am.request("DELETE", &format!("/api/v2/silence/{id}"), &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    released.sort();
    println!(
        "Silence in Alertmanager → LED released, reconcile_interval {interval}, {rounds} rounds\n"
    );
    println!("| figure | p50 | max |\n|---|---:|---:|");
    println!(
        "| silence → LED released | {:.2} s | {:.2} s |",
        quantile(&released, 0.5).as_secs_f64(),
        quantile(&released, 1.0).as_secs_f64()
    );
}
