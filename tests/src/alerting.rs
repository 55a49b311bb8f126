//! Debian's Prometheus and Alertmanager on loopback with the shipped `stack/assets` configs, made
//! fast (1 s scrape and evaluation, `for: 0s`, `group_wait: 0s`, `group_interval: 1s`) and
//! pointed at one agent: for the end-to-end alert tests and the alert-loop benchmark. TLS and
//! basic auth as in the stack: the fleet's credentials of a [`TestFleet`], each service's
//! secrets in a directory of its own where the stack has /run/secrets.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{free_port, which, workspace, Daemon, Endpoint, TestFleet};

/// `stack/assets` in the workspace.
pub fn assets() -> PathBuf {
    workspace().join("stack/assets")
}

/// `text` with `from` replaced by `to`; panics if `from` is not there, so a change to the
/// shipped file cannot silently leave the tests on other settings.
pub fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "expected {from:?} in the shipped config"
    );
    text.replace(from, to)
}

/// The shipped alert rules with every `for:` at 0 s: an alert fires at the first evaluation
/// that sees its condition.
pub fn fast_rules() -> String {
    let rules =
        std::fs::read_to_string(assets().join("rules/edgesense.yml")).expect("read shipped rules");
    swap(&rules, "for: 1m", "for: 0s").replace("for: 2m", "for: 0s")
}

pub fn alertmanager_bin() -> PathBuf {
    which("prometheus-alertmanager")
        .or_else(|| which("alertmanager"))
        .expect("Alertmanager on PATH (tests/run.sh installs Debian's prometheus-alertmanager)")
}

pub fn prometheus_bin() -> PathBuf {
    which("prometheus").expect("prometheus on PATH (tests/run.sh installs Debian's prometheus)")
}

/// A running Prometheus + Alertmanager pair, stopped on drop.
pub struct FastStack {
    pub prom: Daemon,
    pub am: Daemon,
    pub prom_addr: SocketAddr,
    pub am_addr: SocketAddr,
    /// The operator at each (https, user edgesense).
    pub prom_api: Endpoint,
    pub am_api: Endpoint,
    dir: PathBuf,
    prom_secrets: PathBuf,
}

/// `dir/name/` with a service's secrets, and `/run/secrets/` in `text` pointing there.
fn with_secrets(text: &str, dir: &Path) -> String {
    swap(
        text,
        "/run/secrets/",
        &format!("{}/", dir.to_str().expect("utf-8 path")),
    )
}

/// Debian's Alertmanager on `addr` with the shipped config, posting to the agent at `agent`
/// with the fleet's token, `group_wait` 0 s and `group_interval` 1 s; its data in `dir/am`
/// (kept across restarts: silences survive). Returns once it is ready.
pub fn start_alertmanager(
    dir: &Path,
    fleet: &TestFleet,
    addr: SocketAddr,
    agent: SocketAddr,
) -> Daemon {
    start_alertmanager_in(dir, fleet, addr, agent, None)
}

/// One member of an Alertmanager cluster on loopback: its gossip address and its peers'.
pub struct Cluster<'a> {
    pub listen: SocketAddr,
    pub peers: &'a [SocketAddr],
}

/// [`start_alertmanager`], clustered as the stack's pair is (gossip with mutual TLS on the
/// Alertmanager's certificate, `stack/src/plan`'s cluster TLS file) when `cluster` is given.
pub fn start_alertmanager_in(
    dir: &Path,
    fleet: &TestFleet,
    addr: SocketAddr,
    agent: SocketAddr,
    cluster: Option<Cluster>,
) -> Daemon {
    let secrets = fleet.alertmanager_secrets(&dir.join("am-secrets"));
    let am_cfg = std::fs::read_to_string(assets().join("alertmanager.yml"))
        .expect("read shipped alertmanager.yml");
    let am_cfg = swap(
        &am_cfg,
        "https://edgesense-agent:9842",
        &format!("https://{agent}"),
    );
    let am_cfg = with_secrets(&am_cfg, &secrets);
    let am_cfg = swap(&am_cfg, "group_wait: 10s", "group_wait: 0s");
    let am_cfg = swap(&am_cfg, "group_interval: 1m", "group_interval: 1s");
    std::fs::write(dir.join("alertmanager.yml"), am_cfg).expect("write config");
    let mut cmd = Command::new(alertmanager_bin());
    cmd.arg(format!(
        "--config.file={}",
        dir.join("alertmanager.yml").display()
    ))
    .arg(format!("--storage.path={}", dir.join("am").display()))
    .arg(format!("--web.listen-address={addr}"))
    .arg(format!(
        "--web.config.file={}",
        secrets.join("edgesense_web.yml").display()
    ));
    match cluster {
        None => {
            cmd.arg("--cluster.listen-address=");
        }
        Some(c) => {
            let tls = dir.join("cluster-tls.yml");
            std::fs::write(
                &tls,
                with_secrets(edgesense::plan::CLUSTER_TLS_YML, &secrets),
            )
            .expect("write cluster TLS config");
            cmd.arg(format!("--cluster.listen-address={}", c.listen))
                .arg(format!("--cluster.tls-config={}", tls.display()));
            for p in c.peers {
                cmd.arg(format!("--cluster.peer={p}"));
            }
        }
    }
    let mut am = Daemon::start("alertmanager", cmd);
    am.wait_ready(
        &fleet.operator(addr, "alertmanager"),
        "/-/ready",
        Duration::from_secs(30),
    );
    am
}

