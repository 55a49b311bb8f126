//! The stack's secrets and where they are kept.
//!
//! `stack up` makes them once and keeps them in the stack's state directory on the machine that
//! runs it (`/var/lib/edgesense/stacks/<swarm cluster id>/<stack>/`, root only, like kubeadm's
//! `/etc/kubernetes/pki`): the fleet CA and its key, the certificates of Prometheus,
//! Alertmanager and the agents, the webhook token, and the passwords of every user of
//! Prometheus's and Alertmanager's web endpoints (with their bcrypt hashes, so a web config
//! renders the same each time and nothing rolls for nothing). Swarm secrets cannot be read
//! back, so this directory is what lets a later `stack up` renew a certificate or rotate the
//! token; the swarm gets a secret of each (named by a hash of its content), and the CA key is
//! never one of them.
//!
//! `agent/` beside them is what an agent needs (CA, its certificate and key, the token, its
//! Alertmanager password): `node run` reads it from here or from a copy in
//! `/etc/edgesense/fleet/` on a node, flash puts it on a card.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Result, StackError},
    pki::{self, Ca, Leaf},
};

/// Where each stack's state directory is, per swarm.
pub const STATE_ROOT: &str = "/var/lib/edgesense/stacks";
/// Where a node keeps a copy of `agent/` for `node run` (root only).
pub const NODE_BUNDLE: &str = "/etc/edgesense/fleet";

/// The operator's user on Prometheus, Alertmanager and the dashboard.
pub const OPERATOR: &str = "edgesense";
/// The users of the web endpoints besides the operator: who they are, and where their password
/// goes.
pub const USER_AGENT: &str = "agent";
pub const USER_PROMETHEUS: &str = "prometheus";
pub const USER_GRAFANA: &str = "grafana";
/// The services' own health checks (and Prometheus scraping itself).
pub const USER_SELF: &str = "self";
/// Grafana's admin login (not a web-config user).
pub const GRAFANA_ADMIN: &str = "grafana-admin";

/// The identities that get a certificate.
pub const IDENTITIES: [&str; 3] = ["prometheus", "alertmanager", "agent"];
/// … and with `--grafana`.
pub const GRAFANA: &str = "grafana";

/// bcrypt's work factor for every user (exporter-toolkit accepts 4–31 and caches a good check).
const BCRYPT_COST: u32 = 10;

/// The files of an agent bundle (`agent/`, `/etc/edgesense/fleet/`).
pub const BUNDLE_CA: &str = "ca.crt";
pub const BUNDLE_CERT: &str = "agent.pem";
pub const BUNDLE_TOKEN: &str = "token";
pub const BUNDLE_PASSWORD: &str = "alertmanager.password";

fn io_error(path: &Path, e: impl std::fmt::Display) -> StackError {
    StackError::Io(format!("{}: {e}", path.display()))
}

