//! `edgesense stack up`: makes the swarm match the [`Plan`], changing only what differs, then
//! waits until the services run and Prometheus answers.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bollard::{
    models::{ConfigSpec, NetworkCreateRequest, VolumeCreateRequest},
    query_parameters::{
        InspectServiceOptions, ListConfigsOptions, ListSecretsOptions, ListTasksOptions,
        UpdateServiceOptions,
    },
    Docker,
};

use crate::{
    docker::ensure_manager,
    error::{is_not_found, Context, Result, StackError},
    http,
    plan::{Plan, StackOptions, NAMESPACE, ROLE, SPEC_HASH},
    progress::Progress,
    subnet::Net,
};

/// What `up` did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        !(self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

pub fn filters(pairs: &[(&str, String)]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        m.entry((*k).to_owned()).or_default().push(v.clone());
    }
    m
}

fn ns_label(stack: &str) -> String {
    format!("{NAMESPACE}={stack}")
}

pub(crate) fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The network `name` if it exists (`None` if not); an error if it is no attachable overlay
/// network (encrypted if `encrypted`). Changes nothing: `stack up` asks before it makes
/// anything.
pub async fn check_network(
    docker: &Docker,
    name: &str,
    encrypted: bool,
) -> Result<Option<bollard::models::NetworkInspect>> {
    match docker.inspect_network(name, None).await {
        Ok(n) => {
            let is_encrypted = n
                .options
                .as_ref()
                .is_some_and(|o| o.contains_key("encrypted"));
            if encrypted && !is_encrypted {
                return Err(StackError::BadNetwork {
                    name: name.into(),
                    what: "an overlay network without encryption (an existing network cannot be encrypted: `edgesense stack down`, stop the agents, and `stack up --encrypted-overlay` again)".into(),
                });
            }
            let driver = n.driver.as_deref().unwrap_or_default();
            if driver != "overlay" {
                return Err(StackError::BadNetwork {
                    name: name.into(),
                    what: format!("a \"{driver}\" network, not an overlay one"),
                });
            }
            if n.attachable != Some(true) {
                return Err(StackError::BadNetwork {
                    name: name.into(),
                    what: "an overlay network that is not attachable (agent containers started with `docker run` could not join it)".into(),
                });
            }
            Ok(Some(n))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).context(|| format!("inspect network {name}")),
    }
}

