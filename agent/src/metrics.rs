//! The Prometheus metrics of a node, rendered once per change and served as cached bytes.
//!
//! Names and units follow DESIGN.md: base units (°C, ratio, Pa), `_total` counters, `sensor` and
//! `kind` labels. A sensor whose read fails loses its value series (no stale value is exported)
//! and reports `edgesense_sensor_up 0`; the scrape itself never fails.

use std::time::Duration;

use edgesense_sensors::{ErrorReason, Quantity, Readings, SensorError};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{config::Severity, spec::NodeSpec};

pub struct Metrics {
    registry: Registry,
    values: [GaugeVec; 3],
    up: IntGaugeVec,
    errors: IntCounterVec,
    duration: GaugeVec,
    led_on: IntGaugeVec,
    /// `edgesense_led_state{led, mode, reason}`: one series per LED, the last set (the labels
    /// of the previous one, to remove it when the state changes).
    led_state: IntGaugeVec,
    led_state_was: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    last_success: GaugeVec,
    alerts: IntGaugeVec,
    /// Only with `[alertmanager]`: 1 after a good reconcile, 0 while none answers.
    am_up: Option<IntGaugeVec>,
    am_last: Option<GaugeVec>,
    am_requests: Option<IntCounterVec>,
    /// Only with `[remote_write]`.
    backfill: Option<BackfillMetrics>,
}