/// `n` random bytes from the kernel as hex.
pub fn random_hex(n: usize) -> Result<String> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| StackError::Io(format!("cannot read /dev/urandom: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A password and its bcrypt hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Password {
    pub plain: String,
    pub bcrypt: String,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    pub fn new(plain: &str) -> Result<Password> {
        let bcrypt = bcrypt::hash(plain, BCRYPT_COST)
            .map_err(|e| StackError::Input(format!("bcrypt: {e}")))?;
        Ok(Password {
            plain: plain.to_owned(),
            bcrypt,
        })
    }

    fn random() -> Result<Password> {
        Password::new(&random_hex(16)?)
    }
}

#[derive(Serialize, Deserialize)]
struct CaMeta {
    name: String,
    not_after: u64,
}

#[derive(Serialize, Deserialize)]
struct LeafMeta {
    not_after: u64,
    names: Vec<String>,
}

/// Everything secret of one stack.
pub struct Secrets {
    pub dir: PathBuf,
    pub ca: Ca,
    /// The token Alertmanager sends to the agents.
    pub token: String,
    /// The agents' token file, one per line: the token, and while a rotation is under way the
    /// other one (the first is what agents send to each other).
    pub agent_tokens: Vec<String>,
    /// By user ([`OPERATOR`], [`USER_AGENT`], …).
    pub passwords: BTreeMap<String, Password>,
    /// By identity ([`IDENTITIES`]).
    pub leaves: BTreeMap<String, Leaf>,
}

/// What the operator asks of [`Secrets::ensure`].
#[derive(Debug, Default)]
pub struct Want {
    pub stack: String,
    /// `--token-file`'s token: replaces the kept one.
    pub token: Option<String>,
    /// `--web-password-file`'s password for [`OPERATOR`]: replaces the kept one.
    pub operator_password: Option<String>,
    /// The names each identity is reached by; a leaf whose names differ is issued again.
    pub names: BTreeMap<String, Vec<String>>,
    /// Leaves that expire within this are issued again.
    pub renew_within: Duration,
    /// Whether Grafana is part of the stack (its passwords are made then).
    pub grafana: bool,
    /// `--grafana-password-file`'s password for Grafana's admin: replaces the kept one.
    pub grafana_admin_password: Option<String>,
}

/// What [`Secrets::ensure`] made, for the operator to hear once.
#[derive(Debug, Default, PartialEq)]
pub struct Made {
    pub ca: bool,
    /// A generated token (shown once).
    pub token: Option<String>,
    /// A generated operator password (shown once).
    pub operator_password: Option<String>,
    /// A generated Grafana admin password (shown once).
    pub grafana_admin_password: Option<String>,
    /// Identities whose certificate was issued now, and why.
    pub issued: Vec<String>,
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    read(path)?
        .map(|s| serde_json::from_str(&s).map_err(|e| io_error(path, e)))
        .transpose()
}

/// Writes `data` to `path` (mode 0600) through a temporary file and a rename, so a crash never
/// leaves half a key.
pub fn write_private(path: &Path, data: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error(&tmp, e))?;
    f.write_all(data.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// Creates `dir` and its parents, `dir` itself mode 0700.
pub fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, e))
}

