//! Helpers for the end-to-end tests: start the real binaries on free loopback ports, wait for
//! them with deadlines, and talk plain HTTP/1.1 to them (no client library between the test and
//! the wire).

pub mod alerting;
pub mod backfill;
pub mod browser;
pub mod card;
pub mod docker;
pub mod fleet;
pub mod payload;
pub mod qemu;
pub mod remote;
pub mod tls;

pub use tls::{Endpoint, TestFleet};

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}

/// The `edgesense-agent` binary: `$EDGESENSE_AGENT_BIN`, else built once with cargo.
pub fn agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("EDGESENSE_AGENT_BIN", "edgesense-agent", "edgesense-agent"))
        .clone()
}

/// The operator CLI `edgesense`: `$EDGESENSE_BIN`, else built once with cargo.
pub fn cli_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("EDGESENSE_BIN", "edgesense", "edgesense"))
        .clone()
}

fn built_bin(env: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(workspace())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    target.join("debug").join(bin)
}

/// The sorted `"KEY=VALUE"` pairs of the objects in the array `v[list]` (`stack status
/// --json`'s nodes or agents): a fleet's state in one comparable line.
pub fn pairs(v: &serde_json::Value, list: &str, key: &str, value: &str) -> Vec<String> {
    let items = v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no array {list:?} in {v}"));
    let mut out: Vec<String> = items
        .iter()
        .map(|o| {
            let s = |k: &str| o[k].as_str().unwrap_or("?").to_owned();
            format!("{}={}", s(key), s(value))
        })
        .collect();
    out.sort();
    out
}

