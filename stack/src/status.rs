//! `edgesense stack status`: the stack's services and tasks, the swarm's nodes, the agents
//! Prometheus discovered (and whether their scrapes work), and Alertmanager's active alerts.

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use bollard::{
    query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions},
    Docker,
};
use serde_json::{json, Value};

use crate::{
    error::{Context, Result},
    http,
    plan::NAMESPACE,
    up::filters,
};

/// Collects the status as JSON (the `--json` output; the table is rendered from it).
pub async fn collect(
    docker: &Docker,
    stack: &str,
    access: &http::Access,
    prometheus: Option<&str>,
    alertmanager: Option<&str>,
) -> Result<Value> {
    let label = || Some(filters(&[("label", format!("{NAMESPACE}={stack}"))]));
    let nodes = docker
        .list_nodes(None::<ListNodesOptions>)
        .await
        .context(|| "list nodes (is this a swarm manager?)".into())?;
    let node_names: HashMap<String, String> = nodes
        .iter()
        .filter_map(|n| Some((n.id.clone()?, n.description.as_ref()?.hostname.clone()?)))
        .collect();
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: label(),
            status: Some(true),
        }))
        .await
        .context(|| "list services".into())?;
    let tasks = docker
        .list_tasks(Some(ListTasksOptions { filters: label() }))
        .await
        .context(|| "list tasks".into())?;
    let services: Vec<Value> = services
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let st = s.service_status.clone().unwrap_or_default();
            let image = spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let ports: Vec<i64> = spec
                .endpoint_spec
                .as_ref()
                .and_then(|e| e.ports.as_ref())
                .map(|p| p.iter().filter_map(|p| p.published_port).collect())
                .unwrap_or_default();
            json!({
                "name": spec.name,
                "image": image.split('@').next().unwrap_or(""),
                "running": st.running_tasks,
                "desired": st.desired_tasks,
                "ports": ports,
            })
        })
        .collect();
    let service_names: HashMap<String, String> = services_by_id(docker, stack).await?;
    let mut tasks: Vec<Value> = tasks
        .iter()
        .filter(|t| {
            t.desired_state
                .as_ref()
                .is_some_and(|d| d.to_string() != "shutdown")
        })
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            json!({
                "service": t.service_id.as_ref().and_then(|id| service_names.get(id)),
                "node": t.node_id.as_ref().and_then(|id| node_names.get(id)),
                "state": status.state.map(|s| s.to_string()),
                "error": status.err,
            })
        })
        .collect();
    tasks.sort_by_key(|t| t["service"].to_string());
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "hostname": n.description.as_ref().and_then(|d| d.hostname.clone()),
                "role": n.spec.as_ref().and_then(|s| s.role.as_ref()).map(|r| r.to_string()),
                "state": n.status.as_ref().and_then(|s| s.state.as_ref()).map(|s| s.to_string()),
                "availability": n.spec.as_ref().and_then(|s| s.availability.as_ref()).map(|a| a.to_string()),
                "address": n.status.as_ref().and_then(|s| s.addr.clone()),
            })
        })
        .collect();
    let agents = match prometheus {
        Some(url) => agents(access, url).await,
        None => json!({ "error": "Prometheus is not published (--prometheus URL to ask it)" }),
    };
    let fleet = fleet(docker, stack, access, &node_names, prometheus).await?;
    let certificates = certificates(docker, stack).await?;
    let alerts = match alertmanager {
        Some(url) => alerts(access, url).await,
        None => json!({ "error": "Alertmanager is not published (--alertmanager URL to ask it)" }),
    };
    Ok(json!({
        "stack": stack,
        "services": services,
        "tasks": tasks,
        "nodes": nodes,
        "agents": agents,
        "launchers": fleet.0,
        "rollouts": fleet.1,
        "certificates": certificates,
        "alerts": alerts,
    }))
}

