//! The ARM builds (scripts/build-arm.sh, run by tests/run.sh before the tests) under Debian's
//! qemu-user-static: each agent binary is static, the ARMv6 one has no ARMv7 instruction (it runs
//! on an emulated ARM1176, the Pi Zero's CPU), and each serves `/metrics` with a reading from the
//! simulated node. The CLI binaries (64-bit and ARMv6) run too.

use std::{path::PathBuf, process::Command, time::Duration};

use edgesense_tests::{metric, wait_until, which, workspace, Agent};

struct Target {
    triple: &'static str,
    qemu: &'static str,
    /// `QEMU_CPU`: the oldest CPU the build is for.
    cpu: Option<&'static str>,
}

const TARGETS: [Target; 3] = [
    Target {
        triple: "aarch64-unknown-linux-musl",
        qemu: "qemu-aarch64-static",
        cpu: None,
    },
    Target {
        triple: "armv7-unknown-linux-musleabihf",
        qemu: "qemu-arm-static",
        cpu: Some("cortex-a7"),
    },
    Target {
        triple: "arm-unknown-linux-musleabihf",
        qemu: "qemu-arm-static",
        cpu: Some("arm1176"),
    },
];

fn bin(t: &Target, name: &str) -> PathBuf {
    let p = workspace()
        .join("target")
        .join(t.triple)
        .join("release")
        .join(name);
    assert!(
        p.is_file(),
        "{} missing: tests/run.sh builds it with scripts/build-arm.sh {}",
        p.display(),
        t.triple
    );
    p
}

fn readelf(args: &[&str], file: &PathBuf) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("readelf (binutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qemu(t: &Target) -> Command {
    let q = which(t.qemu).unwrap_or_else(|| panic!("{} (Debian's qemu-user-static)", t.qemu));
    let mut cmd = Command::new(q);
    if let Some(cpu) = t.cpu {
        cmd.env("QEMU_CPU", cpu);
    }
    cmd
}

#[test]
fn agent_binaries_are_static_and_serve_metrics_under_qemu() {
    for t in &TARGETS {
        let agent = bin(t, "edgesense-agent");
        assert!(
            !readelf(&["-l"], &agent).contains("program interpreter"),
            "{}: dynamically linked",
            t.triple
        );
        assert!(
            !readelf(&["-d"], &agent).contains("(NEEDED)"),
            "{}: needs shared libraries",
            t.triple
        );
        if t.triple.starts_with("arm-") {
            let attrs = readelf(&["-A"], &agent);
            assert!(attrs.contains("Tag_CPU_arch: v6"), "ARMv6 build: {attrs}");
        }
        let mut cmd = qemu(t);
        cmd.arg(&agent)
            .args(["--simulate", "--listen", "127.0.0.1:0"]);
        let a = Agent::spawn(cmd);
        let room = "edgesense_temperature_celsius{kind=\"ds18b20\",sensor=\"room\"}";
        let v = wait_until(
            &format!("{} serving a reading", t.triple),
            Duration::from_secs(60),
            || {
                let body = a.get("/metrics").body;
                metric(&body, room)
            },
        );
        assert!((-55.0..=125.0).contains(&v), "{}: {v}", t.triple);
        let leds = a.get("/api/v1/leds");
        assert_eq!(leds.status, 200, "{}", t.triple);
    }
}

#[test]
fn cli_binaries_run_under_qemu() {
    // The CLI for 64-bit Pis and the ARMv6 one, which every 32-bit Pi runs (tests/run.sh builds
    // no ARMv7 CLI: the same code, and a fifth of CI's ARM build time).
    for t in TARGETS.iter().filter(|t| !t.triple.starts_with("armv7")) {
        let cli = bin(t, "edgesense");
        assert!(
            !readelf(&["-l"], &cli).contains("program interpreter"),
            "{}",
            t.triple
        );
        let out = qemu(t)
            .arg(&cli)
            .arg("--version")
            .output()
            .expect("run under qemu");
        assert!(
            out.status.success(),
            "{}: {}",
            t.triple,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("edgesense "),
            "{}",
            t.triple
        );
    }
}
