//! Backfill: readings Prometheus missed (a partition, a Prometheus restart or upgrade) pushed to
//! it afterwards, with their own timestamps, by remote write ([`push`]).
//!
//! Prometheus only ever has the reading that was current at each scrape; while nobody scrapes
//! the agent, its readings still go into the history ring ([`crate::history`]), but no
//! Prometheus gets them. So the agent notes every scrape, per scraper (the scraper's address;
//! a scrape is a `GET /metrics` that carries Prometheus's `X-Prometheus-Scrape-Timeout-Seconds`
//! header). When a scraper comes back after a silence longer than twice its usual interval
//! (and at least [`MIN_GAP`]), the readings taken inside the silence are queued: a range of
//! time, not copies of samples, so a queue costs nothing while the ring holds the readings. A
//! scraper the agent has not seen before counts from the last scrape by anyone (a restarted
//! Prometheus has a new address), and the agent's own start counts as a scrape (a Pi that
//! boots while Prometheus is away).
//!
//! The pushed series carry the labels the scrape gives the same series: the metric's own
//! (`sensor`, `kind`), `job` (the config's, default `edgesense`, the stack's job name) and
//! `instance`, the address the scraper dialed (the scrape's `Host` header, which Prometheus sets
//! to the target's address), so Prometheus holds one series per sensor with no gap.

pub mod keep;
pub mod push;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::Notify;

/// A silence shorter than this is not a gap (a slow scrape, a scraper's jitter).
pub const MIN_GAP: Duration = Duration::from_secs(3);
/// Scrapers not seen for this long are forgotten (the history ring holds no more than this).
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;
/// At most this many scrapers are remembered (the oldest is forgotten first).
const MAX_SCRAPERS: usize = 16;

/// One scraper: when it last scraped and its usual interval.
#[derive(Clone, Copy, Debug)]
struct Scraper {
    last_ms: i64,
    /// Smoothed interval between its scrapes (None after one scrape).
    interval_ms: Option<i64>,
}

/// What was missed: readings after `after_ms` and before `before_ms` (both exclusive), to push
/// with these labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    pub after_ms: i64,
    pub before_ms: i64,
    pub instance: String,
}

/// Counters of the pushes, for metrics and the node page.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub pushed: u64,
    /// Refused by the receiver with a 4xx other than 429 (too old, out of bounds, malformed):
    /// never retried.
    pub rejected: u64,
    /// Failed pushes that will be retried (5xx, 429, no answer).
    pub retries: u64,
}

#[derive(Debug)]
struct State {
    last_any_ms: i64,
    scrapers: HashMap<IpAddr, Scraper>,
    /// Oldest first, not overlapping.
    gaps: Vec<Gap>,
    counts: Counts,
}

/// The scrape log and the queue of gaps, shared by the `/metrics` handler and the push task.
#[derive(Debug)]
pub struct Backfill {
    state: Mutex<State>,
    /// Woken when a gap is queued.
    pub wake: Notify,
    /// Every task waiting on it woken at each scrape: Prometheus is up, so a push that failed
    /// is worth trying again now rather than at the end of its back-off.
    pub scrape: Notify,
    /// Whether a push target is configured (without one nothing is queued).
    enabled: bool,
}

