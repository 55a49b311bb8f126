//! The image to write: a raw `.img`, an `.img.xz`, or a `.zip` holding exactly one `.img`,
//! always streamed (never unpacked to disk), with its uncompressed size when it can be known
//! up front.

use std::{
    fs::File,
    io::{self, BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use crate::error::{FlashError, Result};

/// How the image is packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    Raw,
    Xz,
    Zip,
}

/// An image, inspected but not yet read.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub packing: Packing,
    /// Bytes of the raw image, when known before reading it all (`.img`, `.zip`, and `.xz` files
    /// whose index gives it).
    pub size: Option<u64>,
    /// For a zip: the name of the image inside.
    pub inner_name: Option<String>,
    zip_index: Option<usize>,
}

impl Source {
    /// Runs `f` on the raw image bytes, decompressed as they are read.
    pub fn read_with<T>(&self, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
        let io = |e: io::Error| bad(&self.path, e.to_string());
        let file = File::open(&self.path).map_err(io)?;
        match self.packing {
            Packing::Raw => f(&mut BufReader::with_capacity(1 << 20, file)),
            Packing::Xz => {
                // Images packed with `xz -T` have several blocks: decode two at a time.
                let decoder = lzma_rust2::XzReaderMt::new(file, true, 2)
                    .map_err(|e| bad(&self.path, format!("xz: {e}")))?;
                f(&mut XzErrors {
                    inner: decoder,
                    path: self.path.clone(),
                })
            }
            Packing::Zip => {
                let mut archive = zip::ZipArchive::new(file)
                    .map_err(|e| bad(&self.path, format!("not a readable zip: {e}")))?;
                let mut entry = archive
                    .by_index(self.zip_index.unwrap_or(0))
                    .map_err(|e| bad(&self.path, e.to_string()))?;
                f(&mut entry)
            }
        }
    }
}

const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
const ZIP_MAGIC: [u8; 4] = [b'P', b'K', 3, 4];

fn bad(path: &Path, what: impl Into<String>) -> FlashError {
    FlashError::Image {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Opens `path`, recognising the packing by its first bytes (not its name).
pub fn open(path: &Path) -> Result<Source> {
    let io = |e: io::Error| bad(path, e.to_string());
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut file, &mut magic).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if n == 6 && magic == XZ_MAGIC {
        if !xz_has_footer(&mut file).map_err(io)? {
            return Err(bad(
                path,
                "truncated: the xz stream has no end (download incomplete?); download it again",
            ));
        }
        let size = xz_uncompressed_size(&mut file).ok().flatten();
        return Ok(Source {
            path: path.to_owned(),
            packing: Packing::Xz,
            size,
            inner_name: None,
            zip_index: None,
        });
    }
    if n >= 4 && magic[..4] == ZIP_MAGIC {
        return open_zip(path, file);
    }
    let size = file.metadata().map_err(io)?.len();
    if size == 0 {
        return Err(bad(path, "the image is empty"));
    }
    Ok(Source {
        path: path.to_owned(),
        packing: Packing::Raw,
        size: Some(size),
        inner_name: None,
        zip_index: None,
    })
}

fn read_up_to(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn open_zip(path: &Path, file: File) -> Result<Source> {
    let archive =
        zip::ZipArchive::new(file).map_err(|e| bad(path, format!("not a readable zip: {e}")))?;
    let images: Vec<(usize, String)> = (0..archive.len())
        .filter_map(|i| {
            let f = archive.name_for_index(i)?.ok()?.into_owned();
            f.to_ascii_lowercase().ends_with(".img").then_some((i, f))
        })
        .collect();
    let (index, name) = match images.as_slice() {
        [(i, n)] => (*i, n.clone()),
        [] => return Err(bad(path, "the zip holds no .img file")),
        more => {
            let names: Vec<&str> = more.iter().map(|(_, n)| n.as_str()).collect();
            return Err(bad(
                path,
                format!(
                    "the zip holds {} images ({}); unzip it and give the one to write",
                    more.len(),
                    names.join(", ")
                ),
            ));
        }
    };
    let mut archive = archive;
    let size = archive
        .by_index(index)
        .map_err(|e| bad(path, e.to_string()))?
        .size();
    Ok(Source {
        path: path.to_owned(),
        packing: Packing::Zip,
        size: Some(size),
        inner_name: Some(name),
        zip_index: Some(index),
    })
}

impl Source {
    /// The first `n` bytes of the raw image (fewer if it is shorter).
    pub fn head(&self, n: usize) -> Result<Vec<u8>> {
        self.read_with(|r| {
            let mut buf = vec![0u8; n];
            let k = read_up_to(r, &mut buf).map_err(|e| bad(&self.path, e.to_string()))?;
            buf.truncate(k);
            Ok(buf)
        })
    }
}

/// Names xz errors after the file (a truncated download is the usual cause).
struct XzErrors<R> {
    inner: R,
    path: PathBuf,
}

impl<R: Read> Read for XzErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: xz data is corrupt or truncated ({e}); download the image again",
                    self.path.display()
                ),
            )
        })
    }
}

