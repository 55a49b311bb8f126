//! `edgesense launcher`: what each task of the stack's global launcher service runs. It holds
//! its node's Docker socket and keeps that node's agent container in the desired state, the
//! same least-privilege container `node run` makes (one code path: [`crate::node`]).
//!
//! Desired state comes from the service spec (agent image, network, stack) and the files swarm
//! mounts into the task (the agent config, a swarm config; the stack's token, a swarm secret);
//! the node name is the swarm node's hostname (`{{.Node.Hostname}}` in the task's env). Which
//! config a node gets, and whether it gets an agent at all, is decided by swarm itself through
//! placement constraints on node labels (a worker's Docker API cannot read node labels): one
//! launcher service per config, and one in [`Mode::Absent`] for nodes labelled
//! `edgesense.agent=false`.
//!
//! The launcher replaces the agent only when the hash of its container request differs,
//! starts it if it stopped, never restarts a running agent for nothing, touches only containers
//! labelled as its stack's agent, and leaves the agent running when it stops itself (LEDs keep
//! working while the launcher is upgraded). Each pass writes a status file the task's health
//! check reads: healthy means the agent it manages is healthy, so a rolling update of the
//! launcher service (parallelism 1) moves to the next node only once the new agent is healthy,
//! and a new agent image that never gets healthy pauses the roll.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bollard::{query_parameters::CreateImageOptions, Docker};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{
    error::{is_not_found, Context, Result, StackError},
    node::{self, Device, NodeOptions, DEFAULT_NAME, LABEL_LAUNCHER, LABEL_ROLE, LABEL_SPEC},
};

/// What the launcher keeps true on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The agent runs with the desired spec.
    Present,
    /// No agent of this stack runs (nodes labelled `edgesense.agent=false`; `stack down --agents`).
    Absent,
}

#[derive(Clone, Debug)]
pub struct LauncherOptions {
    pub stack: String,
    pub network: String,
    pub agent_image: String,
    /// The agent config the task got (a swarm config), if any.
    pub config: Option<PathBuf>,
    /// The agents' token file (a swarm secret). Without it no agent is started: an agent the
    /// project starts always has a token.
    pub token_file: Option<PathBuf>,
    /// The agents' certificate and key, the fleet CA and the agents' Alertmanager password
    /// (swarm secrets).
    pub tls_cert: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub alertmanager_password_file: Option<PathBuf>,
    /// The node name (the swarm node's hostname, from the task's env); else the daemon's name.
    pub node_name: Option<String>,
    pub interval: Duration,
    pub mode: Mode,
    /// Where each pass's [`Status`] goes (a tmpfs in the task).
    pub status_file: PathBuf,
}

/// How soon a pass looks again at an agent whose health is still `starting`.
const STARTING_RECHECK: Duration = Duration::from_secs(1);

/// Where the task's health check finds the last pass.
pub const STATUS_FILE: &str = "/run/edgesense/launcher.json";

/// What one pass did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Replaced,
    Started,
    Unchanged,
    /// New credentials (a rotation) copied into the running agent, which reloaded them.
    Reloaded,
    Removed,
    /// A container with the agent's name that this launcher did not make: left alone.
    Foreign,
    Failed,
}

/// The last pass, as the health check and the logs see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub at_unix: u64,
    pub action: Action,
    /// The agent container's state and health (`running healthy`), or why there is none.
    pub agent: String,
    pub image: String,
    pub healthy: bool,
    pub message: String,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The image on this node, pulled if it is not here (a registry name every node can pull).
async fn ensure_image(docker: &Docker, image: &str) -> Result<String> {
    match node::pick_image(docker, image).await {
        Ok(i) => return Ok(i),
        Err(StackError::Input(_)) => {}
        Err(e) => return Err(e),
    }
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(step) = pull.next().await {
        step.context(|| format!("pull {image}"))?;
    }
    Ok(image.to_owned())
}

