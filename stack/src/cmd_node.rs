//! `edgesense node run|stop`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use edgesense::{
    credentials::{self, Bundle},
    docker, node, secrets,
};

use crate::cli::{read_file, NodeAction};

pub async fn run(host: &str, local: bool, action: NodeAction) -> anyhow::Result<()> {
    let docker = docker::connect(host).await?;
    match action {
        NodeAction::Run {
            image,
            name,
            node_name,
            config,
            token_file,
            simulate,
            privileged,
            publish,
            health_interval,
            network,
            no_token,
            credentials,
            no_systemd_unit,
        } => {
            if privileged {
                eprintln!("WARNING: --privileged gives the agent container every device and capability of this host; use it only if the least-privilege default cannot reach your hardware");
            }
            // The stack first: without its network nothing else matters.
            node::check_network(&docker, &network).await?;
            let (dir, bundle) = bundle(&docker, credentials).await?;
            let token = match (token_file, no_token) {
                (Some(p), _) => Some(read_token(&p)?),
                (None, true) => {
                    eprintln!("WARNING: --no-token: the agent's LED API and webhook accept anyone who can reach them");
                    None
                }
                (None, false) => Some(bundle.token.clone()),
            };
            let config = config
                .as_ref()
                .map(|p| read_file(p, "--config"))
                .transpose()?;
            let o = node::NodeOptions {
                image,
                name: name.clone(),
                node_name,
                config,
                token,
                tls: Some(node::AgentTls {
                    ca: bundle.ca,
                    cert: bundle.cert,
                    alertmanager_password: bundle.password,
                }),
                simulate,
                privileged,
                network,
                publish,
                launcher: None,
                health_interval,
            };
            let started = node::run(&docker, &o).await?;
            println!(
                "{} agent container {name} (node \"{}\", image {}{}; HTTPS with the fleet's credentials from {})",
                if started.replaced {
                    "replaced"
                } else {
                    "started"
                },
                started.node,
                started.image,
                if simulate || privileged {
                    String::new()
                } else if started.devices.is_empty() {
                    ", no GPIO or I2C device on this node".into()
                } else {
                    format!(", devices {}", started.devices.join(" "))
                },
                dir.display()
            );
            if local && !no_systemd_unit {
                match node::install_start_again(&name) {
                    Ok(true) => println!(
                        "enabled systemd units {} (starts the agent again if dockerd cannot after a restart: moby/moby#32607) and {} (every minute: running, and on its network after the node rejoined the swarm)",
                        node::start_again_instance(&name),
                        node::check_timer_instance(&name)
                    ),
                    Ok(false) => {}
                    Err(e) => eprintln!(
                        "warning: could not install the systemd unit {}: {e}\n  after a dockerd restart, check that the agent runs (`edgesense doctor`)",
                        node::start_again_instance(&name)
                    ),
                }
            }
            Ok(())
        }
        NodeAction::Stop { name } => {
            if node::remove(&docker, &name).await? {
                println!("stopped and removed {name}");
            } else {
                println!("no container named {name}");
            }
            Ok(())
        }
    }
}

fn read_token(p: &Path) -> anyhow::Result<String> {
    let t = read_file(&p.to_path_buf(), "--token-file")?;
    anyhow::ensure!(
        !t.trim().is_empty(),
        "--token-file {}: empty; put the token on its first line",
        p.display()
    );
    Ok(t)
}

/// The fleet credentials for the agent: `--credentials DIR`, else a node's copy in
/// /etc/edgesense/fleet, else the ones `stack up` keeps on this machine for the swarm the
/// Docker host is a manager of. None of them: a refusal that says where to get them (an agent
/// without them could not be scraped, and would take webhooks in clear).
async fn bundle(
    docker: &bollard::Docker,
    given: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Bundle)> {
    if let Some(d) = given {
        let b = Bundle::read(&d).with_context(|| format!("--credentials {}", d.display()))?;
        return Ok((d, b));
    }
    let node_copy = PathBuf::from(credentials::NODE_BUNDLE);
    if node_copy.join(credentials::BUNDLE_CA).exists() {
        return Ok((node_copy.clone(), Bundle::read(&node_copy)?));
    }
    // The Docker host is a manager: its swarm's. A worker (--docker-host from the manager):
    // the one swarm this machine keeps a stack for.
    let root = Path::new(credentials::STATE_ROOT);
    let kept = match secrets::cluster_id(docker).await {
        Ok(cluster) => Some(credentials::state_dir(root, &cluster, "edgesense")),
        Err(_) => match credentials::kept_dirs(root, "edgesense").as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
    }
    .map(|d| d.join("agent"));
    if let Some(kept) = kept.filter(|k| k.join(credentials::BUNDLE_CA).exists()) {
        return Ok((kept.clone(), Bundle::read(&kept)?));
    }
    anyhow::bail!(
        "no fleet credentials for the agent (CA, certificate, token, Alertmanager password): `edgesense stack up` writes them on the manager ({}/<swarm>/<stack>/agent); copy that directory to {} on this node (root only), pass --credentials DIR, or run `node run` on the manager with --docker-host",
        credentials::STATE_ROOT,
        credentials::NODE_BUNDLE
    )
}
