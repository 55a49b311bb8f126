//! `stack/assets/node/start-again.sh`, the script the systemd unit
//! `edgesense-agent-start-again@.service` runs when docker starts, against the real test dockerd.
//!
//! The state it repairs: dockerd tried to start an agent container and failed (after a dockerd
//! restart, a container on an attachable overlay network can lose the race with the swarm's
//! cleanup, moby/moby#32607), and the restart policy never retries. The test makes that state for
//! real, without the race: the container's network is removed, `docker start` fails with
//! "network … not found" and dockerd records the error; the script keeps starting it until the
//! network is back. A container stopped on purpose is left alone.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use edgesense_tests::docker::{docker, docker_host, docker_output, start_again};

fn state(name: &str) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.Error}}",
        name,
    ])
    .trim()
    .to_owned()
}

/// Removes the test's containers and network, also when an assertion failed.
struct Cleanup(&'static str, [&'static str; 2]);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.1 {
            let _ = docker_output(&["rm", "-f", c]);
        }
        let _ = docker_output(&["network", "rm", self.0]);
    }
}

#[test]
fn a_container_dockerd_failed_to_start_is_started_again_and_a_stopped_one_left_alone() {
    let _dockerd = edgesense_tests::docker::hold();
    let (net, failed, stopped) = (
        "es-start-again",
        "es-start-again-failed",
        "es-start-again-stopped",
    );
    let _cleanup = Cleanup(net, [failed, stopped]);
    for c in [failed, stopped] {
        let _ = docker_output(&["rm", "-f", c]);
    }
    let _ = docker_output(&["network", "rm", net]);
    docker(&["network", "create", net]);
    for c in [failed, stopped] {
        docker(&[
            "run",
            "--detach",
            "--name",
            c,
            "--network",
            net,
            "--restart",
            "unless-stopped",
            "edgesense/agent:local",
            "--simulate",
            "--listen",
            "127.0.0.1:9842",
        ]);
    }
    docker(&["stop", failed, stopped]);

    // Stopped on purpose: no start error, so the script waits its time and leaves it stopped.
    assert_eq!(state(stopped), "false");
    let out = start_again()
        .arg(stopped)
        .env("START_AGAIN_WAIT", "2")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("left stopped"), "{text}");
    assert_eq!(state(stopped), "false");
    // No container: nothing to do.
    let out = start_again().arg("es-start-again-none").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no such container"));

    // A start that fails: the network is gone, dockerd records the error.
    docker(&["network", "rm", net]);
    assert!(!docker_output(&["start", failed]).status.success());
    let failed_state = state(failed);
    assert!(
        // "network … not found"; in swarm mode (another test may have initialised it) dockerd
        // asks the swarm: "Could not attach to network …: … not found".
        failed_state.starts_with("false ") && failed_state.contains("not found"),
        "{failed_state}"
    );

    // `edgesense doctor` names the start error and the fix.
    let doc = Command::new(edgesense_tests::cli_bin())
        .args(["doctor", "--json", "--container", failed])
        .env("DOCKER_HOST", docker_host())
        .output()
        .unwrap();
    assert_eq!(doc.status.code(), Some(1));
    let checks: serde_json::Value = serde_json::from_slice(&doc.stdout).unwrap();
    let agent = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "agent container")
        .unwrap()
        .clone();
    assert_eq!(agent["status"], "fail", "{agent}");
    let detail = agent["detail"].as_str().unwrap();
    assert!(
        detail.contains("start failed: ") && detail.contains("not found"),
        "{agent}"
    );
    let fix = agent["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("docker start {failed}"))
            && fix.contains("edgesense-agent-start-again@"),
        "{agent}"
    );

    // The script retries; once the network is back, its start succeeds.
    let mut child = start_again()
        .arg(failed)
        .env("START_AGAIN_WAIT", "60")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.contains("starting it again"), "{first}");
    assert!(first.contains("not found"), "{first}");
    docker(&["network", "create", net]);
    docker(&["network", "connect", net, failed]);
    let status = child.wait().unwrap();
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{first}\n{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("{failed}: running").as_str()),
        "{lines:?}"
    );
    assert_eq!(state(failed), "true");
    assert_eq!(
        state(stopped),
        "false",
        "the stopped one is still left alone"
    );

    // Still not startable within the wait: exit status 1 and says so.
    docker(&["stop", failed]);
    docker(&["network", "rm", net]);
    assert!(!docker_output(&["start", failed]).status.success());
    let out = start_again()
        .arg(failed)
        .env("START_AGAIN_WAIT", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still not running after 2s"),
        "{out:?}"
    );
}