/// `edgesense_backfill_*`: readings Prometheus missed, waiting, pushed and dropped.
struct BackfillMetrics {
    waiting: IntGaugeVec,
    pushed: IntCounterVec,
    dropped: IntCounterVec,
    retries: IntCounterVec,
    /// The counts as of the last update (counters only go up by the difference).
    was: std::sync::Mutex<crate::backfill::Counts>,
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Metrics {
    /// Registers every metric and starts each series at its idle value, so `rate()` and
    /// `absent()` work from the first scrape.
    pub fn new(spec: &NodeSpec) -> Metrics {
        let r = Registry::new();
        let sk = &["sensor", "kind"];
        let values = [
            gauge(
                &r,
                "edgesense_temperature_celsius",
                "Temperature in degrees Celsius.",
                sk,
            ),
            gauge(
                &r,
                "edgesense_humidity_ratio",
                "Relative humidity as a ratio (0-1).",
                sk,
            ),
            gauge(
                &r,
                "edgesense_pressure_pascals",
                "Air pressure in pascals.",
                sk,
            ),
        ];
        let up = int_gauge(
            &r,
            "edgesense_sensor_up",
            "1 if the last read of the sensor succeeded, 0 if it failed.",
            sk,
        );
        let errors = counter(
            &r,
            "edgesense_sensor_read_errors_total",
            "Failed sensor reads, by reason.",
            &["sensor", "kind", "reason"],
        );
        let duration = gauge(
            &r,
            "edgesense_sensor_read_duration_seconds",
            "How long the last read of the sensor took.",
            sk,
        );
        let led_on = int_gauge(
            &r,
            "edgesense_led_on",
            "1 if the LED is lit (steady, blinking or pulsing), else 0.",
            &["led"],
        );
        let led_state = int_gauge(
            &r,
            "edgesense_led_state",
            "Always 1: what the LED shows (mode: off, on, blink, pulse) and why (reason: idle, manual, or the alert or edge rule that claims it).",
            &["led", "mode", "reason"],
        );
        let last_success = gauge(
            &r,
            "edgesense_sensor_last_success_timestamp_seconds",
            "When the sensor was last read successfully (Unix time; 0: not yet): the age of a failing sensor's last good value.",
            sk,
        );
        let alerts = int_gauge(
            &r,
            "edgesense_alerts_active",
            "Alerts currently active on this node (edge rules and Alertmanager), by severity.",
            &["severity"],
        );
        let node_info = int_gauge(
            &r,
            "edgesense_node_info",
            "Always 1; labels name the node.",
            &["node", "model", "version"],
        );
        let build_info = int_gauge(
            &r,
            "edgesense_build_info",
            "Always 1; labels describe the agent build.",
            &["version", "arch"],
        );

        for s in &spec.sensors {
            let kind = s.kind.as_str();
            up.with_label_values(&[&s.name, kind]).set(0);
            last_success.with_label_values(&[&s.name, kind]).set(0.0);
            for reason in ErrorReason::ALL {
                errors
                    .with_label_values(&[&s.name, kind, reason.as_str()])
                    .reset();
            }
        }
        for l in &spec.leds {
            led_on.with_label_values(&[&l.name]).set(0);
        }
        for sev in Severity::ALL {
            alerts.with_label_values(&[sev.as_str()]).set(0);
        }
        let version = env!("CARGO_PKG_VERSION");
        node_info
            .with_label_values(&[&spec.node, &spec.model, version])
            .set(1);
        build_info
            .with_label_values(&[version, std::env::consts::ARCH])
            .set(1);

        let (am_up, am_last, am_requests) = if spec.alertmanager.urls.is_empty() {
            (None, None, None)
        } else {
            let up = int_gauge(
                &r,
                "edgesense_alertmanager_up",
                "1 if the last reconcile against Alertmanager's API worked, 0 if none answered.",
                &[],
            );
            up.with_label_values(&[] as &[&str]).set(0);
            let last = gauge(
                &r,
                "edgesense_alertmanager_last_reconcile_timestamp_seconds",
                "When the LEDs were last reconciled against Alertmanager (Unix time; 0: never).",
                &[],
            );
            last.with_label_values(&[] as &[&str]).set(0.0);
            let requests = counter(
                &r,
                "edgesense_alertmanager_requests_total",
                "Requests this agent made to Alertmanager's API for its reconciles (what a fleet's reconciles cost Alertmanager: the sum over agents).",
                &[],
            );
            requests.with_label_values(&[] as &[&str]).inc_by(0);
            (Some(up), Some(last), Some(requests))
        };

        let backfill = spec.remote_write.is_some().then(|| {
            let waiting = int_gauge(
                &r,
                "edgesense_backfill_samples_waiting",
                "Readings Prometheus missed (no scrape) that wait in the history ring to be pushed by remote write.",
                &[],
            );
            waiting.with_label_values(&[] as &[&str]).set(0);
            let pushed = counter(
                &r,
                "edgesense_backfill_samples_pushed_total",
                "Missed readings Prometheus accepted by remote write.",
                &[],
            );
            pushed.with_label_values(&[] as &[&str]).reset();
            let dropped = counter(
                &r,
                "edgesense_backfill_samples_dropped_total",
                "Missed readings given up, by reason (rejected: the receiver refused them with a 4xx).",
                &["reason"],
            );
            dropped.with_label_values(&["rejected"]).reset();
            let retries = counter(
                &r,
                "edgesense_backfill_push_retries_total",
                "Pushes that failed and were retried (5xx, 429, no answer).",
                &[],
            );
            retries.with_label_values(&[] as &[&str]).reset();
            BackfillMetrics {
                waiting,
                pushed,
                dropped,
                retries,
                was: Default::default(),
            }
        });

        Metrics {
            registry: r,
            backfill,
            values,
            up,
            errors,
            duration,
            led_on,
            led_state,
            led_state_was: Default::default(),
            last_success,
            alerts,
            am_up,
            am_last,
            am_requests,
        }
    }

    /// The backfill's status (`edgesense_backfill_*`).
    pub fn set_backfill(&self, s: &crate::backfill::Status) {
        let Some(m) = &self.backfill else {
            return;
        };
        m.waiting
            .with_label_values(&[] as &[&str])
            .set(i64::try_from(s.waiting).unwrap_or(i64::MAX));
        let mut was = m.was.lock().unwrap_or_else(|e| e.into_inner());
        let c = s.counts;
        m.pushed
            .with_label_values(&[] as &[&str])
            .inc_by(c.pushed.saturating_sub(was.pushed));
        m.dropped
            .with_label_values(&["rejected"])
            .inc_by(c.rejected.saturating_sub(was.rejected));
        m.retries
            .with_label_values(&[] as &[&str])
            .inc_by(c.retries.saturating_sub(was.retries));
        *was = c;
    }

    /// A reconcile's outcome: `Some(unix seconds)` when it worked.
    pub fn set_reconcile(&self, at: Option<f64>, requests: u32) {
        if let Some(c) = &self.am_requests {
            c.with_label_values(&[] as &[&str])
                .inc_by(u64::from(requests));
        }
        if let Some(g) = &self.am_up {
            g.with_label_values(&[] as &[&str])
                .set(i64::from(at.is_some()));
        }
        if let (Some(g), Some(t)) = (&self.am_last, at) {
            g.with_label_values(&[] as &[&str]).set(t);
        }
    }

    /// Records the outcome of one read of `sensor`.
    pub fn record_read(
        &self,
        sensor: &str,
        kind: &str,
        result: &Result<Readings, SensorError>,
        took: Duration,
    ) {
        let labels = [sensor, kind];
        self.duration
            .with_label_values(&labels)
            .set(took.as_secs_f64());
        match result {
            Ok(r) => {
                self.up.with_label_values(&labels).set(1);
                let at =
                    r.at.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                self.last_success.with_label_values(&labels).set(at);
                for q in Quantity::ALL {
                    let g = &self.values[q as usize];
                    match r.get(q) {
                        Some(v) => g.with_label_values(&labels).set(v),
                        None => {
                            let _ = g.remove_label_values(&labels);
                        }
                    }
                }
            }
            Err(e) => {
                self.up.with_label_values(&labels).set(0);
                self.errors
                    .with_label_values(&[sensor, kind, e.reason().as_str()])
                    .inc();
                for g in &self.values {
                    let _ = g.remove_label_values(&labels);
                }
            }
        }
    }

    /// Counts `n` failed attempts that a driver retried within one read.
    pub fn count_errors(&self, sensor: &str, kind: &str, reason: ErrorReason, n: u32) {
        self.errors
            .with_label_values(&[sensor, kind, reason.as_str()])
            .inc_by(u64::from(n));
    }

    pub fn set_led(&self, led: &str, lit: bool) {
        self.led_on.with_label_values(&[led]).set(i64::from(lit));
    }

    /// What LED `led` shows (`mode`) and why (`reason`).
    pub fn set_led_state(&self, led: &str, mode: &str, reason: &str) {
        let mut was = self
            .led_state_was
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((m, r)) = was.get(led) {
            if m == mode && r == reason {
                return;
            }
            let _ = self.led_state.remove_label_values(&[led, m, r]);
        }
        self.led_state
            .with_label_values(&[led, mode, reason])
            .set(1);
        was.insert(led.to_owned(), (mode.to_owned(), reason.to_owned()));
    }

    pub fn set_alerts(&self, severity: Severity, n: usize) {
        self.alerts
            .with_label_values(&[severity.as_str()])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition format (0.0.4).
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(4096);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
