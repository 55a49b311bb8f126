//! The isolated test dockerd (tests/dockerd.sh), as the docker CLI sees it.

use std::process::{Command, Output};

use crate::workspace;

/// `DOCKER_HOST` of the isolated test dockerd that tests/run.sh starts.
pub fn docker_host() -> String {
    std::env::var("EDGESENSE_TEST_DOCKER_HOST").expect(
        "EDGESENSE_TEST_DOCKER_HOST: run tests/run.sh, which starts an isolated dockerd (tests/dockerd.sh) and builds the local images",
    )
}

/// `docker ARGS` against the test dockerd, whatever its exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .output()
        .expect("run docker")
}

/// `docker ARGS` against the test dockerd, asserting success; its stdout.
pub fn docker(args: &[&str]) -> String {
    let o = docker_output(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `stack/assets/node/start-again.sh` (what the unit edgesense-agent-start-again@ runs) against
/// the test dockerd; add the container names as arguments.
pub fn start_again() -> Command {
    let mut c = Command::new("sh");
    c.arg(workspace().join("stack/assets/node/start-again.sh"))
        .env("DOCKER_HOST", docker_host());
    c
}
