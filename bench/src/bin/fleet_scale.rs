//! The fleet at N agents: how each cost grows with N, on the multi-node swarm (tests/fleet.sh:
//! a manager and the workers the fleet was started with). The stack runs on the manager
//! (`--scrape-interval`, default 2 s; `for: 0s`; `group_wait: 0s`); the simulated agents
//! (`node run --simulate --name`, edgesense_tests::remote::AGENT_CONFIG) are spread evenly over the
//! workers and grow size by size (`--sizes 10,30,100,300`): each size adds agents to the ones
//! already running and starts from a checked state (exactly those N scraped, nothing of the
//! rounds' kind firing).
//!
//! Per size:
//! - the time from the last `node run` returning to every agent scraped (`up == 1`, counted by
//!   Prometheus);
//! - Prometheus's CPU (its own `process_cpu_seconds_total` over `--window`, default 30 s), its
//!   resident memory, head series, and the mean and max scrape duration of the agents;
//! - Alertmanager's CPU over the same window and the rate of the agents' reconcile requests to
//!   its API (the sum of their `edgesense_alertmanager_requests_total`);
//! - the agents' mean resident memory (each agent process's VmRSS, found by `docker inspect`);
//! - a node's alert → its LED (threshold crossed → its red pin written), `--rounds` rounds;
//! - a cluster-wide alert → the last of N LEDs, from Alertmanager's webhook (the first red pin
//!   written) to the last red pin written, `--wide-rounds` rounds;
//! - with `--dashboard`, the cluster dashboard in Chromium (tests/browser/fleet-dashboard.mjs):
//!   time until the summary and the problem nodes are drawn, DOM elements, JS heap.
//!
//! Prints one markdown row per size, and the peers the relaying agent found (its log).
//! Run by bench/fleet.sh --scale, which starts the fleet.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use edgesense_bench::{arg, arg_list, quantile};
use edgesense_tests::{
    fleet::{Fleet, Node},
    http_encode,
    remote::{fresh_stack, threshold_round, through_alertmanager, Remote, AGENT_CONFIG, TOKEN},
    wait_until, Endpoint,
};

