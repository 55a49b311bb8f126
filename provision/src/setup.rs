//! What a new node does on first boot, written to its boot partition.
//!
//! Two mechanisms, picked from the image:
//! - **cloud-init** (images whose boot partition has `user-data`, `network-config` or
//!   `meta-data`): hostname, user (SHA-512-crypt hash or locked password, SSH keys), Wi-Fi (with
//!   its regulatory domain) and timezone go into those files; `runcmd` runs
//!   `edgesense/firstboot.sh` once the network is up.
//! - **firstrun** (older images): `firstrun.sh` runs once from `cmdline.txt` (`systemd.run=`,
//!   the mechanism Raspberry Pi Imager uses) and sets hostname, Wi-Fi, timezone and SSH; the user
//!   comes from `userconf.txt` (read by the image's userconfig service); `firstrun.sh` installs
//!   `edgesense-firstboot.service`, which runs `firstboot.sh` on the next boot, after the network.
//!
//! Either way `firstboot.sh` installs Docker from the OS packages, joins the swarm, and starts the
//! agent container the way `edgesense node run` does. Secrets on the card: the password only as a
//! hash, the Wi-Fi passphrase only as its PSK, the join and webhook tokens in
//! `edgesense/` until first boot moves them to root-only `/etc/edgesense/` and deletes them.

use crate::{
    boot::Boot,
    bootfiles::{self, Overlays},
    cloudinit::{self, key, list, map, s},
    error::{FlashError, Result},
};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct User {
    pub name: String,
    /// SHA-512-crypt hash; `None` locks the password (SSH keys only).
    pub password_hash: Option<String>,
    pub ssh_keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Wifi {
    pub ssid: String,
    /// The WPA PSK, 64 hex digits ([`crate::secrets::wpa_psk`]).
    pub psk: String,
    /// ISO 3166 country code: the regulatory domain (channels, power).
    pub country: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Swarm {
    /// `manager:2377`.
    pub manager: String,
    pub token: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    /// The agent config (TOML), installed as /etc/edgesense/agent.toml.
    pub config: Option<String>,
    /// The webhook token, installed as /etc/edgesense/token; `None`: first boot makes one.
    pub token: Option<String>,
    /// The fleet's CA, the agent's certificate and its Alertmanager password, installed as
    /// /etc/edgesense/{ca.crt, agent.pem, alertmanager.password}.
    pub tls: Option<AgentTls>,
    /// Shell lines that start the agent container (from `edgesense node run`'s settings), using
    /// those two paths when they exist.
    pub run: String,
}

/// What the agent needs for TLS in the stack.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AgentTls {
    pub ca: String,
    /// Certificate and key, PEM.
    pub cert: String,
    pub alertmanager_password: String,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentTls(…)")
    }
}

/// Everything the new node should be.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setup {
    pub hostname: Option<String>,
    pub user: Option<User>,
    pub wifi: Option<Wifi>,
    pub timezone: Option<String>,
    pub swarm: Option<Swarm>,
    pub agent: Option<Agent>,
    /// The user's own cloud-config, merged into ours.
    pub user_data: Option<String>,
    pub overlays: Overlays,
    /// `cgroup_enable=memory cgroup_memory=1` on cmdline.txt: Raspberry Pi OS disables the memory
    /// cgroup, so container memory limits would be ignored.
    pub memory_cgroup: bool,
}

/// How first boot is driven on this image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    CloudInit,
    /// `firstrun.sh` from `cmdline.txt`; the boot partition is mounted at `boot_mount` on the Pi
    /// (`/boot/firmware` from bookworm on, `/boot` before).
    Firstrun {
        boot_mount: &'static str,
    },
}

fn bad(what: String) -> FlashError {
    FlashError::Input(what)
}

/// RFC 1123 host name label.
fn check_hostname(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && !h.starts_with('-')
        && !h.ends_with('-')
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!("--hostname {h:?}: use letters, digits and '-', at most 63, not starting or ending with '-'")))
    }
}