/// The launcher's state between passes.
pub struct Launcher {
    o: LauncherOptions,
    desired: NodeOptions,
    node: String,
    /// The node's devices, listed once (a probe container each pass would be wasteful; a
    /// replaced agent lists them again).
    devices: Option<Vec<Device>>,
}

fn read(p: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(p)
        .map_err(|e| StackError::Input(format!("{what} {}: {e}", p.display())))
}

impl Launcher {
    pub async fn new(docker: &Docker, o: LauncherOptions) -> Result<Launcher> {
        let config = o
            .config
            .as_deref()
            .filter(|p| p.exists())
            .map(|p| read(p, "agent config"))
            .transpose()?;
        let token = match (o.mode, o.token_file.as_deref()) {
            (Mode::Absent, _) => None,
            (Mode::Present, Some(p)) if p.exists() => Some(read(p, "token")?),
            (Mode::Present, p) => {
                return Err(StackError::Input(format!(
                    "no token at {}: the launcher never starts an agent without one (the stack's secret edgesense_token is mounted there by `stack up --agents`)",
                    p.map_or("(none given)".into(), |p| p.display().to_string())
                )))
            }
        };
        let tls = match (
            o.mode,
            &o.tls_cert,
            &o.tls_ca,
            &o.alertmanager_password_file,
        ) {
            (Mode::Present, Some(cert), Some(ca), Some(pw)) => Some(node::AgentTls {
                ca: read(ca, "fleet CA")?,
                cert: read(cert, "agent certificate")?,
                alertmanager_password: read(pw, "agent's Alertmanager password")?,
            }),
            _ => None,
        };
        let desired = NodeOptions {
            image: o.agent_image.clone(),
            name: DEFAULT_NAME.into(),
            node_name: o.node_name.clone().filter(|n| !n.is_empty()),
            config,
            token,
            tls,
            network: o.network.clone(),
            launcher: Some(o.stack.clone()),
            ..NodeOptions::new()
        };
        let node = node::node_name(docker, &desired).await?;
        let desired = NodeOptions {
            node_name: Some(node.clone()),
            ..desired
        };
        Ok(Launcher {
            o,
            desired,
            node,
            devices: None,
        })
    }

    /// One reconcile pass.
    pub async fn pass(&mut self, docker: &Docker) -> Status {
        let (action, message) = match self.o.mode {
            Mode::Present => match self.present(docker).await {
                Ok(a) => a,
                Err(e) => (Action::Failed, e.to_string()),
            },
            Mode::Absent => match self.absent(docker).await {
                Ok(a) => a,
                Err(e) => (Action::Failed, e.to_string()),
            },
        };
        let (agent, image, healthy) = self.observe(docker).await;
        Status {
            node: self.node.clone(),
            at_unix: now_unix(),
            action,
            agent,
            image,
            // Healthy means the desired state holds: a pass that could not apply it (an image
            // that cannot even list the devices, a foreign container) is not, even while the old
            // agent still serves, so a rolling update stops there.
            healthy: match self.o.mode {
                Mode::Present => healthy && action != Action::Foreign && action != Action::Failed,
                Mode::Absent => action != Action::Failed,
            },
            message,
        }
    }

