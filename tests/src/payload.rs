//! The payloads tests send, each built one way: an alert as Prometheus posts it to
//! Alertmanager (API v2, [`Alert::post_body`]) and Alertmanager's webhook (v4, [`Webhook`])
//! as it notifies the agents.

use serde_json::{json, Map, Value};

/// Alertmanager's "no end" in a webhook: a firing alert's `endsAt` is Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Now plus `offset_s` seconds as RFC 3339 (UTC), as Alertmanager's API writes times.
pub fn rfc3339_in(offset_s: i64) -> String {
    let now = edgesense::pki::unix_now() as i64;
    edgesense::pki::rfc3339((now + offset_s).max(0) as u64)
}

/// One alert: its labels, when it started, and whether (and when) it ended.
#[derive(Clone, Debug)]
pub struct Alert {
    labels: Vec<(String, String)>,
    starts_at: String,
    ends_at: Option<String>,
    resolved: bool,
    fingerprint: Option<String>,
}

impl Alert {
    /// A firing alert named `alertname`, started at 2026-01-01T00:00:00Z, no end.
    pub fn new(alertname: &str) -> Alert {
        Alert {
            labels: vec![("alertname".into(), alertname.into())],
            starts_at: "2026-01-01T00:00:00Z".into(),
            ends_at: None,
            resolved: false,
            fingerprint: None,
        }
    }

    /// The label `name="value"` (replacing one of that name).
    pub fn label(mut self, name: &str, value: &str) -> Alert {
        self.labels.retain(|(n, _)| n != name);
        self.labels.push((name.into(), value.into()));
        self
    }

    pub fn starts_at(mut self, rfc3339: &str) -> Alert {
        self.starts_at = rfc3339.into();
        self
    }

    /// Started `ago` seconds before now, ending `ends_in` seconds from now (negative: already
    /// ended), as Prometheus posts it: Alertmanager counts it firing until then.
    pub fn around_now(mut self, ago: i64, ends_in: i64) -> Alert {
        self.starts_at = rfc3339_in(-ago);
        self.ends_at = Some(rfc3339_in(ends_in));
        self
    }

    /// Resolved at `rfc3339` (a webhook's "resolved" notification).
    pub fn resolved_at(mut self, rfc3339: &str) -> Alert {
        self.ends_at = Some(rfc3339.into());
        self.resolved = true;
        self
    }

    /// Alertmanager's fingerprint of the alert (by default a hash of its labels, as stable as
    /// Alertmanager's own).
    pub fn fingerprint(mut self, f: &str) -> Alert {
        self.fingerprint = Some(f.into());
        self
    }

    fn labels_json(&self) -> Value {
        Value::Object(
            self.labels
                .iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect::<Map<_, _>>(),
        )
    }

    fn name(&self) -> &str {
        &self.labels[0].1
    }

    /// The body of `POST /api/v2/alerts` with this alert alone.
    pub fn post_body(&self) -> String {
        let mut a = json!({"labels": self.labels_json(), "startsAt": self.starts_at});
        if let Some(end) = &self.ends_at {
            a["endsAt"] = json!(end);
        }
        json!([a]).to_string()
    }

    /// The webhook Alertmanager sends with this alert alone.
    pub fn webhook(self) -> String {
        Webhook::of([self]).body()
    }

    fn webhook_json(&self) -> Value {
        let mut sorted = self.labels.clone();
        sorted.sort();
        let fingerprint = self.fingerprint.clone().unwrap_or_else(|| {
            let h = sorted
                .iter()
                .flat_map(|(n, v)| [n.as_bytes(), b"\xff", v.as_bytes(), b"\xff"])
                .flatten()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
                });
            format!("{h:016x}")
        });
        json!({
            "status": if self.resolved { "resolved" } else { "firing" },
            "labels": self.labels_json(),
            "annotations": {},
            "startsAt": self.starts_at,
            "endsAt": if self.resolved { self.ends_at.as_deref().unwrap_or(ZERO_TIME) } else { ZERO_TIME },
            "generatorURL": "",
            "fingerprint": fingerprint,
        })
    }
}

/// An Alertmanager webhook notification (version 4): one group's alerts, grouped by
/// `alertname` as the shipped alertmanager.yml groups them.
pub struct Webhook {
    alerts: Vec<Alert>,
    receiver: String,
}

impl Webhook {
    pub fn of(alerts: impl IntoIterator<Item = Alert>) -> Webhook {
        Webhook {
            alerts: alerts.into_iter().collect(),
            receiver: "edgesense-agents".into(),
        }
    }

    pub fn receiver(mut self, name: &str) -> Webhook {
        self.receiver = name.into();
        self
    }

    /// The JSON Alertmanager posts: "firing" while any alert fires.
    pub fn body(&self) -> String {
        let name = self.alerts.first().map(Alert::name).unwrap_or("");
        let firing = self.alerts.iter().any(|a| !a.resolved);
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
            "truncatedAlerts": 0,
            "status": if firing { "firing" } else { "resolved" },
            "receiver": self.receiver,
            "groupLabels": {"alertname": name},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": self.alerts.iter().map(Alert::webhook_json).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

/// A silence as `POST /api/v2/silences` takes it: equality matchers, from a second ago for an
/// hour.
pub struct Silence {
    matchers: Vec<(String, String)>,
    by: String,
    comment: String,
}

impl Silence {
    /// A silence of every alert named `alertname`.
    pub fn of(alertname: &str) -> Silence {
        Silence {
            matchers: vec![("alertname".into(), alertname.into())],
            by: "test".into(),
            comment: "test".into(),
        }
    }

    pub fn matching(mut self, name: &str, value: &str) -> Silence {
        self.matchers.push((name.into(), value.into()));
        self
    }

    pub fn by(mut self, who: &str) -> Silence {
        self.by = who.into();
        self
    }

    pub fn comment(mut self, text: &str) -> Silence {
        self.comment = text.into();
        self
    }

    pub fn body(&self) -> String {
        let matchers: Vec<Value> = self
            .matchers
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v, "isRegex": false, "isEqual": true}))
            .collect();
        json!({
            "matchers": matchers,
            "startsAt": rfc3339_in(-1),
            "endsAt": rfc3339_in(3600),
            "createdBy": self.by,
            "comment": self.comment,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_reads_as_alertmanager_writes_it() {
        let v: Value = serde_json::from_str(
            &Alert::new("Hot")
                .label("node", "pi-a")
                .resolved_at("2026-01-01T00:05:00Z")
                .webhook(),
        )
        .unwrap();
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["groupKey"], "{}:{alertname=\"Hot\"}");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["node"], "pi-a");
        assert_eq!(a["endsAt"], "2026-01-01T00:05:00Z");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let firing: Value = serde_json::from_str(&Alert::new("Hot").webhook()).unwrap();
        assert_eq!(firing["alerts"][0]["endsAt"], ZERO_TIME);
        assert_ne!(firing["alerts"][0]["fingerprint"], a["fingerprint"]);
    }
}