impl Setup {
    /// Checks every value that ends up in a script or a config file.
    pub fn validate(&self) -> Result<()> {
        if let Some(h) = &self.hostname {
            check_hostname(h)?;
        }
        if let Some(u) = &self.user {
            let ok = u.name.len() <= 32
                && u.name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && u.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok || u.name == "root" {
                return Err(bad(format!(
                    "--user {:?}: a login name of lower-case letters, digits, '_' or '-', not root",
                    u.name
                )));
            }
            if u.password_hash.is_none() && u.ssh_keys.is_empty() {
                return Err(bad(format!("user {} would have neither a password nor an SSH key: give --password-file or --ssh-key", u.name)));
            }
            for k in &u.ssh_keys {
                if k.contains('\n')
                    || !(k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-"))
                {
                    return Err(bad(format!("{:.30}…: not an OpenSSH public key line", k)));
                }
            }
        }
        if let Some(w) = &self.wifi {
            if w.ssid.is_empty() || w.ssid.len() > 32 || w.ssid.chars().any(char::is_control) {
                return Err(bad(
                    "--wifi-ssid: 1 to 32 bytes, no control characters".into()
                ));
            }
            if w.country.len() != 2 || !w.country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(bad(format!(
                    "--wifi-country {:?}: a two-letter ISO 3166 code such as DE or GB",
                    w.country
                )));
            }
            if w.psk.len() != 64 || !w.psk.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("internal: the Wi-Fi PSK must be 64 hex digits".into()));
            }
        }
        if let Some(tz) = &self.timezone {
            let ok = !tz.is_empty()
                && !tz.contains("..")
                && tz
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
            if !ok {
                return Err(bad(format!(
                    "--timezone {tz:?}: a zone name such as Europe/Berlin"
                )));
            }
        }
        if let Some(sw) = &self.swarm {
            let ok = sw.manager.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty()
                    && p.parse::<u16>().is_ok()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            });
            if !ok {
                return Err(bad(format!(
                    "--swarm-join {:?}: write MANAGER:2377",
                    sw.manager
                )));
            }
            if sw.token.is_empty()
                || !sw
                    .token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad(
                    "the swarm join token looks wrong (expected SWMTKN-1-…)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `s` as one single-quoted shell word.
pub fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Which mechanism the image uses.
pub fn detect(boot: &Boot) -> Result<Mechanism> {
    if ["user-data", "meta-data", "network-config"]
        .iter()
        .any(|f| boot.exists(f))
    {
        return Ok(Mechanism::CloudInit);
    }
    let issue = boot
        .read("issue.txt")?
        .unwrap_or_default()
        .to_ascii_lowercase();
    let old = ["stretch", "buster", "bullseye"]
        .iter()
        .any(|r| issue.contains(r));
    Ok(Mechanism::Firstrun {
        boot_mount: if old { "/boot" } else { "/boot/firmware" },
    })
}

/// `firstboot.sh`: Docker, swarm join, agent (and, for firstrun images, the SSH keys, since the
/// user only exists once userconfig has run).
pub fn firstboot_script(setup: &Setup, keys_for: Option<&User>) -> String {
    let mut s = String::from(
        r#"#!/bin/bash
# edgesense first boot: written by `edgesense flash`. Runs once the network is up.
set -u
exec >>/var/log/edgesense-firstboot.log 2>&1
echo "== edgesense first boot $(date -Is)"
BOOT=/boot/firmware
[ -d "$BOOT/edgesense" ] || BOOT=/boot
SRC="$BOOT/edgesense"
install -d -m 0755 /etc/edgesense
[ -f "$SRC/agent.toml" ] && install -m 0644 "$SRC/agent.toml" /etc/edgesense/agent.toml
[ -f "$SRC/ca.crt" ] && install -m 0644 "$SRC/ca.crt" /etc/edgesense/ca.crt
# The secrets move to root-only files. On the FAT boot partition `rm` alone frees the clusters
# and leaves the bytes for anyone holding the card: each is overwritten in place first (FAT
# has no journal and no copy-on-write, so shred's passes land on the file's own clusters).
for secret in token swarm-token agent.pem alertmanager.password; do
    if [ -f "$SRC/$secret" ]; then
        install -m 0600 "$SRC/$secret" "/etc/edgesense/$secret"
        shred -n 1 -z -u "$SRC/$secret" || rm -f "$SRC/$secret"
    fi
done
sync
"#,
    );
    if let Some(u) = keys_for.filter(|u| !u.ssh_keys.is_empty()) {
        let keys: Vec<String> = u.ssh_keys.iter().map(|k| sh(k)).collect();
        s.push_str(&format!(
            r#"
# SSH keys for {name} (its account exists by now).
USER_HOME=$(getent passwd {name} | cut -d: -f6)
if [ -n "$USER_HOME" ]; then
    install -d -m 0700 -o {name} -g {name} "$USER_HOME/.ssh"
    printf '%s\n' {keys} >> "$USER_HOME/.ssh/authorized_keys"
    chown {name}:{name} "$USER_HOME/.ssh/authorized_keys"
    chmod 0600 "$USER_HOME/.ssh/authorized_keys"
fi
"#,
            name = sh(&u.name),
            keys = keys.join(" ")
        ));
    }
    s.push_str(
        r#"
# Docker from the OS packages; the network may take a while.
for attempt in 1 2 3 4 5 6; do
    command -v docker >/dev/null && break
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io && break
    sleep 20
done
systemctl enable --now docker
"#,
    );
    if let Some(u) = &setup.user {
        s.push_str(&format!("usermod -aG docker {}\n", sh(&u.name)));
    }
    if let Some(sw) = &setup.swarm {
        s.push_str(&format!(
            r#"
# Join the swarm.
if [ "$(docker info --format '{{{{.Swarm.LocalNodeState}}}}')" != active ]; then
    for attempt in 1 2 3 4 5 6; do
        docker swarm join --token "$(cat /etc/edgesense/swarm-token)" {manager} && break
        sleep 10
    done
fi
"#,
            manager = sh(&sw.manager)
        ));
    }
    if let Some(a) = &setup.agent {
        if a.token.is_none() {
            s.push_str(
                r#"
# No token on the card: one made here (an agent the project starts always has one). Give the
# stack the same (`stack up --token-file`), or replace this file and start the agent again.
if [ ! -s /etc/edgesense/token ]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >/etc/edgesense/token && echo >>/etc/edgesense/token)
    echo "made a webhook token in /etc/edgesense/token"
fi
"#,
            );
        }
        s.push_str("\n# The agent, as `edgesense node run` starts it.\n");
        s.push_str(&a.run);
        if !a.run.ends_with('\n') {
            s.push('\n');
        }
    }
    s.push_str("echo \"== edgesense first boot done\"\n");
    s
}

