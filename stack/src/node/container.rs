//! The agent container, as one Docker API request: what `node run`, the launcher and the first
//! boot of a flashed card (through [`super::script`]) all start.
//!
//! Least privilege by default: only the device nodes the agent opens (found on the node by the
//! agent itself, [`probe`]), `/sys` read-only, every capability dropped, `no-new-privileges`, a
//! read-only root file system, user `nobody` with the device files' groups added.
//!
//! The config and token are not bind-mounted: bind mounts name paths of the Docker host, which
//! are not the CLI's when it talks to another node's daemon, and a root-only token file on the
//! host is unreadable for `nobody`. They are copied into the container before it starts
//! ([`files_tar`]), owned by the container's user, mode 0400, into an anonymous volume at
//! [`FILES_DIR`] (Docker refuses to extract into a read-only root file system, but not into a
//! volume; the volume lives as long as the container, restarts included).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HealthConfig, HostConfig,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::{
    NodeOptions, AGENT_ALIAS, LABEL_LAUNCHER, LABEL_NETWORK, LABEL_NODE, LABEL_ROLE, LABEL_SPEC,
};
use crate::error::{Result, StackError};

/// Where the config and token are copied in the container (an anonymous volume).
pub const FILES_DIR: &str = "/etc/edgesense";
pub const CONFIG_IN: &str = "/etc/edgesense/agent.toml";
pub const TOKEN_IN: &str = "/etc/edgesense/token";
pub const CA_IN: &str = "/etc/edgesense/ca.crt";
pub const CERT_IN: &str = "/etc/edgesense/agent.pem";
pub const PASSWORD_IN: &str = "/etc/edgesense/alertmanager.password";
/// The stack's Alertmanager as agents on the overlay reach it (its service's network alias):
/// https, its certificate verified against the fleet CA, the agent logged in as `agent`.
pub const ALERTMANAGER_URL: &str = "https://alertmanager:9093";
/// … for an agent without the fleet's credentials.
pub const ALERTMANAGER_URL_PLAIN: &str = "http://alertmanager:9093";
/// The stack's Prometheus's remote-write receiver, where agents push the readings it missed
/// (a partition, a Prometheus restart): same user `agent` and password as on Alertmanager.
pub const REMOTE_WRITE_URL: &str = "https://prometheus:9090/api/v1/write";
/// … for an agent without the fleet's credentials.
pub const REMOTE_WRITE_URL_PLAIN: &str = "http://prometheus:9090/api/v1/write";
/// The agent's history over a restart or a replacement (an upgrade): a named volume per agent
/// container, `<name>-state`, at [`STATE_DIR`] (the image's directory there is owned by
/// `nobody`, and Docker gives a new volume its ownership).
pub const STATE_DIR: &str = "/var/lib/edgesense";
pub const STATE_FILE: &str = "/var/lib/edgesense/agent.state";

/// The named volume that keeps the agent `name`'s history.
pub fn state_volume(name: &str) -> String {
    format!("{name}-state")
}

/// `nobody`: the agent needs no root, only the device groups.
pub const USER: &str = "65534:65534";
const USER_ID: u64 = 65534;
/// Where the device probe sees the node's `/dev`.
const PROBE_DEV: &str = "/host/dev";

/// A device node the agent opens, as the agent listed it on the node: name under `/dev`, group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub gid: u32,
}

/// Parses the agent's `--list-devices` output (`NAME GID` lines).
pub fn parse_devices(out: &str) -> Vec<Device> {
    out.lines()
        .filter_map(|l| {
            let (name, gid) = l.trim().split_once(' ')?;
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            Some(Device {
                name: ok.then(|| name.to_owned())?,
                gid: gid.trim().parse().ok()?,
            })
        })
        .collect()
}

/// The short-lived container that lists the node's devices: the agent image itself with the
/// node's `/dev` read-only, no network, no capabilities (it only stats files).
pub fn probe(image: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        user: Some(USER.to_owned()),
        cmd: Some(vec!["--list-devices".into(), PROBE_DEV.into()]),
        labels: Some([(LABEL_ROLE.to_owned(), "device-probe".to_owned())].into()),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("/dev:{PROBE_DEV}:ro")]),
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
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