/// The stack's certificates (the CA and each identity's) with when they end, from the labels
/// `stack up` puts on their secrets: what `stack up` will renew when it is due.
async fn certificates(docker: &Docker, stack: &str) -> Result<Value> {
    let list = docker
        .list_secrets(Some(bollard::query_parameters::ListSecretsOptions {
            filters: Some(filters(&[("label", format!("{NAMESPACE}={stack}"))])),
        }))
        .await
        .context(|| "list secrets".into())?;
    let now = crate::pki::unix_now();
    // The newest secret of each key: the one the services use once they rolled.
    let mut newest: std::collections::BTreeMap<String, (String, u64)> = Default::default();
    for sec in list {
        let created = sec.created_at.clone().unwrap_or_default();
        let Some(labels) = sec.spec.and_then(|s| s.labels) else {
            continue;
        };
        let (Some(key), Some(end)) = (
            labels.get(crate::plan::ROLE),
            labels
                .get(crate::plan::secrets::NOT_AFTER)
                .and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let e = newest.entry(key.clone()).or_default();
        if created >= e.0 {
            *e = (created, end);
        }
    }
    let mut by_name: Vec<(String, u64)> = newest
        .into_iter()
        .map(|(key, (_, end))| (key.strip_prefix("tls_").unwrap_or(&key).to_owned(), end))
        .collect();
    by_name.sort();
    Ok(Value::Array(
        by_name
            .into_iter()
            .map(|(name, end)| {
                json!({
                    "certificate": name,
                    "not_after": crate::pki::rfc3339(end),
                    "days_left": (end.saturating_sub(now)) / 86_400,
                })
            })
            .collect(),
    ))
}

/// `stack up --agents`: each node's launcher task (its state and since when: the launcher's
/// health follows its agent's, so `running` means the agent is healthy), the agent image the
/// launcher runs, and the version Prometheus scrapes from that node's agent; and the launcher
/// services whose rolling update is not `completed` (a paused roll says why).
async fn fleet(
    docker: &Docker,
    stack: &str,
    access: &http::Access,
    node_names: &HashMap<String, String>,
    prometheus: Option<&str>,
) -> Result<(Value, Value)> {
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters(&[
                ("label", format!("{NAMESPACE}={stack}")),
                ("label", format!("{}=launcher", crate::plan::ROLE)),
            ])),
            ..Default::default()
        }))
        .await
        .context(|| "list services".into())?;
    if services.is_empty() {
        return Ok((json!([]), json!([])));
    }
    // node -> (version, scraped) from Prometheus.
    let mut versions: HashMap<String, (String, bool)> = HashMap::new();
    if let Some(url) = prometheus {
        let info = get_json(
            access,
            &format!(
                "{url}/api/v1/query?query={}",
                http::urlencode("edgesense_node_info")
            ),
        )
        .await
        .ok();
        for r in info
            .as_ref()
            .and_then(|v| v["data"]["result"].as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(n), Some(v)) = (
                r["metric"]["node"].as_str(),
                r["metric"]["version"].as_str(),
            ) {
                versions.insert(n.to_owned(), (v.to_owned(), true));
            }
        }
    }
    let mut found = Vec::new();
    let mut rollouts = Vec::new();
    for s in &services {
        let spec = s.spec.clone().unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let c = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.clone())
            .unwrap_or_default();
        let args = c.args.unwrap_or_default();
        let absent = args.iter().any(|a| a == "--absent");
        let agent_image = args
            .iter()
            .position(|a| a == "--agent-image")
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_default();
        if let Some(u) = &s.update_status {
            let state = u.state.as_ref().map(|x| x.to_string()).unwrap_or_default();
            if state != "completed" {
                rollouts.push(json!({
                    "service": name,
                    "state": state,
                    "message": u.message,
                }));
            }
        }
        // Every task swarm keeps of this launcher (no desired-state filter: see [`current`]).
        let tasks = docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters(&[("service", name.clone())])),
            }))
            .await
            .context(|| format!("list tasks of {name}"))?;
        for t in tasks {
            // A task of a node that has left the swarm is no node's row.
            let Some(node) = t.node_id.as_ref().and_then(|id| node_names.get(id)) else {
                continue;
            };
            let st = t.status.unwrap_or_default();
            found.push(LauncherTask {
                node: node.clone(),
                launcher: name.clone(),
                desired: t.desired_state.map(|d| d.to_string()).unwrap_or_default(),
                state: st.state.map(|x| x.to_string()),
                since: st.timestamp,
                error: st.err,
                agent_image: if absent {
                    "(no agent)".to_owned()
                } else {
                    agent_image.clone()
                },
                index: t.version.and_then(|v| v.index).unwrap_or(0),
            });
        }
    }
    let rows: Vec<Value> = current(found)
        .into_iter()
        .map(|t| {
            let (version, scraped) = versions.get(&t.node).cloned().unwrap_or_default();
            json!({
                "node": t.node,
                "launcher": t.launcher,
                "state": t.state,
                "desired": t.desired,
                "since": t.since,
                "error": t.error,
                "agent_image": t.agent_image,
                "version": (!version.is_empty()).then_some(version),
                "scraped": scraped,
            })
        })
        .collect();
    Ok((json!(rows), json!(rollouts)))
}