/// The node Prometheus stays on: its TSDB is a local volume, so a task started on another
/// manager would start empty. The node its service is pinned to already, else the node its
/// running task is on, else this one (where `stack up` runs, a manager).
pub async fn prometheus_node(docker: &Docker, stack: &str) -> Result<String> {
    let service = format!("{stack}_prometheus");
    match docker
        .inspect_service(&service, None::<InspectServiceOptions>)
        .await
    {
        Ok(s) => {
            let pinned = s
                .spec
                .and_then(|s| s.task_template)
                .and_then(|t| t.placement)
                .and_then(|p| p.constraints)
                .unwrap_or_default()
                .iter()
                .find_map(|c| c.strip_prefix(NODE_ID_IS).map(str::to_owned));
            if let Some(id) = pinned {
                return Ok(id);
            }
            let tasks = tasks_to_run(docker, &service).await?;
            if let Some(id) = tasks.iter().find_map(|t| t.node_id.clone()) {
                return Ok(id);
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).context(|| format!("inspect service {service}")),
    }
    let info = docker.info().await.context(|| "docker info".into())?;
    info.swarm
        .and_then(|s| s.node_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| StackError::Input("this Docker has no swarm node ID".into()))
}

/// A placement constraint pinning a service to one node (followed by its ID).
pub const NODE_ID_IS: &str = "node.id == ";

/// The overlay's gateway address (IPAM): an address inside the overlay that needs no DNS, so a
/// task can find its own overlay address before it is healthy (Docker's DNS lists a task with
/// a health check only once it is healthy: two Alertmanagers resolving each other at start
/// would wait for each other).
///
/// A network just created has no subnet yet: the swarm's allocator gives it one a moment
/// later, so this asks again for a while.
pub async fn overlay_gateway(docker: &Docker, network: &str) -> Result<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = docker
            .inspect_network(network, None)
            .await
            .context(|| format!("inspect network {network}"))?;
        let gateway = n
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .iter()
            .find_map(|c| {
                c.gateway
                    .clone()
                    .filter(|g| g.parse::<std::net::Ipv4Addr>().is_ok())
            });
        if gateway.is_some() || Instant::now() >= deadline {
            return Ok(gateway);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many managers the swarm has.
pub async fn managers(docker: &Docker) -> Result<usize> {
    Ok(docker
        .list_nodes(Some(bollard::query_parameters::ListNodesOptions {
            filters: Some(filters(&[("role", "manager".into())])),
        }))
        .await
        .context(|| "list the managers".into())?
        .len())
}

/// How many Alertmanagers `stack up` runs: `asked` (`--alertmanagers`), else a pair where the
/// swarm has two managers or more and the image carries `/bin/edgesense-probe` (an
/// `edgesense/` image: without it a task may advertise docker_gwbridge's address, which the
/// other manager cannot reach), else one.
pub async fn alertmanagers(docker: &Docker, asked: Option<u32>, image: &str) -> Result<u32> {
    if let Some(n) = asked {
        return Ok(n);
    }
    if !image.starts_with("edgesense/") {
        return Ok(1);
    }
    Ok(if managers(docker).await? >= 2 { 2 } else { 1 })
}

/// Refuses more Alertmanagers than the swarm has managers: each needs a manager of its own
/// (its volume is local), and a task with nowhere to go would wait forever.
pub async fn check_managers(docker: &Docker, alertmanagers: u32) -> Result<()> {
    if alertmanagers <= 1 {
        return Ok(());
    }
    let managers = managers(docker).await?;
    if managers < alertmanagers as usize {
        return Err(StackError::Input(format!(
            "--alertmanagers {alertmanagers} needs {alertmanagers} managers, each running one with its own volume; this swarm has {managers} (`docker node promote` a node, or ask for fewer)"
        )));
    }
    Ok(())
}

/// Makes sure `name` is an attachable overlay network, encrypted if `encrypted`; creates it if
/// missing, refuses (never deletes) one that is not.
pub async fn ensure_network(
    docker: &Docker,
    name: &str,
    encrypted: bool,
    subnet: Option<Net>,
    out: &mut Outcome,
) -> Result<()> {
    if let Some(n) = check_network(docker, name, encrypted).await? {
        // How many it holds: a fleet that outgrows Docker's /24 fails to attach its next agent.
        let nodes = docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_or(1, |n| n.len());
        let room = subnets(n.ipam.as_ref())
            .first()
            .map(|s| (*s, s.room(nodes)));
        out.unchanged.push(match room {
            Some((s, room)) if s.prefix >= 24 => format!(
                "network {name} ({s}: room for {room} agents and services; a larger fleet needs `stack down`, the agents stopped, and `stack up --subnet`)"
            ),
            Some((s, room)) => format!("network {name} ({s}: room for {room})"),
            None => format!("network {name}"),
        });
    } else {
        let subnet = match subnet {
            Some(s) => s,
            None => {
                let all = docker
                    .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
                    .await
                    .context(|| "list networks".into())?;
                let taken: Vec<Net> = all.iter().flat_map(|n| subnets(n.ipam.as_ref())).collect();
                crate::subnet::free(&taken).ok_or_else(|| {
                    StackError::Input(format!(
                        "no free /{} left in 10.128.0.0/12 for network {name}: give one with --subnet",
                        crate::subnet::PREFIX
                    ))
                })?
            }
        };
        docker
            .create_network(NetworkCreateRequest {
                name: name.into(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                labels: Some([("com.edgesense.network".to_owned(), "true".to_owned())].into()),
                options: encrypted.then(|| [("encrypted".to_owned(), String::new())].into()),
                ipam: Some(bollard::models::Ipam {
                    config: Some(vec![bollard::models::IpamConfig {
                        subnet: Some(subnet.to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .context(|| format!("create network {name} ({subnet})"))?;
        out.created.push(format!(
            "network {name} ({subnet}: room for {})",
            subnet.room(1)
        ));
    }
    Ok(())
}

/// The IPv4 subnets of a network's IPAM config.
fn subnets(ipam: Option<&bollard::models::Ipam>) -> Vec<Net> {
    ipam.and_then(|i| i.config.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| Net::parse(c.subnet.as_deref()?))
        .collect()
}

/// Applies `plan`: configs and volumes first, then services; then removes the stack's configs
/// and secrets that nothing uses any more.
pub async fn apply(
    docker: &Docker,
    opts: &StackOptions,
    plan: &Plan,
    out: &mut Outcome,
) -> Result<()> {
    let stack = &opts.stack;
    let have = docker
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters(&[("label", ns_label(stack))])),
        }))
        .await
        .context(|| "list configs".into())?;
    let have_names: Vec<String> = have
        .iter()
        .filter_map(|c| c.spec.as_ref()?.name.clone())
        .collect();
    for c in &plan.configs {
        if have_names.contains(&c.name) {
            out.unchanged.push(format!("config {}", c.name));
            continue;
        }
        docker
            .create_config(ConfigSpec {
                name: Some(c.name.clone()),
                labels: Some([(NAMESPACE.to_owned(), stack.clone())].into()),
                data: Some(base64(c.data.as_bytes())),
                ..Default::default()
            })
            .await
            .context(|| format!("create config {}", c.name))?;
        out.created.push(format!("config {}", c.name));
    }
    for v in &plan.volumes {
        match docker.inspect_volume(v).await {
            Ok(_) => out.unchanged.push(format!("volume {v}")),
            Err(e) if is_not_found(&e) => {
                docker
                    .create_volume(VolumeCreateRequest {
                        name: Some(v.clone()),
                        labels: Some([(NAMESPACE.to_owned(), stack.clone())].into()),
                        ..Default::default()
                    })
                    .await
                    .context(|| format!("create volume {v}"))?;
                out.created.push(format!("volume {v}"));
            }
            Err(e) => return Err(e).context(|| format!("inspect volume {v}")),
        }
    }
    // Swarm wants config and secret IDs in a service spec, not just names.
    let config_ids: HashMap<String, String> = docker
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters(&[("label", ns_label(stack))])),
        }))
        .await
        .context(|| "list configs".into())?
        .into_iter()
        .filter_map(|c| Some((c.spec?.name?, c.id?)))
        .collect();
    let secret_ids: HashMap<String, String> = docker
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters(&[("label", ns_label(stack))])),
        }))
        .await
        .context(|| "list secrets".into())?
        .into_iter()
        .filter_map(|s| Some((s.spec?.name?, s.id?)))
        .collect();
    for spec in &plan.services {
        let mut spec = spec.clone();
        with_ids(&mut spec, &config_ids, &secret_ids)?;
        let spec = &spec;
        let name = spec.name.clone().unwrap_or_default();
        let want = spec.labels.as_ref().and_then(|l| l.get(SPEC_HASH)).cloned();
        match docker
            .inspect_service(&name, None::<InspectServiceOptions>)
            .await
        {
            Ok(current) => {
                let have = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.labels.as_ref())
                    .and_then(|l| l.get(SPEC_HASH))
                    .cloned();
                if have == want {
                    out.unchanged.push(format!("service {name}"));
                    continue;
                }
                update_service(docker, &name, spec.clone(), current.version).await?;
                out.updated.push(format!("service {name}"));
            }
            Err(e) if is_not_found(&e) => {
                docker
                    .create_service(spec.clone(), None)
                    .await
                    .context(|| format!("create service {name}"))?;
                out.created.push(format!("service {name}"));
            }
            Err(e) => return Err(e).context(|| format!("inspect service {name}")),
        }
    }
    // Launchers the plan no longer has (`stack up` without --agents, a config name dropped) go;
    // the agents they ran stay as they are.
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions {
            filters: Some(filters(&[
                ("label", ns_label(stack)),
                ("label", format!("{ROLE}=launcher")),
            ])),
            ..Default::default()
        }))
        .await
        .context(|| "list services".into())?;
    for s in services {
        let Some(name) = s.spec.and_then(|s| s.name) else {
            continue;
        };
        if plan.services.iter().any(|p| p.name.as_ref() == Some(&name)) {
            continue;
        }
        docker
            .delete_service(&name)
            .await
            .context(|| format!("remove service {name}"))?;
        out.removed.push(format!("service {name}"));
    }
    // Old configs (other hashes) go once no task uses them; one still in use stays for the next
    // `up` or `down`.
    for c in have {
        let Some(name) = c.spec.and_then(|s| s.name) else {
            continue;
        };
        if plan.configs.iter().any(|p| p.name == name) {
            continue;
        }
        if docker.delete_config(&name).await.is_ok() {
            out.removed.push(format!("config {name}"));
        }
    }
    Ok(())
}

