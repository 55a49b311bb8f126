//! What the stack is made of, computed from the flags alone (no Docker calls): configs named by
//! content hash, the token secret, volumes, and the two service specs. `stack up` applies it,
//! `stack render` writes it as a compose file.

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

pub mod launcher;
pub mod secrets;

use crate::assets::{short_hash, Rendered};
pub use launcher::Agents;
pub use secrets::{SecretFile, StackSecrets};

/// The label Docker's own `docker stack` uses; `docker stack ls/ps/rm` see our stack too.
pub const NAMESPACE: &str = "com.docker.stack.namespace";
/// A hash of the spec we asked for: equal means `stack up` has nothing to do.
pub const SPEC_HASH: &str = "com.edgesense.spec";
/// Marks the webhook token secret.
pub const ROLE: &str = "com.edgesense.role";
/// The overlay network agents and services share.
pub const DEFAULT_NETWORK: &str = "core-infra";
/// Pinned upstream images.
pub const PROMETHEUS_IMAGE: &str = "prom/prometheus:v2.53.2";
pub const ALERTMANAGER_IMAGE: &str = "prom/alertmanager:v0.27.0";

/// How the services' health is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Healthcheck {
    /// `probe` for `edgesense/…` images, `wget` otherwise.
    Auto,
    /// `/bin/edgesense-probe --probe URL`: the local FROM-scratch images carry the agent binary.
    Probe,
    /// `wget -q -O /dev/null URL`: upstream images are busybox-based.
    Wget,
    None,
}

/// Everything `stack up` and `stack render` need.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub stack: String,
    pub network: String,
    pub prometheus_image: String,
    pub alertmanager_image: String,
    /// Host port for Prometheus / Alertmanager (host mode, on the node running the task); 0: none.
    pub prometheus_port: u16,
    pub alertmanager_port: u16,
    pub healthcheck: Healthcheck,
    /// Add Grafana with this image, the edgesense dashboard provisioned.
    pub grafana: Option<String>,
    /// Host port for Grafana (0: not published).
    pub grafana_port: u16,
    /// `--agents`: the launcher services that run every node's agent.
    pub agents: Option<Agents>,
    /// `--encrypted-overlay`: the overlay's VXLAN traffic in IPsec ESP.
    pub encrypted_overlay: bool,
    /// `--subnet`: the overlay's addresses when `stack up` creates it (default: a free /20).
    pub subnet: Option<crate::subnet::Net>,
    /// Alertmanagers: one, or a pair (or more) on managers of their own, clustered.
    pub alertmanagers: u32,
    /// An address inside the overlay (its gateway), towards which a task finds its own overlay
    /// address without DNS; None: the Alertmanagers' alias (`stack render`).
    pub overlay_gateway: Option<String>,
    /// The node Prometheus is pinned to (its TSDB volume is there); None: any manager
    /// (`stack render`, which asks no Docker).
    pub prometheus_node: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            stack: "edgesense".into(),
            network: DEFAULT_NETWORK.into(),
            prometheus_image: PROMETHEUS_IMAGE.into(),
            alertmanager_image: ALERTMANAGER_IMAGE.into(),
            prometheus_port: 9090,
            alertmanager_port: 9093,
            healthcheck: Healthcheck::Auto,
            grafana: None,
            grafana_port: 3000,
            agents: None,
            encrypted_overlay: false,
            subnet: None,
            alertmanagers: 1,
            prometheus_node: None,
            overlay_gateway: None,
        }
    }
}

/// One swarm config: its name (with the content hash), content and where it is mounted.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    /// Key in compose files (`prometheus_yml`).
    pub key: String,
    pub name: String,
    pub data: String,
    /// The file name in `stack render` output.
    pub file: String,
    pub target: String,
}

