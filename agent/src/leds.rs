//! Who decides what an LED shows ([`Arbiter`]), and the task that shows it ([`drive`]).
//!
//! Every source holds a claim on an LED; the LED shows the highest one:
//! critical alert > warning alert > manual setting > idle pattern. A manual setting holds until
//! `{"mode":"auto"}` hands the LED back; when the last alert goes, the LED returns to the next
//! claim down.

use std::{collections::BTreeMap, time::Duration};

use edgesense_sensors::led::{Led, LedMode};
use serde::Serialize;
use tokio::{sync::watch, time::Instant};

use crate::{config::Severity, spec::LedSpec};

/// Where an LED's current mode comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    Idle,
    Manual,
    Alert { name: String, severity: Severity },
}

#[derive(Debug)]
struct Claims {
    idle: LedMode,
    manual: Option<LedMode>,
    /// By claim key (unique per alert and route): (severity, mode, alert name).
    alerts: BTreeMap<String, (Severity, LedMode, String)>,
}

/// The claims on every LED of the node, by index in the node's LED list.
#[derive(Debug)]
pub struct Arbiter {
    leds: Vec<Claims>,
}

impl Arbiter {
    pub fn new(leds: &[LedSpec]) -> Arbiter {
        Arbiter {
            leds: leds
                .iter()
                .map(|l| Claims {
                    idle: l.idle,
                    manual: None,
                    alerts: BTreeMap::new(),
                })
                .collect(),
        }
    }

    /// Sets (`Some`) or releases (`None`, "auto") the manual claim.
    pub fn set_manual(&mut self, led: usize, mode: Option<LedMode>) {
        if let Some(c) = self.leds.get_mut(led) {
            c.manual = mode;
        }
    }

    /// True if `led` has a manual setting (a `PUT` not yet handed back with `auto`).
    pub fn has_manual(&self, led: usize) -> bool {
        self.leds.get(led).is_some_and(|c| c.manual.is_some())
    }

    /// Claims `led` for the alert `name` under `key` (one key per alert and route).
    pub fn claim_alert(
        &mut self,
        led: usize,
        key: &str,
        name: &str,
        severity: Severity,
        mode: LedMode,
    ) {
        if let Some(c) = self.leds.get_mut(led) {
            c.alerts
                .insert(key.to_owned(), (severity, mode, name.to_owned()));
        }
    }

    pub fn release_alert(&mut self, led: usize, key: &str) {
        if let Some(c) = self.leds.get_mut(led) {
            c.alerts.remove(key);
        }
    }

    /// Drops every alert claim on every LED (before claiming the current set again).
    pub fn clear_alerts(&mut self) {
        for c in &mut self.leds {
            c.alerts.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.leds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leds.is_empty()
    }

    /// What LED `led` shows now, and why.
    pub fn effective(&self, led: usize) -> (LedMode, Source) {
        let Some(c) = self.leds.get(led) else {
            return (LedMode::Off, Source::Idle);
        };
        // Highest severity wins; among equals the first by key, so the choice is stable.
        let top =
            c.alerts.values().fold(
                None::<&(Severity, LedMode, String)>,
                |best, cur| match best {
                    Some(b) if b.0 >= cur.0 => Some(b),
                    _ => Some(cur),
                },
            );
        match (top, c.manual) {
            (Some(&(severity, mode, ref name)), _) => (
                mode,
                Source::Alert {
                    name: name.clone(),
                    severity,
                },
            ),
            (None, Some(m)) => (m, Source::Manual),
            (None, None) => (c.idle, Source::Idle),
        }
    }
}

/// Shows the modes sent on `modes` on `led` until the sender is dropped, then switches the LED
/// off. Each pattern's steps are scheduled at absolute times from the pattern's start (step `k`
/// at `start + k × step`), so late wake-ups never add up to drift.
pub async fn drive(name: String, mut led: Led, mut modes: watch::Receiver<LedMode>) {
    let mut failed = false;
    let mut show = |led: &mut Led, duty: f64| match led.set_duty(duty) {
        Ok(()) => failed = false,
        Err(e) => {
            if !failed {
                tracing::warn!(led = %name, error = %e, "cannot drive LED");
            }
            failed = true;
        }
    };
    'modes: loop {
        let pattern = modes.borrow_and_update().pattern();
        let start = Instant::now();
        let mut k: u64 = 0;
        loop {
            show(&mut led, pattern.duty(k));
            let changed = match pattern.step() {
                None => modes.changed().await,
                Some(step) => {
                    let next = start + step_offset(step, k + 1);
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => {
                            // Skip steps missed while the runtime was busy, keep the phase.
                            let now = Instant::now();
                            k += 1;
                            while start + step_offset(step, k + 1) <= now {
                                k += 1;
                            }
                            continue;
                        }
                        r = modes.changed() => r,
                    }
                }
            };
            match changed {
                Ok(()) => continue 'modes,
                Err(_) => break 'modes,
            }
        }
    }
    if let Err(e) = led.off() {
        tracing::warn!(error = %e, "cannot switch LED off");
    }
}

