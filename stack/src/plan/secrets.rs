//! The stack's swarm secrets: what each service mounts, and the web configs (exporter-toolkit's
//! `--web.config.file`: TLS and bcrypt basic auth) rendered from the kept passwords.
//!
//! Each secret is named `<stack>_<key>_<hash of its content>` and labelled with its key
//! (`com.edgesense.role`), so a changed certificate makes a new secret and rolls the services
//! that mount it, and a `stack up` run where the kept secrets are not (another machine) can
//! still find the ones in use by key and change nothing ([`StackSecrets::adopt`]).

use std::collections::BTreeMap;

use crate::{
    assets::short_hash,
    credentials::{self, Secrets},
};

/// Where the secrets are in a task (swarm mounts them under `/run/secrets/`).
pub const TOKEN_TARGET: &str = "edgesense_token";
pub const TLS_TARGET: &str = "edgesense_tls.pem";
pub const AGENT_TLS_TARGET: &str = "edgesense_agent.pem";
pub const WEB_TARGET: &str = "edgesense_web.yml";
pub const CA_TARGET: &str = "edgesense_ca.crt";
pub const ALERTMANAGER_PASSWORD_TARGET: &str = "edgesense_alertmanager_password";
pub const SELF_PASSWORD_TARGET: &str = "edgesense_self_password";
pub const PROMETHEUS_PASSWORD_TARGET: &str = "edgesense_prometheus_password";
pub const GRAFANA_ADMIN_TARGET: &str = "edgesense_grafana_admin";

/// A secret's path in a task.
pub fn path(target: &str) -> String {
    format!("/run/secrets/{target}")
}

/// The label holding a certificate's end (seconds since the Unix epoch), for `stack status`.
pub const NOT_AFTER: &str = "com.edgesense.not-after";

/// The secrets by key, and where each is mounted: (key, target).
pub const PROMETHEUS: &[(&str, &str)] = &[
    ("ca", CA_TARGET),
    ("tls_prometheus", TLS_TARGET),
    ("web_prometheus", WEB_TARGET),
    ("password_prometheus", ALERTMANAGER_PASSWORD_TARGET),
    ("password_self", SELF_PASSWORD_TARGET),
];
pub const ALERTMANAGER: &[(&str, &str)] = &[
    ("ca", CA_TARGET),
    ("tls_alertmanager", TLS_TARGET),
    ("web_alertmanager", WEB_TARGET),
    ("token", TOKEN_TARGET),
    ("password_self", SELF_PASSWORD_TARGET),
];
pub const LAUNCHER: &[(&str, &str)] = &[
    ("ca", CA_TARGET),
    ("tls_agent", AGENT_TLS_TARGET),
    ("agent_tokens", TOKEN_TARGET),
    ("password_agent", ALERTMANAGER_PASSWORD_TARGET),
];
pub const GRAFANA: &[(&str, &str)] = &[
    ("ca", CA_TARGET),
    ("tls_grafana", TLS_TARGET),
    ("password_grafana", PROMETHEUS_PASSWORD_TARGET),
    ("password_grafana_admin", GRAFANA_ADMIN_TARGET),
];

/// One swarm secret of the stack.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub key: String,
    pub name: String,
    /// The content; `None` for a secret already in the swarm, reused by name.
    pub data: Option<String>,
    /// Extra labels (a certificate's end).
    pub labels: Vec<(String, String)>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFile({})", self.name)
    }
}

/// A secret to be: its key, content and extra labels.
type Entry<'a> = (&'a str, String, Vec<(String, String)>);

/// Every secret of the stack, by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackSecrets {
    pub files: BTreeMap<String, SecretFile>,
}

/// The web config of a service whose certificate is at [`TLS_TARGET`], for `users` (name,
/// bcrypt hash).
pub fn web_config(users: &[(&str, &str)]) -> String {
    let mut y = String::from(
        "# edgesense stack up: TLS and users of this service's web endpoint (exporter-toolkit).\n\
         tls_server_config:\n",
    );
    y.push_str(&format!("  cert_file: {}\n", path(TLS_TARGET)));
    y.push_str(&format!("  key_file: {}\n", path(TLS_TARGET)));
    y.push_str("  min_version: TLS13\n");
    y.push_str("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n    X-Frame-Options: deny\n");
    y.push_str("basic_auth_users:\n");
    for (user, hash) in users {
        y.push_str(&format!("  {user}: '{hash}'\n"));
    }
    y
}

