//! The overlay's address range. Docker gives an overlay a /24 from its address pool unless told
//! otherwise: 256 addresses, less the network, broadcast and gateway addresses and one load
//! balancer endpoint per node, so about 250 containers across the whole fleet. The next agent's
//! `docker start` fails with "attaching to network failed … context deadline exceeded"
//! (measured: 248 agents, Prometheus and Alertmanager on a 3-node swarm). `stack up` creates
//! the network with a /20 (4 093 addresses) instead.

use std::net::Ipv4Addr;

use crate::error::{Result, StackError};

/// The size `stack up` gives a network it creates.
pub const PREFIX: u8 = 20;

/// Where `stack up` looks for a free /20 when no `--subnet` is given: 10.128.0.0/12, away from
/// Docker's own pool, which hands out /24s from 10.0.0.0 upward.
const POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 128, 0, 0), 12);

/// An IPv4 network: its first address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Net {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Net {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Parses `a.b.c.d/p`; `None` for anything else or host bits set.
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = s.trim().split_once('/')?;
        let base: Ipv4Addr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32)?;
        (u32::from(base) & !Self::mask(prefix) == 0).then_some(Net { base, prefix })
    }

    pub fn overlaps(&self, other: &Net) -> bool {
        let m = Self::mask(self.prefix.min(other.prefix));
        u32::from(self.base) & m == u32::from(other.base) & m
    }

    /// Containers it holds across the fleet, less `nodes` load balancer endpoints (one per node
    /// with a task or an attached container on it).
    pub fn room(&self, nodes: usize) -> u64 {
        (1u64 << (32 - u32::from(self.prefix))).saturating_sub(3 + nodes as u64)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// `--subnet`: an IPv4 network between /8 and /24 (a /24 is Docker's own default, the smallest
/// that makes sense).
pub fn parse_flag(s: &str) -> Result<Net> {
    Net::parse(s)
        .filter(|n| (8..=24).contains(&n.prefix))
        .ok_or_else(|| {
            StackError::Input(format!(
                "--subnet {s}: write an IPv4 network from /8 to /24 with its host bits zero, e.g. 10.128.0.0/20 (4 093 addresses)"
            ))
        })
}

/// The first /20 of the pool that overlaps none of `taken` (the subnets of the networks Docker
/// has already).
pub fn free(taken: &[Net]) -> Option<Net> {
    let (pool, bits) = POOL;
    let step = 1u32 << (32 - u32::from(PREFIX));
    (0..1u32 << (PREFIX - bits))
        .map(|i| Net {
            base: Ipv4Addr::from(u32::from(pool) + i * step),
            prefix: PREFIX,
        })
        .find(|n| !taken.iter().any(|t| t.overlaps(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        Net::parse(s).unwrap()
    }

    #[test]
    fn parses_networks_and_refuses_host_bits_and_junk() {
        assert_eq!(
            net("10.128.0.0/20"),
            Net {
                base: Ipv4Addr::new(10, 128, 0, 0),
                prefix: 20
            }
        );
        for bad in [
            "10.128.0.1/20",
            "10.128.0.0",
            "10.128.0.0/33",
            "x/20",
            "10.0.0.0/",
        ] {
            assert_eq!(Net::parse(bad), None, "{bad}");
        }
        assert!(
            parse_flag("10.0.0.0/25").is_err(),
            "smaller than Docker's own /24"
        );
        assert!(parse_flag("10.0.0.0/7").is_err());
        assert!(parse_flag("192.168.64.0/18").is_ok());
    }

    #[test]
    fn overlap_either_way_and_room() {
        assert!(net("10.128.0.0/20").overlaps(&net("10.128.15.0/24")));
        assert!(net("10.128.15.0/24").overlaps(&net("10.128.0.0/20")));
        assert!(!net("10.128.0.0/20").overlaps(&net("10.128.16.0/24")));
        assert!(net("10.0.0.0/8").overlaps(&net("10.200.0.0/16")));
        // Docker's /24 on the 3-node swarm that broke: 250 containers.
        assert_eq!(net("10.0.4.0/24").room(3), 250);
        assert_eq!(net("10.128.0.0/20").room(3), 4090);
    }

    #[test]
    fn the_first_free_slash_20_of_the_pool() {
        assert_eq!(free(&[]), Some(net("10.128.0.0/20")));
        // Docker's own /24s (ingress, other overlays) are far below; a taken /20 and a /24
        // inside the next are skipped.
        let taken = [
            net("10.0.0.0/24"),
            net("10.0.1.0/24"),
            net("10.128.0.0/20"),
            net("10.128.20.0/24"),
        ];
        assert_eq!(free(&taken), Some(net("10.128.32.0/20")));
        assert_eq!(free(&[net("10.128.0.0/12")]), None, "the whole pool taken");
        assert_eq!(free(&[net("0.0.0.0/0")]), None);
    }
}
