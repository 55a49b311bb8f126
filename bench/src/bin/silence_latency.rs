//! A silence in Alertmanager → the LED it lit released: the real agent binary (`--simulate`,
//! its mock GPIO record) reconciling against Debian's Alertmanager with the default
//! `reconcile_interval` (15 s; no webhook tells of a silence). Each round fires an alert through
//! Alertmanager (red on), creates a silence for it through the API at a point of the reconcile
//! period spread evenly over the rounds (a silence comes at any moment; right after the LED came
//! back it would always wait a whole period), and times the red pin's first write to off on the
//! agent's clock; then deletes the silence and waits for red again.
//!
//! `--pair` also runs the same rounds (the same phases) against two Alertmanagers clustered as
//! the stack's pair is (gossip with mutual TLS), the agent given both and the silence made on
//! the second, the one the agent does not ask while the first answers: the silence must gossip
//! across before the agent can see it. The pair's cost is the median of the per-round
//! differences.
//!
//! `cargo build -p edgesense-agent && cargo run --release -p edgesense-bench --bin
//! silence-latency [-- --rounds 10 --interval 15s --pair]` (needs Debian's
//! prometheus-alertmanager).

use std::{net::SocketAddr, path::Path, time::Duration};

use edgesense_bench::{arg, quantile};
use edgesense_tests::{
    alerting::{start_alertmanager_in, Cluster},
    free_port,
    payload::{Alert, Silence},
    wait_until, Daemon, TestFleet,
};

const TOKEN: &str = "bench-silence-token";

/// Rounds of silence → red released against `ams` Alertmanagers (1, or 2 clustered); the
/// silence is made on the last of them.
fn rounds_against(
    d: &Path,
    fleet: &TestFleet,
    ams: usize,
    rounds: usize,
    interval: &str,
    period_s: f64,
) -> Vec<Duration> {
    let web: Vec<SocketAddr> = (0..ams)
        .map(|_| ([127, 0, 0, 1], free_port()).into())
        .collect();
    let gossip: Vec<SocketAddr> = (0..ams)
        .map(|_| ([127, 0, 0, 1], free_port()).into())
        .collect();
    let urls: Vec<String> = web.iter().map(|a| format!("\"https://{a}\"")).collect();
    std::fs::create_dir_all(d).expect("mkdir");
    let token = d.join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let cfg = d.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"bench\"\ntoken_file = \"{}\"\n[alertmanager]\nurl = [{}]\nreconcile_interval = \"{interval}\"\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n[[led]]\nname = \"red\"\npin = 17\n[[alert]]\nled = \"red\"\nmode = \"on\"\n",
            token.display(),
            urls.join(", ")
        ),
    )
    .expect("config");
    let agent = fleet.agent(&["--simulate", "--config", cfg.to_str().expect("utf-8")]);
    let _ams: Vec<Daemon> = (0..ams)
        .map(|i| {
            let dir = d.join(format!("am{i}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let peers: Vec<SocketAddr> =
                gossip.iter().copied().filter(|&g| g != gossip[i]).collect();
            let cluster = (ams > 1).then(|| Cluster {
                listen: gossip[i],
                peers: &peers,
            });
            start_alertmanager_in(&dir, fleet, web[i], agent.addr, cluster)
        })
        .collect();
    let api: Vec<_> = web
        .iter()
        .map(|&a| fleet.operator(a, "alertmanager"))
        .collect();
    if ams > 1 {
        wait_until("the pair formed", Duration::from_secs(60), || {
            api.iter()
                .all(|am| {
                    am.get_json("/api/v2/status")["cluster"]["peers"]
                        .as_array()
                        .is_some_and(|p| p.len() == ams)
                })
                .then_some(())
        });
    }
    let json = ["Content-Type: application/json"];
    // As Prometheus does: the alert to every Alertmanager.
    for am in &api {
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
    }
    let am = api.last().expect("an Alertmanager");
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
            "{ams} Alertmanager(s), round {}: silence → red released {:.0} ms",
            round + 1,
            took.as_secs_f64() * 1e3
        );
        released.push(took);
        let r = am.request("DELETE", &format!("/api/v2/silence/{id}"), &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    released
}

fn main() {
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let interval = arg("--interval").unwrap_or_else(|| "15s".into());
    let pair = std::env::args().any(|a| a == "--pair");
    let period_s: f64 = interval
        .trim_end_matches('s')
        .parse()
        .expect("--interval in seconds, e.g. 15s");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let fleet = TestFleet::new(d, TOKEN);
    let one = rounds_against(&d.join("one"), &fleet, 1, rounds, &interval, period_s);
    println!(
        "Silence in Alertmanager → LED released, reconcile_interval {interval}, {rounds} rounds\n"
    );
    println!("| figure | p50 | max |\n|---|---:|---:|");
    let row = |label: &str, v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        println!(
            "| {label} | {:.2} s | {:.2} s |",
            quantile(&v, 0.5).as_secs_f64(),
            quantile(&v, 1.0).as_secs_f64()
        );
    };
    row("silence → LED released", &one);
    if pair {
        let two = rounds_against(&d.join("pair"), &fleet, 2, rounds, &interval, period_s);
        row(
            "silence → LED released, pair (silence made on the second)",
            &two,
        );
        let mut diff: Vec<f64> = one
            .iter()
            .zip(&two)
            .map(|(a, b)| (b.as_secs_f64() - a.as_secs_f64()) * 1e3)
            .collect();
        diff.sort_by(f64::total_cmp);
        println!(
            "| pair − one, median of the per-round differences | {:.0} ms | |",
            diff[diff.len() / 2]
        );
    }
}