/// The cloud-config edgesense writes.
fn user_data(setup: &Setup, boot_mount: &str) -> yaml_rust2::yaml::Hash {
    let mut pairs: Vec<(&str, yaml_rust2::Yaml)> = Vec::new();
    if let Some(h) = &setup.hostname {
        pairs.push(("hostname", s(h)));
        pairs.push(("manage_etc_hosts", yaml_rust2::Yaml::Boolean(true)));
    }
    if let Some(tz) = &setup.timezone {
        pairs.push(("timezone", s(tz)));
    }
    if let Some(u) = &setup.user {
        let mut user = vec![
            ("name", s(&u.name)),
            (
                "groups",
                list(
                    ["adm", "sudo", "gpio", "i2c", "video"]
                        .iter()
                        .map(|g| s(g))
                        .collect(),
                ),
            ),
            ("shell", s("/bin/bash")),
            (
                "lock_passwd",
                yaml_rust2::Yaml::Boolean(u.password_hash.is_none()),
            ),
        ];
        if let Some(hash) = &u.password_hash {
            user.push(("passwd", s(hash)));
        } else {
            user.push(("sudo", s("ALL=(ALL) NOPASSWD:ALL")));
        }
        if !u.ssh_keys.is_empty() {
            user.push((
                "ssh_authorized_keys",
                list(u.ssh_keys.iter().map(|k| s(k)).collect()),
            ));
        }
        pairs.push(("users", list(vec![map(user)])));
        pairs.push((
            "ssh_pwauth",
            yaml_rust2::Yaml::Boolean(u.ssh_keys.is_empty()),
        ));
    }
    pairs.push((
        "runcmd",
        list(vec![list(vec![
            s("bash"),
            s(&format!("{boot_mount}/edgesense/firstboot.sh")),
        ])]),
    ));
    match map(pairs) {
        yaml_rust2::Yaml::Hash(h) => h,
        _ => unreachable!("map() builds a hash"),
    }
}

