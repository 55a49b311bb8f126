//! The simulated agents of the multi-node benches (`node run --simulate --name` on the
//! workers of tests/fleet.sh's swarm), reached from this machine on their published ports.

use std::time::{Duration, Instant};

use edgesense_tests::{fleet::Node, http_encode, wait_until, Endpoint, TestFleet};
use serde_json::Value;

/// The benches' agent: simulated, a `room` probe read every 250 ms, a red LED on pin 17 that
/// blinks only for the rounds' own alerts (`EdgesenseTemperatureHigh`, and the cluster-wide
/// ones, label `bench="wide"`), never for `EdgesenseAgentDown` or anything else.
pub const AGENT_CONFIG: &str = "simulate = true\npoll_interval = \"250ms\"\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n[[led]]\nname = \"red\"\npin = 17\n[[alert]]\nmatch = { alertname = \"EdgesenseTemperatureHigh\" }\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\n[[alert]]\nmatch = { bench = \"wide\" }\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\n";

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
        ]);
        Remote {
            node: node.clone(),
            at: f.agent_at(node.at(port)),
            name: name.to_owned(),
        }
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
