//! The stack's secrets in the swarm: which names its certificates carry, the kept secrets (or,
//! where they are not kept, the ones the swarm already has), and creating and removing the
//! swarm secrets.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use bollard::{
    models::SecretSpec,
    query_parameters::{ListNodesOptions, ListSecretsOptions},
    Docker,
};

use crate::{
    credentials::{self, Made, Secrets, Want},
    error::{Context, Result, StackError},
    plan::{secrets::StackSecrets, Plan, NAMESPACE, ROLE},
    up::{base64, filters, Outcome},
};

/// The swarm's cluster id (managers only know it).
pub async fn cluster_id(docker: &Docker) -> Result<String> {
    let info = docker.info().await.context(|| "docker info".into())?;
    info.swarm
        .and_then(|s| s.cluster)
        .and_then(|c| c.id)
        .ok_or_else(|| {
            StackError::Input(
                "this Docker host is not a swarm manager: run this on a manager (or with --docker-host pointing at one)".into(),
            )
        })
}

/// Where `stack`'s secrets are kept on this machine for the swarm `docker` manages.
pub async fn default_state_dir(docker: &Docker, stack: &str) -> Result<PathBuf> {
    Ok(credentials::state_dir(
        Path::new(credentials::STATE_ROOT),
        &cluster_id(docker).await?,
        stack,
    ))
}

/// The names each identity's certificate carries: the overlay's (the service alias,
/// `tasks.<alias>`, the service name), loopback (the services' own health checks), every
/// manager's host name and address (a published port listens on the node its task runs on, any
/// manager), and `extra` (`--tls-name`). Agents: `edgesense-agent` and loopback, plus `extra`.
pub async fn names(
    docker: &Docker,
    stack: &str,
    extra: &[String],
    grafana: bool,
) -> Result<BTreeMap<String, Vec<String>>> {
    let nodes = docker
        .list_nodes(Some(ListNodesOptions {
            filters: Some(filters(&[("role", "manager".into())])),
        }))
        .await
        .context(|| "list the managers".into())?;
    let mut managers: Vec<String> = Vec::new();
    for n in nodes {
        if let Some(h) = n.description.and_then(|d| d.hostname) {
            managers.push(h);
        }
        let addr = n.status.and_then(|s| s.addr).filter(|a| a != "0.0.0.0");
        let raft = n
            .manager_status
            .and_then(|m| m.addr)
            .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()));
        managers.extend(addr.or(raft));
    }
    Ok(names_for(stack, &managers, extra, grafana))
}

/// [`names`] from the managers' names and addresses.
pub fn names_for(
    stack: &str,
    managers: &[String],
    extra: &[String],
    grafana: bool,
) -> BTreeMap<String, Vec<String>> {
    let local = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let service = |alias: &str| {
        let mut v = vec![
            alias.to_owned(),
            format!("tasks.{alias}"),
            format!("{stack}_{alias}"),
        ];
        v.extend(local.iter().cloned());
        v.extend(managers.iter().cloned());
        v.extend(extra.iter().cloned());
        dedup(v)
    };
    let mut out = BTreeMap::new();
    out.insert("prometheus".to_owned(), service("prometheus"));
    out.insert("alertmanager".to_owned(), service("alertmanager"));
    if grafana {
        out.insert(credentials::GRAFANA.to_owned(), service("grafana"));
    }
    let mut agent = vec![crate::node::AGENT_ALIAS.to_owned()];
    agent.extend(local.iter().cloned());
    agent.extend(extra.iter().cloned());
    out.insert("agent".to_owned(), dedup(agent));
    out
}

/// Keeps the first of each name, in order.
fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|n| seen.insert(n.clone())).collect()
}

/// The stack's secrets as `stack up` deploys them.
pub struct Resolved {
    pub secrets: StackSecrets,
    /// The kept secrets (None: adopted from the swarm, this machine keeps none).
    pub kept: Option<Secrets>,
    /// What was made now.
    pub made: Made,
}

/// The secrets of the stack already in the swarm: (key, name, created at).
pub async fn existing(docker: &Docker, stack: &str) -> Result<Vec<(String, String, String)>> {
    let list = docker
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters(&[("label", format!("{NAMESPACE}={stack}"))])),
        }))
        .await
        .context(|| "list secrets".into())?;
    Ok(list
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let key = spec.labels.as_ref()?.get(ROLE)?.clone();
            Some((key, spec.name?, s.created_at.unwrap_or_default()))
        })
        .collect())
}