impl StackSecrets {
    /// The secrets of `stack` from the kept ones (content known: names by hash).
    pub fn from_kept(stack: &str, s: &Secrets, grafana: bool) -> crate::Result<Self> {
        let hash = |u: &str| -> crate::Result<String> {
            Ok(s.passwords
                .get(u)
                .ok_or_else(|| crate::StackError::Input(format!("no password kept for user {u}")))?
                .bcrypt
                .clone())
        };
        let mut prom_users = vec![
            (credentials::OPERATOR, hash(credentials::OPERATOR)?),
            (credentials::USER_SELF, hash(credentials::USER_SELF)?),
        ];
        if grafana {
            prom_users.push((credentials::USER_GRAFANA, hash(credentials::USER_GRAFANA)?));
        }
        // The agents push the readings Prometheus missed (remote write), as on Alertmanager.
        prom_users.push((credentials::USER_AGENT, hash(credentials::USER_AGENT)?));
        let am_users = [
            (credentials::OPERATOR, hash(credentials::OPERATOR)?),
            (credentials::USER_SELF, hash(credentials::USER_SELF)?),
            (
                credentials::USER_PROMETHEUS,
                hash(credentials::USER_PROMETHEUS)?,
            ),
            (credentials::USER_AGENT, hash(credentials::USER_AGENT)?),
        ];
        let users = |v: &[(&str, String)]| -> String {
            web_config(&v.iter().map(|(u, h)| (*u, h.as_str())).collect::<Vec<_>>())
        };
        let leaf = |who: &str| -> crate::Result<&crate::pki::Leaf> {
            s.leaves
                .get(who)
                .ok_or_else(|| crate::StackError::Input(format!("no certificate kept for {who}")))
        };
        let line = |t: &str| format!("{t}\n");
        let mut entries: Vec<Entry> = vec![
            (
                "ca",
                s.ca.cert_pem.clone(),
                vec![(NOT_AFTER.into(), s.ca.not_after.to_string())],
            ),
            ("token", line(&s.token), Vec::new()),
            ("agent_tokens", line(&s.agent_tokens.join("\n")), Vec::new()),
            ("web_prometheus", users(&prom_users), Vec::new()),
            ("web_alertmanager", users(&am_users), Vec::new()),
            (
                "password_prometheus",
                line(s.password(credentials::USER_PROMETHEUS)?),
                Vec::new(),
            ),
            (
                "password_agent",
                line(s.password(credentials::USER_AGENT)?),
                Vec::new(),
            ),
            (
                "password_self",
                line(s.password(credentials::USER_SELF)?),
                Vec::new(),
            ),
        ];
        let grafana_leaf = grafana.then_some(credentials::GRAFANA);
        let mut tls = Vec::new();
        for who in credentials::IDENTITIES.into_iter().chain(grafana_leaf) {
            let l = leaf(who)?;
            tls.push((
                format!("tls_{who}"),
                l.pem.clone(),
                vec![(NOT_AFTER.into(), l.not_after.to_string())],
            ));
        }
        if grafana {
            entries.push((
                "password_grafana",
                line(s.password(credentials::USER_GRAFANA)?),
                Vec::new(),
            ));
            entries.push((
                "password_grafana_admin",
                line(s.password(credentials::GRAFANA_ADMIN)?),
                Vec::new(),
            ));
        }
        let entries = entries
            .into_iter()
            .map(|(k, d, l)| (k.to_owned(), d, l))
            .chain(tls);
        Ok(StackSecrets {
            files: entries
                .map(|(key, data, labels)| {
                    let file = SecretFile {
                        key: key.clone(),
                        name: format!("{stack}_{key}_{}", short_hash(data.as_bytes())),
                        data: Some(data),
                        labels,
                    };
                    (key, file)
                })
                .collect(),
        })
    }