/// A container hostname from a node name (letters, digits and `-`).
fn hostname(node: &str) -> String {
    node.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// The container request for `o` on node `node` with the node's `devices`, labelled with a hash
/// of everything it starts (request and copied files): equal hashes, equal agents.
pub fn container(o: &NodeOptions, node: &str, devices: &[Device]) -> Result<ContainerCreateBody> {
    let mut cmd: Vec<String> = vec![
        "--listen".into(),
        "0.0.0.0:9842".into(),
        "--node".into(),
        node.into(),
        "--relay-dns".into(),
        format!("{AGENT_ALIAS}:9842"),
        // The stack's Alertmanager on the overlay (its network alias): the agent reconciles
        // its LEDs against it (silences, restarts, lost webhooks).
        "--alertmanager".into(),
        if o.tls.is_some() {
            ALERTMANAGER_URL
        } else {
            ALERTMANAGER_URL_PLAIN
        }
        .into(),
        // … and pushes what Prometheus missed to the stack's Prometheus, keeping its history
        // over a restart or an upgrade in its state volume.
        "--remote-write".into(),
        if o.tls.is_some() {
            REMOTE_WRITE_URL
        } else {
            REMOTE_WRITE_URL_PLAIN
        }
        .into(),
        "--state-file".into(),
        STATE_FILE.into(),
    ];
    if o.tls.is_some() {
        cmd.extend(
            [
                "--tls-cert",
                CERT_IN,
                "--tls-ca",
                CA_IN,
                "--alertmanager-password-file",
                PASSWORD_IN,
            ]
            .map(str::to_owned),
        );
    }
    if o.config.is_some() {
        cmd.extend(["--config".into(), CONFIG_IN.into()]);
    }
    if o.token.is_some() {
        cmd.extend(["--token-file".into(), TOKEN_IN.into()]);
    } else {
        // Asked for (`node run --no-token`): an agent without a token serves loopback only
        // unless told that the open API is wanted.
        cmd.push("--allow-anonymous-writes".into());
    }
    if o.simulate {
        cmd.push("--simulate".into());
    }
    let devices: &[Device] = if o.simulate || o.privileged {
        &[]
    } else {
        devices
    };
    let mut groups: Vec<String> = devices.iter().map(|d| d.gid.to_string()).collect();
    groups.sort();
    groups.dedup();
    let maps = devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(format!("/dev/{}", d.name)),
            path_in_container: Some(format!("/dev/{}", d.name)),
            cgroup_permissions: Some("rw".into()),
        })
        .collect();
    let mut binds = vec![format!("{}:{STATE_DIR}", state_volume(&o.name))];
    if !o.simulate {
        binds.push("/sys:/sys:ro".to_owned());
    }
    let mut port_bindings = HashMap::new();
    if let Some(p) = &o.publish {
        port_bindings.insert("9842/tcp".to_owned(), Some(vec![publish(p)?]));
    }
    let host = HostConfig {
        binds: Some(binds),
        devices: Some(maps),
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
    let mut body = ContainerCreateBody {
        image: Some(o.image.clone()),
        hostname: Some(hostname(node)),
        user: (!o.privileged).then(|| USER.to_owned()),
        cmd: Some(cmd),
        exposed_ports: Some(vec!["9842/tcp".into()]),
        volumes: Some(vec![FILES_DIR.to_owned()]),
        labels: Some(
            [
                (LABEL_ROLE.to_owned(), "agent".to_owned()),
                (LABEL_NODE.to_owned(), node.to_owned()),
                (LABEL_NETWORK.to_owned(), o.network.clone()),
            ]
            .into(),
        ),
        stop_timeout: Some(5),
        // Only the interval: dockerd keeps the image's test, timeout, start period and retries.
        healthcheck: o.health_interval.map(|i| HealthConfig {
            interval: Some(i64::try_from(i.as_nanos()).unwrap_or(i64::MAX)),
            ..Default::default()
        }),
        host_config: Some(host),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    };
    if let (Some(stack), Some(l)) = (&o.launcher, body.labels.as_mut()) {
        l.insert(LABEL_LAUNCHER.to_owned(), stack.clone());
    }
    let hash = spec_hash(&body, o);
    if let Some(l) = body.labels.as_mut() {
        l.insert(LABEL_SPEC.to_owned(), hash);
    }
    Ok(body)
}

/// A hash of the request (through a JSON value, whose maps are sorted) and the files copied in:
/// the config's content, the credentials' names only (they change in a running agent:
/// [`super::install_credentials`]).
fn spec_hash(body: &ContainerCreateBody, o: &NodeOptions) -> String {
    let canonical = serde_json::to_value(body)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut data = canonical.into_bytes();
    for (name, content) in o.files() {
        data.push(0);
        data.extend(name.as_bytes());
        if !NodeOptions::CREDENTIALS.contains(&name) {
            data.push(0);
            data.extend(content.as_bytes());
        }
    }
    crate::assets::short_hash(&data)
}

/// The uid the container's processes run as (root with `--privileged`).
fn owner(o: &NodeOptions) -> u64 {
    if o.privileged {
        0
    } else {
        USER_ID
    }
}

