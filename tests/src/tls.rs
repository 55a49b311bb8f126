//! HTTP/1.1 over TLS for the tests (rustls, blocking), and the fleet's credentials for tests on
//! loopback, made by the CLI's own code (what `edgesense stack up` makes: the fleet CA,
//! certificates, passwords, web configs).
//!
//! An [`Endpoint`] is where a test talks to, with what it trusts and who it logs in as: the
//! same raw request either way (no client library between the test and the wire, TLS aside).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use edgesense::{
    credentials::{self, Secrets, Want},
    plan::{secrets, StackSecrets},
};
use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::{parse_response, raw_request, Agent, Response};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A client config trusting the CA in `ca_pem`, presenting `identity_pem` (certificate and key)
/// when given.
pub fn client_config(ca_pem: &[u8], identity_pem: Option<&[u8]>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in pem_certs(ca_pem) {
        roots.add(c).expect("a CA certificate");
    }
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    with_identity(b, identity_pem)
}

/// The client config, presenting `identity_pem` (certificate and key) when given.
fn with_identity(
    b: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity_pem: Option<&[u8]>,
) -> Arc<ClientConfig> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    Arc::new(match identity_pem {
        Some(pem) => b
            .with_client_auth_cert(
                pem_certs(pem),
                PrivateKeyDer::from_pem_slice(pem).expect("a private key"),
            )
            .expect("client certificate"),
        None => b.with_no_client_auth(),
    })
}

/// A server certificate verifier that accepts anything: a stranger who wants the HTTP answer
/// behind any TLS, never the fleet's own clients.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that trusts any server certificate, presenting `identity_pem` when given: what a
/// stranger on the LAN has (it wants whatever is behind the TLS).
pub fn insecure_client(identity_pem: Option<&[u8]>) -> Arc<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())));
    with_identity(b, identity_pem)
}

/// Where a test talks to.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// TLS: the client config and the name the server's certificate must carry.
    tls: Option<(Arc<ClientConfig>, String)>,
    /// An `Authorization` header sent with every request.
    auth: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.addr
        )
    }
}

impl Endpoint {
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            tls: None,
            auth: None,
        }
    }

    /// TLS with `config`, the server's certificate checked for `name`.
    pub fn https(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Endpoint {
        Endpoint {
            addr,
            tls: Some((config, name.to_owned())),
            auth: None,
        }
    }

    pub fn basic(mut self, user: &str, password: &str) -> Endpoint {
        use base64::Engine as _;
        self.auth = Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ));
        self
    }

    pub fn bearer(mut self, token: &str) -> Endpoint {
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    /// `http://` or `https://` and the address, for URLs given to the binaries.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.addr
        )
    }

    /// One request with `Connection: close` and this endpoint's credentials; 10 s timeouts.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> std::io::Result<Response> {
        self.try_request_bytes(method, path, headers, body.as_bytes())
    }

    /// [`Endpoint::try_request`] with a body of any bytes (a remote-write push).
    pub fn try_request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut h: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
        if let Some(a) = &self.auth {
            h.push(format!("Authorization: {a}"));
        }
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        let req = raw_request(self.addr, method, path, &h, body);
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut raw = Vec::new();
        match &self.tls {
            None => {
                let mut s = tcp;
                s.write_all(&req)?;
                s.read_to_end(&mut raw)?;
            }
            Some((config, name)) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let conn = ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let mut s = StreamOwned::new(conn, tcp);
                s.write_all(&req)?;
                match s.read_to_end(&mut raw) {
                    Ok(_) => {}
                    // A server that closes without close_notify (Go's does on Connection: close
                    // after the whole body) is fine once the answer is complete.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(std::io::Error::other("incomplete HTTP response"));
        }
        Ok(parse_response(&raw))
    }

    /// [`Endpoint::try_request`], panicking on a connection error.
    pub fn request(&self, method: &str, path: &str, headers: &[&str], body: &str) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {self:?}{path}: {e}"))
    }

    /// `GET path` as JSON, asserting 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.request("GET", path, &[], "");
        assert_eq!(r.status, 200, "GET {self:?}{path}: {}", r.body);
        r.json()
    }
}

/// The fleet's credentials for a test on loopback, kept in `dir/state` as `stack up` keeps
/// them, with `token` as the webhook token.
pub struct TestFleet {
    pub dir: PathBuf,
    pub kept: Secrets,
    pub secrets: StackSecrets,
}

