//! The agent container as `docker` command lines, for the first boot of a flashed card (which
//! has Docker but not this CLI). The lines are generated from the very request `node run` sends
//! ([`super::container`]): every field of it becomes its `docker create` flag, and a field this
//! module does not know is an error, so the two cannot drift apart.

use serde_json::Value;

use super::{
    container::{self, FILES_DIR},
    NodeOptions,
};
use crate::error::{Result, StackError};

/// Stands for the node name in the request the lines are made from; the lines use the Pi's
/// hostname at boot instead. Letters and `-` only, so it survives [`container::container`]'s
/// hostname filter unchanged.
const NODE_PLACEHOLDER: &str = "edgesense-node-name-at-boot";

/// `docker create` flags, image and command for a container request.
#[derive(Debug, Default, PartialEq)]
pub struct DockerArgs {
    pub flags: Vec<String>,
    pub image: String,
    pub cmd: Vec<String>,
}

fn unknown(path: &str) -> StackError {
    StackError::Io(format!(
        "container request field {path} has no docker flag here (stack/src/node/script.rs)"
    ))
}

fn strings(v: &Value, path: &str) -> Result<Vec<String>> {
    v.as_array()
        .ok_or_else(|| unknown(path))?
        .iter()
        .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| unknown(path)))
        .collect()
}

fn keys(v: &Value, path: &str) -> Result<Vec<String>> {
    let mut k: Vec<String> = v
        .as_object()
        .ok_or_else(|| unknown(path))?
        .keys()
        .cloned()
        .collect();
    k.sort();
    Ok(k)
}

fn text(v: &Value, path: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(unknown(path)),
    }
}

/// Translates a container request into `docker create` arguments.
pub fn docker_args(body: &bollard::models::ContainerCreateBody) -> Result<DockerArgs> {
    let v = serde_json::to_value(body).map_err(|e| StackError::Io(e.to_string()))?;
    let mut a = DockerArgs::default();
    let top = v.as_object().ok_or_else(|| unknown("(request)"))?;
    let flag = |f: &mut Vec<String>, name: &str, value: String| {
        f.push(name.to_owned());
        f.push(value);
    };
    for (k, v) in top {
        if v.is_null() {
            continue;
        }
        let f = &mut a.flags;
        match k.as_str() {
            "Image" => a.image = text(v, k)?,
            "Cmd" => a.cmd = strings(v, k)?,
            "Hostname" => flag(f, "--hostname", text(v, k)?),
            "User" => flag(f, "--user", text(v, k)?),
            "StopTimeout" => flag(f, "--stop-timeout", text(v, k)?),
            "Healthcheck" => {
                for hk in keys(v, k)? {
                    let path = format!("{k}.{hk}");
                    match hk.as_str() {
                        "Interval" => {
                            let ns = v[&hk].as_u64().ok_or_else(|| unknown(&path))?;
                            flag(f, "--health-interval", format!("{}ms", ns / 1_000_000));
                        }
                        _ => return Err(unknown(&path)),
                    }
                }
            }
            "ExposedPorts" => keys(v, k)?.into_iter().for_each(|p| flag(f, "--expose", p)),
            "Volumes" => keys(v, k)?.into_iter().for_each(|p| flag(f, "--volume", p)),
            "Labels" => {
                for l in keys(v, k)? {
                    flag(f, "--label", format!("{l}={}", text(&v[&l], k)?));
                }
            }
            "HostConfig" => host_config(v, f)?,
            "NetworkingConfig" => {
                let eps = &v["EndpointsConfig"];
                let nets = keys(eps, "NetworkingConfig.EndpointsConfig")?;
                if nets.len() > 1 {
                    return Err(unknown(
                        "NetworkingConfig.EndpointsConfig (several networks)",
                    ));
                }
                for n in nets {
                    flag(f, "--network", n.clone());
                    for (ek, ev) in eps[&n].as_object().into_iter().flatten() {
                        match ek.as_str() {
                            "Aliases" => strings(ev, "Aliases")?
                                .into_iter()
                                .for_each(|al| flag(f, "--network-alias", al)),
                            _ if ev.is_null() => {}
                            other => return Err(unknown(&format!("EndpointSettings.{other}"))),
                        }
                    }
                }
            }
            other => return Err(unknown(other)),
        }
    }
    Ok(a)
}

