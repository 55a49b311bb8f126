//! The boot partition of a written image, edited in place without mounting: the MBR is read
//! ([`crate::mbr`]), the first FAT partition (type 0x0c on Raspberry Pi OS) is opened with fatfs on
//! a window of the target.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    path::Path,
};

use crate::error::{FlashError, Result};

/// MBR partition types of FAT file systems.
const FAT_TYPES: [u8; 6] = [0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e];
const SECTOR: u64 = 512;

/// A byte window `[start, start + len)` of a file, seen as a whole disk.
pub struct Window<'a> {
    file: &'a mut File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let k = self.file.read(&mut buf[..n])?;
        self.pos += k as u64;
        Ok(k)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "end of the partition",
            ));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let k = self.file.write(&buf[..n])?;
        self.pos += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
            SeekFrom::End(d) => i128::from(self.len) + i128::from(d),
        };
        if new < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition",
            ));
        }
        self.pos = u64::try_from(new).map_err(io::Error::other)?;
        Ok(self.pos)
    }
}

/// Where the boot partition is: byte offset and length.
pub fn find_boot(file: &mut File) -> Result<(u64, u64)> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| FlashError::Boot(format!("cannot read the partition table: {e}")))?;
    find_boot_in(file)
}

/// [`find_boot`] on any seekable reader positioned at the start of the image (e.g. the first
/// sector of an image not yet written).
pub fn find_boot_in<R: Read + Seek>(r: &mut R) -> Result<(u64, u64)> {
    let mut sector = [0u8; 512];
    r.read_exact(&mut sector)
        .map_err(|e| FlashError::Boot(format!("cannot read the partition table: {e}")))?;
    let parts = crate::mbr::read(&sector)
        .map_err(|e| FlashError::Boot(format!("{e}; is this a Raspberry Pi OS image?")))?;
    parts
        .iter()
        .find(|p| FAT_TYPES.contains(&p.kind))
        .map(|p| {
            (
                u64::from(p.first_lba) * SECTOR,
                u64::from(p.sectors) * SECTOR,
            )
        })
        .ok_or_else(|| {
            FlashError::Boot(
                "no FAT partition in the image; a Raspberry Pi OS image has its boot files on one"
                    .into(),
            )
        })
}

/// The FAT boot sector's layout adds up before fatfs sees it: its FATs, reserved sectors and
/// root directory fit in the volume. fatfs 0.3 multiplies the FAT count by the FAT size in a
/// `u32` unchecked: a hostile image (the boot_partition fuzz target found one, with overflow
/// checks on) made a debug build panic and a release build compute a wrapped layout.
fn check_boot_sector(b: &[u8; SECTOR as usize]) -> Result<()> {
    let u16_at = |i: usize| u32::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let bytes_per_sector = u16_at(11);
    let reserved = u16_at(14);
    let fats = u32::from(b[16]);
    let root_entries = u16_at(17);
    let total = match u16_at(19) {
        0 => u32_at(32),
        n => n,
    };
    let fat_size = match u16_at(22) {
        0 => u32_at(36),
        n => n,
    };
    let corrupt = |what: String| {
        Err(FlashError::Boot(format!(
            "the FAT boot sector is corrupt: {what}"
        )))
    };
    if bytes_per_sector == 0 {
        return corrupt("0 bytes per sector".into());
    }
    let root_dir = (root_entries * 32).div_ceil(bytes_per_sector);
    let metadata = fats
        .checked_mul(fat_size)
        .and_then(|f| f.checked_add(reserved))
        .and_then(|f| f.checked_add(root_dir));
    match metadata {
        Some(m) if m <= total => Ok(()),
        _ => corrupt(format!(
            "{fats} FATs of {fat_size} sectors, {reserved} reserved and {root_dir} of root directory do not fit in its {total} sectors"
        )),
    }
}

/// The boot partition, open for editing.
pub struct Boot<'a> {
    fs: fatfs::FileSystem<Window<'a>>,
}

impl<'a> Boot<'a> {
    /// Opens the first FAT partition of the image written to `file`.
    pub fn open(file: &'a mut File) -> Result<Boot<'a>> {
        let (start, len) = find_boot(file)?;
        let mut window = Window {
            file,
            start,
            len,
            pos: 0,
        };
        let mut sector = [0u8; SECTOR as usize];
        window
            .read_exact(&mut sector)
            .and_then(|()| window.seek(SeekFrom::Start(0)))
            .map_err(|e| FlashError::Boot(format!("the FAT boot sector cannot be read: {e}")))?;
        check_boot_sector(&sector)?;
        let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new())
            .map_err(|e| FlashError::Boot(format!("the FAT partition cannot be read: {e}")))?;
        Ok(Boot { fs })
    }

