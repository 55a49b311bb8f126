//! The hub: the one task that owns the node's state. Sensor results, LED commands and (later)
//! alerts come in as messages; each change produces a new [`Snapshot`], replaced whole, that
//! scrapes, API reads and event streams share without touching hardware.

use std::{sync::Arc, time::Duration};

use axum::body::Bytes;
use edgesense_sensors::{
    led::LedMode, ErrorReason, Readings, RetriedErrors, SensorError, SensorKind,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

pub use crate::alerts::ActiveAlert;
use crate::{
    alerts::{
        self,
        reconcile::{NewSilence, Report, Suppression, COMPLETE_AFTER},
        set::{AlertSet, Applied},
        webhook::{Alert, Status},
    },
    config::Severity,
    history::SharedHistory,
    leds::{Arbiter, Source},
    metrics::Metrics,
    spec::NodeSpec,
};

/// Everything the HTTP side can see, at one instant.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every change.
    pub seq: u64,
    pub sensors: Vec<SensorStatus>,
    pub leds: Vec<LedStatus>,
    pub alerts: Vec<ActiveAlert>,
    pub alertmanager: AmState,
    /// Readings waiting for Prometheus, and what was pushed.
    pub backfill: crate::backfill::Status,
    /// `/metrics` body, rendered once per change.
    pub metrics: Bytes,
}

#[derive(Clone, Debug)]
pub struct SensorStatus {
    pub name: String,
    pub kind: SensorKind,
    /// The last successful readings (kept while the sensor fails, for the API; metrics drop them).
    pub last_good: Option<Readings>,
    pub up: bool,
    /// The last error, while the sensor is failing.
    pub error: Option<(ErrorReason, String)>,
    pub errors_total: [u64; ErrorReason::ALL.len()],
    pub read_duration: Duration,
    pub reads_total: u64,
}

#[derive(Clone, Debug)]
pub struct LedStatus {
    pub name: String,
    pub pin: u8,
    pub mode: LedMode,
    pub source: Source,
}

/// A change to an LED requested through the API.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LedCommand {
    Set(LedMode),
    /// Hand the LED back to alerts and its idle pattern.
    Auto,
}

pub enum Msg {
    Read {
        sensor: usize,
        result: Result<Readings, SensorError>,
        /// Failed attempts the driver retried within this read (counted as errors too).
        retried: RetriedErrors,
        took: Duration,
    },
    Led {
        led: usize,
        cmd: LedCommand,
        reply: oneshot::Sender<LedStatus>,
    },
    /// Alertmanager alerts for this node (already filtered by `node` label), from one payload.
    Webhook {
        /// The payload's `groupKey` and group status.
        group: String,
        status: Status,
        alerts: Vec<Alert>,
        reply: oneshot::Sender<Applied>,
    },
    /// What the last reconcile against Alertmanager found.
    Reconciled(Report),
    /// The backfill's status changed (a gap queued, a push done).
    Backfill(crate::backfill::Status),
    /// A button press (or the node page's acknowledge): `long` hands every manually set LED
    /// back; short acknowledges this node's firing alerts (edge rules at once, Alertmanager's by
    /// a silence of `silence`).
    Button {
        long: bool,
        silence: Duration,
        reply: Option<oneshot::Sender<Acknowledged>>,
    },
    /// Switch every LED off and stop; the reply comes once the LED tasks have been told.
    Shutdown { reply: oneshot::Sender<()> },
}

/// What a short press acknowledged.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Acknowledged {
    /// Edge rules whose claims are dropped until they clear and fire again.
    pub rules: Vec<String>,
    /// Silences asked of Alertmanager: (alertname, node label).
    pub silences: Vec<(String, String)>,
    /// LEDs handed back to `auto` (a long press).
    pub leds: Vec<String>,
}

/// The hub's line to the reconciler (none without `[alertmanager]`).
pub struct AmLink {
    pub wake: Arc<tokio::sync::Notify>,
    pub silences: mpsc::Sender<NewSilence>,
}

/// When the last good reconcile was (ms since the Unix epoch), and whether Alertmanager is up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AmState {
    pub configured: bool,
    pub up: bool,
    pub last_ms: Option<i64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RuleState {
    pending_since: Option<Instant>,
    firing: bool,
    /// Acknowledged while firing: no claim until it clears.
    acked: bool,
}

