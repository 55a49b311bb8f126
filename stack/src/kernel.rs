//! What a node's kernel can do for Docker's encrypted overlay (`--opt encrypted`).
//!
//! Docker encrypts an overlay's VXLAN traffic with IPsec ESP in transport mode,
//! `rfc4106(gcm(aes))`, between every pair of nodes. Its own check at network creation only
//! loads `xfrm_user` and looks for `NETLINK_XFRM`: on a kernel without ESP or GCM the network
//! comes up, dockerd logs `Failed Adding rSA` per peer, and the nodes' traffic on it is dropped
//! without an error anywhere a user looks. So edgesense checks the kernel itself, reading what
//! needs no root and loads nothing:
//!
//! 1. `/sys/module/<name>`: loaded, or built in with parameters;
//! 2. `/lib/modules/$(uname -r)/modules.builtin`: built in;
//! 3. `/lib/modules/$(uname -r)/kernel/<dir>/<name>.ko*`: loadable (dockerd loads it);
//! 4. the kernel's own config: `/proc/config.gz` (CONFIG_IKCONFIG_PROC) or
//!    `/boot/config-$(uname -r)`: `=y` or `=m`.
//!
//! The first source that answers decides.

use std::{io::Read, path::Path};

use crate::doctor::{Check, Status};

/// A kernel feature: its module name, where the module lives, its config symbol.
struct Feature {
    module: &'static str,
    dir: &'static str,
    config: &'static str,
}

/// ESP (`esp4`) and GCM (`gcm`): both needed for `rfc4106(gcm(aes))`.
const NEEDED: [Feature; 2] = [
    Feature {
        module: "esp4",
        dir: "net/ipv4",
        config: "CONFIG_INET_ESP",
    },
    Feature {
        module: "gcm",
        dir: "crypto",
        config: "CONFIG_CRYPTO_GCM",
    },
];

fn at(root: &Path, p: &str) -> std::path::PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// The kernel's config text, if it shows it.
fn kernel_config(root: &Path, release: &str) -> Option<String> {
    if let Ok(f) = std::fs::File::open(at(root, "/proc/config.gz")) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    std::fs::read_to_string(at(root, &format!("/boot/config-{release}"))).ok()
}

/// Whether the kernel under `root` has `f`: `Some(how)` or `None`, and `Err(())` when nothing
/// says.
fn has(
    root: &Path,
    release: &str,
    config: Option<&str>,
    f: &Feature,
) -> Result<Option<String>, ()> {
    if at(root, &format!("/sys/module/{}", f.module)).exists() {
        return Ok(Some(format!("{} loaded", f.module)));
    }
    let modules = at(root, &format!("/lib/modules/{release}"));
    if let Ok(builtin) = std::fs::read_to_string(modules.join("modules.builtin")) {
        if builtin
            .lines()
            .any(|l| l.ends_with(&format!("/{}.ko", f.module)))
        {
            return Ok(Some(format!("{} built in", f.module)));
        }
        let dir = modules.join("kernel").join(f.dir);
        let loadable = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}.ko", f.module))
            });
        return Ok(loadable.then(|| format!("{} module", f.module)));
    }
    let Some(config) = config else {
        return Err(());
    };
    let set = config.lines().find_map(|l| {
        l.strip_prefix(f.config)
            .and_then(|rest| rest.strip_prefix('='))
    });
    Ok(match set {
        Some("y") => Some(format!("{}=y", f.config)),
        Some("m") => Some(format!("{}=m", f.config)),
        _ => None,
    })
}

/// The doctor's check: can this node carry an encrypted overlay?
pub fn esp_check(root: &Path) -> Check {
    let name = "encrypted overlay (IPsec ESP)";
    let release = std::fs::read_to_string(at(root, "/proc/sys/kernel/osrelease"))
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let config = kernel_config(root, &release);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for f in &NEEDED {
        match has(root, &release, config.as_deref(), f) {
            Ok(Some(how)) => found.push(how),
            Ok(None) => missing.push(f.config),
            Err(()) => {
                return Check {
                    check: name,
                    status: Status::Skip,
                    detail: format!(
                        "kernel {release}: no /sys/module, /lib/modules or kernel config to tell"
                    ),
                    fix: None,
                }
            }
        }
    }
    if missing.is_empty() {
        Check {
            check: name,
            status: Status::Pass,
            detail: format!("kernel {release}: {}", found.join(", ")),
            fix: None,
        }
    } else {
        Check {
            check: name,
            status: Status::Warn,
            detail: format!(
                "kernel {release} has no {}: Docker's encrypted overlay would come up and silently drop its traffic",
                missing.join(" and no ")
            ),
            fix: Some("TLS protects every edgesense hop without it; for `stack up --encrypted-overlay` every node needs a kernel with ESP and GCM (Raspberry Pi OS's has them as modules)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, p: &str, text: &str) {
        let p = at(root, p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn modules_config_or_nothing_decide() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(r, "/proc/sys/kernel/osrelease", "6.1.0-rpi7-rpi-v8\n");
        assert_eq!(esp_check(r).status, Status::Skip, "nothing to tell");
        put(
            r,
            "/boot/config-6.1.0-rpi7-rpi-v8",
            "CONFIG_XFRM_USER=y\n# CONFIG_INET_ESP is not set\nCONFIG_CRYPTO_GCM=y\n",
        );
        let c = esp_check(r);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.detail.contains("CONFIG_INET_ESP") && !c.detail.contains("GCM"),
            "{c:?}"
        );
        put(
            r,
            "/lib/modules/6.1.0-rpi7-rpi-v8/modules.builtin",
            "kernel/crypto/gcm.ko\n",
        );
        put(
            r,
            "/lib/modules/6.1.0-rpi7-rpi-v8/kernel/net/ipv4/esp4.ko.xz",
            "",
        );
        let c = esp_check(r);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(
            c.detail.contains("esp4 module") && c.detail.contains("gcm built in"),
            "{c:?}"
        );
    }
}
