//! `edgesense doctor`: what stands between this node and a working agent, each finding with its
//! fix. Host checks read the files a Pi has (`/proc/device-tree/model`, `config.txt`, `/sys`,
//! `/dev`) under a root directory, so they can run against a prepared tree; Docker checks ask the
//! daemon; the last two ask Prometheus and, from inside the agent container, Alertmanager.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    exec::{CreateExecOptions, StartExecResults},
    Docker,
};
use serde::Serialize;
use serde_json::Value;

use crate::{error::is_not_found, http, plan::DEFAULT_NETWORK};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, but probably not as intended (or not yet).
    Warn,
    Fail,
    /// Could not be checked (says why).
    Skip,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, when it is not a pass.
    pub fix: Option<String>,
}

fn check(
    check: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

pub struct DoctorOptions {
    /// Where the host's `/proc`, `/sys`, `/boot` and `/dev` are (`/` on a Pi).
    pub root: PathBuf,
    pub container: String,
    pub network: String,
    /// Prometheus to ask whether it scrapes this agent.
    pub prometheus: Option<String>,
    /// The fleet CA and the operator's login for it.
    pub access: crate::http::Access,
    /// Alertmanager as the agent reaches it.
    pub alertmanager_from_agent: String,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions {
            root: PathBuf::from("/"),
            container: crate::node::DEFAULT_NAME.into(),
            network: DEFAULT_NETWORK.into(),
            prometheus: None,
            alertmanager_from_agent: "https://alertmanager:9093/-/ready".into(),
            access: crate::http::Access::default(),
        }
    }
}

