//! One HTTP/1.1 request per connection, over TCP or TLS, with the fleet's credentials.
//!
//! Every outgoing call of the agent (relay to peers, reconcile and silences against
//! Alertmanager, the health probe) and of the CLI (readiness, `stack status`, the dashboard's
//! proxy to Prometheus and Alertmanager) goes through [`Client::send`]. Calls are rare (seconds
//! apart), so there is no pool: a connection per call, closed after it. The TLS client config is
//! shared, so its session cache turns the next handshake into a resumption.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Bytes,
    header::{self, HeaderName, HeaderValue},
    Request,
};
use hyper_util::rt::TokioIo;
use rustls::{pki_types::ServerName, ClientConfig};

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("\"{0}\" is not an http:// or https:// URL")]
    Url(String),
    #[error("{0}: https:// needs the CA to verify it against (give the fleet's ca.crt)")]
    NoTls(String),
    #[error("resolve {0}: {1}")]
    Resolve(String, String),
    #[error("connect {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("{0}: {1}")]
    Http(String, String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: answer larger than {1} bytes")]
    TooLarge(String, usize),
}

/// Credentials a client sends with every call.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>` (the agents' webhook token).
    Bearer(Vec<u8>),
    /// `Authorization: Basic …` (Prometheus's and Alertmanager's `--web.config.file` users).
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(…)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}:…)"),
        }
    }
}

impl Auth {
    /// The `Authorization` header value, marked sensitive (hyper keeps it out of debug output).
    pub fn header(&self) -> Option<HeaderValue> {
        let raw = match self {
            Auth::Bearer(t) => [b"Bearer ".as_slice(), t].concat(),
            Auth::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
            .into_bytes(),
        };
        let mut v = HeaderValue::from_bytes(&raw).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Where a call goes: scheme, host (the name a certificate must carry), port, path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// A path every call's path is appended to (`--web.route-prefix`), without a trailing `/`.
    pub prefix: String,
}

impl Target {
    /// `http://host[:port][/prefix]` or `https://…` (ports default to 80 and 443).
    pub fn parse(url: &str) -> Result<Target, Error> {
        let bad = || Error::Url(url.to_owned());
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port ([::1]) has its colons inside the brackets.
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        Ok(Target {
            url: url.trim_end_matches('/').to_owned(),
            tls,
            host: host.to_owned(),
            port,
            prefix: prefix.to_owned(),
        })
    }

    /// `host:port` as the `Host` header carries it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One request: method, path (with query), headers, body, and the largest answer read.
#[derive(Clone)]
pub struct Call {
    method: hyper::Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    limit: usize,
    dial: Option<SocketAddr>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Call {
        Call::new(hyper::Method::GET, path, Bytes::new())
    }

    /// A POST of a JSON body.
    pub fn post_json(path: impl Into<String>, body: impl Into<Bytes>) -> Call {
        Call::new(hyper::Method::POST, path, body.into()).header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
    }

    pub fn new(method: hyper::Method, path: impl Into<String>, body: Bytes) -> Call {
        Call {
            method,
            path: path.into(),
            headers: Vec::new(),
            body,
            limit: 1 << 20,
            dial: None,
        }
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Call {
        self.headers.push((name, value));
        self
    }

    /// Answers larger than `bytes` are an error ([`Error::TooLarge`]).
    pub fn limit(mut self, bytes: usize) -> Call {
        self.limit = bytes;
        self
    }

    /// Connect to `addr` instead of resolving the target's host (a peer found by its A
    /// record); the host is still the name its certificate is checked for.
    pub fn dial(mut self, addr: SocketAddr) -> Call {
        self.dial = Some(addr);
        self
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// A client: TLS trust and identity (for `https://`), credentials, a time limit per call.
#[derive(Clone, Debug)]
pub struct Client {
    tls: Option<Arc<ClientConfig>>,
    auth: Option<Auth>,
    timeout: Duration,
    connect_timeout: Duration,
}

/// How long a TCP connect may take before the address counts as dead. A peer that is up
/// answers a SYN in milliseconds, even over a Pi's Wi-Fi; an address Docker's DNS still hands
/// out after its container is gone (a restarted manager's old task, until the gossip drops its
/// record) drops the SYN, and without this limit would hold the call for its whole time limit
/// before [`Client::send_any`] tries the next address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// Plain HTTP only, no credentials, 5 s per call.
    pub fn new() -> Client {
        Client {
            tls: None,
            auth: None,
            timeout: Duration::from_secs(5),
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    pub fn with_tls(mut self, config: Option<Arc<ClientConfig>>) -> Client {
        self.tls = config;
        self
    }

    pub fn with_auth(mut self, auth: Option<Auth>) -> Client {
        self.auth = auth;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sets the limit of a TCP connect ([`CONNECT_TIMEOUT`] by default); the call's own limit
    /// still bounds it.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Client {
        self.connect_timeout = timeout;
        self
    }

    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sends `call` to each address `target`'s name resolves to in turn (Docker's DNS answers
    /// every task of a service, an Alertmanager pair both) until one answers; an answer is any
    /// HTTP status. The errors of every address when none does.
    pub async fn send_any(&self, target: &Target, call: Call) -> Result<Response, Error> {
        let addrs = match call.dial {
            Some(a) => vec![a],
            None => resolve_all(target).await?,
        };
        self.send_each(target, &addrs, call).await
    }

    /// [`Client::send_any`] over `addrs`.
    async fn send_each(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
        call: Call,
    ) -> Result<Response, Error> {
        let mut last = None;
        for &addr in addrs {
            match self.send(target, call.clone().dial(addr)).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Resolve(target.authority(), "no address".into())))
    }

    /// Sends `call` to `target`: connect (resolve, TCP, TLS), send, read the whole answer, all
    /// within the client's time limit.
    pub async fn send(&self, target: &Target, call: Call) -> Result<Response, Error> {
        let what = format!("{}{}", target.url, call.path);
        tokio::time::timeout(self.timeout, self.send_inner(target, call))
            .await
            .map_err(|_| Error::Timeout(what, self.timeout))?
    }

    async fn send_inner(&self, target: &Target, call: Call) -> Result<Response, Error> {
        if target.tls && self.tls.is_none() {
            return Err(Error::NoTls(target.url.clone()));
        }
        let addr = match call.dial {
            Some(a) => a,
            None => resolve(target).await?,
        };
        let tcp = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Error::Connect(
                    addr,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer to the SYN within {:?}", self.connect_timeout),
                    ),
                )
            })?
            .map_err(|e| Error::Connect(addr, e))?;
        let _ = tcp.set_nodelay(true);
        if target.tls {
            let config = self
                .tls
                .clone()
                .ok_or_else(|| Error::NoTls(target.url.clone()))?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| Error::Url(target.url.clone()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls(target.authority(), e))?;
            self.exchange(target, call, stream).await
        } else {
            self.exchange(target, call, tcp).await
        }
    }