    /// The secrets already in the swarm (`existing`: key, name, creation time), the newest of
    /// each key; the first key of `needed` that has none is the error.
    pub fn adopt(
        existing: &[(String, String, String)],
        needed: &[&str],
    ) -> std::result::Result<Self, String> {
        let mut files = BTreeMap::new();
        for key in needed {
            let newest = existing
                .iter()
                .filter(|(k, _, _)| k == key)
                .max_by(|a, b| a.2.cmp(&b.2))
                .ok_or_else(|| (*key).to_owned())?;
            files.insert(
                (*key).to_owned(),
                SecretFile {
                    key: (*key).to_owned(),
                    name: newest.1.clone(),
                    data: None,
                    labels: Vec::new(),
                },
            );
        }
        Ok(StackSecrets { files })
    }

    /// The name of the secret `key` (empty if there is none).
    pub fn name(&self, key: &str) -> &str {
        self.files.get(key).map_or("", |f| f.name.as_str())
    }

    /// The keys the stack needs (Grafana's only with Grafana).
    pub fn needed(grafana: bool) -> Vec<&'static str> {
        let mut keys: Vec<&str> = PROMETHEUS
            .iter()
            .chain(ALERTMANAGER)
            .chain(LAUNCHER)
            .map(|(k, _)| *k)
            .collect();
        if grafana {
            keys.extend(GRAFANA.iter().map(|(k, _)| *k));
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// Secrets named `edgesense_<key>_x`, content unknown: what plan tests need.
#[cfg(test)]
pub(crate) fn fixture(grafana: bool) -> StackSecrets {
    let existing: Vec<(String, String, String)> = StackSecrets::needed(grafana)
        .into_iter()
        .map(|k| (k.to_owned(), format!("edgesense_{k}_x"), String::new()))
        .collect();
    StackSecrets::adopt(&existing, &StackSecrets::needed(grafana)).expect("every key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_secrets_become_named_swarm_secrets_and_web_configs() {
        let dir = tempfile::tempdir().unwrap();
        let want = credentials::Want {
            stack: "edgesense".into(),
            names: credentials::IDENTITIES
                .iter()
                .map(|w| ((*w).to_owned(), vec![(*w).to_owned()]))
                .collect(),
            renew_within: std::time::Duration::from_secs(86_400),
            ..credentials::Want::default()
        };
        let (s, _) = Secrets::ensure(dir.path(), &want).unwrap();
        let a = StackSecrets::from_kept("edgesense", &s, false).unwrap();
        let b = StackSecrets::from_kept("edgesense", &s, false).unwrap();
        assert_eq!(a, b, "the same kept secrets, the same names");
        let keys: Vec<&str> = a.files.keys().map(String::as_str).collect();
        assert_eq!(keys, StackSecrets::needed(false));
        assert!(a.name("tls_agent").starts_with("edgesense_tls_agent_"));
        let web = a.files["web_alertmanager"].data.clone().unwrap();
        for user in ["edgesense:", "self:", "prometheus:", "agent:"] {
            assert!(web.contains(&format!("  {user} '$2")), "{user} in {web}");
        }
        assert!(
            !web.contains(s.password("agent").unwrap()),
            "hashes, never passwords"
        );
        let web = a.files["web_prometheus"].data.clone().unwrap();
        assert!(
            web.contains("  agent: '$2") && web.contains("min_version: TLS13"),
            "the agents push their backfill as `agent`: {web}"
        );
        assert!(
            !web.contains("prometheus:"),
            "Prometheus does not log in to itself: {web}"
        );
        assert!(a.files["ca"].labels[0].0 == NOT_AFTER);
        // Another machine: the secrets in the swarm by key, the newest of each.
        let existing: Vec<(String, String, String)> = a
            .files
            .values()
            .map(|f| (f.key.clone(), f.name.clone(), "2026-12-01T10:00:00Z".into()))
            .chain([(
                "ca".into(),
                "edgesense_ca_old".into(),
                "2026-01-01T00:00:00Z".into(),
            )])
            .collect();
        let adopted = StackSecrets::adopt(&existing, &StackSecrets::needed(false)).unwrap();
        assert_eq!(adopted.name("ca"), a.name("ca"), "the newest");
        assert!(adopted.files.values().all(|f| f.data.is_none()));
        let missing = StackSecrets::adopt(&existing, &StackSecrets::needed(true)).unwrap_err();
        assert!(missing.starts_with("password_grafana"), "{missing}");
    }
}
