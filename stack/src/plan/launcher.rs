//! The launcher services of `stack up --agents`: global services whose tasks hold their node's
//! Docker socket and keep that node's agent container as desired ([`crate::launcher`]).
//!
//! A worker's Docker API cannot read node labels, so the labels are applied by swarm itself,
//! through placement constraints: `<stack>_launcher` runs on every node with no
//! `edgesense.config` label of a config it knows (the default config), one
//! `<stack>_launcher-<name>` per `--agent-config NAME=FILE` on the nodes labelled
//! `edgesense.config=<name>`, and `<stack>_launcher-off` (no config, `--absent`) on the nodes
//! labelled `edgesense.agent=false`, which removes the agent there. A node whose label changes
//! gets its task moved by swarm; the new launcher replaces or removes the agent (the old one
//! stops and leaves it).

use bollard::models::{
    HealthConfig, Limit, Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile1,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use super::{labels, secrets, ConfigFile, StackOptions, StackSecrets, NAMESPACE, ROLE, SECOND_NS};

/// `stack up --agents`: what every node's agent is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Agents {
    pub agent_image: String,
    pub launcher_image: String,
    /// The default agent config (TOML text); `None`: the agent's built-in defaults.
    pub config: Option<String>,
    /// Configs for nodes labelled `edgesense.config=<name>`: (name, TOML text).
    pub named: Vec<(String, String)>,
    /// How many nodes a rolling upgrade replaces at once (`--roll-parallelism`, at least 1).
    pub roll_parallelism: u32,
}

pub const DEFAULT_LAUNCHER_IMAGE: &str = "edgesense/launcher:local";
/// The node labels the launchers' placement reads.
pub const LABEL_CONFIG: &str = "node.labels.edgesense.config";
pub const LABEL_AGENT: &str = "node.labels.edgesense.agent";
/// Where the launcher finds the agent config in its task.
pub const CONFIG_TARGET: &str = "/etc/edgesense/agent.toml";
/// The Docker socket on every node (the fleet harness gives each node its own).
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Which launcher a service is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which<'a> {
    Default,
    Named(&'a str),
    Off,
}

impl Which<'_> {
    pub fn service(&self, stack: &str) -> String {
        match self {
            Which::Default => format!("{stack}_launcher"),
            Which::Named(n) => format!("{stack}_launcher-{n}"),
            Which::Off => format!("{stack}_launcher-off"),
        }
    }
}

/// The config file for agents of `which` (its swarm config is named by content hash).
pub fn config_file(stack: &str, which: Which, data: &str) -> ConfigFile {
    let key = match which {
        Which::Named(n) => format!("agent_config_{n}"),
        _ => "agent_config".to_owned(),
    };
    let file = match which {
        Which::Named(n) => format!("agents/{n}.toml"),
        _ => "agents/agent.toml".to_owned(),
    };
    ConfigFile {
        name: format!(
            "{stack}_{key}_{}",
            crate::assets::short_hash(data.as_bytes())
        ),
        key,
        data: data.to_owned(),
        file,
        target: CONFIG_TARGET.to_owned(),
    }
}

