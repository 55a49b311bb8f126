//! `edgesense flash`: arguments, secrets from files or prompts (never argv, never printed), the
//! confirmation for a block device, progress, and the report. The work is in
//! `edgesense-provision`.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use edgesense::node::{first_boot_lines, start_again_install_script, NodeOptions};
use edgesense_provision::{
    bootfiles::Overlays,
    secrets,
    setup::{Agent, Setup, Swarm, User, Wifi},
    target,
    write::Progress,
    FlashError,
};

#[derive(Args, Debug)]
pub struct FlashArgs {
    /// Image file: .img, .img.xz or .zip (one .img inside), streamed.
    pub image: PathBuf,
    /// Block device (the SD card, e.g. /dev/sdb) or file to write to.
    #[arg(long, value_name = "TARGET")]
    pub to: PathBuf,
    /// Do not ask before overwriting a block device.
    #[arg(long)]
    pub yes: bool,
    /// Show what would happen and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip reading the card back to compare it with the image.
    #[arg(long)]
    pub no_verify: bool,
    /// Only write the image; leave its boot partition as it is.
    #[arg(long)]
    pub no_customise: bool,

    /// Host name of the new node (its node name in the swarm).
    #[arg(long, help_heading = "First boot")]
    pub hostname: Option<String>,
    /// Login user to create.
    #[arg(long, value_name = "NAME", help_heading = "First boot")]
    pub user: Option<String>,
    /// File with the user's password (else prompted on a terminal; with only --ssh-key the
    /// password is locked).
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub password_file: Option<PathBuf>,
    /// SSH public key file for the user (repeatable).
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub ssh_key: Vec<PathBuf>,
    /// Wi-Fi network to join.
    #[arg(long, value_name = "SSID", help_heading = "First boot")]
    pub wifi_ssid: Option<String>,
    /// File with the Wi-Fi passphrase (else prompted); only its WPA PSK is stored on the card.
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub wifi_password_file: Option<PathBuf>,
    /// Wi-Fi country (ISO 3166, e.g. DE): sets the regulatory domain.
    #[arg(long, value_name = "CC", help_heading = "First boot")]
    pub wifi_country: Option<String>,
    /// Time zone, e.g. Europe/Berlin.
    #[arg(long, value_name = "ZONE", help_heading = "First boot")]
    pub timezone: Option<String>,
    /// Join this swarm manager on first boot (MANAGER:2377).
    #[arg(long, value_name = "MANAGER:PORT", help_heading = "First boot")]
    pub swarm_join: Option<String>,
    /// File with the swarm's worker join token (`docker swarm join-token -q worker`).
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub swarm_token_file: Option<PathBuf>,
    /// Agent config (TOML) for the node. With it (or --agent-token-file) first boot starts the
    /// card's own agent as `node run` does; without them, a node joining a swarm gets its agent
    /// from the stack's launcher (`stack up --agents`).
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub agent_config: Option<PathBuf>,
    /// File with the stack's webhook token, for the agent [default: the one in
    /// --agent-credentials, else a new one first boot makes on the Pi].
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub agent_token_file: Option<PathBuf>,
    /// The fleet's agent credentials (the agent/ directory `stack up` writes: CA, certificate,
    /// token, Alertmanager password): the card's agent serves HTTPS in the stack. Needed with
    /// --swarm-join when the card starts its own agent.
    #[arg(long, value_name = "DIR", help_heading = "First boot")]
    pub agent_credentials: Option<PathBuf>,
    /// Agent image the node runs (a registry name every node can pull).
    #[arg(long, value_name = "IMAGE", help_heading = "First boot", default_value = concat!("edgesense/agent:", env!("CARGO_PKG_VERSION")))]
    pub agent_image: String,
    /// Do not start the agent on first boot.
    #[arg(long, help_heading = "First boot")]
    pub no_agent: bool,
    /// Your own cloud-config, merged with what edgesense writes (cloud-init images).
    #[arg(long, value_name = "FILE", help_heading = "First boot")]
    pub user_data: Option<PathBuf>,