/// Writes the whole setup into `boot`; returns the files written (relative to the partition).
pub fn apply(boot: &Boot, setup: &Setup, mechanism: &Mechanism) -> Result<Vec<String>> {
    setup.validate()?;
    let mut written = Vec::new();
    let mut put = |path: &str, content: &str| -> Result<()> {
        boot.write(path, content.as_bytes())?;
        written.push(path.to_owned());
        Ok(())
    };

    let config = boot.read("config.txt")?.unwrap_or_default();
    put(
        "config.txt",
        &bootfiles::config_txt(&config, &setup.overlays.lines()),
    )?;
    let mut cmdline = boot.read("cmdline.txt")?.ok_or_else(|| {
        FlashError::Boot("no cmdline.txt: not a Raspberry Pi OS boot partition".into())
    })?;
    if setup.memory_cgroup {
        cmdline = bootfiles::cmdline(&cmdline, &["cgroup_enable=memory", "cgroup_memory=1"]);
    }

    let keys_in_firstboot = match mechanism {
        Mechanism::Firstrun { .. } => setup.user.as_ref(),
        Mechanism::CloudInit => None,
    };
    put(
        "edgesense/firstboot.sh",
        &firstboot_script(setup, keys_in_firstboot),
    )?;
    if let Some(a) = &setup.agent {
        if let Some(c) = &a.config {
            put("edgesense/agent.toml", c)?;
        }
        if let Some(t) = &a.token {
            put("edgesense/token", &format!("{t}\n"))?;
        }
        if let Some(t) = &a.tls {
            put("edgesense/ca.crt", &t.ca)?;
            put("edgesense/agent.pem", &t.cert)?;
            put(
                "edgesense/alertmanager.password",
                &format!("{}\n", t.alertmanager_password.trim()),
            )?;
        }
    }
    if let Some(sw) = &setup.swarm {
        put("edgesense/swarm-token", &format!("{}\n", sw.token))?;
    }
    if setup.user.is_some() {
        // The firmware's sshswitch service enables the SSH server when this file exists.
        put("ssh", "")?;
    }

    match mechanism {
        Mechanism::CloudInit => {
            let stock = cloudinit::parse_map(
                &boot.read("user-data")?.unwrap_or_default(),
                "the image's user-data",
            )?;
            let mut ud = cloudinit::overlay(stock, user_data(setup, "/boot/firmware"));
            if let Some(u) = &setup.user_data {
                let theirs = cloudinit::parse_map(u, "--user-data")?;
                ud = cloudinit::merge_user(theirs, ud)?;
            }
            put("user-data", &cloudinit::emit(ud, Some("#cloud-config"))?)?;
            if let Some(w) = &setup.wifi {
                let stock = cloudinit::parse_map(
                    &boot.read("network-config")?.unwrap_or_default(),
                    "the image's network-config",
                )?;
                let mut net = match stock.get(&key("network")) {
                    Some(yaml_rust2::Yaml::Hash(n)) => n.clone(),
                    _ => yaml_rust2::yaml::Hash::new(),
                };
                net.insert(key("version"), yaml_rust2::Yaml::Integer(2));
                let ap = map(vec![(w.ssid.as_str(), map(vec![("password", s(&w.psk))]))]);
                let wlan = map(vec![
                    ("dhcp4", yaml_rust2::Yaml::Boolean(true)),
                    ("optional", yaml_rust2::Yaml::Boolean(true)),
                    ("regulatory-domain", s(&w.country)),
                    ("access-points", ap),
                ]);
                net.insert(key("wifis"), map(vec![("wlan0", wlan)]));
                let mut top = stock;
                top.insert(key("network"), yaml_rust2::Yaml::Hash(net));
                put("network-config", &cloudinit::emit(top, None)?)?;
            }
            let mut meta = cloudinit::parse_map(
                &boot.read("meta-data")?.unwrap_or_default(),
                "the image's meta-data",
            )?;
            // A new instance id makes cloud-init apply this configuration.
            let id = format!("edgesense-{}", setup.hostname.as_deref().unwrap_or("node"));
            meta.insert(key("instance-id"), s(&id));
            put("meta-data", &cloudinit::emit(meta, None)?)?;
        }
        Mechanism::Firstrun { boot_mount } => {
            if let Some(ud) = &setup.user_data {
                let _ = cloudinit::parse_map(ud, "--user-data")?;
                return Err(FlashError::Input(
                    "--user-data needs an image with cloud-init (its boot partition has user-data); this image boots with firstrun.sh".into(),
                ));
            }
            put("firstrun.sh", &firstrun_script(setup, boot_mount))?;
            cmdline = bootfiles::cmdline_without(
                &cmdline,
                &["systemd.run", "systemd.run_success_action", "systemd.unit"],
            );
            let run = format!("systemd.run={boot_mount}/firstrun.sh");
            cmdline = bootfiles::cmdline(
                &cmdline,
                &[
                    &run,
                    "systemd.run_success_action=reboot",
                    "systemd.unit=kernel-command-line.target",
                ],
            );
            if let Some(u) = &setup.user {
                // userconfig reads `name:hash`; `!` locks the password.
                put(
                    "userconf.txt",
                    &format!("{}:{}\n", u.name, u.password_hash.as_deref().unwrap_or("!")),
                )?;
            }
        }
    }
    put("cmdline.txt", &cmdline)?;
    Ok(written)
}