fn host_config(v: &Value, f: &mut Vec<String>) -> Result<()> {
    let flag = |f: &mut Vec<String>, name: &str, value: String| {
        f.push(name.to_owned());
        f.push(value);
    };
    for (k, v) in v.as_object().ok_or_else(|| unknown("HostConfig"))? {
        if v.is_null() {
            continue;
        }
        let path = format!("HostConfig.{k}");
        match k.as_str() {
            "Binds" => strings(v, &path)?
                .into_iter()
                .for_each(|b| flag(f, "--volume", b)),
            "GroupAdd" => strings(v, &path)?
                .into_iter()
                .for_each(|g| flag(f, "--group-add", g)),
            "CapDrop" => strings(v, &path)?
                .into_iter()
                .for_each(|c| flag(f, "--cap-drop", c)),
            "SecurityOpt" => strings(v, &path)?
                .into_iter()
                .for_each(|s| flag(f, "--security-opt", s)),
            "NetworkMode" => flag(f, "--network", text(v, &path)?),
            "Devices" => {
                for d in v.as_array().ok_or_else(|| unknown(&path))? {
                    flag(
                        f,
                        "--device",
                        format!(
                            "{}:{}:{}",
                            text(&d["PathOnHost"], &path)?,
                            text(&d["PathInContainer"], &path)?,
                            text(&d["CgroupPermissions"], &path)?
                        ),
                    );
                }
            }
            "RestartPolicy" => {
                let name = text(&v["Name"], &path)?;
                if !name.is_empty() && name != "no" {
                    flag(f, "--restart", name);
                }
            }
            "PortBindings" => {
                for port in keys(v, &path)? {
                    for b in v[&port].as_array().into_iter().flatten() {
                        let host_port = text(&b["HostPort"], &path)?;
                        let spec = match b["HostIp"].as_str() {
                            Some(ip) if !ip.is_empty() => format!("{ip}:{host_port}:{port}"),
                            _ => format!("{host_port}:{port}"),
                        };
                        flag(f, "--publish", spec);
                    }
                }
            }
            "Privileged" | "ReadonlyRootfs" | "Init" => {
                let on = v.as_bool().ok_or_else(|| unknown(&path))?;
                if on {
                    f.push(
                        match k.as_str() {
                            "Privileged" => "--privileged",
                            "ReadonlyRootfs" => "--read-only",
                            _ => "--init",
                        }
                        .to_owned(),
                    );
                }
            }
            _ => return Err(unknown(&path)),
        }
    }
    Ok(())
}

