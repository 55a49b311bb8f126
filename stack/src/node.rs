//! `edgesense node run|stop`: the agent container on this node, started like `docker run` (it
//! needs device access that swarm services cannot be given) and joined to the overlay network
//! with the alias every agent shares.
//!
//! Least privilege by default: only the device nodes that exist and the agent uses
//! (`/dev/gpiomem` or `/dev/gpiochip*`, `/dev/i2c-*`), `/sys` read-only, every capability
//! dropped, `no-new-privileges`, a read-only root file system, user `nobody` with the device
//! files' groups added. `--privileged` only on request.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use bollard::{
    models::{
        ContainerCreateBody, DeviceMapping, EndpointSettings, HostConfig, NetworkingConfig,
        PortBinding, RestartPolicy, RestartPolicyNameEnum,
    },
    query_parameters::{CreateContainerOptions, RemoveContainerOptions, StopContainerOptions},
    Docker,
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
/// Where the config and token are mounted in the container.
const CONFIG_IN: &str = "/etc/edgesense/agent.toml";
const TOKEN_IN: &str = "/run/secrets/edgesense_token";
/// `nobody`: the agent needs no root, only the device groups.
const USER: &str = "65534:65534";

#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub image: String,
    pub name: String,
    /// The agent's node name (default: `--name` when given, else the Docker host's name).
    pub node_name: Option<String>,
    pub config: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub simulate: bool,
    pub privileged: bool,
    pub network: String,
    /// Publish the agent's port on the host: `127.0.0.1:9842`, `9842`.
    pub publish: Option<String>,
    /// Where device nodes are looked up (`/dev`; tests use a prepared directory).
    pub dev_root: PathBuf,
}

impl NodeOptions {
    pub fn new() -> NodeOptions {
        NodeOptions {
            image: DEFAULT_IMAGE.into(),
            name: DEFAULT_NAME.into(),
            network: DEFAULT_NETWORK.into(),
            dev_root: PathBuf::from("/dev"),
            ..NodeOptions::default()
        }
    }
}

/// The devices the agent can use on this machine: (path, group id).
pub fn devices(dev_root: &Path) -> Vec<(PathBuf, u32)> {
    let Ok(entries) = std::fs::read_dir(dev_root) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, u32)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == "gpiomem" || n.starts_with("gpiochip") || n.starts_with("i2c-")
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.gid())))
        .collect();
    found.sort();
    found
}

fn absolute(p: &Path, what: &str) -> Result<String> {
    let abs = std::fs::canonicalize(p)
        .map_err(|e| StackError::Input(format!("{what} {}: {e}", p.display())))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| StackError::Input(format!("{what} {}: not UTF-8", abs.display())))
}

/// Parses `--publish`: `PORT` or `HOST:PORT`.
fn publish(spec: &str) -> Result<PortBinding> {
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p),
        None => (String::new(), spec),
    };
    port.parse::<u16>().map_err(|_| {
        StackError::Input(format!(
            "--publish {spec}: write PORT or HOST:PORT, e.g. 127.0.0.1:9842"
        ))
    })?;
    Ok(PortBinding {
        host_ip: (!host.is_empty()).then_some(host),
        host_port: Some(port.to_owned()),
    })
}

