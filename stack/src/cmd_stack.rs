//! `edgesense stack up|down|status|render|ca`: one function per subcommand, output and the
//! operator's messages; the work is in the library.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use edgesense::{
    credentials::{self, Secrets, Want},
    docker, down, http,
    plan::{self, StackOptions},
    progress::Progress,
    render, secrets, status, up,
};

use crate::cli::{first_line, read_file, Login, StackAction, StackContent, StackName};

pub async fn run(host: &str, action: StackAction) -> anyhow::Result<()> {
    match action {
        StackAction::Up {
            content,
            timeout,
            no_wait,
        } => up(host, &content, timeout, no_wait).await,
        StackAction::Down {
            name,
            volumes,
            agents,
            launcher_image,
            timeout,
        } => down(host, &name, volumes, agents, &launcher_image, timeout).await,
        StackAction::Status {
            name,
            json,
            prometheus,
            alertmanager,
            login,
        } => status(host, &name, json, prometheus, alertmanager, &login).await,
        StackAction::Render { content, out } => render(&content, &out),
        StackAction::Ca { name, out } => ca(host, &name, out).await,
        StackAction::Rotate { name, timeout } => rotate(host, &name, timeout).await,
    }
}

async fn rotate(host: &str, name: &StackName, timeout: u64) -> anyhow::Result<()> {
    let docker = docker::connect(host).await?;
    let dir = state_dir(&docker, name).await?;
    let mut progress = Progress::new(false);
    let r = edgesense::rotate::rotate(
        &docker,
        &name.stack,
        &dir,
        Duration::from_secs(timeout),
        &mut progress,
    )
    .await?;
    for s in &r.steps {
        progress.done(s);
    }
    for c in &r.outcome.created {
        progress.done(&format!("created   {c}"));
    }
    for c in &r.outcome.removed {
        progress.done(&format!("removed   {c}"));
    }
    println!(
        "Rotated. The new token and the agents' new bundle: {}
  agents started with `node run` need `node run` again with it",
        dir.join("agent").display()
    );
    Ok(())
}

/// Where the stack's secrets are kept on this machine for the swarm `docker` manages.
async fn state_dir(docker: &bollard::Docker, name: &StackName) -> anyhow::Result<PathBuf> {
    Ok(match &name.state_dir {
        Some(d) => d.clone(),
        None => secrets::default_state_dir(docker, &name.stack).await?,
    })
}

/// How the CLI reaches Prometheus and Alertmanager: the flags, else the kept secrets.
pub fn operator_access(login: &Login, kept: Option<&Secrets>) -> anyhow::Result<http::Access> {
    let ca = match &login.ca_file {
        Some(p) => Some(read_file(p, "--ca-file")?),
        None => kept.map(|k| k.ca.cert_pem.clone()),
    };
    let password = match first_line(login.web_password_file.as_ref(), "--web-password-file")? {
        Some(p) => Some(p),
        None => kept
            .and_then(|k| k.password(credentials::OPERATOR).ok())
            .map(str::to_owned),
    };
    http::Access::new(
        ca.as_deref(),
        password.as_deref().map(|p| (credentials::OPERATOR, p)),
    )
    .map_err(anyhow::Error::msg)
}

/// What `stack up` asks of the kept secrets.
fn want(
    content: &StackContent,
    names: std::collections::BTreeMap<String, Vec<String>>,
) -> anyhow::Result<Want> {
    Ok(Want {
        stack: content.name.stack.clone(),
        token: content.token()?,
        operator_password: first_line(content.web_password_file.as_ref(), "--web-password-file")?,
        grafana_admin_password: first_line(
            content.grafana_password_file.as_ref(),
            "--grafana-password-file",
        )?,
        names,
        renew_within: Duration::from_secs(content.renew_within * 86_400),
        grafana: content.grafana.is_some(),
    })
}

