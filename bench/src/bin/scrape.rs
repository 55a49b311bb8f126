//! Small measurements for bench/run.sh, printed as `key value` lines:
//!
//! - `scrape URL N`: N sequential GETs on one keep-alive connection; prints the count and the
//!   total seconds (so the caller can read the process's CPU time around it).
//! - `coldstart RUNS CMD ARGS…`: starts CMD (with `{port}` in ARGS replaced by a free port) RUNS
//!   times and measures spawn → first `GET /metrics` answered 200; prints the median and the
//!   spread in ms.
//! - `tls URL N CA`: `scrape` over one TLS connection (`https://`), the server checked against
//!   CA for `edgesense-agent`.
//! - `handshakes URL N CA`: N GETs, each on a new TLS connection (a full handshake each, no
//!   session resumption: what a Prometheus scrape of a restarted agent costs).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A connection to read and write: plain TCP or TLS.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// One keep-alive GET; returns the status.
fn get<S: Conn>(s: &mut BufReader<S>, host: &str, path: &str) -> std::io::Result<u16> {
    write!(s.get_mut(), "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
    let mut line = String::new();
    s.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        s.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            s.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut buf = vec![0; n + 2];
            s.read_exact(&mut buf)?;
            if n == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0; len];
        s.read_exact(&mut buf)?;
    }
    Ok(status)
}

fn split_url(url: &str) -> (String, String) {
    let rest = url
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (
        host.to_owned(),
        if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    )
}

/// A TLS client trusting only the CA in `ca` (a fresh config: no session to resume).
fn tls_stream(host: &str, ca: &str) -> impl Conn {
    let pem = std::fs::read(ca).expect("read the CA");
    let config = edgesense_tests::tls::client_config(&pem, None);
    let tcp = TcpStream::connect(host).expect("connect");
    tcp.set_nodelay(true).ok();
    let name = rustls::pki_types::ServerName::try_from("edgesense-agent").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
    rustls::StreamOwned::new(conn, tcp)
}

fn scrape(url: &str, n: usize) {
    let (host, _) = split_url(url);
    let stream = TcpStream::connect(&host).expect("connect");
    stream.set_nodelay(true).ok();
    scrape_on(url, n, stream);
}

fn scrape_on<S: Conn>(url: &str, n: usize, stream: S) {
    let (host, path) = split_url(url);
    let mut s = BufReader::new(stream);
    let t0 = Instant::now();
    for i in 0..n {
        let status = get(&mut s, &host, &path).expect("scrape");
        assert_eq!(status, 200, "scrape {i}");
    }
    println!("scrapes {n}");
    println!("seconds {:.6}", t0.elapsed().as_secs_f64());
}

fn handshakes(url: &str, n: usize, ca: &str) {
    let (host, path) = split_url(url);
    let t0 = Instant::now();
    for i in 0..n {
        let mut s = BufReader::new(tls_stream(&host, ca));
        let status = get(&mut s, &host, &path).expect("scrape");
        assert_eq!(status, 200, "scrape {i}");
    }
    println!("handshakes {n}");
    println!("seconds {:.6}", t0.elapsed().as_secs_f64());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn coldstart(runs: usize, cmd: &[String]) {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let port = free_port();
        let args: Vec<String> = cmd[1..]
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let t0 = Instant::now();
        let mut child = Command::new(&cmd[0])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                let mut s = BufReader::new(stream);
                if get(&mut s, &addr.to_string(), "/metrics").ok() == Some(200) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no answer within 10 s");
            std::thread::sleep(Duration::from_micros(500));
        }
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let _ = child.kill();
        let _ = child.wait();
    }
    ms.sort_by(f64::total_cmp);
    println!("runs {runs}");
    println!("median_ms {:.2}", ms[ms.len() / 2]);
    println!("min_ms {:.2}", ms[0]);
    println!("max_ms {:.2}", ms[ms.len() - 1]);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("scrape") if args.len() == 3 => scrape(&args[1], args[2].parse().expect("N")),
        Some("tls") if args.len() == 4 => {
            let (host, _) = split_url(&args[1]);
            scrape_on(
                &args[1],
                args[2].parse().expect("N"),
                tls_stream(&host, &args[3]),
            )
        }
        Some("handshakes") if args.len() == 4 => {
            handshakes(&args[1], args[2].parse().expect("N"), &args[3])
        }
        Some("coldstart") if args.len() >= 3 => {
            coldstart(args[1].parse().expect("RUNS"), &args[2..])
        }
        _ => {
            eprintln!("usage: scrape scrape URL N | scrape tls URL N CA | scrape handshakes URL N CA | scrape coldstart RUNS CMD ARGS…");
            std::process::exit(2);
        }
    }
}
