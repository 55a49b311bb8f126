//! TLS configurations from PEM files: the fleet CA as the only root, a certificate chain and
//! key as the identity, TLS 1.3 only, ring as the crypto provider.
//!
//! Facts that shape it:
//! - `edgesense stack up` issues ECDSA P-256 certificates from the fleet's own CA; every client
//!   in the fleet (Prometheus and Alertmanager in Go, Chromium, the agents and the CLI in Rust)
//!   speaks TLS 1.3, so TLS 1.2 is not compiled in (smaller binaries, one handshake to audit).
//! - One PEM file may hold both the chain and the key (Go's `tls.LoadX509KeyPair` skips the
//!   blocks it does not want in either file, and so does [`load_identity`]): a swarm secret per
//!   identity instead of two that must change together.
//! - Peers are dialled by IP (Docker's DNS gives A records) and verified against the name they
//!   were found by (`edgesense-agent`, `alertmanager`): the server name is the caller's choice,
//!   not the address.
//!
//! Troubleshooting: `invalid peer certificate: UnknownIssuer` means the server's certificate
//! comes from another CA than the file given (another fleet, or a stack rebuilt from scratch:
//! copy the new `ca.crt`); `NotValidForName` means the name dialled is not among the
//! certificate's names (`edgesense stack status` lists them).

use std::{path::Path, sync::Arc};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};

/// A TLS set-up that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable: its path and why.
    #[error("{path}: {what}")]
    File { path: String, what: String },
    /// The pieces do not fit together (a key that is not the certificate's, no root).
    #[error("{0}")]
    Config(String),
}

/// A certificate chain and its private key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for Identity {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({} certificates)", self.chain.len())
    }
}

/// ring, the one crypto provider compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

/// The certificates of a PEM file, in order; an error if there are none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = certs_from_pem(&read(path)?).map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block in it"));
    }
    Ok(certs)
}

/// The certificates of PEM text (other blocks skipped).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))
}

/// The roots to verify peers against: every certificate in `path` (the fleet's `ca.crt`).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_from_certs(load_certs(path)?).map_err(|e| file_error(path, e))
}

/// A root store of `certs`.
pub fn roots_from_certs(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("not a CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// The chain in `cert` and the key in `key` (the same file may hold both).
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let chain = load_certs(cert)?;
    let key = key_from_pem(&read(key)?).map_err(|e| file_error(key, e))?;
    Ok(Identity { chain, key })
}

/// The chain and key of one PEM text holding both.
pub fn load_identity_pem(pem: &[u8]) -> Result<Identity, String> {
    let chain = certs_from_pem(pem)?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(Identity {
        chain,
        key: key_from_pem(pem)?,
    })
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| format!("no private key in it (PKCS#8, SEC1 or PKCS#1 PEM): {e}"))
}

/// A client that trusts only `roots` and, with `identity`, presents it when a server asks.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server presenting `identity`. With `client_roots`, a client that presents a certificate
/// must have one from those roots (else the handshake fails); one that presents none is let
/// through, and the application decides (the agent: a token then).
pub fn server_config(
    identity: Identity,
    client_roots: Option<RootCertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
