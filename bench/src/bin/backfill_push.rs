//! Backfill push throughput and the memory of a full day's history: the real agent binary
//! (`--simulate`, the built-in node at 1 s polls, `history = "24h"`) started on a state file
//! (`state_file`, what a restart keeps) that holds a day of readings and one gap over all of
//! them, as after a day-long outage across an agent restart. The agent pushes the gap by remote
//! write at once, to
//!
//! - a sink in this process (HTTP/1.1, decodes every push, answers 204): the agent's own cost,
//!   timed from the sink's first request to its last sample;
//! - Debian's Prometheus 2.42 with the receiver and a 1 d out-of-order window
//!   (`--receiver prometheus`): the whole path, timed from the agent's start to its last push
//!   counted, and checked against what Prometheus then holds.
//!
//! `--runner qemu-aarch64-static --agent target/aarch64-unknown-linux-musl/release/edgesense-agent`
//! runs the ARM build under qemu-user. Prints markdown rows; bench/run.sh puts them in
//! RESULTS.md. RSS figures are of the agent's own process (under qemu-user they are qemu's and
//! are not printed).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use edgesense_agent::{
    backfill::{keep, Backfill, Gap},
    config,
    history::{History, Sample},
    spec,
};
use edgesense_bench::arg;
use edgesense_remote_write::WriteRequest;
use edgesense_tests::{
    agent_bin, alerting::prometheus_bin, backfill::wall_ms, free_port, wait_or, workspace, Agent,
    Daemon, Endpoint,
};

/// Readings of the crafted day stop this long before the agent starts, so the ring (sized for
/// the history) has room for what the agent reads during the push and evicts nothing it pushes.
const HEADROOM_MS: i64 = 10 * 60 * 1000;

/// The built-in simulated node at 1 s polls, keeping `hours` (24 unless `--hours`: the quick
/// run takes one).
fn node_config(dir: &Path, hours: i64) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("agent/src/simulated-node.toml"))
        .expect("the built-in node's config");
    let text = text.replacen(
        "poll_interval = \"2s\"",
        &format!("poll_interval = \"1s\"\nhistory = \"{hours}h\""),
        1,
    );
    assert!(
        text.contains("poll_interval = \"1s\""),
        "the built-in node changed"
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Writes a state file at `path` with every series of the node at `config` full from its
/// history's length ago to [`HEADROOM_MS`] ago and one gap over all of it; returns how many
/// samples it holds.
fn craft_state(config_path: &Path, path: &Path) -> usize {
    let text = std::fs::read_to_string(config_path).expect("config");
    let loaded = config::parse(config_path, text).expect("config parses");
    let node = spec::resolve(
        &loaded,
        &spec::Overrides {
            simulate: true,
            ..Default::default()
        },
    )
    .expect("config resolves");
    let mut history = History::new(&node);
    let now = wall_ms();
    let span = i64::try_from(node.history.as_millis()).expect("history");
    let (from, to) = (now - span + 1000, now - HEADROOM_MS);
    let mut n = 0;
    for s in &node.sensors {
        let step = i64::try_from(s.interval.as_millis()).expect("interval");
        for (qi, &q) in s.kind.quantities().iter().enumerate() {
            let samples: Vec<Sample> = (0..)
                .map(|k| from + k * step)
                .take_while(|&t| t < to)
                .map(|t| {
                    let phase = (t as f64 / 3.6e6 + qi as f64).sin();
                    Sample::new(t, (20.0 + 5.0 * phase) as f32)
                })
                .collect();
            n += history.restore(&s.name, q, &samples);
        }
    }
    let backfill = Backfill::new(now, true);
    backfill.restore(
        from - 1000,
        vec![Gap {
            after_ms: from - 1000,
            before_ms: now,
            instance: "bench-node:9842".into(),
        }],
    );
    keep::save(path, &history, &backfill).expect("write the state file");
    n
}

/// What the sink saw.
#[derive(Default)]
struct Seen {
    first: Option<Instant>,
    last: Option<Instant>,
    pushes: usize,
    samples: usize,
    /// Series whose samples went back in time within one push (must stay 0).
    unordered: usize,
}

/// A remote-write receiver on loopback that decodes every push and answers 204.
fn sink() -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let url = format!(
        "http://{}/api/v1/write",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let seen = Arc::clone(&out);
            std::thread::spawn(move || serve(conn, &seen));
        }
    });
    (url, seen)
}