/// `user`'s password: `given` if there is one, else the kept one, else a new one, which is
/// returned to be shown once.
fn given_or_kept(
    passwords: &mut BTreeMap<String, Password>,
    user: &str,
    given: Option<&str>,
) -> Result<Option<String>> {
    match (given, passwords.get(user)) {
        (Some(p), Some(have)) if p == have.plain => Ok(None),
        (Some(p), _) => {
            passwords.insert(user.into(), Password::new(p)?);
            Ok(None)
        }
        (None, Some(_)) => Ok(None),
        (None, None) => {
            let p = Password::random()?;
            let plain = p.plain.clone();
            passwords.insert(user.into(), p);
            Ok(Some(plain))
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

impl Secrets {
    /// The secrets kept in `dir`, if a stack was made there.
    pub fn load(dir: &Path) -> Result<Option<Secrets>> {
        let (Some(cert_pem), Some(key_pem), Some(meta)) = (
            read(&dir.join("ca.crt"))?,
            read(&dir.join("ca.key"))?,
            read_json::<CaMeta>(&dir.join("ca.json"))?,
        ) else {
            return Ok(None);
        };
        let token = read(&dir.join("token"))?.map(|t| first_line(&t));
        let agent_tokens = read(&dir.join("agent-tokens"))?
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let passwords: BTreeMap<String, Password> =
            read_json(&dir.join("passwords.json"))?.unwrap_or_default();
        let mut leaves = BTreeMap::new();
        for who in IDENTITIES.iter().chain([&GRAFANA]) {
            let certs = dir.join("certs");
            if let (Some(pem), Some(m)) = (
                read(&certs.join(format!("{who}.pem")))?,
                read_json::<LeafMeta>(&certs.join(format!("{who}.json")))?,
            ) {
                leaves.insert(
                    (*who).to_owned(),
                    Leaf {
                        pem,
                        not_after: m.not_after,
                        names: m.names,
                    },
                );
            }
        }
        Ok(Some(Secrets {
            dir: dir.to_owned(),
            ca: Ca {
                cert_pem,
                key_pem,
                name: meta.name,
                not_after: meta.not_after,
            },
            token: token.unwrap_or_default(),
            agent_tokens,
            passwords,
            leaves,
        }))
    }

    /// The secrets in `dir` as `want` asks: made where missing, issued again where a
    /// certificate's names changed or its end is near, replaced where the operator gave a
    /// token or password. Everything new is written before this returns.
    pub fn ensure(dir: &Path, want: &Want) -> Result<(Secrets, Made)> {
        let mut made = Made::default();
        let mut s = match Secrets::load(dir)? {
            Some(s) => s,
            None => {
                made.ca = true;
                Secrets {
                    dir: dir.to_owned(),
                    ca: Ca::generate(&want.stack)?,
                    token: String::new(),
                    agent_tokens: Vec::new(),
                    passwords: BTreeMap::new(),
                    leaves: BTreeMap::new(),
                }
            }
        };
        match &want.token {
            Some(t) if *t != s.token => {
                s.token = t.clone();
                s.agent_tokens = vec![t.clone()];
            }
            Some(_) => {}
            None if s.token.is_empty() => {
                s.token = random_hex(16)?;
                s.agent_tokens = vec![s.token.clone()];
                made.token = Some(s.token.clone());
            }
            None => {}
        }
        if s.agent_tokens.is_empty() {
            s.agent_tokens = vec![s.token.clone()];
        }
        let mut users = vec![USER_AGENT, USER_PROMETHEUS, USER_SELF];
        if want.grafana {
            users.push(USER_GRAFANA);
        }
        for u in users {
            if !s.passwords.contains_key(u) {
                s.passwords.insert(u.to_owned(), Password::random()?);
            }
        }
        if want.grafana {
            made.grafana_admin_password = given_or_kept(
                &mut s.passwords,
                GRAFANA_ADMIN,
                want.grafana_admin_password.as_deref(),
            )?;
        }
        made.operator_password = given_or_kept(
            &mut s.passwords,
            OPERATOR,
            want.operator_password.as_deref(),
        )?;
        let grafana = want.grafana.then_some(GRAFANA);
        for who in IDENTITIES.into_iter().chain(grafana) {
            let names = want.names.get(who).cloned().unwrap_or_default();
            let why = match s.leaves.get(who) {
                None => Some("new"),
                Some(l) if l.names != names => Some("names changed"),
                Some(l) if pki::due(l.not_after, want.renew_within) => Some("renewed"),
                Some(_) => None,
            };
            if let Some(why) = why {
                let leaf = s.ca.issue(who, &names, pki::LEAF_DAYS)?;
                s.leaves.insert(who.to_owned(), leaf);
                made.issued.push(format!("{who} ({why})"));
            }
        }
        s.save()?;
        Ok((s, made))
    }

    /// Writes everything into [`Secrets::dir`], and the agent bundle into its `agent/`.
    pub fn save(&self) -> Result<()> {
        let d = &self.dir;
        make_private_dir(d)?;
        write_private(&d.join("ca.key"), &self.ca.key_pem)?;
        write_private(&d.join("ca.crt"), &self.ca.cert_pem)?;
        let meta = CaMeta {
            name: self.ca.name.clone(),
            not_after: self.ca.not_after,
        };
        write_private(&d.join("ca.json"), &json(&meta)?)?;
        write_private(&d.join("token"), &format!("{}\n", self.token))?;
        write_private(
            &d.join("agent-tokens"),
            &format!("{}\n", self.agent_tokens.join("\n")),
        )?;
        write_private(&d.join("passwords.json"), &json(&self.passwords)?)?;
        for (who, l) in &self.leaves {
            let certs = d.join("certs");
            write_private(&certs.join(format!("{who}.pem")), &l.pem)?;
            let meta = LeafMeta {
                not_after: l.not_after,
                names: l.names.clone(),
            };
            write_private(&certs.join(format!("{who}.json")), &json(&meta)?)?;
        }
        self.write_bundle(&d.join("agent"))
    }

    /// The agent bundle, written into `dir` (0700, files 0600).
    pub fn write_bundle(&self, dir: &Path) -> Result<()> {
        let leaf = self
            .leaves
            .get("agent")
            .ok_or_else(|| StackError::Input("the stack has no agent certificate yet".into()))?;
        write_private(&dir.join(BUNDLE_CA), &self.ca.cert_pem)?;
        write_private(&dir.join(BUNDLE_CERT), &leaf.pem)?;
        write_private(
            &dir.join(BUNDLE_TOKEN),
            &format!("{}\n", self.agent_tokens.join("\n")),
        )?;
        write_private(
            &dir.join(BUNDLE_PASSWORD),
            &format!("{}\n", self.password(USER_AGENT)?),
        )
    }

    /// The plain password of `user`.
    pub fn password(&self, user: &str) -> Result<&str> {
        self.passwords
            .get(user)
            .map(|p| p.plain.as_str())
            .ok_or_else(|| StackError::Input(format!("no password kept for user {user}")))
    }
}

impl std::fmt::Debug for Secrets {
    /// Never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({}, {:?})", self.dir.display(), self.ca)
    }
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| StackError::Input(e.to_string()))
}

/// The state directory of `stack` in the swarm `cluster` under `root`.
pub fn state_dir(root: &Path, cluster: &str, stack: &str) -> PathBuf {
    root.join(cluster).join(stack)
}

/// The state directories of `stack` kept under `root` (one per swarm this machine made it in).
pub fn kept_dirs(root: &Path, stack: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(stack))
        .filter(|p| p.join("ca.crt").exists())
        .collect();
    v.sort();
    v
}

