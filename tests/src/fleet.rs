//! The multi-node swarm (tests/fleet.sh, started by tests/run.sh): one dockerd per node, each in
//! its own network, UTS and mount namespace, so the overlay network really crosses hosts. Every
//! test that needs a swarm of several nodes goes through this module.
//!
//! Tests hold [`Fleet::lock`] for as long as they use the fleet: one test at a time, whichever
//! test runner runs them (an exclusive `flock` on the fleet's directory).

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr},
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use crate::{cli_bin, try_request, wait_until, workspace, Response};

/// A node of the fleet: a Docker host of its own.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    /// Its address on the fleet's subnet (the swarm's advertise address).
    pub addr: Ipv4Addr,
    /// Its Docker endpoint as the test process reaches it (a unix socket).
    pub docker_host: String,
    dir: PathBuf,
}

/// The fleet, locked for this test.
pub struct Fleet {
    pub nodes: Vec<Node>,
    /// How many nodes tests/run.sh started (the ones after them a test added).
    started: usize,
    dir: PathBuf,
    _lock: File,
}

impl Drop for Fleet {
    /// A node a test added and did not remove (it panicked) goes, so the next test finds the
    /// fleet as tests/run.sh made it.
    fn drop(&mut self) {
        let extra: Vec<String> = self
            .nodes
            .iter()
            .skip(self.started)
            .map(|n| n.name.clone())
            .collect();
        for n in extra {
            let _ = self.manager().docker_output(&["node", "rm", "--force", &n]);
            let _ = Command::new(workspace().join("tests/fleet.sh"))
                .args(["remove", &n])
                .output();
        }
    }
}

/// tests/fleet.sh with `args`, asserting success; its stdout.
pub fn script(args: &[&str]) -> String {
    let o = Command::new(workspace().join("tests/fleet.sh"))
        .args(args)
        .output()
        .expect("run tests/fleet.sh");
    assert!(
        o.status.success(),
        "tests/fleet.sh {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn parse_nodes(dir: &Path, listing: &str) -> Vec<Node> {
    listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, addr, host) = (f.next()?, f.next()?, f.next()?);
            Some(Node {
                name: name.to_owned(),
                addr: addr.parse().ok()?,
                docker_host: host.to_owned(),
                dir: dir.join(name),
            })
        })
        .collect()
}

impl Fleet {
    /// The fleet tests/run.sh started (`EDGESENSE_FLEET_DIR`), locked until the value drops.
    pub fn lock() -> Fleet {
        let dir = PathBuf::from(std::env::var("EDGESENSE_FLEET_DIR").expect(
            "EDGESENSE_FLEET_DIR: run tests/run.sh, which starts the multi-node swarm (tests/fleet.sh)",
        ));
        let lock = File::create(dir.join("lock")).expect("create the fleet's lock file");
        // SAFETY: flock(2) on a descriptor this function owns.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock the fleet");
        let mut fleet = Fleet {
            nodes: Vec::new(),
            started: 0,
            dir,
            _lock: lock,
        };
        fleet.reload();
        fleet.started = fleet.nodes.len();
        fleet
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the fleet"))
    }

    /// The swarm manager (the first node).
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    fn reload(&mut self) {
        let listing = std::fs::read_to_string(self.dir.join("listing")).expect("fleet listing");
        self.nodes = parse_nodes(&self.dir, &listing);
    }

    /// One more node with the fleet's images, not yet in the swarm (see [`Node::join`]).
    pub fn add(&mut self, name: &str) -> Node {
        script(&["add", name]);
        self.reload();
        self.node(name).clone()
    }

    /// Removes a node that [`Fleet::add`] made: out of the swarm, its dockerd stopped.
    pub fn remove(&mut self, name: &str) {
        let node = self.node(name).clone();
        let _ = node.docker_output(&["swarm", "leave", "--force"]);
        let _ = self
            .manager()
            .docker_output(&["node", "rm", "--force", name]);
        script(&["remove", name]);
        self.reload();
    }

    /// The host's own address on the fleet's subnet.
    pub fn host_addr(&self) -> Ipv4Addr {
        let o = self.manager().addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], 1)
    }
}

