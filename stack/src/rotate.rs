//! `edgesense stack rotate`: a new webhook token and new certificates for every identity (same
//! CA, same names), with no request refused on the way and no LED dark.
//!
//! A swarm secret cannot change: each new one gets a new name, and the services that mount a
//! secret of that key are updated to the new name (the rest of their specs as they are, so no
//! `stack up` flags are needed). Three steps, each waited for:
//!
//! 1. The agents accept the old token and the new one (their token file holds both, the old
//!    first: it is what they send each other), and every identity gets a new certificate. The
//!    launchers copy the files into their running agents and send SIGHUP ([`crate::launcher`]);
//!    Prometheus and Alertmanager restart with theirs.
//! 2. Alertmanager sends the new token.
//! 3. The agents accept only the new one: the old token is refused from now on.
//!
//! Agents started with `node run` get the new bundle from the state directory: run `node run`
//! again with it (that replaces the container).

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use bollard::{
    query_parameters::{InspectServiceOptions, ListServicesOptions},
    Docker,
};

use crate::{
    credentials::{self, Secrets},
    error::{Context, Result, StackError},
    pki,
    plan::{StackSecrets, NAMESPACE},
    progress::Progress,
    secrets,
    up::{filters, Outcome},
};

/// What the rotation did, step by step.
#[derive(Debug, Default)]
pub struct Rotated {
    pub steps: Vec<String>,
    pub outcome: Outcome,
}

/// The stack's services and whether it has Grafana.
async fn services(docker: &Docker, stack: &str) -> Result<Vec<String>> {
    Ok(docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters(&[("label", format!("{NAMESPACE}={stack}"))])),
            ..Default::default()
        }))
        .await
        .context(|| "list services".into())?
        .into_iter()
        .filter_map(|s| s.spec?.name)
        .collect())
}

/// Creates the secrets of `kept` the swarm lacks, then points every service of the stack at the
/// current secret of each key it mounts. Returns the services it updated.
async fn deploy(
    docker: &Docker,
    stack: &str,
    kept: &Secrets,
    grafana: bool,
    out: &mut Outcome,
) -> Result<Vec<String>> {
    let wanted = StackSecrets::from_kept(stack, kept, grafana)?;
    secrets::create_secrets(docker, stack, &wanted, out).await?;
    let existing = secrets::existing(docker, stack).await?;
    let key_of: HashMap<&str, &str> = existing
        .iter()
        .map(|(k, n, _)| (n.as_str(), k.as_str()))
        .collect();
    let ids = secrets::ids(docker, stack).await?;
    let mut updated = Vec::new();
    for name in services(docker, stack).await? {
        let current = docker
            .inspect_service(&name, None::<InspectServiceOptions>)
            .await
            .context(|| format!("inspect service {name}"))?;
        let Some(mut spec) = current.spec else {
            continue;
        };
        let mut changed = false;
        if let Some(refs) = spec
            .task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
            .and_then(|c| c.secrets.as_mut())
        {
            for r in refs.iter_mut() {
                let have = r.secret_name.clone().unwrap_or_default();
                let Some(key) = key_of.get(have.as_str()) else {
                    continue;
                };
                let want = wanted.name(key);
                if !want.is_empty() && want != have {
                    r.secret_id = Some(ids.get(want).cloned().ok_or_else(|| {
                        StackError::Input(format!("secret {want} vanished while rotating"))
                    })?);
                    r.secret_name = Some(want.to_owned());
                    changed = true;
                }
            }
        }
        if !changed {
            continue;
        }
        crate::up::update_service(docker, &name, spec, current.version).await?;
        out.updated.push(format!("service {name}"));
        updated.push(name);
    }
    Ok(updated)
}

