//! A rolling upgrade of the agents through the launchers (`stack up --agents`), at N nodes and P
//! nodes at a time (`--roll-parallelism`), on the multi-node swarm (tests/fleet.sh: a manager and
//! the workers the fleet was started with; bench/fleet.sh --roll starts 12 nodes).
//!
//! The launchers run an agent on the first N nodes of the fleet (`--nodes 3,6,12`), the others
//! opted out (node label `edgesense.agent=false`). Every round starts from a checked state:
//! exactly those N agents scraped, all on one version, and the launcher service's last update
//! completed. A round switches the agent image, edgesense/agent:local (version 0.1.0) ↔
//! edgesense/agent:next (the same binary reporting 0.1.9, edgesense_tests::docker::
//! upgrade_images), with `stack up --agents --no-wait --roll-parallelism P`, and measures:
//! - swarm's roll: the launcher service's update from start to `completed` (its own
//!   `UpdateStatus` times), and the seconds per node (per P nodes) it took;
//! - from the `stack up` command to every one of the N agents scraped on the new version
//!   (Prometheus at a 2 s scrape, discovering the alias's A records every 10 s).
//!
//! Prints one markdown row per (N, P) round. Run by bench/fleet.sh --roll, which starts the
//! fleet and keeps the bench's dockerd for the upgrade image.

use std::time::{Duration, Instant};

use edgesense_bench::arg_list;
use edgesense_tests::{
    docker::upgrade_images,
    fleet::{agent_versions, Fleet, Node},
    remote::{fast_stack_up, TOKEN},
    unix_seconds, wait_until, Endpoint,
};

const CONFIG: &str = "simulate = true\npoll_interval = \"1s\"\n";

/// The two images a round switches between, with the version each agent reports.
const IMAGES: [(&str, &str); 2] = [
    ("edgesense/agent:local", "0.1.0"),
    ("edgesense/agent:next", "0.1.9"),
];