    /// 1-Wire data pin (BCM) for DS18B20s.
    #[arg(
        long,
        value_name = "PIN",
        default_value_t = 4,
        help_heading = "Hardware (config.txt)"
    )]
    pub w1_pin: u8,
    /// Leave the I2C bus off.
    #[arg(long, help_heading = "Hardware (config.txt)")]
    pub no_i2c: bool,
    /// Let the kernel driver read a BME280 (dtoverlay=i2c-sensor,bme280).
    #[arg(long, help_heading = "Hardware (config.txt)")]
    pub bme280_kernel: bool,
    /// A DHT22 on this pin (dtoverlay=dht11,gpiopin=N).
    #[arg(long, value_name = "PIN", help_heading = "Hardware (config.txt)")]
    pub dht_pin: Option<u8>,
    /// Do not enable the memory cgroup on cmdline.txt (container memory limits then do nothing).
    #[arg(long, help_heading = "Hardware (config.txt)")]
    pub no_memory_cgroup: bool,

    /// Mount table to check the target against.
    #[arg(long, hide = true, default_value = target::MOUNTS)]
    pub mounts_table: PathBuf,
}

/// The first line of a secret file, trimmed; never echoed.
fn secret_file(p: &Path, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display()))?;
    let s = s
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    if s.is_empty() {
        bail!("{what} {}: empty", p.display());
    }
    Ok(s)
}

fn secret(file: Option<&PathBuf>, what: &str, prompt: &str) -> anyhow::Result<String> {
    if let Some(f) = file {
        return secret_file(f, what);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what}: give it as a file ({what} FILE); secrets are never taken from the command line, and there is no terminal to ask on");
    }
    let v = rpassword::prompt_password(prompt).context("read from the terminal")?;
    if v.is_empty() {
        bail!("{what}: nothing entered");
    }
    Ok(v)
}

fn setup(a: &FlashArgs) -> anyhow::Result<Setup> {
    let user = match &a.user {
        None => {
            if a.password_file.is_some() || !a.ssh_key.is_empty() {
                bail!("--password-file and --ssh-key need --user NAME");
            }
            None
        }
        Some(name) => {
            let mut keys = Vec::new();
            for k in &a.ssh_key {
                let text = std::fs::read_to_string(k)
                    .with_context(|| format!("--ssh-key {}", k.display()))?;
                keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            let password_hash = if a.password_file.is_some() || keys.is_empty() {
                let pw = secret(
                    a.password_file.as_ref(),
                    "--password-file",
                    &format!("Password for {name}: "),
                )?;
                Some(secrets::password_hash(&pw)?)
            } else {
                None
            };
            Some(User {
                name: name.clone(),
                password_hash,
                ssh_keys: keys,
            })
        }
    };
    let wifi = match &a.wifi_ssid {
        None => None,
        Some(ssid) => {
            let country = a
                .wifi_country
                .clone()
                .context("--wifi-ssid needs --wifi-country CC (the regulatory domain, e.g. DE)")?;
            let pass = secret(
                a.wifi_password_file.as_ref(),
                "--wifi-password-file",
                &format!("Passphrase for Wi-Fi {ssid}: "),
            )?;
            Some(Wifi {
                ssid: ssid.clone(),
                psk: secrets::wpa_psk(ssid, &pass)?,
                country: country.to_ascii_uppercase(),
            })
        }
    };
    let swarm = match (&a.swarm_join, &a.swarm_token_file) {
        (Some(m), Some(f)) => Some(Swarm {
            manager: m.clone(),
            token: secret_file(f, "--swarm-token-file")?,
        }),
        (Some(_), None) => bail!("--swarm-join needs --swarm-token-file FILE (`docker swarm join-token -q worker` on the manager)"),
        (None, Some(_)) => bail!("--swarm-token-file needs --swarm-join MANAGER:2377"),
        (None, None) => None,
    };
    // In a swarm whose stack has launchers the agent arrives by itself; the card starts its own
    // only outside a swarm or when it carries the agent's config or token.
    let launcher_brings_it = a.swarm_join.is_some()
        && a.agent_config.is_none()
        && a.agent_token_file.is_none()
        && a.agent_credentials.is_none();
    let agent = if a.no_agent || launcher_brings_it {
        None
    } else {
        let config = a
            .agent_config
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("--agent-config {}", p.display()))
            })
            .transpose()?;
        let bundle = a
            .agent_credentials
            .as_ref()
            .map(|d| {
                edgesense::credentials::Bundle::read(d)
                    .with_context(|| format!("--agent-credentials {}", d.display()))
            })
            .transpose()?;
        if a.swarm_join.is_some() && bundle.is_none() {
            bail!("--swarm-join with the card's own agent needs --agent-credentials DIR (the agent/ directory `edgesense stack up` writes on the manager): the stack's Prometheus and Alertmanager only speak TLS to agents with the fleet's certificate");
        }
        let token = match (&a.agent_token_file, &bundle) {
            (Some(p), _) => Some(secret_file(p, "--agent-token-file")?),
            (None, Some(b)) => Some(b.token.lines().next().unwrap_or("").trim().to_owned()),
            // First boot makes one on the Pi: an agent the project starts always has a token.
            (None, None) => None,
        };
        let tls = bundle.map(|b| edgesense_provision::setup::AgentTls {
            ca: b.ca,
            cert: b.cert,
            alertmanager_password: b.password,
        });
        // The request names the files; first boot copies them from /etc/edgesense (the token
        // always: given, or made there).
        let o = NodeOptions {
            image: a.agent_image.clone(),
            config: config.as_ref().map(|_| String::new()),
            token: Some(String::new()),
            tls: tls.as_ref().map(|_| edgesense::node::AgentTls::default()),
            ..NodeOptions::new()
        };
        Some(Agent {
            config,
            token,
            tls,
            run: format!(
                "{}{}",
                first_boot_lines(&o)?,
                start_again_install_script(&o.name)
            ),
        })
    };
    let user_data = a
        .user_data
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("--user-data {}", p.display())))
        .transpose()?;
    let s = Setup {
        hostname: a.hostname.clone(),
        user,
        wifi,
        timezone: a.timezone.clone(),
        swarm,
        agent,
        user_data,
        overlays: Overlays {
            w1_gpio_pin: a.w1_pin,
            i2c: !a.no_i2c,
            bme280_kernel: a.bme280_kernel,
            dht_pin: a.dht_pin,
        },
        memory_cgroup: !a.no_memory_cgroup,
    };
    s.validate()?;
    Ok(s)
}