/// One word for bash: single-quoted, with the node placeholder as `"$node"`.
fn word(s: &str) -> String {
    s.split(NODE_PLACEHOLDER)
        .map(|part| format!("'{}'", part.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join("\"$node\"")
        .replace("''\"$node\"", "\"$node\"")
        .replace("\"$node\"''", "\"$node\"")
}

fn array(name: &str, words: &[String]) -> String {
    let mut s = format!("{name}=(\n");
    for w in words {
        s.push_str(&format!("    {}\n", word(w)));
    }
    s.push_str(")\n");
    s
}

/// Bash lines that start the agent on a freshly flashed Pi as [`super::run`] does: node name =
/// the Pi's hostname, the devices the agent lists on the Pi, the config and token copied in from
/// [`super::HOST_CONFIG`] / [`super::HOST_TOKEN`] (which the first boot installed; `o.config` /
/// `o.token` say whether there are any, their content is not used here).
pub fn first_boot_lines(o: &NodeOptions) -> Result<String> {
    let create = docker_args(&container::container(o, NODE_PLACEHOLDER, &[])?)?;
    let probe = docker_args(&container::probe(&create.image))?;
    let mut s = String::from(
        "# Generated from the container request of `edgesense node run` (stack/src/node/).\n",
    );
    s.push_str("node=$(hostname)\n");
    s.push_str(&format!(
        "name={}\nimage={}\n",
        word(&o.name),
        word(&create.image)
    ));
    s.push_str(&array("create", &create.flags));
    s.push_str(&array("cmd", &create.cmd));
    if !o.simulate && !o.privileged {
        s.push_str(&array("probe", &probe.flags));
        s.push_str(&array("probe_cmd", &probe.cmd));
        s.push_str(
            r#"# The devices this Pi has, as the agent itself lists them (GPIO, I2C; with their groups).
for attempt in 1 2 3 4 5 6; do
    devices=$(docker run --rm "${probe[@]}" "$image" "${probe_cmd[@]}") && break
    sleep 10
done
while read -r dev gid; do
    [ -n "$dev" ] || continue
    create+=(--device "/dev/$dev:/dev/$dev:rw" --group-add "$gid")
done <<<"${devices:-}"
"#,
        );
    }
    s.push_str(
        r#"docker rm --force --volumes "$name" >/dev/null 2>&1
for attempt in 1 2 3 4 5 6; do
    docker create --name "$name" "${create[@]}" "$image" "${cmd[@]}" >/dev/null && break
    sleep 10
done
"#,
    );
    let files: Vec<&str> = o.files().into_iter().map(|(n, _)| n).collect();
    if !files.is_empty() {
        let uid = if o.privileged { 0 } else { 65534 };
        s.push_str(&format!(
            "# The config, token and TLS files, owned by the agent's user and readable by it alone.\ntar -C {host} --numeric-owner --owner={uid} --group={uid} --mode=0400 -cf - {files} | docker cp - \"$name:{FILES_DIR}\"\n",
            host = super::HOST_DIR,
            files = files.join(" "),
        ));
    }
    s.push_str("docker start \"$name\"\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_variant_has_its_flag() {
        let devices = container::parse_devices("gpiomem 997\ni2c-1 998\n");
        for o in [
            NodeOptions::new(),
            NodeOptions {
                simulate: true,
                publish: Some("127.0.0.1:9842".into()),
                name: "agent-b".into(),
                health_interval: Some(std::time::Duration::from_secs(60)),
                ..NodeOptions::new()
            },
            NodeOptions {
                privileged: true,
                config: Some(String::new()),
                token: Some(String::new()),
                publish: Some("9842".into()),
                ..NodeOptions::new()
            },
        ] {
            let body = container::container(&o, "pi-a", &devices).unwrap();
            let a = docker_args(&body).unwrap();
            assert_eq!(a.image, o.image);
            assert_eq!(a.cmd, body.cmd.clone().unwrap());
            let f = a.flags.join(" ");
            for must in [
                "--restart unless-stopped",
                "--read-only",
                "--network core-infra",
                "--network-alias edgesense-agent",
                "--hostname pi-a",
                "--volume /etc/edgesense",
                "--stop-timeout 5",
                "--label com.edgesense.role=agent",
                "--label com.edgesense.node=pi-a",
                "--label com.edgesense.spec-hash=",
                "--expose 9842/tcp",
            ] {
                assert!(f.contains(must), "{must}: {f}");
            }
            if o.privileged {
                assert!(f.contains("--privileged") && !f.contains("--user"), "{f}");
                assert!(!f.contains("--device"), "{f}");
            } else {
                assert!(f.contains("--user 65534:65534 "), "{f}");
                assert!(f.contains("--cap-drop ALL"), "{f}");
                assert!(f.contains("--security-opt no-new-privileges:true"), "{f}");
            }
            assert_eq!(
                f.contains("--health-interval 60000ms"),
                o.health_interval.is_some(),
                "{f}"
            );
            if o.simulate {
                assert!(f.contains("--publish 127.0.0.1:9842:9842/tcp"), "{f}");
                assert!(f.contains("--network-alias agent-b"), "{f}");
                assert!(!f.contains("/sys"), "{f}");
            } else {
                assert!(f.contains("--volume /sys:/sys:ro"), "{f}");
            }
            if !o.simulate && !o.privileged {
                assert!(f.contains("--device /dev/gpiomem:/dev/gpiomem:rw"), "{f}");
                assert!(f.contains("--group-add 997 --group-add 998"), "{f}");
            }
        }
    }

    #[test]
    fn a_field_without_a_flag_is_an_error_not_a_silent_drop() {
        let mut body = container::container(&NodeOptions::new(), "n", &[]).unwrap();
        body.working_dir = Some("/tmp".into());
        let e = docker_args(&body).unwrap_err().to_string();
        assert!(e.contains("WorkingDir"), "{e}");
        let mut body = container::container(&NodeOptions::new(), "n", &[]).unwrap();
        if let Some(h) = body.host_config.as_mut() {
            h.memory = Some(64 << 20);
        }
        let e = docker_args(&body).unwrap_err().to_string();
        assert!(e.contains("HostConfig.Memory"), "{e}");
    }

    #[test]
    fn the_node_name_is_the_hostname_at_boot() {
        assert_eq!(word(NODE_PLACEHOLDER), "\"$node\"");
        assert_eq!(
            word(&format!("com.edgesense.node={NODE_PLACEHOLDER}")),
            "'com.edgesense.node='\"$node\""
        );
        assert_eq!(word("it's"), r"'it'\''s'");
        let o = NodeOptions {
            image: "registry:5000/edgesense/agent:0.1.0".into(),
            config: Some(String::new()),
            token: Some(String::new()),
            ..NodeOptions::new()
        };
        let s = first_boot_lines(&o).unwrap();
        assert!(!s.contains(NODE_PLACEHOLDER), "{s}");
        assert!(s.contains("    '--node'\n    \"$node\"\n"), "{s}");
        assert!(s.contains("    '--hostname'\n    \"$node\"\n"), "{s}");
        assert!(
            s.contains("image='registry:5000/edgesense/agent:0.1.0'"),
            "{s}"
        );
        assert!(s.contains("--owner=65534 --group=65534 --mode=0400 -cf - agent.toml token | docker cp - \"$name:/etc/edgesense\""), "{s}");
        assert!(s.contains("--list-devices"), "{s}");
        let check = std::process::Command::new("bash")
            .args(["-n", "-c", &s])
            .status()
            .unwrap();
        assert!(check.success(), "bash -n: {s}");
    }
}
