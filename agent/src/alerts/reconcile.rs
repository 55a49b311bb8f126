//! The truth about this node's alerts, from Alertmanager's API v2.
//!
//! Webhooks tell an agent only of the changes Alertmanager chooses to notify: a silence sends
//! none, an agent that restarted forgets what fires until the next repeat (`repeat_interval`,
//! an hour), and a notification lost after Alertmanager's retries stays lost. So the agent also
//! asks `GET /api/v2/alerts` (active, silenced and inhibited ones, with their state) at start,
//! every `reconcile_interval`, and right after each webhook, and makes its set of Alertmanager
//! alerts exactly that: the LED claims follow the alerts that are active and neither silenced
//! nor inhibited. The webhook stays the fast path; this is the truth.
//!
//! When no Alertmanager answers, the agent keeps what it has (the edge rules are its own and
//! unaffected), logs the outage once and its end, and tries again with back-off. Silences the
//! node's button asked for wait in a queue until one answers. With several URLs (an HA pair)
//! the first that answers is asked; they gossip the same alerts and silences.
//!
//! `https://` URLs are verified against the fleet CA (`[tls] ca_file`) and the calls carry the
//! agent's own Alertmanager user (`[alertmanager] username`, `password_file`): a silence is an
//! LED control, so the stack's Alertmanager answers nobody without credentials.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use edgesense_net::{Call, Target};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::webhook::{parse_rfc3339_ms, Alert, Status};
use crate::credentials;

/// Bodies larger than this are refused (an Alertmanager with thousands of alerts answers in
/// well under a megabyte per hundred).
const MAX_BODY: usize = 16 << 20;

/// Why an alert does not claim its LEDs although Alertmanager has it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suppression {
    /// `silenced` or `inhibited`.
    pub state: &'static str,
    /// The silences' `createdBy` (or the inhibiting alerts' fingerprints).
    pub by: Vec<String>,
    /// The latest end of those silences, ms since the Unix epoch.
    pub until_ms: Option<i64>,
}

/// What one reconcile found: this node's active alerts, and which of them are suppressed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Truth {
    pub alerts: Vec<Alert>,
    /// By fingerprint.
    pub suppressed: BTreeMap<String, Suppression>,
    /// Whether `alerts` is all Alertmanager will have: not while it is young
    /// ([`COMPLETE_AFTER`]), when an alert missing from it may still fire.
    pub complete: bool,
    /// Requests to Alertmanager's API this reconcile took.
    pub requests: u32,
}

/// How long after its start an Alertmanager's alert list is complete. It keeps alerts in
/// memory only (silences are on disk): a restarted one has what Prometheus sent since, and
/// Prometheus resends a firing alert every `--rules.alert.resend-delay` (1 min) at most. Until
/// then a reconcile adds and updates alerts but ends none, so a restart (a rotation, a manager
/// lost) never turns a lit LED off.
pub const COMPLETE_AFTER: Duration = Duration::from_secs(90);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    fingerprint: String,
    starts_at: String,
    status: ApiStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiStatus {
    state: String,
    #[serde(default)]
    silenced_by: Vec<String>,
    #[serde(default)]
    inhibited_by: Vec<String>,
}