/// Progress: a bar on a terminal, a line every 10 % (or 10 s) otherwise.
fn reporter() -> impl FnMut(Progress) {
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<(indicatif::ProgressBar, &'static str)> = None;
    let mut last_line = Instant::now();
    let mut last_pct = -1i64;
    move |p: Progress| {
        if tty {
            if bar.as_ref().is_none_or(|(_, phase)| *phase != p.phase) {
                if let Some((b, _)) = bar.take() {
                    b.finish();
                }
                let b = match p.total {
                    Some(t) => indicatif::ProgressBar::new(t),
                    None => indicatif::ProgressBar::new_spinner(),
                };
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix:>6} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                b.set_style(style);
                b.set_prefix(p.phase);
                bar = Some((b, p.phase));
            }
            if let Some((b, _)) = &bar {
                b.set_position(p.done);
                if p.total == Some(p.done) {
                    b.finish();
                }
            }
            return;
        }
        let pct = p.total.map_or(-1, |t| (p.done * 100 / t.max(1)) as i64);
        let due = pct / 10 != last_pct / 10 || last_line.elapsed() > Duration::from_secs(10);
        if due {
            let eta = p
                .eta()
                .map(|d| format!(", ETA {} s", d.as_secs()))
                .unwrap_or_default();
            let total = p
                .total
                .map(|t| format!(" of {}", target::human(t)))
                .unwrap_or_default();
            eprintln!(
                "{}: {}{total} ({}/s{eta})",
                p.phase,
                target::human(p.done),
                target::human(p.rate() as u64)
            );
            last_line = Instant::now();
            last_pct = pct;
        }
    }
}

