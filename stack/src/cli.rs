//! The CLI's flags (clap): every subcommand and its options, and what they turn into.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use edgesense::{
    assets::{self, AssetOptions, Thresholds},
    node,
    plan::{self, Healthcheck, StackOptions},
};

use crate::flash_cli;

#[derive(Parser, Debug)]
#[command(
    name = "edgesense",
    version,
    about = "Operate an edgesense fleet: deploy the swarm stack, run node agents, flash SD cards, show dashboards"
)]
pub struct Cli {
    /// Docker endpoint (unix:///path or tcp://host:port) [default: $DOCKER_HOST, else the local socket]
    #[arg(long, global = true, value_name = "URL")]
    pub docker_host: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Deploy, inspect or remove the Prometheus + Alertmanager swarm stack.
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Start or stop the agent container on this node.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Serve the cluster dashboard: nodes, history, alerts (with silencing), from Prometheus
    /// and Alertmanager.
    Dashboard(DashboardArgs),
    /// Write a Raspberry Pi OS image to an SD card and prepare it to join the swarm.
    Flash(Box<flash_cli::FlashArgs>),
    /// Keep this node's agent container in the desired state: what each task of the stack's
    /// launcher service (`stack up --agents`) runs, with its node's Docker socket.
    Launcher(LauncherArgs),
    /// Check this node: Pi, overlays, devices, Docker, swarm, network, agent container,
    /// Prometheus scraping it, Alertmanager reachable from it. Exit status 1 if any check fails.
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Where the host's /proc, /sys, /boot and /dev are.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The agent container to check.
        #[arg(long, default_value = node::DEFAULT_NAME)]
        container: String,
        /// Prometheus URL, to ask whether it scrapes this agent.
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
        #[arg(long, default_value = plan::DEFAULT_NETWORK)]
        network: String,
        #[command(flatten)]
        login: Login,
    },
}

