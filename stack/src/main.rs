//! `edgesense`: the operator CLI. Argument parsing, output and exit codes; the work is in the
//! library.

mod cli;
mod flash_cli;

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use cli::{read_file, Cli, Command, NodeAction, StackAction};
use edgesense::{
    docker, down, node,
    plan::{self, StackOptions},
    progress::Progress,
    render, status, up, StackError,
};

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
        Command::Launcher(a) => launcher(&host, a).await,
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

async fn launcher(host: &str, a: cli::LauncherArgs) -> anyhow::Result<()> {
    use edgesense::launcher::{self, LauncherOptions, Mode};
    let interval = Duration::from_secs(a.interval.max(1));
    if a.probe {
        return match launcher::probe(&a.status_file, interval) {
            Ok(s) => {
                println!("{}: agent {} ({})", s.node, s.agent, s.image);
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!("unhealthy: {e}")),
        };
    }
    let docker = docker::connect(host).await?;
    let o = LauncherOptions {
        stack: a.name.stack,
        network: a.name.network,
        agent_image: a.agent_image,
        config: Some(a.config),
        token_file: Some(a.token_file),
        node_name: a
            .node_name
            .or_else(|| std::env::var("EDGESENSE_NODE").ok())
            .filter(|n| !n.is_empty()),
        interval,
        mode: if a.absent {
            Mode::Absent
        } else {
            Mode::Present
        },
        status_file: a.status_file,
    };
    if a.once {
        let mut l = launcher::Launcher::new(&docker, o).await?;
        let s = l.pass(&docker).await;
        if let Some(line) = launcher::log_line(&s) {
            eprintln!("{line}");
        }
        anyhow::ensure!(s.action != launcher::Action::Failed, "{}", s.message);
        return Ok(());
    }
    Ok(launcher::run(&docker, o).await?)
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
            let opts = StackOptions {
                agents: content.agents()?,
                ..content.options()
            };
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
            agents,
            launcher_image,
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
                    agents,
                    launcher_image: &launcher_image,
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
            let opts = StackOptions {
                agents: content.agents()?,
                ..content.options()
            };
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
                launcher: None,
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
