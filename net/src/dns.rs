//! Every A record of a name, asked over TCP of the resolvers in /etc/resolv.conf.
//!
//! Two limits meet at a fleet's alias (one A record per agent): Docker's embedded DNS
//! (127.0.0.11 in a container) truncates a UDP answer at 512 bytes (15 A records of
//! `edgesense-agent` measured here, 498 bytes, TC set; the TCP answer had all 30), and musl's
//! `getaddrinfo` (the static agent's resolver) returns at most 48 addresses (`MAXADDRS`) even
//! after its TCP retry. So the relay asks for the alias itself: one query over TCP, every A
//! record of the answer, no cap but the 64 KiB of a DNS message.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// Connect, send and read, per resolver.
const TIMEOUT: Duration = Duration::from_secs(3);
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no nameserver in /etc/resolv.conf")]
    NoResolver,
    #[error("{0} is not a host name")]
    BadName(String),
    #[error("{server}: {reason}")]
    Server { server: SocketAddr, reason: String },
}

/// The nameservers of a resolv.conf (port 53).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Every A record of `name`, from the first resolver of /etc/resolv.conf that answers.
pub async fn lookup_a(name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers = nameservers(&conf);
    if servers.is_empty() {
        return Err(DnsError::NoResolver);
    }
    let query = query(name, 0x4553)?;
    let mut last = DnsError::NoResolver;
    for server in servers {
        match timeout(TIMEOUT, ask(server, &query)).await {
            Ok(Ok(answer)) => match parse_a(&answer, 0x4553) {
                Ok(v) => return Ok(v),
                Err(reason) => last = DnsError::Server { server, reason },
            },
            Ok(Err(e)) => {
                last = DnsError::Server {
                    server,
                    reason: e.to_string(),
                }
            }
            Err(_) => {
                last = DnsError::Server {
                    server,
                    reason: "timed out".into(),
                }
            }
        }
    }
    Err(last)
}

/// One DNS message over TCP (RFC 1035 4.2.2: a two-byte length before each).
async fn ask(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&(query.len() as u16).to_be_bytes());
    out.extend_from_slice(query);
    s.write_all(&out).await?;
    let len = s.read_u16().await? as usize;
    let mut answer = vec![0; len];
    s.read_exact(&mut answer).await?;
    Ok(answer)
}

/// A query for the A records of `name`, recursion desired.
pub fn query(name: &str, id: u16) -> Result<Vec<u8>, DnsError> {
    let bad = || DnsError::BadName(name.to_owned());
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(bad());
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    if q.len() > 12 + 254 {
        return Err(bad());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_A.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// The A records of an answer to query `id` (no such name: none).
pub fn parse_a(m: &[u8], id: u16) -> Result<Vec<Ipv4Addr>, String> {
    let u16_at = |i: usize| -> Result<u16, String> {
        m.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "answer cut short".to_owned())
    };
    if u16_at(0)? != id {
        return Err("answer to another query".into());
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err("not an answer".into());
    }
    match flags & 0x000f {
        0 => {}
        3 => return Ok(Vec::new()),
        rcode => return Err(format!("server failure (rcode {rcode})")),
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(m, at)? + 4;
    }
    let mut out = Vec::with_capacity(answers as usize);
    for _ in 0..answers {
        at = skip_name(m, at)?;
        let (kind, class, len) = (u16_at(at)?, u16_at(at + 2)?, u16_at(at + 8)? as usize);
        let data = m
            .get(at + 10..at + 10 + len)
            .ok_or_else(|| "answer cut short".to_owned())?;
        if kind == TYPE_A && class == CLASS_IN && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(out)
}

/// The offset after the name at `at` (labels, ending in a zero byte or a pointer).
fn skip_name(m: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *m.get(at).ok_or("answer cut short")? as usize;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l if l < 64 => at += 1 + l,
            _ => return Err("bad name in answer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as Docker's DNS gives it: the question, then `n` A records whose names point
    /// back at it.
    fn answer(id: u16, n: u8) -> Vec<u8> {
        let q = query("edgesense-agent", id).unwrap();
        let mut m = q.clone();
        m[2] = 0x81;
        m[3] = 0x80;
        m[6..8].copy_from_slice(&u16::from(n).to_be_bytes());
        for i in 0..n {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 2, 88, 0, 4, 10, 0, 1, i]);
        }
        m
    }

    #[test]
    fn every_a_record_of_a_long_answer() {
        let got = parse_a(&answer(7, 200), 7).unwrap();
        assert_eq!(got.len(), 200, "beyond musl's 48 and UDP's 512 bytes");
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(got[199], Ipv4Addr::new(10, 0, 1, 199));
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        let m = answer(7, 3);
        assert!(parse_a(&m, 8).is_err(), "another id");
        for cut in 0..m.len() {
            let _ = parse_a(&m[..cut], 7);
        }
        assert!(parse_a(&m[..m.len() - 2], 7).is_err());
        let mut nx = answer(7, 0);
        nx[3] = 0x83;
        assert_eq!(parse_a(&nx, 7).unwrap(), Vec::<Ipv4Addr>::new());
        let mut fail = answer(7, 0);
        fail[3] = 0x82;
        assert!(parse_a(&fail, 7).is_err());
    }

    #[test]
    fn names_and_resolvers() {
        assert!(query("a..b", 1).is_err());
        assert!(query(&"x".repeat(64), 1).is_err());
        assert_eq!(
            nameservers("# docker\nnameserver 127.0.0.11\noptions ndots:0\nnameserver ::1\n"),
            [
                "127.0.0.11:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
