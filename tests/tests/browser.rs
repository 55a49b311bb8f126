//! The pages in a real browser: Debian's Chromium, headless, driven by playwright-core from npm
//! (tests/browser/, installed by tests/run.sh with `npm ci`). Screenshots are kept in
//! target/test-artifacts/.

use std::{path::PathBuf, process::Command};

use edgesense_tests::{workspace, Agent};

/// Where screenshots go; kept after the run.
fn artifacts() -> PathBuf {
    let dir = workspace().join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs `tests/browser/<script>` with `args`; panics with its output unless it passes.
pub fn run_browser(script: &str, args: &[&str]) {
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
}

fn png(p: &PathBuf) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG"))
}

#[test]
fn node_page_shows_sensors_follows_changes_and_drives_leds() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "browser-token-77\n").unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"pi-browser\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--simulate", "--config", cfg.to_str().unwrap()]);
    let shot = artifacts().join("node-page.png");
    let _ = std::fs::remove_file(&shot);
    run_browser(
        "node-page.mjs",
        &[
            &format!("http://{}/", agent.addr),
            "browser-token-77",
            shot.to_str().unwrap(),
        ],
    );
    assert!(png(&shot), "screenshot saved at {}", shot.display());
    assert!(png(&artifacts().join("node-page-phone.png")));
    // The page asked for the token and used it: the LED was set through the authenticated API.
    let leds = agent.get("/api/v1/leds").json();
    let amber = leds["leds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "amber")
        .unwrap()
        .clone();
    assert_eq!(amber["mode"], "blink", "{amber}");
}