async fn up(host: &str, content: &StackContent, timeout: u64, no_wait: bool) -> anyhow::Result<()> {
    let files = content.files()?;
    let mut opts = StackOptions {
        agents: content.agents()?,
        ..content.options()
    };
    let docker = docker::connect(host).await?;
    docker::ensure_manager(&docker).await?;
    opts.alertmanagers =
        up::alertmanagers(&docker, content.alertmanagers, &opts.alertmanager_image).await?;
    let mut progress = Progress::new(false);
    if content.encrypted_overlay {
        encrypted_overlay_possible(host)?;
    }
    // Refusals first (a network that cannot serve, more Alertmanagers than managers): nothing
    // is made, secrets included.
    up::check_network(&docker, &opts.network, content.encrypted_overlay).await?;
    up::check_managers(&docker, opts.alertmanagers).await?;
    if opts.alertmanagers > 1 && !opts.alertmanager_image.starts_with("edgesense/") {
        eprintln!(
            "warning: {} has no /bin/edgesense-probe to advertise its overlay address: each Alertmanager may advertise docker_gwbridge's, which its peer cannot reach, and the pair may not form",
            opts.alertmanager_image
        );
    }
    let dir = state_dir(&docker, &content.name).await?;
    progress.set("the fleet's CA, certificates and secrets");
    let names = secrets::names(
        &docker,
        &opts.stack,
        &content.tls_name,
        opts.grafana.is_some(),
    )
    .await?;
    let resolved = secrets::resolve(&docker, &dir, &want(content, names)?).await?;
    let made = &resolved.made;
    if made.ca {
        progress.done(&format!(
            "created   the fleet CA (kept in {})",
            dir.display()
        ));
    }
    for i in &made.issued {
        progress.done(&format!("issued    certificate {i}"));
    }
    // With one manager Prometheus has nowhere else to go; with more, its task could start on
    // another manager (after an update or a restart) with an empty TSDB: pin it.
    let prometheus_node = if up::managers(&docker).await? > 1 {
        Some(up::prometheus_node(&docker, &opts.stack).await?)
    } else {
        None
    };
    let (outcome, plan) = up::up(
        &docker,
        &StackOptions {
            encrypted_overlay: content.encrypted_overlay,
            prometheus_node,
            ..opts.clone()
        },
        &files,
        &resolved.secrets,
        &mut progress,
    )
    .await?;
    for c in &outcome.created {
        progress.done(&format!("created   {c}"));
    }
    for u in &outcome.updated {
        progress.done(&format!("updated   {u}"));
    }
    for r in &outcome.removed {
        progress.done(&format!("removed   {r}"));
    }
    if !outcome.changed() {
        progress.done("stack is up to date: nothing changed");
    }
    match &resolved.kept {
        Some(_) => println!(
            "The agents' credentials (CA, certificate, token, Alertmanager password): {}\n  `edgesense node run` here and with --docker-host uses them; on a node, copy them to {} (root only)",
            dir.join("agent").display(),
            credentials::NODE_BUNDLE
        ),
        None => println!(
            "This machine keeps no secrets of the stack (they are kept where `stack up` first ran): nothing of them changed"
        ),
    }
    if let Some(t) = &made.token {
        println!(
            "Webhook token (shown once; kept in {}):\n{t}",
            dir.join("token").display()
        );
    }
    if let Some(p) = &made.operator_password {
        println!(
            "Password of user {} for Prometheus, Alertmanager and the dashboard (shown once; kept in {}):\n{p}",
            credentials::OPERATOR,
            dir.display()
        );
    }
    if let Some(p) = &made.grafana_admin_password {
        println!("Grafana admin password (shown once):\n{p}");
    }
    if no_wait {
        return Ok(());
    }
    let access = operator_access(&Login::default(), resolved.kept.as_ref())?;
    let ready_port = if resolved.kept.is_some() {
        opts.prometheus_port
    } else {
        0
    };
    let url = up::wait_ready(
        &docker,
        &plan,
        &access,
        ready_port,
        Duration::from_secs(timeout),
        &mut progress,
    )
    .await?;
    let at = |service: String| published_at(&docker, host, service);
    match url {
        Some(u) => println!("Prometheus: {u}"),
        None if opts.prometheus_port != 0 => println!(
            "Prometheus: https://{}:{}",
            at(format!("{}_prometheus", opts.stack)).await,
            opts.prometheus_port
        ),
        None => println!("Prometheus and Alertmanager are reachable only on the overlay network; publish them with --prometheus-port 9090 --alertmanager-port 9093 (TLS, user edgesense)"),
    }
    if opts.grafana.is_some() && opts.grafana_port != 0 {
        println!(
            "Grafana: https://{}:{} (user admin; dashboard \"edgesense\")",
            at(format!("{}_grafana", opts.stack)).await,
            opts.grafana_port
        );
    }
    if opts.alertmanager_port != 0 {
        println!(
            "Alertmanager: https://{}:{}",
            at(format!("{}_alertmanager", opts.stack)).await,
            opts.alertmanager_port
        );
    }
    if opts.prometheus_port != 0 || opts.alertmanager_port != 0 {
        println!("Their certificates come from the fleet CA: `edgesense stack ca` prints it for your browser");
    }
    Ok(())
}

/// Refuses `--encrypted-overlay` where this node's kernel has no ESP (Docker would create the
/// network and drop its traffic silently). Only a local Docker host's kernel can be read here;
/// the other nodes' are `edgesense doctor`'s to check.
fn encrypted_overlay_possible(host: &str) -> anyhow::Result<()> {
    if !host.starts_with("unix://") {
        eprintln!("warning: --encrypted-overlay: the kernel of {host} cannot be checked from here; run `edgesense doctor` on every node (IPsec ESP and GCM)");
        return Ok(());
    }
    let c = edgesense::kernel::esp_check(std::path::Path::new("/"));
    match c.status {
        edgesense::doctor::Status::Pass => Ok(()),
        _ => anyhow::bail!(
            "--encrypted-overlay: {}\n  {}",
            c.detail,
            c.fix.unwrap_or_default()
        ),
    }
}

