//! The agent's secrets, read from files: the webhook token(s), its TLS identity with the fleet
//! CA it trusts, and its Alertmanager password. Every request and every outgoing call reads the
//! current [`Credentials`] from one [`Shared`] cell, so a SIGHUP that finds only the files
//! changed swaps them in place: no restart, the LEDs stay as they are (`edgesense stack rotate`
//! relies on it).
//!
//! A token file may hold several tokens, one per line: every one is accepted, the first is the
//! one this agent sends to its peers. A rotation goes old+new (accepted both, old sent), then
//! Alertmanager switches to the new one, then new alone: no request is refused on the way.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use edgesense_net::{
    rustls::{RootCertStore, ServerConfig},
    tls, Auth, Client,
};
use subtle::ConstantTimeEq;

/// Which files hold the agent's secrets (`token_file`, `[tls]`, `[alertmanager]`, and the flags
/// of the same names).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CredentialFiles {
    pub token_file: Option<PathBuf>,
    /// This agent's certificate chain (PEM; may hold the key too): with it the agent serves
    /// HTTPS.
    pub cert: Option<PathBuf>,
    /// Its private key (default: `cert`).
    pub key: Option<PathBuf>,
    /// The fleet's CA: peers, Alertmanager and clients presenting a certificate are verified
    /// against it. Without it, clients are not asked for certificates and https calls cannot
    /// be made.
    pub ca: Option<PathBuf>,
    /// The Alertmanager user (`[alertmanager] username`, default `agent`).
    pub alertmanager_user: String,
    pub alertmanager_password_file: Option<PathBuf>,
    /// The Prometheus user remote write logs in as (`[remote_write] username`, default the
    /// Alertmanager user: the stack gives the agents one user on both).
    pub prometheus_user: String,
    pub prometheus_password_file: Option<PathBuf>,
}

/// The secrets themselves.
pub struct Credentials {
    /// Every token a request may carry; the first is the one sent to peers.
    tokens: Vec<Box<[u8]>>,
    server: Option<Arc<ServerConfig>>,
    /// Calls to peers (the relay): the fleet CA, this agent's certificate, the first token.
    pub peers: Client,
    /// Calls to Alertmanager (reconcile, silences): the fleet CA, basic auth.
    pub alertmanager: Client,
    /// Remote write to Prometheus (backfill): the fleet CA, basic auth.
    pub prometheus: Client,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials({} tokens, tls: {})",
            self.tokens.len(),
            self.server.is_some()
        )
    }
}

/// The tokens in a token file: every non-empty line, trimmed; none is an error.
pub fn read_tokens(path: &Path) -> Result<Vec<Box<[u8]>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read token_file: {e}", path.display()))?;
    let tokens: Vec<Box<[u8]>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().into())
        .collect();
    if tokens.is_empty() {
        return Err(format!(
            "{}: token_file is empty; put the token on its first line",
            path.display()
        ));
    }
    Ok(tokens)
}

fn read_password(path: &Path, whose: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the {whose} password: {e}", path.display()))?;
    let pw = text.lines().next().unwrap_or("").trim();
    if pw.is_empty() {
        return Err(format!(
            "{}: the {whose} password file is empty",
            path.display()
        ));
    }
    Ok(pw.to_owned())
}

impl Credentials {
    /// None at all: an open agent (loopback only unless `--allow-anonymous-writes`).
    pub fn none() -> Credentials {
        Credentials {
            tokens: Vec::new(),
            server: None,
            peers: Client::new(),
            alertmanager: Client::new(),
            prometheus: Client::new(),
        }
    }

    /// These tokens and nothing else (no TLS, no Alertmanager password): for tests and
    /// benchmarks that drive the router in-process.
    pub fn tokens_only(tokens: &[&[u8]]) -> Credentials {
        let tokens: Vec<Box<[u8]>> = tokens.iter().map(|t| (*t).into()).collect();
        Credentials {
            peers: Client::new().with_auth(tokens.first().map(|t| Auth::Bearer(t.to_vec()))),
            tokens,
            ..Credentials::none()
        }
    }

