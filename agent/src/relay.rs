//! Forwarding Alertmanager payloads to the other agents.
//!
//! In the swarm, Alertmanager posts to `http://edgesense-agent:9842/…`, and Docker's DNS picks
//! one agent behind the alias. That agent applies what is its own and forwards the payload,
//! unchanged, once to every peer: the other A records of the alias (`dns`) and any static
//! `peers`. The forwarded request carries `X-Edgesense-Relayed-By`, so a peer applies it and does
//! not forward it again. Forwarding runs in the background: a peer that is down is retried with
//! back-off (0.5 s, 1 s, 2 s, 4 s, 8 s) and logged, and never delays the answer to Alertmanager.
//!
//! With the fleet CA, a peer is dialled at its address over https and must present a
//! certificate for the name it was found by (`edgesense-agent`); the payload carries this
//! agent's token as a bearer token, so a capture of the LAN shows neither.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use axum::body::Bytes;
use edgesense_net::{Call, Target};
use hyper::header::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;

use crate::{alerts::RelaySpec, credentials};

/// The header that marks a forwarded payload.
pub const RELAYED_BY: &str = "x-edgesense-relayed-by";
/// Waits between attempts to reach one peer.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// One attempt: connect, send, read the status line.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries in flight (all peers, all payloads); beyond this a payload is not relayed and the
/// drop is logged, so a storm against dead peers cannot pile up memory.
const MAX_IN_FLIGHT: usize = 256;

/// Forwards payloads to the peers of one agent.
#[derive(Clone)]
pub struct Relay {
    spec: RelaySpec,
    /// This agent's listen address, to leave itself out of the A records.
    own_port: u16,
    node: Arc<str>,
    credentials: credentials::Shared,
    in_flight: Arc<Semaphore>,
}

/// A peer: its address and the name it was found by (what its certificate must carry).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub addr: SocketAddr,
    pub name: String,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.addr)
    }
}

impl Relay {
    pub fn new(
        spec: RelaySpec,
        own_port: u16,
        node: &str,
        credentials: credentials::Shared,
    ) -> Relay {
        Relay {
            spec,
            own_port,
            node: node.into(),
            credentials,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.spec.is_empty()
    }

    /// Sends `body` to every peer in the background.
    pub fn forward(&self, body: Bytes) {
        if !self.is_enabled() {
            return;
        }
        let relay = self.clone();
        tokio::spawn(async move {
            for peer in relay.peers().await {
                let Ok(permit) = Arc::clone(&relay.in_flight).try_acquire_owned() else {
                    tracing::error!(%peer, "too many relays in flight; payload not forwarded to this peer");
                    continue;
                };
                let relay = relay.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    relay.deliver(peer, body).await;
                    drop(permit);
                });
            }
        });
    }

    /// The peers now: static ones and the A records of `dns`, without this agent.
    pub async fn peers(&self) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        let names = self.spec.peers.iter().chain(self.spec.dns.iter());
        for name in names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => {
                    // A name with both (localhost) is one peer: take its IPv4 addresses.
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    let v4 = addrs.iter().any(SocketAddr::is_ipv4);
                    let host = name.rsplit_once(':').map_or(name.as_str(), |(h, _)| h);
                    out.extend(
                        addrs
                            .into_iter()
                            .filter(|a| a.is_ipv4() || !v4)
                            .map(|addr| Peer {
                                addr,
                                name: host.to_owned(),
                            }),
                    );
                }
                Err(e) => tracing::warn!(peer = %name, error = %e, "cannot resolve relay peer"),
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.addr == b.addr);
        out.retain(|p| !is_self(p.addr, self.own_port));
        out
    }

    async fn deliver(&self, peer: Peer, body: Bytes) {
        let mut waits = BACKOFF.iter();
        loop {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(&peer, body.clone())).await {
                Ok(Ok(status)) if status < 300 => {
                    tracing::debug!(%peer, status, "payload relayed");
                    return;
                }
                // A peer that refuses the payload will refuse it again: no retry.
                Ok(Ok(status)) if (400..500).contains(&status) => {
                    tracing::error!(%peer, status, "peer refused the relayed payload (token differs?)");
                    return;
                }
                Ok(Ok(status)) => tracing::warn!(%peer, status, "relay attempt failed"),
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "relay attempt failed"),
                Err(_) => tracing::warn!(%peer, "relay attempt timed out"),
            }
            match waits.next() {
                Some(w) => tokio::time::sleep(*w).await,
                None => {
                    tracing::error!(%peer, attempts = BACKOFF.len() + 1, "peer unreachable; payload not relayed");
                    return;
                }
            }
        }
    }

    /// One POST of `body` to `peer`; the response status.
    async fn post(&self, peer: &Peer, body: Bytes) -> Result<u16, String> {
        let creds = self.credentials.get();
        let target = Target {
            url: format!(
                "{}://{}:{}",
                if creds.peers_use_tls() {
                    "https"
                } else {
                    "http"
                },
                peer.name,
                peer.addr.port()
            ),
            tls: creds.peers_use_tls(),
            host: peer.name.clone(),
            port: peer.addr.port(),
            prefix: String::new(),
        };
        let node = HeaderValue::from_str(&self.node).map_err(|e| e.to_string())?;
        let call = Call::post_json("/api/v1/alertmanager", body)
            .header(HeaderName::from_static(RELAYED_BY), node)
            .dial(peer.addr)
            .limit(64 << 10);
        creds
            .peers
            .send(&target, call)
            .await
            .map(|r| r.status)
            .map_err(|e| e.to_string())
    }
}

/// True if `addr` is this agent: one of this host's addresses (the kernel picks it as the
/// source for a datagram to it) with this agent's port. No packet is sent.
fn is_self(addr: SocketAddr, own_port: u16) -> bool {
    if addr.port() != own_port {
        return false;
    }
    let bind: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
        IpAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    UdpSocket::bind(bind)
        .and_then(|s| s.connect(addr).and_then(|()| s.local_addr()))
        .is_ok_and(|local| local.ip() == addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_address_and_port_is_self_others_are_not() {
        let me: SocketAddr = "127.0.0.1:9842".parse().unwrap();
        assert!(is_self(me, 9842));
        assert!(!is_self(me, 9843), "another agent on this host");
        assert!(
            !is_self("192.0.2.7:9842".parse().unwrap(), 9842),
            "TEST-NET-1 is never local"
        );
    }

    #[tokio::test]
    async fn peers_leave_this_agent_out() {
        let spec = RelaySpec {
            peers: vec![
                "127.0.0.1:9842".into(),
                "127.0.0.1:9850".into(),
                "127.0.0.1:9850".into(),
            ],
            dns: None,
        };
        let r = Relay::new(
            spec,
            9842,
            "n",
            credentials::Shared::new(credentials::Credentials::none()),
        );
        assert_eq!(
            r.peers().await,
            [Peer {
                addr: "127.0.0.1:9850".parse().unwrap(),
                name: "127.0.0.1".into()
            }]
        );
    }
}