/// Where a service's host-mode published ports listen: the node its task runs on (else the
/// Docker host's name).
async fn published_at(docker: &bollard::Docker, host: &str, service: String) -> String {
    up::service_address(docker, &service)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| docker::published_host(host))
}

async fn down(
    host: &str,
    name: &StackName,
    volumes: bool,
    agents: bool,
    launcher_image: &str,
    timeout: u64,
) -> anyhow::Result<()> {
    let docker = docker::connect(host).await?;
    let mut progress = Progress::new(false);
    let out = down::down(
        &docker,
        &down::DownOptions {
            stack: &name.stack,
            network: &name.network,
            volumes,
            agents,
            launcher_image,
            timeout: Duration::from_secs(timeout),
        },
        &mut progress,
    )
    .await?;
    for r in &out.removed {
        progress.done(&format!("removed   {r}"));
    }
    for k in &out.unchanged {
        progress.done(&format!("kept      {k}"));
    }
    if out.removed.is_empty() {
        progress.done(&format!("nothing of stack \"{}\" was left", name.stack));
    }
    Ok(())
}

async fn status(
    host: &str,
    name: &StackName,
    json: bool,
    prometheus: Option<String>,
    alertmanager: Option<String>,
    login: &Login,
) -> anyhow::Result<()> {
    let docker = docker::connect(host).await?;
    docker::ensure_manager(&docker).await?;
    let kept = Secrets::load(&state_dir(&docker, name).await?)?;
    let access = operator_access(login, kept.as_ref())?;
    let at = |service: String| published_at(&docker, host, service);
    let prometheus = match prometheus {
        Some(p) => p,
        None => format!(
            "https://{}:9090",
            at(format!("{}_prometheus", name.stack)).await
        ),
    };
    let alertmanager = match alertmanager {
        Some(a) => a,
        None => format!(
            "https://{}:9093",
            at(format!("{}_alertmanager", name.stack)).await
        ),
    };
    let v = status::collect(
        &docker,
        &name.stack,
        &access,
        Some(&prometheus),
        Some(&alertmanager),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", status::render_table(&v));
    }
    Ok(())
}

fn render(content: &StackContent, out: &std::path::Path) -> anyhow::Result<()> {
    let files = content.files()?;
    let opts = StackOptions {
        agents: content.agents()?,
        ..content.options()
    };
    let dir = content
        .name
        .state_dir
        .clone()
        .unwrap_or_else(|| out.join("state"));
    // No swarm to ask for its managers: the kept certificates' names stand (they are the ones
    // `stack up` deployed); a new stack's are the overlay's, loopback and --tls-name.
    let grafana = opts.grafana.is_some();
    let mut names = secrets::names_for(&opts.stack, &[], &content.tls_name, grafana);
    if let Some(k) = Secrets::load(&dir)? {
        for (who, leaf) in k.leaves {
            names.insert(who, leaf.names);
        }
    }
    let (kept, made) = Secrets::ensure(&dir, &want(content, names)?)?;
    let stack_secrets = plan::StackSecrets::from_kept(&opts.stack, &kept, opts.grafana.is_some())?;
    let plan = plan::plan(&opts, &files, &stack_secrets);
    let written = render::write(out, &opts, &plan)?;
    for w in written {
        println!("{}", out.join(w).display());
    }
    if made.ca {
        println!(
            "The fleet CA and the stack's secrets are kept in {} (root only)",
            dir.display()
        );
    }
    println!(
        "{} holds the stack's secrets (mode 0600): keep it as secret as they are",
        out.join("secrets").display()
    );
    println!(
        "Deploy:  docker stack deploy -c {} {}",
        out.join("docker-stack.yml").display(),
        opts.stack
    );
    Ok(())
}

async fn ca(host: &str, name: &StackName, out: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = match &name.state_dir {
        Some(d) => d.clone(),
        None => {
            let docker = docker::connect(host).await?;
            secrets::default_state_dir(&docker, &name.stack).await?
        }
    };
    let kept = Secrets::load(&dir)?.with_context(|| {
        format!(
            "no fleet CA kept in {}: run this where `edgesense stack up` ran, or read ca.crt from an agent bundle (/etc/edgesense/fleet/ca.crt on a node)",
            dir.display()
        )
    })?;
    match out {
        Some(p) => {
            std::fs::write(&p, &kept.ca.cert_pem).with_context(|| p.display().to_string())?;
            eprintln!("wrote {} ({})", p.display(), kept.ca.name);
        }
        None => print!("{}", kept.ca.cert_pem),
    }
    Ok(())
}