/// The kept secrets in `dir`, made or renewed as `want` asks; where this machine keeps none
/// but the swarm has the stack's secrets already (a `stack up` from another machine), those
/// are used as they are, and anything that would change them is refused with where they are
/// kept.
pub async fn resolve(docker: &Docker, dir: &Path, want: &Want) -> Result<Resolved> {
    let have = existing(docker, &want.stack).await?;
    let tls_in_swarm = have.iter().any(|(k, _, _)| k == "ca");
    if Secrets::load(dir)?.is_none() && tls_in_swarm {
        // A token given here can be told the same as the swarm's by its secret's name.
        let same_token = |t: &str| {
            let name = format!(
                "{}_token_{}",
                want.stack,
                crate::assets::short_hash(format!("{t}\n").as_bytes())
            );
            have.iter().any(|(k, n, _)| k == "token" && *n == name)
        };
        let changes = want.token.as_deref().is_some_and(|t| !same_token(t))
            || want.operator_password.is_some()
            || want.grafana_admin_password.is_some();
        if changes {
            return Err(StackError::Input(format!(
                "the stack's secrets are kept on the machine where `edgesense stack up` first ran (not in {}): change the token or passwords there",
                dir.display()
            )));
        }
        let secrets = StackSecrets::adopt(&have, &StackSecrets::needed(want.grafana)).map_err(
            |key| {
                StackError::Input(format!(
                    "the swarm has no secret \"{key}\" of stack {}, and this machine keeps none (not in {}): run `edgesense stack up` where the stack was made",
                    want.stack,
                    dir.display()
                ))
            },
        )?;
        return Ok(Resolved {
            secrets,
            kept: None,
            made: Made::default(),
        });
    }
    let (kept, made) = Secrets::ensure(dir, want)?;
    Ok(Resolved {
        secrets: StackSecrets::from_kept(&want.stack, &kept, want.grafana)?,
        kept: Some(kept),
        made,
    })
}

/// Creates the secrets of `plan` the swarm does not have yet.
pub async fn create(docker: &Docker, stack: &str, plan: &Plan, out: &mut Outcome) -> Result<()> {
    create_secrets(docker, stack, &plan.secrets, out).await
}

/// The ids of the stack's secrets, by name (a service spec names both).
pub async fn ids(
    docker: &Docker,
    stack: &str,
) -> Result<std::collections::HashMap<String, String>> {
    Ok(docker
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters(&[("label", format!("{NAMESPACE}={stack}"))])),
        }))
        .await
        .context(|| "list secrets".into())?
        .into_iter()
        .filter_map(|s| Some((s.spec?.name?, s.id?)))
        .collect())
}

/// Creates the secrets of `wanted` the swarm does not have yet.
pub async fn create_secrets(
    docker: &Docker,
    stack: &str,
    wanted: &StackSecrets,
    out: &mut Outcome,
) -> Result<()> {
    let have: Vec<String> = existing(docker, stack)
        .await?
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    for f in wanted.files.values() {
        if have.contains(&f.name) {
            out.unchanged.push(format!("secret {}", f.name));
            continue;
        }
        let Some(data) = &f.data else {
            return Err(StackError::Input(format!(
                "secret {} vanished from the swarm, and this machine does not keep its content",
                f.name
            )));
        };
        let mut labels: std::collections::HashMap<String, String> = [
            (NAMESPACE.to_owned(), stack.to_owned()),
            (ROLE.to_owned(), f.key.clone()),
        ]
        .into();
        labels.extend(f.labels.iter().cloned());
        docker
            .create_secret(SecretSpec {
                name: Some(f.name.clone()),
                labels: Some(labels),
                data: Some(base64(data.as_bytes())),
                ..Default::default()
            })
            .await
            .context(|| format!("create secret {}", f.name))?;
        out.created.push(format!("secret {}", f.name));
    }
    Ok(())
}

/// Removes the stack's secrets `plan` no longer names; one still in use (a task not yet
/// replaced) stays for the next `up` or `down`.
pub async fn remove_unused(
    docker: &Docker,
    stack: &str,
    plan: &Plan,
    out: &mut Outcome,
) -> Result<()> {
    remove_unused_of(docker, stack, &plan.secrets, out).await
}

/// Removes the stack's secrets `keep` does not name (one still in use stays).
pub async fn remove_unused_of(
    docker: &Docker,
    stack: &str,
    keep: &StackSecrets,
    out: &mut Outcome,
) -> Result<()> {
    for (_, name, _) in existing(docker, stack).await? {
        if keep.files.values().any(|f| f.name == name) {
            continue;
        }
        if docker.delete_secret(&name).await.is_ok() {
            out.removed.push(format!("secret {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_named_for_the_overlay_loopback_and_every_manager() {
        let n = names_for(
            "edgesense",
            &["mgr".into(), "192.168.231.11".into()],
            &["pi.example".into()],
            false,
        );
        assert_eq!(
            n["prometheus"],
            [
                "prometheus",
                "tasks.prometheus",
                "edgesense_prometheus",
                "localhost",
                "127.0.0.1",
                "mgr",
                "192.168.231.11",
                "pi.example"
            ]
        );
        assert_eq!(
            n["agent"],
            ["edgesense-agent", "localhost", "127.0.0.1", "pi.example"],
            "agents share one certificate: no node's own name in it"
        );
        assert!(!n.contains_key("grafana"));
        assert!(names_for("edgesense", &[], &[], true).contains_key("grafana"));
    }
}
