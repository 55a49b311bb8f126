//! Provisioning SD cards for edgesense nodes (`edgesense flash`): write a Raspberry Pi OS image
//! safely and make the node join the swarm on first boot.
//!
//! | module | job |
//! |---|---|
//! | [`source`] | the image: `.img`, `.img.xz`, `.zip`, streamed, size known up front where possible |
//! | [`target`] | the card (or a file): refusals — mounted, system disk, too small |
//! | [`write`] | chunked write with SHA-256 per chunk, flush, read back, compare |
//! | [`mbr`], [`boot`] | the partition table, and the FAT boot partition edited in place through fatfs |
//! | [`bootfiles`] | idempotent `config.txt` / `cmdline.txt` edits |
//! | [`setup`], [`cloudinit`], [`secrets`] | the first boot: cloud-init or firstrun.sh, Docker, swarm join, agent |

pub mod boot;
pub mod bootfiles;
pub mod cloudinit;
pub mod error;
pub mod mbr;
pub mod secrets;
pub mod setup;
pub mod source;
pub mod target;
pub mod write;

use std::path::Path;

pub use error::{FlashError, Result};

/// An image and a target that passed every check.
#[derive(Debug)]
pub struct Checked {
    pub source: source::Source,
    pub target: target::Target,
}

/// Opens the image and checks the target against it and the mount table `mounts`; nothing is
/// written. With `need_boot` (the card will be customised) an image without a FAT boot
/// partition is refused too.
pub fn check(image: &Path, target_path: &Path, mounts: &Path, need_boot: bool) -> Result<Checked> {
    let source = source::open(image)?;
    if need_boot {
        // The partition table is in the first sector.
        let head = source.head(512)?;
        boot::find_boot_in(&mut std::io::Cursor::new(head)).map_err(|e| FlashError::Image {
            path: image.to_owned(),
            what: e.to_string(),
        })?;
    }
    let target = target::inspect(target_path)?;
    target::check(&target, source.size, mounts)?;
    Ok(Checked { source, target })
}

/// What a flash did.
#[derive(Debug)]
pub struct Report {
    pub written: write::Written,
    pub verified: bool,
    /// The first-boot mechanism and the boot files written, when the card was customised.
    pub customised: Option<(setup::Mechanism, Vec<String>)>,
}

/// Writes the image, verifies it, then customises the boot partition with `setup`.
pub fn flash(
    c: &Checked,
    setup: Option<&setup::Setup>,
    verify: bool,
    progress: &mut dyn FnMut(write::Progress),
) -> Result<Report> {
    if let Some(s) = setup {
        s.validate()?;
    }
    let is_block = c.target.is_block();
    let written = c
        .source
        .read_with(|r| write::write(r, &c.target.path, is_block, c.source.size, progress))?;
    if verify {
        write::verify(&c.target.path, &written, progress)?;
    }
    let customised = setup.map(|s| customise(&c.target.path, s)).transpose()?;
    Ok(Report {
        written,
        verified: verify,
        customised,
    })
}

/// Customises the boot partition of an image already on `path` (also usable on its own, e.g.
/// to re-run with other settings: the edits are idempotent).
pub fn customise(path: &Path, s: &setup::Setup) -> Result<(setup::Mechanism, Vec<String>)> {
    let mut f = boot::open_rw(path)?;
    let b = boot::Boot::open(&mut f)?;
    let mechanism = setup::detect(&b)?;
    let files = setup::apply(&b, s, &mechanism)?;
    b.close()?;
    f.sync_all()
        .map_err(error::io(format!("flush {}", path.display())))?;
    Ok((mechanism, files))
}
