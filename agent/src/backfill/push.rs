//! The push task: takes the oldest gap, reads its readings from the history ring in slices
//! of about [`BATCH`] samples, and posts each to the remote-write URL.
//!
//! - 2xx: the slice is done. Prometheus keeps a sample it already has (same series, time and
//!   value) without complaint, so a slice sent again after a lost answer or a restart is
//!   harmless.
//! - 5xx, 429 or no answer: the same slice again after a back-off (1 s doubling to 60 s, with
//!   jitter, so a fleet that comes back together does not push in step), or at the next scrape
//!   if that comes first (at least 1 s on): Prometheus scraping the agent is up, and what
//!   failed was the way back to it. After a manager's dockerd restarts, a worker's Docker DNS
//!   can go without the `prometheus` name for half a minute and more (until the overlay's
//!   gossip syncs again), while Prometheus already scrapes; a back-off grown to 32 or 60 s
//!   would hold the backfill that much longer.
//! - Every address the name resolves to is tried in turn, each connect at most
//!   [`edgesense_net::CONNECT_TIMEOUT`]: a stale record of a replaced Prometheus task costs
//!   seconds, not the push's time limit.
//! - Any other 4xx (Prometheus: too old for its out-of-order window, out of bounds, a
//!   malformed request): Prometheus rolls the whole request back, so the slice's samples are
//!   dropped, counted as `rejected`, logged once per gap, and the push goes on with the next.
//!
//! The task is one of the agent's tasks on its single thread; it never holds the history lock
//! across an await, and a hanging receiver costs one connection with a deadline, not a stall
//! of polling or scrapes.

use std::{sync::Arc, time::Duration};

use edgesense_net::{Call, Target};
use edgesense_remote_write::{Label, Sample, TimeSeries, WriteRequest, HEADERS};
use hyper::{header::HeaderName, header::HeaderValue, Method};

use super::Backfill;
use crate::{credentials, history::SharedHistory};

/// Samples per push, about (a slice ends at a whole second). About 60 KiB of protobuf, 10 KiB
/// snappy-compressed for the simulated node's series.
pub const BATCH: usize = 2_000;
/// A push may take this long (a slow Prometheus ingesting out-of-order samples).
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the status is brought up to date while nothing is pushed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Where and as what the readings are pushed.
#[derive(Clone, Debug)]
pub struct Pusher {
    pub target: Target,
    /// `job` on every pushed series (the scrape job's name).
    pub job: String,
    /// `instance` on every pushed series; None: the address the scraper dialed.
    pub instance: Option<String>,
}

/// What one push came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    Retry(String),
    Rejected(String),
}

/// The write request for `slice`, labelled as the scrape labels the same series.
pub fn request(slice: &crate::history::Slice<'_>, job: &str, instance: &str) -> WriteRequest {
    WriteRequest {
        timeseries: slice
            .series
            .iter()
            .map(|s| {
                TimeSeries::new(
                    vec![
                        Label::new(
                            "__name__",
                            format!("edgesense_{}_{}", s.quantity.as_str(), s.quantity.unit()),
                        ),
                        Label::new("sensor", s.sensor),
                        Label::new("kind", s.kind.as_str()),
                        Label::new("job", job),
                        Label::new("instance", instance),
                    ],
                    s.samples
                        .iter()
                        .map(|x| Sample {
                            value: x.value_f64(),
                            timestamp: x.at_ms(),
                        })
                        .collect(),
                )
            })
            .collect(),
    }
}

/// Jitter of up to a quarter of `d`, from the clock's nanoseconds (no randomness needed
/// beyond "not in step with the other agents").
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d / 4 * (nanos % 1000) / 1000
}

/// Waits before a failed push is tried again: `backoff`, or until the next scrape if one comes
/// sooner, but at least [`BACKOFF_MIN`].
async fn wait_to_retry(backoff: Duration, scrape: &tokio::sync::Notify) {
    let next_scrape = scrape.notified();
    tokio::pin!(next_scrape);
    // Registered now: a scrape during the first second counts.
    next_scrape.as_mut().enable();
    let floor = BACKOFF_MIN.min(backoff);
    tokio::time::sleep(floor).await;
    tokio::select! {
        () = tokio::time::sleep(backoff - floor) => {}
        () = next_scrape => {}
    }
}