/// The launcher service's update: state, and when swarm started and completed it (seconds
/// since the epoch; the fleet's dockerds share this host's clock).
fn update_status(mgr: &Node) -> (String, Option<f64>, Option<f64>) {
    let v: serde_json::Value = serde_json::from_str(&mgr.docker(&[
        "service",
        "inspect",
        "edgesense_launcher",
        "--format",
        "{{json .UpdateStatus}}",
    ]))
    .unwrap_or_default();
    let at = |k: &str| {
        v[k].as_str()
            .filter(|t| !t.starts_with("0001"))
            .map(unix_seconds)
    };
    (
        v["State"].as_str().unwrap_or("").to_owned(),
        at("StartedAt"),
        at("CompletedAt"),
    )
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `stack up --agents` with `image`, `parallelism` nodes at a time, not waiting for the roll.
fn up(mgr: &Node, image: &str, parallelism: usize) {
    let p = parallelism.to_string();
    fast_stack_up(
        mgr,
        "2s",
        &[
            "--agents",
            "--agent-image",
            image,
            "--agent-config",
            "/etc/edgesense/roll.toml",
            "--roll-parallelism",
            &p,
            "--token-file",
            "/etc/edgesense/bench.token",
            "--no-wait",
        ],
    );
}

/// Waits until exactly `nodes` are scraped, every one on `version`, and the launcher service
/// has no update going on.
fn settled(mgr: &Node, prom: &Endpoint, nodes: &[String], version: &str) {
    wait_until(
        &format!("{} agents on {version}, nothing rolling", nodes.len()),
        Duration::from_secs(120 + 30 * nodes.len() as u64),
        || {
            let v = agent_versions(prom)?;
            let on: Vec<&String> = v.iter().map(|(n, _)| n).collect();
            let state = update_status(mgr).0;
            (on == nodes.iter().collect::<Vec<_>>()
                && v.iter().all(|(_, x)| x == version)
                && (state.is_empty() || state == "completed"))
                .then_some(())
        },
    );
}

fn main() {
    let sizes: Vec<usize> = arg_list("--nodes", "3,6,12");
    let widths: Vec<usize> = arg_list("--parallelism", "1,4");
    let fleet = Fleet::lock();
    fleet.clean();
    let mgr = fleet.manager().clone();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        largest <= fleet.nodes.len(),
        "--nodes up to {largest}: the fleet has {} (bench/fleet.sh --roll --nodes starts enough)",
        fleet.nodes.len()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = upgrade_images(dir.path());
    for n in &fleet.nodes {
        n.docker(&["load", "-q", "-i", tar.to_str().unwrap_or_default()]);
    }
    std::fs::write(mgr.etc_dir().join("roll.toml"), CONFIG).expect("config");
    std::fs::write(mgr.etc_dir().join("bench.token"), format!("{TOKEN}\n")).expect("token");

    let mut current = 0; // index into IMAGES
    let mut rows = Vec::new();
    let mut prom_at: Option<Endpoint> = None;
    for &n in &sizes {
        // The first n nodes run agents, the others are opted out.
        for (i, node) in fleet.nodes.iter().enumerate() {
            if i < n {
                let _ = mgr.docker_output(&[
                    "node",
                    "update",
                    "--label-rm",
                    "edgesense.agent",
                    &node.name,
                ]);
            } else {
                mgr.docker(&[
                    "node",
                    "update",
                    "--label-add",
                    "edgesense.agent=false",
                    &node.name,
                ]);
            }
        }
        let names: Vec<String> = {
            let mut v: Vec<String> = fleet.nodes[..n].iter().map(|x| x.name.clone()).collect();
            v.sort();
            v
        };
        if prom_at.is_none() {
            up(&mgr, IMAGES[current].0, 1);
            let f = mgr.kept_fleet();
            prom_at = Some(f.operator(mgr.at(9090), "prometheus"));
        }
        let prom = prom_at.as_ref().expect("Prometheus");
        for &p in &widths {
            let (from, to) = (IMAGES[current], IMAGES[1 - current]);
            settled(&mgr, prom, &names, from.1);
            let t0 = now_s();
            let clock = Instant::now();
            up(&mgr, to.0, p);
            let command = clock.elapsed();
            let mut began = f64::NAN;
            let (roll, scraped) = wait_until(
                &format!("{n} nodes rolled to {} at {p} a time", to.1),
                Duration::from_secs(120 + 40 * n as u64),
                || {
                    let (state, started, completed) = update_status(&mgr);
                    let started = started.filter(|s| *s >= t0 - 1.0)?;
                    began = started - t0;
                    if state != "completed" {
                        return None;
                    }
                    let completed = completed?;
                    let v = agent_versions(prom)?;
                    let all = v.len() == n && v.iter().all(|(_, x)| x == to.1);
                    all.then(|| (completed - started, clock.elapsed()))
                },
            );
            let steps = n.div_ceil(p);
            eprintln!(
                "{n} nodes, {p} at a time: stack up returned in {:.1} s, swarm began the roll {began:.1} s after it was run and took {roll:.1} s ({:.1} s per step of {p}), all scraped on {} {:.1} s after stack up",
                command.as_secs_f64(),
                roll / steps as f64,
                to.1,
                scraped.as_secs_f64()
            );
            rows.push((n, p, roll, roll / steps as f64, scraped));
            current = 1 - current;
        }
    }
    mgr.edgesense_ok(&["stack", "down", "--agents", "--volumes"]);
    println!("| nodes (one agent each) | nodes at a time | swarm's roll (update start → completed) | per step | `stack up` → every agent scraped on the new version |");
    println!("|---|---|---|---|---|");
    for (n, p, roll, step, scraped) in rows {
        println!(
            "| {n} | {p} | {roll:.1} s | {step:.1} s | {:.1} s |",
            scraped.as_secs_f64()
        );
    }
}
