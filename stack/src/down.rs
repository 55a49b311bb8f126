//! `edgesense stack down`: removes the stack's services, then (once their tasks are gone) its
//! configs and secrets; its volumes only when asked; the network only if nothing uses it.

use std::time::{Duration, Instant};

use bollard::{
    query_parameters::{
        ListConfigsOptions, ListSecretsOptions, ListServicesOptions, ListTasksOptions,
        ListVolumesOptions,
    },
    Docker,
};

use crate::{
    docker::ensure_manager,
    error::{is_not_found, Context, Result},
    plan::NAMESPACE,
    progress::Progress,
    up::{filters, Outcome},
};

/// How long a network that nothing on this node holds is tried again when Docker refuses to
/// remove it (attachments released a moment late).
const NETWORK_RELEASE: Duration = Duration::from_secs(10);

pub struct DownOptions<'a> {
    pub stack: &'a str,
    pub network: &'a str,
    pub volumes: bool,
    /// Also remove the agent containers the stack's launchers made, on every node.
    pub agents: bool,
    /// The image for that (the launchers' own, else this one).
    pub launcher_image: &'a str,
    pub timeout: Duration,
}

/// A launcher service of the stack (`stack up --agents`: one task per node).
fn is_launcher(s: &bollard::models::Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(crate::plan::ROLE))
        .is_some_and(|r| r == "launcher")
}