    async fn present(&mut self, docker: &Docker) -> Result<(Action, String)> {
        let name = self.desired.name.clone();
        let existing = match docker.inspect_container(&name, None).await {
            Ok(c) => Some(c),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e).context(|| format!("inspect container {name}")),
        };
        let labels = existing
            .as_ref()
            .and_then(|c| c.config.as_ref())
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if existing.is_some()
            && (labels.get(LABEL_ROLE).map(String::as_str) != Some("agent")
                || labels.get(LABEL_LAUNCHER) != Some(&self.o.stack))
        {
            return Ok((
                Action::Foreign,
                format!("a container {name} not made by this launcher exists (`edgesense node run`?); remove it (`edgesense node stop`) to let the launcher run the agent here"),
            ));
        }
        node::check_network(docker, &self.desired.network).await?;
        let image = ensure_image(docker, &self.o.agent_image).await?;
        let o = NodeOptions {
            image,
            ..self.desired.clone()
        };
        if self.devices.is_none() {
            self.devices = Some(node::devices_for(docker, &o).await?);
        }
        let devices = self.devices.clone().unwrap_or_default();
        let body = node::container(&o, &self.node, &devices)?;
        let want = body
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SPEC).cloned())
            .unwrap_or_default();
        match existing {
            None => {
                node::create_and_start(docker, &o, body).await?;
                Ok((Action::Created, format!("image {}, spec {want}", o.image)))
            }
            Some(c) if labels.get(LABEL_SPEC) == Some(&want) => {
                let running = c.state.and_then(|s| s.running) == Some(true);
                if running && node::credentials_differ(docker, &name, &o).await? {
                    node::install_credentials(docker, &name, &o).await?;
                    Ok((Action::Reloaded, "token or certificates rotated".into()))
                } else if running {
                    Ok((Action::Unchanged, String::new()))
                } else {
                    docker
                        .start_container(&name, None)
                        .await
                        .context(|| format!("start container {name}"))?;
                    Ok((Action::Started, "it had stopped".into()))
                }
            }
            Some(_) => {
                let from = labels.get(LABEL_SPEC).cloned().unwrap_or_default();
                // The devices may have changed too: list them again for the new agent.
                self.devices = Some(node::devices_for(docker, &o).await?);
                let devices = self.devices.clone().unwrap_or_default();
                let body = node::container(&o, &self.node, &devices)?;
                node::remove(docker, &name).await?;
                node::create_and_start(docker, &o, body).await?;
                Ok((
                    Action::Replaced,
                    format!("spec {from} → {want}, image {}", o.image),
                ))
            }
        }
    }

    async fn absent(&mut self, docker: &Docker) -> Result<(Action, String)> {
        let name = &self.desired.name;
        match docker.inspect_container(name, None).await {
            Ok(c) => {
                let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
                if labels.get(LABEL_LAUNCHER) == Some(&self.o.stack)
                    && labels.get(LABEL_ROLE).map(String::as_str) == Some("agent")
                {
                    node::remove(docker, name).await?;
                    Ok((Action::Removed, format!("{name}: this node runs no agent")))
                } else {
                    Ok((Action::Unchanged, String::new()))
                }
            }
            Err(e) if is_not_found(&e) => Ok((Action::Unchanged, String::new())),
            Err(e) => Err(e).context(|| format!("inspect container {name}")),
        }
    }

    /// The agent container's state and health, image, and whether it is healthy.
    async fn observe(&self, docker: &Docker) -> (String, String, bool) {
        match docker.inspect_container(&self.desired.name, None).await {
            Ok(c) => {
                let st = c.state.unwrap_or_default();
                let health = st
                    .health
                    .and_then(|h| h.status)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "no health check".into());
                let running = st.running == Some(true);
                let image = c.config.and_then(|c| c.image).unwrap_or_default();
                (
                    format!(
                        "{} {health}",
                        if running { "running" } else { "not running" }
                    ),
                    image,
                    running && (health == "healthy" || health == "no health check"),
                )
            }
            Err(_) => ("no agent container".into(), String::new(), false),
        }
    }
}

