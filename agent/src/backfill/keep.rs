//! What survives a restart of the agent (`state_file`): the history ring and the backfill's
//! gaps, written when the agent stops (SIGTERM from `docker stop` or a restart, a reload) and
//! read back, then removed, when it starts. A restart in the middle of a backfill then goes on
//! where it stopped (a slice sent twice is harmless), and the readings of an outage that
//! outlasts the agent are not lost. A crash (SIGKILL, power cut) writes nothing: what it had
//! not pushed is lost.
//!
//! The file is binary, little-endian, written to a temporary file and renamed (never half
//! written): `ESK1`, the time of the last scrape, the gaps (after, before, instance), then per
//! series its sensor, quantity and samples (time in ms, `f32` value). Series of sensors the
//! config no longer has are skipped; a file that does not parse is reported and ignored.

use std::{io, path::Path};

use edgesense_sensors::Quantity;

use super::{Backfill, Gap};
use crate::history::{History, Sample};

const MAGIC: &[u8; 4] = b"ESK1";
/// Samples at most per series (a day at 100 ms is 864 000: larger is a broken file).
const MAX_SAMPLES: usize = 1 << 20;

/// Writes `history` and `backfill` to `path` (0600; atomically).
pub fn save(path: &Path, history: &History, backfill: &Backfill) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 + history.len() * 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&backfill.last_scrape_ms().to_le_bytes());
    let gaps = backfill.gaps();
    out.extend_from_slice(&(gaps.len() as u32).to_le_bytes());
    for g in &gaps {
        out.extend_from_slice(&g.after_ms.to_le_bytes());
        out.extend_from_slice(&g.before_ms.to_le_bytes());
        put_str(&mut out, &g.instance);
    }
    let series = history.all();
    out.extend_from_slice(&(series.len() as u32).to_le_bytes());
    for (sensor, quantity, samples) in series {
        put_str(&mut out, sensor);
        out.push(quantity as u8);
        out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        for s in samples {
            out.extend_from_slice(&s.at_ms().to_le_bytes());
            out.extend_from_slice(&s.value.to_le_bytes());
        }
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads `path` into `history` and `backfill` and removes it; returns how many samples came
/// back. No file: 0.
pub fn restore(path: &Path, history: &mut History, backfill: &Backfill) -> Result<usize, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let _ = std::fs::remove_file(path);
    let parsed = parse(&bytes).ok_or_else(|| {
        format!(
            "{}: not an agent state file (or cut short); ignored",
            path.display()
        )
    })?;
    backfill.restore(parsed.last_scrape_ms, parsed.gaps);
    let mut n = 0;
    for (sensor, quantity, samples) in parsed.series {
        n += history.restore(&sensor, quantity, &samples);
    }
    Ok(n)
}

struct Parsed {
    last_scrape_ms: i64,
    gaps: Vec<Gap>,
    series: Vec<(String, Quantity, Vec<Sample>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// A cursor over the file's bytes; every read checks what is left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(n))?.to_vec()).ok()
    }
}

fn parse(bytes: &[u8]) -> Option<Parsed> {
    let mut r = Reader(bytes);
    (r.take(4)? == MAGIC).then_some(())?;
    let last_scrape_ms = r.i64()?;
    let n_gaps = r.u32()? as usize;
    let mut gaps = Vec::with_capacity(n_gaps.min(1024));
    for _ in 0..n_gaps {
        gaps.push(Gap {
            after_ms: r.i64()?,
            before_ms: r.i64()?,
            instance: r.str()?,
        });
    }
    let n_series = r.u32()? as usize;
    let mut series = Vec::with_capacity(n_series.min(1024));
    for _ in 0..n_series {
        let sensor = r.str()?;
        let quantity = *Quantity::ALL.get(usize::from(r.take(1)?[0]))?;
        let n = r.u32()? as usize;
        (n <= MAX_SAMPLES).then_some(())?;
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.i64()?;
            samples.push(Sample::new(at, r.f32()?));
        }
        series.push((sensor, quantity, samples));
    }
    r.0.is_empty().then_some(Parsed {
        last_scrape_ms,
        gaps,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesense_sensors::Readings;
    use std::time::{Duration, UNIX_EPOCH};

    fn history() -> History {
        History::new(&crate::spec::simulated(
            "poll_interval = \"1s\"\n[[sensor]]\nname = \"env\"\nkind = \"bme280\"\n",
        ))
    }

    #[test]
    fn the_ring_and_the_gaps_come_back_after_a_restart() {
        let now = super::super::now_ms();
        let mut h = history();
        for i in 0..50i64 {
            let at = UNIX_EPOCH + Duration::from_millis((now - 50_000 + i * 1000) as u64);
            h.record(
                0,
                &Readings::new(at)
                    .with(Quantity::Temperature, 20.0 + i as f64 / 8.0)
                    .with(Quantity::Pressure, 101_325.0),
            );
        }
        let b = Backfill::new(now - 60_000, true);
        b.scraped("10.0.1.2".parse().unwrap(), "10.0.1.5:9842", now - 40_000)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.state");
        save(&path, &h, &b).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut h2 = history();
        let b2 = Backfill::new(now, true);
        assert_eq!(restore(&path, &mut h2, &b2).unwrap(), 100);
        assert!(!path.exists(), "read once, then removed");
        assert_eq!(h2.to_json(None), h.to_json(None));
        assert_eq!(b2.gaps(), b.gaps());
        assert_eq!(b2.last_scrape_ms(), now - 40_000);
        assert_eq!(restore(&path, &mut h2, &b2).unwrap(), 0, "no file: nothing");
    }

    #[test]
    fn a_broken_file_is_reported_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.state");
        let h0 = history();
        let b0 = Backfill::new(0, true);
        save(&path, &h0, &b0).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(1);
        for broken in [
            b"nope".to_vec(),
            bytes.clone(),
            bytes[..bytes.len() - 3].to_vec(),
        ] {
            std::fs::write(&path, &broken).unwrap();
            let mut h = history();
            let b = Backfill::new(7, true);
            let e = restore(&path, &mut h, &b).unwrap_err();
            assert!(e.contains("not an agent state file"), "{e}");
            assert_eq!(b.last_scrape_ms(), 7);
            assert_eq!(h.to_json(None), history().to_json(None));
        }
    }
}
