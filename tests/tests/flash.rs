//! `edgesense flash` on realistic images built here with independent tools (sfdisk, mtools'
//! mformat/mcopy, mke2fs: an MBR, a FAT32 `bootfs` with the stock firmware files, an ext4 root),
//! packed as .img, .img.xz (xz) and .zip (Python's zipfile), written to files and loop devices.
//! The result is read back with mtools (`mtype -i file@@offset`), `user-data` is validated by
//! cloud-init's own schema check, hashes and PSKs are checked with Python's crypt/hashlib, and the
//! card is searched for the clear-text secrets.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use edgesense_tests::{
    card::{build_image, mtype, sh, BOOT_OFFSET, CONFIG_TXT, ROOT_OFFSET},
    cli_bin, TestFleet,
};
use sha2_check::sha256_file;

const PASSWORD: &str = "correct horse battery";
const WIFI_PASS: &str = "wifi-secret-4242";
const SWARM_TOKEN: &str =
    "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx";

/// Hashing without another dependency: `sha256sum`.
mod sha2_check {
    use std::{path::Path, process::Command};

    pub fn sha256_file(p: &Path, offset: u64, len: Option<u64>) -> String {
        let script = match len {
            Some(l) => format!(
                "tail -c +{} '{}' | head -c {l} | sha256sum",
                offset + 1,
                p.display()
            ),
            None => format!("tail -c +{} '{}' | sha256sum", offset + 1, p.display()),
        };
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_owned()
    }
}

fn flash(args: &[&str]) -> Output {
    Command::new(cli_bin())
        .arg("flash")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edgesense flash")
}

fn ok(args: &[&str]) -> String {
    let o = flash(args);
    assert!(
        o.status.success(),
        "flash {args:?}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(args: &[&str], why: &str) {
    let o = flash(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "flash {args:?} should fail");
    assert!(
        err.contains(why),
        "flash {args:?}: expected {why:?} in: {err}"
    );
}

/// Debian's Python (with python3-yaml from cloud-init's dependencies, and crypt).
fn python(script: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-W", "ignore", "-c", script])
        .output()
        .expect("/usr/bin/python3");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn secrets(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let wifi = dir.join("wifi");
    std::fs::write(&wifi, format!("{WIFI_PASS}\n")).unwrap();
    let swarm = dir.join("swarm-token");
    std::fs::write(&swarm, format!("{SWARM_TOKEN}\n")).unwrap();
    let key = dir.join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc7yTbzQ0wJ4J5Q1X9j4zq8ClTo4dN8gP1G2e0+aBcD me@laptop\n").unwrap();
    let agent = dir.join("agent.toml");
    std::fs::write(
        &agent,
        "sensors = \"auto\"\n[[led]]\nname = \"red\"\npin = 17\n",
    )
    .unwrap();
    (pw, wifi, swarm, key, agent)
}

/// The card must not hold the clear-text secrets anywhere.
fn assert_no_clear_secrets(card: &Path) {
    let bytes = std::fs::read(card).unwrap();
    for secret in [PASSWORD, WIFI_PASS] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} found in clear on the card"
        );
    }
}

