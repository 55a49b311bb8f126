//! What is being written to, and whether it may be: a block device (an SD card in a reader) or a
//! file. Refused: anything mounted (the device or one of its partitions, or a file behind a
//! mounted loop device), the disk holding the running system's `/` or `/boot`, and a device
//! smaller than the image.

use std::{
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

use crate::error::{FlashError, Result};

/// The kernel's mount table (`/proc/self/mounts` format: source, mount point, …).
pub const MOUNTS: &str = "/proc/self/mounts";

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A whole disk, e.g. `/dev/sdb` or `/dev/mmcblk0`.
    BlockDevice {
        /// Kernel name (`sdb`).
        name: String,
        size: u64,
        /// Vendor and model, as the kernel reports them.
        model: String,
    },
    /// A regular file (created if missing).
    File { exists: bool, size: u64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub path: PathBuf,
    pub kind: Kind,
}

impl Target {
    pub fn is_block(&self) -> bool {
        matches!(self.kind, Kind::BlockDevice { .. })
    }

    /// "SanDisk SD Ultra, 31.9 GB" / "file, 0 B".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::BlockDevice { model, size, .. } => format!("{model}, {}", human(*size)),
            Kind::File { exists: false, .. } => "new file".into(),
            Kind::File { size, .. } => format!("existing file, {}", human(*size)),
        }
    }
}

/// Bytes as "31.9 GB" (decimal, as card makers count).
pub fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn sysfs(name: &str, attr: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/block/{name}/{attr}"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Looks at `path` without changing anything.
pub fn inspect(path: &Path) -> Result<Target> {
    let err = |what: String| FlashError::Target {
        path: path.to_owned(),
        what,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(err(format!(
                    "directory {} does not exist",
                    parent.display()
                )));
            }
            Ok(Target {
                path: path.to_owned(),
                kind: Kind::File {
                    exists: false,
                    size: 0,
                },
            })
        }
        Err(e) => Err(err(e.to_string())),
        Ok(m) if m.file_type().is_block_device() => {
            let real = std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?;
            let name = real
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if sysfs(&name, "partition").is_some() {
                return Err(err(format!(
                    "{} is a partition; write to the whole card (e.g. {})",
                    real.display(),
                    whole_disk_hint(&name)
                )));
            }
            let sectors: u64 = sysfs(&name, "size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let model = [
                sysfs(&name, "device/vendor"),
                sysfs(&name, "device/model"),
                sysfs(&name, "device/name"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            let model = if model.is_empty() {
                sysfs(&name, "loop/backing_file")
                    .map(|f| format!("loop device on {f}"))
                    .unwrap_or_else(|| "unknown model".into())
            } else {
                model
            };
            Ok(Target {
                path: real,
                kind: Kind::BlockDevice {
                    name,
                    size: sectors * 512,
                    model,
                },
            })
        }
        Ok(m) if m.is_file() => Ok(Target {
            path: std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?,
            kind: Kind::File {
                exists: true,
                size: m.len(),
            },
        }),
        Ok(_) => Err(err("neither a block device nor a regular file".into())),
    }
}

fn whole_disk_hint(part: &str) -> String {
    let trimmed = part.trim_end_matches(|c: char| c.is_ascii_digit());
    let disk = trimmed
        .strip_suffix('p')
        .filter(|d| d.ends_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(trimmed);
    format!("/dev/{disk}")
}

/// True if kernel device name `candidate` is `disk` or one of its partitions
/// (`sdb1` of `sdb`, `mmcblk0p2` of `mmcblk0`, `loop3p1` of `loop3`).
fn is_same_disk(disk: &str, candidate: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(disk) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // A disk whose name ends in a digit numbers its partitions after a `p`.
    let number = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        match rest.strip_prefix('p') {
            Some(n) => n,
            None => return false,
        }
    } else {
        rest
    };
    !number.is_empty() && number.chars().all(|c| c.is_ascii_digit())
}

/// One mount: (source, mount point).
fn mounts(table: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let src = f.next()?.replace("\\040", " ");
            let dst = f.next()?.replace("\\040", " ");
            Some((src, dst))
        })
        .collect()
}

