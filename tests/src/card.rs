//! SD-card images for `edgesense flash`, built with independent tools (sfdisk, mtools'
//! mformat/mcopy, mke2fs) the way Raspberry Pi OS lays them out, and read back with mtools.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Where the FAT boot partition and the ext4 root start in [`build_image`]'s images.
pub const BOOT_OFFSET: u64 = 8192 * 512;
pub const ROOT_OFFSET: u64 = 90112 * 512;

/// `bash -euo pipefail -c script`, asserting success; its stdout.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub const CONFIG_TXT: &str = "# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\nauto_initramfs=1\ndtoverlay=vc4-kms-v3d\nmax_framebuffers=2\ndisable_fw_kms_setup=1\narm_64bit=1\ndisable_overscan=1\narm_boost=1\n\n[cm4]\notg_mode=1\n\n[all]\n";
pub const CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4308fded-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";

/// A 64 MiB Raspberry Pi OS-like image; `cloud_init` adds the NoCloud files of newer images.
pub fn build_image(dir: &Path, name: &str, cloud_init: bool) -> PathBuf {
    let img = dir.join(name);
    let files = dir.join(format!("{name}.files"));
    std::fs::create_dir_all(&files).unwrap();
    let mut boot: Vec<(&str, String)> = vec![
        ("config.txt", CONFIG_TXT.into()),
        ("cmdline.txt", CMDLINE.into()),
        ("issue.txt", "Raspberry Pi reference 2024-11-19\nGenerated using pi-gen, https://github.com/RPi-Distro/pi-gen, bookworm\n".into()),
        ("kernel8.img", "not a kernel".into()),
    ];
    if cloud_init {
        boot.push((
            "user-data",
            "#cloud-config\nhostname: raspberrypi\nmanage_etc_hosts: true\n".into(),
        ));
        boot.push(("network-config", "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      optional: true\n".into()));
        boot.push(("meta-data", "instance-id: rpios-image\n".into()));
    }
    for (n, c) in &boot {
        std::fs::write(files.join(n), c).unwrap();
    }
    let copies: Vec<String> = boot
        .iter()
        .map(|(n, _)| {
            format!(
                "mcopy -i '{img}@@{BOOT_OFFSET}' '{f}' ::{n}",
                img = img.display(),
                f = files.join(n).display()
            )
        })
        .collect();
    sh(&format!(
        "truncate -s 64M '{img}'\n\
         printf 'label: dos\\nstart=8192, size=81920, type=c\\nstart=90112, type=83\\n' | sfdisk -q '{img}'\n\
         mformat -i '{img}@@{BOOT_OFFSET}' -T 81920 -h 64 -s 32 -F -v bootfs ::\n\
         {copies}\n\
         mke2fs -q -t ext4 -E offset={ROOT_OFFSET} -F '{img}' 20M\n",
        img = img.display(),
        copies = copies.join("\n")
    ));
    img
}

/// The content of `file` on the boot partition of `img`.
pub fn mtype(img: &Path, file: &str) -> String {
    sh(&format!(
        "mtype -i '{}@@{BOOT_OFFSET}' ::{file}",
        img.display()
    ))
}
