//! Forwarding Alertmanager payloads to the other agents.
//!
//! In the swarm, Alertmanager posts to `https://edgesense-agent:9842/…`, and Docker's DNS picks
//! one agent behind the alias. That agent applies what is its own and forwards the payload,
//! unchanged, once to every peer: the other A records of the alias (`dns`) and any static
//! `peers`. The forwarded request carries `X-Edgesense-Relayed-By`, so a peer applies it and does
//! not forward it again. Forwarding runs in the background and never delays the answer to
//! Alertmanager: a peer that is down is retried with back-off (0.5 s, 1 s, 2 s, 4 s, 8 s) and
//! logged.
//!
//! The alias's A records are asked over TCP ([`edgesense_net::dns`]): Docker's UDP answer
//! holds 15 of them and musl's `getaddrinfo` at most 48, so at 120 agents a relay through the
//! system resolver reached 47 peers and the reconcile (15 s) carried the rest.
//!
//! Beyond [`TREE_FROM`] peers the payload goes out as a two-level tree: this agent sends it to
//! about √N peers, each with `X-Edgesense-Relay-To` naming the ≈ √N others it passes it on to
//! (over the same TLS, with the same token). A Pi Zero then makes ≈ 2√N connections per
//! notification instead of N − 1, the latency is two hops. A peer that fails its first attempt
//! does not hold its group back: this agent sends to that group itself, and keeps retrying the
//! peer. At most [`CONCURRENCY`] deliveries are in the air at once; the rest wait their turn.
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
use futures_util::future::join_all;
use hyper::header::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;

use crate::{alerts::RelaySpec, credentials};

/// The header that marks a forwarded payload.
pub const RELAYED_BY: &str = "x-edgesense-relayed-by";
/// The addresses (`ip:port,…`) the receiving peer forwards a relayed payload to.
pub const RELAY_TO: &str = "x-edgesense-relay-to";
/// Up to this many peers, every one is sent to directly; beyond, a tree.
pub const TREE_FROM: usize = 16;
/// Deliveries in the air at once (connect, TLS, send, status line).
pub const CONCURRENCY: usize = 32;
/// Most addresses a `X-Edgesense-Relay-To` may name.
pub const MAX_RELAY_TO: usize = 1024;
/// Payloads being forwarded at once; beyond this one is not relayed and the drop is logged, so
/// a storm against dead peers cannot pile up memory.
const MAX_PAYLOADS: usize = 16;
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
/// The name peers found by address only (a tree's group) must carry in their certificate when
/// this agent has no `dns` name of its own.
const AGENT_NAME: &str = "edgesense-agent";

/// Forwards payloads to the peers of one agent.
#[derive(Clone)]
pub struct Relay {
    spec: RelaySpec,
    /// This agent's listen address, to leave itself out of the A records.
    own_port: u16,
    node: Arc<str>,
    credentials: credentials::Shared,
    payloads: Arc<Semaphore>,
    in_air: Arc<Semaphore>,
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

/// How one attempt ended.
enum Outcome {
    Delivered,
    Refused,
    Failed,
}

/// Parses a `X-Edgesense-Relay-To` value: at most [`MAX_RELAY_TO`] `ip:port`, comma-separated.
pub fn parse_relay_to(v: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.len() > MAX_RELAY_TO {
        return Err(format!("{RELAY_TO}: more than {MAX_RELAY_TO} addresses"));
    }
    addrs
        .into_iter()
        .map(|a| {
            a.parse()
                .map_err(|_| format!("{RELAY_TO}: {a:?} is not an ip:port"))
        })
        .collect()
}

/// The plan for `peers`: who is sent to, each with the group it passes the payload on to.
/// Peers of the alias beyond [`TREE_FROM`] are split into ≈ √N groups headed by their first;
/// static peers (another name) are always sent to directly.
pub fn tree(peers: Vec<Peer>, alias: Option<&str>) -> Vec<(Peer, Vec<Peer>)> {
    let (grouped, direct): (Vec<Peer>, Vec<Peer>) = peers
        .into_iter()
        .partition(|p| alias.is_some_and(|a| p.name == a));
    let mut plan: Vec<(Peer, Vec<Peer>)> = direct.into_iter().map(|p| (p, Vec::new())).collect();
    if grouped.len() <= TREE_FROM {
        plan.extend(grouped.into_iter().map(|p| (p, Vec::new())));
        return plan;
    }
    let heads = (grouped.len() as f64).sqrt().ceil() as usize;
    let size = grouped.len().div_ceil(heads);
    for chunk in grouped.chunks(size) {
        plan.push((chunk[0].clone(), chunk[1..].to_vec()));
    }
    plan
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
            payloads: Arc::new(Semaphore::new(MAX_PAYLOADS)),
            in_air: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.spec.is_empty()
    }

