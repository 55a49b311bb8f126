//! The real `edgesense-agent` binary: config errors and exit codes, a scrape checked by Debian's
//! `promtool`, auth with a token file, and SIGTERM handling.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use edgesense_tests::{agent_bin, metric, wait_until, which, Agent};

fn run_agent(args: &[&str]) -> (i32, String) {
    let out = Command::new(agent_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn config_errors_exit_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = write_config(
        &dir,
        "unknown.toml",
        "listen = \"127.0.0.1:0\"\n[[led]]\nname = \"red\"\npin = 17\nblink = true\n",
    );
    let (code, err) = run_agent(&["--config", &unknown]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{unknown}:5:1:")),
        "names file:line:col: {err}"
    );
    assert!(err.contains("unknown field `blink`"), "{err}");
    assert!(
        err.contains("expected one of"),
        "says what would be valid: {err}"
    );

    let wrong_type = write_config(
        &dir,
        "type.toml",
        "[[led]]\nname = \"red\"\npin = 17\nactive_low = \"yes\"\n",
    );
    let (code, err) = run_agent(&["--config", &wrong_type, "--simulate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{wrong_type}:4:")), "{err}");
    assert!(err.contains("bool"), "{err}");

    let (code, err) = run_agent(&["--config", "/nonexistent/node.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/nonexistent/node.toml") && err.contains("cannot read"),
        "{err}"
    );

    let (code, err) = run_agent(&[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--simulate"), "suggests a way to start: {err}");

    let (code, err) = run_agent(&["--simulate", "--listen", "nonsense"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn simulated_node_scrape_passes_promtool() {
    let agent = Agent::start(&["--simulate"]);
    let text = wait_until(
        "all four simulated sensors up",
        Duration::from_secs(20),
        || {
            let r = agent.get("/metrics");
            let up = ["room", "outside"]
                .iter()
                .map(|s| format!("edgesense_sensor_up{{kind=\"ds18b20\",sensor=\"{s}\"}}"))
                .chain([
                    "edgesense_sensor_up{kind=\"thermal\",sensor=\"soc\"}".into(),
                    "edgesense_sensor_up{kind=\"bme280\",sensor=\"env\"}".into(),
                ])
                .all(|s| metric(&r.body, &s) == Some(1.0));
            (r.status == 200 && up).then_some(r.body)
        },
    );
    for name in [
        "edgesense_temperature_celsius{kind=\"ds18b20\",sensor=\"room\"}",
        "edgesense_humidity_ratio{kind=\"bme280\",sensor=\"env\"}",
        "edgesense_pressure_pascals{kind=\"bme280\",sensor=\"env\"}",
        "edgesense_led_on{led=\"green\"}",
        "edgesense_alerts_active{severity=\"critical\"}",
    ] {
        assert!(metric(&text, name).is_some(), "missing {name}");
    }
    assert!(text.contains("edgesense_node_info{"), "node info");
    assert!(text.contains("edgesense_build_info{"), "build info");
    assert!(text.contains("edgesense_sensor_read_duration_seconds{"));

    let promtool = which("promtool")
        .expect("promtool on PATH (tests/run.sh installs Debian's prometheus package)");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}"
    );
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );

    // promtool does see problems: feed it a broken exposition to prove the check can fail.
    let mut child = Command::new(which("promtool").unwrap())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# TYPE bad_metric counter\nbad_metric 1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "promtool fails a counter without _total"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("_total"),
        "and says why"
    );
}

#[test]
fn token_file_guards_writes() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ps3cret\n").unwrap();
    let cfg = write_config(
        &dir,
        "node.toml",
        &format!("token_file = {:?}\n", token.to_str().unwrap()),
    );
    let agent = Agent::start(&["--simulate", "--config", &cfg]);
    let body = r#"{"mode":"on"}"#;
    let r = agent.put("/api/v1/leds/amber", None, body);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    assert_eq!(
        agent.put("/api/v1/leds/amber", Some("wrong"), body).status,
        401
    );
    assert_eq!(
        agent.get("/api/v1/leds").json()["leds"][1]["mode"],
        "off",
        "unchanged"
    );
    let r = agent.put("/api/v1/leds/amber", Some("t0ps3cret"), body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(agent.get("/api/v1/leds").json()["leds"][1]["mode"], "on");
    assert!(
        !agent.log().contains("t0ps3cret"),
        "the token is never logged: {}",
        agent.log()
    );

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let cfg = write_config(
        &dir,
        "empty.toml",
        &format!("token_file = {:?}\n", empty.to_str().unwrap()),
    );
    let (code, err) = run_agent(&["--simulate", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn without_a_token_the_agent_does_not_serve_the_network() {
    // An explicit open address, on the command line or in the file: refused, with the way out.
    let (code, err) = run_agent(&["--simulate", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("without a token") && err.contains("--allow-anonymous-writes"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, "open.toml", "node = \"n\"\nlisten = \"0.0.0.0:0\"\n");
    let (code, err) = run_agent(&["--simulate", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("open.toml:2:10"), "names the line: {err}");
    // Asked for: it serves the network, and says what that gives away.
    let agent = Agent::start(&[
        "--simulate",
        "--listen",
        "0.0.0.0:0",
        "--allow-anonymous-writes",
    ]);
    wait_until("the open API's warning", Duration::from_secs(10), || {
        agent.log().contains("anyone who reaches").then_some(())
    });
    // With a token beyond loopback but no certificate: it warns that things cross in clear.
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").unwrap();
    let agent = Agent::start(&[
        "--simulate",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    wait_until(
        "the warning about clear text",
        Duration::from_secs(10),
        || agent.log().contains("in clear").then_some(()),
    );
}

#[test]
fn sigterm_switches_leds_off_and_exits_0_within_a_second() {
    let mut agent = Agent::start(&["--simulate"]);
    assert_eq!(
        agent
            .put(
                "/api/v1/leds/red",
                None,
                r#"{"mode":"blink","period_ms":100}"#
            )
            .status,
        200
    );
    // An open event stream must not hold up the exit.
    let stream = std::net::TcpStream::connect(agent.addr).unwrap();
    (&stream)
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(1));
    let took = t0.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("still running 1 s after SIGTERM; log:\n{}", agent.log()));
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    assert!(took < Duration::from_secs(1), "{took:?}");
    wait_until("the exit log line", Duration::from_secs(2), || {
        agent.log().contains("LEDs off").then_some(())
    });
    drop(stream);
}

#[test]
fn sigint_also_exits_0() {
    let mut agent = Agent::start(&["--simulate"]);
    agent.signal(libc::SIGINT);
    let status = agent
        .wait_exit(Duration::from_secs(1))
        .expect("exits within 1 s");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn json_logs_are_json_lines() {
    let agent = Agent::start(&["--simulate", "--log-format", "json"]);
    assert_eq!(
        agent
            .put("/api/v1/leds/red", None, r#"{"mode":"on"}"#)
            .status,
        200
    );
    let log = wait_until("the LED log line", Duration::from_secs(5), || {
        let l = agent.log();
        l.contains("LED set through the API").then_some(l)
    });
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

#[test]
fn events_stream_sends_a_snapshot_at_once() {
    let agent = Agent::start(&["--simulate"]);
    let mut s = std::net::TcpStream::connect(agent.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let text = wait_until("a snapshot event", Duration::from_secs(10), || {
        let n = std::io::Read::read(&mut s, &mut buf).ok()?;
        got.extend_from_slice(&buf[..n]);
        let t = String::from_utf8_lossy(&got).into_owned();
        (t.contains("event: snapshot") && t.contains("\"leds\"")).then_some(t)
    });
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{text}"
    );
}