/// Updates service `name` to `spec`, at the version it was read at (a concurrent change makes
/// Docker refuse rather than lose one of them).
pub async fn update_service(
    docker: &Docker,
    name: &str,
    spec: bollard::models::ServiceSpec,
    version: Option<bollard::models::ObjectVersion>,
) -> Result<()> {
    let version = version.and_then(|v| v.index).unwrap_or(0);
    docker
        .update_service(
            name,
            spec,
            UpdateServiceOptions {
                version: i32::try_from(version).unwrap_or(i32::MAX),
                ..Default::default()
            },
            None,
        )
        .await
        .context(|| format!("update service {name}"))?;
    Ok(())
}

/// Fills in the IDs of the configs and secrets `spec` names.
fn with_ids(
    spec: &mut bollard::models::ServiceSpec,
    configs: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<()> {
    let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(());
    };
    for r in c.configs.iter_mut().flatten() {
        let name = r.config_name.clone().unwrap_or_default();
        r.config_id =
            Some(configs.get(&name).cloned().ok_or_else(|| {
                StackError::Input(format!("config {name} vanished while deploying"))
            })?);
    }
    for r in c.secrets.iter_mut().flatten() {
        let name = r.secret_name.clone().unwrap_or_default();
        r.secret_id =
            Some(secrets.get(&name).cloned().ok_or_else(|| {
                StackError::Input(format!("secret {name} vanished while deploying"))
            })?);
    }
    Ok(())
}