pub struct Hub {
    spec: Arc<NodeSpec>,
    metrics: Metrics,
    sensors: Vec<SensorStatus>,
    arbiter: Arbiter,
    rules: Vec<RuleState>,
    webhook: AlertSet,
    /// Alertmanager's silenced and inhibited alerts, from the last good reconcile.
    suppressed: std::collections::BTreeMap<String, Suppression>,
    am: AmState,
    /// Whether the last reconcile saw a complete alert list (not a young Alertmanager).
    am_complete: bool,
    am_link: Option<AmLink>,
    /// The active alerts as of the last change.
    active: Vec<ActiveAlert>,
    history: SharedHistory,
    backfill: crate::backfill::Status,
    led_modes: Vec<watch::Sender<LedMode>>,
    out: watch::Sender<Arc<Snapshot>>,
    seq: u64,
}

impl Hub {
    /// A hub for `spec` driving the LED tasks behind `led_modes` (one per LED, in spec order).
    /// Returns the hub and the receiver of its snapshots.
    pub fn new(
        spec: Arc<NodeSpec>,
        led_modes: Vec<watch::Sender<LedMode>>,
        history: SharedHistory,
        am_link: Option<AmLink>,
    ) -> (Hub, watch::Receiver<Arc<Snapshot>>) {
        let metrics = Metrics::new(&spec);
        let sensors = spec
            .sensors
            .iter()
            .map(|s| SensorStatus {
                name: s.name.clone(),
                kind: s.kind,
                last_good: None,
                up: false,
                error: None,
                errors_total: [0; ErrorReason::ALL.len()],
                read_duration: Duration::ZERO,
                reads_total: 0,
            })
            .collect();
        let (out, rx) = watch::channel(Arc::new(Snapshot {
            seq: 0,
            sensors: Vec::new(),
            leds: Vec::new(),
            alerts: Vec::new(),
            alertmanager: AmState::default(),
            backfill: Default::default(),
            metrics: Bytes::new(),
        }));
        let mut hub = Hub {
            arbiter: Arbiter::new(&spec.leds),
            rules: vec![RuleState::default(); spec.rules.len()],
            webhook: AlertSet::default(),
            suppressed: Default::default(),
            am: AmState {
                configured: am_link.is_some(),
                ..AmState::default()
            },
            am_complete: true,
            am_link,
            active: Vec::new(),
            history,
            backfill: crate::backfill::Status {
                configured: spec.remote_write.is_some(),
                ..Default::default()
            },
            metrics,
            sensors,
            led_modes,
            out,
            seq: 0,
            spec,
        };
        for i in 0..hub.spec.leds.len() {
            hub.apply_led(i);
        }
        hub.publish();
        (hub, rx)
    }

