//! Headless Chromium driven by playwright-core (tests/browser/, installed by tests/run.sh with
//! `npm ci`), and the cluster dashboard it looks at. Screenshots are kept in
//! target/test-artifacts/.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{cli_bin, free_port, workspace, Daemon, Endpoint};

/// Where screenshots go; kept after the run.
pub fn artifacts() -> PathBuf {
    let dir = workspace().join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs `tests/browser/<script>` with `args`; panics with its output unless it passes. Its
/// standard output.
pub fn run_browser(script: &str, args: &[&str]) -> String {
    let dir = workspace().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core missing: tests/run.sh runs `npm ci` in tests/browser"
    );
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("node (Debian's nodejs)");
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tests/browser/fleet-dashboard.mjs over the cluster dashboard at `url` with `nodes` nodes and
/// `options` (`--expect`, `--select`, …): its measurements (the JSON line it prints), after
/// its screenshots `<prefix>-1280.png` and `<prefix>-390.png` are checked to be there.
pub fn fleet_dashboard(
    url: &str,
    nodes: usize,
    prefix: &Path,
    options: &[&str],
) -> serde_json::Value {
    let shots = prefix.to_str().expect("a UTF-8 path");
    let n = nodes.to_string();
    let mut args = vec![url, &n, shots];
    args.extend(options);
    let out = run_browser("fleet-dashboard.mjs", &args);
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("a JSON line of measurements in {out}"));
    let m: serde_json::Value = serde_json::from_str(line).expect("JSON measurements");
    for width in [1280, 390] {
        assert!(
            png(&PathBuf::from(format!("{shots}-{width}.png"))),
            "{shots}-{width}.png"
        );
    }
    m
}

pub fn png(p: &PathBuf) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG"))
}

/// `edgesense dashboard` over `prometheus` and `alertmanager` (https URLs, verified against the
/// CA in `ca`, logged in with the operator's password in `password`) on a free loopback port;
/// its URL.
pub fn dashboard(
    prometheus: &str,
    alertmanager: &str,
    ca: &Path,
    password: &Path,
) -> (Daemon, String) {
    let port = free_port();
    let mut cmd = Command::new(cli_bin());
    cmd.args([
        "dashboard",
        "--prometheus",
        prometheus,
        "--alertmanager",
        alertmanager,
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--ca-file")
    .arg(ca)
    .arg("--web-password-file")
    .arg(password);
    let mut d = Daemon::start("edgesense dashboard", cmd);
    d.wait_ready(
        &Endpoint::plain(([127, 0, 0, 1], port).into()),
        "/",
        std::time::Duration::from_secs(20),
    );
    (d, format!("http://127.0.0.1:{port}/"))
}