/// Pushes gaps until the agent stops. `changed` gets the status whenever a gap is taken up
/// and after every push.
pub async fn run(
    backfill: Arc<Backfill>,
    history: SharedHistory,
    credentials: credentials::Shared,
    pusher: Pusher,
    report: impl Fn(super::Status),
) {
    let changed = || report(backfill.status(&crate::history::lock(&history), super::now_ms()));
    let mut backoff = BACKOFF_MIN;
    let mut rejected_logged_for = None::<i64>;
    let mut expired_logged_for = None::<i64>;
    let mut failing = false;
    loop {
        let Some(gap) = backfill.next() else {
            // Also every few seconds: the readings of a silence going on count as waiting.
            let _ = tokio::time::timeout(STATUS_EVERY, backfill.wake.notified()).await;
            changed();
            continue;
        };
        let (body, until_ms, samples, expired) = {
            let h = crate::history::lock(&history);
            // Readings of the gap already out of the ring: the gap is longer than `history`.
            let kept_ms = i64::try_from(h.retention().as_millis()).unwrap_or(i64::MAX);
            let expired = gap.after_ms < super::now_ms() - kept_ms;
            let slice = h.between(gap.after_ms, gap.before_ms, BATCH);
            let instance = pusher.instance.as_deref().unwrap_or(&gap.instance);
            let req = request(&slice, &pusher.job, instance);
            (req.encode(), slice.until_ms, req.samples(), expired)
        };
        if expired && expired_logged_for != Some(gap.before_ms) {
            expired_logged_for = Some(gap.before_ms);
            tracing::warn!(after_ms = gap.after_ms, "some readings of the gap left the history ring before they could be pushed (a gap longer than `history`)");
        }
        if samples == 0 {
            backfill.done_until(until_ms);
            changed();
            continue;
        }
        let outcome = match body {
            Ok(body) => send(&credentials, &pusher.target, body).await,
            Err(e) => Outcome::Rejected(e.to_string()),
        };
        match outcome {
            Outcome::Done => {
                if failing {
                    tracing::info!(url = %pusher.target.url, "remote write answers again");
                    failing = false;
                }
                backoff = BACKOFF_MIN;
                backfill.count(|c| c.pushed += samples as u64);
                backfill.done_until(until_ms);
                if backfill.next().is_none() {
                    tracing::info!("backfill done: Prometheus has the readings it missed");
                }
            }
            Outcome::Rejected(why) => {
                if rejected_logged_for != Some(gap.before_ms) {
                    tracing::warn!(url = %pusher.target.url, samples, error = %why, "remote write refused a batch; its samples are dropped (logged once per gap)");
                    rejected_logged_for = Some(gap.before_ms);
                }
                backfill.count(|c| c.rejected += samples as u64);
                backfill.done_until(until_ms);
            }
            Outcome::Retry(why) => {
                if !failing {
                    tracing::warn!(url = %pusher.target.url, error = %why, "remote write failed; retrying with back-off (logged once until it answers)");
                    failing = true;
                }
                backfill.count(|c| c.retries += 1);
                changed();
                wait_to_retry(jittered(backoff), &backfill.scrape).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        changed();
    }
}

async fn send(credentials: &credentials::Shared, target: &Target, body: Vec<u8>) -> Outcome {
    let mut call = Call::new(Method::POST, "", body.into()).limit(64 << 10);
    for (k, v) in HEADERS {
        call = call.header(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let client = credentials
        .get()
        .prometheus
        .clone()
        .with_timeout(PUSH_TIMEOUT);
    match client.send_any(target, call).await {
        Ok(r) if (200..300).contains(&r.status) => Outcome::Done,
        Ok(r) if r.status == 429 || r.status >= 500 => Outcome::Retry(format!(
            "{} {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        )),
        Ok(r) => Outcome::Rejected(format!(
            "{} {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        )),
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_out_as_the_decimals_they_were_read_as() {
        for v in [21.437, 0.473, 101_325.5, -4.25, 0.0] {
            assert_eq!(
                crate::history::Sample::new(0, v as f32).value_f64(),
                v,
                "{v}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_cuts_the_back_off_short_but_not_below_a_second() {
        let scrape = std::sync::Arc::new(tokio::sync::Notify::new());
        let waited = |at: Option<Duration>| {
            let scrape = scrape.clone();
            async move {
                let started = tokio::time::Instant::now();
                let wait = wait_to_retry(Duration::from_secs(32), &scrape);
                tokio::pin!(wait);
                if let Some(at) = at {
                    tokio::select! {
                        () = &mut wait => panic!("done before the scrape"),
                        () = tokio::time::sleep(at) => scrape.notify_waiters(),
                    }
                }
                wait.await;
                started.elapsed()
            }
        };
        // No scrape: the whole back-off.
        assert_eq!(waited(None).await, Duration::from_secs(32));
        // A scrape after 5 s: then.
        assert_eq!(
            waited(Some(Duration::from_secs(5))).await,
            Duration::from_secs(5)
        );
        // A scrape in the first second: at one second, not at once.
        assert_eq!(
            waited(Some(Duration::from_millis(300))).await,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_secs(8);
        let j = jittered(d);
        assert!(j >= d && j <= d + d / 4, "{j:?}");
    }

    #[test]
    fn pushed_series_carry_the_scrapes_labels() {
        let slice = crate::history::Slice {
            series: vec![crate::history::SeriesSamples {
                sensor: "env",
                kind: edgesense_sensors::SensorKind::Bme280,
                quantity: edgesense_sensors::Quantity::Pressure,
                samples: vec![
                    crate::history::Sample::new(1_000_000, 101_325.5),
                    crate::history::Sample::new(1_002_250, 101_326.0),
                ],
            }],
            until_ms: 1_002_000,
        };
        let req = request(&slice, "edgesense", "10.0.1.5:9842");
        let t = &req.timeseries[0];
        let labels: Vec<(&str, &str)> = t
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("__name__", "edgesense_pressure_pascals"),
                ("instance", "10.0.1.5:9842"),
                ("job", "edgesense"),
                ("kind", "bme280"),
                ("sensor", "env"),
            ]
        );
        assert_eq!(
            t.samples,
            [
                Sample {
                    value: 101_325.5,
                    timestamp: 1_000_000
                },
                Sample {
                    value: 101_326.0,
                    timestamp: 1_002_250
                },
            ]
        );
        assert!(req.encode().is_ok());
    }
}
