//! The HTTP(S) listener: caps on open connections, TLS when the agent has a certificate, and
//! who is on the other end of every request ([`Peer`]).
//!
//! - At most `max_connections` open connections: beyond that the next one waits in the
//!   kernel's accept queue until another closes, so a flood of idle or slow clients cannot
//!   exhaust the node's memory or file descriptors. One address holds at most
//!   `max_connections_per_client` of them (a browser tab with an event stream holds one): the
//!   rest of the fleet keeps its slots when one host opens hundreds. Loopback (this host) is
//!   held by the total cap alone.
//! - With TLS, a connection whose first byte is not a TLS handshake record (22) is plain HTTP:
//!   served as such from loopback (the container's own health check, `curl localhost` on the
//!   Pi), answered with a short "speak HTTPS" 400 from anywhere else. A TLS client may present
//!   a certificate; one that does not verify against the fleet CA fails the handshake.
//! - Handshakes and request heads have deadlines, and each connection runs in a task of its
//!   own: a client that connects and says nothing holds one slot, not the accept loop.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tower::ServiceExt;

use crate::credentials;

/// Default cap on open connections (200 event-stream viewers plus scrapes fit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default cap on open connections from one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;
/// A client has this long to start and finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// … and to send a request's head once connected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The TLS record type of a handshake: the first byte a TLS client sends.
const TLS_HANDSHAKE: u8 = 22;

/// The body of the answer to plain HTTP from another host on a TLS port (a 400).
const SPEAK_TLS: &str = "This edgesense agent speaks HTTPS only: use https://, and trust the fleet CA (`edgesense stack ca` prints it) to verify it.\n";

/// Who is on the other end of a request (in every request's extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// This end: the address the client dialed.
    pub local: SocketAddr,
    /// Over TLS.
    pub tls: bool,
    /// Presented a certificate that verified against the fleet CA.
    pub client_cert: bool,
}

impl Peer {
    /// A loopback address: this host (or, in a container, the container itself).
    pub fn is_local(&self) -> bool {
        is_loopback(self.addr.ip())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The caps on open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub per_client: usize,
}

/// Open connections per address; an entry lives while its count is above zero.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in [`PerClient`], given back on drop.
struct ClientSlot {
    table: PerClient,
    ip: IpAddr,
}

impl PerClient {
    fn take(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` until the returned future is dropped (open connections are
/// dropped with it). The TLS configuration is read from `creds` for every new connection, so a
/// reload's certificate applies from the next one on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    creds: credentials::Shared,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = PerClient::default();
    let mut conns = JoinSet::new();
    let mut refused_logged = None::<std::time::Instant>;
    loop {
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("connection slots closed"))?;
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; per-connection errors
                // (ECONNABORTED) just move on.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        // This host itself (loopback) is not capped per client: only the total cap holds it.
        let max = if is_loopback(addr.ip()) {
            usize::MAX
        } else {
            limits.per_client.max(1)
        };
        let Some(client_slot) = per_client.take(addr.ip(), max) else {
            if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(client = %addr.ip(), max = limits.per_client, "too many connections from one address; closing the newest (logged once a minute)");
                refused_logged = Some(std::time::Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = creds.get().server_tls();
        conns.spawn(async move {
            let _slots = (slot, client_slot);
            connection(stream, addr, tls, router).await;
        });
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<edgesense_net::rustls::ServerConfig>>,
    router: Router,
) {
    let local = stream.local_addr().unwrap_or(addr);
    let plain = Peer {
        addr,
        local,
        tls: false,
        client_cert: false,
    };
    let Some(config) = tls else {
        return http(stream, plain, router).await;
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) if plain.is_local() => return http(stream, plain, router).await,
        Ok(Ok(1)) => {
            let mut stream = stream;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{SPEAK_TLS}",
                SPEAK_TLS.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
        _ => return,
    }
    let accept = edgesense_net::tokio_rustls::TlsAcceptor::from(config).accept(stream);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(tls)) => {
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let peer = Peer {
                addr,
                local,
                tls: true,
                client_cert,
            };
            http(tls, peer, router).await;
        }
        Ok(Err(e)) => tracing::debug!(client = %addr, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
    }
}

/// HTTP/1.1 on one connection, `peer` in every request's extensions.
async fn http<S>(io: S, peer: Peer, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer);
            router.clone().oneshot(req)
        });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_its_share_and_gets_it_back() {
        let t = PerClient::default();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let s1 = t.take(a, 2).unwrap();
        let _s2 = t.take(a, 2).unwrap();
        assert!(t.take(a, 2).is_none(), "a third from the same address");
        assert!(t.take(b, 2).is_some(), "another address is not held back");
        drop(s1);
        assert!(
            t.take(a, 2).is_some(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn loopback_is_local_in_both_families() {
        let p = |a: &str| Peer {
            addr: a.parse().unwrap(),
            local: "127.0.0.1:9842".parse().unwrap(),
            tls: false,
            client_cert: false,
        };
        assert!(p("127.0.0.1:1").is_local() && p("[::1]:1").is_local());
        assert!(p("[::ffff:127.0.0.1]:1").is_local());
        assert!(!p("192.168.1.5:1").is_local() && !p("[::ffff:10.0.0.1]:1").is_local());
    }
}