/// An agent bundle read from a directory: what `node run` copies into the container.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca: String,
    pub cert: String,
    pub token: String,
    pub password: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bundle(…)")
    }
}

impl Bundle {
    /// The bundle in `dir`; an error names the file that is missing.
    pub fn read(dir: &Path) -> Result<Bundle> {
        let file = |name: &str| {
            let p = dir.join(name);
            read(&p)?.ok_or_else(|| {
                StackError::Input(format!(
                    "{}: missing from the fleet credentials (copy the whole agent/ directory that `edgesense stack up` wrote)",
                    p.display()
                ))
            })
        };
        Ok(Bundle {
            ca: file(BUNDLE_CA)?,
            cert: file(BUNDLE_CERT)?,
            token: file(BUNDLE_TOKEN)?,
            password: file(BUNDLE_PASSWORD)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn want(names: &[&str]) -> Want {
        Want {
            stack: "edgesense".into(),
            names: IDENTITIES
                .iter()
                .map(|w| {
                    (
                        (*w).to_owned(),
                        names.iter().map(|n| format!("{w}.{n}")).collect(),
                    )
                })
                .collect(),
            renew_within: Duration::from_secs(30 * 86_400),
            ..Want::default()
        }
    }

    #[test]
    fn made_once_kept_and_only_what_changed_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("swarm1/edgesense");
        let (a, made) = Secrets::ensure(&d, &want(&["x"])).unwrap();
        assert!(made.ca && made.token.is_some() && made.operator_password.is_some());
        assert_eq!(made.issued.len(), 3, "{made:?}");
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(d.join("ca.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let (b, made) = Secrets::ensure(&d, &want(&["x"])).unwrap();
        assert_eq!(made, Made::default(), "nothing new the second time");
        assert_eq!(a.ca.cert_pem, b.ca.cert_pem);
        assert_eq!(a.token, b.token);
        assert_eq!(
            a.passwords, b.passwords,
            "hashes kept, so web configs render the same"
        );
        assert_eq!(a.leaves, b.leaves);
        // A new name for every identity: issued again, same CA.
        let (c, made) = Secrets::ensure(&d, &want(&["y"])).unwrap();
        assert_eq!(made.issued.len(), 3);
        assert!(made.issued[0].contains("names changed"), "{made:?}");
        assert_eq!(c.ca.cert_pem, a.ca.cert_pem);
        // Renewal: everything is due within 400 days.
        let mut w = want(&["y"]);
        w.renew_within = Duration::from_secs(400 * 86_400);
        let (_, made) = Secrets::ensure(&d, &w).unwrap();
        assert!(
            made.issued.iter().all(|i| i.contains("renewed")),
            "{made:?}"
        );
        // The operator's token and password replace the kept ones.
        w.token = Some("given-token".into());
        w.operator_password = Some("given-pw".into());
        let (e, made) = Secrets::ensure(&d, &w).unwrap();
        assert_eq!((made.token, made.operator_password), (None, None));
        assert_eq!(e.token, "given-token");
        assert_eq!(e.agent_tokens, ["given-token"]);
        assert!(bcrypt::verify("given-pw", &e.passwords[OPERATOR].bcrypt).unwrap());
        // The agent bundle beside them.
        let bundle = Bundle::read(&d.join("agent")).unwrap();
        assert_eq!(bundle.token.trim(), "given-token");
        assert_eq!(bundle.ca, e.ca.cert_pem);
        assert!(bundle.cert.contains("PRIVATE KEY"));
        let missing = Bundle::read(&d.join("nowhere")).unwrap_err().to_string();
        assert!(missing.contains("ca.crt"), "{missing}");
        assert!(
            !format!("{e:?}").contains("given-pw"),
            "no secret in debug output"
        );
    }
}
