//! `edgesense-agent --with-overlay-address NAME:PORT -- PROGRAM ARGS…`: runs PROGRAM with
//! `--cluster.advertise-address=IP:PORT` added, IP being this container's address on the
//! overlay. The stack's Alertmanager pair needs it: a swarm task's default route goes through
//! `docker_gwbridge`, so the address Alertmanager picks by itself (the private IP with the
//! default route) is the bridge's 172.18.x.y, which the peer on another manager cannot reach:
//! the pair would flap. The FROM-scratch images have no shell to work the address out, but they
//! carry this binary (as `/bin/edgesense-probe`).
//!
//! NAME is an address inside the overlay (`stack up` gives its gateway), or a name there. A
//! UDP socket "connected" to it (no packet is sent) has as its local address the one the
//! kernel would send from towards the overlay: this task's overlay address. An address needs no
//! DNS, which matters: Docker's DNS lists a task that has a health check only once it is
//! healthy, so Alertmanagers resolving each other's alias at start wait for each other (seen:
//! both gave up after 20 s and advertised docker_gwbridge's 172.17.0.x).

use std::{
    net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket},
    time::{Duration, Instant},
};

/// How long NAME may take to resolve (Docker's DNS learns a new task within a second or two).
const RESOLVE_FOR: Duration = Duration::from_secs(20);

/// The local address a datagram to `peer` would leave from.
pub fn source_towards(peer: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match peer {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(bind)?;
    s.connect((peer, 9))?;
    Ok(s.local_addr()?.ip())
}

/// This task's address on the network where `name:port` resolves, retried for a while.
pub fn overlay_address(name_port: &str) -> Result<SocketAddr, String> {
    let (_, port) = name_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--with-overlay-address {name_port}: write NAME:PORT"))?;
    let deadline = Instant::now() + RESOLVE_FOR;
    loop {
        let found = name_port
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|mut a| {
                a.find(SocketAddr::is_ipv4)
                    .ok_or_else(|| "no IPv4 address".to_owned())
            });
        match found {
            Ok(peer) => {
                let ip = source_towards(peer.ip()).map_err(|e| format!("route to {peer}: {e}"))?;
                return Ok(SocketAddr::new(ip, port));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("resolve {name_port}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Replaces this process with `command` plus `--cluster.advertise-address=…`; returns only if
/// that fails.
pub fn exec_with(name_port: &str, command: &[String]) -> String {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return "--with-overlay-address needs the program to run after --".into();
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    match overlay_address(name_port) {
        Ok(addr) => {
            eprintln!("advertising {addr} (this task on the overlay)");
            cmd.arg(format!("--cluster.advertise-address={addr}"));
        }
        // Better a cluster that may not form than no Alertmanager at all.
        Err(e) => eprintln!("warning: {e}; starting without --cluster.advertise-address"),
    }
    format!("exec {program}: {}", cmd.exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_towards_a_peer_is_this_hosts_address_on_that_network() {
        // Loopback stands in for the overlay: towards 127.0.0.1 the source is 127.0.0.1.
        assert_eq!(
            source_towards([127, 0, 0, 1].into()).unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            overlay_address("localhost:9094").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9094))
        );
        assert!(overlay_address("localhost")
            .unwrap_err()
            .contains("NAME:PORT"));
    }

    #[test]
    fn without_a_program_it_says_so() {
        assert!(exec_with("localhost:9094", &[]).contains("needs the program"));
    }
}