    /// The content of `path` (`/`-separated, from the partition root), if it exists.
    pub fn read(&self, path: &str) -> Result<Option<String>> {
        match self.fs.root_dir().open_file(path) {
            Ok(mut f) => {
                let mut s = String::new();
                f.read_to_string(&mut s)
                    .map_err(|e| FlashError::Boot(format!("read {path}: {e}")))?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FlashError::Boot(format!("open {path}: {e}"))),
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.fs.root_dir().open_file(path).is_ok() || self.fs.root_dir().open_dir(path).is_ok()
    }

    /// Creates or replaces `path` with `content`, creating its directory.
    pub fn write(&self, path: &str, content: &[u8]) -> Result<()> {
        let err = |e: io::Error| FlashError::Boot(format!("write {path}: {e}"));
        let root = self.fs.root_dir();
        if let Some((dir, _)) = path.rsplit_once('/') {
            if root.open_dir(dir).is_err() {
                root.create_dir(dir).map_err(err)?;
            }
        }
        let mut f = root.create_file(path).map_err(err)?;
        f.truncate().map_err(err)?;
        f.write_all(content).map_err(err)?;
        f.flush().map_err(err)
    }

    /// The FAT volume label, e.g. `bootfs`.
    pub fn label(&self) -> String {
        self.fs.volume_label().trim().to_owned()
    }

    /// Writes everything back.
    pub fn close(self) -> Result<()> {
        self.fs
            .unmount()
            .map_err(|e| FlashError::Boot(format!("finishing the FAT partition: {e}")))
    }
}

/// Opens `path` read-write for [`Boot::open`].
pub fn open_rw(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(crate::error::io(format!("open {}", path.display())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small image: MBR with a FAT partition at 1 MiB holding `files`.
    pub fn image(dir: &Path, files: &[(&str, &str)]) -> std::path::PathBuf {
        let path = dir.join("test.img");
        let total: u64 = 40 << 20;
        let f = File::create(&path).unwrap();
        f.set_len(total).unwrap();
        drop(f);
        let mut f = open_rw(&path).unwrap();
        f.write_all(&crate::mbr::write(&[(
            0x0c,
            2048,
            ((36 << 20) / 512) as u32,
        )]))
        .unwrap();
        let w = Window {
            file: &mut f,
            start: 2048 * 512,
            len: 36 << 20,
            pos: 0,
        };
        fatfs::format_volume(
            w,
            fatfs::FormatVolumeOptions::new().volume_label(*b"bootfs     "),
        )
        .unwrap();
        let boot = Boot::open(&mut f).unwrap();
        for (p, c) in files {
            boot.write(p, c.as_bytes()).unwrap();
        }
        boot.close().unwrap();
        path
    }

    #[test]
    fn edits_files_in_the_fat_partition_of_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), &[("config.txt", "arm_64bit=1\n")]);
        let mut f = open_rw(&img).unwrap();
        let boot = Boot::open(&mut f).unwrap();
        assert_eq!(boot.label(), "bootfs");
        assert_eq!(
            boot.read("config.txt").unwrap().as_deref(),
            Some("arm_64bit=1\n")
        );
        assert_eq!(boot.read("nope.txt").unwrap(), None);
        boot.write("edgesense/agent.toml", b"node = \"x\"\n")
            .unwrap();
        boot.write("config.txt", b"short\n").unwrap();
        boot.close().unwrap();
        let mut f = open_rw(&img).unwrap();
        let boot = Boot::open(&mut f).unwrap();
        assert_eq!(
            boot.read("config.txt").unwrap().as_deref(),
            Some("short\n"),
            "replaced, not appended"
        );
        assert!(boot.exists("edgesense/agent.toml"));
    }

    #[test]
    fn a_boot_sector_whose_fats_overflow_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), &[("config.txt", "arm_64bit=1\n")]);
        let mut f = open_rw(&img).unwrap();
        // 255 FATs of 2^25 sectors (FAT32's field, the FAT16 one zeroed): 2^33 sectors.
        let bpb = 2048 * 512;
        f.seek(SeekFrom::Start(bpb + 16)).unwrap();
        f.write_all(&[255]).unwrap();
        f.seek(SeekFrom::Start(bpb + 22)).unwrap();
        f.write_all(&[0, 0]).unwrap();
        f.seek(SeekFrom::Start(bpb + 36)).unwrap();
        f.write_all(&(1u32 << 25).to_le_bytes()).unwrap();
        let e = Boot::open(&mut f)
            .err()
            .expect("a corrupt boot sector is refused");
        let e = e.to_string();
        assert!(
            e.contains("corrupt: 255 FATs of 33554432 sectors") && e.contains("do not fit"),
            "{e}"
        );
    }

    #[test]
    fn an_image_without_fat_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blank.img");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let mut f = open_rw(&p).unwrap();
        let e = Boot::open(&mut f).err().unwrap().to_string();
        assert!(e.contains("partition"), "{e}");
    }
}
