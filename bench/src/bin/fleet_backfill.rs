//! Backfill after a partition, on the multi-node swarm (tests/fleet.sh: `mgr`, `pi-a`, `pi-b`):
//! the stack as `stack up` makes it (15 s scrapes, Prometheus with the remote-write receiver and
//! a 1 d out-of-order window) and one simulated agent on pi-a polling every second (the
//! built-in node at `poll_interval = "1s"`), so a partition of 30 minutes is 1 800 real
//! readings of `room`. For each partition length pi-a's link is cut for that long, then put
//! back, and the bench times, from the link's return: Prometheus scraping pi-a again, and
//! Prometheus holding 95 % and 100 % of the `room` readings pi-a took while nobody scraped it
//! (the agent's own history against Prometheus's raw samples, value and millisecond).
//!
//! `bench/fleet.sh --backfill [--partitions 120,1800]`; prints markdown rows.

use std::time::{Duration, Instant};

use edgesense_bench::arg_list;
use edgesense_tests::{
    backfill::{node_coverage, wall_ms},
    fleet::{scraped_nodes, Fleet, LOCAL_STACK},
    wait_until,
};

const TOKEN: &str = "fleet-backfill-token";

fn main() {
    let partitions: Vec<u64> = arg_list("--partitions", "120,1800");
    let fleet = Fleet::lock();
    let mgr = fleet.manager().clone();
    let pi_a = fleet.node("pi-a").clone();
    for n in &fleet.nodes {
        let ids = n.docker(&["ps", "-aq", "--filter", "label=com.edgesense.role"]);
        for id in ids.split_whitespace() {
            n.docker(&["rm", "-f", "-v", id]);
        }
    }
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
    std::fs::write(mgr.etc_dir().join("bench.token"), format!("{TOKEN}\n")).expect("token");
    let mut up = vec!["stack", "up", "--token-file", "/etc/edgesense/bench.token"];
    up.extend(LOCAL_STACK);
    mgr.edgesense_ok(&up);
    let f = mgr.kept_fleet();
    let node =
        std::fs::read_to_string(edgesense_tests::workspace().join("agent/src/simulated-node.toml"))
            .expect("the built-in node")
            .replacen("poll_interval = \"2s\"", "poll_interval = \"1s\"", 1);
    assert!(
        node.contains("poll_interval = \"1s\""),
        "the built-in node changed"
    );
    std::fs::write(pi_a.etc_dir().join("bench-backfill.toml"), node).expect("config");
    pi_a.install_bundle(&f);
    pi_a.edgesense_ok(&[
        "node",
        "run",
        "--simulate",
        "--config",
        "/etc/edgesense/bench-backfill.toml",
        "--publish",
        "9842",
        "--no-systemd-unit",
    ]);
    let prom = f.operator(mgr.at(9090), "prometheus");
    let scraped = || scraped_nodes(&prom).iter().any(|n| n == "pi-a");
    wait_until("pi-a scraped", Duration::from_secs(180), || {
        scraped().then_some(())
    });
    let agent = pi_a.local_agent(&f);
    println!("| figure | seconds |\n|---|---:|");
    for d in partitions {
        // A scrape before the cut, inside the window node_coverage looks at.
        let since = wall_ms();
        wait_until("a scrape before the cut", Duration::from_secs(60), || {
            (scraped() && wall_ms() - since > 20_000).then_some(())
        });
        pi_a.link(false);
        eprintln!("pi-a cut off for {d} s");
        // The fault being made: a partition this long, not a wait for readiness.
        std::thread::sleep(Duration::from_secs(d));
        pi_a.link(true);
        let back = Instant::now();
        let history = pi_a
            .request_from(&agent, "GET", "/api/v1/history?sensor=room", &[], "")
            .expect("pi-a's agent answers")
            .json();
        let (mut t_scraped, mut t95) = (None, None);
        let deadline = Duration::from_secs(600);
        let (found, total, gap, t100) = loop {
            let now = back.elapsed();
            if t_scraped.is_none() && scraped() {
                t_scraped = Some(now);
            }
            // Only a stretch without scrapes as long as the cut is the partition's window (before
            // the first scrape after the return, the longest stretch is an ordinary interval).
            let c = node_coverage(&prom, "pi-a", "room", &history, since)
                .filter(|&(_, _, gap)| gap >= i64::try_from(d * 1000).unwrap_or(i64::MAX));
            if let Some((found, total, gap)) = c {
                if total > 0 && t95.is_none() && found * 100 >= total * 95 {
                    t95 = Some(now);
                }
                if total > 0 && found == total {
                    break (found, total, gap, Some(now));
                }
                if now > deadline {
                    break (found, total, gap, None);
                }
            } else if now > deadline {
                break (0, 0, 0, None);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let s = |t: Option<Duration>| {
            t.map_or("not reached".into(), |t| format!("{:.1}", t.as_secs_f64()))
        };
        eprintln!(
            "partition {d} s: no scrape for {:.0} s, {found} of {total} room readings held; scraped {} s, 95 % {} s, 100 % {} s after the link came back",
            gap as f64 / 1e3,
            s(t_scraped),
            s(t95),
            s(t100)
        );
        println!(
            "| pi-a cut off {d} s ({total} room readings unscraped at 1 s polls): link back → scraped again / 95 % / 100 % of them in Prometheus | {} / {} / {} |",
            s(t_scraped),
            s(t95),
            s(t100)
        );
    }
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
    pi_a.docker(&["rm", "-f", "-v", "edgesense-agent"]);
}