    /// Reads every file `f` names; an error names the file and what is wrong with it.
    pub fn load(f: &CredentialFiles) -> Result<Credentials, String> {
        let tokens = match &f.token_file {
            Some(p) => read_tokens(p)?,
            None => Vec::new(),
        };
        let roots: Option<RootCertStore> =
            f.ca.as_deref()
                .map(tls::load_roots)
                .transpose()
                .map_err(|e| e.to_string())?;
        let identity = f
            .cert
            .as_deref()
            .map(|cert| tls::load_identity(cert, f.key.as_deref().unwrap_or(cert)))
            .transpose()
            .map_err(|e| e.to_string())?;
        let server = identity
            .clone()
            .map(|id| tls::server_config(id, roots.clone()))
            .transpose()
            .map_err(|e| e.to_string())?;
        let client_tls = roots
            .map(|r| tls::client_config(r, identity))
            .transpose()
            .map_err(|e| e.to_string())?;
        let password = f
            .alertmanager_password_file
            .as_deref()
            .map(|p| read_password(p, "Alertmanager"))
            .transpose()?;
        let prometheus_password = f
            .prometheus_password_file
            .as_deref()
            .map(|p| read_password(p, "Prometheus (remote write)"))
            .transpose()?;
        Ok(Credentials {
            peers: Client::new()
                .with_tls(client_tls.clone())
                .with_auth(tokens.first().map(|t| Auth::Bearer(t.to_vec()))),
            alertmanager: Client::new()
                .with_tls(client_tls.clone())
                .with_auth(password.map(|password| Auth::Basic {
                    user: f.alertmanager_user.clone(),
                    password,
                })),
            prometheus: Client::new()
                .with_tls(client_tls)
                .with_auth(prometheus_password.map(|password| Auth::Basic {
                    user: f.prometheus_user.clone(),
                    password,
                })),
            tokens,
            server,
        })
    }

    /// Whether requests need a token at all.
    pub fn has_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether `given` is one of the tokens; the comparison takes the same time wherever the
    /// bytes differ, and every token is compared.
    pub fn accepts(&self, given: &[u8]) -> bool {
        self.tokens
            .iter()
            .fold(false, |ok, t| ok | bool::from(given.ct_eq(t)))
    }

    /// The TLS server configuration, when the agent serves HTTPS.
    pub fn server_tls(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// Whether outgoing calls to peers go over https (the agent has the fleet CA).
    pub fn peers_use_tls(&self) -> bool {
        self.peers.has_tls()
    }
}

/// The current credentials, shared by the listener, the handlers, the relay and the
/// reconciler; replaced whole on a reload.
#[derive(Clone, Debug)]
pub struct Shared(Arc<RwLock<Arc<Credentials>>>);

impl Shared {
    pub fn new(c: Credentials) -> Shared {
        Shared(Arc::new(RwLock::new(Arc::new(c))))
    }

    pub fn get(&self) -> Arc<Credentials> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn replace(&self, c: Credentials) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_token_file_is_accepted_and_the_first_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "new-token\n\n  old-token  \n").unwrap();
        let c = Credentials::load(&CredentialFiles {
            token_file: Some(p.clone()),
            ..CredentialFiles::default()
        })
        .unwrap();
        assert!(c.accepts(b"new-token") && c.accepts(b"old-token"));
        assert!(!c.accepts(b"new-toke") && !c.accepts(b"") && !c.accepts(b"other"));
        assert!(format!("{:?}", c.peers).contains("Bearer(…)"));
        std::fs::write(&p, "\n \n").unwrap();
        let e = read_tokens(&p).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(!Credentials::none().has_token());
    }

    #[test]
    fn a_missing_or_broken_tls_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("agent.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = Credentials::load(&CredentialFiles {
            cert: Some(junk.clone()),
            ..CredentialFiles::default()
        })
        .unwrap_err();
        assert!(e.contains("agent.pem") && e.contains("CERTIFICATE"), "{e}");
        let e = Credentials::load(&CredentialFiles {
            ca: Some(dir.path().join("missing.crt")),
            ..CredentialFiles::default()
        })
        .unwrap_err();
        assert!(
            e.contains("missing.crt") && e.contains("cannot read"),
            "{e}"
        );
    }
}
