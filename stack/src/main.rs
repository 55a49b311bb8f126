//! `edgesense`: the operator CLI. Argument parsing, output and exit codes; the work is in the
//! library.

mod flash_cli;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use edgesense::{
    assets::{self, AssetOptions, Thresholds},
    docker, down, node,
    plan::{self, Healthcheck, StackOptions},
    progress::Progress,
    render, status, up, StackError,
};

#[derive(Parser, Debug)]
#[command(
    name = "edgesense",
    version,
    about = "Operate an edgesense fleet: deploy the swarm stack, run node agents, flash SD cards, show dashboards"
)]
struct Cli {
    /// Docker endpoint (unix:///path or tcp://host:port) [default: $DOCKER_HOST, else the local socket]
    #[arg(long, global = true, value_name = "URL")]
    docker_host: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    Dashboard {
        /// Prometheus URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
        prometheus: String,
        /// Alertmanager URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9093")]
        alertmanager: String,
        /// Address to serve on (the page can silence alerts: keep it on loopback unless the
        /// network is trusted).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9843")]
        listen: std::net::SocketAddr,
    },
    /// Write a Raspberry Pi OS image to an SD card and prepare it to join the swarm.
    Flash(Box<flash_cli::FlashArgs>),
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
    },
}

#[derive(Args, Debug, Clone)]
struct StackName {
    /// Stack name: services are <stack>_prometheus and <stack>_alertmanager.
    #[arg(long, default_value = "edgesense")]
    stack: String,
    /// The attachable overlay network shared with the agent containers.
    #[arg(long, default_value = plan::DEFAULT_NETWORK)]
    network: String,
}

/// What the deployed files and services look like (`stack up` and `stack render`).
#[derive(Args, Debug, Clone)]
struct StackContent {
    #[command(flatten)]
    name: StackName,
    /// Prometheus image (pinned upstream; offline: edgesense/prometheus:local from stack/images/build.sh).
    #[arg(long, value_name = "IMAGE", default_value = plan::PROMETHEUS_IMAGE)]
    prometheus_image: String,
    /// Alertmanager image (pinned upstream; offline: edgesense/alertmanager:local).
    #[arg(long, value_name = "IMAGE", default_value = plan::ALERTMANAGER_IMAGE)]
    alertmanager_image: String,
    /// File with the webhook token [default: keep the stack's secret, or generate one and print it once].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Air temperature warning threshold, °C.
    #[arg(long, value_name = "°C", default_value_t = 30.0)]
    warn_celsius: f64,
    /// Air temperature critical threshold, °C.
    #[arg(long, value_name = "°C", default_value_t = 35.0)]
    crit_celsius: f64,
    /// SoC temperature warning threshold, °C.
    #[arg(long, value_name = "°C", default_value_t = 75.0)]
    soc_warn_celsius: f64,
    /// SoC temperature critical threshold, °C (the firmware throttles from 80).
    #[arg(long, value_name = "°C", default_value_t = 80.0)]
    soc_crit_celsius: f64,
    /// Prometheus scrape and rule evaluation interval, e.g. 15s, 5s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Alertmanager's wait before it notifies a new alert group, e.g. 10s, 0s (rules' `for:`
    /// already debounces; 0s lights LEDs as soon as Prometheus fires).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    group_wait: Duration,
    /// Your own rules file instead of the shipped one (the thresholds then do not apply).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Publish Prometheus on this host port of the node running it (default: not published, only
    /// on the overlay network; Prometheus has no authentication).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    prometheus_port: u16,
    /// Publish Alertmanager on this host port (default: not published; no authentication).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    alertmanager_port: u16,
    /// Add Grafana (this image) with the edgesense dashboard and Prometheus data source provisioned.
    #[arg(long, value_name = "IMAGE")]
    grafana: Option<String>,
    /// Host port for Grafana (0: not published).
    #[arg(long, value_name = "PORT", default_value_t = 3000)]
    grafana_port: u16,
    /// Service health checks: `probe` (edgesense/* local images), `wget` (upstream images), `auto` picks by image.
    #[arg(long, value_enum, default_value_t = HealthcheckArg::Auto)]
    healthcheck: HealthcheckArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HealthcheckArg {
    Auto,
    Probe,
    Wget,
    None,
}

#[derive(Subcommand, Debug)]
enum StackAction {
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
enum NodeAction {
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
        /// Simulated hardware: try the stack without a Pi.
        #[arg(long)]
        simulate: bool,
        /// Run privileged (all devices, all capabilities): only if least privilege does not work.
        #[arg(long)]
        privileged: bool,
        /// Publish the agent on the host: PORT or HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        publish: Option<String>,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn read_file(p: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display()))
}

impl StackContent {
    fn options(&self) -> StackOptions {
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
        }
    }