impl FastStack {
    /// Starts Alertmanager posting to the agent at `agent` with the fleet's token, and
    /// Prometheus scraping that agent; files and data go under `dir`. Returns once both are ready.
    pub fn start(dir: &Path, fleet: &TestFleet, agent: SocketAddr) -> FastStack {
        FastStack::start_for(dir, fleet, &[agent])
    }

    /// [`FastStack::start`] with Prometheus scraping every agent of `agents` (Alertmanager posts
    /// to the first).
    pub fn start_for(dir: &Path, fleet: &TestFleet, agents: &[SocketAddr]) -> FastStack {
        FastStack::start_on(dir, fleet, agents, free_port())
    }

    /// [`FastStack::start_for`] with Alertmanager on `am_port` (chosen before the agents start,
    /// so they can be told where it is).
    pub fn start_on(
        dir: &Path,
        fleet: &TestFleet,
        agents: &[SocketAddr],
        am_port: u16,
    ) -> FastStack {
        FastStack::start_at(dir, fleet, agents, am_port, free_port())
    }

    /// [`FastStack::start_on`] with Prometheus on `prom_port` too (agents that push to it are
    /// told where before it starts).
    pub fn start_at(
        dir: &Path,
        fleet: &TestFleet,
        agents: &[SocketAddr],
        am_port: u16,
        prom_port: u16,
    ) -> FastStack {
        FastStack::start_edited(dir, fleet, agents, am_port, prom_port, |c| c)
    }

    /// [`FastStack::start_at`] with the Prometheus config (as made fast) edited by `edit`.
    pub fn start_edited(
        dir: &Path,
        fleet: &TestFleet,
        agents: &[SocketAddr],
        am_port: u16,
        prom_port: u16,
        edit: impl FnOnce(String) -> String,
    ) -> FastStack {
        let am_addr: SocketAddr = ([127, 0, 0, 1], am_port).into();
        let am = start_alertmanager(dir, fleet, am_addr, agents[0]);
        let rules = fast_rules();
        std::fs::create_dir_all(dir.join("rules")).expect("mkdir");
        std::fs::write(dir.join("rules/edgesense.yml"), rules).expect("write rules");
        let cfg = std::fs::read_to_string(assets().join("prometheus.yml"))
            .expect("read shipped prometheus.yml");
        let cfg = swap(&cfg, "scrape_interval: 15s", "scrape_interval: 1s");
        let cfg = swap(&cfg, "scrape_timeout: 5s", "scrape_timeout: 1s");
        let cfg = swap(&cfg, "evaluation_interval: 15s", "evaluation_interval: 1s");
        let cfg = swap(
            &cfg,
            "      dns_sd_configs:\n        - names: [alertmanager]\n          type: A\n          port: 9093\n          refresh_interval: 30s\n",
            &format!("      static_configs:\n        - targets: ['{am_addr}']\n"),
        );
        let cfg = swap(
            &cfg,
            "    dns_sd_configs:\n      - names: [edgesense-agent]\n        type: A\n        port: 9842\n        # A new or replaced agent has a new address: scraped within 10 s (lookups of Docker's\n        # embedded DNS are local and cheap).\n        refresh_interval: 10s\n",
            &format!(
                "    static_configs:\n      - targets: [{}]\n",
                agents
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let prom_addr: SocketAddr = ([127, 0, 0, 1], prom_port).into();
        let cfg = swap(
            &cfg,
            "targets: [localhost:9090]",
            &format!("targets: ['{prom_addr}']"),
        );
        let secrets = fleet.prometheus_secrets(&dir.join("prom-secrets"));
        let cfg = edit(with_secrets(&cfg, &secrets));
        std::fs::write(dir.join("prometheus.yml"), cfg).expect("write config");
        let prom_api = fleet.operator(prom_addr, "prometheus");
        let prom = start_prometheus(dir, &secrets, &prom_api, prom_addr);
        FastStack {
            prom,
            am,
            prom_addr,
            am_addr,
            prom_api,
            am_api: fleet.operator(am_addr, "alertmanager"),
            dir: dir.to_owned(),
            prom_secrets: secrets,
        }
    }

    /// Kills Prometheus (SIGKILL: a task killed, a node lost) and returns once it is gone.
    pub fn kill_prometheus(&mut self) {
        self.prom.kill();
    }

    /// Starts Prometheus again on its address with its data (after [`FastStack::kill_prometheus`]);
    /// returns once it is ready.
    pub fn start_prometheus_again(&mut self) {
        self.prom = start_prometheus(
            &self.dir,
            &self.prom_secrets,
            &self.prom_api,
            self.prom_addr,
        );
    }
}

/// Debian's Prometheus with `dir/prometheus.yml`, its data in `dir/tsdb`, on `addr`, with the
/// stack's flags (web config, remote-write receiver). Returns once it is ready.
fn start_prometheus(dir: &Path, secrets: &Path, api: &Endpoint, addr: SocketAddr) -> Daemon {
    let mut cmd = Command::new(prometheus_bin());
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("tsdb").display()
    ))
    .arg(format!("--web.listen-address={addr}"))
    .arg("--web.enable-remote-write-receiver")
    .arg(format!(
        "--web.config.file={}",
        secrets.join("edgesense_web.yml").display()
    ));
    let mut prom = Daemon::start("prometheus", cmd);
    prom.wait_ready(api, "/-/ready", Duration::from_secs(60));
    prom
}