/// True if the file ends with an xz stream footer (its last two bytes are `YZ`,
/// xz-file-format.txt 2.1.2.4), which a truncated download lacks.
fn xz_has_footer(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len < 12 {
        return Ok(false);
    }
    let mut magic = [0u8; 2];
    file.seek(SeekFrom::End(-2))?;
    file.read_exact(&mut magic)?;
    Ok(&magic == b"YZ")
}

/// Reads a variable-length integer of the xz format (xz-file-format.txt, section 1.2).
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The uncompressed size recorded in the index of a single-stream `.xz` file
/// (xz-file-format.txt: stream footer 2.1.2.4 gives the index size; the index, section 4, lists
/// each block's unpadded and uncompressed sizes). `None` for what this does not handle
/// (several streams, stream padding): the size is then unknown until the end.
pub fn xz_uncompressed_size(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len < 32 {
        return Ok(None);
    }
    let mut footer = [0u8; 12];
    file.seek(SeekFrom::End(-12))?;
    file.read_exact(&mut footer)?;
    if &footer[10..12] != b"YZ" {
        return Ok(None);
    }
    let backward = u64::from(u32::from_le_bytes([
        footer[4], footer[5], footer[6], footer[7],
    ]));
    let index_size = (backward + 1) * 4;
    if index_size + 12 + 12 > len {
        return Ok(None);
    }
    let mut index = vec![0u8; usize::try_from(index_size).map_err(io::Error::other)?];
    file.seek(SeekFrom::End(
        -12 - i64::try_from(index_size).map_err(io::Error::other)?,
    ))?;
    file.read_exact(&mut index)?;
    if index.first() != Some(&0) {
        return Ok(None);
    }
    let mut pos = 1;
    let Some(records) = varint(&index, &mut pos) else {
        return Ok(None);
    };
    let mut total: u64 = 0;
    for _ in 0..records {
        let (Some(_unpadded), Some(uncompressed)) =
            (varint(&index, &mut pos), varint(&index, &mut pos))
        else {
            return Ok(None);
        };
        total = total.saturating_add(uncompressed);
    }
    // The stream must start right where this index says (no second stream before it).
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn raw_xz_and_zip_read_the_same_bytes_with_sizes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.img");
        std::fs::write(&raw, &data).unwrap();
        let xzp = dir.path().join("a.img.xz");
        std::fs::write(&xzp, xz(&data)).unwrap();
        let zp = dir.path().join("a.zip");
        {
            let mut z = zip::ZipWriter::new(File::create(&zp).unwrap());
            z.start_file("readme.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b"hi").unwrap();
            z.start_file(
                "raspios.img",
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
            z.write_all(&data).unwrap();
            z.finish().unwrap();
        }
        for (p, packing) in [
            (&raw, Packing::Raw),
            (&xzp, Packing::Xz),
            (&zp, Packing::Zip),
        ] {
            let s = open(p).unwrap();
            assert_eq!(s.packing, packing);
            assert_eq!(s.size, Some(data.len() as u64), "{packing:?}");
            let got = s
                .read_with(|r| {
                    let mut v = Vec::new();
                    r.read_to_end(&mut v).map_err(|e| bad(p, e.to_string()))?;
                    Ok(v)
                })
                .unwrap();
            assert!(got == data, "{packing:?}");
        }
    }

    #[test]
    fn bad_images_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 100_000];
        let truncated = dir.path().join("t.img.xz");
        let full = xz(&data);
        std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
        let e = open(&truncated).unwrap_err().to_string();
        assert!(
            e.contains("truncated"),
            "refused before anything is read: {e}"
        );
        // Corrupt in the middle, footer intact: found while reading.
        let mut corrupt = full.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xFF;
        let cp = dir.path().join("c.img.xz");
        std::fs::write(&cp, &corrupt).unwrap();
        let s = open(&cp).unwrap();
        let e = s
            .read_with(|r| {
                r.read_to_end(&mut Vec::new())
                    .map_err(|e| bad(&cp, e.to_string()))
            })
            .unwrap_err();
        assert!(e.to_string().contains("corrupt or truncated"), "{e}");

        let two = dir.path().join("two.zip");
        {
            let mut z = zip::ZipWriter::new(File::create(&two).unwrap());
            for n in ["a.img", "b.img"] {
                z.start_file(n, zip::write::SimpleFileOptions::default())
                    .unwrap();
                z.write_all(b"x").unwrap();
            }
            z.finish().unwrap();
        }
        let e = open(&two).unwrap_err().to_string();
        assert!(e.contains("2 images") && e.contains("a.img"), "{e}");

        let empty = dir.path().join("e.img");
        std::fs::write(&empty, b"").unwrap();
        assert!(open(&empty).unwrap_err().to_string().contains("empty"));
        assert!(open(&dir.path().join("missing.img")).is_err());
    }
}