    /// Handles messages until shutdown (or until every sender is gone).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            // Wake for the next Alertmanager alert whose `endsAt` passes without a resolve.
            let expiry = self.webhook.next_expiry_ms().map(|ms| {
                let wait = u64::try_from(ms.saturating_sub(now_ms())).unwrap_or(0);
                Instant::now() + Duration::from_millis(wait)
            });
            let msg = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                () = sleep_until_some(expiry) => {
                    let gone = self.webhook.expire(now_ms());
                    for a in &gone {
                        tracing::info!(alert = a.name(), fingerprint = %a.fingerprint, "alert expired: endsAt passed without a resolve");
                    }
                    if !gone.is_empty() {
                        self.sync_claims();
                        self.publish();
                    }
                    continue;
                }
            };
            match msg {
                Msg::Read {
                    sensor,
                    result,
                    retried,
                    took,
                } => self.on_read(sensor, result, retried, took),
                Msg::Led { led, cmd, reply } => {
                    self.arbiter.set_manual(
                        led,
                        match cmd {
                            LedCommand::Set(m) => Some(m),
                            LedCommand::Auto => None,
                        },
                    );
                    self.apply_led(led);
                    self.publish();
                    if let Some(status) = self.led_status(led) {
                        let _ = reply.send(status);
                    }
                }
                Msg::Webhook {
                    group,
                    status,
                    alerts,
                    reply,
                } => {
                    let applied = self.webhook.apply(&group, status, alerts, now_ms());
                    if applied.changed() {
                        self.sync_claims();
                        self.publish();
                    }
                    let _ = reply.send(applied);
                    // The truth follows right behind the fast path.
                    if let Some(l) = &self.am_link {
                        l.wake.notify_one();
                    }
                }
                Msg::Reconciled(report) => self.on_reconcile(report),
                Msg::Backfill(status) => {
                    if status != self.backfill {
                        self.backfill = status;
                        self.metrics.set_backfill(&status);
                        self.publish();
                    }
                }
                Msg::Button {
                    long,
                    silence,
                    reply,
                } => {
                    let done = if long {
                        self.hand_back_leds()
                    } else {
                        self.acknowledge(silence)
                    };
                    if let Some(r) = reply {
                        let _ = r.send(done);
                    }
                }
                Msg::Shutdown { reply } => {
                    // Dropping the senders ends each LED task, which switches its LED off.
                    self.led_modes.clear();
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    fn on_read(
        &mut self,
        i: usize,
        result: Result<Readings, SensorError>,
        retried: RetriedErrors,
        took: Duration,
    ) {
        let Some(st) = self.sensors.get_mut(i) else {
            return;
        };
        self.metrics
            .record_read(&st.name, st.kind.as_str(), &result, took);
        for (reason, n) in retried.iter() {
            st.errors_total[reason as usize] += u64::from(n);
            self.metrics
                .count_errors(&st.name, st.kind.as_str(), reason, n);
        }
        st.read_duration = took;
        st.reads_total += 1;
        match &result {
            Ok(r) => {
                st.up = true;
                st.error = None;
                st.last_good = Some(*r);
                crate::history::lock(&self.history).record(i, r);
            }
            Err(e) => {
                if st.up || st.error.as_ref().map(|(r, _)| *r) != Some(e.reason()) {
                    tracing::warn!(sensor = %st.name, reason = %e.reason(), error = %e, "sensor read failed");
                }
                st.up = false;
                st.errors_total[e.reason() as usize] += 1;
                st.error = Some((e.reason(), e.to_string()));
            }
        }
        if let Ok(r) = result {
            self.eval_rules(i, &r);
        }
        self.publish();
    }

    /// Edge rules on sensor `i`: a rule fires once its condition has held for its `for`
    /// duration, and resolves as soon as it no longer holds. A failed read changes nothing.
    fn eval_rules(&mut self, sensor: usize, r: &Readings) {
        let now = Instant::now();
        let spec = Arc::clone(&self.spec);
        let mut changed = false;
        for (ri, rule) in spec.rules.iter().enumerate() {
            if rule.sensor != sensor {
                continue;
            }
            let Some(v) = r.get(rule.quantity) else {
                continue;
            };
            let st = &mut self.rules[ri];
            let holds = rule.threshold.holds(v);
            let was = st.firing;
            if holds {
                let since = *st.pending_since.get_or_insert(now);
                st.firing = now.duration_since(since) >= rule.for_;
            } else {
                st.pending_since = None;
                st.firing = false;
                st.acked = false;
            }
            if st.firing != was {
                if st.firing {
                    tracing::warn!(rule = %rule.name, value = v, severity = rule.severity.as_str(), "edge rule firing");
                } else {
                    tracing::info!(rule = %rule.name, value = v, "edge rule resolved");
                }
                changed = true;
            }
        }
        if changed {
            self.sync_claims();
        }
    }

    /// Recomputes the active alerts and every LED claim from the firing rules and the
    /// Alertmanager alert set, then drives the LEDs whose winner changed.
    fn sync_claims(&mut self) {
        let firing: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].firing)
            .collect();
        let acked: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].firing && self.rules[i].acked)
            .collect();
        self.active = alerts::active(&self.spec, &firing, &acked, &self.webhook, &self.suppressed);
        self.arbiter.clear_alerts();
        for a in self.active.iter().filter(|a| a.state == "firing") {
            for c in &a.claims {
                self.arbiter
                    .claim_alert(c.led, &c.key, &a.name, c.severity, c.mode);
            }
        }
        for i in 0..self.arbiter.len() {
            self.apply_led(i);
        }
    }

    fn on_reconcile(&mut self, report: Report) {
        match report {
            Report::Truth {
                truth,
                asked_ms,
                at_ms,
            } => {
                if !truth.complete && self.am_complete {
                    tracing::info!("Alertmanager started less than {}s ago: until Prometheus has resent its alerts, a reconcile ends none", COMPLETE_AFTER.as_secs());
                }
                self.am_complete = truth.complete;
                let changed = self.webhook.replace(truth.alerts, asked_ms, truth.complete);
                let suppressed_changed = self.suppressed != truth.suppressed;
                self.suppressed = truth.suppressed;
                let was = self.am;
                self.am.up = true;
                self.am.last_ms = Some(at_ms);
                self.metrics
                    .set_reconcile(Some(at_ms as f64 / 1000.0), truth.requests);
                if changed || suppressed_changed {
                    tracing::info!(
                        alerts = self.webhook.len(),
                        suppressed = self.suppressed.len(),
                        "reconciled with Alertmanager: LEDs follow its alerts and silences"
                    );
                    self.sync_claims();
                }
                if changed || suppressed_changed || was != self.am {
                    self.publish();
                }
            }
            Report::Down => {
                if self.am.up {
                    self.am.up = false;
                    self.metrics.set_reconcile(None, 0);
                    self.publish();
                }
            }
        }
    }

    /// A long press: every manually set LED back to `auto`.
    fn hand_back_leds(&mut self) -> Acknowledged {
        let mut out = Acknowledged::default();
        for i in 0..self.arbiter.len() {
            if self.arbiter.has_manual(i) {
                self.arbiter.set_manual(i, None);
                self.apply_led(i);
                if let Some(l) = self.spec.leds.get(i) {
                    out.leds.push(l.name.clone());
                }
            }
        }
        tracing::info!(leds = ?out.leds, "long press: manually set LEDs back to auto");
        self.publish();
        out
    }

    /// A short press: this node's firing edge rules acknowledged at once, and a silence asked of
    /// Alertmanager for each of its firing alerts (sent when it answers; the reconcile then
    /// takes their claims away).
    fn acknowledge(&mut self, silence: Duration) -> Acknowledged {
        let mut out = Acknowledged::default();
        for (i, r) in self.rules.iter_mut().enumerate() {
            if r.firing && !r.acked {
                r.acked = true;
                out.rules.push(self.spec.rules[i].name.clone());
            }
        }
        for a in self
            .active
            .iter()
            .filter(|a| a.origin == "alertmanager" && a.state == "firing")
        {
            let key = (a.name.clone(), a.node_label.clone());
            if !out.silences.contains(&key) {
                out.silences.push(key);
            }
        }
        if let Some(l) = &self.am_link {
            for (name, node) in &out.silences {
                let s = NewSilence {
                    matchers: vec![
                        ("alertname".into(), name.clone()),
                        ("node".into(), node.clone()),
                    ],
                    duration: silence,
                    created_by: format!("edgesense button on {}", self.spec.node),
                    comment: format!("acknowledged on {}", self.spec.node),
                };
                if l.silences.try_send(s).is_err() {
                    tracing::error!(alert = %name, "too many silences waiting; this one is dropped");
                }
            }
            l.wake.notify_one();
        } else if !out.silences.is_empty() {
            tracing::warn!(
                "no [alertmanager] url: Alertmanager's alerts cannot be silenced from here"
            );
        }
        tracing::info!(rules = ?out.rules, silences = ?out.silences, "acknowledged");
        self.sync_claims();
        self.publish();
        out
    }

    /// Sends LED `i`'s effective mode to its task (only if it changed).
    fn apply_led(&mut self, i: usize) {
        let (mode, _) = self.arbiter.effective(i);
        if let Some(tx) = self.led_modes.get(i) {
            tx.send_if_modified(|m| {
                let changed = *m != mode;
                *m = mode;
                changed
            });
        }
        if let Some(l) = self.spec.leds.get(i) {
            self.metrics.set_led(&l.name, mode.is_lit());
            let (_, source) = self.arbiter.effective(i);
            let reason = match &source {
                crate::leds::Source::Idle => "idle",
                crate::leds::Source::Manual => "manual",
                crate::leds::Source::Alert { name, .. } => name.as_str(),
            };
            self.metrics.set_led_state(&l.name, mode.name(), reason);
        }
    }

    fn led_status(&self, i: usize) -> Option<LedStatus> {
        let l = self.spec.leds.get(i)?;
        let (mode, source) = self.arbiter.effective(i);
        Some(LedStatus {
            name: l.name.clone(),
            pin: l.pin,
            mode,
            source,
        })
    }

    fn publish(&mut self) {
        let alerts = self.active.clone();
        for sev in Severity::ALL {
            self.metrics
                .set_alerts(sev, alerts.iter().filter(|a| a.severity == sev).count());
        }
        self.seq += 1;
        let snap = Snapshot {
            seq: self.seq,
            sensors: self.sensors.clone(),
            leds: (0..self.spec.leds.len())
                .filter_map(|i| self.led_status(i))
                .collect(),
            alerts,
            alertmanager: self.am,
            backfill: self.backfill,
            metrics: Bytes::from(self.metrics.render()),
        };
        self.out.send_replace(Arc::new(snap));
    }
}

/// Wall-clock milliseconds since the Unix epoch (Alertmanager's times are wall-clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
