//! Emulated Raspberry Pis (tests/qemu.sh: QEMU's raspi3b and raspi0 machines booting Debian's
//! arm64 and armel kernels with a busybox initramfs, tests/qemu-pi.init as PID 1). The test
//! reaches the guest through QEMU's user-mode network: the guest's port 8000 runs POSTed shell
//! scripts as root (its hands inside the Pi: `devmem` reads the GPIO block's registers, an
//! oracle independent of the agent and of rppal), and port 9842 is the agent's.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::Duration,
};

use crate::{free_port, request, workspace};

/// One emulated board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// tests/qemu.sh's machine name.
    pub machine: &'static str,
    /// The Rust target whose binaries it runs (tests/run.sh builds them with scripts/build-arm.sh).
    pub target: &'static str,
    /// The SoC's GPIO block (BCM2837: 0x3F200000; BCM2835: 0x20200000).
    pub gpio_base: u32,
    /// /proc/device-tree/model.
    pub model: &'static str,
}

pub const PI_3B: Board = Board {
    machine: "raspi3b",
    target: "aarch64-unknown-linux-musl",
    gpio_base: 0x3F20_0000,
    model: "Raspberry Pi 3 Model B",
};

pub const PI_ZERO: Board = Board {
    machine: "raspi0",
    target: "arm-unknown-linux-musleabihf",
    gpio_base: 0x2020_0000,
    model: "Raspberry Pi Zero",
};

/// `target/<target>/release/<bin>`, which must have been built.
pub fn arm_bin(target: &str, bin: &str) -> PathBuf {
    let p = workspace()
        .join("target")
        .join(target)
        .join("release")
        .join(bin);
    assert!(
        p.is_file(),
        "{} missing: tests/run.sh builds it (scripts/build-arm.sh {target})",
        p.display()
    );
    p
}

/// A booted emulated Pi; powered off (QEMU killed) on drop.
pub struct Pi {
    pub board: Board,
    child: Child,
    cgi: SocketAddr,
    /// The guest's port 9842 (the agent's) on this machine.
    pub agent: SocketAddr,
    console: Arc<Mutex<Vec<String>>>,
}

impl Pi {
    /// Boots `board` with `files` (host path, path in the guest) in its initramfs and waits until
    /// the guest serves.
    pub fn boot(board: Board, files: &[(&Path, &str)]) -> Pi {
        let (cgi_port, agent_port) = (free_port(), free_port());
        let mut cmd = Command::new(workspace().join("tests/qemu.sh"));
        cmd.args(["run", board.machine])
            .arg(workspace().join("tests/qemu-pi.init"))
            .args(
                files
                    .iter()
                    .map(|(src, dest)| format!("{}:{dest}", src.display())),
            )
            .env(
                "QEMU_HOSTFWD",
                format!("tcp:127.0.0.1:{cgi_port}-:8000 tcp:127.0.0.1:{agent_port}-:9842"),
            )
            .env("QEMU_TIMEOUT", "900")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("run tests/qemu.sh");
        let out = child.stdout.take().expect("piped stdout");
        let console = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&console);
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.trim() == "EDGESENSE-PI-READY" {
                    let _ = tx.send(());
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let pi = Pi {
            board,
            child,
            cgi: ([127, 0, 0, 1], cgi_port).into(),
            agent: ([127, 0, 0, 1], agent_port).into(),
            console,
        };
        if rx.recv_timeout(Duration::from_secs(300)).is_err() {
            panic!(
                "{} did not come up; console:\n{}",
                board.machine,
                pi.console()
            );
        }
        pi
    }

    /// The guest console so far.
    pub fn console(&self) -> String {
        self.console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Runs `script` with `sh` as root in the guest: its output and exit status.
    pub fn sh(&self, script: &str) -> (String, i32) {
        let r = request(self.cgi, "POST", "/cgi-bin/sh", &[], script);
        assert_eq!(r.status, 200, "guest shell: {}", r.body);
        let body = r.body.trim_end();
        let (out, code) = body.rsplit_once("exit=").unwrap_or((body, "-1"));
        (out.to_owned(), code.trim().parse().unwrap_or(-1))
    }

    /// [`Pi::sh`], asserting exit status 0; the output.
    pub fn sh_ok(&self, script: &str) -> String {
        let (out, code) = self.sh(script);
        assert_eq!(code, 0, "{script}\n{out}");
        out
    }

    /// A GPIO register (offset from the block's base) read with busybox devmem.
    pub fn register(&self, offset: u32) -> u32 {
        let out = self.sh_ok(&format!(
            "devmem 0x{:08X} 32",
            self.board.gpio_base + offset
        ));
        let hex = out.trim().trim_start_matches("0x");
        u32::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("devmem: {out:?}: {e}"))
    }

    /// Pin `pin`'s level (GPLEV0, offset 0x34).
    pub fn level(&self, pin: u32) -> u32 {
        (self.register(0x34) >> pin) & 1
    }

    /// Pin `pin`'s function (GPFSELn, 3 bits per pin: 0 input, 1 output).
    pub fn function(&self, pin: u32) -> u32 {
        (self.register(4 * (pin / 10)) >> (3 * (pin % 10))) & 7
    }

    /// GPLEV0 sampled in the guest for about `seconds` s: (guest uptime s, register).
    pub fn sample_levels(&self, seconds: u32) -> Vec<(f64, u32)> {
        let addr = format!("0x{:08X}", self.board.gpio_base + 0x34);
        // /proc/uptime in centiseconds (12.34 -> 1234), compared without forking.
        let out = self.sh_ok(&format!(
            "read u _ </proc/uptime\nnow=${{u%.*}}${{u#*.}}\nend=$((now + {seconds} * 100))\nwhile [ \"$now\" -lt \"$end\" ]; do read u _ </proc/uptime; now=${{u%.*}}${{u#*.}}; echo \"$u $(devmem {addr} 32)\"; done"
        ));
        out.lines()
            .filter_map(|l| {
                let (t, v) = l.split_once(' ')?;
                Some((
                    t.parse().ok()?,
                    u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok()?,
                ))
            })
            .collect()
    }

    /// Powers the guest off and waits for QEMU to end.
    pub fn poweroff(mut self) {
        let _ = self.sh("touch /tmp/poweroff");
        let _ = self.child.wait();
    }
}

impl Drop for Pi {
    fn drop(&mut self) {
        // tests/qemu.sh's exit trap ends QEMU.
        // SAFETY: kill(2) on a child we spawned and still own.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
