//! The multi-node swarm (tests/fleet.sh, started by tests/run.sh): one dockerd per node, each in
//! its own network, UTS and mount namespace, so the overlay network really crosses hosts. Every
//! test that needs a swarm of several nodes goes through this module.
//!
//! Tests hold [`Fleet::lock`] for as long as they use a fleet: one test per fleet at a time,
//! whichever test runner runs them (an exclusive `flock` on the fleet's directory). tests/run.sh
//! starts two identical fleets (`EDGESENSE_FLEET_DIRS`, colon-separated) so that two long fleet
//! tests run side by side.

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr},
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use crate::{cli_bin, wait_until, workspace, Endpoint, Response, TestFleet};

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
                .env("EDGESENSE_FLEET_DIR", &self.dir)
                .output();
        }
    }
}

/// tests/fleet.sh with `args` for the fleet in `dir`, asserting success; its stdout.
pub fn script(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(workspace().join("tests/fleet.sh"))
        .args(args)
        .env("EDGESENSE_FLEET_DIR", dir)
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
    /// A fleet tests/run.sh started (`EDGESENSE_FLEET_DIRS`, else `EDGESENSE_FLEET_DIR`): the
    /// first free one, else the first once it is free; locked until the value drops.
    pub fn lock() -> Fleet {
        let dirs: Vec<PathBuf> = std::env::var("EDGESENSE_FLEET_DIRS")
            .or_else(|_| std::env::var("EDGESENSE_FLEET_DIR"))
            .expect(
                "EDGESENSE_FLEET_DIRS: run tests/run.sh, which starts the multi-node swarms (tests/fleet.sh)",
            )
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        let flock = |dir: &Path, how: libc::c_int| {
            let f = File::create(dir.join("lock")).expect("create the fleet's lock file");
            // SAFETY: flock(2) on a descriptor this closure owns.
            let rc = unsafe { libc::flock(f.as_raw_fd(), how) };
            (rc == 0).then_some(f)
        };
        let (dir, lock) = dirs
            .iter()
            .find_map(|d| Some((d.clone(), flock(d, libc::LOCK_EX | libc::LOCK_NB)?)))
            .unwrap_or_else(|| {
                let d = dirs[0].clone();
                let f = flock(&d, libc::LOCK_EX).expect("flock the fleet");
                (d, f)
            });
        let mut fleet = Fleet {
            nodes: Vec::new(),
            started: 0,
            dir,
            _lock: lock,
        };
        fleet.reload();
        // A test that was killed cannot have removed the nodes it added: they go now.
        let start = std::fs::read_to_string(fleet.dir.join("listing.start")).unwrap_or_default();
        let first: Vec<String> = parse_nodes(&fleet.dir, &start)
            .into_iter()
            .map(|n| n.name)
            .collect();
        let extra: Vec<String> = fleet
            .nodes
            .iter()
            .filter(|n| !first.is_empty() && !first.contains(&n.name))
            .map(|n| n.name.clone())
            .collect();
        for n in extra {
            fleet.remove(&n);
        }
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
        script(&self.dir, &["add", name]);
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
        script(&self.dir, &["remove", name]);
        self.reload();
    }

    /// Everything of edgesense off every node: agent containers (node run's and the
    /// launchers'), the stack with its volumes, node labels, and each node's /var/lib/edgesense
    /// and /etc/edgesense (the stack's kept secrets, the agent bundles).
    pub fn clean(&self) {
        let m = self.manager();
        for n in &self.nodes {
            for dir in [n.state_dir(), n.etc_dir()] {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
            // One label at a time: removing a label a node lacks fails the whole update.
            for label in ["edgesense.config", "edgesense.agent"] {
                let _ = m.docker_output(&["node", "update", "--label-rm", label, &n.name]);
            }
        }
        let (code, out, err) = m.edgesense(&["stack", "down", "--volumes"]);
        assert_eq!(code, 0, "stack down: {out}{err}");
        for n in &self.nodes {
            let ids = n.docker(&["ps", "-aq", "--filter", "label=com.edgesense.role"]);
            for id in ids.split_whitespace() {
                n.docker(&["rm", "-f", "-v", id]);
            }
        }
        // stack down keeps the overlay while agents on workers hold it (a test that stopped
        // half-way leaves them): with them gone, the manager can remove it.
        wait_until(
            "core-infra removed on the manager",
            Duration::from_secs(60),
            || {
                let o = m.docker_output(&["network", "rm", "core-infra"]);
                (o.status.success() || String::from_utf8_lossy(&o.stderr).contains("not found"))
                    .then_some(())
            },
        );
        // A removed network lingers on a worker until its attachment is released.
        for n in &self.nodes {
            wait_until(
                &format!("no core-infra network left on {}", n.name),
                Duration::from_secs(60),
                || {
                    let o =
                        n.docker_output(&["network", "ls", "-q", "--filter", "name=^core-infra$"]);
                    (o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace))
                        .then_some(())
                },
            );
        }
    }

    /// The host's own address on the fleet's subnet.
    pub fn host_addr(&self) -> Ipv4Addr {
        let o = self.manager().addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], 1)
    }
}