#[test]
fn cloud_init_image_xz_gets_a_valid_merged_cloud_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = build_image(d, "cloud.img", true);
    let original_root = sha256_file(&img, ROOT_OFFSET, None);
    let original_mbr = sha256_file(&img, 0, Some(512));
    sh(&format!("xz -T1 -1 -k '{}'", img.display()));
    let xz = d.join("cloud.img.xz");
    let (pw, wifi, swarm, key, agent) = secrets(d);
    let user_data = d.join("mine.yml");
    std::fs::write(
        &user_data,
        "#cloud-config\npackages: [vim]\nlocale: en_GB.UTF-8\nruncmd:\n  - [touch, /root/mine]\n",
    )
    .unwrap();
    // The agent/ directory `stack up` writes on the manager (the CLI's own code makes it).
    let fleet = TestFleet::new(d, "flash-card-token-1234");
    let bundle = fleet.bundle();
    let card = d.join("card.img");
    let out = ok(&[
        "--agent-credentials",
        bundle.to_str().unwrap(),
        xz.to_str().unwrap(),
        "--to",
        card.to_str().unwrap(),
        "--hostname",
        "pi-kitchen",
        "--user",
        "pi",
        "--password-file",
        pw.to_str().unwrap(),
        "--ssh-key",
        key.to_str().unwrap(),
        "--wifi-ssid",
        "Home Net",
        "--wifi-password-file",
        wifi.to_str().unwrap(),
        "--wifi-country",
        "de",
        "--timezone",
        "Europe/Berlin",
        "--swarm-join",
        "10.0.0.2:2377",
        "--swarm-token-file",
        swarm.to_str().unwrap(),
        "--agent-config",
        agent.to_str().unwrap(),
        "--user-data",
        user_data.to_str().unwrap(),
        "--dht-pin",
        "17",
        "--agent-image",
        "10.0.0.2:5000/edgesense/agent:0.1.0",
    ]);
    assert!(out.contains("verified"), "{out}");
    assert!(out.contains("CloudInit"), "{out}");
    // Outside the boot partition the card is the image, byte for byte.
    assert_eq!(sha256_file(&card, ROOT_OFFSET, None), original_root);
    assert_eq!(sha256_file(&card, 0, Some(512)), original_mbr);

    let config = mtype(&card, "config.txt");
    assert!(
        config.starts_with(CONFIG_TXT.trim_end()),
        "stock lines kept:\n{config}"
    );
    for line in [
        "dtoverlay=w1-gpio,gpiopin=4",
        "dtparam=i2c_arm=on",
        "dtoverlay=dht11,gpiopin=17",
    ] {
        assert_eq!(
            config.lines().filter(|l| *l == line).count(),
            1,
            "{line}:\n{config}"
        );
    }
    let cmdline = mtype(&card, "cmdline.txt");
    assert_eq!(cmdline.lines().count(), 1);
    assert!(cmdline.contains("rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot cgroup_enable=memory cgroup_memory=1"), "{cmdline}");
    assert!(
        !cmdline.contains("systemd.run"),
        "cloud-init images need no firstrun: {cmdline}"
    );

    let ud = d.join("user-data");
    std::fs::write(&ud, mtype(&card, "user-data")).unwrap();
    let schema = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&ud)
        .output()
        .expect("cloud-init (Debian's cloud-init package)");
    assert!(
        schema.status.success(),
        "cloud-init schema: {}{}",
        String::from_utf8_lossy(&schema.stdout),
        String::from_utf8_lossy(&schema.stderr)
    );
    let nc = d.join("network-config");
    std::fs::write(&nc, mtype(&card, "network-config")).unwrap();
    let md = d.join("meta-data");
    std::fs::write(&md, mtype(&card, "meta-data")).unwrap();
    let checks = python(&format!(
        r##"
import yaml, crypt, hashlib
ud = yaml.safe_load(open("{ud}"))
assert open("{ud}").readline().strip() == "#cloud-config"
assert ud["hostname"] == "pi-kitchen", ud
assert ud["timezone"] == "Europe/Berlin"
u = ud["users"][0]
assert u["name"] == "pi" and u["lock_passwd"] is False
assert crypt.crypt("{pw}", u["passwd"]) == u["passwd"], "the hash is of the password"
assert u["ssh_authorized_keys"][0].startswith("ssh-ed25519 AAAAC3")
assert ud["packages"] == ["vim"] and ud["locale"] == "en_GB.UTF-8", "the user's own keys are kept"
assert ud["runcmd"][0] == ["touch", "/root/mine"]
assert ud["runcmd"][1] == ["bash", "/boot/firmware/edgesense/firstboot.sh"]
nc = yaml.safe_load(open("{nc}"))["network"]
assert nc["version"] == 2 and nc["ethernets"]["eth0"]["dhcp4"] is True, "the image's ethernet kept"
w = nc["wifis"]["wlan0"]
assert w["regulatory-domain"] == "DE"
psk = hashlib.pbkdf2_hmac("sha1", b"{wp}", b"Home Net", 4096, 32).hex()
assert w["access-points"]["Home Net"]["password"] == psk
md = yaml.safe_load(open("{md}"))
assert md["instance-id"] == "edgesense-pi-kitchen"
print("ok")
"##,
        ud = ud.display(),
        nc = nc.display(),
        md = md.display(),
        pw = PASSWORD,
        wp = WIFI_PASS
    ));
    assert_eq!(checks, "ok");

    let firstboot = mtype(&card, "edgesense/firstboot.sh");
    let fb = d.join("firstboot.sh");
    std::fs::write(&fb, &firstboot).unwrap();
    sh(&format!("bash -n '{}'", fb.display()));
    assert!(firstboot.contains(
        "docker swarm join --token \"$(cat /etc/edgesense/swarm-token)\" '10.0.0.2:2377'"
    ));
    assert!(
        firstboot.contains("'10.0.0.2:5000/edgesense/agent:0.1.0'"),
        "{firstboot}"
    );
    assert!(firstboot.contains("'--cap-drop'\n    'ALL'"), "{firstboot}");
    assert_eq!(mtype(&card, "edgesense/swarm-token").trim(), SWARM_TOKEN);
    // The fleet's credentials, for first boot to move to /etc/edgesense and shred.
    for f in ["ca.crt", "agent.pem", "alertmanager.password", "token"] {
        assert_eq!(
            mtype(&card, &format!("edgesense/{f}")).trim(),
            std::fs::read_to_string(bundle.join(f)).unwrap().trim(),
            "{f}"
        );
    }
    for flag in [
        "'--tls-cert'",
        "'--tls-ca'",
        "'--alertmanager-password-file'",
    ] {
        assert!(firstboot.contains(flag), "{flag}: {firstboot}");
    }
    assert!(mtype(&card, "edgesense/agent.toml").contains("sensors = \"auto\""));
    assert_no_clear_secrets(&card);

    // Flashing a card made this way again adds nothing twice.
    let again = d.join("again.img");
    ok(&[
        card.to_str().unwrap(),
        "--to",
        again.to_str().unwrap(),
        "--dht-pin",
        "17",
        "--no-agent",
    ]);
    let config2 = mtype(&again, "config.txt");
    assert_eq!(config2.matches("# --- edgesense").count(), 1, "{config2}");
    assert_eq!(
        config2
            .lines()
            .filter(|l| *l == "dtparam=i2c_arm=on")
            .count(),
        1
    );
    assert_eq!(
        mtype(&again, "cmdline.txt")
            .matches("cgroup_enable=memory")
            .count(),
        1
    );
}