/// `firstrun.sh` for images without cloud-init.
fn firstrun_script(setup: &Setup, boot_mount: &str) -> String {
    let mut s = format!(
        r#"#!/bin/bash
# edgesense first run: written by `edgesense flash`, run once from cmdline.txt (systemd.run).
set +e
BOOT={boot}
CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom
"#,
        boot = sh(boot_mount)
    );
    if let Some(h) = &setup.hostname {
        s.push_str(&format!(
            r#"if [ -x "$CUSTOM" ]; then "$CUSTOM" set_hostname {h}; else
    echo {h} >/etc/hostname
    sed -i "s/127.0.1.1.*/127.0.1.1\t"{h}"/" /etc/hosts
fi
"#,
            h = sh(h)
        ));
    }
    if setup.user.as_ref().is_some_and(|u| !u.ssh_keys.is_empty()) {
        s.push_str("systemctl enable ssh\n");
    }
    if let Some(w) = &setup.wifi {
        s.push_str(&format!(
            r#"if [ -x "$CUSTOM" ]; then "$CUSTOM" set_wlan {ssid} {psk} {cc}; else
    cat >/etc/wpa_supplicant/wpa_supplicant.conf <<'WPAEOF'
ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev
country={country}
update_config=1
network={{
    ssid="{ssid_raw}"
    psk={psk_raw}
}}
WPAEOF
    chmod 600 /etc/wpa_supplicant/wpa_supplicant.conf
    rfkill unblock wifi
    for f in /var/lib/systemd/rfkill/*:wlan; do echo 0 >"$f"; done
fi
"#,
            ssid = sh(&w.ssid),
            psk = sh(&w.psk),
            cc = sh(&w.country),
            country = w.country,
            ssid_raw = w.ssid.replace('"', "\\\""),
            psk_raw = w.psk
        ));
    }
    if let Some(tz) = &setup.timezone {
        s.push_str(&format!(
            r#"if [ -x "$CUSTOM" ]; then "$CUSTOM" set_timezone {tz}; else
    rm -f /etc/localtime
    echo {tz} >/etc/timezone
    dpkg-reconfigure -f noninteractive tzdata
fi
"#,
            tz = sh(tz)
        ));
    }
    s.push_str(
        r#"# The rest needs the network: a service for the next boot.
install -m 0755 "$BOOT/edgesense/firstboot.sh" /usr/local/sbin/edgesense-firstboot
cat >/etc/systemd/system/edgesense-firstboot.service <<'UNITEOF'
[Unit]
Description=edgesense first boot: Docker, swarm join, agent
Wants=network-online.target
After=network-online.target userconfig.service
ConditionPathExists=!/var/lib/edgesense/firstboot.done

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/edgesense-firstboot
ExecStartPost=/bin/sh -c 'mkdir -p /var/lib/edgesense && touch /var/lib/edgesense/firstboot.done'
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNITEOF
systemctl enable edgesense-firstboot.service
rm -f "$BOOT/firstrun.sh"
sed -i 's| systemd.run.*||g' "$BOOT/cmdline.txt"
exit 0
"#,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh("a b"), "'a b'");
    }

    #[test]
    fn validation_rejects_what_would_break_a_script() {
        let mut s = Setup {
            hostname: Some("pi kitchen".into()),
            ..Setup::default()
        };
        assert!(s.validate().is_err());
        s.hostname = Some("pi-kitchen".into());
        assert!(s.validate().is_ok());
        s.user = Some(User {
            name: "pi".into(),
            password_hash: None,
            ssh_keys: vec![],
        });
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("neither a password"));
        s.user = Some(User {
            name: "pi".into(),
            password_hash: None,
            ssh_keys: vec!["ssh-ed25519 AAAA me@laptop".into()],
        });
        assert!(s.validate().is_ok());
        s.timezone = Some("../../etc/shadow".into());
        assert!(s.validate().is_err());
        s.timezone = Some("Europe/Berlin".into());
        s.swarm = Some(Swarm {
            manager: "10.0.0.2".into(),
            token: "SWMTKN-1-abc".into(),
        });
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("MANAGER:2377"));
    }

    #[test]
    fn firstboot_joins_and_runs_the_agent() {
        let s = Setup {
            swarm: Some(Swarm {
                manager: "10.0.0.2:2377".into(),
                token: "SWMTKN-1-abc".into(),
            }),
            agent: Some(Agent {
                config: None,
                token: None,
                tls: None,
                run: "docker run -d --name edgesense-agent img".into(),
            }),
            ..Setup::default()
        };
        let f = firstboot_script(&s, None);
        assert!(
            f.contains(
                "docker swarm join --token \"$(cat /etc/edgesense/swarm-token)\" '10.0.0.2:2377'"
            ),
            "{f}"
        );
        assert!(f.contains("{{.Swarm.LocalNodeState}}"), "{f}");
        assert!(f.contains("apt-get install -y docker.io"));
        assert!(f.contains("docker run -d --name edgesense-agent img\n"));
        assert!(
            !f.contains("SWMTKN"),
            "the token is read from a file, not written into the script"
        );
        assert!(
            f.contains("shred -n 1 -z -u \"$SRC/$secret\""),
            "the card's secrets are overwritten before they are removed: {f}"
        );
        assert!(
            f.contains("od -An -N16 -tx1 /dev/urandom") && f.contains("umask 077"),
            "no token on the card: first boot makes one, root's alone: {f}"
        );
    }
}