impl Node {
    fn fleet_dir(&self) -> &Path {
        self.dir
            .parent()
            .expect("a node's directory is in its fleet's")
    }

    /// `docker ARGS` against this node, whatever its exit status.
    /// The state of `service`'s last update (`updating`, `paused`, `completed`, …; empty if it
    /// never had one), as swarm reports it on this manager.
    pub fn update_state(&self, service: &str) -> String {
        self.docker(&[
            "service",
            "inspect",
            service,
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ])
        .trim()
        .to_owned()
    }

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

    /// The last `lines` lines of the agent container's log on this node (stdout and stderr),
    /// for a failure message.
    pub fn agent_log(&self, lines: usize) -> String {
        let o = self.docker_output(&["logs", "--tail", &lines.to_string(), "edgesense-agent"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
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

    /// `f` run on a thread of its own inside the node's network namespace (setns(2)): what
    /// the node itself reaches, also while it is cut off the network.
    pub fn in_netns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let pid = std::fs::read_to_string(self.dir.join("docker.pid"))?;
        in_netns(&format!("/proc/{}/ns/net", pid.trim()), f)
    }

    /// A plain HTTP request to the agent container `container` on this node from its own
    /// loopback (inside its network namespace: what its health check sees; reads need no
    /// credentials there, writes the token).
    pub fn agent_request(
        &self,
        container: &str,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> std::io::Result<Response> {
        let pid = self.docker(&["inspect", container, "--format", "{{.State.Pid}}"]);
        let at = Endpoint::plain(([127, 0, 0, 1], 9842).into());
        let ns = format!("/proc/{}/ns/net", pid.trim());
        request_in(&ns, &at, method, path, headers, body)
    }

    /// A plain HTTP request to `127.0.0.1:port` inside the node's network namespace (a
    /// published port).
    pub fn local_request(
        &self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> std::io::Result<Response> {
        let at = Endpoint::plain(([127, 0, 0, 1], port).into());
        self.request_from(&at, method, path, headers, body)
    }

    /// A request to `at` (an address as the node sees it) from inside the node's network
    /// namespace, with `at`'s TLS and credentials.
    pub fn request_from(
        &self,
        at: &Endpoint,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> std::io::Result<Response> {
        let pid = std::fs::read_to_string(self.dir.join("docker.pid"))?;
        let ns = format!("/proc/{}/ns/net", pid.trim());
        request_in(&ns, at, method, path, headers, body)
    }

    /// A copy of the fleet's agent bundle in the node's /etc/edgesense/fleet, as the operator
    /// puts it there for `node run` on the node.
    pub fn install_bundle(&self, f: &TestFleet) {
        let to = self.etc_dir().join("fleet");
        std::fs::create_dir_all(&to).expect("mkdir fleet");
        for e in std::fs::read_dir(f.bundle()).expect("the bundle").flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }

    /// The stack's secrets `stack up` keeps on this node (the manager that ran it): the one
    /// swarm's state directory under its /var/lib/edgesense/stacks.
    pub fn kept_fleet(&self) -> TestFleet {
        let root = self.state_dir().join("stacks");
        let dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .flatten()
            .map(|e| e.path().join("edgesense"))
            .filter(|p| p.join("ca.crt").exists())
            .collect();
        assert_eq!(dirs.len(), 1, "one stack kept on {}: {dirs:?}", self.name);
        TestFleet::open(&dirs[0])
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
        script(self.fleet_dir(), &["restart", &self.name]);
    }

    /// The agent published on port 9842 of the node, as the node itself reaches it (https with
    /// the fleet's agent credentials: the published port is not the agent's loopback).
    pub fn local_agent(&self, f: &TestFleet) -> Endpoint {
        f.agent_at(([127, 0, 0, 1], 9842).into())
    }

    /// The LED `led` of that agent, asked inside the node (also while it is cut off).
    pub fn agent_led(&self, f: &TestFleet, led: &str) -> Option<serde_json::Value> {
        let r = self
            .request_from(&self.local_agent(f), "GET", "/api/v1/leds", &[], "")
            .ok()?;
        (r.status == 200).then_some(())?;
        r.json()["leds"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == led)
            .cloned()
    }

    /// Holds that agent's simulated sensor `sensor` at `value`.
    pub fn put_sim(&self, f: &TestFleet, sensor: &str, value: f64) {
        let r = self
            .request_from(
                &self.local_agent(f),
                "PUT",
                &format!("/api/v1/sim/sensors/{sensor}"),
                &[],
                &format!("{{\"value\":{value}}}"),
            )
            .expect("agent answers");
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Stops the node's dockerd (its containers stop with it): a node lost.
    pub fn stop_dockerd(&self) {
        script(self.fleet_dir(), &["halt", &self.name]);
    }

    /// Starts the node's dockerd again after [`Node::stop_dockerd`]; waits until it answers.
    pub fn start_dockerd(&self) {
        script(self.fleet_dir(), &["launch", &self.name]);
    }

    /// Cuts the node off the network (`false`) or connects it again.
    pub fn link(&self, up: bool) {
        script(
            self.fleet_dir(),
            &["link", &self.name, if up { "up" } else { "down" }],
        );
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

/// `f` run on a thread of its own inside the network namespace at `ns` (a `/proc/PID/ns/net`
/// or `/run/netns/NAME`): setns(2) moves only that thread.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = File::open(ns)?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) moves only this thread, into a namespace whose fd we hold.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace's thread panicked"))?
}

/// `stack up` flags for the fleet: the images stack/images/build.sh makes (nothing is pulled),
/// Prometheus and Alertmanager published on the manager at their usual ports, a 1 s scrape.
pub const LOCAL_STACK: &[&str] = &[
    "--prometheus-image",
    "edgesense/prometheus:local",
    "--alertmanager-image",
    "edgesense/alertmanager:local",
    "--prometheus-port",
    "9090",
    "--alertmanager-port",
    "9093",
    "--scrape-interval",
    "1s",
];

/// A request to `at` from inside the network namespace at `ns`.
fn request_in(
    ns: &str,
    at: &Endpoint,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> std::io::Result<Response> {
    let at = at.clone();
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    in_netns(ns, move || {
        let h: Vec<&str> = headers.iter().map(String::as_str).collect();
        at.try_request(&method, &path, &h, &body)
    })
}

/// A capture of the fleet's LAN (tests/fleet.sh capture): tcpdump on the bridge between the
/// nodes, stopped and read by [`Capture::stop`].
pub struct Capture {
    pid: libc::pid_t,
    pub file: PathBuf,
}

impl Capture {
    /// Stops tcpdump (SIGINT: it writes what it holds) and returns the capture's bytes.
    pub fn stop(self) -> Vec<u8> {
        // SAFETY: kill(2) on tcpdump's pid, which this capture started.
        unsafe {
            libc::kill(self.pid, libc::SIGINT);
        }
        wait_until("tcpdump stopped", Duration::from_secs(20), || {
            // SAFETY: kill(2) with signal 0 only asks whether the process exists.
            (unsafe { libc::kill(self.pid, 0) } != 0).then_some(())
        });
        std::fs::read(&self.file).expect("read the capture")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: as in stop; a second signal to an exited pid is harmless here.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

/// A machine on the LAN that belongs to nobody in the fleet (tests/fleet.sh stranger): a bare
/// namespace on the bridge. Removed on drop.
pub struct Stranger {
    dir: PathBuf,
    ns: PathBuf,
    pub addr: Ipv4Addr,
}

impl Stranger {
    /// `f` run on a thread inside the stranger's network namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        in_netns(&self.ns.to_string_lossy(), f)
    }

    /// A request from the stranger to `at`.
    pub fn request(
        &self,
        at: &Endpoint,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> std::io::Result<Response> {
        request_in(&self.ns.to_string_lossy(), at, method, path, headers, body)
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("tests/fleet.sh"))
            .args(["stranger", "down"])
            .env("EDGESENSE_FLEET_DIR", &self.dir)
            .output();
    }
}

impl Fleet {
    /// Starts a capture of the LAN into `file`.
    pub fn capture(&self, file: &Path) -> Capture {
        let pid = script(&self.dir, &["capture", file.to_str().expect("utf-8 path")]);
        Capture {
            pid: pid.trim().parse().expect("tcpdump's pid"),
            file: file.to_owned(),
        }
    }

    /// A stranger on the LAN.
    pub fn stranger(&self) -> Stranger {
        let addr = script(&self.dir, &["stranger", "up"]);
        let prefix = std::fs::read_to_string(self.dir.join("env"))
            .ok()
            .and_then(|e| {
                e.lines()
                    .find_map(|l| l.strip_prefix("EDGESENSE_FLEET_PREFIX=").map(str::to_owned))
            })
            .expect("the fleet's prefix");
        Stranger {
            dir: self.dir.clone(),
            ns: PathBuf::from(format!("/run/netns/{prefix}-stranger")),
            addr: addr.trim().parse().expect("the stranger's address"),
        }
    }
}

/// The packets of a pcap capture (libpcap's format, as tcpdump -w writes it).
pub fn pcap_packets(pcap: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    if pcap.len() < 24 {
        return out;
    }
    let le = pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32_at(&pcap[at + 8..]) as usize;
        let start = at + 16;
        if start + len > pcap.len() {
            break;
        }
        out.push(&pcap[start..start + len]);
        at = start + len;
    }
    out
}

/// The UDP destination port of an Ethernet/IPv4 frame, if it is UDP.
pub fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    frame
        .get(udp + 2..udp + 4)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
}

/// The node names Prometheus (at `prom`) has `edgesense_node_info` for from a target that is up,
/// sorted.
pub fn scraped_nodes(prom: &Endpoint) -> Vec<String> {
    nodes_of(prom, "edgesense_node_info and on(instance) (up == 1)")
}

/// [`scraped_nodes`] from scrapes after `after_s` (Unix seconds) only: a target's last sample
/// from before (a Prometheus restarted on its TSDB still has it for 5 minutes) does not count.
pub fn scraped_nodes_after(prom: &Endpoint, after_s: f64) -> Vec<String> {
    nodes_of(
        prom,
        &format!("edgesense_node_info and on(instance) (up == 1) and on(instance) (timestamp(up) > {after_s:.3})"),
    )
}

/// The sorted `node` labels of what `query` returns now (none if Prometheus does not answer).
fn nodes_of(prom: &Endpoint, query: &str) -> Vec<String> {
    let q = format!("/api/v1/query?query={}", crate::http_encode(query));
    let Ok(r) = prom.try_request("GET", &q, &[], "") else {
        return Vec::new();
    };
    if r.status != 200 {
        return Vec::new();
    }
    let mut n: Vec<String> = r.json()["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["metric"]["node"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

/// node → agent version (`edgesense_node_info`), from Prometheus: the agents it scrapes now
/// (`up == 1`), sorted by node; `None` while Prometheus does not answer (never an empty fleet
/// for a Prometheus away).
pub fn agent_versions(prom: &Endpoint) -> Option<Vec<(String, String)>> {
    let r = prom
        .try_request(
            "GET",
            "/api/v1/query?query=edgesense_node_info%20and%20on(instance)%20(up%3D%3D1)",
            &[],
            "",
        )
        .ok()
        .filter(|r| r.status == 200)?;
    let mut out: Vec<(String, String)> = r.json()["data"]["result"]
        .as_array()?
        .iter()
        .filter_map(|x| {
            Some((
                x["metric"]["node"].as_str()?.to_owned(),
                x["metric"]["version"].as_str()?.to_owned(),
            ))
        })
        .collect();
    out.sort();
    Some(out)
}