fn at(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// The checks that read host files.
pub fn host_checks(root: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let model = std::fs::read_to_string(at(root, "/proc/device-tree/model"))
        .map(|m| m.trim_end_matches('\0').trim().to_owned())
        .unwrap_or_default();
    out.push(if model.starts_with("Raspberry Pi") {
        check("raspberry pi", Status::Pass, model.clone(), None)
    } else {
        check(
            "raspberry pi",
            Status::Warn,
            if model.is_empty() {
                "no device-tree model: not a Raspberry Pi".to_owned()
            } else {
                model.clone()
            },
            Some("real sensors and LEDs need a Pi; `edgesense node run --simulate` works anywhere"),
        )
    });

    let config = ["/boot/firmware/config.txt", "/boot/config.txt"]
        .iter()
        .map(|p| at(root, p))
        .find(|p| p.is_file());
    match &config {
        None => out.push(check(
            "config.txt",
            Status::Warn,
            "no /boot/firmware/config.txt or /boot/config.txt",
            Some("on a Pi the boot partition is mounted at /boot/firmware (bookworm) or /boot"),
        )),
        Some(p) => {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let active: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .collect();
            let has = |prefix: &str| active.iter().any(|l| l.starts_with(prefix));
            let mut missing = Vec::new();
            if !has("dtoverlay=w1-gpio") {
                missing.push("dtoverlay=w1-gpio (DS18B20)");
            }
            if !has("dtparam=i2c_arm=on") {
                missing.push("dtparam=i2c_arm=on (BME280)");
            }
            let extra: Vec<&str> = ["dtoverlay=i2c-sensor", "dtoverlay=dht11"]
                .into_iter()
                .filter(|o| has(o))
                .collect();
            out.push(if missing.is_empty() {
                check("config.txt", Status::Pass, format!("1-Wire and I2C enabled{}", if extra.is_empty() { String::new() } else { format!("; also {}", extra.join(", ")) }), None)
            } else {
                check(
                    "config.txt",
                    Status::Warn,
                    format!("{} lacks {}", p.display(), missing.join(", ")),
                    Some("add the lines under [all] and reboot (or flash the card with `edgesense flash`, which adds them)"),
                )
            });
        }
    }

    let w1 = at(root, "/sys/bus/w1/devices");
    let masters = list(&w1)
        .iter()
        .filter(|n| n.starts_with("w1_bus_master"))
        .count();
    let ds = list(&w1).iter().filter(|n| n.starts_with("28-")).count();
    out.push(if masters > 0 {
        check(
            "1-wire",
            Status::Pass,
            format!("{masters} bus master(s), {ds} DS18B20"),
            None,
        )
    } else {
        check(
            "1-wire",
            Status::Warn,
            "no 1-Wire bus master: the w1-gpio overlay is not loaded",
            Some("check config.txt, reboot; `dmesg | grep w1` shows why it did not load"),
        )
    });

    let i2c: Vec<String> = list(&at(root, "/dev"))
        .into_iter()
        .filter(|n| n.starts_with("i2c-"))
        .collect();
    out.push(if i2c.is_empty() {
        check(
            "i2c",
            Status::Warn,
            "no /dev/i2c-*: the I2C bus is off",
            Some("dtparam=i2c_arm=on in config.txt, then reboot"),
        )
    } else {
        check(
            "i2c",
            Status::Pass,
            format!("/dev/{}", i2c.join(", /dev/")),
            None,
        )
    });

    let iio = at(root, "/sys/bus/iio/devices");
    let names: Vec<String> = list(&iio)
        .iter()
        .filter_map(|d| std::fs::read_to_string(iio.join(d).join("name")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    out.push(check(
        "iio sensors",
        if names.is_empty() {
            Status::Skip
        } else {
            Status::Pass
        },
        if names.is_empty() {
            "none (BME280 on direct I2C and DS18B20 need none)".to_owned()
        } else {
            names.join(", ")
        },
        None,
    ));

    // The agent runs as nobody with each device's group added: the group needs read-write.
    // The device nodes are those the agent itself opens (edgesense-sensors' list).
    let dev = at(root, "/dev");
    let nodes = edgesense_sensors::bus::device_nodes(&dev);
    let found = nodes.len();
    let mut unreadable = Vec::new();
    for (n, _) in &nodes {
        if let Ok(m) = std::fs::metadata(dev.join(n)) {
            if m.mode() & 0o060 != 0o060 {
                unreadable.push(format!(
                    "/dev/{n} (mode {:o}, group {})",
                    m.mode() & 0o777,
                    m.gid()
                ));
            }
        }
    }
    // GPIO output goes through /dev/gpiomem (a Raspberry Pi OS driver; /dev/gpiomem0 on a Pi 5):
    // without it rppal falls back to /dev/mem, root only.
    if model.starts_with("Raspberry Pi") {
        let gpiomem: Vec<&str> = nodes
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.starts_with("gpiomem"))
            .collect();
        out.push(if gpiomem.is_empty() {
            check(
                "gpio",
                Status::Fail,
                "no /dev/gpiomem: this kernel lacks the Raspberry Pi OS gpiomem driver, so LEDs need /dev/mem, which only root may open",
                Some("boot Raspberry Pi OS's kernel, or run the agent as root: `edgesense node run --privileged` (with a kernel that restricts /dev/mem, add iomem=relaxed to cmdline.txt)"),
            )
        } else {
            check("gpio", Status::Pass, format!("/dev/{}", gpiomem.join(", /dev/")), None)
        });
    }
    out.push(if found == 0 {
        check("device access", Status::Warn, "no GPIO or I2C device nodes", Some("on a Pi: /dev/gpiomem (or /dev/gpiochip*) exists; else run with --simulate"))
    } else if unreadable.is_empty() {
        check("device access", Status::Pass, format!("{found} device(s) read-write for their group (the container adds it)"), None)
    } else {
        check(
            "device access",
            Status::Fail,
            format!("not group read-write: {}", unreadable.join(", ")),
            Some("the agent runs as nobody with the device's group: `sudo chmod g+rw` it, or a udev rule (Raspberry Pi OS ships one for gpio and i2c)"),
        )
    });
    out.push(crate::kernel::esp_check(root));
    out
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The checks that ask Docker, Prometheus and (through the agent) Alertmanager.
pub async fn docker_checks(docker: Result<Docker, String>, o: &DoctorOptions) -> Vec<Check> {
    let mut out = Vec::new();
    let docker = match docker {
        Ok(d) => d,
        Err(e) => {
            out.push(check("docker", Status::Fail, e, Some("start dockerd (`sudo systemctl enable --now docker`), or point --docker-host at it")));
            return out;
        }
    };
    let info = match docker.info().await {
        Ok(i) => i,
        Err(e) => {
            out.push(check(
                "docker",
                Status::Fail,
                e.to_string(),
                Some("can this user reach the socket? add it to the docker group"),
            ));
            return out;
        }
    };
    out.push(check(
        "docker",
        Status::Pass,
        format!(
            "{} on {}",
            info.server_version.unwrap_or_default(),
            info.name.unwrap_or_default()
        ),
        None,
    ));
    let swarm = info.swarm.unwrap_or_default();
    let state = swarm
        .local_node_state
        .map(|s| s.to_string())
        .unwrap_or_default();
    if state == "active" {
        let role = if swarm.control_available == Some(true) {
            "manager"
        } else {
            "worker"
        };
        out.push(check(
            "swarm",
            Status::Pass,
            format!(
                "{role} of a swarm with {} node(s)",
                swarm.nodes.unwrap_or(0)
            ),
            None,
        ));
    } else {
        out.push(check("swarm", Status::Fail, format!("not in a swarm (state \"{state}\")"), Some("docker swarm join --token <token> <manager>:2377 (or `docker swarm init` on the first node)")));
    }
    match docker.inspect_network(&o.network, None).await {
        Ok(n) if n.driver.as_deref() == Some("overlay") && n.attachable == Some(true) => {
            out.push(check("network", Status::Pass, format!("{} is an attachable overlay", o.network), None));
        }
        Ok(n) => out.push(check(
            "network",
            Status::Fail,
            format!("{} is {} and {}attachable", o.network, n.driver.unwrap_or_default(), if n.attachable == Some(true) { "" } else { "not " }),
            Some("edgesense needs an attachable overlay network: remove it and run `edgesense stack up`"),
        )),
        Err(e) if is_not_found(&e) => out.push(check(
            "network",
            if state == "active" && swarm.control_available != Some(true) { Status::Warn } else { Status::Fail },
            format!("{} not found here", o.network),
            Some("run `edgesense stack up` on a manager; on a worker it appears once the agent container joins it"),
        )),
        Err(e) => out.push(check("network", Status::Fail, e.to_string(), None)),
    }
    let mut node_name = None;
    match docker.inspect_container(&o.container, None).await {
        Ok(c) => {
            let st = c.state.unwrap_or_default();
            node_name = c
                .config
                .as_ref()
                .and_then(|cfg| cfg.labels.as_ref())
                .and_then(|l| l.get("com.edgesense.node").cloned());
            let health = st
                .health
                .and_then(|h| h.status)
                .map(|h| h.to_string())
                .unwrap_or_else(|| "no health check".into());
            let running = st.running == Some(true);
            let status = match (running, health.as_str()) {
                (true, "healthy") => Status::Pass,
                (true, "starting" | "no health check") => Status::Warn,
                _ => Status::Fail,
            };
            let start_error = st.error.filter(|e| !e.is_empty() && !running);
            let fix = match &start_error {
                Some(_) => Some(format!(
                    "dockerd could not start it (after a dockerd restart this is moby/moby#32607): `docker start {c}`; the systemd unit {unit} that `edgesense node run` installs does this when docker starts",
                    c = o.container,
                    unit = crate::node::start_again_instance(&o.container)
                )),
                None => (status != Status::Pass).then(|| {
                    format!(
                        "`docker logs {}` shows why; `edgesense node run` replaces it",
                        o.container
                    )
                }),
            };
            out.push(check(
                "agent container",
                status,
                format!(
                    "{}: {}, {health}{}",
                    o.container,
                    st.status.map(|s| s.to_string()).unwrap_or_default(),
                    start_error
                        .map(|e| format!(", start failed: {e}"))
                        .unwrap_or_default()
                ),
                fix.as_deref(),
            ));
        }
        Err(e) if is_not_found(&e) => out.push(check(
            "agent container",
            Status::Fail,
            format!("no container {}", o.container),
            Some("edgesense node run"),
        )),
        Err(e) => out.push(check("agent container", Status::Fail, e.to_string(), None)),
    }
    out.push(match (&o.prometheus, &node_name) {
        (None, _) => check(
            "prometheus scrapes the agent",
            Status::Skip,
            "give --prometheus URL to ask it",
            None,
        ),
        (Some(_), None) => check(
            "prometheus scrapes the agent",
            Status::Skip,
            "no agent container to look for",
            None,
        ),
        (Some(url), Some(node)) => scraped(&o.access, url, node).await,
    });
    if node_name.is_some() {
        out.push(alertmanager_from_agent(&docker, o).await);
    } else {
        out.push(check(
            "alertmanager from the agent",
            Status::Skip,
            "no agent container to ask from",
            None,
        ));
    }
    out
}

async fn scraped(access: &crate::http::Access, url: &str, node: &str) -> Check {
    let q = format!("up{{job=\"edgesense\"}} * on (instance) group_left (node) edgesense_node_info{{node=\"{node}\"}}");
    let full = format!(
        "{}/api/v1/query?query={}",
        url.trim_end_matches('/'),
        http::urlencode(&q)
    );
    let name = "prometheus scrapes the agent";
    match access.get(&full, Duration::from_secs(5)).await {
        Err(e) => check(
            name,
            Status::Fail,
            format!("Prometheus unreachable: {e}"),
            Some("is it published (`stack up --prometheus-port 9090`) and the URL right?"),
        ),
        Ok((_, body)) => {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            match v["data"]["result"].as_array().and_then(|r| r.first()) {
                Some(r) if r["value"][1] == "1" => check(name, Status::Pass, format!("{} is up as node {node}", r["metric"]["instance"].as_str().unwrap_or("?")), None),
                Some(r) => check(name, Status::Fail, format!("{} is down", r["metric"]["instance"].as_str().unwrap_or("?")), Some("the last scrape failed: see Prometheus's targets page")),
                None => check(name, Status::Fail, format!("no target reports node {node}"), Some("is the container on the network with the alias edgesense-agent? Prometheus refreshes DNS every 30 s")),
            }
        }
    }
}

/// Runs the agent binary's `--probe` inside its container against Alertmanager's address on
/// the overlay network.
async fn alertmanager_from_agent(docker: &Docker, o: &DoctorOptions) -> Check {
    let name = "alertmanager from the agent";
    let exec = docker
        .create_exec(
            &o.container,
            CreateExecOptions {
                // With the agent's own credentials, as its reconciles go.
                cmd: Some(vec![
                    "/bin/edgesense-agent".to_owned(),
                    "--probe".to_owned(),
                    o.alertmanager_from_agent.clone(),
                    "--tls-ca".to_owned(),
                    crate::node::CA_IN.to_owned(),
                    "--probe-user".to_owned(),
                    crate::credentials::USER_AGENT.to_owned(),
                    "--probe-password-file".to_owned(),
                    crate::node::PASSWORD_IN.to_owned(),
                ]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await;
    let id = match exec {
        Ok(e) => e.id,
        Err(e) => {
            return check(
                name,
                Status::Fail,
                format!("cannot exec in {}: {e}", o.container),
                None,
            )
        }
    };
    let mut output = String::new();
    if let Ok(StartExecResults::Attached { output: mut s, .. }) = docker.start_exec(&id, None).await
    {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = s.next().await {
            output.push_str(&chunk.to_string());
        }
    }
    match docker.inspect_exec(&id).await.map(|i| i.exit_code) {
        Ok(Some(0)) => check(
            name,
            Status::Pass,
            format!("{} answers", o.alertmanager_from_agent),
            None,
        ),
        Ok(code) => check(
            name,
            Status::Fail,
            format!(
                "{} from the agent: {} (exit {code:?})",
                o.alertmanager_from_agent,
                output.trim()
            ),
            Some("is the stack up (`edgesense stack status`) and the agent on the same network?"),
        ),
        Err(e) => check(name, Status::Fail, e.to_string(), None),
    }
}

/// A readable table of the checks.
pub fn table(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        s.push_str(&format!("{mark}  {:<30} {}\n", c.check, c.detail));
        if let Some(f) = &c.fix {
            s.push_str(&format!("      {:<30} → {f}\n", ""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(pi: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let put = |p: &str, c: &str| {
            let p = at(d.path(), p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        if pi {
            put(
                "/proc/device-tree/model",
                "Raspberry Pi 4 Model B Rev 1.4\0",
            );
            put("/boot/firmware/config.txt", "[all]\ndtoverlay=w1-gpio,gpiopin=4\ndtparam=i2c_arm=on\ndtoverlay=dht11,gpiopin=17\n");
            put("/sys/bus/w1/devices/w1_bus_master1/therm_bulk_read", "0\n");
            put("/sys/bus/w1/devices/28-0316a2795bff/temperature", "21000\n");
            put("/sys/bus/iio/devices/iio:device0/name", "dht11\n");
            put("/dev/i2c-1", "");
            put("/dev/gpiomem", "");
            // Raspberry Pi OS's kernel: ESP and GCM as modules.
            put("/proc/sys/kernel/osrelease", "6.6.31+rpt-rpi-v8\n");
            put(
                "/lib/modules/6.6.31+rpt-rpi-v8/modules.builtin",
                "kernel/net/ipv4/tcp_cubic.ko\n",
            );
            put(
                "/lib/modules/6.6.31+rpt-rpi-v8/kernel/net/ipv4/esp4.ko.xz",
                "",
            );
            put("/lib/modules/6.6.31+rpt-rpi-v8/kernel/crypto/gcm.ko.xz", "");
            for f in ["/dev/i2c-1", "/dev/gpiomem"] {
                std::fs::set_permissions(at(d.path(), f), std::fs::Permissions::from_mode(0o660))
                    .unwrap();
            }
        } else {
            put("/boot/config.txt", "# nothing\n#dtparam=i2c_arm=on\n");
        }
        d
    }

    #[test]
    fn a_prepared_pi_passes_the_host_checks() {
        let t = tree(true);
        let checks = host_checks(t.path());
        let failing: Vec<_> = checks
            .iter()
            .filter(|c| !matches!(c.status, Status::Pass))
            .collect();
        assert!(failing.is_empty(), "{}", table(&checks));
        assert!(
            checks
                .iter()
                .any(|c| c.detail.contains("also dtoverlay=dht11")),
            "{}",
            table(&checks)
        );
    }

    #[test]
    fn a_bare_machine_gets_a_fix_for_each_finding() {
        let t = tree(false);
        let checks = host_checks(t.path());
        let text = table(&checks);
        for (name, status) in [
            ("raspberry pi", Status::Warn),
            ("config.txt", Status::Warn),
            ("1-wire", Status::Warn),
            ("i2c", Status::Warn),
        ] {
            let c = checks.iter().find(|c| c.check == name).unwrap();
            assert_eq!(c.status, status, "{text}");
            assert!(c.fix.is_some(), "{name} says what to do: {text}");
        }
        assert!(
            text.contains("lacks dtoverlay=w1-gpio"),
            "commented lines do not count: {text}"
        );
        // A device its group cannot write.
        let p = tree(true);
        std::fs::set_permissions(
            at(p.path(), "/dev/i2c-1"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let c = host_checks(p.path())
            .into_iter()
            .find(|c| c.check == "device access")
            .unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("/dev/i2c-1 (mode 600"), "{c:?}");
    }

    #[tokio::test]
    async fn no_daemon_is_a_failure_with_a_fix() {
        let checks = docker_checks(Err("no socket".into()), &DoctorOptions::default()).await;
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].fix.as_deref().unwrap().contains("dockerd"));
    }
}