/// The container request for `o` with node name `node`.
pub fn container(o: &NodeOptions, node: &str) -> Result<ContainerCreateBody> {
    let mut cmd: Vec<String> = vec![
        "--listen".into(),
        "0.0.0.0:9842".into(),
        "--node".into(),
        node.into(),
        "--relay-dns".into(),
        format!("{AGENT_ALIAS}:9842"),
    ];
    let mut binds = Vec::new();
    if let Some(c) = &o.config {
        binds.push(format!("{}:{CONFIG_IN}:ro", absolute(c, "--config")?));
        cmd.extend(["--config".into(), CONFIG_IN.into()]);
    }
    if let Some(t) = &o.token_file {
        binds.push(format!("{}:{TOKEN_IN}:ro", absolute(t, "--token-file")?));
        cmd.extend(["--token-file".into(), TOKEN_IN.into()]);
    }
    if o.simulate {
        cmd.push("--simulate".into());
    }
    let (devices, groups) = if o.simulate || o.privileged {
        (Vec::new(), Vec::new())
    } else {
        let found = devices(&o.dev_root);
        let mut gids: Vec<String> = found.iter().map(|(_, g)| g.to_string()).collect();
        gids.sort();
        gids.dedup();
        let maps = found
            .iter()
            .map(|(p, _)| DeviceMapping {
                path_on_host: Some(p.display().to_string()),
                path_in_container: Some(p.display().to_string()),
                cgroup_permissions: Some("rw".into()),
            })
            .collect();
        (maps, gids)
    };
    if !o.simulate {
        binds.push("/sys:/sys:ro".into());
    }
    let mut port_bindings = HashMap::new();
    if let Some(p) = &o.publish {
        port_bindings.insert("9842/tcp".to_owned(), Some(vec![publish(p)?]));
    }
    let host = HostConfig {
        binds: Some(binds),
        devices: Some(devices),
        group_add: Some(groups),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        privileged: Some(o.privileged),
        cap_drop: (!o.privileged).then(|| vec!["ALL".into()]),
        security_opt: (!o.privileged).then(|| vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(true),
        port_bindings: Some(port_bindings),
        init: Some(false),
        ..Default::default()
    };
    let mut endpoints = HashMap::new();
    endpoints.insert(
        o.network.clone(),
        EndpointSettings {
            aliases: Some(if o.name == AGENT_ALIAS {
                vec![AGENT_ALIAS.into()]
            } else {
                vec![AGENT_ALIAS.into(), o.name.clone()]
            }),
            ..Default::default()
        },
    );
    Ok(ContainerCreateBody {
        image: Some(o.image.clone()),
        hostname: Some(
            node.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect(),
        ),
        user: (!o.privileged).then(|| USER.to_owned()),
        cmd: Some(cmd),
        exposed_ports: Some(vec!["9842/tcp".into()]),
        labels: Some(
            [
                ("com.edgesense.role".to_owned(), "agent".to_owned()),
                ("com.edgesense.node".to_owned(), node.to_owned()),
            ]
            .into(),
        ),
        stop_timeout: Some(5),
        host_config: Some(host),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    })
}

/// Where `node run` keeps a generated token.
pub const STATE_DIR: &str = "/var/lib/edgesense";

/// The token file for agent `name` under `dir`, created (0600, 32 random hex digits) if it does
/// not exist; returns its path and, when created now, the token to show once.
pub fn default_token(dir: &Path, name: &str) -> Result<(PathBuf, Option<String>)> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    let path = dir.join(format!("{name}.token"));
    if path.exists() {
        return Ok((path, None));
    }
    let err = |e: std::io::Error| StackError::Input(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(err)?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()).map_err(err)?;
    Ok((path, Some(token)))
}

/// Where first boot installs the agent's config and token (`edgesense flash`).
pub const HOST_CONFIG: &str = "/etc/edgesense/agent.toml";
pub const HOST_TOKEN: &str = "/etc/edgesense/token";

fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Bash lines that start the agent on a freshly flashed Pi the way [`run`] does, for
/// `edgesense flash`: node name = the Pi's hostname, config and token from [`HOST_CONFIG`] /
/// [`HOST_TOKEN`] when present, and the devices that exist at boot (with their groups).
pub fn docker_run_script(o: &NodeOptions) -> String {
    let mut s = String::from("args=(\n");
    let fixed: Vec<String> = vec![
        "--detach".into(),
        "--name".into(),
        o.name.clone(),
        "--hostname".into(),
        "\"$(hostname)\"".into(),
        "--network".into(),
        o.network.clone(),
        "--network-alias".into(),
        AGENT_ALIAS.into(),
        "--restart".into(),
        "unless-stopped".into(),
        "--read-only".into(),
        "--label".into(),
        "com.edgesense.role=agent".into(),
        "--stop-timeout".into(),
        "5".into(),
    ];
    for a in fixed {
        let a = if a.starts_with('"') { a } else { sh(&a) };
        s.push_str(&format!("    {a}\n"));
    }
    s.push_str(")\n");
    if o.name != AGENT_ALIAS {
        s.push_str(&format!("args+=(--network-alias {})\n", sh(&o.name)));
    }
    if o.privileged {
        s.push_str("args+=(--privileged)\n");
    } else {
        s.push_str(&format!(
            "args+=(--user {USER} --cap-drop ALL --security-opt no-new-privileges:true)\n"
        ));
        if !o.simulate {
            s.push_str(
                "args+=(--volume /sys:/sys:ro)\nfor d in /dev/gpiomem /dev/gpiochip* /dev/i2c-*; do\n    [ -e \"$d\" ] || continue\n    args+=(--device \"$d:$d:rw\" --group-add \"$(stat -c %g \"$d\")\")\ndone\n",
            );
        }
    }
    if let Some(p) = &o.publish {
        s.push_str(&format!("args+=(--publish {})\n", sh(&format!("{p}:9842"))));
    }
    s.push_str(&format!(
        "cmd=(--listen 0.0.0.0:9842 --node \"$(hostname)\" --relay-dns {AGENT_ALIAS}:9842)\n"
    ));
    s.push_str(&format!(
        "[ -f {HOST_CONFIG} ] && {{ args+=(--volume {HOST_CONFIG}:{CONFIG_IN}:ro); cmd+=(--config {CONFIG_IN}); }}\n"
    ));
    s.push_str(&format!(
        "[ -f {HOST_TOKEN} ] && {{ args+=(--volume {HOST_TOKEN}:{TOKEN_IN}:ro); cmd+=(--token-file {TOKEN_IN}); }}\n"
    ));
    if o.simulate {
        s.push_str("cmd+=(--simulate)\n");
    }
    s.push_str(&format!(
        "docker rm -f {name} >/dev/null 2>&1\nfor attempt in 1 2 3 4 5 6; do\n    docker run \"${{args[@]}}\" {image} \"${{cmd[@]}}\" && break\n    sleep 10\ndone\n",
        name = sh(&o.name),
        image = sh(&o.image)
    ));
    s
}

/// The script that starts agent containers dockerd failed to start after its own restart
/// (moby/moby#32607: a container on an attachable overlay network can lose the race with the
/// swarm's cleanup of its old attachment, and its restart policy never retries).
pub const START_AGAIN_SH: &str = include_str!("../assets/node/start-again.sh");
/// The systemd template unit (`@NAME` = container name) that runs it whenever docker starts.
pub const START_AGAIN_UNIT: &str =
    include_str!("../assets/node/edgesense-agent-start-again@.service");
/// Where the unit expects the script (its `ExecStart`).
pub const START_AGAIN_PATH: &str = "/usr/local/lib/edgesense/start-again.sh";
const START_AGAIN_UNIT_PATH: &str = "/etc/systemd/system/edgesense-agent-start-again@.service";

/// The unit instance for container `name`.
pub fn start_again_instance(name: &str) -> String {
    format!("edgesense-agent-start-again@{name}.service")
}

/// Shell lines (for a first-boot script running as root) that install the script and the unit
/// and enable it for container `name`.
pub fn start_again_install_script(name: &str) -> String {
    format!(
        "mkdir -p {dir}\ncat >{START_AGAIN_PATH} <<'EDGESENSE_EOF'\n{START_AGAIN_SH}EDGESENSE_EOF\nchmod 755 {START_AGAIN_PATH}\ncat >{START_AGAIN_UNIT_PATH} <<'EDGESENSE_EOF'\n{START_AGAIN_UNIT}EDGESENSE_EOF\nsystemctl daemon-reload\nsystemctl enable --now {unit}\n",
        dir = START_AGAIN_PATH.rsplit_once('/').map_or("/", |(d, _)| d),
        unit = sh(&start_again_instance(name)),
    )
}

