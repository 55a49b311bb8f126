//! The agent's command-line flags (clap).

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};
use edgesense_agent::config;

#[derive(Parser, Debug)]
#[command(
    name = "edgesense-agent",
    version,
    about = "edgesense node agent: reads sensors, drives LEDs, serves Prometheus metrics and an HTTP API",
    after_help = "Try it without hardware:\n  edgesense-agent --simulate\n  then open http://localhost:9842/ (without a token it serves this machine only)"
)]
pub struct Args {
    /// Node config (TOML): sensors, LEDs, edge rules, listen address, token file.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Simulated hardware: the built-in simulated node, or the config's sensors and LEDs simulated.
    #[arg(long)]
    pub simulate: bool,

    /// Where sysfs is [default: /, or `sysfs_root` from the config]; point it at a prepared tree
    /// to try a config without the hardware.
    #[arg(long, value_name = "PATH")]
    pub sysfs_root: Option<PathBuf>,

    /// Node name: the `node` label and the name Alertmanager alerts address [default: `node`
    /// from the config, else the hostname].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// File holding the bearer token that writes (LED API, webhook) and reads from other hosts
    /// must carry; one token per line, every one accepted [default: `token_file` from the
    /// config]. Without one the agent serves loopback only.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM, may hold the key too) [default: `[tls]
    /// cert_file`].
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM) [default: `[tls] key_file`, else the certificate's
    /// file].
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// The fleet CA (PEM): peers, https Alertmanagers and client certificates are verified
    /// against it [default: `[tls] ca_file`].
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,

    /// Alertmanager basic-auth user [default: `[alertmanager] username`, else agent].
    #[arg(long, value_name = "NAME")]
    pub alertmanager_user: Option<String>,

    /// File holding that user's password [default: `[alertmanager] password_file`].
    #[arg(long, value_name = "PATH")]
    pub alertmanager_password_file: Option<PathBuf>,

    /// Serve the network without a token: anyone who reaches the port can then read the
    /// readings, set the LEDs and post alerts. Without this (and without a token) the agent
    /// serves loopback only.
    #[arg(long)]
    pub allow_anonymous_writes: bool,

    /// Relay Alertmanager payloads to the A records of NAME:PORT (in the swarm:
    /// edgesense-agent:9842), in addition to the config's [relay].
    #[arg(long, value_name = "NAME:PORT", value_parser = parse_host_port)]
    pub relay_dns: Option<String>,

    /// Alertmanager to reconcile the LEDs against (its API v2: silences, restarts, lost
    /// webhooks); repeat for an HA pair [default: `[alertmanager] url` from the config].
    #[arg(long, value_name = "URL")]
    pub alertmanager: Vec<String>,

    /// Keep the history and what Prometheus still misses in this file over a restart (written
    /// at stop, read at start) [default: `state_file` from the config, else nowhere].
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,

    /// Push readings Prometheus missed to this remote-write URL (in the swarm:
    /// https://prometheus:9090/api/v1/write) [default: `[remote_write] url` from the config].
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,

    /// GET URL (http://host:port/path) and exit 0 on a 2xx answer: the health check of the
    /// FROM-scratch images, which have no shell or wget.
    #[arg(long, value_name = "URL", hide = true)]
    pub probe: Option<String>,

    /// With --probe: basic auth as this user …
    #[arg(
        long,
        value_name = "NAME",
        hide = true,
        requires = "probe_password_file"
    )]
    pub probe_user: Option<String>,

    /// … with the password on this file's first line.
    #[arg(long, value_name = "PATH", hide = true, requires = "probe_user")]
    pub probe_password_file: Option<PathBuf>,

    /// Run the program after `--` with `--cluster.advertise-address=IP:PORT` added, IP being
    /// this container's address where NAME:PORT resolves (the stack's Alertmanager pair).
    #[arg(long, value_name = "NAME:PORT", hide = true, requires = "command")]
    pub with_overlay_address: Option<String>,

    /// The program (and its arguments) for --with-overlay-address.
    #[arg(last = true, hide = true)]
    pub command: Vec<String>,

    /// Print the device nodes under DIR that the agent opens (GPIO, I2C) as `NAME GID` lines,
    /// then exit: how `edgesense node run` finds a node's devices, on that node, through Docker.
    #[arg(long, value_name = "DIR", hide = true)]
    pub list_devices: Option<PathBuf>,

    /// Print every supported sensor found on this node as [[sensor]] tables ready to paste into
    /// a config (each read once), then exit.
    #[arg(long)]
    pub list_sensors: bool,

    /// Address to serve HTTP(S) on [default: 0.0.0.0:9842, or `listen` from the config;
    /// 127.0.0.1:9842 without a token].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_listen)]
    pub listen: Option<SocketAddr>,

    /// Log format: human-readable lines, or JSON lines for journald / Loki.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Least severe log level shown.
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

fn parse_host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(s.to_owned())
        }
        _ => Err(format!(
            "\"{s}\" is not NAME:PORT, e.g. edgesense-agent:9842"
        )),
    }
}
