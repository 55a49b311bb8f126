//! `edgesense node run|stop`: the agent container on a node, started like `docker run` (it
//! needs device access that swarm services cannot be given) and joined to the overlay network
//! with the alias every agent shares.
//!
//! Everything about the node comes from the node's own Docker daemon, so the command works the
//! same run on the node and from another machine with `--docker-host`: the node name is the
//! daemon's host name, the devices are those the agent image lists on that node, and the config
//! and token are copied into the container rather than bind-mounted from the CLI's machine.

mod container;
mod script;
mod start_again;

use bollard::{
    query_parameters::{
        CreateContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
        UploadToContainerOptions, WaitContainerOptions,
    },
    Docker,
};
use futures_util::StreamExt;

pub use container::{
    container, files_tar, parse_devices, probe, Device, CA_IN, CERT_IN, CONFIG_IN, PASSWORD_IN,
    TOKEN_IN,
};
pub use script::{docker_args, first_boot_lines, DockerArgs};
pub use start_again::{
    check_timer_instance, install_start_again, start_again_install_script, start_again_instance,
    START_AGAIN_PATH, START_AGAIN_SH, START_AGAIN_UNIT,
};

use crate::{
    error::{is_not_found, Context, Result, StackError},
    plan::DEFAULT_NETWORK,
};

/// The alias every agent has on the network: Prometheus discovers agents by its A records,
/// Alertmanager posts to it, agents relay to it.
pub const AGENT_ALIAS: &str = "edgesense-agent";
pub const DEFAULT_IMAGE: &str = "edgesense/agent:local";
pub const DEFAULT_NAME: &str = "edgesense-agent";
/// `agent` on every agent container (what `node stop` and the launcher may touch).
pub const LABEL_ROLE: &str = "com.edgesense.role";
/// The node name the agent reports.
pub const LABEL_NODE: &str = "com.edgesense.node";
/// The overlay network the agent belongs on (start-again.sh attaches it again after the node
/// left and rejoined the swarm).
pub const LABEL_NETWORK: &str = "com.edgesense.network";
/// On agents a launcher made: its stack's name (the launcher touches only those).
pub const LABEL_LAUNCHER: &str = "com.edgesense.launcher";
/// A hash of the whole container request and the files copied in.
pub const LABEL_SPEC: &str = "com.edgesense.spec-hash";

#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub image: String,
    pub name: String,
    /// The agent's node name (default: `--name` when given, else the Docker host's name).
    pub node_name: Option<String>,
    /// The agent config (TOML text), copied into the container.
    pub config: Option<String>,
    /// The webhook token (the file's text), copied into the container.
    pub token: Option<String>,
    /// The fleet CA, the agent's certificate and its Alertmanager password: HTTPS everywhere.
    pub tls: Option<AgentTls>,
    pub simulate: bool,
    pub privileged: bool,
    pub network: String,
    /// Publish the agent's port on the host: `127.0.0.1:9842`, `9842`.
    pub publish: Option<String>,
    /// Made by the launcher of this stack (a label on the container).
    pub launcher: Option<String>,
    /// How often dockerd runs the image's health check (default: the image's 10 s). Each
    /// check is a `docker exec`: dockerd, containerd and runc start a process in the container.
    pub health_interval: Option<std::time::Duration>,
}

/// What an agent needs for TLS in the stack (from the stack's agent bundle): the same the card
/// of a flashed node carries.
pub use edgesense_provision::setup::AgentTls;

impl NodeOptions {
    /// The files copied into the container that are credentials: replaced in a running agent
    /// and reloaded with SIGHUP ([`install_credentials`]) rather than a new container, so a
    /// rotation keeps its LEDs as they are.
    pub const CREDENTIALS: [&'static str; 4] =
        ["token", "ca.crt", "agent.pem", "alertmanager.password"];

    /// The files copied into the container (name under [`HOST_DIR`] and in the container,
    /// content), in a fixed order.
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        let mut v = Vec::new();
        if let Some(c) = &self.config {
            v.push(("agent.toml", c.as_str()));
        }
        if let Some(t) = &self.token {
            v.push(("token", t.as_str()));
        }
        if let Some(t) = &self.tls {
            v.push(("ca.crt", t.ca.as_str()));
            v.push(("agent.pem", t.cert.as_str()));
            v.push(("alertmanager.password", t.alertmanager_password.as_str()));
        }
        v
    }