/// The kernel name of `source` if it is a device node (`/dev/sdb1` → `sdb1`).
fn device_name(source: &str) -> Option<String> {
    if !source.starts_with("/dev/") {
        return None;
    }
    let real = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
    real.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Refuses a target that is mounted, holds the running system, or is smaller than `image_size`.
/// `table` is the mount table to consult ([`MOUNTS`] normally).
pub fn check(t: &Target, image_size: Option<u64>, table: &Path) -> Result<()> {
    let err = |what: String| FlashError::Target {
        path: t.path.clone(),
        what,
    };
    let mounts = mounts(table);
    match &t.kind {
        Kind::BlockDevice { name, size, .. } => {
            for (src, dst) in &mounts {
                let Some(dev) = device_name(src) else {
                    continue;
                };
                if !is_same_disk(name, &dev) {
                    continue;
                }
                if ["/", "/boot", "/boot/firmware", "/usr", "/var"].contains(&dst.as_str()) {
                    return Err(err(format!(
                        "holds the running system ({src} is mounted at {dst}); this is the wrong disk"
                    )));
                }
                return Err(err(format!(
                    "{src} is mounted at {dst}; unmount it first (`sudo umount {dst}`)"
                )));
            }
            if let Some(need) = image_size {
                if need > *size {
                    return Err(err(format!(
                        "too small: the image needs {} ({need} bytes), the device has {} ({size} bytes)",
                        human(need),
                        human(*size)
                    )));
                }
            }
        }
        Kind::File { .. } => {
            let path = t.path.to_string_lossy();
            for (src, dst) in &mounts {
                if *src == path || *dst == path {
                    return Err(err(format!(
                        "is mounted ({src} on {dst}); unmount it first"
                    )));
                }
                // A mounted loop device backed by this file.
                if let Some(dev) = device_name(src) {
                    let backing = sysfs(
                        dev.trim_end_matches(|c: char| c.is_ascii_digit())
                            .trim_end_matches('p'),
                        "loop/backing_file",
                    )
                    .or_else(|| sysfs(&dev, "loop/backing_file"));
                    if backing.as_deref() == Some(&*path) {
                        return Err(err(format!(
                            "is mounted through {src} on {dst}; unmount it first"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_belong_to_their_disk() {
        assert!(is_same_disk("sdb", "sdb"));
        assert!(is_same_disk("sdb", "sdb1"));
        assert!(!is_same_disk("sdb", "sdba1"));
        assert!(is_same_disk("mmcblk0", "mmcblk0p2"));
        assert!(!is_same_disk("mmcblk0", "mmcblk01"));
        assert!(is_same_disk("loop3", "loop3p1"));
        assert!(!is_same_disk("loop3", "loop31"));
        assert_eq!(whole_disk_hint("mmcblk0p1"), "/dev/mmcblk0");
        assert_eq!(whole_disk_hint("sdb2"), "/dev/sdb");
    }

    #[test]
    fn mounted_files_are_refused_through_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("card.img");
        std::fs::write(&img, b"x").unwrap();
        let t = inspect(&img).unwrap();
        let table = dir.path().join("mounts");
        std::fs::write(&table, "proc /proc proc rw 0 0\n").unwrap();
        assert!(
            check(&t, Some(10), &table).is_ok(),
            "a file is not too small"
        );
        std::fs::write(
            &table,
            format!("{} /mnt/card vfat rw 0 0\n", t.path.display()),
        )
        .unwrap();
        let e = check(&t, None, &table).unwrap_err().to_string();
        assert!(e.contains("mounted"), "{e}");
    }

    #[test]
    fn a_new_file_needs_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let t = inspect(&dir.path().join("new.img")).unwrap();
        assert_eq!(
            t.kind,
            Kind::File {
                exists: false,
                size: 0
            }
        );
        assert!(inspect(&dir.path().join("no/such/dir.img")).is_err());
        assert_eq!(human(31_914_983_424), "31.9 GB");
    }
}