/// How the CLI logs in to the stack's Prometheus and Alertmanager.
#[derive(Args, Debug, Clone, Default)]
pub struct Login {
    /// The operator's password (user edgesense) for Prometheus, Alertmanager and the dashboard
    /// [default: the one `stack up` keeps on this machine].
    #[arg(long, value_name = "FILE")]
    pub web_password_file: Option<PathBuf>,
    /// The fleet CA to verify them against [default: the one `stack up` keeps on this machine;
    /// `edgesense stack ca` prints it].
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct DashboardArgs {
    /// Prometheus URL.
    #[arg(long, value_name = "URL", default_value = "https://127.0.0.1:9090")]
    pub prometheus: String,
    /// Alertmanager URL.
    #[arg(long, value_name = "URL", default_value = "https://127.0.0.1:9093")]
    pub alertmanager: String,
    /// Address to serve on. The page can silence alerts (an LED control): beyond loopback it
    /// asks for the operator's password, and it does not start there without one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9843")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub login: Login,
    /// The stack whose kept credentials to use (with --state-dir, or the only one kept here).
    #[arg(long, default_value = "edgesense")]
    pub stack: String,
    /// Where the stack's secrets are kept [default: /var/lib/edgesense/stacks/<swarm>/<stack>].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LauncherArgs {
    #[command(flatten)]
    pub name: StackName,
    /// The agent image to run.
    #[arg(long, value_name = "IMAGE", default_value = node::DEFAULT_IMAGE)]
    pub agent_image: String,
    /// The agent config (the launcher service mounts a swarm config here).
    #[arg(long, value_name = "FILE", default_value = "/etc/edgesense/agent.toml")]
    pub config: PathBuf,
    /// The webhook token (the stack's swarm secret).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/secrets/edgesense_token"
    )]
    pub token_file: PathBuf,
    /// The agents' certificate and key (the stack's swarm secret).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/secrets/edgesense_agent.pem"
    )]
    pub tls_cert: PathBuf,
    /// The fleet CA (the stack's swarm secret).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/secrets/edgesense_ca.crt"
    )]
    pub tls_ca: PathBuf,
    /// The agents' Alertmanager password (the stack's swarm secret).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/secrets/edgesense_alertmanager_password"
    )]
    pub alertmanager_password_file: PathBuf,
    /// Node name [default: $EDGESENSE_NODE (the service sets it to the swarm node's hostname),
    /// else the Docker host's name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Seconds between reconcile passes.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub interval: u64,
    /// Keep this node free of the stack's agent (nodes labelled edgesense.agent=false).
    #[arg(long)]
    pub absent: bool,
    /// One pass, then exit (non-zero if it failed): `stack down --agents` runs this.
    #[arg(long)]
    pub once: bool,
    /// Exit 0 if the last pass is recent and found the agent healthy: the task's health check.
    #[arg(long)]
    pub probe: bool,
    /// Where each pass's status goes (and --probe reads it).
    #[arg(long, value_name = "FILE", default_value = edgesense::launcher::STATUS_FILE)]
    pub status_file: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct StackName {
    /// Stack name: services are <stack>_prometheus and <stack>_alertmanager.
    #[arg(long, default_value = "edgesense")]
    pub stack: String,
    /// The attachable overlay network shared with the agent containers.
    #[arg(long, default_value = plan::DEFAULT_NETWORK)]
    pub network: String,
    /// Where this machine keeps the stack's secrets (the fleet CA and its key, certificates,
    /// token, passwords) [default: /var/lib/edgesense/stacks/<swarm cluster id>/<stack>].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// What the deployed files and services look like (`stack up` and `stack render`).
#[derive(Args, Debug, Clone)]
pub struct StackContent {
    #[command(flatten)]
    pub name: StackName,
    /// Prometheus image (pinned upstream; offline: edgesense/prometheus:local from stack/images/build.sh).
    #[arg(long, value_name = "IMAGE", default_value = plan::PROMETHEUS_IMAGE)]
    pub prometheus_image: String,
    /// Alertmanager image (pinned upstream; offline: edgesense/alertmanager:local).
    #[arg(long, value_name = "IMAGE", default_value = plan::ALERTMANAGER_IMAGE)]
    pub alertmanager_image: String,
    /// File with the webhook token [default: the one kept for the stack, or a new one, printed
    /// once].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The operator's password (user edgesense) for Prometheus, Alertmanager and the dashboard
    /// [default: the one kept for the stack, or a new one, printed once].
    #[arg(long, value_name = "FILE")]
    pub web_password_file: Option<PathBuf>,
    /// Grafana's admin password (with --grafana) [default: kept, or a new one, printed once].
    #[arg(long, value_name = "FILE")]
    pub grafana_password_file: Option<PathBuf>,
    /// One more name (DNS name or address) for the certificates of Prometheus, Alertmanager
    /// and Grafana, as you reach their published ports; the managers' names and addresses are
    /// in them already. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub tls_name: Vec<String>,
    /// Issue again every certificate that ends within this many days (they last a year).
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub renew_within: u64,
    /// Encrypt the overlay's VXLAN traffic with IPsec (Docker's `--opt encrypted`), on top of
    /// TLS. Every node's kernel needs ESP: `edgesense doctor` says whether a node has it.
    #[arg(long)]
    pub encrypted_overlay: bool,
    /// The overlay's addresses when `stack up` creates it [default: the first /20 of
    /// 10.128.0.0/12 that no Docker network has]. Every agent, service and node takes one:
    /// Docker's own default, a /24, holds about 250 and the next agent fails to attach. Keep
    /// it off your LAN's addresses.
    #[arg(long, value_name = "CIDR", value_parser = parse_subnet)]
    pub subnet: Option<edgesense::subnet::Net>,
    /// Alertmanagers to run, each on a manager of its own with its own volume, clustered over
    /// the overlay (mutual TLS): 2 keeps silences and notifications through a manager's loss.
    /// At most the number of managers [default: 2 on a swarm of two managers or more with
    /// edgesense's Alertmanager image, which finds its overlay address; else 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=5))]
    pub alertmanagers: Option<u32>,
    /// Air temperature warning threshold, °C.
    #[arg(long, value_name = "°C", default_value_t = 30.0)]
    pub warn_celsius: f64,
    /// Air temperature critical threshold, °C.
    #[arg(long, value_name = "°C", default_value_t = 35.0)]
    pub crit_celsius: f64,
    /// SoC temperature warning threshold, °C.
    #[arg(long, value_name = "°C", default_value_t = 75.0)]
    pub soc_warn_celsius: f64,
    /// SoC temperature critical threshold, °C (the firmware throttles from 80).
    #[arg(long, value_name = "°C", default_value_t = 80.0)]
    pub soc_crit_celsius: f64,
    /// Prometheus scrape and rule evaluation interval, e.g. 15s, 5s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
    /// Alertmanager's wait before it notifies a new alert group, e.g. 10s, 0s (rules' `for:`
    /// already debounces; 0s lights LEDs as soon as Prometheus fires).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub group_wait: Duration,
    /// Your own rules file instead of the shipped one (the thresholds then do not apply).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Publish Prometheus on this host port of the node running it (default: not published, only
    /// on the overlay network; Prometheus has no authentication).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub prometheus_port: u16,
    /// Publish Alertmanager on this host port (default: not published; no authentication).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub alertmanager_port: u16,
    /// Add Grafana (this image) with the edgesense dashboard and Prometheus data source provisioned.
    #[arg(long, value_name = "IMAGE")]
    pub grafana: Option<String>,
    /// Host port for Grafana (0: not published).
    #[arg(long, value_name = "PORT", default_value_t = 3000)]
    pub grafana_port: u16,
    /// Run the agent on every node, declaratively: a global launcher service keeps each node's
    /// agent container in the desired state (it holds each node's Docker socket: SECURITY.md).
    #[arg(long)]
    pub agents: bool,
    /// The agents' image (with --agents).
    #[arg(long, value_name = "IMAGE", default_value = node::DEFAULT_IMAGE)]
    pub agent_image: String,
    /// The agents' config (with --agents): FILE for every node, NAME=FILE for the nodes labelled
    /// edgesense.config=NAME (`docker node update --label-add edgesense.config=NAME NODE`);
    /// repeatable. `simulate = true` in it gives simulated agents.
    #[arg(long, value_name = "[NAME=]FILE")]
    pub agent_config: Vec<String>,
    /// The launcher's image (with --agents): FROM scratch with this CLI, from stack/images/build.sh.
    #[arg(long, value_name = "IMAGE", default_value = plan::launcher::DEFAULT_LAUNCHER_IMAGE)]
    pub launcher_image: String,
    /// How many nodes an agent upgrade replaces at once (with --agents). Each step takes 18-20
    /// s (its new agents' first health check, then their launchers'), so one at a time rolls
    /// 300 nodes in about 90 minutes and 10 at a time in about 10; a new agent that never gets
    /// healthy pauses the roll with at most this many nodes on it.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub roll_parallelism: u32,
    /// Service health checks: `probe` (edgesense/* local images), `wget` (upstream images), `auto` picks by image.
    #[arg(long, value_enum, default_value_t = HealthcheckArg::Auto)]
    pub healthcheck: HealthcheckArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HealthcheckArg {
    Auto,
    Probe,
    Wget,
    None,
}

#[derive(Subcommand, Debug)]
pub enum StackAction {
    /// Create or update the stack; running it again with the same flags changes nothing.
    Up {
        #[command(flatten)]
        content: StackContent,
        /// How long to wait for the services and Prometheus to be ready, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 180)]
        timeout: u64,
        /// Return once the services are created, without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove the stack's services, configs and secrets (volumes with --volumes; the network if unused).
    Down {
        #[command(flatten)]
        name: StackName,
        /// Also remove the Prometheus and Alertmanager data volumes.
        #[arg(long)]
        volumes: bool,
        /// Also remove, on every node, the agent containers the launchers made (and nothing
        /// else; `node run` agents stay). Without it the agents keep running.
        #[arg(long)]
        agents: bool,
        /// The image that removes them, if the stack has no launcher left to take it from.
        #[arg(long, value_name = "IMAGE", default_value = plan::launcher::DEFAULT_LAUNCHER_IMAGE)]
        launcher_image: String,
        /// How long to wait for tasks to stop, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
    /// Show services, tasks, nodes, discovered agents and active alerts.
    Status {
        #[command(flatten)]
        name: StackName,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Prometheus URL [default: port 9090 of the node running Prometheus].
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
        /// Alertmanager URL [default: port 9093 of the node running Alertmanager].
        #[arg(long, value_name = "URL")]
        alertmanager: Option<String>,
        #[command(flatten)]
        login: Login,
    },
    /// A new webhook token and new certificates for every service and the agents (same CA), in
    /// three waited steps so that no request is refused and no LED goes dark: the launchers'
    /// agents reload them in place; `node run` agents need `node run` again with the new
    /// bundle. Run it where `stack up` ran (it keeps the CA's key).
    Rotate {
        #[command(flatten)]
        name: StackName,
        /// How long each step may take, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
    },
    /// Print the fleet CA certificate (PEM), for browsers and clients to trust: the node pages,
    /// Prometheus, Alertmanager and Grafana all present certificates it signed.
    Ca {
        #[command(flatten)]
        name: StackName,
        /// Write it to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write docker-stack.yml and its files for `docker stack deploy`.
    Render {
        #[command(flatten)]
        content: StackContent,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeAction {
    /// Start (or replace) the agent container on this node.
    Run {
        /// Agent image.
        #[arg(long, default_value = node::DEFAULT_IMAGE)]
        image: String,
        /// Container name; give each agent its own to run several on one host.
        #[arg(long, default_value = node::DEFAULT_NAME)]
        name: String,
        /// Node name the agent reports [default: --name if given, else this host's name].
        #[arg(long)]
        node_name: Option<String>,
        /// Agent config file (TOML), copied into the container (run `node run` again after editing it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Webhook token file (the stack's token), copied into the container [default: generated
        /// once into /var/lib/edgesense/<name>.token on the machine running this command, and printed].
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Run the agent without a token: anyone who reaches it can set its LEDs and post alerts.
        #[arg(long, conflicts_with = "token_file")]
        no_token: bool,
        /// The fleet credentials for the agent (the agent/ directory `stack up` writes: CA,
        /// certificate, token, Alertmanager password) [default: /etc/edgesense/fleet, else the
        /// one kept on this machine for the swarm --docker-host belongs to].
        #[arg(long, value_name = "DIR")]
        credentials: Option<PathBuf>,
        /// Simulated hardware: try the stack without a Pi.
        #[arg(long)]
        simulate: bool,
        /// Run privileged (all devices, all capabilities): only if least privilege does not work.
        #[arg(long)]
        privileged: bool,
        /// Publish the agent on the host: PORT or HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        publish: Option<String>,
        /// How often dockerd checks the agent's health [default: the image's 10s]. Each check
        /// is a `docker exec` (dockerd, containerd and runc start a process in the container):
        /// on a Pi Zero, 30s or 60s saves CPU; a longer interval also delays `healthy` after a
        /// start, which a rolling upgrade waits for.
        #[arg(long, value_name = "DURATION", value_parser = parse_health_interval)]
        health_interval: Option<Duration>,
        #[arg(long, default_value = plan::DEFAULT_NETWORK)]
        network: String,
        /// Do not install the systemd unit that starts the agent again when dockerd could not
        /// after its own restart (moby/moby#32607). It is installed only when this host runs
        /// systemd and the Docker daemon is the local default one.
        #[arg(long)]
        no_systemd_unit: bool,
    },
    /// Stop and remove the agent container.
    Stop {
        #[arg(long, default_value = node::DEFAULT_NAME)]
        name: String,
    },
}

fn parse_subnet(s: &str) -> Result<edgesense::subnet::Net, String> {
    edgesense::subnet::parse_flag(s).map_err(|e| e.to_string())
}

/// `--health-interval`: at least a second (dockerd's own floor is 1 ms, but a check takes
/// longer than that to run).
fn parse_health_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("\"{s}\": at least 1s"));
    }
    Ok(d)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("\"{s}\": write e.g. 15s, 500ms or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("\"{s}\": unit must be ms, s or m")),
    }
}

pub fn read_file(p: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display()))
}