    pub fn new() -> NodeOptions {
        NodeOptions {
            image: DEFAULT_IMAGE.into(),
            name: DEFAULT_NAME.into(),
            network: DEFAULT_NETWORK.into(),
            ..NodeOptions::default()
        }
    }
}

/// What [`run`] did.
#[derive(Debug)]
pub struct Started {
    pub node: String,
    pub replaced: bool,
    pub image: String,
    /// The device nodes passed (names under `/dev`).
    pub devices: Vec<String>,
}

/// Where first boot installs the agent's config and token (`edgesense flash`).
pub const HOST_DIR: &str = "/etc/edgesense";
pub const HOST_CONFIG: &str = "/etc/edgesense/agent.toml";
pub const HOST_TOKEN: &str = "/etc/edgesense/token";

/// Checks that the agent can join `network` on this node. A swarm-scoped network shows up on a
/// worker only once a container there is attached to it, so a worker that does not list it yet
/// is fine (Docker asks a manager when the container starts); a manager that does not list it
/// has no stack yet.
pub async fn check_network(docker: &Docker, network: &str) -> Result<()> {
    match docker.inspect_network(network, None).await {
        Ok(n) => {
            let driver = n.driver.unwrap_or_default();
            if driver != "overlay" || n.attachable != Some(true) {
                return Err(StackError::BadNetwork {
                    name: network.into(),
                    what: format!(
                        "a \"{driver}\" network{}",
                        if n.attachable == Some(true) {
                            ""
                        } else {
                            " that is not attachable"
                        }
                    ),
                });
            }
            Ok(())
        }
        Err(e) if is_not_found(&e) => {
            let info = docker.info().await.context(|| "docker info".into())?;
            let swarm = info.swarm.unwrap_or_default();
            let state = swarm
                .local_node_state
                .map(|s| s.to_string())
                .unwrap_or_default();
            if state != "active" {
                return Err(StackError::Input(format!(
                    "this node is not in a swarm (state \"{state}\"), so network \"{network}\" cannot be joined.\n  Join it: docker swarm join --token <token> <manager>:2377 (`docker swarm join-token worker` on the manager prints it)"
                )));
            }
            if swarm.control_available == Some(true) {
                return Err(StackError::Input(format!(
                    "network \"{network}\" does not exist: run `edgesense stack up` on a manager first"
                )));
            }
            Ok(())
        }
        Err(e) => Err(e).context(|| format!("inspect network {network}")),
    }
}

/// Docker's answer when a worker asks the managers for a network that does not exist.
fn network_missing(e: &bollard::errors::Error, network: &str) -> bool {
    let msg = e.to_string();
    msg.contains(network) && (msg.contains("not found") || msg.contains("No such network"))
}

/// The devices of the node, listed by the agent image itself on that node (a short-lived
/// container with the node's `/dev` read-only): the CLI may run elsewhere, and the agent is what
/// knows which device nodes it opens.
pub async fn node_devices(docker: &Docker, image: &str) -> Result<Vec<Device>> {
    let name = format!(
        "edgesense-device-probe-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            probe(image),
        )
        .await
        .context(|| format!("create the device probe from {image}"))?;
    let listed = async {
        docker
            .start_container(&name, None)
            .await
            .context(|| "start the device probe".into())?;
        let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
        let mut code = 0;
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) => code = w.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(e).context(|| "wait for the device probe".into()),
            }
        }
        let mut logs = docker.logs(
            &name,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(chunk) = logs.next().await {
            match chunk.context(|| "device probe output".into())? {
                bollard::container::LogOutput::StdOut { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                other => err.push_str(&other.to_string()),
            }
        }
        if code != 0 {
            return Err(StackError::Io(format!(
                "the device probe ({image} --list-devices) exited with {code}: {}\n  is {image} an edgesense agent image of this version?",
                err.trim()
            )));
        }
        Ok(parse_devices(&out))
    }
    .await;
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    listed
}