impl Backfill {
    /// A log that counts `started_ms` (the agent's start) as the last scrape.
    pub fn new(started_ms: i64, enabled: bool) -> Arc<Backfill> {
        Arc::new(Backfill {
            state: Mutex::new(State {
                last_any_ms: started_ms,
                scrapers: HashMap::new(),
                gaps: Vec::new(),
                counts: Counts::default(),
            }),
            wake: Notify::new(),
            scrape: Notify::new(),
            enabled,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a scrape by `scraper` at `now_ms` that reached this agent as `instance`; queues
    /// the gap it ends, if it ends one, and returns it.
    pub fn scraped(&self, scraper: IpAddr, instance: &str, now_ms: i64) -> Option<Gap> {
        let mut st = self.lock();
        let since = st
            .scrapers
            .get(&scraper)
            .map_or(st.last_any_ms, |s| s.last_ms);
        let usual = st.scrapers.get(&scraper).and_then(|s| s.interval_ms);
        let silence = now_ms - since;
        let threshold = usual
            .map_or(0, |i| 2 * i)
            .max(i64::try_from(MIN_GAP.as_millis()).unwrap_or(i64::MAX));
        let gap = (silence > threshold).then(|| Gap {
            after_ms: since,
            before_ms: now_ms,
            instance: instance.to_owned(),
        });
        // The usual interval leaves gaps out, so one outage does not stretch it.
        let interval_ms = match (usual, gap.is_some(), st.scrapers.contains_key(&scraper)) {
            (_, true, _) | (_, _, false) => usual,
            (None, false, true) => Some(silence),
            (Some(i), false, true) => Some((3 * i + silence) / 4),
        };
        st.scrapers.insert(
            scraper,
            Scraper {
                last_ms: now_ms,
                interval_ms,
            },
        );
        st.last_any_ms = st.last_any_ms.max(now_ms);
        st.scrapers
            .retain(|_, s| now_ms - s.last_ms < FORGET_AFTER_MS);
        while st.scrapers.len() > MAX_SCRAPERS {
            let Some(oldest) = st
                .scrapers
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(k, _)| *k)
            else {
                break;
            };
            st.scrapers.remove(&oldest);
        }
        let gap = gap.filter(|_| self.enabled);
        if let Some(g) = &gap {
            queue(&mut st.gaps, g.clone());
        }
        drop(st);
        self.scrape.notify_waiters();
        let gap = gap?;
        self.wake.notify_one();
        Some(gap)
    }

    /// The oldest gap still to push.
    pub fn next(&self) -> Option<Gap> {
        self.lock().gaps.first().cloned()
    }

    /// Every gap still to push.
    pub fn gaps(&self) -> Vec<Gap> {
        self.lock().gaps.clone()
    }

    /// Readings up to `until_ms` (inclusive) of the oldest gap are done (pushed or given up);
    /// the gap ends once `until_ms` reaches its end.
    pub fn done_until(&self, until_ms: i64) {
        let mut st = self.lock();
        if let Some(g) = st.gaps.first_mut() {
            g.after_ms = g.after_ms.max(until_ms);
            if g.after_ms >= g.before_ms - 1 {
                st.gaps.remove(0);
            }
        }
    }

    /// Adds to the counters.
    pub fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.lock().counts);
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// What a previous run of the agent kept ([`keep`]): its last scrape stands for this
    /// start's, and its gaps go before any queued since.
    pub fn restore(&self, last_scrape_ms: i64, gaps: Vec<Gap>) {
        let mut st = self.lock();
        st.last_any_ms = st.last_any_ms.min(last_scrape_ms);
        let mut all = gaps;
        all.append(&mut st.gaps);
        all.sort_by_key(|g| g.after_ms);
        st.gaps = Vec::new();
        for g in all {
            queue(&mut st.gaps, g);
        }
    }

    /// When the last scrape by anyone was (or the agent's start).
    pub fn last_scrape_ms(&self) -> i64 {
        self.lock().last_any_ms
    }
}

/// What the node page, the API and the metrics show of the backfill.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Status {
    /// A push target is configured.
    pub configured: bool,
    /// Readings in the history ring that Prometheus missed and has not been sent yet.
    pub waiting: u64,
    pub counts: Counts,
}