/// The config, token and TLS files as a tar archive for [`FILES_DIR`]: owned by the
/// container's user, readable by it alone. `None` when there is nothing to copy.
pub fn files_tar(o: &NodeOptions) -> Result<Option<Vec<u8>>> {
    let files = o.files();
    if files.is_empty() {
        return Ok(None);
    }
    let err = |e: std::io::Error| StackError::Io(format!("packing the agent's files: {e}"));
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o400);
        h.set_uid(owner(o));
        h.set_gid(owner(o));
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, content.as_bytes())
            .map_err(err)?;
    }
    b.into_inner().map(Some).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> NodeOptions {
        NodeOptions {
            config: Some("node = \"x\"\n".into()),
            token: Some("t0ken\n".into()),
            ..NodeOptions::new()
        }
    }

    fn pi4() -> Vec<Device> {
        parse_devices("gpiochip0 997\ngpiomem 997\ni2c-1 998\n")
    }

    #[test]
    fn least_privilege_by_default() {
        let c = container(&opts(), "pi-kitchen", &pi4()).unwrap();
        let h = c.host_config.as_ref().unwrap();
        let devs: Vec<String> = h
            .devices
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| d.path_in_container.clone().unwrap())
            .collect();
        assert_eq!(devs, ["/dev/gpiochip0", "/dev/gpiomem", "/dev/i2c-1"]);
        assert_eq!(
            h.group_add.as_deref(),
            Some(&["997".to_owned(), "998".to_owned()][..])
        );
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(
            h.binds.as_deref(),
            Some(
                &[
                    "edgesense-agent-state:/var/lib/edgesense".to_owned(),
                    "/sys:/sys:ro".to_owned()
                ][..]
            )
        );
        assert_eq!(
            h.restart_policy.as_ref().unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.volumes.as_deref(), Some(&[FILES_DIR.to_owned()][..]));
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
        assert!(
            cmd.contains("--alertmanager http://alertmanager:9093"),
            "{cmd}"
        );
        assert!(
            cmd.contains("--remote-write http://prometheus:9090/api/v1/write"),
            "{cmd}"
        );
        assert!(cmd.contains("--config /etc/edgesense/agent.toml"), "{cmd}");
        assert!(cmd.contains("--token-file /etc/edgesense/token"), "{cmd}");
        assert!(!cmd.contains("--simulate"));
    }

    #[test]
    fn the_hash_follows_everything_the_agent_gets() {
        let h = |o: &NodeOptions, d: &[Device]| {
            container(o, "pi-a", d).unwrap().labels.unwrap()[LABEL_SPEC].clone()
        };
        let base = h(&opts(), &pi4());
        assert_eq!(base, h(&opts(), &pi4()), "stable");
        let other_config = NodeOptions {
            config: Some("node = \"y\"\n".into()),
            ..opts()
        };
        assert_ne!(base, h(&other_config, &pi4()), "config content");
        let other_token = NodeOptions {
            token: Some("other\n".into()),
            ..opts()
        };
        // Credentials are installed into the running agent (upload + SIGHUP), not by a new
        // container: a rotation must not restart the fleet's agents.
        assert_eq!(base, h(&other_token, &pi4()), "token content");
        assert_ne!(base, h(&opts(), &pi4()[..1]), "devices");
        let other_image = NodeOptions {
            image: "edgesense/agent:0.2.0".into(),
            ..opts()
        };
        assert_ne!(base, h(&other_image, &pi4()), "image");
    }

    #[test]
    fn files_are_the_container_users_and_only_readable_by_it() {
        let tar = files_tar(&opts()).unwrap().unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut e, &mut content).unwrap();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.uid().unwrap(),
                h.mode().unwrap(),
                content,
            ));
        }
        assert_eq!(
            seen,
            [
                ("agent.toml".into(), 65534, 0o400, "node = \"x\"\n".into()),
                ("token".into(), 65534, 0o400, "t0ken\n".into()),
            ]
        );
        let none = NodeOptions::new();
        assert!(files_tar(&none).unwrap().is_none());
        let root = NodeOptions {
            privileged: true,
            ..opts()
        };
        let tar = files_tar(&root).unwrap().unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let first = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(first.header().uid().unwrap(), 0);
    }

    #[test]
    fn device_lists_from_the_agent_are_checked() {
        assert_eq!(
            parse_devices("gpiomem0 993\n../etc 0\ngpiochip0 x\n\ni2c-1 998"),
            [
                Device {
                    name: "gpiomem0".into(),
                    gid: 993
                },
                Device {
                    name: "i2c-1".into(),
                    gid: 998
                }
            ]
        );
    }

    #[test]
    fn privileged_only_on_request_and_simulate_needs_no_devices() {
        let o = NodeOptions {
            privileged: true,
            ..NodeOptions::new()
        };
        let c = container(&o, "n", &pi4()).unwrap();
        let h = c.host_config.unwrap();
        assert_eq!(h.privileged, Some(true));
        assert_eq!(c.user, None);
        assert!(h.devices.unwrap().is_empty(), "privileged sees them all");
        let o = NodeOptions {
            simulate: true,
            publish: Some("127.0.0.1:19842".into()),
            ..NodeOptions::new()
        };
        let c = container(&o, "n", &pi4()).unwrap();
        let h = c.host_config.unwrap();
        assert!(h.devices.unwrap().is_empty());
        assert_eq!(
            h.binds.unwrap(),
            ["edgesense-agent-state:/var/lib/edgesense"],
            "no /sys for a simulated node; its history volume all the same"
        );
        let pb = &h.port_bindings.unwrap()["9842/tcp"];
        assert_eq!(pb.as_ref().unwrap()[0].host_port.as_deref(), Some("19842"));
        assert!(c.cmd.unwrap().contains(&"--simulate".to_owned()));
        assert!(container(
            &NodeOptions {
                publish: Some("x:y".into()),
                ..NodeOptions::new()
            },
            "n",
            &[]
        )
        .is_err());
    }
}