impl ApiStatus {
    /// `active`, `suppressed` or `unprocessed` (not yet through the pipeline: counts as active).
    fn is_suppressed(&self) -> bool {
        self.state == "suppressed"
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiSilence {
    id: String,
    created_by: String,
    ends_at: String,
}

/// A silence to create: `matchers` are (label, value), all equal.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSilence {
    pub matchers: Vec<(String, String)>,
    pub duration: Duration,
    pub created_by: String,
    pub comment: String,
}

/// Alertmanager's `GET /api/v2/alerts` answer.
fn parse_alerts(alerts: &[u8]) -> Result<Vec<ApiAlert>, String> {
    serde_json::from_slice(alerts).map_err(|e| format!("alerts: {e}"))
}

/// Alertmanager's answers, turned into [`Truth`] for node `node`.
fn truth(node: &str, alerts: Vec<ApiAlert>, silences: &[u8]) -> Result<Truth, String> {
    let silences: Vec<ApiSilence> = if silences.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(silences).map_err(|e| format!("silences: {e}"))?
    };
    let silence: BTreeMap<&str, &ApiSilence> =
        silences.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut out = Truth::default();
    for a in alerts {
        if !super::for_node(&a.labels, node) {
            continue;
        }
        let Some(starts_at_ms) = parse_rfc3339_ms(&a.starts_at) else {
            continue;
        };
        if a.status.is_suppressed() && !a.status.silenced_by.is_empty() {
            let by: Vec<&ApiSilence> = a
                .status
                .silenced_by
                .iter()
                .filter_map(|id| silence.get(id.as_str()).copied())
                .collect();
            out.suppressed.insert(
                a.fingerprint.clone(),
                Suppression {
                    state: "silenced",
                    by: if by.is_empty() {
                        a.status.silenced_by.clone()
                    } else {
                        by.iter().map(|s| s.created_by.clone()).collect()
                    },
                    until_ms: by.iter().filter_map(|s| parse_rfc3339_ms(&s.ends_at)).max(),
                },
            );
        } else if a.status.is_suppressed() && !a.status.inhibited_by.is_empty() {
            out.suppressed.insert(
                a.fingerprint.clone(),
                Suppression {
                    state: "inhibited",
                    by: a.status.inhibited_by.clone(),
                    until_ms: None,
                },
            );
        }
        out.alerts.push(Alert {
            status: Status::Firing,
            labels: a.labels,
            annotations: a.annotations,
            starts_at_ms,
            // Kept until Alertmanager says otherwise, also while it cannot be reached.
            ends_at_ms: None,
            fingerprint: a.fingerprint,
        });
    }
    Ok(out)
}

/// A client of Alertmanager's API v2 on one or more URLs.
#[derive(Clone, Debug)]
pub struct Client {
    targets: Vec<Target>,
    credentials: credentials::Shared,
}