    async fn exchange<S>(&self, target: &Target, call: Call, io: S) -> Result<Response, Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let url = format!("{}{}", target.url, call.path);
        let http = |e: hyper::Error| Error::Http(url.clone(), e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut path = format!("{}{}", target.prefix, call.path);
        if path.is_empty() {
            path.push('/');
        }
        let mut req = Request::builder()
            .method(call.method)
            .uri(path)
            .header(header::HOST, target.authority())
            .header(header::USER_AGENT, "edgesense");
        if let Some(v) = self.auth.as_ref().and_then(Auth::header) {
            req = req.header(header::AUTHORIZATION, v);
        }
        for (k, v) in call.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(call.body))
            .map_err(|e| Error::Http(url.clone(), e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), call.limit)
            .collect()
            .await
            .map_err(|_| Error::TooLarge(url.clone(), call.limit))?
            .to_bytes();
        Ok(Response { status, body })
    }
}

/// Every address of the target, IPv4 first, each once.
async fn resolve_all(target: &Target) -> Result<Vec<SocketAddr>, Error> {
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Error::Resolve(target.authority(), e.to_string()))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    if addrs.is_empty() {
        return Err(Error::Resolve(target.authority(), "no address".into()));
    }
    Ok(addrs)
}

/// The target's address: its first IPv4 address if it has one (Docker's DNS answers A
/// records; `localhost` has both).
async fn resolve(target: &Target) -> Result<SocketAddr, Error> {
    Ok(resolve_all(target).await?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback address that answers one call with `response`.
    async fn answering_once(response: &'static [u8]) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = live.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = live.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(response).await;
        });
        addr
    }

    #[tokio::test]
    async fn the_next_address_answers_when_the_first_does_not() {
        // The first address refuses (nothing listens there any more); the second answers.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live_addr =
            answering_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        let t = Target::parse("http://alertmanager:9093").unwrap();
        let r = Client::new()
            .send_each(&t, &[dead_addr, live_addr], Call::get("/-/ready"))
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        let e = Client::new()
            .send_each(&t, &[dead_addr], Call::get("/-/ready"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&dead_addr.to_string()), "{e}");
    }

    #[tokio::test]
    async fn an_address_that_drops_the_syn_does_not_hold_the_next_one_back() {
        // A listener whose accept queue is full: Linux drops further SYNs, as an overlay does
        // for an address whose container is gone.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = sock.listen(0).unwrap();
        let black_hole = full.local_addr().unwrap();
        let mut queued = Vec::new();
        // Fill the queue: connects complete until it is full, then one hangs.
        loop {
            match tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(black_hole),
            )
            .await
            {
                Ok(Ok(s)) => queued.push(s),
                Ok(Err(e)) => panic!("connect: {e}"),
                Err(_) => break,
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        let live_addr =
            answering_once(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
        let t = Target::parse("http://prometheus:9090").unwrap();
        let client = Client::new()
            .with_timeout(Duration::from_secs(30))
            .with_connect_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let r = client
            .send_each(&t, &[black_hole, live_addr], Call::get("/api/v1/write"))
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        // Well under the call's 30 s: the dead address cost its connect limit only.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let e = client
            .send_each(&t, &[black_hole], Call::get("/api/v1/write"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Connect(a, _) if *a == black_hole) && e.to_string().contains("SYN"),
            "{e}"
        );
        drop(full);
    }

    #[test]
    fn urls_become_targets() {
        let t = Target::parse("http://alertmanager:9093").unwrap();
        assert_eq!(
            (t.tls, t.authority().as_str()),
            (false, "alertmanager:9093")
        );
        let t = Target::parse("https://am.local/prefix/").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.prefix.as_str()),
            (true, "am.local", 443, "/prefix")
        );
        assert_eq!(t.url, "https://am.local/prefix");
        let t = Target::parse("https://[::1]:9093").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9093));
        assert_eq!(t.authority(), "[::1]:9093");
        for bad in [
            "ftp://x",
            "x:9093",
            "http://",
            "http://user:pw@x:1",
            "http://x:port",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let b = Auth::Basic {
            user: "agent".into(),
            password: "hunter2".into(),
        };
        assert_eq!(format!("{b:?}"), "Basic(agent:…)");
        assert_eq!(
            b.header().unwrap().to_str().unwrap(),
            "Basic YWdlbnQ6aHVudGVyMg=="
        );
        assert!(b.header().unwrap().is_sensitive());
        assert!(!format!("{:?}", Auth::Bearer(b"t0k".to_vec())).contains("t0k"));
    }
}