/// Installs the script and the unit on this host for container `name` with the same lines as the
/// first boot ([`start_again_install_script`]), run by bash as root. Does nothing (`Ok(false)`)
/// where systemd does not run (no `/run/systemd/system`, sd_booted(3)).
pub fn install_start_again(name: &str) -> Result<bool> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Ok(false);
    }
    let out = std::process::Command::new("bash")
        .args(["-e", "-c", &start_again_install_script(name)])
        .output()
        .map_err(|e| StackError::Io(format!("bash: {e}")))?;
    if !out.status.success() {
        return Err(StackError::Io(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(true)
}

/// Starts (or replaces) the agent container; returns the node name, whether an old container
/// was replaced, and the image used.
pub async fn run(docker: &Docker, o: &NodeOptions) -> Result<(String, bool, String)> {
    match docker.inspect_network(&o.network, None).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            return Err(StackError::Input(format!(
                "network \"{}\" does not exist here yet: run `edgesense stack up` on a manager first (on a worker it appears once the node is in the swarm)",
                o.network
            )))
        }
        Err(e) => return Err(e).context(|| format!("inspect network {}", o.network)),
    }
    let image = pick_image(docker, &o.image).await?;
    let o = &NodeOptions { image, ..o.clone() };
    let node = match &o.node_name {
        Some(n) => n.clone(),
        None if o.name != DEFAULT_NAME => o.name.clone(),
        None => crate::docker::daemon_hostname(docker).await?,
    };
    let body = container(o, &node)?;
    let replaced = remove(docker, &o.name).await?;
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(o.name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .context(|| format!("create container {}", o.name))?;
    docker
        .start_container(&o.name, None)
        .await
        .context(|| format!("start container {}", o.name))?;
    Ok((node, replaced, o.image.clone()))
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
async fn pick_image(docker: &Docker, image: &str) -> Result<String> {
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
    Err(StackError::Input(format!(
        "image {image} (or {image}-<arch> for this {machine} node) is not here: build it with stack/images/build.sh or build-multiarch.sh, or `docker pull` it"
    )))
}

/// Stops and removes container `name`; false if there was none.
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
    fn least_privilege_by_default() {
        let dev = tempfile::tempdir().unwrap();
        for d in ["gpiomem", "i2c-1", "tty0", "gpiochip0"] {
            std::fs::write(dev.path().join(d), "").unwrap();
        }
        let cfg = dev.path().join("agent.toml");
        std::fs::write(&cfg, "").unwrap();
        let o = NodeOptions {
            config: Some(cfg),
            dev_root: dev.path().to_owned(),
            ..NodeOptions::new()
        };
        let c = container(&o, "pi-kitchen").unwrap();
        let h = c.host_config.as_ref().unwrap();
        let devs: Vec<String> = h
            .devices
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| d.path_in_container.clone().unwrap())
            .collect();
        assert_eq!(
            devs.len(),
            3,
            "gpiomem, gpiochip0, i2c-1 but not tty0: {devs:?}"
        );
        assert!(devs.iter().all(|d| !d.ends_with("tty0")));
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert!(h
            .binds
            .as_ref()
            .unwrap()
            .contains(&"/sys:/sys:ro".to_owned()));
        assert!(h
            .binds
            .as_ref()
            .unwrap()
            .iter()
            .any(|b| b.ends_with(":/etc/edgesense/agent.toml:ro")));
        assert_eq!(
            h.restart_policy.as_ref().unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert!(
            !h.group_add.as_ref().unwrap().is_empty(),
            "device groups added"
        );
        let net = &c
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap()["core-infra"];
        assert!(net
            .aliases
            .as_ref()
            .unwrap()
            .contains(&AGENT_ALIAS.to_owned()));
        let cmd = c.cmd.unwrap().join(" ");
        assert!(cmd.contains("--node pi-kitchen"), "{cmd}");
        assert!(cmd.contains("--relay-dns edgesense-agent:9842"), "{cmd}");
        assert!(cmd.contains("--config /etc/edgesense/agent.toml"), "{cmd}");
        assert!(!cmd.contains("--simulate"));
    }

    #[test]
    fn first_boot_script_starts_the_same_container_as_node_run() {
        let o = NodeOptions {
            image: "registry:5000/edgesense/agent:0.1.0".into(),
            ..NodeOptions::new()
        };
        let script = docker_run_script(&o);
        let c = container(&o, "n").unwrap();
        let h = c.host_config.unwrap();
        // Every least-privilege setting of the API request appears as its CLI flag.
        assert_eq!(
            h.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        for flag in [
            "'--restart'\n    'unless-stopped'",
            "'--read-only'",
            "--cap-drop ALL",
            "--security-opt no-new-privileges:true",
            "--user 65534:65534",
            "--volume /sys:/sys:ro",
            "'--network'\n    'core-infra'",
            "'--network-alias'\n    'edgesense-agent'",
            "--device \"$d:$d:rw\" --group-add",
            "--relay-dns edgesense-agent:9842",
            "--config /etc/edgesense/agent.toml",
            "--token-file /run/secrets/edgesense_token",
            "'registry:5000/edgesense/agent:0.1.0'",
        ] {
            assert!(script.contains(flag), "missing {flag:?} in:\n{script}");
        }
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(c.user.as_deref(), Some(USER));
        // bash accepts it.
        let check = std::process::Command::new("bash")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(check.success(), "{script}");
    }

    #[test]
    fn start_again_unit_runs_the_installed_script_whenever_docker_starts() {
        let unit = START_AGAIN_UNIT;
        assert!(
            unit.contains(&format!("ExecStart={START_AGAIN_PATH} %i\n")),
            "{unit}"
        );
        for line in [
            "After=docker.service",
            "PartOf=docker.service",
            "WantedBy=docker.service",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line}: {unit}");
        }
        assert_eq!(
            start_again_instance("agent-a"),
            "edgesense-agent-start-again@agent-a.service"
        );
    }

    #[test]
    fn first_boot_lines_write_the_shipped_files_and_enable_the_unit() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display().to_string();
        // The same lines with every absolute path moved under the temp root, and systemctl
        // recorded instead of run.
        let lines = start_again_install_script("edgesense-agent")
            .replace(" /usr/local/lib/", &format!(" {r}/usr/local/lib/"))
            .replace(">/usr/local/lib/", &format!(">{r}/usr/local/lib/"))
            .replace(">/etc/systemd/", &format!(">{r}/etc/systemd/"));
        std::fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
        let script = format!("systemctl() {{ echo \"systemctl $*\" >>{r}/log; }}\n{lines}");
        let run = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        assert!(run.status.success(), "{script}\n{run:?}");
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(
            read("usr/local/lib/edgesense/start-again.sh"),
            START_AGAIN_SH
        );
        let installed = root.path().join("usr/local/lib/edgesense/start-again.sh");
        let mode = std::fs::metadata(installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            read("etc/systemd/system/edgesense-agent-start-again@.service"),
            START_AGAIN_UNIT
        );
        assert_eq!(
            read("log"),
            "systemctl daemon-reload\nsystemctl enable --now edgesense-agent-start-again@edgesense-agent.service\n"
        );
    }

    #[test]
    fn a_token_is_generated_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, first) = default_token(dir.path(), "agent-a").unwrap();
        let first = first.expect("created now");
        assert_eq!(first.len(), 32);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), first);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, second) = default_token(dir.path(), "agent-a").unwrap();
        assert_eq!((again, second), (path, None), "kept, not rotated");
    }

    #[test]
    fn node_architectures_map_to_image_suffixes() {
        assert_eq!(arch_suffix("aarch64"), Some("arm64"));
        assert_eq!(arch_suffix("armv7l"), Some("armv7"));
        assert_eq!(arch_suffix("armv6l"), Some("armv6"));
        assert_eq!(arch_suffix("x86_64"), Some("amd64"));
        assert_eq!(arch_suffix("riscv64"), None);
    }

    #[test]
    fn privileged_only_on_request_and_simulate_needs_no_devices() {
        let o = NodeOptions {
            privileged: true,
            ..NodeOptions::new()
        };
        let c = container(&o, "n").unwrap();
        let h = c.host_config.unwrap();
        assert_eq!(h.privileged, Some(true));
        assert_eq!(c.user, None);
        let o = NodeOptions {
            simulate: true,
            publish: Some("127.0.0.1:19842".into()),
            ..NodeOptions::new()
        };
        let c = container(&o, "n").unwrap();
        let h = c.host_config.unwrap();
        assert!(h.devices.unwrap().is_empty());
        assert!(!h.binds.unwrap().iter().any(|b| b.starts_with("/sys")));
        let pb = &h.port_bindings.unwrap()["9842/tcp"];
        assert_eq!(pb.as_ref().unwrap()[0].host_port.as_deref(), Some("19842"));
        assert!(c.cmd.unwrap().contains(&"--simulate".to_owned()));
        assert!(container(
            &NodeOptions {
                publish: Some("x:y".into()),
                ..NodeOptions::new()
            },
            "n"
        )
        .is_err());
    }
}