impl StackContent {
    /// The launchers' part of the stack (`--agents`), with the config files read.
    pub fn agents(&self) -> anyhow::Result<Option<plan::Agents>> {
        if !self.agents {
            anyhow::ensure!(
                self.agent_config.is_empty(),
                "--agent-config needs --agents"
            );
            return Ok(None);
        }
        let mut config = None;
        let mut named: Vec<(String, String)> = Vec::new();
        for spec in &self.agent_config {
            match spec.split_once('=') {
                Some((name, file)) => {
                    anyhow::ensure!(
                        !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                        "--agent-config {spec}: NAME is letters, digits, - and _ (the value of the node label edgesense.config)"
                    );
                    anyhow::ensure!(
                        !named.iter().any(|(n, _)| n == name),
                        "--agent-config {name}=…: given twice"
                    );
                    named.push((
                        name.to_owned(),
                        read_file(&PathBuf::from(file), "--agent-config")?,
                    ));
                }
                None => {
                    anyhow::ensure!(
                        config.is_none(),
                        "--agent-config {spec}: a default config is given twice (NAME=FILE for labelled nodes)"
                    );
                    config = Some(read_file(&PathBuf::from(spec), "--agent-config")?);
                }
            }
        }
        Ok(Some(plan::Agents {
            agent_image: self.agent_image.clone(),
            launcher_image: self.launcher_image.clone(),
            config,
            named,
            roll_parallelism: self.roll_parallelism,
        }))
    }