/// The tasks of `service` that swarm wants running (some may still be starting).
async fn tasks_to_run(docker: &Docker, service: &str) -> Result<Vec<bollard::models::Task>> {
    docker
        .list_tasks(Some(ListTasksOptions {
            filters: Some(filters(&[
                ("service", service.to_owned()),
                ("desired-state", "running".into()),
            ])),
        }))
        .await
        .context(|| format!("list tasks of {service}"))
}

/// The address of the node where `service`'s running task is: where its host-mode published
/// ports listen. `None` while no task runs.
///
/// Swarm reports a node's `Status.Addr` as `0.0.0.0` on some managers (moby/moby#35437); the
/// manager's own raft address says where it is then.
pub async fn service_address(docker: &Docker, service: &str) -> Result<Option<String>> {
    let tasks = tasks_to_run(docker, service).await?;
    let Some(node_id) = tasks
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.state.as_ref())
                .is_some_and(|st| st.to_string() == "running")
        })
        .find_map(|t| t.node_id.clone())
    else {
        return Ok(None);
    };
    let node = docker
        .inspect_node(&node_id)
        .await
        .context(|| format!("inspect node {node_id}"))?;
    let addr = node
        .status
        .and_then(|s| s.addr)
        .filter(|a| !a.is_empty() && a != "0.0.0.0");
    let from_raft = || {
        let raft = node.manager_status.as_ref()?.addr.clone()?;
        raft.rsplit_once(':').map(|(h, _)| h.to_owned())
    };
    Ok(addr.or_else(from_raft))
}

