//! The isolated test dockerd (tests/dockerd.sh), as the docker CLI sees it.

use std::{
    fs::File,
    os::unix::io::AsRawFd,
    path::PathBuf,
    process::{Command, Output},
};

use crate::workspace;

/// A hold on the test dockerd, released on drop: tests that only use it share it; a test that
/// restarts it (swarm.rs) holds it alone, so no other test meets it in the middle of a restart,
/// whichever runner runs them and however many at once (an `flock` beside its socket).
pub struct Hold(#[allow(dead_code)] File);

/// A shared [`Hold`] on the test dockerd: for as long as a test uses it.
pub fn hold() -> Hold {
    lock(libc::LOCK_SH)
}

/// An exclusive [`Hold`] on the test dockerd: for a test that stops or restarts it.
pub fn hold_alone() -> Hold {
    lock(libc::LOCK_EX)
}

fn lock(how: libc::c_int) -> Hold {
    let host = docker_host();
    let dir = host
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .and_then(|sock| sock.parent().map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    let f = File::create(dir.join("tests.lock")).expect("create the test dockerd's lock file");
    // SAFETY: flock(2) on a descriptor this function owns.
    let rc = unsafe { libc::flock(f.as_raw_fd(), how) };
    assert_eq!(
        rc,
        0,
        "flock the test dockerd: {}",
        std::io::Error::last_os_error()
    );
    Hold(f)
}

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
