//! The multi-platform agent image (stack/images/build-multiarch.sh) pushed to a real local
//! registry (Debian's docker-registry) on the isolated test dockerd: one name, a manifest list for
//! linux/amd64, arm64, arm/v7 and arm/v6, each platform's image holding that platform's binary.

use std::{net::SocketAddr, process::Command, time::Duration};

use edgesense_tests::{
    docker::{docker, docker_host},
    free_port, which, workspace, Daemon,
};

#[test]
fn one_name_serves_every_platform_from_a_registry() {
    let _dockerd = edgesense_tests::docker::hold();
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cfg = dir.path().join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let registry = which("docker-registry").expect("docker-registry (Debian's docker-registry)");
    let mut cmd = Command::new(registry);
    cmd.arg("serve").arg(&cfg);
    let mut reg = Daemon::start("docker-registry", cmd);
    reg.wait_ready(
        &edgesense_tests::Endpoint::plain(addr),
        "/v2/",
        Duration::from_secs(30),
    );

    let out = Command::new(workspace().join("stack/images/build-multiarch.sh"))
        .args([&addr.to_string(), "e2e"])
        .env("DOCKER_HOST", docker_host())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    for platform in ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("\t{platform}\t")))
            .unwrap_or_else(|| panic!("{platform} built: {stdout}"));
        let bytes: u64 = line
            .rsplit('\t')
            .next()
            .and_then(|s| s.trim_end_matches(" bytes").parse().ok())
            .unwrap();
        assert!(bytes < 4_000_000, "{platform}: {bytes} bytes");
    }

    let list = format!("{addr}/edgesense/agent:e2e");
    let manifest: serde_json::Value =
        serde_json::from_str(&docker(&["manifest", "inspect", "--insecure", &list])).unwrap();
    let mut platforms: Vec<String> = manifest["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or(""),
                p["variant"]
                    .as_str()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        ["linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64"]
    );

    // A Pi Zero pulling the one name gets the ARMv6 binary.
    docker(&["pull", "-q", "--platform", "linux/arm/v6", &list]);
    let arch = docker(&[
        "image",
        "inspect",
        &list,
        "--format",
        "{{.Architecture}}/{{.Variant}}",
    ]);
    assert_eq!(arch.trim(), "arm/v6");
    let c = docker(&["create", &list]);
    let c = c.trim();
    let bin = dir.path().join("agent-armv6");
    docker(&[
        "cp",
        &format!("{c}:/bin/edgesense-agent"),
        bin.to_str().unwrap(),
    ]);
    docker(&["rm", c]);
    let attrs = Command::new("readelf")
        .arg("-A")
        .arg(&bin)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&attrs.stdout).contains("Tag_CPU_arch: v6"),
        "the arm/v6 image holds the ARMv6 build"
    );

    // This (amd64) node gets its own and runs it.
    docker(&["pull", "-q", "--platform", "linux/amd64", &list]);
    let version = docker(&["run", "--rm", &list, "--version"]);
    assert!(version.starts_with("edgesense-agent "), "{version}");
}