/// One task of a launcher service, as `stack status` shows it.
#[derive(Clone, Debug, PartialEq)]
struct LauncherTask {
    node: String,
    launcher: String,
    /// What swarm wants of it: `running`, `ready` (about to start), `shutdown`, …
    desired: String,
    state: Option<String>,
    since: Option<String>,
    error: Option<String>,
    agent_image: String,
    /// The swarm store's version of the task: a later change has a higher one.
    index: u64,
}

/// Each node's current launcher task, by node name: of all the tasks swarm keeps for a node
/// (across the launcher services: a relabelled node moves from one to another), the one desired
/// `running`, else the one desired `ready`, else the latest. Asking swarm for desired `running`
/// only dropped nodes in the middle of a roll: a roll's new task is desired `ready` until the old
/// one has stopped (stop-first), and a failed task's replacement is `ready` through the restart
/// delay (CI saw one row of three during a paused roll).
fn current(tasks: Vec<LauncherTask>) -> Vec<LauncherTask> {
    let rank = |t: &LauncherTask| match t.desired.as_str() {
        "running" => 2,
        "ready" => 1,
        _ => 0,
    };
    let mut by_node: std::collections::BTreeMap<String, LauncherTask> = Default::default();
    for t in tasks {
        match by_node.get(&t.node) {
            Some(best) if (rank(best), best.index) >= (rank(&t), t.index) => {}
            _ => {
                by_node.insert(t.node.clone(), t);
            }
        }
    }
    by_node.into_values().collect()
}

async fn services_by_id(docker: &Docker, stack: &str) -> Result<HashMap<String, String>> {
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters(&[("label", format!("{NAMESPACE}={stack}"))])),
            ..Default::default()
        }))
        .await
        .context(|| "list services".into())?;
    Ok(services
        .into_iter()
        .filter_map(|s| Some((s.id?, s.spec?.name?)))
        .collect())
}

async fn get_json(access: &http::Access, url: &str) -> std::result::Result<Value, String> {
    let (status, body) = access.get(url, Duration::from_secs(5)).await?;
    if status != 200 {
        return Err(format!("{url}: HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{url}: {e}"))
}

/// The `edgesense` scrape targets with their health and node names.
async fn agents(access: &http::Access, prometheus: &str) -> Value {
    let targets = match get_json(access, &format!("{prometheus}/api/v1/targets?state=active")).await
    {
        Ok(v) => v,
        Err(e) => return json!({ "error": format!("Prometheus unreachable: {e}") }),
    };
    let q = http::urlencode("edgesense_node_info");
    let names: HashMap<String, String> =
        get_json(access, &format!("{prometheus}/api/v1/query?query={q}"))
            .await
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                Some((
                    r["metric"]["instance"].as_str()?.to_owned(),
                    r["metric"]["node"].as_str()?.to_owned(),
                ))
            })
            .collect();
    let list: Vec<Value> = targets["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["labels"]["job"] == "edgesense")
        .map(|t| {
            let instance = t["labels"]["instance"].as_str().unwrap_or("").to_owned();
            json!({
                "instance": instance,
                "node": names.get(&instance),
                "health": t["health"],
                "last_scrape": t["lastScrape"],
                "error": t["lastError"],
            })
        })
        .collect();
    json!(list)
}

