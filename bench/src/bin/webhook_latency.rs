//! Webhook request → first LED pin write, on loopback.
//!
//! The agent runs in this process exactly as `edgesense-agent --simulate` does (the built-in
//! simulated node, a single-threaded tokio runtime, its HTTP server on 127.0.0.1), with the mock
//! GPIO that timestamps every pin write. A client thread posts Alertmanager payloads over one
//! keep-alive connection, alternating firing and resolved for a critical alert, so every post
//! changes the red LED (blink on, then off). The latency of a post is the time from just before
//! its first byte is written to the red pin's write.
//!
//! With `--tls` the agent serves HTTPS with a certificate of a fleet CA made for the run (as
//! `edgesense stack up` makes them) and the client speaks TLS to it (one handshake, then the
//! same keep-alive connection): the cost TLS adds to the webhook's way to a pin.
//!
//! `cargo run --release -p edgesense-bench --bin webhook-latency [-- --posts 10000] [--tls]`

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use edgesense_agent::{config, spec, Hardware};
use edgesense_bench::{arg, ms, quantile};
use edgesense_sensors::bus::gpio::MockGpio;
use edgesense_tests::payload::Alert;

const RED: u8 = 17;

fn body(i: usize) -> String {
    let status = if i % 2 == 0 { "firing" } else { "resolved" };
    // Each firing is a new incarnation (later startsAt), so it is not a stale re-delivery.
    let start = i / 2;
    let starts_at = format!(
        "2026-11-25T{:02}:{:02}:{:02}Z",
        start / 3600 % 24,
        start / 60 % 60,
        start % 60
    );
    let alert = Alert::new("Hot")
        .label("severity", "critical")
        .label("sensor", "room")
        .starts_at(&starts_at);
    match status {
        "firing" => alert.webhook(),
        _ => alert.resolved_at("2026-11-26T00:00:00Z").webhook(),
    }
}

/// A connection to read and write: plain TCP or TLS.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Reads one HTTP/1.1 response with a Content-Length body; returns the status.
fn read_response<S: Conn>(r: &mut BufReader<S>) -> u16 {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().expect("length");
            }
        }
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).expect("body");
    status
}

fn client<S: Conn>(
    addr: SocketAddr,
    stream: S,
    gpio: MockGpio,
    posts: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut r = BufReader::new(stream);
    let mut to_pin = Vec::with_capacity(posts);
    let mut rtt = Vec::with_capacity(posts);
    for i in 0..posts {
        let b = body(i);
        let req = format!(
            "POST /api/v1/alertmanager HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        let sent = Instant::now();
        r.get_mut().write_all(req.as_bytes()).expect("send");
        let status = read_response(&mut r);
        rtt.push(sent.elapsed());
        assert_eq!(status, 200, "post {i}");
        let want = if i % 2 == 0 { 1.0 } else { 0.0 };
        let deadline = Instant::now() + Duration::from_secs(5);
        let at = loop {
            if let Some(wr) = gpio.first_write_since(RED, sent) {
                assert_eq!(wr.drive.duty(), want, "post {i}: first write");
                break wr.at;
            }
            assert!(Instant::now() < deadline, "no pin write for post {i}");
            thread::yield_now();
        };
        to_pin.push(at - sent);
    }
    (to_pin, rtt)
}

fn main() {
    let posts: usize = arg("--posts")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let loaded =
        config::parse(Path::new("<bench>"), "listen = \"127.0.0.1:0\"\n".into()).expect("config");
    let spec = spec::resolve(
        &loaded,
        &spec::Overrides {
            simulate: true,
            ..Default::default()
        },
    )
    .expect("built-in node");
    let tls = std::env::args().any(|a| a == "--tls");
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = tls.then(|| edgesense_tests::TestFleet::new(dir.path(), "bench-token"));
    let creds = match &fleet {
        None => edgesense_agent::credentials::Credentials::none(),
        Some(f) => edgesense_agent::credentials::Credentials::load(
            &edgesense_agent::credentials::CredentialFiles {
                cert: Some(f.bundle().join("agent.pem")),
                ca: Some(f.bundle().join("ca.crt")),
                ..Default::default()
            },
        )
        .expect("the fleet's credentials"),
    };
    let client_tls = fleet.as_ref().map(|f| f.client(None));
    let gpio = MockGpio::new();
    let hw = Hardware::simulated(&spec, &gpio).expect("hardware");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (to_pin, rtt) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let creds = edgesense_agent::credentials::Shared::new(creds);
        let running = edgesense_agent::start(Arc::new(spec), hw, creds);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let g = gpio.clone();
        let client = thread::spawn(move || {
            let tcp = TcpStream::connect(addr).expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let r = match client_tls {
                None => client(addr, tcp, g, posts),
                Some(config) => {
                    let name =
                        rustls::pki_types::ServerName::try_from("edgesense-agent").expect("name");
                    let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
                    client(addr, rustls::StreamOwned::new(conn, tcp), g, posts)
                }
            };
            let _ = stop_tx.send(());
            r
        });
        edgesense_agent::serve(listener, running, async {
            let _ = stop_rx.await;
        })
        .await
        .expect("serve");
        client.join().expect("client")
    });
    let mut to_pin = to_pin;
    let mut rtt = rtt;
    to_pin.sort();
    rtt.sort();
    println!(
        "Webhook → first LED pin write, {posts} posts on loopback (one keep-alive connection{})\n",
        if tls { ", TLS 1.3" } else { "" }
    );
    println!("| figure | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("post → pin write", &to_pin),
        ("post → HTTP response", &rtt),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.9)),
            ms(quantile(v, 0.99)),
            ms(quantile(v, 1.0))
        );
    }
}