/// Removes the launchers' agents on every node: a global job (one task per node, to
/// completion) runs `edgesense launcher --absent --once` with each node's socket, since a
/// manager's Docker API cannot reach containers on other nodes. Returns how many nodes did.
async fn remove_agents(
    docker: &Docker,
    o: &DownOptions<'_>,
    services: &[bollard::models::Service],
    progress: &mut Progress,
) -> Result<usize> {
    use crate::plan::launcher::{self, Agents, Which};
    // The launchers' image, so the job needs nothing the nodes do not have.
    let image = services
        .iter()
        .filter(|s| is_launcher(s))
        .filter_map(|s| s.spec.as_ref())
        .find_map(|s| {
            s.task_template
                .as_ref()?
                .container_spec
                .as_ref()?
                .image
                .clone()
        })
        .map(|i| i.split('@').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| o.launcher_image.to_owned());
    let opts = crate::plan::StackOptions {
        stack: o.stack.to_owned(),
        network: o.network.to_owned(),
        ..Default::default()
    };
    let a = Agents {
        agent_image: String::new(),
        launcher_image: image,
        config: None,
        named: Vec::new(),
        roll_parallelism: 1,
    };
    let mut spec = launcher::service(&opts, &a, Which::Off, None, &Default::default());
    let name = format!("{}_agents-down", o.stack);
    spec.name = Some(name.clone());
    if let Some(t) = spec.task_template.as_mut() {
        t.placement = None;
        t.restart_policy = Some(bollard::models::TaskSpecRestartPolicy {
            condition: Some(bollard::models::TaskSpecRestartPolicyConditionEnum::NONE),
            ..Default::default()
        });
        if let Some(c) = t.container_spec.as_mut() {
            c.args = Some(
                [
                    "launcher",
                    "--stack",
                    o.stack,
                    "--network",
                    o.network,
                    "--absent",
                    "--once",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            );
            c.health_check = None;
        }
    }
    spec.mode = Some(bollard::models::ServiceSpecMode {
        global_job: Some(Default::default()),
        ..Default::default()
    });
    spec.update_config = None;
    let _ = docker.delete_service(&name).await;
    docker
        .create_service(spec, None)
        .await
        .context(|| format!("create service {name}"))?;
    let started = Instant::now();
    let result = loop {
        let tasks = docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters(&[("service", name.clone())])),
            }))
            .await
            .context(|| format!("list tasks of {name}"))?;
        let state = |t: &bollard::models::Task| {
            t.status
                .as_ref()
                .and_then(|s| s.state.as_ref())
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        let done = tasks.iter().filter(|t| state(t) == "complete").count();
        let failed: Vec<String> = tasks
            .iter()
            .filter(|t| ["failed", "rejected"].contains(&state(t).as_str()))
            .map(|t| {
                t.status
                    .as_ref()
                    .and_then(|s| s.err.clone())
                    .unwrap_or_else(|| state(t))
            })
            .collect();
        if !tasks.is_empty() && done + failed.len() == tasks.len() {
            if !failed.is_empty() {
                break Err(crate::StackError::Io(format!(
                    "removing the agents failed on {} node(s): {}",
                    failed.len(),
                    failed.join("; ")
                )));
            }
            break Ok(done);
        }
        if started.elapsed() > o.timeout {
            break Err(crate::StackError::Timeout(format!(
                "the agents were not removed on every node after {} s ({done} of {} done); `docker service ps {name}` shows why",
                o.timeout.as_secs(),
                tasks.len()
            )));
        }
        progress.set(&format!(
            "[{:>3.0} s] removing the agents: {done} of {} node(s) done",
            started.elapsed().as_secs_f64(),
            tasks.len()
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let _ = docker.delete_service(&name).await;
    result
}

pub async fn down(
    docker: &Docker,
    o: &DownOptions<'_>,
    progress: &mut Progress,
) -> Result<Outcome> {
    ensure_manager(docker).await?;
    let mut out = Outcome::default();
    let label = || Some(filters(&[("label", format!("{NAMESPACE}={}", o.stack))]));
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: label(),
            ..Default::default()
        }))
        .await
        .context(|| "list services".into())?;
    let name_of = |s: &bollard::models::Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default()
    };
    // With --agents the launchers go first (below), the rest after the agents.
    let launchers_first = |s: &bollard::models::Service| o.agents && is_launcher(s);
    if o.agents {
        // The launchers first, and their tasks gone: a launcher still running would start the
        // agent its node's removal job has just removed (seen on a 3-node fleet: an agent left
        // running after `stack down --agents`).
        let launchers: Vec<(String, String)> = services
            .iter()
            .filter(|s| launchers_first(s))
            .map(|s| (name_of(s), s.id.clone().unwrap_or_default()))
            .collect();
        for (name, _) in &launchers {
            remove_service(docker, name, &mut out.removed).await?;
        }
        // Their tasks outlive them while they shut down. Asked by the stack's label and picked
        // by service ID: a `service=<name>` filter answers 404 once the service is removed
        // (the rolling-upgrade bench's `stack down --agents` failed so).
        let started = Instant::now();
        loop {
            let tasks = docker
                .list_tasks(Some(ListTasksOptions { filters: label() }))
                .await
                .context(|| "list the launchers' tasks".into())?;
            let left = tasks
                .iter()
                .filter(|t| {
                    t.service_id
                        .as_ref()
                        .is_some_and(|id| launchers.iter().any(|(_, l)| l == id))
                })
                .count();
            if left == 0 {
                break;
            }
            if started.elapsed() > o.timeout {
                return Err(crate::StackError::Timeout(format!(
                    "{left} launcher task(s) still shutting down after {} s; the agents are not removed (run `stack down --agents` again)",
                    o.timeout.as_secs()
                )));
            }
            progress.set(&format!(
                "[{:>3.0} s] waiting for {left} launcher task(s) to stop",
                started.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let n = remove_agents(docker, o, &services, progress).await?;
        out.removed.push(format!("agents on {n} node(s)"));
    }
    for s in services.iter().filter(|s| !launchers_first(s)) {
        remove_service(docker, &name_of(s), &mut out.removed).await?;
    }
    // Configs, secrets and volumes are in use until the tasks' containers are gone.
    let started = Instant::now();
    loop {
        let tasks = docker
            .list_tasks(Some(ListTasksOptions { filters: label() }))
            .await
            .context(|| "list tasks".into())?;
        let containers = docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: label(),
                ..Default::default()
            }))
            .await
            .context(|| "list containers".into())?;
        if tasks.is_empty() && containers.is_empty() {
            break;
        }
        if started.elapsed() > o.timeout {
            progress.done(&format!(
                "{} task(s) still shutting down; configs, secrets and volumes they use stay (run `stack down` again)",
                tasks.len().max(containers.len())
            ));
            break;
        }
        progress.set(&format!(
            "[{:>3.0} s] waiting for {} task(s) to stop",
            started.elapsed().as_secs_f64(),
            tasks.len().max(containers.len())
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let configs = docker
        .list_configs(Some(ListConfigsOptions { filters: label() }))
        .await
        .context(|| "list configs".into())?;
    for c in configs {
        if let Some(name) = c.spec.and_then(|s| s.name) {
            if docker.delete_config(&name).await.is_ok() {
                out.removed.push(format!("config {name}"));
            }
        }
    }
    let secrets = docker
        .list_secrets(Some(ListSecretsOptions { filters: label() }))
        .await
        .context(|| "list secrets".into())?;
    for s in secrets {
        if let Some(name) = s.spec.and_then(|s| s.name) {
            if docker.delete_secret(&name).await.is_ok() {
                out.removed.push(format!("secret {name}"));
            }
        }
    }
    if o.volumes {
        let vols = docker
            .list_volumes(Some(ListVolumesOptions { filters: label() }))
            .await
            .context(|| "list volumes".into())?;
        for v in vols.volumes.unwrap_or_default() {
            if docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
                .is_ok()
            {
                out.removed.push(format!("volume {}", v.name));
            }
        }
        // A volume lives on one node, and Docker removes it only there: the other managers
        // keep theirs (an Alertmanager pair has one on each).
        let managers = crate::up::managers(docker).await.unwrap_or(1);
        if managers > 1 {
            out.unchanged.push(format!(
                "volumes on the other {} manager(s): run `edgesense stack down --volumes --docker-host` against each",
                managers - 1
            ));
        }
    }
    // The network stays while anything else is on it (agent containers, other services).
    match docker.inspect_network(o.network, None).await {
        Ok(n) => {
            let (holders, stale) = live_containers(docker, n.containers.as_ref()).await;
            let containers = holders.len();
            let all_services = docker
                .list_services(None::<ListServicesOptions>)
                .await
                .context(|| "list services".into())?;
            let id = n.id.unwrap_or_default();
            let users = all_services
                .iter()
                .filter(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|s| s.task_template.as_ref())
                        .and_then(|t| t.networks.as_ref())
                        .is_some_and(|nets| {
                            nets.iter().any(|a| {
                                a.target.as_deref() == Some(o.network)
                                    || a.target.as_deref() == Some(id.as_str())
                            })
                        })
                })
                .count();
            if containers == 0 && users == 0 {
                // A manager lists only its own containers: agents on workers hold the network
                // through attachment tasks, and Docker refuses to remove it then. With endpoints
                // of removed containers still listed here, their attachments may be released a
                // moment late: a few tries then.
                let started = Instant::now();
                loop {
                    match docker.remove_network(o.network).await {
                        Ok(()) => {
                            network_gone(docker, o.network, progress).await;
                            out.removed.push(format!("network {}", o.network));
                            break;
                        }
                        Err(e) if stale > 0 && started.elapsed() < NETWORK_RELEASE => {
                            progress.set(&format!(
                                "[{:>3.0} s] network {} still in use ({}); trying again",
                                started.elapsed().as_secs_f64(),
                                o.network,
                                crate::docker::short_message(&e)
                            ));
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => {
                            out.unchanged.push(format!(
                                "network {} (in use on other nodes: {})",
                                o.network,
                                crate::docker::short_message(&e)
                            ));
                            break;
                        }
                    }
                }
            } else {
                let named = if holders.is_empty() {
                    String::new()
                } else {
                    let mut names: Vec<&str> = holders.iter().take(3).map(String::as_str).collect();
                    if containers > 3 {
                        names.push("…");
                    }
                    format!(": {}", names.join(", "))
                };
                out.unchanged.push(format!(
                    "network {} (in use: {containers} container(s){named}, {users} service(s))",
                    o.network
                ));
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).context(|| format!("inspect network {}", o.network)),
    }
    Ok(out)
}

/// Waits (at most [`NETWORK_RELEASE`]) until this node no longer lists the removed network.
/// Docker answers the removal of a swarm network once the manager's store dropped it; the
/// node's own copy of an attachable overlay (made when a container here joined it) goes a
/// moment later, and until then `docker network ls` still shows it (CI saw that right after
/// `stack down` said "removed").
/// Removes service `name`, noted in `removed`; one already gone is no error.
async fn remove_service(docker: &Docker, name: &str, removed: &mut Vec<String>) -> Result<()> {
    match docker.delete_service(name).await {
        Ok(()) => removed.push(format!("service {name}")),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).context(|| format!("remove service {name}")),
    }
    Ok(())
}

async fn network_gone(docker: &Docker, network: &str, progress: &mut Progress) {
    let started = Instant::now();
    while started.elapsed() < NETWORK_RELEASE {
        match docker.inspect_network(network, None).await {
            Err(e) if is_not_found(&e) => return,
            _ => {
                progress.set(&format!(
                    "[{:>3.0} s] network {network} removed; waiting for this node to let it go",
                    started.elapsed().as_secs_f64()
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The names of the containers on this node that hold the network. Docker's list of the
/// network's endpoints also has `lb-<network>`, the node's load balancer for swarm services and
/// not a container, and, after a dockerd restart in which a container's first start failed
/// (moby/moby#32607: the overlay was not back yet), an endpoint left behind for a container
/// since removed (counted apart: the second of the pair); neither is a container holding it.
async fn live_containers(
    docker: &Docker,
    listed: Option<&std::collections::HashMap<String, bollard::models::EndpointResource>>,
) -> (Vec<String>, usize) {
    let (mut live, mut stale) = (Vec::new(), 0);
    for (id, ep) in listed.into_iter().flatten() {
        if id.starts_with("lb-") {
            continue;
        }
        match docker.inspect_container(id, None).await {
            Err(e) if is_not_found(&e) => stale += 1,
            Ok(c) => live.push(
                c.name
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .or_else(|| ep.name.clone())
                    .unwrap_or_else(|| id.clone()),
            ),
            // Not known to be gone: it holds the network.
            Err(_) => live.push(ep.name.clone().unwrap_or_else(|| id.clone())),
        }
    }
    live.sort();
    (live, stale)
}
