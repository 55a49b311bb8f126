//! Backfill against Debian's Prometheus (the stack's flags: remote-write receiver, the shipped
//! out-of-order window, TLS and user `agent`): readings the agent took while Prometheus was
//! down reach it afterwards, at their own times, as the same series the scrapes write, across
//! a restart of the agent; a receiver that refuses them or hangs costs nothing else.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use edgesense_remote_write::{Label, Sample, TimeSeries, WriteRequest, HEADERS};
use edgesense_tests::{
    alerting::{swap, FastStack},
    backfill::{coverage, raw_samples, temperatures, wall_ms},
    free_port, http_encode, wait_or, wait_until, Agent, TestFleet,
};

const ROOM: &str = "edgesense_temperature_celsius{kind=\"ds18b20\",sensor=\"room\"}";

/// A simulated agent on `addr` with the fleet's credentials, pushing to `remote_write`.
fn agent(
    fleet: &TestFleet,
    addr: SocketAddr,
    remote_write: &str,
    state: &std::path::Path,
) -> Agent {
    let token = fleet.bundle().join("token");
    fleet.agent(&[
        "--simulate",
        "--node",
        "pi-backfill",
        "--listen",
        &addr.to_string(),
        "--token-file",
        token.to_str().unwrap(),
        "--remote-write",
        remote_write,
        "--state-file",
        state.to_str().unwrap(),
    ])
}

fn room(agent: &Agent) -> std::collections::BTreeMap<i64, f64> {
    temperatures(&agent.get("/api/v1/history?sensor=room").json())
}