    pub fn options(&self) -> StackOptions {
        StackOptions {
            stack: self.name.stack.clone(),
            network: self.name.network.clone(),
            prometheus_image: self.prometheus_image.clone(),
            alertmanager_image: self.alertmanager_image.clone(),
            prometheus_port: self.prometheus_port,
            alertmanager_port: self.alertmanager_port,
            grafana: self.grafana.clone(),
            grafana_port: self.grafana_port,
            healthcheck: match self.healthcheck {
                HealthcheckArg::Auto => Healthcheck::Auto,
                HealthcheckArg::Probe => Healthcheck::Probe,
                HealthcheckArg::Wget => Healthcheck::Wget,
                HealthcheckArg::None => Healthcheck::None,
            },
            agents: None,
            encrypted_overlay: self.encrypted_overlay,
            subnet: self.subnet,
            // `stack up` decides the default from the swarm (up::alertmanagers); rendered
            // without one, a single Alertmanager.
            alertmanagers: self.alertmanagers.unwrap_or(1),
            prometheus_node: None,
            overlay_gateway: None,
        }
    }

    pub fn files(&self) -> anyhow::Result<assets::Rendered> {
        let rules = self
            .rules
            .as_ref()
            .map(|p| read_file(p, "--rules"))
            .transpose()?;
        Ok(assets::render(&AssetOptions {
            thresholds: Thresholds {
                warn_celsius: self.warn_celsius,
                crit_celsius: self.crit_celsius,
                soc_warn_celsius: self.soc_warn_celsius,
                soc_crit_celsius: self.soc_crit_celsius,
            },
            rules,
            scrape_interval: self.scrape_interval,
            group_wait: self.group_wait,
        })?)
    }

    pub fn token(&self) -> anyhow::Result<Option<String>> {
        first_line(self.token_file.as_ref(), "--token-file")
    }
}

/// The first line of `p`, trimmed; an empty one is an error naming `what`.
pub fn first_line(p: Option<&PathBuf>, what: &str) -> anyhow::Result<Option<String>> {
    let Some(p) = p else {
        return Ok(None);
    };
    let t = read_file(p, what)?;
    let t = t.lines().next().unwrap_or("").trim().to_owned();
    anyhow::ensure!(
        !t.is_empty(),
        "{what} {}: empty; put it on its first line",
        p.display()
    );
    Ok(Some(t))
}