#[test]
fn older_image_zip_gets_firstrun_userconf_and_cmdline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = build_image(d, "bookworm.img", false);
    let zip = d.join("bookworm.zip");
    python(&format!(
        "import zipfile\nwith zipfile.ZipFile('{}', 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write('{}', 'bookworm.img')",
        zip.display(),
        img.display()
    ));
    let (pw, wifi, swarm, key, _) = secrets(d);
    let card = d.join("card.img");
    let out = ok(&[
        zip.to_str().unwrap(),
        "--to",
        card.to_str().unwrap(),
        "--hostname",
        "pi-shed",
        "--user",
        "ops",
        "--password-file",
        pw.to_str().unwrap(),
        "--ssh-key",
        key.to_str().unwrap(),
        "--wifi-ssid",
        "Shed",
        "--wifi-password-file",
        wifi.to_str().unwrap(),
        "--wifi-country",
        "GB",
        "--swarm-join",
        "10.0.0.2:2377",
        "--swarm-token-file",
        swarm.to_str().unwrap(),
    ]);
    assert!(out.contains("zip: bookworm.img"), "{out}");
    assert!(out.contains("Firstrun"), "{out}");
    let cmdline = mtype(&card, "cmdline.txt");
    assert!(cmdline.trim_end().ends_with("systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"), "{cmdline}");
    let firstrun = mtype(&card, "firstrun.sh");
    let fr = d.join("firstrun.sh");
    std::fs::write(&fr, &firstrun).unwrap();
    sh(&format!("bash -n '{}'", fr.display()));
    assert!(firstrun.contains("set_hostname 'pi-shed'"));
    let psk = python(&format!("import hashlib; print(hashlib.pbkdf2_hmac('sha1', b'{WIFI_PASS}', b'Shed', 4096, 32).hex())"));
    assert!(
        firstrun.contains(&format!("set_wlan 'Shed' '{psk}' 'GB'")),
        "{firstrun}"
    );
    assert!(firstrun.contains("systemctl enable edgesense-firstboot.service"));
    let userconf = mtype(&card, "userconf.txt");
    let (user, hash) = userconf.trim().split_once(':').unwrap();
    assert_eq!(user, "ops");
    assert_eq!(
        python(&format!(
            "import crypt; print(crypt.crypt('{PASSWORD}', '{hash}') == '{hash}')"
        )),
        "True"
    );
    assert!(
        mtype(&card, "edgesense/firstboot.sh").contains("authorized_keys"),
        "keys installed after userconfig"
    );
    sh(&format!(
        "mtype -i '{}@@{BOOT_OFFSET}' ::ssh",
        card.display()
    ));
    assert_no_clear_secrets(&card);

    // --user-data needs cloud-init: refused, and said so.
    let ud = d.join("u.yml");
    std::fs::write(&ud, "#cloud-config\npackages: [vim]\n").unwrap();
    refused(
        &[
            img.to_str().unwrap(),
            "--to",
            d.join("x.img").to_str().unwrap(),
            "--user-data",
            ud.to_str().unwrap(),
            "--no-agent",
        ],
        "needs an image with cloud-init",
    );
}