    /// The host part of `dns` (the alias), the name its peers' certificates carry.
    fn alias(&self) -> Option<&str> {
        let dns = self.spec.dns.as_deref()?;
        Some(dns.rsplit_once(':').map_or(dns, |(h, _)| h))
    }

    /// Sends `body` to every peer in the background (a tree beyond [`TREE_FROM`]).
    pub fn forward(&self, body: Bytes) {
        if !self.is_enabled() {
            return;
        }
        let Ok(permit) = Arc::clone(&self.payloads).try_acquire_owned() else {
            tracing::error!("too many payloads being relayed; this one is not forwarded");
            return;
        };
        let relay = self.clone();
        tokio::spawn(async move {
            let peers = relay.peers().await;
            let plan = tree(peers, relay.alias());
            tracing::info!(
                peers = plan.iter().map(|(_, g)| g.len() + 1).sum::<usize>(),
                sent_to = plan.len(),
                "relaying the payload"
            );
            join_all(plan.into_iter().map(|(p, g)| relay.deliver(p, &body, g))).await;
            drop(permit);
        });
    }

    /// Passes `body` on to `addrs`, the group a tree's sender named (`X-Edgesense-Relay-To`):
    /// directly, each dialled as the alias.
    pub fn forward_to(&self, body: Bytes, addrs: Vec<SocketAddr>) {
        let Ok(permit) = Arc::clone(&self.payloads).try_acquire_owned() else {
            tracing::error!("too many payloads being relayed; this group is not forwarded");
            return;
        };
        let name = self.alias().unwrap_or(AGENT_NAME).to_owned();
        let relay = self.clone();
        tokio::spawn(async move {
            let peers = addrs
                .into_iter()
                .filter(|a| !is_self(*a, relay.own_port))
                .map(|addr| Peer {
                    addr,
                    name: name.clone(),
                });
            join_all(peers.map(|p| relay.retry(p, &body, 0))).await;
            drop(permit);
        });
    }

    /// The peers now: static ones and the A records of `dns`, without this agent.
    pub async fn peers(&self) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        for name in &self.spec.peers {
            out.extend(resolve(name).await);
        }
        if let Some(dns) = &self.spec.dns {
            out.extend(resolve_all(dns).await);
        }
        out.sort();
        out.dedup_by(|a, b| a.addr == b.addr);
        out.retain(|p| !is_self(p.addr, self.own_port));
        out
    }

    /// `peer`, passing it `group`; if the peer fails its first attempt, the group is sent to
    /// from here while the peer is retried.
    async fn deliver(&self, peer: Peer, body: &Bytes, group: Vec<Peer>) {
        match self.attempt(&peer, body, &group).await {
            Outcome::Delivered => {}
            Outcome::Refused => {
                join_all(group.into_iter().map(|p| self.retry(p, body, 0))).await;
            }
            Outcome::Failed => {
                if !group.is_empty() {
                    tracing::warn!(%peer, group = group.len(), "peer cannot pass the payload on; sending to its group directly");
                }
                let others = join_all(group.into_iter().map(|p| self.retry(p, body, 0)));
                tokio::join!(self.retry(peer, body, 1), others);
            }
        }
    }

    /// `peer` alone, from attempt `from` (the first is attempt 0), with back-off.
    async fn retry(&self, peer: Peer, body: &Bytes, from: usize) {
        let mut n = from;
        loop {
            if n > 0 {
                match BACKOFF.get(n - 1) {
                    Some(w) => tokio::time::sleep(*w).await,
                    None => {
                        tracing::error!(%peer, attempts = BACKOFF.len() + 1, "peer unreachable; payload not relayed");
                        return;
                    }
                }
            }
            match self.attempt(&peer, body, &[]).await {
                Outcome::Delivered | Outcome::Refused => return,
                Outcome::Failed => n += 1,
            }
        }
    }

    /// One POST, within [`ATTEMPT_TIMEOUT`], once a slot of [`CONCURRENCY`] is free.
    async fn attempt(&self, peer: &Peer, body: &Bytes, group: &[Peer]) -> Outcome {
        let Ok(_slot) = self.in_air.acquire().await else {
            return Outcome::Failed;
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(peer, body.clone(), group)).await {
            Ok(Ok(status)) if status < 300 => {
                tracing::debug!(%peer, status, "payload relayed");
                Outcome::Delivered
            }
            // A peer that refuses the payload will refuse it again: no retry.
            Ok(Ok(status)) if (400..500).contains(&status) => {
                tracing::error!(%peer, status, "peer refused the relayed payload (token differs?)");
                Outcome::Refused
            }
            Ok(Ok(status)) => {
                tracing::warn!(%peer, status, "relay attempt failed");
                Outcome::Failed
            }
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "relay attempt failed");
                Outcome::Failed
            }
            Err(_) => {
                tracing::warn!(%peer, "relay attempt timed out");
                Outcome::Failed
            }
        }
    }

    /// One POST of `body` to `peer` (naming `group` for it to pass on); the response status.
    async fn post(&self, peer: &Peer, body: Bytes, group: &[Peer]) -> Result<u16, String> {
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
        let mut call = Call::post_json("/api/v1/alertmanager", body)
            .header(HeaderName::from_static(RELAYED_BY), node)
            .dial(peer.addr)
            .limit(64 << 10);
        if !group.is_empty() {
            let to: Vec<String> = group.iter().map(|p| p.addr.to_string()).collect();
            let v = HeaderValue::from_str(&to.join(",")).map_err(|e| e.to_string())?;
            call = call.header(HeaderName::from_static(RELAY_TO), v);
        }
        creds
            .peers
            .send(&target, call)
            .await
            .map(|r| r.status)
            .map_err(|e| e.to_string())
    }
}