#[test]
fn readings_taken_while_prometheus_was_down_reach_it_afterwards_across_an_agent_restart() {
    let d = tempfile::tempdir().unwrap();
    let fleet = TestFleet::new(d.path(), "backfill-token");
    let prom_port = free_port();
    let rw = format!("https://127.0.0.1:{prom_port}/api/v1/write");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let state = d.path().join("agent.state");
    let mut a = agent(&fleet, addr, &rw, &state);
    let mut stack = FastStack::start_at(d.path(), &fleet, &[addr], free_port(), prom_port);
    wait_or(
        "Prometheus scraping the agent",
        Duration::from_secs(30),
        || (!raw_samples(&stack.prom_api, ROOM, wall_ms(), 5).is_empty()).then_some(()),
        || a.log(),
    );

    // Prometheus killed; the agent goes on reading …
    let down_ms = wall_ms();
    stack.kill_prometheus();
    let before = room(&a).len();
    wait_until(
        "8 readings of room with Prometheus down",
        Duration::from_secs(40),
        || (room(&a).len() >= before + 8).then_some(()),
    );
    // … is stopped (docker stop, an upgrade) and started again: its history comes back …
    a.signal(libc::SIGTERM);
    assert!(
        a.wait_exit(Duration::from_secs(10)).is_some(),
        "agent stopped"
    );
    assert!(state.exists(), "history kept at {}", state.display());
    let restart_ms = wall_ms();
    a = agent(&fleet, addr, &rw, &state);
    wait_until("the kept history restored", Duration::from_secs(5), || {
        a.log()
            .contains("history kept over the restart restored")
            .then_some(())
    });
    let after_restart = room(&a);
    assert!(
        after_restart.len() >= before + 8,
        "the readings from before the restart are back: {} of {}",
        after_restart.len(),
        before + 8
    );
    // … and says what waits.
    let waiting = wait_until(
        "readings counted as waiting",
        Duration::from_secs(30),
        || {
            let w = a.get("/api/v1/readings").json()["backfill"]["waiting"].as_u64()?;
            (w >= 10).then_some(w)
        },
    );
    eprintln!("{waiting} readings waiting while Prometheus is down (across an agent restart)");

    // No scrape can come before Prometheus runs again: every reading until now was missed.
    let up_ms = wall_ms();
    let taken = room(&a);
    stack.start_prometheus_again();
    wait_or(
        "the backfill pushed, nothing waiting",
        Duration::from_secs(30),
        || {
            (a.metric("edgesense_backfill_samples_waiting") == 0.0
                && a.metric("edgesense_backfill_samples_pushed_total") > 0.0)
                .then_some(())
        },
        || a.log(),
    );
    assert_eq!(
        a.metric("edgesense_backfill_samples_dropped_total{reason=\"rejected\"}"),
        0.0,
        "{}",
        a.log()
    );
    let retries = a.metric("edgesense_backfill_push_retries_total");
    assert!(
        retries <= 2.0,
        "no storm of failed pushes: {retries}; {}",
        a.log()
    );

    // Every reading the agent took while Prometheus was down, before and after its own restart,
    // is in Prometheus at its own time and with its value, in the one series the scrapes write.
    let now = wall_ms();
    let held = raw_samples(&stack.prom_api, ROOM, now, (now - down_ms) / 1000 + 30);
    let (found, missed) = coverage(&taken, &held, down_ms + 1000, up_ms);
    // At least the 8 waited for before the agent's restart, less one at each edge.
    assert!(missed >= 6, "readings while down: {taken:?}");
    assert_eq!(
        found, missed,
        "every missed reading in Prometheus; the agent took {taken:?}, Prometheus has {held:?}"
    );
    let last_before = taken.range(..restart_ms).next_back().map_or(0, |(t, _)| *t);
    let first_after = taken.range(restart_ms..).next().map_or(0, |(t, _)| *t);
    eprintln!(
        "{found} of {missed} readings backfilled; room unread for {:.1} s across the agent's restart",
        (first_after - last_before) as f64 / 1000.0
    );
    let q = http_encode("count by (sensor) (count_over_time(edgesense_temperature_celsius[10m]))");
    let v = stack.prom_api.get_json(&format!("/api/v1/query?query={q}"));
    let per_sensor = v["data"]["result"].as_array().unwrap();
    assert_eq!(per_sensor.len(), 4, "room, outside, soc, env: {v}");
    for s in per_sensor {
        assert_eq!(
            s["value"][1], "1",
            "one series for {}: {v}",
            s["metric"]["sensor"]
        );
    }
    let v = stack
        .prom_api
        .get_json(&format!("/api/v1/query?query={}", http_encode(ROOM)));
    let labels = &v["data"]["result"][0]["metric"];
    assert_eq!(labels["job"], "edgesense", "{v}");
    assert_eq!(labels["instance"], addr.to_string(), "{v}");

    // A push that comes again (its answer lost, or the agent stopped before it counted it) is
    // accepted and changes nothing: the samples Prometheus already has, sent twice more.
    let again: Vec<Sample> = held
        .range(down_ms + 1000..up_ms)
        .map(|(t, v)| Sample {
            value: *v,
            timestamp: *t,
        })
        .collect();
    let series = TimeSeries::new(
        vec![
            Label::new("__name__", "edgesense_temperature_celsius"),
            Label::new("sensor", "room"),
            Label::new("kind", "ds18b20"),
            Label::new("job", "edgesense"),
            Label::new("instance", addr.to_string()),
        ],
        again.clone(),
    );
    let body = WriteRequest {
        timeseries: vec![series],
    }
    .encode()
    .unwrap();
    let password = std::fs::read_to_string(fleet.bundle().join("alertmanager.password")).unwrap();
    let as_agent = fleet
        .operator(stack.prom_addr, "prometheus")
        .basic("agent", password.trim());
    let headers: Vec<String> = HEADERS.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    for _ in 0..2 {
        let r = as_agent
            .try_request_bytes("POST", "/api/v1/write", &headers, &body)
            .unwrap();
        assert_eq!(r.status, 204, "a repeated push: {}", r.body);
    }
    let held_again = raw_samples(&stack.prom_api, ROOM, now, (now - down_ms) / 1000 + 30);
    assert_eq!(
        held_again, held,
        "nothing added or changed by pushing again"
    );
}