/// A negative check held over `window`: `f` is asked every 100 ms and must answer (`Some`) and
/// hold (`true`) every time, so "left alone" neither passes on a single early look nor on a
/// thing that does not answer. Panics with `what` and the answer that broke it.
pub fn holds<T: std::fmt::Debug>(
    what: &str,
    window: Duration,
    mut f: impl FnMut() -> Option<(bool, T)>,
) {
    let end = Instant::now() + window;
    let mut looks = 0;
    while Instant::now() < end || looks < 3 {
        match f() {
            Some((true, _)) => looks += 1,
            Some((false, seen)) => panic!("{what}: broken after {looks} looks: {seen:?}"),
            None => panic!("{what}: no answer after {looks} looks"),
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_or(what, limit, f, String::new)
}

/// [`wait_until`], with `why()` (a log, a state) in the panic when time is up.
pub fn wait_or<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    why: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}\n{}", why());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A running agent process, killed on drop.
pub struct Agent {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Starts the agent with `args` plus `--listen 127.0.0.1:0` (unless `args` has `--listen`),
    /// and waits for its "listening on" log line.
    pub fn start(args: &[&str]) -> Agent {
        let mut cmd = Command::new(agent_bin());
        cmd.args(args);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        Agent::spawn(cmd)
    }

    /// Starts an agent from a prepared command (another binary, under an emulator, …) that
    /// logs its "listening on" line, and waits for that line.
    pub fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let listening = line
                    .split("listening on http://")
                    .nth(1)
                    .or_else(|| line.split("listening on https://").nth(1));
                if let Some(addr) = listening {
                    let addr = addr
                        .split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .unwrap_or("");
                    let _ = tx.send(addr.parse::<SocketAddr>().ok());
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        // Under qemu a cold start takes a few seconds.
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(a)) => a,
            _ => {
                let _ = child.kill();
                panic!(
                    "agent did not report its address; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Agent { child, addr, log }
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], "")
    }

    pub fn put(&self, path: &str, token: Option<&str>, body: &str) -> Response {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        request(self.addr, "PUT", path, &headers, body)
    }

    /// The LED `name` as `GET /api/v1/leds` shows it.
    pub fn led(&self, name: &str) -> serde_json::Value {
        get_json(self.addr, "/api/v1/leds")["leds"]
            .as_array()
            .and_then(|leds| leds.iter().find(|l| l["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no LED {name}"))
    }

    /// A simulated agent's mock GPIO writes to `pin` after `since_ms` (agent clock, ms since it
    /// started): (at_ms, duty).
    pub fn gpio_writes(&self, pin: u64, since_ms: f64) -> Vec<(f64, f64)> {
        get_json(self.addr, &format!("/api/v1/sim/gpio?since_ms={since_ms}"))["writes"]
            .as_array()
            .expect("writes")
            .iter()
            .filter(|w| w["pin"] == pin)
            .filter_map(|w| Some((w["at_ms"].as_f64()?, w["duty"].as_f64()?)))
            .collect()
    }

    /// The simulated agent's clock: ms since it started.
    pub fn now_ms(&self) -> f64 {
        get_json(self.addr, "/api/v1/sim/gpio?since_ms=1e300")["now_ms"]
            .as_f64()
            .expect("now_ms")
    }

    /// Holds simulated sensor `sensor` at `value` (through the sim API, with `token`).
    pub fn set_sim(&self, sensor: &str, value: f64, token: Option<&str>) {
        let r = self.put(
            &format!("/api/v1/sim/sensors/{sensor}"),
            token,
            &format!("{{\"value\":{value}}}"),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// The value of `series` (a name with its labels, as exposed) in the agent's `/metrics`;
    /// panics if it is not there.
    pub fn metric(&self, series: &str) -> f64 {
        let m = self.get("/metrics").body;
        metric(&m, series).unwrap_or_else(|| panic!("no {series} in {m}"))
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; 10 s timeouts.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// [`request`], with connection errors returned instead of panicking.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&raw_request(addr, method, path, headers, body.as_bytes()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::other("incomplete HTTP response"));
    }
    Ok(parse_response(&raw))
}

/// The bytes of one HTTP/1.1 request with `Connection: close`.
fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    req
}

/// `w1_slave` as the kernel's w1_therm writes it for `milli` m°C: the scratchpad bytes with the
/// CRC verdict, then the same bytes with `t=`.
pub fn w1_slave(milli: i64, crc_ok: bool) -> String {
    let raw = (milli * 16 / 1000) as i16 as u16;
    let bytes = format!("{:02x} {:02x} 4b 46 7f ff 0c 10 1c", raw & 0xff, raw >> 8);
    let verdict = if crc_ok { "YES" } else { "NO" };
    format!("{bytes} : crc=1c {verdict}\n{bytes} t={milli}\n")
}

/// Writes `content` to `root/rel`, creating directories: a file of a fake sysfs tree.
pub fn put_file(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a relative path with a parent"))
        .expect("create directories");
    std::fs::write(p, content).expect("write file");
}

/// `%XX`-escapes `s` for a query string.
pub fn http_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Posts `body` (a JSON array of alerts, API v2) to Alertmanager at `am`, as Prometheus does on
/// every evaluation, asserting 200.
pub fn post_alerts(am: &Endpoint, body: &str) {
    let r = am.request(
        "POST",
        "/api/v2/alerts",
        &["Content-Type: application/json"],
        body,
    );
    assert_eq!(r.status, 200, "POST /api/v2/alerts: {}", r.body);
}

/// `GET path` as JSON, asserting 200.
pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = request(addr, "GET", path, &[], "");
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it first,
/// which on a test machine does not happen in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// A background process (Prometheus, Alertmanager, …) whose output is kept, killed on drop.
pub struct Daemon {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `cmd`, collecting its stdout and stderr lines.
    pub fn start(name: &str, mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let sink = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Daemon {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Waits until `GET path` at `at` answers 200 (at most `limit`), or the process exits.
    pub fn wait_ready(&mut self, at: &Endpoint, path: &str, limit: Duration) {
        let name = self.name.clone();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = at.try_request("GET", path, &[], "") {
                if r.status == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready at {at:?}{path} after {limit:?}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM (a clean shutdown: Alertmanager writes its silences
    /// snapshot) and waits for it, at most 30 s.
    pub fn terminate(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// The value of the series `series` (name with labels, as exposed) in a metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Finds a program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// An RFC 3339 time (Docker's `StartedAt`) as seconds since the epoch.
pub fn unix_seconds(t: &str) -> f64 {
    let o = std::process::Command::new("date")
        .args(["-d", t, "+%s.%N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}
