//! `edgesense-agent`: logging, exit codes, signals; the flags are in [`flags`], the work in
//! the library.

mod flags;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use edgesense_agent::{access::AccessFlags, config, credentials, spec, Hardware};
use edgesense_sensors::bus::gpio::MockGpio;
use flags::{Args, LogFormat};

/// Exit status for a bad config or bad flags (clap uses 2 for usage errors too).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format, &args.log_level);

    if let Some(name_port) = &args.with_overlay_address {
        eprintln!(
            "error: {}",
            edgesense_agent::overlay::exec_with(name_port, &args.command)
        );
        return ExitCode::FAILURE;
    }
    if let Some(url) = &args.probe {
        let ca = args.tls_ca.as_deref();
        let auth = args
            .probe_user
            .as_deref()
            .zip(args.probe_password_file.as_deref());
        return match edgesense_agent::probe::probe(url, ca, auth, Duration::from_secs(3)) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.list_sensors {
        return list_sensors(&args);
    }
    if let Some(dir) = &args.list_devices {
        for (name, gid) in edgesense_sensors::bus::device_nodes(dir) {
            println!("{name} {gid}");
        }
        return ExitCode::SUCCESS;
    }

    let (node, creds) = match load(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&args, node, creds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The node the flags and config file describe, and its credentials: at start and on SIGHUP.
fn load(args: &Args) -> Result<(spec::NodeSpec, credentials::Credentials), String> {
    let loaded = match &args.config {
        Some(path) => config::load(path),
        None => Ok(config::Loaded::none()),
    }
    .map_err(|e| e.to_string())?;
    let node = spec::resolve(
        &loaded,
        &spec::Overrides {
            listen: args.listen,
            simulate: args.simulate,
            sysfs_root: args.sysfs_root.clone(),
            node: args.node.clone(),
            access: AccessFlags {
                token_file: args.token_file.clone(),
                tls_cert: args.tls_cert.clone(),
                tls_key: args.tls_key.clone(),
                tls_ca: args.tls_ca.clone(),
                alertmanager_user: args.alertmanager_user.clone(),
                alertmanager_password_file: args.alertmanager_password_file.clone(),
                allow_anonymous_writes: args.allow_anonymous_writes,
            },
            relay_dns: args.relay_dns.clone(),
            alertmanager: args.alertmanager.clone(),
            remote_write: args.remote_write.clone(),
            state_file: args.state_file.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    if args.config.is_none() && !node.simulate {
        return Err("no hardware to run: give --config PATH for a real node, or --simulate to try the built-in simulated node".into());
    }
    let creds = credentials::Credentials::load(&node.credentials)?;
    Ok((node, creds))
}

/// `--list-sensors`: the sysfs root from the flag, else from the config, else `/`.
fn list_sensors(args: &Args) -> ExitCode {
    let from_config = match &args.config {
        Some(path) => match config::load(path) {
            Ok(l) => l.config.sysfs_root,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let root = args
        .sysfs_root
        .clone()
        .or(from_config)
        .unwrap_or_else(|| PathBuf::from("/"));
    let found = edgesense_agent::devices::detect(&root);
    let reads = edgesense_agent::list::read_each(&root, &found);
    print!("{}", edgesense_agent::list::render(&root, &found, &reads));
    ExitCode::SUCCESS
}

/// Why serving stopped.
enum Stop {
    /// SIGTERM or SIGINT: switch the LEDs off and exit.
    Exit,
    /// SIGHUP with a config that checks out and changes more than the credentials: start again
    /// with it.
    Reload(Box<(spec::NodeSpec, credentials::Credentials)>),
}

fn run(args: &Args, node: spec::NodeSpec, creds: credentials::Credentials) -> anyhow::Result<()> {
    // One thread for everything async; sensor reads run on the small blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(async {
        let mut signals = Signals::install()?;
        let (mut node, mut creds) = (node, creds);
        loop {
            // As loaded, before the bind fills in a port: what a reload compares with.
            let loaded = node.clone();
            let hw = if node.simulate {
                let gpio = MockGpio::new();
                Hardware::simulated(&node, &gpio).map(|mut hw| {
                    hw.gpio_record = Some(gpio);
                    hw
                })
            } else {
                Hardware::real(&node)
            }?;
            let listener = tokio::net::TcpListener::bind(node.listen)
                .await
                .with_context(|| format!("cannot listen on {}", node.listen))?;
            // The bound address (port 0 becomes a real port): the relay leaves it out of its peers.
            node.listen = listener.local_addr().context("listener address")?;
            let addr = node.listen;
            let scheme = if creds.server_tls().is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(
                node = %node.node,
                simulate = node.simulate,
                sensors = node.sensors.len(),
                leds = node.leds.len(),
                auth = creds.has_token(),
                relay = !node.relay.is_empty(),
                "listening on {scheme}://{addr}"
            );
            warn_about_exposure(&node, &creds);
            let shared = credentials::Shared::new(creds);
            let running = edgesense_agent::start(Arc::new(node), hw, shared.clone());
            let stop =
                edgesense_agent::serve(listener, running, signals.next(args, &loaded, &shared))
                    .await?;
            match stop {
                Stop::Exit => break,
                Stop::Reload(next) => {
                    tracing::info!("configuration reloaded; restarting with it");
                    (node, creds) = *next;
                }
            }
        }
        tracing::info!("LEDs off, exiting");
        anyhow::Ok(())
    });
    // A sensor read stuck in the kernel must not hold up the exit.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

/// SIGTERM (docker stop), SIGINT (Ctrl-C) and SIGHUP (reload), installed once at start so a
/// signal that arrives early is not lost.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Waits for the next reason to stop serving. A SIGHUP whose config does not check out is
    /// logged and ignored: the running config stays in force. One that changes only what the
    /// credential files hold swaps them into `shared` and serving goes on: the LEDs, the alert
    /// set and open connections stay as they are.
    async fn next(
        &mut self,
        args: &Args,
        running: &spec::NodeSpec,
        shared: &credentials::Shared,
    ) -> Stop {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM received");
                    return Stop::Exit;
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT received");
                    return Stop::Exit;
                }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    match load(args) {
                        Ok((node, creds)) if node == *running => {
                            shared.replace(creds);
                            tracing::info!("credentials reloaded (token, certificates, Alertmanager password); nothing else changed");
                        }
                        Ok(next) => return Stop::Reload(Box::new(next)),
                        Err(e) => tracing::error!(error = %e, "config reload failed; the running configuration stays in force"),
                    }
                }
            }
        }
    }
}

/// Says at start what the network can do with this agent when that is more than it should.
fn warn_about_exposure(node: &spec::NodeSpec, creds: &credentials::Credentials) {
    let addr = node.listen;
    if node.loopback_only {
        tracing::info!("no token_file: serving loopback only; give a token (token_file or --token-file) to serve the network");
    } else if !creds.has_token() && !addr.ip().is_loopback() {
        tracing::warn!("--allow-anonymous-writes: anyone who reaches {addr} can read the readings, set the LEDs and post alerts");
    } else if creds.server_tls().is_none() && !addr.ip().is_loopback() {
        tracing::warn!("no [tls] certificate: the token and the readings cross the network in clear (edgesense stack up issues certificates)");
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let level: tracing::Level = level.parse().unwrap_or(tracing::Level::INFO);
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
