//! `edgesense`: the operator CLI. Argument parsing, output and exit codes; the work is in the
//! library.

mod cli;
mod cmd_node;
mod cmd_stack;
mod flash_cli;

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use cli::{Cli, Command};
use edgesense::{credentials::Secrets, docker, StackError};

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
        Command::Stack { action } => cmd_stack::run(&host, action).await,
        Command::Node { action } => {
            let local = cli.docker_host.is_none()
                && std::env::var("DOCKER_HOST").map_or(true, |h| h.is_empty());
            cmd_node::run(&host, local, action).await
        }
        Command::Flash(args) => flash_cli::run(*args),
        Command::Launcher(a) => launcher(&host, a).await,
        Command::Dashboard(a) => dashboard(a).await,
        Command::Doctor {
            json,
            root,
            container,
            prometheus,
            network,
            login,
        } => {
            let o = edgesense::doctor::DoctorOptions {
                root,
                container,
                network,
                prometheus,
                access: cmd_stack::operator_access(&login, None)?,
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

/// The kept secrets of `stack` for the dashboard: in `dir`, else the only stack of that name
/// kept on this machine (one swarm).
fn kept_for_dashboard(
    stack: &str,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Option<Secrets>> {
    if let Some(d) = dir {
        return Ok(Secrets::load(d)?);
    }
    let root = std::path::Path::new(edgesense::credentials::STATE_ROOT);
    match edgesense::credentials::kept_dirs(root, stack).as_slice() {
        [one] => Ok(Secrets::load(one)?),
        [] => Ok(None),
        _ => anyhow::bail!(
            "stack {stack} is kept for several swarms under {}: say which with --state-dir",
            root.display()
        ),
    }
}

async fn dashboard(a: cli::DashboardArgs) -> anyhow::Result<()> {
    let given = a.login.ca_file.is_some() && a.login.web_password_file.is_some();
    let kept = if given {
        None
    } else {
        kept_for_dashboard(&a.stack, a.state_dir.as_deref())?
    };
    let access = cmd_stack::operator_access(&a.login, kept.as_ref())?;
    let password = match cli::first_line(a.login.web_password_file.as_ref(), "--web-password-file")?
    {
        Some(p) => Some(p),
        None => kept
            .as_ref()
            .and_then(|k| k.password(edgesense::credentials::OPERATOR).ok())
            .map(str::to_owned),
    };
    let loopback = a.listen.ip().is_loopback();
    anyhow::ensure!(
        loopback || password.is_some(),
        "--listen {}: beyond loopback the dashboard (which can silence alerts, an LED control) asks for the operator's password, and none is given (--web-password-file) or kept here",
        a.listen
    );
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "edgesense dashboard on http://{addr}/ (Prometheus {}, Alertmanager {}){}",
        a.prometheus,
        a.alertmanager,
        if loopback {
            ""
        } else {
            "; user edgesense, the operator's password"
        }
    );
    let app = edgesense::dashboard::router(
        edgesense::dashboard::Dash {
            prometheus: a.prometheus.trim_end_matches('/').into(),
            alertmanager: a.alertmanager.trim_end_matches('/').into(),
            access,
        },
        edgesense::dashboard::Guard {
            listen: addr,
            password: (!loopback).then_some(password).flatten(),
        },
    );
    axum::serve(listener, app).await?;
    Ok(())
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
        tls_cert: Some(a.tls_cert),
        tls_ca: Some(a.tls_ca),
        alertmanager_password_file: Some(a.alertmanager_password_file),
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