async fn alerts(access: &http::Access, alertmanager: &str) -> Value {
    match get_json(access, &format!("{alertmanager}/api/v2/alerts?active=true")).await {
        Ok(Value::Array(list)) => json!(list
            .iter()
            .map(|a| json!({
                "name": a["labels"]["alertname"],
                "severity": a["labels"]["severity"],
                "node": a["labels"]["node"],
                "state": a["status"]["state"],
                "summary": a["annotations"]["summary"],
            }))
            .collect::<Vec<_>>()),
        Ok(other) => json!({ "error": format!("unexpected answer: {other}") }),
        Err(e) => json!({ "error": format!("Alertmanager unreachable: {e}") }),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain-text table: `headers`, then one row per item of `rows` with the given keys.
fn table(out: &mut String, title: &str, rows: &Value, cols: &[(&str, &str)]) {
    let _ = writeln!(out, "\n{title}");
    let Some(items) = rows.as_array() else {
        let _ = writeln!(out, "  {}", cell(&rows["error"]));
        return;
    };
    if items.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let cells: Vec<Vec<String>> = items
        .iter()
        .map(|r| cols.iter().map(|(k, _)| cell(&r[*k])).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (_, h))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |vals: Vec<&str>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("  {}", parts.join("  ").trim_end())
    };
    let _ = writeln!(out, "{}", line(cols.iter().map(|(_, h)| *h).collect()));
    for r in &cells {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// The human-readable form of [`collect`]'s JSON.
pub fn render_table(v: &Value) -> String {
    let mut out = format!("stack {}", cell(&v["stack"]));
    table(
        &mut out,
        "SERVICES",
        &v["services"],
        &[
            ("name", "NAME"),
            ("running", "RUNNING"),
            ("desired", "DESIRED"),
            ("image", "IMAGE"),
            ("ports", "PORTS"),
        ],
    );
    table(
        &mut out,
        "TASKS",
        &v["tasks"],
        &[
            ("service", "SERVICE"),
            ("node", "NODE"),
            ("state", "STATE"),
            ("error", "ERROR"),
        ],
    );
    table(
        &mut out,
        "NODES",
        &v["nodes"],
        &[
            ("hostname", "HOSTNAME"),
            ("role", "ROLE"),
            ("state", "STATE"),
            ("availability", "AVAILABILITY"),
            ("address", "ADDRESS"),
        ],
    );
    table(
        &mut out,
        "AGENTS (Prometheus targets)",
        &v["agents"],
        &[
            ("node", "NODE"),
            ("instance", "INSTANCE"),
            ("health", "HEALTH"),
            ("last_scrape", "LAST SCRAPE"),
            ("error", "ERROR"),
        ],
    );
    if v["launchers"].as_array().is_some_and(|l| !l.is_empty()) {
        table(
            &mut out,
            "LAUNCHERS (stack up --agents; running = its agent is healthy)",
            &v["launchers"],
            &[
                ("node", "NODE"),
                ("launcher", "SERVICE"),
                ("state", "STATE"),
                ("since", "SINCE"),
                ("agent_image", "AGENT IMAGE"),
                ("version", "VERSION"),
                ("error", "ERROR"),
            ],
        );
    }
    if v["rollouts"].as_array().is_some_and(|l| !l.is_empty()) {
        table(
            &mut out,
            "ROLLING UPDATES",
            &v["rollouts"],
            &[
                ("service", "SERVICE"),
                ("state", "STATE"),
                ("message", "MESSAGE"),
            ],
        );
    }
    table(
        &mut out,
        "CERTIFICATES (the fleet CA's; `stack up` renews those ending within --renew-within days)",
        &v["certificates"],
        &[
            ("certificate", "CERTIFICATE"),
            ("not_after", "NOT AFTER"),
            ("days_left", "DAYS LEFT"),
        ],
    );
    table(
        &mut out,
        "ALERTS (Alertmanager)",
        &v["alerts"],
        &[
            ("name", "ALERT"),
            ("severity", "SEVERITY"),
            ("node", "NODE"),
            ("state", "STATE"),
            ("summary", "SUMMARY"),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(node: &str, launcher: &str, desired: &str, state: &str, index: u64) -> LauncherTask {
        LauncherTask {
            node: node.into(),
            launcher: launcher.into(),
            desired: desired.into(),
            state: Some(state.into()),
            since: None,
            error: None,
            agent_image: "edgesense/agent:local".into(),
            index,
        }
    }

    #[test]
    fn every_node_keeps_its_row_in_the_middle_of_a_roll() {
        let rows = current(vec![
            // pi-a: the roll's new task waits (ready) for the old one to stop.
            task("pi-a", "edgesense_launcher", "shutdown", "running", 10),
            task("pi-a", "edgesense_launcher", "ready", "pending", 12),
            // pi-b: a failed task's replacement in its restart delay; an older one shut down.
            task("pi-b", "edgesense_launcher", "shutdown", "shutdown", 3),
            task("pi-b", "edgesense_launcher", "shutdown", "failed", 14),
            task("pi-b", "edgesense_launcher", "ready", "ready", 15),
            // pi-c: running, with history.
            task("pi-c", "edgesense_launcher", "shutdown", "shutdown", 4),
            task("pi-c", "edgesense_launcher", "running", "running", 9),
            // shed: relabelled, its old launcher's task shut down, the new one's running.
            task("shed", "edgesense_launcher", "shutdown", "shutdown", 20),
            task("shed", "edgesense_launcher-shed", "running", "running", 18),
            // gone: only a failed task left.
            task("gone", "edgesense_launcher", "shutdown", "failed", 5),
            task("gone", "edgesense_launcher", "shutdown", "rejected", 7),
        ]);
        let seen: Vec<(&str, &str, &str, u64)> = rows
            .iter()
            .map(|t| {
                (
                    t.node.as_str(),
                    t.launcher.as_str(),
                    t.desired.as_str(),
                    t.index,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("gone", "edgesense_launcher", "shutdown", 7),
                ("pi-a", "edgesense_launcher", "ready", 12),
                ("pi-b", "edgesense_launcher", "ready", 15),
                ("pi-c", "edgesense_launcher", "running", 9),
                ("shed", "edgesense_launcher-shed", "running", 18),
            ]
        );
    }

    #[test]
    fn table_aligns_and_says_why_a_section_is_empty() {
        let v = json!({
            "stack": "edgesense",
            "services": [{"name": "edgesense_prometheus", "running": 1, "desired": 1, "image": "prom/prometheus:v2.53.2", "ports": [9090]}],
            "tasks": [],
            "nodes": [{"hostname": "pi-1", "role": "manager", "state": "ready", "availability": "active", "address": "10.0.0.2"}],
            "agents": {"error": "Prometheus unreachable: connection refused"},
            "alerts": [],
        });
        let t = render_table(&v);
        assert!(
            t.contains("  NAME                  RUNNING  DESIRED  IMAGE"),
            "{t}"
        );
        assert!(
            t.contains("edgesense_prometheus  1        1        prom/prometheus:v2.53.2  [9090]"),
            "{t}"
        );
        assert!(t.contains("TASKS\n  (none)"), "{t}");
        assert!(
            t.contains("Prometheus unreachable: connection refused"),
            "{t}"
        );
    }
}