fn serve(conn: TcpStream, seen: &Mutex<Seen>) {
    let mut w = conn.try_clone().expect("clone stream");
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut first_line = true;
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first_line {
                first_line = false;
                let mut s = seen.lock().expect("lock");
                s.first.get_or_insert_with(Instant::now);
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = WriteRequest::decode(&body).expect("a push decodes");
        let unordered = req
            .timeseries
            .iter()
            .filter(|s| {
                s.samples
                    .windows(2)
                    .any(|w| w[1].timestamp <= w[0].timestamp)
            })
            .count();
        {
            let mut s = seen.lock().expect("lock");
            s.pushes += 1;
            s.samples += req.samples();
            s.unordered += unordered;
            s.last = Some(Instant::now());
        }
        if w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// (resident, anonymous) memory of `pid` in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    };
    (kib("VmRSS:"), kib("RssAnon:"))
}

/// CPU time of every thread of `pid` so far (schedstat: ns on a CPU, finer than
/// /proc/PID/stat's ticks).
fn cpu(pid: u32) -> Duration {
    let ns: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

fn start_agent(runner: Option<&str>, bin: &Path, args: &[&str]) -> Agent {
    let mut cmd = match runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(args).args(["--listen", "127.0.0.1:0"]);
    Agent::spawn(cmd)
}

fn main() {
    let runner = arg("--runner");
    let bin = arg("--agent").map_or_else(agent_bin, PathBuf::from);
    let receiver = arg("--receiver").unwrap_or_else(|| "sink".into());
    let label = arg("--label").unwrap_or_else(|| "x86_64".into());
    let hours: i64 = arg("--hours").map_or(24, |h| h.parse().expect("--hours: a whole number"));
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let cfg = node_config(d, hours);
    let state = d.join("agent.state");
    let crafted = craft_state(&cfg, &state);
    let state_bytes = std::fs::metadata(&state).map_or(0, |m| m.len());
    eprintln!("state file: {crafted} samples, {state_bytes} bytes");

    let mut _prom = None;
    let (url, seen) = match receiver.as_str() {
        "sink" => {
            let (url, seen) = sink();
            (url, Some(seen))
        }
        "prometheus" => {
            let port = free_port();
            std::fs::write(
                d.join("prometheus.yml"),
                "storage:\n  tsdb:\n    out_of_order_time_window: 1d\n",
            )
            .expect("prometheus.yml");
            let mut cmd = Command::new(prometheus_bin());
            cmd.arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver");
            let mut p = Daemon::start("prometheus", cmd);
            let at = Endpoint::plain(([127, 0, 0, 1], port).into());
            p.wait_ready(&at, "/-/ready", Duration::from_secs(30));
            _prom = Some((p, at));
            (format!("http://127.0.0.1:{port}/api/v1/write"), None)
        }
        other => panic!("--receiver sink|prometheus, not {other}"),
    };

    let t0 = Instant::now();
    let cfg_s = cfg.to_str().expect("utf-8");
    let state_s = state.to_str().expect("utf-8");
    let agent = start_agent(
        runner.as_deref(),
        &bin,
        &[
            "--simulate",
            "--config",
            cfg_s,
            "--state-file",
            state_s,
            "--remote-write",
            &url,
        ],
    );
    let pid = agent.pid();
    let (pushed, took) = wait_or(
        "every crafted sample pushed",
        Duration::from_secs(1800),
        || {
            // (Nobody scrapes this agent, so what it reads meanwhile waits for a scraper: the
            // crafted gap is done when all of it is pushed.)
            let pushed = agent.metric("edgesense_backfill_samples_pushed_total");
            (pushed >= crafted as f64).then(|| (pushed, t0.elapsed()))
        },
        || agent.log(),
    );
    let cpu_s = cpu(pid).as_secs_f64();
    let dropped = agent.metric("edgesense_backfill_samples_dropped_total{reason=\"rejected\"}");
    assert_eq!(dropped, 0.0, "nothing refused: {}", agent.log());
    let retries = agent.metric("edgesense_backfill_push_retries_total");

    let (rate, how) = match (&seen, &_prom) {
        (Some(seen), _) => {
            let s = seen.lock().expect("lock");
            assert_eq!(s.unordered, 0, "samples in order per series");
            assert!(s.samples >= crafted, "the sink got them all: {}", s.samples);
            let span = s.last.zip(s.first).map_or(took, |(l, f)| l - f);
            eprintln!(
                "{label}: {} samples in {} pushes over {:.2} s (sink), agent CPU {:.2} s",
                s.samples,
                s.pushes,
                span.as_secs_f64(),
                cpu_s
            );
            (
                s.samples as f64 / span.as_secs_f64(),
                "to a sink that decodes, first to last push",
            )
        }
        (None, Some((_, at))) => {
            // What Prometheus holds of one 1 s series: the crafted day, pushed.
            let q = edgesense_tests::http_encode(
                "count_over_time(edgesense_temperature_celsius{sensor=\"room\",instance=\"bench-node:9842\"}[1d])",
            );
            let v = at.get_json(&format!("/api/v1/query?query={q}"));
            let held: f64 = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
            let room = ((hours * 3_600_000 - HEADROOM_MS) / 1000) as f64;
            assert!(
                held >= room - 2.0,
                "Prometheus holds the crafted room readings: {held} of {room}: {v}"
            );
            eprintln!(
                "{label}: {pushed} samples into Prometheus in {:.2} s from the agent's start ({retries} retries), Prometheus holds {held} of room; agent CPU {:.2} s",
                took.as_secs_f64(),
                cpu_s
            );
            (
                pushed / took.as_secs_f64(),
                "into Prometheus 2.42, from the agent's start",
            )
        }
        _ => unreachable!(),
    };
    // Rows of bench/run.sh's table (figure, edgesense, three columns of node_exporter, goal).
    println!(
        "| backfill push, {label}: {crafted} samples ({hours} h of the simulated node at 1 s polls) {how}: samples/s, agent CPU (s) | {:.0} / {:.2} |  |  |  |  |",
        rate, cpu_s
    );
    if runner.is_none() {
        // Idle after the push: the rings full, nothing waiting.
        let (rss, anon) = rss_mib(pid);
        println!(
            "| agent RSS with a {hours} h history ({crafted} samples, {:.1} MiB of rings) idle after the push: VmRSS / RssAnon (MiB) | {rss:.2} / {anon:.2} |  |  |  |  |",
            (crafted * edgesense_agent::history::SAMPLE_BYTES) as f64 / 1048576.0
        );
    }
}