#[test]
fn a_prometheus_without_an_out_of_order_window_refuses_and_the_agent_counts_and_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let fleet = TestFleet::new(d.path(), "backfill-token");
    let prom_port = free_port();
    let rw = format!("https://127.0.0.1:{prom_port}/api/v1/write");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let a = agent(&fleet, addr, &rw, &d.path().join("agent.state"));
    let mut stack =
        FastStack::start_edited(d.path(), &fleet, &[addr], free_port(), prom_port, |c| {
            swap(
                &c,
                "    out_of_order_time_window: 1d\n",
                "    out_of_order_time_window: 0s\n",
            )
        });
    wait_until(
        "Prometheus scraping the agent",
        Duration::from_secs(30),
        || (!raw_samples(&stack.prom_api, ROOM, wall_ms(), 5).is_empty()).then_some(()),
    );
    // (The readings from the agent's start to the first scrape may be refused already, or
    // not: whether they come before that scrape's samples is a race.)
    let refused_before = a.metric("edgesense_backfill_samples_dropped_total{reason=\"rejected\"}");
    stack.kill_prometheus();
    let before = room(&a).len();
    wait_until(
        "4 readings of room with Prometheus down",
        Duration::from_secs(30),
        || (room(&a).len() >= before + 4).then_some(()),
    );
    stack.start_prometheus_again();
    // Older than what the scrapes since wrote: out of order, 400, the whole batch refused.
    let rejected = wait_or(
        "the refused batch counted",
        Duration::from_secs(30),
        || {
            let n = a.metric("edgesense_backfill_samples_dropped_total{reason=\"rejected\"}")
                - refused_before;
            (n >= 4.0 && a.metric("edgesense_backfill_samples_waiting") == 0.0).then_some(n)
        },
        || a.log(),
    );
    eprintln!("{rejected} samples refused by a Prometheus without an out-of-order window");
    // A push that meets the new Prometheus before it is ready gets 503 and is retried, rightly
    // (CI saw it once); a 400 is never retried: no retry names one.
    let log = a.log();
    let retried_400 = log
        .lines()
        .filter(|l| l.contains("retrying") && l.contains("400"))
        .count();
    assert_eq!(retried_400, 0, "a 400 is not retried: {log}");
    let logged = log.matches("remote write refused a batch").count();
    assert!(
        (1..=2).contains(&logged),
        "logged once per gap (the start's, the outage's): {logged}; {log}"
    );
    assert!(
        log.contains("out of order"),
        "Prometheus's reason in the log: {log}"
    );
    // The agent goes on: Prometheus scrapes it, and nothing refused is tried again.
    let retries = a.metric("edgesense_backfill_push_retries_total");
    let now = wall_ms();
    wait_until("scraped after the refusal", Duration::from_secs(10), || {
        (!raw_samples(&stack.prom_api, ROOM, wall_ms(), 3).is_empty() && wall_ms() > now)
            .then_some(())
    });
    assert_eq!(
        a.metric("edgesense_backfill_push_retries_total"),
        retries,
        "no retry after the refusal"
    );
}

#[test]
fn a_receiver_that_hangs_stalls_neither_polling_nor_scrapes() {
    let d = tempfile::tempdir().unwrap();
    let fleet = TestFleet::new(d.path(), "backfill-token");
    // A receiver that takes the connection, reads the push and never answers.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let rw = format!("http://{}/api/v1/write", hang.local_addr().unwrap());
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let a = agent(&fleet, addr, &rw, &d.path().join("agent.state"));
    // This test is the scraper: a scrape, five seconds of nothing (a gap), a scrape.
    let scrape = || {
        let t = Instant::now();
        let r = edgesense_tests::request(
            addr,
            "GET",
            "/metrics",
            &["X-Prometheus-Scrape-Timeout-Seconds: 1"],
            "",
        );
        assert_eq!(r.status, 200);
        t.elapsed()
    };
    scrape();
    std::thread::sleep(Duration::from_secs(5)); // the gap itself, not a wait for readiness
    scrape();
    let (mut conn, _) = hang.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 256];
    let n = conn.read(&mut head).unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("POST /api/v1/write"),
        "the push reached the receiver"
    );
    // While the push hangs: scrapes answer at once and the sensors are read as before.
    let before = room(&a).len();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut slowest = Duration::ZERO;
    while Instant::now() < deadline {
        slowest = slowest.max(scrape());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest scrape while the push hangs: {slowest:?}"
    );
    let after = room(&a).len();
    assert!(
        after >= before + 3,
        "room read every 2 s while the push hangs: {before} → {after}"
    );
    assert!(
        a.metric("edgesense_backfill_samples_waiting") > 0.0,
        "still waiting"
    );
    drop(conn);
}