/// Reconciles now and every `interval` until SIGTERM or SIGINT (then returns, leaving the
/// agent as it is). Logs what each pass changed.
pub async fn run(docker: &Docker, o: LauncherOptions) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| StackError::Io(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| StackError::Io(format!("cannot handle SIGINT: {e}")))?;
    let interval = o.interval;
    let status_file = o.status_file.clone();
    let mut l = Launcher::new(docker, o).await?;
    eprintln!(
        "launcher on {}: keeping the agent {} ({}) every {} s",
        l.node,
        match l.o.mode {
            Mode::Present => "running",
            Mode::Absent => "absent",
        },
        l.o.agent_image,
        interval.as_secs()
    );
    let mut last: Option<Status> = None;
    loop {
        let s = l.pass(docker).await;
        if let Some(line) = log_line(&s) {
            eprintln!("{line}");
        } else if last.as_ref().is_some_and(|p| p.agent != s.agent) {
            eprintln!("launcher on {}: agent now {}", s.node, s.agent);
        }
        if let Err(e) = write_status(&status_file, &s) {
            eprintln!(
                "launcher on {}: cannot write {}: {e}",
                s.node,
                status_file.display()
            );
        }
        // A new agent's health is `starting` until Docker's first check of it (the image's
        // 10 s interval; Docker 20.10 has no start interval). Looking again every second
        // then lets the task turn healthy, and a roll move on, soon after the agent does
        // rather than up to a whole interval later.
        let wait = if s.agent.ends_with(" starting") {
            STARTING_RECHECK.min(interval)
        } else {
            interval
        };
        last = Some(s);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!("launcher on {}: stopping; the agent keeps running", l.node);
    Ok(())
}

/// Writes `s` to `path` whole (a new file renamed over the old one).
pub fn write_status(path: &Path, s: &Status) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(s).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// The health check: the last pass is recent (three intervals) and found the agent healthy.
pub fn probe(path: &Path, interval: Duration) -> std::result::Result<Status, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("no pass yet ({}: {e})", path.display()))?;
    let s: Status = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let age = now_unix().saturating_sub(s.at_unix);
    if age > 3 * interval.as_secs().max(1) {
        return Err(format!("last pass {age} s ago"));
    }
    if !s.healthy {
        return Err(format!("{}: {} {}", s.node, s.agent, s.message));
    }
    Ok(s)
}

/// One line of the launcher's log.
pub fn log_line(s: &Status) -> Option<String> {
    let what = match s.action {
        Action::Unchanged => return None,
        Action::Created => "created the agent",
        Action::Replaced => "replaced the agent",
        Action::Started => "started the agent",
        Action::Reloaded => "gave the agent new credentials (SIGHUP, no restart)",
        Action::Removed => "removed the agent",
        Action::Foreign => "left a container alone",
        Action::Failed => "failed",
    };
    Some(format!(
        "launcher on {}: {what}{}{} (agent: {})",
        s.node,
        if s.message.is_empty() { "" } else { ": " },
        s.message,
        s.agent
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(healthy: bool, at_unix: u64) -> Status {
        Status {
            node: "pi-a".into(),
            at_unix,
            action: Action::Unchanged,
            agent: "running healthy".into(),
            image: "edgesense/agent:local".into(),
            healthy,
            message: String::new(),
        }
    }

    #[test]
    fn health_is_a_recent_pass_with_a_healthy_agent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/launcher.json");
        let i = Duration::from_secs(10);
        assert!(probe(&p, i).unwrap_err().contains("no pass yet"));
        write_status(&p, &status(true, now_unix())).unwrap();
        assert_eq!(probe(&p, i).unwrap().node, "pi-a");
        write_status(&p, &status(false, now_unix())).unwrap();
        assert!(probe(&p, i).unwrap_err().contains("running healthy"));
        write_status(&p, &status(true, now_unix() - 60)).unwrap();
        assert!(probe(&p, i).unwrap_err().contains("last pass"));
    }

    #[test]
    fn quiet_when_nothing_changes() {
        assert_eq!(log_line(&status(true, 0)), None);
        let s = Status {
            action: Action::Replaced,
            message: "spec a → b, image x".into(),
            ..status(true, 0)
        };
        assert_eq!(
            log_line(&s).unwrap(),
            "launcher on pi-a: replaced the agent: spec a → b, image x (agent: running healthy)"
        );
    }
}
