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

/// Images for the upgrade: `edgesense/agent:next`, the same agent reporting version 0.1.9 (the
/// one "0.1.0" in the binary patched, standing in for a new release), and
/// `edgesense/agent:broken`, whose entrypoint adds a second `--listen`: it lists devices (the
/// launcher's probe) but the agent itself refuses its arguments and never gets healthy. Built
/// on the test dockerd from the local image, saved (the tar returned) for the
/// fleet's nodes. The launcher test and the rolling-upgrade bench use them.
pub fn upgrade_images(dir: &std::path::Path) -> std::path::PathBuf {
    let _dockerd = hold();
    let ctx = dir.join("next");
    std::fs::create_dir_all(&ctx).unwrap();
    let id = docker(&["create", "edgesense/agent:local"]);
    let id = id.trim();
    docker(&[
        "cp",
        &format!("{id}:/bin/edgesense-agent"),
        ctx.join("edgesense-agent").to_str().unwrap(),
    ]);
    docker(&["rm", id]);
    let bin = ctx.join("edgesense-agent");
    let mut bytes = std::fs::read(&bin).unwrap();
    let at: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(_, w)| *w == b"0.1.0")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "one version string in the agent binary");
    bytes[at[0] + 4] = b'9';
    std::fs::write(&bin, bytes).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM edgesense/agent:local\nCOPY edgesense-agent /bin/edgesense-agent\n",
    )
    .unwrap();
    docker(&[
        "build",
        "-q",
        "-t",
        "edgesense/agent:next",
        ctx.to_str().unwrap(),
    ]);
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("Dockerfile"),
        "FROM edgesense/agent:local\nENTRYPOINT [\"/bin/edgesense-agent\", \"--listen\", \"127.0.0.1:9999\"]\n",
    )
    .unwrap();
    docker(&[
        "build",
        "-q",
        "-t",
        "edgesense/agent:broken",
        broken.to_str().unwrap(),
    ]);
    let tar = dir.join("upgrade.tar");
    docker(&[
        "save",
        "-o",
        tar.to_str().unwrap(),
        "edgesense/agent:next",
        "edgesense/agent:broken",
    ]);
    tar
}