    fn files(&self) -> anyhow::Result<assets::Rendered> {
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

    fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(p) = &self.token_file else {
            return Ok(None);
        };
        let t = read_file(p, "--token-file")?;
        let t = t.lines().next().unwrap_or("").trim().to_owned();
        anyhow::ensure!(
            !t.is_empty(),
            "--token-file {}: empty; put the token on its first line",
            p.display()
        );
        Ok(Some(t))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let input = e
                .downcast_ref::<StackError>()
                .is_some_and(|s| matches!(s, StackError::Input(_)));
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let host = docker::host(cli.docker_host.as_deref());
    match cli.command {
        Command::Stack { action } => stack(&host, action).await,
        Command::Node { action } => {
            let local = cli.docker_host.is_none()
                && std::env::var("DOCKER_HOST").map_or(true, |h| h.is_empty());
            node_cmd(&host, local, action).await
        }
        Command::Flash(args) => flash_cli::run(*args),
        Command::Dashboard {
            prometheus,
            alertmanager,
            listen,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            eprintln!("edgesense dashboard on http://{addr}/ (Prometheus {prometheus}, Alertmanager {alertmanager})");
            let app = edgesense::dashboard::router(edgesense::dashboard::Dash {
                prometheus: prometheus.trim_end_matches('/').into(),
                alertmanager: alertmanager.trim_end_matches('/').into(),
            });
            axum::serve(listener, app).await?;
            Ok(())
        }
        Command::Doctor {
            json,
            root,
            container,
            prometheus,
            network,
        } => {
            let o = edgesense::doctor::DoctorOptions {
                root,
                container,
                network,
                prometheus,
                ..Default::default()
            };
            let mut checks = edgesense::doctor::host_checks(&o.root);
            let docker = docker::connect(&host).await.map_err(|e| e.to_string());
            checks.extend(edgesense::doctor::docker_checks(docker, &o).await);
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                print!("{}", edgesense::doctor::table(&checks));
            }
            let failed = checks
                .iter()
                .filter(|c| c.status == edgesense::doctor::Status::Fail)
                .count();
            if failed > 0 {
                if !json {
                    eprintln!("{failed} check(s) failed");
                }
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Where a service's host-mode published ports listen: the node its task runs on (else the
/// Docker host's name).
async fn published_at(docker: &bollard::Docker, host: &str, service: String) -> String {
    up::service_address(docker, &service)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| docker::published_host(host))
}

async fn stack(host: &str, action: StackAction) -> anyhow::Result<()> {
    match action {
        StackAction::Up {
            content,
            timeout,
            no_wait,
        } => {
            let files = content.files()?;
            let token = content.token()?;
            let opts = content.options();
            let docker = docker::connect(host).await?;
            let mut progress = Progress::new(false);
            let (outcome, plan, generated) =
                up::up(&docker, &opts, &files, token.as_deref(), &mut progress).await?;
            for c in &outcome.created {
                progress.done(&format!("created   {c}"));
            }
            for u in &outcome.updated {
                progress.done(&format!("updated   {u}"));
            }
            for r in &outcome.removed {
                progress.done(&format!("removed   {r}"));
            }
            if !outcome.changed() {
                progress.done("stack is up to date: nothing changed");
            }
            if let Some(t) = generated {
                println!("Webhook token (shown once; give it to every agent with `edgesense node run --token-file FILE`):\n{t}");
            }
            if !no_wait {
                let url = up::wait_ready(
                    &docker,
                    &plan,
                    opts.prometheus_port,
                    Duration::from_secs(timeout),
                    &mut progress,
                )
                .await?;
                if let Some(u) = url {
                    println!("Prometheus: {u}");
                } else {
                    println!("Prometheus and Alertmanager are reachable only on the overlay network; publish them with --prometheus-port 9090 --alertmanager-port 9093 (they have no authentication)");
                }
                let at = |service: String| published_at(&docker, host, service);
                if opts.grafana.is_some() && opts.grafana_port != 0 {
                    println!(
                        "Grafana: http://{}:{} (dashboard \"edgesense\")",
                        at(format!("{}_grafana", opts.stack)).await,
                        opts.grafana_port
                    );
                }
                if opts.alertmanager_port != 0 {
                    println!(
                        "Alertmanager: http://{}:{}",
                        at(format!("{}_alertmanager", opts.stack)).await,
                        opts.alertmanager_port
                    );
                }
            }
            Ok(())
        }
        StackAction::Down {
            name,
            volumes,
            timeout,
        } => {
            let docker = docker::connect(host).await?;
            let mut progress = Progress::new(false);
            let out = down::down(
                &docker,
                &down::DownOptions {
                    stack: &name.stack,
                    network: &name.network,
                    volumes,
                    timeout: Duration::from_secs(timeout),
                },
                &mut progress,
            )
            .await?;
            for r in &out.removed {
                progress.done(&format!("removed   {r}"));
            }
            for k in &out.unchanged {
                progress.done(&format!("kept      {k}"));
            }
            if out.removed.is_empty() {
                progress.done(&format!("nothing of stack \"{}\" was left", name.stack));
            }
            Ok(())
        }
        StackAction::Status {
            name,
            json,
            prometheus,
            alertmanager,
        } => {
            let docker = docker::connect(host).await?;
            docker::ensure_manager(&docker).await?;
            let at = |service: String| published_at(&docker, host, service);
            let prometheus = match prometheus {
                Some(p) => p,
                None => format!(
                    "http://{}:9090",
                    at(format!("{}_prometheus", name.stack)).await
                ),
            };
            let alertmanager = match alertmanager {
                Some(a) => a,
                None => format!(
                    "http://{}:9093",
                    at(format!("{}_alertmanager", name.stack)).await
                ),
            };
            let v = status::collect(&docker, &name.stack, Some(&prometheus), Some(&alertmanager))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", status::render_table(&v));
            }
            Ok(())
        }
        StackAction::Render { content, out } => {
            let files = content.files()?;
            let opts = content.options();
            let (secret, token_path) = match (&content.token_file, content.token()?) {
                (Some(p), Some(t)) => (
                    plan::secret_name(&opts.stack, &t),
                    Some(
                        std::fs::canonicalize(p)?
                            .to_str()
                            .context("token file path is not UTF-8")?
                            .to_owned(),
                    ),
                ),
                _ => (format!("{}_token", opts.stack), None),
            };
            let plan = plan::plan(&opts, &files, &secret);
            let written = render::write(&out, &opts, &plan, token_path.as_deref())?;
            for w in written {
                println!("{}", out.join(w).display());
            }
            if token_path.is_none() {
                println!(
                    "Create the token secret first:  printf %s \"$TOKEN\" | docker secret create {secret} -"
                );
            }
            println!(
                "Deploy:  docker stack deploy -c {} {}",
                out.join("docker-stack.yml").display(),
                opts.stack
            );
            Ok(())
        }
    }
}

async fn node_cmd(host: &str, local: bool, action: NodeAction) -> anyhow::Result<()> {
    let docker = docker::connect(host).await?;
    match action {
        NodeAction::Run {
            image,
            name,
            node_name,
            config,
            token_file,
            simulate,
            privileged,
            publish,
            network,
            no_token,
            no_systemd_unit,
        } => {
            if privileged {
                eprintln!("WARNING: --privileged gives the agent container every device and capability of this host; use it only if the least-privilege default cannot reach your hardware");
            }
            let token_file = match (token_file, no_token) {
                (Some(f), _) => Some(f),
                (None, true) => {
                    eprintln!("WARNING: --no-token: the agent's LED API and webhook accept anyone who can reach them");
                    None
                }
                (None, false) => {
                    let (path, new) =
                        node::default_token(std::path::Path::new(node::STATE_DIR), &name)?;
                    if let Some(t) = new {
                        println!("Generated a webhook token at {} (shown once): {t}\nGive the same token to the stack: edgesense stack up --token-file {}", path.display(), path.display());
                    }
                    Some(path)
                }
            };
            let config = config
                .as_ref()
                .map(|p| read_file(p, "--config"))
                .transpose()?;
            let token = token_file
                .as_ref()
                .map(|p| {
                    let t = read_file(p, "--token-file")?;
                    anyhow::ensure!(
                        !t.trim().is_empty(),
                        "--token-file {}: empty; put the token on its first line",
                        p.display()
                    );
                    Ok(t)
                })
                .transpose()?;
            let o = node::NodeOptions {
                image,
                name: name.clone(),
                node_name,
                config,
                token,
                simulate,
                privileged,
                network,
                publish,
            };
            let started = node::run(&docker, &o).await?;
            println!(
                "{} agent container {name} (node \"{}\", image {}{})",
                if started.replaced {
                    "replaced"
                } else {
                    "started"
                },
                started.node,
                started.image,
                if simulate || privileged {
                    String::new()
                } else if started.devices.is_empty() {
                    ", no GPIO or I2C device on this node".into()
                } else {
                    format!(", devices {}", started.devices.join(" "))
                }
            );
            if local && !no_systemd_unit {
                match node::install_start_again(&name) {
                    Ok(true) => println!(
                        "enabled systemd units {} (starts the agent again if dockerd cannot after a restart: moby/moby#32607) and {} (every minute: running, and on its network after the node rejoined the swarm)",
                        node::start_again_instance(&name),
                        node::check_timer_instance(&name)
                    ),
                    Ok(false) => {}
                    Err(e) => eprintln!(
                        "warning: could not install the systemd unit {}: {e}\n  after a dockerd restart, check that the agent runs (`edgesense doctor`)",
                        node::start_again_instance(&name)
                    ),
                }
            }
            Ok(())
        }
        NodeAction::Stop { name } => {
            if node::remove(&docker, &name).await? {
                println!("stopped and removed {name}");
            } else {
                println!("no container named {name}");
            }
            Ok(())
        }
    }
}