/// The launcher's arguments (after the binary).
fn args(opts: &StackOptions, a: &Agents, which: Which) -> Vec<String> {
    let mut v: Vec<String> = [
        "launcher",
        "--stack",
        &opts.stack,
        "--network",
        &opts.network,
        "--agent-image",
        &a.agent_image,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if which == Which::Off {
        v.push("--absent".into());
    }
    v
}

fn constraints(a: &Agents, which: Which) -> Vec<String> {
    match which {
        Which::Default => {
            let mut c = vec![format!("{LABEL_AGENT} != false")];
            c.extend(
                a.named
                    .iter()
                    .map(|(n, _)| format!("{LABEL_CONFIG} != {n}")),
            );
            c
        }
        Which::Named(n) => vec![
            format!("{LABEL_AGENT} != false"),
            format!("{LABEL_CONFIG} == {n}"),
        ],
        Which::Off => vec![format!("{LABEL_AGENT} == false")],
    }
}

/// The launcher service `which`, with its agent config (none for the default without one and
/// for `Off`) and the agents' secrets: the fleet CA, their certificate, the token, their
/// Alertmanager password (root's, mode 0400: the launcher copies them into the agent).
pub fn service(
    opts: &StackOptions,
    a: &Agents,
    which: Which,
    config: Option<&ConfigFile>,
    all: &StackSecrets,
) -> ServiceSpec {
    let ns = [(NAMESPACE, opts.stack.as_str())];
    let container = TaskSpecContainerSpec {
        image: Some(a.launcher_image.clone()),
        labels: Some(labels(&ns)),
        args: Some(args(opts, a, which)),
        // Swarm fills in the node's hostname per task: the agent's node name.
        env: Some(vec!["EDGESENSE_NODE={{.Node.Hostname}}".into()]),
        health_check: Some(HealthConfig {
            test: Some(
                ["CMD", "/bin/edgesense", "launcher", "--probe"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            interval: Some(5 * SECOND_NS),
            timeout: Some(3 * SECOND_NS),
            retries: Some(3),
            // A new agent needs its own health check to pass first (10 s start, 10 s period).
            start_period: Some(60 * SECOND_NS),
            ..Default::default()
        }),
        configs: config.map(|c| {
            vec![TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(c.target.clone()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o400),
                }),
                config_name: Some(c.name.clone()),
                ..Default::default()
            }]
        }),
        secrets: (which != Which::Off).then(|| super::secret_refs(all, secrets::LAUNCHER, "0")),
        mounts: Some(vec![
            // The node's Docker: root on that node (SECURITY.md).
            Mount {
                target: Some(DOCKER_SOCKET.into()),
                source: Some(DOCKER_SOCKET.into()),
                typ: Some(MountType::BIND),
                ..Default::default()
            },
            // The status file for the health check (the root file system is read-only).
            Mount {
                target: Some("/run/edgesense".into()),
                typ: Some(MountType::TMPFS),
                ..Default::default()
            },
        ]),
        read_only: Some(true),
        capability_drop: Some(vec!["ALL".into()]),
        stop_grace_period: Some(5 * SECOND_NS),
        ..Default::default()
    };
    let mut spec = ServiceSpec {
        name: Some(which.service(&opts.stack)),
        labels: Some(labels(&[
            (NAMESPACE, opts.stack.as_str()),
            ("com.docker.stack.image", a.launcher_image.as_str()),
            (ROLE, "launcher"),
        ])),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    memory_bytes: Some(64 * 1024 * 1024),
                    nano_cpus: Some(250_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(5 * SECOND_NS),
                max_attempts: Some(0),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(constraints(a, which)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            global: Some(Default::default()),
            ..Default::default()
        }),
        // The fleet rolls `roll_parallelism` nodes at a time (default one); a node whose new
        // agent never gets healthy (its launcher's health check fails) pauses the roll, the
        // nodes not yet reached keep the old agent.
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::from(a.roll_parallelism.max(1))),
            order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
            monitor: Some(10 * SECOND_NS),
            ..Default::default()
        }),
        ..Default::default()
    };
    let canonical = serde_json::to_value(&spec)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let hash = crate::assets::short_hash(canonical.as_bytes());
    if let Some(l) = spec.labels.as_mut() {
        l.insert(super::SPEC_HASH.into(), hash);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents() -> Agents {
        Agents {
            agent_image: "edgesense/agent:local".into(),
            launcher_image: DEFAULT_LAUNCHER_IMAGE.into(),
            config: Some("simulate = true\n".into()),
            named: vec![("shed".into(), "node = \"x\"\n".into())],
            roll_parallelism: 1,
        }
    }

    #[test]
    fn one_launcher_per_config_placed_by_node_labels() {
        let opts = StackOptions::default();
        let a = agents();
        let c = |w: Which| {
            service(&opts, &a, w, None, &secrets::fixture(false))
                .task_template
                .unwrap()
                .placement
                .unwrap()
                .constraints
                .unwrap()
        };
        assert_eq!(
            c(Which::Default),
            [
                "node.labels.edgesense.agent != false",
                "node.labels.edgesense.config != shed"
            ]
        );
        assert_eq!(
            c(Which::Named("shed")),
            [
                "node.labels.edgesense.agent != false",
                "node.labels.edgesense.config == shed"
            ]
        );
        assert_eq!(c(Which::Off), ["node.labels.edgesense.agent == false"]);
        assert_eq!(
            Which::Named("shed").service("edgesense"),
            "edgesense_launcher-shed"
        );
    }

    #[test]
    fn least_privilege_and_a_health_check_that_gates_the_roll() {
        let opts = StackOptions::default();
        let a = agents();
        let cfg = config_file("edgesense", Which::Default, a.config.as_deref().unwrap());
        let all = secrets::fixture(false);
        let s = service(&opts, &a, Which::Default, Some(&cfg), &all);
        assert!(
            s.mode.as_ref().unwrap().global.is_some(),
            "one task per node"
        );
        let u = s.update_config.as_ref().unwrap();
        assert_eq!(u.parallelism, Some(1));
        let wide = Agents {
            roll_parallelism: 10,
            ..agents()
        };
        let s10 = service(&opts, &wide, Which::Default, Some(&cfg), &all);
        assert_eq!(s10.update_config.unwrap().parallelism, Some(10));
        assert_eq!(
            u.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE)
        );
        let t = s.task_template.as_ref().unwrap();
        assert!(t.networks.is_none(), "it talks to its node's socket only");
        let c = t.container_spec.as_ref().unwrap();
        assert_eq!(c.read_only, Some(true));
        assert_eq!(c.capability_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(
            c.env.as_deref(),
            Some(&["EDGESENSE_NODE={{.Node.Hostname}}".to_owned()][..])
        );
        assert!(c
            .health_check
            .as_ref()
            .unwrap()
            .test
            .as_ref()
            .unwrap()
            .contains(&"--probe".to_owned()));
        let args = c.args.as_ref().unwrap().join(" ");
        assert_eq!(
            args,
            "launcher --stack edgesense --network core-infra --agent-image edgesense/agent:local"
        );
        assert_eq!(c.configs.as_ref().unwrap()[0].config_name, Some(cfg.name));
        assert!(s.endpoint_spec.is_none(), "no port");
        let mounted: Vec<(String, String)> = c
            .secrets
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| {
                let f = r.file.as_ref().unwrap();
                assert_eq!((f.uid.as_deref(), f.mode), (Some("0"), Some(0o400)));
                (r.secret_name.clone().unwrap(), f.name.clone().unwrap())
            })
            .collect();
        assert_eq!(
            mounted,
            [
                ("edgesense_ca_x", "edgesense_ca.crt"),
                ("edgesense_tls_agent_x", "edgesense_agent.pem"),
                ("edgesense_agent_tokens_x", "edgesense_token"),
                (
                    "edgesense_password_agent_x",
                    "edgesense_alertmanager_password"
                ),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned())),
            "the agents' credentials, and no CA key"
        );
        let off = service(&opts, &a, Which::Off, None, &all);
        let oc = off.task_template.unwrap().container_spec.unwrap();
        assert!(oc.args.unwrap().contains(&"--absent".to_owned()));
        assert!(oc.secrets.is_none() && oc.configs.is_none());
    }
}