/// The node name for `o` on the daemon `docker` talks to.
pub async fn node_name(docker: &Docker, o: &NodeOptions) -> Result<String> {
    match &o.node_name {
        Some(n) => Ok(n.clone()),
        None if o.name != DEFAULT_NAME => Ok(o.name.clone()),
        None => crate::docker::daemon_hostname(docker).await,
    }
}

/// The agent's devices on this node for `o` (none for a simulated or privileged agent).
pub async fn devices_for(docker: &Docker, o: &NodeOptions) -> Result<Vec<Device>> {
    if o.simulate || o.privileged {
        Ok(Vec::new())
    } else {
        node_devices(docker, &o.image).await
    }
}

fn missing_network(e: bollard::errors::Error, network: &str, what: String) -> StackError {
    if network_missing(&e, network) {
        StackError::Input(format!(
            "network \"{network}\" does not exist in this swarm: run `edgesense stack up` on a manager first"
        ))
    } else if e.to_string().contains("attaching to network failed") {
        // The swarm's allocator found no address for the container: what a full subnet looks
        // like (Docker's default /24 holds about 250 across the fleet).
        StackError::Docker {
            context: format!(
                "{what} (is \"{network}\" out of addresses? `docker network inspect {network}` on a manager shows its subnet; `edgesense stack up` says how many it holds)"
            ),
            source: e,
        }
    } else {
        StackError::Docker {
            context: what,
            source: e,
        }
    }
}

/// Creates container `o.name` from `body`, copies `o`'s files in and starts it; whatever was
/// made is removed again on failure.
pub async fn create_and_start(
    docker: &Docker,
    o: &NodeOptions,
    body: bollard::models::ContainerCreateBody,
) -> Result<()> {
    let files = files_tar(o)?;
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(o.name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| missing_network(e, &o.network, format!("create container {}", o.name)))?;
    let started = async {
        if let Some(tar) = files {
            docker
                .upload_to_container(
                    &o.name,
                    Some(UploadToContainerOptions {
                        path: container::FILES_DIR.into(),
                        ..Default::default()
                    }),
                    bollard::body_full(tar.into()),
                )
                .await
                .context(|| format!("copy the config and token into {}", o.name))?;
        }
        docker
            .start_container(&o.name, None)
            .await
            .map_err(|e| missing_network(e, &o.network, format!("start container {}", o.name)))
    }
    .await;
    if let Err(e) = started {
        let _ = remove(docker, &o.name).await;
        return Err(e);
    }
    Ok(())
}