impl Client {
    /// The URLs were checked with the config ([`crate::spec`]); one that does not parse is left
    /// out.
    pub fn new(urls: &[String], credentials: credentials::Shared) -> Client {
        Client {
            targets: urls.iter().filter_map(|u| Target::parse(u).ok()).collect(),
            credentials,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// `method path` on the first Alertmanager that answers: its status and body.
    async fn call(&self, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Bytes), String> {
        let client = self.credentials.get().alertmanager.clone();
        let mut errors = Vec::new();
        for t in &self.targets {
            let call = match &body {
                Some(b) => Call::post_json(path, b.clone()),
                None => Call::get(path),
            };
            // Every address of the name: an Alertmanager pair behind one alias.
            match client.send_any(t, call.limit(MAX_BODY)).await {
                Ok(r) => return Ok((r.status, r.body)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(errors.join("; "))
    }

    /// This node's alerts as Alertmanager has them.
    pub async fn truth(&self, node: &str) -> Result<Truth, String> {
        let (status, body) = self.call("/api/v2/status", None).await?;
        if status != 200 {
            return Err(format!("GET /api/v2/status: HTTP {status}{}", hint(status)));
        }
        let started_ms = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["uptime"].as_str().and_then(parse_rfc3339_ms));
        let (status, alerts) = self.call(&alerts_path(node), None).await?;
        if status != 200 {
            return Err(format!("GET /api/v2/alerts: HTTP {status}{}", hint(status)));
        }
        let mut requests = 2;
        // Who silenced an alert is asked only when one of this node's is silenced: the list
        // holds every silence of the fleet, expired ones too.
        let alerts = parse_alerts(&alerts)?;
        let silenced = alerts
            .iter()
            .any(|a| super::for_node(&a.labels, node) && !a.status.silenced_by.is_empty());
        let silences = if silenced {
            requests += 1;
            let (status, silences) = self.call("/api/v2/silences", None).await?;
            if status != 200 {
                return Err(format!("GET /api/v2/silences: HTTP {status}"));
            }
            silences
        } else {
            Bytes::new()
        };
        let mut t = truth(node, alerts, &silences)?;
        t.requests = requests;
        let young_until = started_ms.map(|s| s + COMPLETE_AFTER.as_millis() as i64);
        t.complete = young_until.is_none_or(|until| now_ms() >= until);
        Ok(t)
    }

    /// Creates `s`; its id.
    pub async fn silence(&self, s: &NewSilence) -> Result<String, String> {
        let now = std::time::SystemTime::now();
        let body = serde_json::json!({
            "matchers": s.matchers.iter().map(|(n, v)| serde_json::json!({
                "name": n, "value": v, "isRegex": false, "isEqual": true,
            })).collect::<Vec<_>>(),
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + s.duration),
            "createdBy": s.created_by,
            "comment": s.comment,
        });
        let (status, answer) = self
            .call("/api/v2/silences", Some(body.to_string().into_bytes()))
            .await?;
        if status != 200 {
            return Err(format!(
                "POST /api/v2/silences: HTTP {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|e| format!("silence answer: {e}"))?;
        Ok(v["silenceID"].as_str().unwrap_or_default().to_owned())
    }
}

/// What a refusal means for the agent's own login.
/// `GET /api/v2/alerts` for `node`: its own alerts and the cluster-wide ones (no `node` label;
/// Alertmanager matches a missing label as the empty value), so an answer holds what this
/// node shows, not the whole fleet's alerts (N agents × N nodes' alerts, every reconcile). A
/// name that is not plain `[A-Za-z0-9_-]` is asked unfiltered (and sorted out here).
fn alerts_path(node: &str) -> String {
    let mut p =
        "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true".to_owned();
    if !node.is_empty()
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        // filter=node=~"<node>|", percent-encoded.
        p.push_str(&format!("&filter=node%3D~%22{node}%7C%22"));
    }
    p
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (the agent's Alertmanager user or password is not the stack's: [alertmanager] username, password_file)",
        _ => "",
    }
}

/// RFC 3339 (UTC, seconds) for `t`, as Alertmanager reads it.
fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = super::webhook::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the reconciler reports to the hub.
#[derive(Debug)]
pub enum Report {
    /// A good reconcile: asked at `asked_ms`, answered at `at_ms`.
    Truth {
        truth: Truth,
        asked_ms: i64,
        at_ms: i64,
    },
    /// No Alertmanager answered.
    Down,
}

/// Spread of the reconciles a relayed webhook sets off across a fleet.
const WAKE_SPREAD: Duration = Duration::from_secs(1);

/// A random duration in `[0, max)` (std's per-process random hash keys, mixed with the time).
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let f = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(f)
}

/// Runs the reconcile loop: at start, every `interval`, and whenever `wake` is notified (a
/// webhook arrived, a button asked for silences); sends each result to `report`. Silences from
/// `silences` are created before the next reconcile, and kept until one is.
pub async fn run(
    client: Client,
    node: Arc<str>,
    interval: Duration,
    wake: Arc<Notify>,
    mut silences: mpsc::Receiver<NewSilence>,
    report: mpsc::Sender<Report>,
) {
    let mut queue: Vec<NewSilence> = Vec::new();
    let mut up = None::<bool>;
    let mut backoff = Duration::from_secs(1);
    loop {
        while let Ok(s) = silences.try_recv() {
            queue.push(s);
        }
        let mut ok = true;
        while let Some(s) = queue.first() {
            match client.silence(s).await {
                Ok(id) => {
                    tracing::info!(silence = %id, matchers = ?s.matchers, "silence created");
                    queue.remove(0);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "silence not created yet");
                    ok = false;
                    break;
                }
            }
        }
        let asked_ms = now_ms();
        let result = if ok {
            client.truth(&node).await
        } else {
            Err("Alertmanager unreachable".into())
        };
        let wait = match result {
            Ok(truth) => {
                if up == Some(false) {
                    tracing::info!("Alertmanager reachable again; reconciled");
                }
                up = Some(true);
                backoff = Duration::from_secs(1);
                let at_ms = now_ms();
                if report
                    .send(Report::Truth {
                        truth,
                        asked_ms,
                        at_ms,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                // ±10 %: agents started together (a fleet's boot, a roll) drift apart instead
                // of asking Alertmanager in the same second every interval.
                interval.mul_f64(0.9) + jitter(interval / 5)
            }
            Err(e) => {
                if up != Some(false) {
                    tracing::warn!(error = %e, "Alertmanager unreachable; LEDs keep their state, edge rules keep working; retrying");
                }
                up = Some(false);
                if report.send(Report::Down).await.is_err() {
                    return;
                }
                let w = backoff.min(interval);
                backoff = (backoff * 2).min(interval);
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A webhook relayed to the whole fleet wakes every agent at once: each asks within
            // the next second (the webhook already lit its LEDs; this is the check).
            _ = wake.notified() => tokio::time::sleep(jitter(WAKE_SPREAD.min(interval / 2))).await,
            s = silences.recv() => match s {
                Some(s) => queue.push(s),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_is_this_nodes_alerts_with_who_silenced_them() {
        let alerts = br#"[
          {"labels":{"alertname":"Hot","node":"pi-a","severity":"critical"},"annotations":{},"fingerprint":"a1","startsAt":"2026-12-01T10:00:00Z","endsAt":"2026-12-01T10:05:00Z","status":{"state":"suppressed","silencedBy":["s1"],"inhibitedBy":[]}},
          {"labels":{"alertname":"Hot","node":"pi-b"},"fingerprint":"b1","startsAt":"2026-12-01T10:00:00Z","endsAt":"2026-12-01T10:05:00Z","status":{"state":"active","silencedBy":[],"inhibitedBy":[]}},
          {"labels":{"alertname":"Wide","severity":"warning"},"fingerprint":"c1","startsAt":"2026-12-01T10:00:00Z","endsAt":"2026-12-01T10:05:00Z","status":{"state":"suppressed","silencedBy":[],"inhibitedBy":["a1"]}},
          {"labels":{"alertname":"Cold","node":"pi-a"},"fingerprint":"d1","startsAt":"2026-12-01T10:00:00Z","endsAt":"2026-12-01T10:05:00Z","status":{"state":"active","silencedBy":[],"inhibitedBy":[]}}
        ]"#;
        let silences = br#"[{"id":"s1","createdBy":"edgesense button on pi-a","endsAt":"2026-12-01T12:00:00Z","comment":"","matchers":[],"status":{"state":"active"},"startsAt":"2026-12-01T10:00:00Z","updatedAt":"2026-12-01T10:00:00Z"}]"#;
        let t = truth("pi-a", parse_alerts(alerts).unwrap(), silences).unwrap();
        let fps: Vec<&str> = t.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
        assert_eq!(fps, ["a1", "c1", "d1"], "pi-b's alert is not this node's");
        let s = &t.suppressed["a1"];
        assert_eq!(s.state, "silenced");
        assert_eq!(s.by, ["edgesense button on pi-a"]);
        assert_eq!(s.until_ms, parse_rfc3339_ms("2026-12-01T12:00:00Z"));
        assert_eq!(t.suppressed["c1"].state, "inhibited");
        assert!(!t.suppressed.contains_key("d1"));
        assert!(t.alerts.iter().all(|a| a.ends_at_ms.is_none()));
        assert!(parse_alerts(b"{}").is_err(), "not a list");
    }

    #[test]
    fn silences_end_in_rfc3339() {
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(1_796_113_185)),
            "2026-12-01T08:19:45Z"
        );
    }
}