/// Waits until every service of `plan` has a running task and, when Prometheus is published on
/// `prometheus_port`, until it answers `/-/ready` on the node its task runs on (host-mode ports
/// listen there, which need not be the machine this CLI runs on). Returns that URL.
pub async fn wait_ready(
    docker: &Docker,
    plan: &Plan,
    access: &http::Access,
    prometheus_port: u16,
    limit: Duration,
    progress: &mut Progress,
) -> Result<Option<String>> {
    let started = Instant::now();
    let prometheus = plan
        .services
        .first()
        .and_then(|s| s.name.clone())
        .unwrap_or_default();
    loop {
        let mut waiting = Vec::new();
        for s in &plan.services {
            let name = s.name.clone().unwrap_or_default();
            let tasks = tasks_to_run(docker, &name).await?;
            let is_running = |t: &bollard::models::Task| {
                t.status
                    .as_ref()
                    .and_then(|s| s.state.as_ref())
                    .is_some_and(|st| st.to_string() == "running")
            };
            // A global service (the launchers) has a task per eligible node, possibly none:
            // every one of them must run. A replicated one needs all its replicas running (an
            // Alertmanager pair is only a pair with both).
            let global = s.mode.as_ref().is_some_and(|m| m.global.is_some());
            let replicas = s
                .mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas)
                .unwrap_or(1)
                .max(1);
            let running = if global {
                tasks.iter().all(is_running)
            } else {
                tasks.iter().filter(|t| is_running(t)).count() >= replicas as usize
            };
            if !running {
                let state = tasks
                    .iter()
                    .filter(|t| !is_running(t))
                    .filter_map(|t| {
                        let s = t.status.as_ref()?;
                        let err = s.err.clone().unwrap_or_default();
                        Some(format!(
                            "{}{}",
                            s.state.as_ref()?,
                            if err.is_empty() {
                                String::new()
                            } else {
                                format!(": {err}")
                            }
                        ))
                    })
                    .next()
                    .unwrap_or_else(|| "no task yet".into());
                waiting.push(format!("{name} ({state})"));
            }
        }
        let mut url = None;
        let ready = if !waiting.is_empty() {
            false
        } else if prometheus_port != 0 {
            match service_address(docker, &prometheus).await? {
                None => {
                    waiting.push(format!("{prometheus} (no running task)"));
                    false
                }
                Some(addr) => {
                    let u = format!("https://{addr}:{prometheus_port}");
                    let answer = access
                        .get(&format!("{u}/-/ready"), Duration::from_secs(2))
                        .await;
                    url = Some(u.clone());
                    match answer {
                        Ok((200, _)) => true,
                        Ok((status, _)) => {
                            waiting.push(format!("Prometheus at {u}/-/ready answers {status}"));
                            false
                        }
                        Err(e) => {
                            waiting.push(format!("Prometheus at {u} not answering ({e})"));
                            false
                        }
                    }
                }
            }
        } else {
            true
        };
        let elapsed = started.elapsed();
        if ready {
            progress.done(&format!("stack ready after {:.0} s", elapsed.as_secs_f64()));
            return Ok(url);
        }
        if elapsed > limit {
            return Err(StackError::Timeout(format!(
                "not ready after {}s: waiting for {}\n  `edgesense stack status` shows the tasks; `docker service ps --no-trunc <service>` why a task fails",
                limit.as_secs(),
                waiting.join(", ")
            )));
        }
        progress.set(&format!(
            "[{:>3.0} s] waiting for {}",
            elapsed.as_secs_f64(),
            waiting.join(", ")
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `stack up` from start to end, with the stack's secrets resolved
/// ([`crate::secrets::resolve`]).
pub async fn up(
    docker: &Docker,
    opts: &StackOptions,
    files: &crate::assets::Rendered,
    secrets: &crate::plan::StackSecrets,
    progress: &mut Progress,
) -> Result<(Outcome, Plan)> {
    ensure_manager(docker).await?;
    let mut out = Outcome::default();
    progress.set(&format!("network {}", opts.network));
    ensure_network(
        docker,
        &opts.network,
        opts.encrypted_overlay,
        opts.subnet,
        &mut out,
    )
    .await?;
    let opts = &StackOptions {
        // Only the pair uses it (and asking may wait for the network's subnet).
        overlay_gateway: if opts.alertmanagers > 1 {
            overlay_gateway(docker, &opts.network).await?
        } else {
            None
        },
        ..opts.clone()
    };
    let plan = crate::plan::plan(opts, files, secrets);
    progress.set("secrets");
    crate::secrets::create(docker, &opts.stack, &plan, &mut out).await?;
    progress.set("configs, volumes and services");
    apply(docker, opts, &plan, &mut out).await?;
    crate::secrets::remove_unused(docker, &opts.stack, &plan, &mut out).await?;
    Ok((out, plan))
}