/// The whole stack.
#[derive(Clone, Debug)]
pub struct Plan {
    pub configs: Vec<ConfigFile>,
    pub secrets: StackSecrets,
    pub volumes: Vec<String>,
    /// Prometheus, then Alertmanager.
    pub services: Vec<ServiceSpec>,
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const SECOND_NS: i64 = 1_000_000_000;

/// A service's health check: the command for the local FROM-scratch images (their probe, the
/// agent binary) and the one for upstream images (their own tools).
struct Check {
    probe: Vec<String>,
    upstream: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl Check {
    /// `GET https://127.0.0.1:PORT/PATH` with the fleet CA and the service's `self` user:
    /// the web config guards every path, `/-/ready` too. Upstream: `tool` with the
    /// `health.yml` client config (promtool ≥ 2.44, amtool ≥ 0.25 read `--http.config.file`).
    fn web(port: u16, path: &str, upstream: Vec<String>) -> Check {
        Check {
            probe: vec![
                "/bin/edgesense-probe".into(),
                "--probe".into(),
                format!("https://127.0.0.1:{port}{path}"),
                "--tls-ca".into(),
                secrets::path(secrets::CA_TARGET),
                "--probe-user".into(),
                crate::credentials::USER_SELF.into(),
                "--probe-password-file".into(),
                secrets::path(secrets::SELF_PASSWORD_TARGET),
            ],
            upstream,
        }
    }
}

fn health(kind: Healthcheck, image: &str, check: Check) -> Option<HealthConfig> {
    let kind = match kind {
        Healthcheck::Auto if image.starts_with("edgesense/") => Healthcheck::Probe,
        Healthcheck::Auto => Healthcheck::Wget,
        k => k,
    };
    let mut test = vec!["CMD".to_owned()];
    match kind {
        Healthcheck::Probe => test.extend(check.probe),
        Healthcheck::Wget => test.extend(check.upstream),
        Healthcheck::None | Healthcheck::Auto => return None,
    }
    Some(HealthConfig {
        test: Some(test),
        interval: Some(10 * SECOND_NS),
        timeout: Some(5 * SECOND_NS),
        retries: Some(3),
        start_period: Some(30 * SECOND_NS),
        ..Default::default()
    })
}

/// Where a task finds the configs and secrets it mounts, and as whom.
fn secret_refs(
    all: &StackSecrets,
    wanted: &[(&str, &str)],
    owner: &str,
) -> Vec<TaskSpecContainerSpecSecrets> {
    wanted
        .iter()
        .map(|(key, target)| TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some((*target).to_owned()),
                uid: Some(owner.to_owned()),
                gid: Some(owner.to_owned()),
                mode: Some(0o400),
            }),
            secret_name: Some(all.name(key).to_owned()),
            ..Default::default()
        })
        .collect()
}

struct Service<'a> {
    name: &'a str,
    check: Check,
    image: &'a str,
    args: Vec<String>,
    env: Vec<String>,
    alias: &'a str,
    port: u16,
    published: u16,
    configs: Vec<&'a ConfigFile>,
    /// (key, target) of each secret it mounts, from [`secrets`].
    secrets: &'a [(&'a str, &'a str)],
    /// The uid (and gid) the task runs as: its secrets are that user's, mode 0400.
    user: &'a str,
    volume: (&'a str, &'a str),
    memory_mib: i64,
    nano_cpus: i64,
    /// Tasks, each on a manager of its own (its volume is local to that node).
    replicas: i64,
    /// Replaces the image's entrypoint (the arguments follow it).
    command: Option<Vec<String>>,
    /// Pinned to this node (besides being on a manager).
    node: Option<&'a str>,
}