/// A static peer `host:port` through the system resolver (a name with both families, as
/// localhost, is one peer: its IPv4 addresses).
async fn resolve(name: &str) -> Vec<Peer> {
    let host = name.rsplit_once(':').map_or(name, |(h, _)| h);
    match tokio::net::lookup_host(name).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            let v4 = addrs.iter().any(SocketAddr::is_ipv4);
            addrs
                .into_iter()
                .filter(|a| a.is_ipv4() || !v4)
                .map(|addr| Peer {
                    addr,
                    name: host.to_owned(),
                })
                .collect()
        }
        Err(e) => {
            tracing::warn!(peer = %name, error = %e, "cannot resolve relay peer");
            Vec::new()
        }
    }
}

/// Every A record of the alias `name:port`, over TCP; the system resolver if that fails (no
/// resolv.conf, a literal address).
async fn resolve_all(dns: &str) -> Vec<Peer> {
    let Some((host, port)) = dns
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
    else {
        return resolve(dns).await;
    };
    if host.parse::<IpAddr>().is_ok() {
        return resolve(dns).await;
    }
    match edgesense_net::dns::lookup_a(host).await {
        Ok(ips) if !ips.is_empty() => ips
            .into_iter()
            .map(|ip| Peer {
                addr: SocketAddr::new(ip.into(), port),
                name: host.to_owned(),
            })
            .collect(),
        Ok(_) => resolve(dns).await,
        Err(e) => {
            tracing::debug!(peer = %dns, error = %e, "no A records over TCP; asking the system resolver");
            resolve(dns).await
        }
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

    fn peer(i: u16, name: &str) -> Peer {
        Peer {
            addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 9842)),
            name: name.into(),
        }
    }

    #[test]
    fn a_big_alias_is_a_tree_of_about_root_n_groups_and_static_peers_go_direct() {
        let mut peers: Vec<Peer> = (0..299).map(|i| peer(i, "edgesense-agent")).collect();
        peers.push(peer(1000, "10.9.9.9"));
        let plan = tree(peers.clone(), Some("edgesense-agent"));
        assert_eq!(plan.iter().filter(|(p, _)| p.name == "10.9.9.9").count(), 1);
        assert!(
            plan.len() <= 19,
            "√299 heads and the static peer: {}",
            plan.len()
        );
        assert!(plan.iter().all(|(_, g)| g.len() <= 17));
        let mut reached: Vec<Peer> = plan
            .iter()
            .flat_map(|(p, g)| std::iter::once(p.clone()).chain(g.iter().cloned()))
            .collect();
        reached.sort();
        peers.sort();
        assert_eq!(reached, peers, "every peer exactly once");
        let small: Vec<Peer> = (0..TREE_FROM as u16)
            .map(|i| peer(i, "edgesense-agent"))
            .collect();
        assert!(tree(small, Some("edgesense-agent"))
            .iter()
            .all(|(_, g)| g.is_empty()));
    }

    #[test]
    fn relay_to_is_checked() {
        assert_eq!(
            parse_relay_to("10.0.1.2:9842, 10.0.1.3:9842")
                .unwrap()
                .len(),
            2
        );
        assert!(parse_relay_to("10.0.1.2:9842,evil.example:80").is_err());
        assert!(parse_relay_to(&vec!["10.0.0.1:1"; MAX_RELAY_TO + 1].join(",")).is_err());
    }

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