impl Backfill {
    /// The status at `now_ms`: what waits is counted in `history`, the queued gaps and the
    /// silence going on now (no scraper for longer than twice the usual interval: a partition
    /// or a Prometheus outage in progress, whose readings will be pushed once it ends).
    pub fn status(&self, history: &crate::history::History, now_ms: i64) -> Status {
        let st = self.lock();
        let queued: u64 = st
            .gaps
            .iter()
            .map(|g| history.count_between(g.after_ms, g.before_ms) as u64)
            .sum();
        let usual = st.scrapers.values().filter_map(|s| s.interval_ms).min();
        let threshold = usual
            .map_or(0, |i| 2 * i)
            .max(i64::try_from(MIN_GAP.as_millis()).unwrap_or(i64::MAX));
        let since = st
            .gaps
            .last()
            .map_or(st.last_any_ms, |g| g.before_ms.max(st.last_any_ms));
        let open = if self.enabled && now_ms - st.last_any_ms > threshold {
            history.count_between(since, now_ms + 1) as u64
        } else {
            0
        };
        Status {
            configured: self.enabled,
            waiting: queued + open,
            counts: st.counts,
        }
    }
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Adds `gap` to `gaps` (oldest first), merging it with the gaps it overlaps or touches.
fn queue(gaps: &mut Vec<Gap>, gap: Gap) {
    if let Some(last) = gaps.last_mut() {
        if last.instance == gap.instance && gap.after_ms <= last.before_ms {
            last.before_ms = last.before_ms.max(gap.before_ms);
            last.after_ms = last.after_ms.min(gap.after_ms);
            return;
        }
    }
    gaps.push(gap);
    gaps.sort_by_key(|g| g.after_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 2));
    const PROM2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 9));
    const AT: &str = "10.0.1.5:9842";

    /// A log that has seen `PROM` scrape every second from t = 0 to `until_s`.
    fn scraped_every_second(until_s: i64) -> Arc<Backfill> {
        let b = Backfill::new(0, true);
        for s in 1..=until_s {
            assert_eq!(b.scraped(PROM, AT, s * 1000), None, "at {s} s");
        }
        b
    }

    #[test]
    fn regular_scrapes_queue_nothing() {
        let b = scraped_every_second(60);
        assert!(b.gaps().is_empty());
        // A late scrape (1.8 s) is no gap either.
        assert_eq!(b.scraped(PROM, AT, 61_800), None);
    }

    #[test]
    fn a_silence_is_a_gap_from_the_last_scrape_to_the_return() {
        let b = scraped_every_second(10);
        let g = b
            .scraped(PROM, AT, 130_000)
            .expect("a 120 s silence is a gap");
        assert_eq!(
            g,
            Gap {
                after_ms: 10_000,
                before_ms: 130_000,
                instance: AT.into()
            }
        );
        assert_eq!(b.next(), Some(g));
        // Back to normal: the usual interval was not stretched by the outage.
        assert_eq!(b.scraped(PROM, AT, 131_000), None);
        assert!(
            b.scraped(PROM, AT, 135_000).is_some(),
            "4 s is twice the usual 1 s and more than 3 s"
        );
    }

    #[test]
    fn a_new_scraper_counts_from_the_last_scrape_by_anyone() {
        let b = scraped_every_second(10);
        // Prometheus restarted with a new address after 50 s.
        let g = b.scraped(PROM2, AT, 60_000).unwrap();
        assert_eq!((g.after_ms, g.before_ms), (10_000, 60_000));
        // A second Prometheus that starts while the first scrapes: nothing missed.
        let b = scraped_every_second(10);
        assert_eq!(b.scraped(PROM2, AT, 10_500), None);
    }

    #[test]
    fn the_agents_start_counts_as_a_scrape() {
        let b = Backfill::new(1_000_000, true);
        let g = b.scraped(PROM, AT, 1_600_000).unwrap();
        assert_eq!(g.after_ms, 1_000_000, "readings since the start are pushed");
    }

    #[test]
    fn gaps_are_done_piece_by_piece_and_overlapping_ones_merge() {
        let b = scraped_every_second(10);
        b.scraped(PROM, AT, 70_000).unwrap();
        assert_eq!(b.scraped(PROM, AT, 71_000), None);
        b.scraped(PROM, AT, 80_000).unwrap();
        assert_eq!(b.gaps().len(), 2, "{:?}", b.gaps());
        b.done_until(40_000);
        assert_eq!(b.next().unwrap().after_ms, 40_000);
        b.done_until(69_999);
        assert_eq!(b.next().unwrap().after_ms, 71_000, "the first gap is done");
        b.done_until(79_999);
        assert_eq!(b.next(), None);
        let mut gaps = Vec::new();
        for (a, z) in [(0, 10), (5, 20), (30, 40)] {
            queue(
                &mut gaps,
                Gap {
                    after_ms: a,
                    before_ms: z,
                    instance: AT.into(),
                },
            );
        }
        let spans: Vec<(i64, i64)> = gaps.iter().map(|g| (g.after_ms, g.before_ms)).collect();
        assert_eq!(spans, [(0, 20), (30, 40)]);
    }

    #[test]
    fn a_silence_going_on_counts_its_readings_as_waiting() {
        use edgesense_sensors::{Quantity, Readings};
        let mut h = crate::history::History::new(&crate::spec::simulated(
            "poll_interval = \"1s\"\n[[sensor]]\nname = \"t\"\nkind = \"thermal\"\n",
        ));
        let b = scraped_every_second(10);
        for s in 1..=40u64 {
            let r = Readings::new(std::time::UNIX_EPOCH + Duration::from_secs(s))
                .with(Quantity::Temperature, 20.0);
            h.record(0, &r);
        }
        assert_eq!(b.status(&h, 11_000).waiting, 0, "scraped a second ago");
        // No scrape since 10 s: the 30 readings after it wait.
        assert_eq!(b.status(&h, 40_000).waiting, 30);
        // Prometheus is back: the gap is queued, and nothing is counted twice.
        b.scraped(PROM, AT, 40_500).unwrap();
        assert_eq!(b.status(&h, 40_600).waiting, 30);
        b.done_until(40_499);
        assert_eq!(b.status(&h, 40_700).waiting, 0);
    }

    #[test]
    fn without_a_push_target_nothing_is_queued() {
        let b = Backfill::new(0, false);
        assert_eq!(b.scraped(PROM, AT, 600_000), None);
        assert!(b.gaps().is_empty());
        assert_eq!(b.last_scrape_ms(), 600_000);
    }
}