fn service(opts: &StackOptions, all: &StackSecrets, s: Service) -> ServiceSpec {
    let ns = [(NAMESPACE, opts.stack.as_str())];
    let container = TaskSpecContainerSpec {
        image: Some(s.image.to_owned()),
        labels: Some(labels(&ns)),
        command: s.command,
        args: (!s.args.is_empty()).then_some(s.args),
        env: (!s.env.is_empty()).then_some(s.env),
        health_check: health(opts.healthcheck, s.image, s.check),
        configs: Some(
            s.configs
                .iter()
                .map(|c| TaskSpecContainerSpecConfigs {
                    file: Some(TaskSpecContainerSpecFile1 {
                        name: Some(c.target.clone()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o444),
                    }),
                    config_name: Some(c.name.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        secrets: Some(secret_refs(all, s.secrets, s.user)),
        mounts: Some(vec![Mount {
            target: Some(s.volume.1.to_owned()),
            source: Some(s.volume.0.to_owned()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(labels(&ns)),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        stop_grace_period: Some(10 * SECOND_NS),
        ..Default::default()
    };
    let ports = (s.published != 0).then(|| {
        vec![EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(s.port)),
            published_port: Some(i64::from(s.published)),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        }]
    });
    let mut spec = ServiceSpec {
        name: Some(format!("{}_{}", opts.stack, s.name)),
        labels: Some(labels(&[
            (NAMESPACE, opts.stack.as_str()),
            ("com.docker.stack.image", s.image),
        ])),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    memory_bytes: Some(s.memory_mib * 1024 * 1024),
                    nano_cpus: Some(s.nano_cpus),
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
            // The data volume is local to one node: keep the service on the managers, each
            // task of a pair on a manager of its own (with a volume of its own).
            placement: Some(TaskSpecPlacement {
                constraints: Some(
                    std::iter::once("node.role == manager".to_owned())
                        .chain(s.node.map(|id| format!("{}{id}", crate::up::NODE_ID_IS)))
                        .collect(),
                ),
                max_replicas: (s.replicas > 1).then_some(1),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(opts.network.clone()),
                aliases: Some(vec![s.alias.to_owned()]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(s.replicas),
            }),
            ..Default::default()
        }),
        // One task owns the volume: stop the old one before starting the new one.
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            ..Default::default()
        }),
        // VIPs do not suit a one-replica service and do not route on some hosts: DNS round robin.
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports,
        }),
        ..Default::default()
    };
    // Through a JSON value, whose maps are sorted, so label order cannot change the hash.
    let canonical = serde_json::to_value(&spec)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let hash = short_hash(canonical.as_bytes());
    if let Some(l) = spec.labels.as_mut() {
        l.insert(SPEC_HASH.into(), hash);
    }
    spec
}

/// The http client config of the upstream images' own health checks (promtool, amtool).
pub const HEALTH_CLIENT_YML: &str =
    "# edgesense stack up: how promtool/amtool check this service's health.
basic_auth:
  username: self
  password_file: /run/secrets/edgesense_self_password
tls_config:
  ca_file: /run/secrets/edgesense_ca.crt
";

/// The Alertmanagers' gossip port (TCP, with TLS).
pub const CLUSTER_PORT: u16 = 9094;

/// Mutual TLS between the Alertmanagers of a pair (`--cluster.tls-config`, Alertmanager 0.24+):
/// each presents the stack's Alertmanager certificate and takes only one from the fleet CA.
pub const CLUSTER_TLS_YML: &str =
    "# edgesense stack up: mutual TLS between the stack's Alertmanagers (gossip).
tls_server_config:
  cert_file: /run/secrets/edgesense_tls.pem
  key_file: /run/secrets/edgesense_tls.pem
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: /run/secrets/edgesense_ca.crt
tls_client_config:
  cert_file: /run/secrets/edgesense_tls.pem
  key_file: /run/secrets/edgesense_tls.pem
  ca_file: /run/secrets/edgesense_ca.crt
  server_name: alertmanager
";

/// The user Debian's and upstream's Prometheus and Alertmanager images run as (nobody).
const NOBODY: &str = "65534";
/// The user of Grafana's image.
const GRAFANA_USER: &str = "472";

/// The stack for `opts`, its rendered files and its secrets.
pub fn plan(opts: &StackOptions, files: &Rendered, secrets: &StackSecrets) -> Plan {
    let stack = &opts.stack;
    let config = |key: &str, data: &str, file: &str, target: &str| ConfigFile {
        key: key.to_owned(),
        name: format!("{stack}_{key}_{}", short_hash(data.as_bytes())),
        data: data.to_owned(),
        file: file.to_owned(),
        target: target.to_owned(),
    };
    let configs = vec![
        config(
            "prometheus_yml",
            &files.prometheus_yml,
            "prometheus.yml",
            "/etc/prometheus/prometheus.yml",
        ),
        config(
            "rules",
            &files.rules_yml,
            "rules/edgesense.yml",
            "/etc/prometheus/rules/edgesense.yml",
        ),
        config(
            "alertmanager_yml",
            &files.alertmanager_yml,
            "alertmanager.yml",
            "/etc/alertmanager/alertmanager.yml",
        ),
        config(
            "health_prometheus",
            HEALTH_CLIENT_YML,
            "health.yml",
            "/etc/prometheus/health.yml",
        ),
        config(
            "health_alertmanager",
            HEALTH_CLIENT_YML,
            "health.yml",
            "/etc/alertmanager/health.yml",
        ),
    ];
    let mut configs = configs;
    if opts.alertmanagers > 1 {
        configs.push(config(
            "alertmanager_cluster_yml",
            CLUSTER_TLS_YML,
            "cluster-tls.yml",
            "/etc/alertmanager/cluster-tls.yml",
        ));
    }
    let web = format!("--web.config.file={}", secrets::path(secrets::WEB_TARGET));
    let prom_volume = format!("{stack}_prometheus_data");
    let am_volume = format!("{stack}_alertmanager_data");
    let prometheus = service(
        opts,
        secrets,
        Service {
            name: "prometheus",
            check: Check::web(
                9090,
                "/-/ready",
                strings(&[
                    "promtool",
                    "check",
                    "ready",
                    "--url=https://127.0.0.1:9090",
                    "--http.config.file=/etc/prometheus/health.yml",
                ]),
            ),
            image: &opts.prometheus_image,
            args: vec![
                "--config.file=/etc/prometheus/prometheus.yml".into(),
                "--storage.tsdb.path=/prometheus".into(),
                "--storage.tsdb.retention.time=30d".into(),
                // The agents' backfill (prometheus.yml's out-of-order window takes it).
                "--web.enable-remote-write-receiver".into(),
                "--web.listen-address=:9090".into(),
                web.clone(),
            ],
            env: Vec::new(),
            alias: "prometheus",
            port: 9090,
            published: opts.prometheus_port,
            configs: vec![&configs[0], &configs[1], &configs[3]],
            secrets: secrets::PROMETHEUS,
            user: NOBODY,
            volume: (&prom_volume, "/prometheus"),
            memory_mib: 512,
            nano_cpus: 1_000_000_000,
            replicas: 1,
            command: None,
            node: opts.prometheus_node.as_deref(),
        },
    );
    // Two or more Alertmanagers gossip silences and notifications over the overlay (mutual
    // TLS with their own certificate: VXLAN is neither encrypted nor authenticated), found
    // through their alias, each advertising its overlay address (see `agent/src/overlay.rs`).
    let pair = opts.alertmanagers;
    let mut am_args = vec![
        "--config.file=/etc/alertmanager/alertmanager.yml".into(),
        "--storage.path=/alertmanager".into(),
        "--web.listen-address=:9093".into(),
        web,
    ];
    let mut am_configs = vec![&configs[2], &configs[4]];
    if pair > 1 {
        am_args.extend([
            format!("--cluster.listen-address=0.0.0.0:{CLUSTER_PORT}"),
            format!("--cluster.peer=alertmanager:{CLUSTER_PORT}"),
            "--cluster.tls-config=/etc/alertmanager/cluster-tls.yml".into(),
        ]);
        am_configs.push(&configs[5]);
    } else {
        // One instance: no gossip cluster.
        am_args.push("--cluster.listen-address=".into());
    }
    let alertmanager = service(
        opts,
        secrets,
        Service {
            name: "alertmanager",
            check: Check::web(
                9093,
                "/-/ready",
                strings(&[
                    "amtool",
                    "--alertmanager.url=https://127.0.0.1:9093",
                    "--http.config.file=/etc/alertmanager/health.yml",
                    "config",
                    "show",
                ]),
            ),
            image: &opts.alertmanager_image,
            args: am_args,
            env: Vec::new(),
            alias: "alertmanager",
            port: 9093,
            published: opts.alertmanager_port,
            configs: am_configs,
            secrets: secrets::ALERTMANAGER,
            user: NOBODY,
            volume: (&am_volume, "/alertmanager"),
            memory_mib: 128,
            nano_cpus: 500_000_000,
            replicas: i64::from(pair.max(1)),
            command: (pair > 1 && opts.alertmanager_image.starts_with("edgesense/")).then(|| {
                strings(&[
                    "/bin/edgesense-probe",
                    "--with-overlay-address",
                    &format!(
                        "{}:{CLUSTER_PORT}",
                        opts.overlay_gateway.as_deref().unwrap_or("alertmanager")
                    ),
                    "--",
                    "/bin/app",
                ])
            }),
            node: None,
        },
    );
    let mut services = vec![prometheus, alertmanager];
    let mut volumes = vec![prom_volume, am_volume];
    if let Some(image) = &opts.grafana {
        let first = configs.len();
        configs.push(config(
            "grafana_datasource",
            GRAFANA_DATASOURCE,
            "grafana/provisioning/datasources/edgesense.yml",
            "/etc/grafana/provisioning/datasources/edgesense.yml",
        ));
        configs.push(config(
            "grafana_dashboards",
            GRAFANA_PROVIDER,
            "grafana/provisioning/dashboards/edgesense.yml",
            "/etc/grafana/provisioning/dashboards/edgesense.yml",
        ));
        configs.push(config(
            "grafana_dashboard",
            crate::assets::GRAFANA_DASHBOARD,
            "grafana/edgesense.json",
            "/etc/grafana/dashboards/edgesense.json",
        ));
        let volume = format!("{stack}_grafana_data");
        let wget = strings(&[
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "--no-check-certificate",
            "https://127.0.0.1:3000/api/health",
        ]);
        services.push(service(
            opts,
            secrets,
            Service {
                name: "grafana",
                check: Check {
                    probe: wget.clone(),
                    upstream: wget,
                },
                image,
                args: Vec::new(),
                env: grafana_env(),
                alias: "grafana",
                port: 3000,
                published: opts.grafana_port,
                configs: configs[first..].iter().collect(),
                secrets: secrets::GRAFANA,
                user: GRAFANA_USER,
                volume: (&volume, "/var/lib/grafana"),
                memory_mib: 256,
                nano_cpus: 500_000_000,
                replicas: 1,
                command: None,
                node: None,
            },
        ));
        volumes.push(volume);
    }
    if let Some(a) = &opts.agents {
        use launcher::Which;
        let mut add = |which: Which, data: Option<&str>| {
            let cfg = data.map(|d| launcher::config_file(stack, which, d));
            services.push(launcher::service(opts, a, which, cfg.as_ref(), secrets));
            configs.extend(cfg);
        };
        add(Which::Default, a.config.as_deref());
        for (name, data) in &a.named {
            add(Which::Named(name), Some(data));
        }
        add(Which::Off, None);
    }
    Plan {
        volumes,
        secrets: secrets.clone(),
        services,
        configs,
    }
}

/// Grafana over HTTPS with its own certificate, its admin password from a secret (the image's
/// `__FILE` convention), no anonymous access, no sign-up.
fn grafana_env() -> Vec<String> {
    let tls = secrets::path(secrets::TLS_TARGET);
    vec![
        "GF_SERVER_PROTOCOL=https".into(),
        format!("GF_SERVER_CERT_FILE={tls}"),
        format!("GF_SERVER_CERT_KEY={tls}"),
        format!(
            "GF_SECURITY_ADMIN_PASSWORD__FILE={}",
            secrets::path(secrets::GRAFANA_ADMIN_TARGET)
        ),
        "GF_AUTH_ANONYMOUS_ENABLED=false".into(),
        "GF_USERS_ALLOW_SIGN_UP=false".into(),
        "GF_USERS_ALLOW_ORG_CREATE=false".into(),
    ]
}

/// Grafana's data source, provisioned: the stack's Prometheus by its network alias, over https
/// verified against the fleet CA, as user `grafana` (Grafana reads `$__file{…}` when it
/// provisions; the password is hex, so no `$` in it is mangled).
pub const GRAFANA_DATASOURCE: &str = "# Provisioned by `edgesense stack up --grafana`.
apiVersion: 1
datasources:
  - name: Prometheus
    uid: prometheus
    type: prometheus
    access: proxy
    url: https://prometheus:9090
    isDefault: true
    editable: false
    basicAuth: true
    basicAuthUser: grafana
    jsonData:
      tlsAuthWithCACert: true
      serverName: prometheus
    secureJsonData:
      basicAuthPassword: $__file{/run/secrets/edgesense_prometheus_password}
      tlsCACert: $__file{/run/secrets/edgesense_ca.crt}
";

/// Grafana's dashboard provider: the edgesense dashboard from a file.
pub const GRAFANA_PROVIDER: &str = "# Provisioned by `edgesense stack up --grafana`.
apiVersion: 1
providers:
  - name: edgesense
    folder: edgesense
    type: file
    disableDeletion: true
    allowUiUpdates: false
    options:
      path: /etc/grafana/dashboards
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{render, AssetOptions};

    fn p(opts: &StackOptions) -> Plan {
        plan(
            opts,
            &render(&AssetOptions::default()).unwrap(),
            &secrets::fixture(opts.grafana.is_some()),
        )
    }

    #[test]
    fn prometheus_stays_on_the_node_of_its_volume() {
        let constraints = |opts: &StackOptions| {
            p(opts).services[0]
                .task_template
                .clone()
                .unwrap()
                .placement
                .unwrap()
                .constraints
                .unwrap()
        };
        assert_eq!(
            constraints(&StackOptions::default()),
            ["node.role == manager"]
        );
        let pinned = StackOptions {
            prometheus_node: Some("n0de1d".into()),
            ..StackOptions::default()
        };
        assert_eq!(
            constraints(&pinned),
            ["node.role == manager", "node.id == n0de1d"]
        );
    }

    #[test]
    fn a_pair_of_alertmanagers_clusters_on_managers_of_their_own_with_mutual_tls() {
        let one = p(&StackOptions::default());
        let am = |plan: &Plan| plan.services[1].clone();
        let spec = |s: &ServiceSpec| {
            let t = s.task_template.clone().unwrap();
            (t.container_spec.unwrap(), t.placement.unwrap())
        };
        let (c, place) = spec(&am(&one));
        assert!(c
            .args
            .unwrap()
            .contains(&"--cluster.listen-address=".to_owned()));
        assert_eq!((c.command, place.max_replicas), (None, None));
        assert!(!one
            .configs
            .iter()
            .any(|c| c.key == "alertmanager_cluster_yml"));

        let opts = StackOptions {
            alertmanagers: 2,
            alertmanager_image: "edgesense/alertmanager:local".into(),
            ..StackOptions::default()
        };
        let two = p(&opts);
        let s = am(&two);
        assert_eq!(
            s.mode
                .as_ref()
                .unwrap()
                .replicated
                .as_ref()
                .unwrap()
                .replicas,
            Some(2)
        );
        let (c, place) = spec(&s);
        assert_eq!(place.max_replicas, Some(1), "one per manager");
        assert_eq!(
            place.constraints.as_deref(),
            Some(&["node.role == manager".to_owned()][..])
        );
        let args = c.args.unwrap();
        for a in [
            "--cluster.listen-address=0.0.0.0:9094",
            "--cluster.peer=alertmanager:9094",
            "--cluster.tls-config=/etc/alertmanager/cluster-tls.yml",
        ] {
            assert!(args.contains(&a.to_owned()), "{a} in {args:?}");
        }
        assert_eq!(
            c.command.unwrap(),
            [
                "/bin/edgesense-probe",
                "--with-overlay-address",
                "alertmanager:9094",
                "--",
                "/bin/app"
            ],
            "the overlay's address advertised, not docker_gwbridge's"
        );
        let by_gateway = p(&StackOptions {
            overlay_gateway: Some("10.0.3.1".into()),
            ..opts.clone()
        });
        let c = spec(&by_gateway.services[1]).0;
        assert_eq!(
            c.command.unwrap()[2],
            "10.0.3.1:9094",
            "an address needs no DNS, which lists a task only once it is healthy"
        );
        let cluster = two
            .configs
            .iter()
            .find(|c| c.key == "alertmanager_cluster_yml")
            .expect("the gossip's TLS config");
        assert!(cluster.data.contains("RequireAndVerifyClientCert"));
        let mounted = c.configs.unwrap();
        assert!(mounted
            .iter()
            .any(|m| m.config_name.as_deref() == Some(cluster.name.as_str())));
        assert_ne!(
            one.services[1].labels.as_ref().unwrap()[SPEC_HASH],
            s.labels.as_ref().unwrap()[SPEC_HASH],
            "a change of count is a change of spec"
        );
    }

    #[test]
    fn services_follow_the_design_contract() {
        let plan = p(&StackOptions::default());
        let names: Vec<_> = plan
            .services
            .iter()
            .map(|s| s.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["edgesense_prometheus", "edgesense_alertmanager"]);
        for s in &plan.services {
            assert_eq!(s.labels.as_ref().unwrap()[NAMESPACE], "edgesense");
            let ep = s.endpoint_spec.as_ref().unwrap();
            assert_eq!(ep.mode, Some(EndpointSpecModeEnum::DNSRR));
            let ports = ep.ports.as_ref().unwrap();
            assert_eq!(
                ports[0].publish_mode,
                Some(EndpointPortConfigPublishModeEnum::HOST)
            );
            let t = s.task_template.as_ref().unwrap();
            let net = &t.networks.as_ref().unwrap()[0];
            assert_eq!(net.target.as_deref(), Some("core-infra"));
            assert!(t.restart_policy.is_some() && t.resources.is_some());
            let c = t.container_spec.as_ref().unwrap();
            assert!(c.health_check.is_some(), "health checked");
            assert_eq!(c.mounts.as_ref().unwrap()[0].typ, Some(MountType::VOLUME));
        }
        let am = plan.services[1]
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap();
        let mounted: Vec<&str> = am
            .secrets
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.secret_name.as_deref().unwrap())
            .collect();
        assert_eq!(
            mounted,
            [
                "edgesense_ca_x",
                "edgesense_tls_alertmanager_x",
                "edgesense_web_alertmanager_x",
                "edgesense_token_x",
                "edgesense_password_self_x"
            ]
        );
        let args = am.args.as_ref().unwrap();
        assert!(args.contains(&"--web.config.file=/run/secrets/edgesense_web.yml".to_owned()));
        let hc = am.health_check.as_ref().unwrap().test.as_ref().unwrap();
        assert_eq!(
            hc[1], "amtool",
            "upstream image: its own amtool, over https"
        );
        assert!(hc
            .iter()
            .any(|a| a == "--http.config.file=/etc/alertmanager/health.yml"));
        assert!(plan
            .configs
            .iter()
            .all(|c| c.name.starts_with("edgesense_")));
        assert_eq!(
            plan.volumes,
            ["edgesense_prometheus_data", "edgesense_alertmanager_data"]
        );
    }

    #[test]
    fn same_inputs_same_hashes_and_a_threshold_changes_one_config() {
        let opts = StackOptions::default();
        let a = p(&opts);
        let b = p(&opts);
        let hash = |pl: &Plan, i: usize| pl.services[i].labels.as_ref().unwrap()[SPEC_HASH].clone();
        assert_eq!(hash(&a, 0), hash(&b, 0));
        let mut ao = AssetOptions::default();
        ao.thresholds.crit_celsius = 40.0;
        let c = plan(&opts, &render(&ao).unwrap(), &secrets::fixture(false));
        assert_eq!(
            a.configs[0].name, c.configs[0].name,
            "prometheus.yml unchanged"
        );
        assert_ne!(a.configs[1].name, c.configs[1].name, "rules changed");
        assert_ne!(hash(&a, 0), hash(&c, 0), "prometheus rolls");
        assert_eq!(hash(&a, 1), hash(&c, 1), "alertmanager untouched");
    }

    #[test]
    fn grafana_comes_with_its_provisioning() {
        let opts = StackOptions {
            grafana: Some("grafana/grafana:11.3.0".into()),
            ..StackOptions::default()
        };
        let plan = p(&opts);
        assert_eq!(plan.services.len(), 3);
        let g = &plan.services[2];
        assert_eq!(g.name.as_deref(), Some("edgesense_grafana"));
        let c = g
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap();
        let targets: Vec<String> = c
            .configs
            .as_ref()
            .unwrap()
            .iter()
            .map(|x| x.file.as_ref().unwrap().name.clone().unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "/etc/grafana/provisioning/datasources/edgesense.yml",
                "/etc/grafana/provisioning/dashboards/edgesense.yml",
                "/etc/grafana/dashboards/edgesense.json"
            ]
        );
        assert!(c.args.is_none(), "the image's own command");
        let hc = c.health_check.as_ref().unwrap().test.clone().unwrap();
        assert_eq!(
            hc.last().map(String::as_str),
            Some("https://127.0.0.1:3000/api/health")
        );
        assert_eq!(
            g.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap()[0].published_port,
            Some(3000)
        );
        let dash = plan
            .configs
            .iter()
            .find(|c| c.key == "grafana_dashboard")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&dash.data).unwrap();
        assert_eq!(v["uid"], "edgesense");
        let ds = plan
            .configs
            .iter()
            .find(|c| c.key == "grafana_datasource")
            .unwrap();
        assert!(ds.data.contains("url: https://prometheus:9090"));
        assert!(ds.data.contains("basicAuthUser: grafana"));
        let env = c.env.as_ref().unwrap();
        for e in [
            "GF_SERVER_PROTOCOL=https",
            "GF_AUTH_ANONYMOUS_ENABLED=false",
            "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/edgesense_grafana_admin",
        ] {
            assert!(env.contains(&e.to_owned()), "{e}: {env:?}");
        }
        let prov = plan
            .configs
            .iter()
            .find(|c| c.key == "grafana_dashboards")
            .unwrap();
        assert!(
            prov.data.contains("path: /etc/grafana/dashboards"),
            "the provider reads where the dashboard is mounted"
        );
        assert!(plan.volumes.contains(&"edgesense_grafana_data".to_owned()));
        assert_eq!(
            p(&StackOptions::default()).services.len(),
            2,
            "no Grafana unless asked"
        );
    }

    #[test]
    fn local_images_use_the_probe_and_port_zero_publishes_nothing() {
        let opts = StackOptions {
            prometheus_image: "edgesense/prometheus:local".into(),
            prometheus_port: 0,
            ..StackOptions::default()
        };
        let plan = p(&opts);
        let prom = &plan.services[0];
        assert!(prom.endpoint_spec.as_ref().unwrap().ports.is_none());
        let c = prom
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap();
        let test = c.health_check.as_ref().unwrap().test.clone().unwrap();
        assert_eq!(
            test[1..],
            [
                "/bin/edgesense-probe",
                "--probe",
                "https://127.0.0.1:9090/-/ready",
                "--tls-ca",
                "/run/secrets/edgesense_ca.crt",
                "--probe-user",
                "self",
                "--probe-password-file",
                "/run/secrets/edgesense_self_password"
            ]
        );
    }
}