/// Waits until every service of `names` has finished the update started after `since` (a
/// paused one is an error: its tasks do not get healthy with the new secrets).
async fn converge(
    docker: &Docker,
    names: &[String],
    since: std::time::SystemTime,
    limit: Duration,
    progress: &mut Progress,
) -> Result<()> {
    let started = Instant::now();
    let since = time::OffsetDateTime::from(since);
    loop {
        let mut waiting = Vec::new();
        for name in names {
            let s = docker
                .inspect_service(name, None::<InspectServiceOptions>)
                .await
                .context(|| format!("inspect service {name}"))?;
            let Some(st) = s.update_status else {
                waiting.push(format!("{name} (not started)"));
                continue;
            };
            let began = st.started_at.as_deref().and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            });
            if began.is_none_or(|b| b < since - time::Duration::seconds(2)) {
                waiting.push(format!("{name} (not started)"));
                continue;
            }
            let state = st.state.map(|s| s.to_string()).unwrap_or_default();
            match state.as_str() {
                "completed" => {}
                "paused" | "rollback_started" | "rollback_paused" | "rollback_completed" => {
                    return Err(StackError::Input(format!(
                        "{name}: its update {state}: {}\n  `docker service ps --no-trunc {name}` says why; the old secrets stay until it completes",
                        st.message.unwrap_or_default()
                    )))
                }
                _ => waiting.push(format!("{name} ({state})")),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(StackError::Timeout(format!(
                "rotation step not done after {}s: waiting for {}",
                limit.as_secs(),
                waiting.join(", ")
            )));
        }
        progress.set(&format!(
            "[{:>3.0} s] waiting for {}",
            started.elapsed().as_secs_f64(),
            waiting.join(", ")
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Rotates the token and the certificates of `stack`, whose secrets are kept in `dir`.
pub async fn rotate(
    docker: &Docker,
    stack: &str,
    dir: &Path,
    limit: Duration,
    progress: &mut Progress,
) -> Result<Rotated> {
    crate::docker::ensure_manager(docker).await?;
    let mut kept = Secrets::load(dir)?.ok_or_else(|| {
        StackError::Input(format!(
            "no secrets of stack {stack} kept in {}: rotate where `edgesense stack up` ran (it keeps the CA's key)",
            dir.display()
        ))
    })?;
    let grafana = services(docker, stack)
        .await?
        .contains(&format!("{stack}_grafana"));
    let mut r = Rotated::default();
    let old = kept.token.clone();
    let new = credentials::random_hex(16)?;

    progress.set("1/3: agents accept both tokens; new certificates");
    kept.agent_tokens = vec![old.clone(), new.clone()];
    for (who, leaf) in kept.leaves.clone() {
        let fresh = kept.ca.issue(&who, &leaf.names, pki::LEAF_DAYS)?;
        kept.leaves.insert(who, fresh);
    }
    kept.save()?;
    let since = std::time::SystemTime::now();
    let updated = deploy(docker, stack, &kept, grafana, &mut r.outcome).await?;
    converge(docker, &updated, since, limit, progress).await?;
    r.steps.push(format!(
        "1/3 agents accept the old and the new token, every certificate issued again ({})",
        updated.join(", ")
    ));

    progress.set("2/3: Alertmanager sends the new token");
    kept.token = new.clone();
    kept.save()?;
    let since = std::time::SystemTime::now();
    let updated = deploy(docker, stack, &kept, grafana, &mut r.outcome).await?;
    converge(docker, &updated, since, limit, progress).await?;
    r.steps.push(format!(
        "2/3 Alertmanager sends the new token ({})",
        updated.join(", ")
    ));

    progress.set("3/3: agents accept only the new token");
    kept.agent_tokens = vec![new];
    kept.save()?;
    let since = std::time::SystemTime::now();
    let updated = deploy(docker, stack, &kept, grafana, &mut r.outcome).await?;
    converge(docker, &updated, since, limit, progress).await?;
    r.steps.push(format!(
        "3/3 the old token is refused ({})",
        updated.join(", ")
    ));
    secrets::remove_unused_of(
        docker,
        stack,
        &StackSecrets::from_kept(stack, &kept, grafana)?,
        &mut r.outcome,
    )
    .await?;
    Ok(r)
}
