//! The simulated agents of the multi-node tests and benches (`node run --simulate --name` on the
//! workers of tests/fleet.sh's swarm), reached from this machine on their published ports.

use std::time::{Duration, Instant};

use crate::{
    alerting::fast_rules,
    fleet::{Fleet, Node, LOCAL_STACK},
    http_encode,
    payload::Alert,
    post_alerts, wait_until, Endpoint, TestFleet,
};
use serde_json::Value;

/// The scale tests' and benches' agent: simulated, a `room` probe read every 250 ms, a red LED on pin 17 that
/// blinks only for the rounds' own alerts (`EdgesenseTemperatureHigh`, and the cluster-wide
/// ones, label `bench="wide"`), never for `EdgesenseAgentDown` or anything else.
pub const AGENT_CONFIG: &str = "simulate = true\npoll_interval = \"250ms\"\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n[[led]]\nname = \"red\"\npin = 17\n[[alert]]\nmatch = { alertname = \"EdgesenseTemperatureHigh\" }\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\n[[alert]]\nmatch = { bench = \"wide\" }\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\n";

/// The benches' stack token (`stack up --token-file`).
pub const TOKEN: &str = "fleet-bench-token";

/// The first published port; agent `i` of a worker publishes `FIRST_PORT + i`.
pub const FIRST_PORT: u16 = 19842;

/// One agent on a worker, reached on its published port over https with the fleet's
/// credentials (the agents' certificate for reads, the token for writes).
pub struct Remote {
    pub node: Node,
    pub at: Endpoint,
    pub name: String,
}

impl Remote {
    /// Starts agent `name` on `node` (whose bundle and /etc/edgesense/bench.toml are in
    /// place), published on `port`.
    pub fn start(node: &Node, f: &TestFleet, name: &str, port: u16) -> Remote {
        node.edgesense_ok(&[
            "node",
            "run",
            "--simulate",
            "--name",
            name,
            "--config",
            "/etc/edgesense/bench.toml",
            "--publish",
            &port.to_string(),
            "--no-systemd-unit",
            // Here the agents share one host's 2 cores, where a fleet gives each its own Pi:
            // dockerd's health check (a `docker exec`, runc starting a process, per check) at
            // the image's 10 s had this host at a load average of 240 with 250 agents.
            "--health-interval",
            "60s",
        ]);
        Remote {
            node: node.clone(),
            at: f.agent_at(node.at(port)),
            name: name.to_owned(),
        }
    }