fn step_offset(step: Duration, k: u64) -> Duration {
    step.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesense_sensors::bus::gpio::{Drive, GpioBus, MockGpio};

    fn spec(idle: LedMode) -> Vec<LedSpec> {
        vec![LedSpec {
            name: "red".into(),
            pin: 17,
            active_low: false,
            idle,
        }]
    }

    #[test]
    fn claims_rank_critical_warning_manual_idle() {
        let blink = LedMode::Blink { period_ms: 250 };
        let mut a = Arbiter::new(&spec(LedMode::ON));
        assert_eq!(a.effective(0), (LedMode::ON, Source::Idle));
        a.set_manual(0, Some(LedMode::Off));
        assert_eq!(a.effective(0).1, Source::Manual);
        a.claim_alert(0, "warm", "warm", Severity::Warning, LedMode::ON);
        a.claim_alert(0, "hot", "hot", Severity::Critical, blink);
        a.claim_alert(0, "humid", "humid", Severity::Warning, LedMode::ON);
        assert_eq!(
            a.effective(0),
            (
                blink,
                Source::Alert {
                    name: "hot".into(),
                    severity: Severity::Critical
                }
            )
        );
        a.release_alert(0, "hot");
        assert_eq!(
            a.effective(0).1,
            Source::Alert {
                name: "humid".into(),
                severity: Severity::Warning
            }
        );
        a.release_alert(0, "humid");
        a.release_alert(0, "warm");
        assert_eq!(a.effective(0), (LedMode::Off, Source::Manual));
        a.set_manual(0, None);
        assert_eq!(a.effective(0), (LedMode::ON, Source::Idle));
    }

    /// Blink timing from the mock GPIO's recorded writes: each edge lands within a tolerance of
    /// its scheduled time `start + k × period/2`, and the error does not grow over the run.
    /// On tokio's paused clock (it moves only when every task waits, or by `advance`), so the
    /// edges are checked against the clock the task schedules by, whatever the host's load
    /// (a loaded CI host once woke the task 110 ms late on the real clock).
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn blink_edges_follow_the_clock() {
        let ms = Duration::from_millis;
        let gpio = MockGpio::new();
        let led = Led::new(gpio.output(17).unwrap(), false).unwrap();
        let (tx, rx) = watch::channel(LedMode::Off);
        let task = tokio::spawn(drive("red".into(), led, rx));
        tokio::task::yield_now().await;
        tx.send(LedMode::Blink { period_ms: 100 }).unwrap();
        let t0 = Instant::now();
        tokio::time::sleep_until(t0 + ms(1)).await;
        let writes = gpio.writes_to(17);
        assert_eq!(
            writes.last().map(|w| w.drive),
            Some(Drive::High),
            "lit at once"
        );
        let level = |k: u64| if k % 2 == 0 { Drive::High } else { Drive::Low };
        // Every half period on the clock the level flips, and holds until the next edge is due.
        for k in 0..20 {
            tokio::time::sleep_until(t0 + ms(50 * k + 1)).await;
            assert_eq!(gpio.level(17), Some(level(k)), "edge {k} on time");
            tokio::time::sleep_until(t0 + ms(50 * k + 49)).await;
            assert_eq!(gpio.level(17), Some(level(k)), "edge {k} held");
        }
        assert_eq!(
            gpio.writes_to(17).len(),
            writes.len() + 19,
            "one write an edge"
        );
        // A runtime busy for three and a half half-periods: the task wakes late once, skips the
        // steps it missed without writing them, and keeps the phase (no drift).
        let before = gpio.writes_to(17).len();
        tokio::time::advance(ms(175)).await; // t0 + 1 174 ms: step 23, low
        tokio::time::sleep(ms(1)).await;
        assert_eq!(gpio.level(17), Some(Drive::Low), "in phase after the stall");
        tokio::time::sleep_until(t0 + ms(1201)).await;
        assert_eq!(gpio.level(17), Some(Drive::High), "next edge at 1 200 ms");
        assert_eq!(
            gpio.writes_to(17).len(),
            before + 1,
            "no write for the steps it missed"
        );
        drop(tx);
        task.await.unwrap();
        assert_eq!(
            gpio.level(17),
            Some(Drive::Low),
            "off after the sender is gone"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pulse_uses_pwm_up_to_brightness() {
        let gpio = MockGpio::new();
        let led = Led::new(gpio.output(27).unwrap(), false).unwrap();
        let (tx, rx) = watch::channel(LedMode::Pulse {
            period_ms: 200,
            brightness: 0.5,
        });
        let task = tokio::spawn(drive("amber".into(), led, rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gpio.writes_to(27).len() < 25 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(tx);
        task.await.unwrap();
        let duties: Vec<f64> = gpio.writes_to(27).iter().map(|w| w.drive.duty()).collect();
        let max = duties.iter().copied().fold(0.0, f64::max);
        assert!((max - 0.5).abs() < 0.05, "peaks at brightness: {max}");
        assert!(
            duties.iter().any(|&d| d > 0.0 && d < 0.5),
            "fades through PWM"
        );
        assert_eq!(gpio.level(27), Some(Drive::Low));
    }
}