/// Samples of one Prometheus-format exposition: `name{labels}` → value.
fn exposition(at: &Endpoint) -> HashMap<String, f64> {
    let r = at
        .try_request("GET", "/metrics", &[], "")
        .expect("/metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.body);
    r.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// One value of an instant query (`None` when empty or not answered).
fn scalar(prom: &Endpoint, q: &str) -> Option<f64> {
    let r = prom
        .try_request(
            "GET",
            &format!("/api/v1/query?query={}", http_encode(q)),
            &[],
            "",
        )
        .ok()?;
    r.json()["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// Mean VmRSS (MiB) of the agent processes on `nodes`.
fn agent_rss_mib(nodes: &[Node]) -> f64 {
    let mut kib = Vec::new();
    for n in nodes {
        let ids = n.docker(&["ps", "-q", "--filter", "label=com.edgesense.role=agent"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            continue;
        }
        let mut args = vec!["inspect", "--format", "{{.State.Pid}}"];
        args.extend(&ids);
        for pid in n.docker(&args).split_whitespace() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(v) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                kib.push(v);
            }
        }
    }
    kib.iter().sum::<f64>() / kib.len().max(1) as f64 / 1024.0
}

struct Row {
    n: usize,
    scraped: Duration,
    prom_cpu: f64,
    prom_rss_mib: f64,
    head_series: f64,
    scrape_mean_ms: f64,
    scrape_max_ms: f64,
    am_cpu: f64,
    am_rps: f64,
    agent_rss_mib: f64,
    own_led: Duration,
    wide_last: Duration,
    wide_max: Duration,
    dashboard: Option<serde_json::Value>,
}

fn main() {
    let sizes: Vec<usize> = arg_list("--sizes", "10,30,100,300");
    let scrape = arg("--scrape-interval").unwrap_or_else(|| "2s".into());
    let window = Duration::from_secs(arg("--window").and_then(|s| s.parse().ok()).unwrap_or(30));
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let wide_rounds: usize = arg("--wide-rounds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dashboard = std::env::args().any(|a| a == "--dashboard");
    let fleet = Fleet::lock();
    let mgr = fleet.manager().clone();
    let workers: Vec<Node> = fleet.nodes[1..].to_vec();
    assert!(!workers.is_empty(), "the fleet needs workers");
    let f = fresh_stack(&fleet, TOKEN, &scrape);
    for w in &workers {
        std::fs::write(w.etc_dir().join("bench.toml"), AGENT_CONFIG).expect("config");
        w.install_bundle(&f);
    }
    let prom = f.operator(mgr.at(9090), "prometheus");
    let am = f.operator(mgr.at(9093), "alertmanager");
    let mut agents: Vec<Remote> = Vec::new();
    let mut rows = Vec::new();
    for &n in &sizes {
        // New agents, round-robin over the workers.
        let started = Remote::spread(&workers, &f, agents.len(), n);
        let last_start = Instant::now();
        agents.extend(started);
        let q = format!("count(up{{job=\"edgesense\"}} == 1) == {n}");
        wait_until(
            &format!("all {n} agents scraped"),
            Duration::from_secs(600),
            || scalar(&prom, &q).map(|_| ()),
        );
        let scraped = last_start.elapsed();
        eprintln!(
            "{n} agents: all scraped {:.1} s after the last node run",
            scraped.as_secs_f64()
        );

        // Steady state over the window.
        let asked = "sum(edgesense_alertmanager_requests_total)";
        let (p0, a0, r0, t0) = (
            exposition(&prom),
            exposition(&am),
            scalar(&prom, asked),
            Instant::now(),
        );
        std::thread::sleep(window);
        let (p1, a1, r1, dt) = (
            exposition(&prom),
            exposition(&am),
            scalar(&prom, asked),
            t0.elapsed().as_secs_f64(),
        );
        let cpu = |m0: &HashMap<String, f64>, m1: &HashMap<String, f64>| {
            (m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]) / dt
        };
        let row_partial = (
            cpu(&p0, &p1),
            p1["process_resident_memory_bytes"] / (1 << 20) as f64,
            p1.get("prometheus_tsdb_head_series")
                .copied()
                .unwrap_or(0.0),
            cpu(&a0, &a1),
            // The agents' own count (Alertmanager 0.25 does not instrument its API v2); agents
            // without it (an older image) read as NaN.
            r0.zip(r1).map_or(f64::NAN, |(a, b)| (b - a) / dt),
        );
        let scrape_mean =
            scalar(&prom, "avg(scrape_duration_seconds{job=\"edgesense\"})").unwrap_or(0.0);
        let scrape_max = scalar(
            &prom,
            "max(max_over_time(scrape_duration_seconds{job=\"edgesense\"}[1m]))",
        )
        .unwrap_or(0.0);
        let rss = agent_rss_mib(&workers);

        // A node's alert → its LED: a different agent each round.
        let mut own = Vec::new();
        for round in 0..rounds {
            let a = &agents[(round * 7 + n / 2) % agents.len()];
            own.push(threshold_round(a, &am));
        }
        own.sort();

        // A cluster-wide alert through Alertmanager.
        let mut wide = Vec::new();
        for round in 0..wide_rounds {
            let (first, spread) = through_alertmanager(&agents, &am, &format!("Wide{n}x{round}"));
            eprintln!(
                "{n} agents, cluster-wide round {}: first LED {:.0} ms after the post, the last {:.0} ms after the first",
                round + 1,
                first.as_secs_f64() * 1e3,
                spread.as_secs_f64() * 1e3
            );
            wide.push(spread);
        }
        wide.sort();

        let dash = dashboard.then(|| dashboard_figures(&mgr, &f, n));
        let row = Row {
            n,
            scraped,
            prom_cpu: row_partial.0,
            prom_rss_mib: row_partial.1,
            head_series: row_partial.2,
            scrape_mean_ms: scrape_mean * 1e3,
            scrape_max_ms: scrape_max * 1e3,
            am_cpu: row_partial.3,
            am_rps: row_partial.4,
            agent_rss_mib: rss,
            own_led: quantile(&own, 0.5),
            wide_last: quantile(&wide, 0.5),
            wide_max: quantile(&wide, 1.0),
            dashboard: dash,
        };
        eprintln!("{}", markdown(&row));
        rows.push(row);
    }
    Remote::stop_all(&agents);
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
    println!("| N agents ({} workers, {scrape} scrape) | last start → all scraped | Prometheus CPU / RSS / head series | scrape mean / max | Alertmanager CPU / API req/s | agent RSS (mean) | node alert → its LED (median) | cluster-wide: webhook → last LED (median, max) | dashboard: drawn / DOM / heap |", workers.len());
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", markdown(r));
    }
}

fn markdown(r: &Row) -> String {
    let dash = r.dashboard.as_ref().map_or("—".to_owned(), |d| {
        format!(
            "{} ms / {} / {:.1} MB",
            d["load_ms"],
            d["dom_elements"],
            d["js_heap_mb"].as_f64().unwrap_or(0.0)
        )
    });
    format!(
        "| {} | {:.1} s | {:.3} cores / {:.0} MiB / {:.0} | {:.1} / {:.1} ms | {:.3} cores / {:.1} | {:.2} MiB | {:.2} s | {:.0} ms, {:.0} ms | {dash} |",
        r.n,
        r.scraped.as_secs_f64(),
        r.prom_cpu,
        r.prom_rss_mib,
        r.head_series,
        r.scrape_mean_ms,
        r.scrape_max_ms,
        r.am_cpu,
        r.am_rps,
        r.agent_rss_mib,
        r.own_led.as_secs_f64(),
        r.wide_last.as_secs_f64() * 1e3,
        r.wide_max.as_secs_f64() * 1e3,
    )
}

/// The cluster dashboard over this fleet in Chromium: the figures tests/browser/
/// fleet-dashboard.mjs prints (a JSON line).
fn dashboard_figures(mgr: &Node, f: &edgesense_tests::TestFleet, n: usize) -> serde_json::Value {
    let (_dash, url) = edgesense_tests::browser::dashboard(
        &format!("https://{}", mgr.at(9090)),
        &format!("https://{}", mgr.at(9093)),
        &f.ca_file(),
        &f.operator_password_file(),
    );
    let dir = edgesense_tests::browser::artifacts();
    let out = std::process::Command::new("node")
        .arg(edgesense_tests::workspace().join("tests/browser/fleet-dashboard.mjs"))
        .args([
            &url,
            &n.to_string(),
            "--charts",
            "temperature",
            dir.join(format!("bench-{n}")).to_str().unwrap_or("."),
        ])
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "fleet-dashboard.mjs: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