/// Whether the credential files in the running container `name` differ from `o`'s (read back
/// from its files volume).
pub async fn credentials_differ(docker: &Docker, name: &str, o: &NodeOptions) -> Result<bool> {
    use bollard::query_parameters::DownloadFromContainerOptions;
    let mut stream = docker.download_from_container(
        name,
        Some(DownloadFromContainerOptions {
            path: container::FILES_DIR.into(),
        }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.context(|| format!("read the files of {name}"))?);
    }
    let mut have: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut archive = tar::Archive::new(&tar[..]);
    let entries = archive
        .entries()
        .map_err(|e| StackError::Io(format!("the files of {name}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| StackError::Io(format!("the files of {name}: {e}")))?;
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = path.rsplit('/').next().unwrap_or("").to_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)
            .map_err(|e| StackError::Io(format!("the files of {name}: {e}")))?;
        have.insert(file, data);
    }
    let want = o.files();
    Ok(NodeOptions::CREDENTIALS.iter().any(|c| {
        let w = want.iter().find(|(n, _)| n == c).map(|(_, d)| d.as_bytes());
        w != have.get(*c).map(Vec::as_slice)
    }))
}

/// Copies `o`'s files into the running container `name` and sends it SIGHUP: the agent reads
/// the credential files again and keeps everything else (LEDs, alerts, connections).
pub async fn install_credentials(docker: &Docker, name: &str, o: &NodeOptions) -> Result<()> {
    use bollard::query_parameters::KillContainerOptions;
    if let Some(tar) = files_tar(o)? {
        docker
            .upload_to_container(
                name,
                Some(UploadToContainerOptions {
                    path: container::FILES_DIR.into(),
                    ..Default::default()
                }),
                bollard::body_full(tar.into()),
            )
            .await
            .context(|| format!("copy the credentials into {name}"))?;
    }
    docker
        .kill_container(
            name,
            Some(KillContainerOptions {
                signal: "HUP".into(),
            }),
        )
        .await
        .context(|| format!("SIGHUP to {name}"))
}

/// Starts (or replaces) the agent container.
pub async fn run(docker: &Docker, o: &NodeOptions) -> Result<Started> {
    check_network(docker, &o.network).await?;
    let image = pick_image(docker, &o.image).await?;
    let o = &NodeOptions { image, ..o.clone() };
    let node = node_name(docker, o).await?;
    let devices = devices_for(docker, o).await?;
    let body = container(o, &node, &devices)?;
    let replaced = remove(docker, &o.name).await?;
    create_and_start(docker, o, body).await?;
    Ok(Started {
        node,
        replaced,
        image: o.image.clone(),
        devices: devices.into_iter().map(|d| d.name).collect(),
    })
}

/// The image suffix for a daemon's `Architecture` (`uname -m`), as
/// stack/images/build-multiarch.sh tags per-arch images.
pub fn arch_suffix(machine: &str) -> Option<&'static str> {
    match machine {
        "x86_64" | "amd64" => Some("amd64"),
        "aarch64" | "arm64" => Some("arm64"),
        "armv7l" | "armv8l" => Some("armv7"),
        "armv6l" => Some("armv6"),
        _ => None,
    }
}

/// `image` if the node has it (a plain or multi-platform image), else the node's per-arch tag
/// `image-<arch>` (stack/images/build-multiarch.sh without a registry makes those).
pub async fn pick_image(docker: &Docker, image: &str) -> Result<String> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(image.to_owned()),
        Err(e) if !is_not_found(&e) => return Err(e).context(|| format!("inspect image {image}")),
        Err(_) => {}
    }
    let info = docker.info().await.context(|| "docker info".into())?;
    let machine = info.architecture.unwrap_or_default();
    if let Some(arch) = arch_suffix(&machine) {
        let per_arch = format!("{image}-{arch}");
        if docker.inspect_image(&per_arch).await.is_ok() {
            return Ok(per_arch);
        }
    }
    let host = info.name.unwrap_or_default();
    Err(StackError::Input(format!(
        "image {image} (or {image}-<arch> for this {machine} node) is not on {host}: build it with stack/images/build.sh or build-multiarch.sh, or `docker pull` it there"
    )))
}

/// Stops and removes container `name` and its volume of copied files; false if there was none.
pub async fn remove(docker: &Docker, name: &str) -> Result<bool> {
    match docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(5),
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(false),
        // Already stopped (304) or stopping: removal below settles it.
        Err(_) => {}
    }
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).context(|| format!("remove container {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_architectures_map_to_image_suffixes() {
        assert_eq!(arch_suffix("aarch64"), Some("arm64"));
        assert_eq!(arch_suffix("armv7l"), Some("armv7"));
        assert_eq!(arch_suffix("armv6l"), Some("armv6"));
        assert_eq!(arch_suffix("x86_64"), Some("amd64"));
        assert_eq!(arch_suffix("riscv64"), None);
    }
}