impl Node {
    /// `docker ARGS` against this node, whatever its exit status.
    pub fn docker_output(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .expect("run docker")
    }

    /// `docker ARGS` against this node, asserting success; its stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let o = self.docker_output(args);
        assert!(
            o.status.success(),
            "docker {args:?} on {}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The node's Docker endpoint as another node reaches it (dockerd's TCP listener on the
    /// fleet's subnet).
    pub fn tcp_host(&self) -> String {
        format!("tcp://{}:2375", self.addr)
    }

    /// `program` run "on the node": in its network, UTS and mount namespaces, where the
    /// hostname is the node's, `/run/docker.sock` is its dockerd and `/var/lib/edgesense`,
    /// `/etc/edgesense` are its own. `DOCKER_HOST` is cleared.
    pub fn on(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let pid = std::fs::read_to_string(self.dir.join("docker.pid"))
            .unwrap_or_else(|e| panic!("{}'s dockerd pid: {e}", self.name));
        let mut c = Command::new("nsenter");
        c.args(["-t", pid.trim(), "-n", "-u", "-m", "--"])
            .arg(program)
            .env_remove("DOCKER_HOST");
        c
    }

    /// The CLI `edgesense ARGS` run on the node (see [`Node::on`]): exit code, stdout, stderr.
    pub fn edgesense(&self, args: &[&str]) -> (i32, String, String) {
        let o = self
            .on(cli_bin())
            .args(args)
            .output()
            .expect("run edgesense");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// [`Node::edgesense`], asserting exit status 0; stdout and stderr together.
    pub fn edgesense_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.edgesense(args);
        assert_eq!(
            code, 0,
            "edgesense {args:?} on {}\nstdout:\n{out}\nstderr:\n{err}",
            self.name
        );
        format!("{out}{err}")
    }

    /// An HTTP request to `127.0.0.1:port` inside the node's network namespace (a published
    /// port, reachable so even while the node is cut off the network): the request runs on a
    /// thread of its own that joins the namespace with setns(2).
    pub fn local_request(
        &self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> std::io::Result<Response> {
        let pid = std::fs::read_to_string(self.dir.join("docker.pid"))?;
        let ns = File::open(format!("/proc/{}/ns/net", pid.trim()))?;
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
        let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
        std::thread::spawn(move || {
            // SAFETY: setns(2) moves only this thread, into a namespace whose fd we hold.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let h: Vec<&str> = headers.iter().map(String::as_str).collect();
            try_request(([127, 0, 0, 1], port).into(), &method, &path, &h, &body)
        })
        .join()
        .map_err(|_| std::io::Error::other("request thread panicked"))?
    }

    /// The node's own `/var/lib/edgesense` (as the host sees it).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("varlib")
    }

    /// The node's own `/etc/edgesense` (as the host sees it).
    pub fn etc_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// A published port of this node, from the host.
    pub fn at(&self, port: u16) -> SocketAddr {
        (self.addr, port).into()
    }

    /// Stops and starts the node's dockerd, keeping its state; waits until it answers.
    pub fn restart_dockerd(&self) {
        script(&["restart", &self.name]);
    }

    /// Cuts the node off the network (`false`) or connects it again.
    pub fn link(&self, up: bool) {
        script(&["link", &self.name, if up { "up" } else { "down" }]);
    }

    /// Joins the swarm of `manager` as a worker.
    pub fn join(&self, manager: &Node) {
        let token = manager.docker(&["swarm", "join-token", "-q", "worker"]);
        self.docker(&[
            "swarm",
            "join",
            "--token",
            token.trim(),
            "--advertise-addr",
            &self.addr.to_string(),
            &format!("{}:2377", manager.addr),
        ]);
    }

    /// Waits until the manager lists this node as Ready.
    pub fn wait_ready_in(&self, manager: &Node, limit: Duration) {
        wait_until(&format!("{} Ready in the swarm", self.name), limit, || {
            let o = manager.docker_output(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == format!("{} Ready", self.name))
                .then_some(())
        });
    }
}