pub fn run(a: FlashArgs) -> anyhow::Result<()> {
    let custom = if a.no_customise {
        None
    } else {
        Some(setup(&a)?)
    };
    let c = edgesense_provision::check(&a.image, &a.to, &a.mounts_table, custom.is_some())?;
    let size = c
        .source
        .size
        .map_or("unknown until read".to_owned(), target::human);
    let packing = format!("{:?}", c.source.packing).to_lowercase();
    println!(
        "image:  {} ({packing}{}, {size})",
        c.source.path.display(),
        c.source
            .inner_name
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default()
    );
    println!(
        "target: {} ({})",
        c.target.path.display(),
        c.target.describe()
    );
    if let Some(s) = &custom {
        let mut what = vec![format!(
            "config.txt overlays: {}",
            s.overlays.lines().join(", ")
        )];
        if let Some(h) = &s.hostname {
            what.push(format!("hostname {h}"));
        }
        if let Some(u) = &s.user {
            what.push(format!(
                "user {} ({}{} SSH key(s))",
                u.name,
                if u.password_hash.is_some() {
                    "password, "
                } else {
                    "password locked, "
                },
                u.ssh_keys.len()
            ));
        }
        if let Some(w) = &s.wifi {
            what.push(format!("Wi-Fi {} ({})", w.ssid, w.country));
        }
        if let Some(sw) = &s.swarm {
            what.push(format!("join swarm at {}", sw.manager));
        }
        if s.agent.is_some() {
            what.push(format!("start agent {}", a.agent_image));
        } else if s.swarm.is_some() && !a.no_agent {
            what.push(
                "the agent comes from the stack's launcher (`edgesense stack up --agents`)".into(),
            );
        }
        println!("first boot: {}", what.join("; "));
    }
    if a.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    if c.target.is_block() && !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "{} is a block device: confirm with --yes (no terminal to ask on)",
                c.target.path.display()
            );
        }
        eprint!(
            "Everything on {} ({}) will be erased. Type yes to write: ",
            c.target.path.display(),
            c.target.describe()
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("read the answer")?;
        if answer.trim() != "yes" {
            return Err(FlashError::Cancelled.into());
        }
    }
    let started = Instant::now();
    let mut progress = reporter();
    let report = edgesense_provision::flash(&c, custom.as_ref(), !a.no_verify, &mut progress)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {} in {:.1} s ({}/s){}",
        target::human(report.written.bytes),
        secs,
        target::human((report.written.bytes as f64 / secs.max(1e-3)) as u64),
        if report.verified {
            ", verified: every 4 MiB read back matches its SHA-256"
        } else {
            ""
        },
    );
    if let Some((mechanism, files)) = report.customised {
        println!(
            "first boot via {mechanism:?}; boot files: {}",
            files.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use edgesense::credentials::{BUNDLE_CA, BUNDLE_CERT, BUNDLE_PASSWORD, BUNDLE_TOKEN};

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        a: FlashArgs,
    }

    fn args(extra: &[&str], dir: &Path) -> FlashArgs {
        let token = dir.join("swarm.token");
        std::fs::write(&token, "SWMTKN-1-abc\n").unwrap();
        let cfg = dir.join("agent.toml");
        std::fs::write(&cfg, "simulate = true\n").unwrap();
        let mut v: Vec<String> = ["flash", "img.xz", "--to", "card.img"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for e in extra {
            v.push(
                e.replace("@TOKEN", token.to_str().unwrap())
                    .replace("@CFG", cfg.to_str().unwrap()),
            );
        }
        Wrap::parse_from(v).a
    }

    #[test]
    fn in_a_swarm_the_launcher_brings_the_agent_unless_the_card_carries_its_own() {
        let d = tempfile::tempdir().unwrap();
        let join = [
            "--swarm-join",
            "10.0.0.2:2377",
            "--swarm-token-file",
            "@TOKEN",
        ];
        let s = setup(&args(&join, d.path())).unwrap();
        assert!(s.swarm.is_some() && s.agent.is_none(), "join only");
        let mut with_cfg = join.to_vec();
        with_cfg.extend(["--agent-config", "@CFG"]);
        let e = setup(&args(&with_cfg, d.path())).unwrap_err().to_string();
        assert!(e.contains("--agent-credentials"), "{e}");
        // The agent/ directory `stack up` writes on the manager.
        let bundle = d.path().join("agent");
        std::fs::create_dir(&bundle).unwrap();
        for f in [BUNDLE_CA, BUNDLE_CERT, BUNDLE_TOKEN, BUNDLE_PASSWORD] {
            std::fs::write(bundle.join(f), format!("{f}\n")).unwrap();
        }
        let b = bundle.to_str().unwrap();
        with_cfg.extend(["--agent-credentials", b]);
        let s = setup(&args(&with_cfg, d.path())).unwrap();
        let run = &s.agent.expect("the card's own agent").run;
        assert!(run.contains("docker create --name \"$name\""), "{run}");
        let s = setup(&args(&[], d.path())).unwrap();
        assert!(
            s.agent.is_some(),
            "outside a swarm the card starts its agent"
        );
        let s = setup(&args(&["--no-agent"], d.path())).unwrap();
        assert!(s.agent.is_none());
    }
}