fn losetup(file: &Path) -> String {
    sh(&format!("losetup --find --show '{}'", file.display()))
        .trim()
        .to_owned()
}

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn bad_input_is_refused_and_the_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = build_image(d, "good.img", false);
    let target = d.join("target.img");
    std::fs::write(&target, b"precious").unwrap();
    let t = target.to_str().unwrap();
    let untouched = || {
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"precious",
            "target untouched"
        )
    };

    // Truncated xz.
    sh(&format!(
        "xz -T1 -1 -c '{}' > '{}/good.img.xz'",
        img.display(),
        d.display()
    ));
    let xz = std::fs::read(d.join("good.img.xz")).unwrap();
    std::fs::write(d.join("cut.img.xz"), &xz[..xz.len() / 2]).unwrap();
    refused(
        &[d.join("cut.img.xz").to_str().unwrap(), "--to", t],
        "truncated",
    );
    untouched();
    // A zip with two images.
    python(&format!(
        "import zipfile\nwith zipfile.ZipFile('{d}/two.zip', 'w') as z:\n    z.writestr('a.img', b'x')\n    z.writestr('b.img', b'y')",
        d = d.display()
    ));
    refused(
        &[d.join("two.zip").to_str().unwrap(), "--to", t],
        "2 images",
    );
    untouched();
    // An image with no FAT partition.
    let nofat = d.join("nofat.img");
    sh(&format!(
        "truncate -s 8M '{0}' && printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk -q '{0}'",
        nofat.display()
    ));
    refused(&[nofat.to_str().unwrap(), "--to", t], "no FAT partition");
    untouched();
    // A mounted target (through the mount table).
    let table = d.join("mounts");
    std::fs::write(
        &table,
        format!(
            "proc /proc proc rw 0 0\n{} /mnt/card vfat rw 0 0\n",
            target.display()
        ),
    )
    .unwrap();
    refused(
        &[
            img.to_str().unwrap(),
            "--to",
            t,
            "--mounts-table",
            table.to_str().unwrap(),
        ],
        "mounted",
    );
    untouched();
    // A dry run writes nothing.
    let out = ok(&[img.to_str().unwrap(), "--to", t, "--dry-run"]);
    assert!(out.contains("dry run: nothing written"), "{out}");
    untouched();

    // Block devices: loop devices stand in for SD cards.
    let small = d.join("small.bin");
    std::fs::write(&small, vec![0u8; 16 << 20]).unwrap();
    let small_dev = Loop(losetup(&small));
    refused(
        &[img.to_str().unwrap(), "--to", &small_dev.0, "--yes"],
        "too small",
    );
    assert!(
        std::fs::read(&small).unwrap().iter().all(|b| *b == 0),
        "small device untouched"
    );
    let big = d.join("big.bin");
    std::fs::write(&big, vec![0u8; 80 << 20]).unwrap();
    let big_dev = Loop(losetup(&big));
    refused(
        &[img.to_str().unwrap(), "--to", &big_dev.0],
        "confirm with --yes",
    );
    let name = big_dev.0.trim_start_matches("/dev/");
    std::fs::write(&table, format!("/dev/{name}p2 / ext4 rw 0 0\n")).unwrap();
    refused(
        &[
            img.to_str().unwrap(),
            "--to",
            &big_dev.0,
            "--yes",
            "--mounts-table",
            table.to_str().unwrap(),
        ],
        "holds the running system",
    );
    assert!(
        std::fs::read(&big).unwrap().iter().all(|b| *b == 0),
        "big device untouched"
    );
    let out = ok(&[
        img.to_str().unwrap(),
        "--to",
        &big_dev.0,
        "--yes",
        "--no-agent",
    ]);
    assert!(
        out.contains("loop device"),
        "shows what the device is: {out}"
    );
    assert!(mtype(&big, "config.txt").contains("dtoverlay=w1-gpio"));
}