    /// Agents `from..to` round-robin over `workers` (their bundle and bench.toml in place),
    /// started one worker per thread: agent `i` is `<worker>-<slot>` on port
    /// `FIRST_PORT + slot`, with `slot = i / workers.len()`.
    pub fn spread(workers: &[Node], f: &TestFleet, from: usize, to: usize) -> Vec<Remote> {
        let count = workers.len();
        let mut started: Vec<(usize, Remote)> = std::thread::scope(|s| {
            let handles: Vec<_> = workers
                .iter()
                .enumerate()
                .map(|(wi, w)| {
                    s.spawn(move || {
                        (from..to)
                            .filter(|i| i % count == wi)
                            .map(|i| {
                                let slot = (i / count) as u16;
                                let name = format!("{}-{slot:03}", w.name);
                                (i, Remote::start(w, f, &name, FIRST_PORT + slot))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("node run"))
                .collect()
        });
        started.sort_by_key(|(i, _)| *i);
        started.into_iter().map(|(_, r)| r).collect()
    }

    /// Stops `agents`, one worker per thread.
    pub fn stop_all(agents: &[Remote]) {
        let mut by_node: Vec<(&str, Vec<&Remote>)> = Vec::new();
        for a in agents {
            match by_node.iter_mut().find(|(n, _)| *n == a.node.name) {
                Some((_, v)) => v.push(a),
                None => by_node.push((&a.node.name, vec![a])),
            }
        }
        std::thread::scope(|s| {
            for (_, v) in &by_node {
                s.spawn(move || v.iter().for_each(|a| a.stop()));
            }
        });
    }

    pub fn stop(&self) {
        self.node
            .edgesense_ok(&["node", "stop", "--name", &self.name]);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let r = self.at.try_request("GET", path, &[], "").ok()?;
        (r.status == 200).then(|| r.json())
    }

    pub fn send(&self, method: &str, path: &str, body: &str) -> u16 {
        self.at
            .try_request(method, path, &["Content-Type: application/json"], body)
            .map_or(0, |r| r.status)
    }

    /// The agent's clock (ms since it started).
    pub fn now_ms(&self) -> Option<f64> {
        self.get("/api/v1/sim/gpio?since_ms=1e300")?["now_ms"].as_f64()
    }

    /// The red LED's mode as the agent shows it (`off`, `blink`, …).
    pub fn red_mode(&self) -> Option<String> {
        let leds = self.get("/api/v1/leds")?;
        leds["leds"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "red")?["mode"]
            .as_str()
            .map(str::to_owned)
    }

    /// Agent-clock time of the first write with duty > 0 to the red pin (17) after `since`.
    pub fn red_on_after(&self, since: f64) -> Option<f64> {
        let v = self.get(&format!("/api/v1/sim/gpio?since_ms={since}"))?;
        v["writes"]
            .as_array()?
            .iter()
            .find(|w| w["pin"] == 17 && w["duty"].as_f64().is_some_and(|d| d > 0.0))
            .and_then(|w| w["at_ms"].as_f64())
    }
}

/// Alerts with every label of `labels` firing in Alertmanager now (one `filter` matcher each;
/// `None` when it does not answer).
pub fn firing(am: &Endpoint, labels: &[(&str, &str)]) -> Option<usize> {
    let filters: String = labels
        .iter()
        .map(|(k, v)| format!("&filter={}", http_encode(&format!("{k}=\"{v}\""))))
        .collect();
    let r = am
        .try_request(
            "GET",
            &format!("/api/v2/alerts?active=true{filters}"),
            &[],
            "",
        )
        .ok()?;
    (r.status == 200).then(|| r.json().as_array().map_or(0, Vec::len))
}

/// One cluster-wide round from a clean state (every red off, no `bench="wide"` alert firing):
/// `post`, then the first and the last red write of `agents`, on this machine's clock, from the
/// post. (The next round's clean start waits for the reds to go off again.)
pub fn wide_round(agents: &[Remote], am: &Endpoint, post: impl FnOnce()) -> (Duration, Duration) {
    wait_until(
        "a clean start: every red off, nothing cluster-wide firing",
        Duration::from_secs(180),
        || {
            (firing(am, &[("bench", "wide")])? == 0
                && agents
                    .iter()
                    .all(|a| a.red_mode().as_deref() == Some("off")))
            .then_some(())
        },
    );
    // (host time, agent clock) for each agent, just before the post.
    let clocks: Vec<(Instant, f64)> = agents
        .iter()
        .map(|a| {
            let before = Instant::now();
            let now = a.now_ms().expect("agent clock");
            (before + (Instant::now() - before) / 2, now)
        })
        .collect();
    let posted = Instant::now();
    post();
    let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
    for (a, (host, agent_now)) in agents.iter().zip(&clocks) {
        let at = wait_until(
            &format!("red on {}", a.name),
            Duration::from_secs(60),
            || a.red_on_after(*agent_now),
        );
        let written = *host + Duration::from_secs_f64((at - agent_now).max(0.0) / 1e3);
        let d = written.saturating_duration_since(posted);
        first = first.min(d);
        last = last.max(d);
    }
    (first, last)
}

/// The benches' stack from a clean fleet: every edgesense container of every node removed with
/// the agents' state volumes, the stack down with its volumes, then up on the manager with the
/// fast rules (`for: 0s`), `group_wait: 0s`, `token`, the local images and a `scrape`
/// interval. The fleet's credentials, as the operator copies them to each worker for `node run`.
pub fn fresh_stack(fleet: &Fleet, token: &str, scrape: &str) -> TestFleet {
    let mgr = fleet.manager();
    for n in &fleet.nodes {
        let ids = n.docker(&["ps", "-aq", "--filter", "label=com.edgesense.role"]);
        for id in ids.split_whitespace() {
            n.docker(&["rm", "-f", "-v", id]);
        }
        // The agents' history (`node run`'s `<name>-state` volumes): an agent of the same name
        // would push an earlier run's readings into the fresh Prometheus.
        let vols = n.docker(&["volume", "ls", "-q", "--filter", "name=-state"]);
        let state: Vec<&str> = vols
            .split_whitespace()
            .filter(|v| v.ends_with("-state"))
            .collect();
        if !state.is_empty() {
            let mut rm = vec!["volume", "rm"];
            rm.extend(state);
            n.docker(&rm);
        }
    }
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
    std::fs::write(mgr.etc_dir().join("bench.token"), format!("{token}\n")).expect("token");
    fast_stack_up(mgr, scrape, &["--token-file", "/etc/edgesense/bench.token"])
}

/// `stack up` on `mgr` with the fast rules (`for: 0s`), `group_wait: 0s`, the local images
/// (LOCAL_STACK), `scrape` as the scrape interval and `extra` flags. The fleet's credentials.
pub fn fast_stack_up(mgr: &Node, scrape: &str, extra: &[&str]) -> TestFleet {
    std::fs::write(mgr.etc_dir().join("fast-rules.yml"), fast_rules()).expect("rules file");
    let mut up = vec![
        "stack",
        "up",
        "--group-wait",
        "0s",
        "--rules",
        "/etc/edgesense/fast-rules.yml",
    ];
    up.extend(extra);
    // LOCAL_STACK's pairs, with this scrape interval instead of its own.
    for pair in LOCAL_STACK.chunks(2) {
        up.push(pair[0]);
        up.push(if pair[0] == "--scrape-interval" {
            scrape
        } else {
            pair[1]
        });
    }
    mgr.edgesense_ok(&up);
    mgr.kept_fleet()
}

/// A node's alert → its LED, from a checked clean start (its red off, nothing of it firing):
/// `a`'s room held at 40 °C, the time to its red pin's first write (on the agent's clock), and
/// the room back at 20 °C.
pub fn threshold_round(a: &Remote, am: &Endpoint) -> Duration {
    wait_until(
        &format!(
            "a clean start for {}: red off, nothing of it firing",
            a.name
        ),
        Duration::from_secs(180),
        || {
            (a.red_mode()? == "off"
                && firing(
                    am,
                    &[("alertname", "EdgesenseTemperatureHigh"), ("node", &a.name)],
                )? == 0)
                .then_some(())
        },
    );
    let t0 = a.now_ms().expect("agent clock");
    assert_eq!(
        a.send("PUT", "/api/v1/sim/sensors/room", r#"{"value":40}"#),
        200
    );
    let at = wait_until("red through the stack", Duration::from_secs(60), || {
        a.red_on_after(t0)
    });
    assert_eq!(
        a.send("PUT", "/api/v1/sim/sensors/room", r#"{"value":20}"#),
        200
    );
    Duration::from_secs_f64((at - t0).max(0.0) / 1e3)
}

/// A cluster-wide alert `alertname` (`bench="wide"`, no `node`) posted into Alertmanager, then
/// resolved: the first red write after the post (its webhook reached that agent) and the spread
/// from it to the last of `agents`.
pub fn through_alertmanager(
    agents: &[Remote],
    am: &Endpoint,
    alertname: &str,
) -> (Duration, Duration) {
    let alert = |ends_in: i64| {
        Alert::new(alertname)
            .label("severity", "critical")
            .label("bench", "wide")
            .around_now(1, ends_in)
            .post_body()
    };
    let (first, last) = wide_round(agents, am, || post_alerts(am, &alert(3600)));
    post_alerts(am, &alert(-1));
    (first, last.saturating_sub(first))
}