impl TestFleet {
    pub fn new(dir: &Path, token: &str) -> TestFleet {
        let state = dir.join("state");
        let want = Want {
            stack: "edgesense".into(),
            token: Some(token.to_owned()),
            names: edgesense::secrets::names_for("edgesense", &[], &[], false),
            renew_within: Duration::from_secs(30 * 86_400),
            ..Want::default()
        };
        let (kept, _) = Secrets::ensure(&state, &want).expect("the fleet's credentials");
        let secrets = StackSecrets::from_kept("edgesense", &kept, false).expect("secrets");
        TestFleet {
            dir: state,
            kept,
            secrets,
        }
    }

    /// The credentials a `stack up` (with `--state-dir dir`) keeps in `dir`.
    pub fn open(dir: &Path) -> TestFleet {
        let kept = Secrets::load(dir)
            .expect("read the kept secrets")
            .unwrap_or_else(|| panic!("no stack secrets kept in {}", dir.display()));
        let secrets = StackSecrets::from_kept("edgesense", &kept, false).expect("secrets");
        TestFleet {
            dir: dir.to_owned(),
            kept,
            secrets,
        }
    }

    /// An agent at `addr` over https, as a peer reaches it: the agents' own certificate (reads)
    /// and the token (writes).
    pub fn agent_at(&self, addr: SocketAddr) -> Endpoint {
        Endpoint::https(addr, self.client(Some("agent")), "edgesense-agent")
            .bearer(&self.kept.token)
    }

    /// The agent bundle (`agent/`: CA, certificate, token, Alertmanager password).
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("agent")
    }

    /// The flags that give an agent its TLS and Alertmanager credentials.
    pub fn agent_args(&self) -> Vec<String> {
        let b = self.bundle();
        let p = |f: &str| b.join(f).to_str().expect("utf-8 path").to_owned();
        vec![
            "--tls-cert".into(),
            p(credentials::BUNDLE_CERT),
            "--tls-ca".into(),
            p(credentials::BUNDLE_CA),
            "--alertmanager-password-file".into(),
            p(credentials::BUNDLE_PASSWORD),
        ]
    }

    /// The agent binary with `args` and this fleet's credentials ([`TestFleet::agent_args`]).
    pub fn agent(&self, args: &[&str]) -> Agent {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(self.agent_args());
        Agent::start(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn ca_pem(&self) -> &str {
        &self.kept.ca.cert_pem
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A client trusting the fleet CA (and presenting `identity`'s certificate, if given).
    pub fn client(&self, identity: Option<&str>) -> Arc<ClientConfig> {
        let id = identity.map(|w| self.kept.leaves[w].pem.as_bytes());
        client_config(self.ca_pem().as_bytes(), id)
    }

    /// The operator (user `edgesense`) at a service on `addr` whose certificate carries `name`.
    pub fn operator(&self, addr: SocketAddr, name: &str) -> Endpoint {
        Endpoint::https(addr, self.client(None), name).basic(
            credentials::OPERATOR,
            self.kept.password(credentials::OPERATOR).expect("operator"),
        )
    }

    pub fn operator_password(&self) -> &str {
        self.kept.password(credentials::OPERATOR).expect("operator")
    }

    /// A file holding the operator's password (for `--web-password-file`).
    pub fn operator_password_file(&self) -> PathBuf {
        let p = self.dir.join("operator.password");
        std::fs::write(&p, format!("{}\n", self.operator_password())).expect("write");
        p
    }

    /// The files service `mounts` (its list in [`secrets`]) finds under /run/secrets/, written
    /// into `out` by their names there (a web config's paths to them pointing into `out`).
    pub fn secrets_dir(&self, mounts: &[(&str, &str)], out: &Path) -> PathBuf {
        std::fs::create_dir_all(out).expect("mkdir");
        let here = format!("{}/", out.to_str().expect("utf-8 path"));
        for (key, target) in mounts {
            let data = self.secrets.files[*key]
                .data
                .as_deref()
                .expect("kept, so known")
                .replace("/run/secrets/", &here);
            std::fs::write(out.join(target), data).expect("write secret");
        }
        out.to_owned()
    }

    pub fn prometheus_secrets(&self, out: &Path) -> PathBuf {
        self.secrets_dir(secrets::PROMETHEUS, out)
    }

    pub fn alertmanager_secrets(&self, out: &Path) -> PathBuf {
        self.secrets_dir(secrets::ALERTMANAGER, out)
    }
}
