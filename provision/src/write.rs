//! Writing the image and proving it arrived: 4 MiB chunks, a SHA-256 per chunk while writing,
//! `fsync`, the page cache for the range dropped, then every chunk read back and compared. A
//! mismatch names the chunk's offset.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::io::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::error::{io, FlashError, Result};

/// Bytes per write and per verified chunk.
pub const CHUNK: usize = 4 << 20;

/// Where a long step stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// `"write"` or `"verify"`.
    pub phase: &'static str,
    pub done: u64,
    pub total: Option<u64>,
    pub elapsed: Duration,
}

impl Progress {
    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// Time left at the current rate, when the total is known.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        let left = total.saturating_sub(self.done) as f64;
        Some(Duration::from_secs_f64(left / self.rate().max(1.0)))
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub bytes: u64,
    /// SHA-256 of each [`CHUNK`] (the last one may be shorter).
    pub chunks: Vec<[u8; 32]>,
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams `src` to `target` (a block device is written in place, a file is created or
/// truncated), calling `progress` about every chunk, then flushes it to the device. Reading
/// (decompressing) runs on this thread while a second one hashes and writes, so the two
/// overlap as in `xz -dc | dd`.
pub fn write(
    src: &mut dyn Read,
    target: &Path,
    is_block: bool,
    total: Option<u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Written> {
    let mut out = OpenOptions::new()
        .write(true)
        .create(!is_block)
        .truncate(!is_block)
        .open(target)
        .map_err(io(format!("open {}", target.display())))?;
    let started = Instant::now();
    let target_name = target.display().to_string();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
        let writer = scope.spawn(move || -> Result<(Vec<[u8; 32]>, u64)> {
            let mut chunks = Vec::new();
            let mut bytes: u64 = 0;
            for buf in rx {
                out.write_all(&buf).map_err(|e| {
                    if e.raw_os_error() == Some(libc::ENOSPC) {
                        FlashError::Target {
                            path: target_name.clone().into(),
                            what: format!(
                                "full after {bytes} bytes: the image is larger than the target"
                            ),
                        }
                    } else {
                        FlashError::Io {
                            context: format!("write {target_name} at offset {bytes}"),
                            source: e,
                        }
                    }
                })?;
                chunks.push(Sha256::digest(&buf).into());
                bytes += buf.len() as u64;
                let _ = done_tx.send(bytes);
            }
            out.sync_all().map_err(io(format!("flush {target_name}")))?;
            Ok((chunks, bytes))
        });
        let mut read: u64 = 0;
        let mut failed = None;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match read_full(src, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    failed = Some(FlashError::Image {
                        path: target.to_owned(),
                        what: format!("reading the image at offset {read}: {e}"),
                    });
                    break;
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            read += n as u64;
            if tx.send(buf).is_err() {
                break; // the writer stopped: its error is reported below
            }
            while let Ok(done) = done_rx.try_recv() {
                progress(Progress {
                    phase: "write",
                    done,
                    total,
                    elapsed: started.elapsed(),
                });
            }
        }
        drop(tx);
        let (chunks, bytes) = writer
            .join()
            .map_err(|_| FlashError::Input("internal: the writer thread panicked".into()))??;
        if let Some(e) = failed {
            return Err(e);
        }
        progress(Progress {
            phase: "write",
            done: bytes,
            total,
            elapsed: started.elapsed(),
        });
        if bytes == 0 {
            return Err(FlashError::Image {
                path: target.to_owned(),
                what: "the image holds no data".into(),
            });
        }
        Ok(Written { bytes, chunks })
    })
}

/// Asks the kernel to forget its cached copy of `f`'s data, so the read-back comes from the
/// device, not from memory.
fn drop_cache(f: &File) {
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the
    // duration of the call. Failure is harmless (the read-back then may come from the cache).
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Reads back the written range of `target` and compares it chunk by chunk with `w`.
pub fn verify(target: &Path, w: &Written, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let mut f = File::open(target).map_err(io(format!("open {}", target.display())))?;
    drop_cache(&f);
    f.seek(SeekFrom::Start(0))
        .map_err(io(format!("seek {}", target.display())))?;
    let started = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    for (i, expected) in w.chunks.iter().enumerate() {
        let want = usize::try_from((w.bytes - done).min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = read_full(&mut f, &mut buf[..want])
            .map_err(io(format!("read back {}", target.display())))?;
        let got: [u8; 32] = Sha256::digest(&buf[..n]).into();
        if n != want || &got != expected {
            return Err(FlashError::Verify {
                offset: i as u64 * CHUNK as u64,
                len: want as u64,
            });
        }
        done += n as u64;
        progress(Progress {
            phase: "verify",
            done,
            total: Some(w.bytes),
            elapsed: started.elapsed(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_verifies_and_names_the_offset_of_a_bad_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("card.img");
        std::fs::write(&target, vec![0xAAu8; 20 << 20]).unwrap();
        let data: Vec<u8> = (0..(9 << 20) + 123).map(|i: u32| (i % 253) as u8).collect();
        let mut last = 0;
        let w = write(
            &mut &data[..],
            &target,
            false,
            Some(data.len() as u64),
            &mut |p| {
                assert!(p.done >= last && p.done <= data.len() as u64);
                last = p.done;
            },
        )
        .unwrap();
        assert_eq!(w.bytes, data.len() as u64);
        assert_eq!(w.chunks.len(), 3);
        assert_eq!(last, w.bytes, "the last report is the end");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            data,
            "a file target is truncated first"
        );
        verify(&target, &w, &mut |_| {}).unwrap();

        // Flip one byte in the second chunk: verification names that chunk's offset.
        let mut f = OpenOptions::new().write(true).open(&target).unwrap();
        f.seek(SeekFrom::Start((CHUNK + 10) as u64)).unwrap();
        f.write_all(&[0]).unwrap();
        drop(f);
        match verify(&target, &w, &mut |_| {}) {
            Err(FlashError::Verify { offset, .. }) => assert_eq!(offset, CHUNK as u64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn progress_rate_and_eta() {
        let p = Progress {
            phase: "write",
            done: 50,
            total: Some(150),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(p.rate(), 50.0);
        assert_eq!(p.eta(), Some(Duration::from_secs(2)));
    }
}
