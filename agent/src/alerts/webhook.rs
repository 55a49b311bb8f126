//! The Alertmanager webhook payload, version 4 (Alertmanager docs, "Configuration — webhook_config";
//! `template.Data` in alertmanager/template/template.go), parsed and checked as a whole before
//! anything is applied.
//!
//! ```json
//! {"version":"4","groupKey":"{}:{alertname=\"X\"}","truncatedAlerts":0,"status":"firing",
//!  "receiver":"edgesense","groupLabels":{},"commonLabels":{},"commonAnnotations":{},
//!  "externalURL":"http://am:9093",
//!  "alerts":[{"status":"firing","labels":{"alertname":"X","node":"pi-1","severity":"critical"},
//!             "annotations":{},"startsAt":"2026-11-25T10:00:00.123Z",
//!             "endsAt":"0001-01-01T00:00:00Z","generatorURL":"…","fingerprint":"c6b2…"}]}
//! ```
//!
//! Fields the agent does not use are accepted and ignored, so a newer Alertmanager that adds one
//! still gets through; the fields it uses must be present with the right types. Alertmanager
//! sends `endsAt` as the zero time (year 1) for an alert that is still firing.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Largest webhook body accepted: about 1 000 alerts of typical size.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
/// Longest fingerprint accepted (Alertmanager's are 16 hex digits).
const MAX_FINGERPRINT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload {
    version: String,
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    status: Status,
    alerts: Vec<RawAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    status: Status,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    fingerprint: String,
}

/// One alert of a payload, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch.
    pub starts_at_ms: i64,
    /// `None` for the zero time (still firing, no end known).
    pub ends_at_ms: Option<i64>,
    pub fingerprint: String,
}

impl Alert {
    /// The `alertname` label, or the fingerprint when it has none.
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map_or(self.fingerprint.as_str(), String::as_str)
    }
}

/// A checked payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub group_key: String,
    pub status: Status,
    pub truncated_alerts: u64,
    pub alerts: Vec<Alert>,
}

/// Parses and checks a webhook body. The error says what is wrong and where.
pub fn parse(body: &[u8]) -> Result<Payload, String> {
    let raw: RawPayload =
        serde_json::from_slice(body).map_err(|e| format!("invalid webhook body: {e}"))?;
    if raw.version != "4" {
        return Err(format!(
            "unsupported webhook payload version \"{}\" (this agent reads version 4)",
            raw.version
        ));
    }
    let mut alerts = Vec::with_capacity(raw.alerts.len());
    for (i, a) in raw.alerts.into_iter().enumerate() {
        if a.fingerprint.is_empty()
            || a.fingerprint.len() > MAX_FINGERPRINT
            || !a.fingerprint.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(format!(
                "alerts[{i}].fingerprint must be 1–{MAX_FINGERPRINT} letters or digits"
            ));
        }
        let starts_at_ms = parse_rfc3339_ms(&a.starts_at).ok_or_else(|| {
            format!(
                "alerts[{i}].startsAt is not an RFC 3339 time: {:?}",
                a.starts_at
            )
        })?;
        let ends_at_ms = parse_rfc3339_ms(&a.ends_at).ok_or_else(|| {
            format!(
                "alerts[{i}].endsAt is not an RFC 3339 time: {:?}",
                a.ends_at
            )
        })?;
        alerts.push(Alert {
            status: a.status,
            labels: a.labels,
            annotations: a.annotations,
            starts_at_ms,
            // Go's zero time (year 1) and anything before 1970 mean "no end".
            ends_at_ms: (ends_at_ms > 0).then_some(ends_at_ms),
            fingerprint: a.fingerprint,
        });
    }
    Ok(Payload {
        group_key: raw.group_key,
        status: raw.status,
        truncated_alerts: raw.truncated_alerts,
        alerts,
    })
}

/// The civil date (year, month, day) `days` after 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian; H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 date-time (`2026-11-25T10:00:00.123456789Z`, `…+01:00`) to milliseconds
/// since the Unix epoch (negative before 1970).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        for (k, digit) in b[start..i].iter().take(3).enumerate() {
            millis += i64::from(digit - b'0') * [100, 10, 1][k];
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_s;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn payload(alerts: &[(&str, &str, &str)]) -> String {
        let alerts: Vec<String> = alerts
            .iter()
            .map(|(status, fp, labels)| {
                format!(
                    r#"{{"status":"{status}","labels":{{{labels}}},"annotations":{{"summary":"s"}},"startsAt":"2026-11-25T10:00:00.5Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p/graph","fingerprint":"{fp}"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"T\"}}","truncatedAlerts":0,"status":"firing","receiver":"edgesense","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am:9093","alerts":[{}]}}"#,
            alerts.join(",")
        )
    }

    #[test]
    fn parses_a_version_4_payload() {
        let body = payload(&[(
            "firing",
            "a1b2",
            r#""alertname":"Hot","severity":"critical""#,
        )]);
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.status, Status::Firing);
        assert_eq!(p.alerts.len(), 1);
        let a = &p.alerts[0];
        assert_eq!(a.name(), "Hot");
        assert_eq!(a.ends_at_ms, None, "the zero time means no end");
        assert_eq!(a.starts_at_ms, 1_795_600_800_500);
        assert_eq!(a.annotations["summary"], "s");
    }

    #[test]
    fn rejects_what_it_cannot_use_and_says_where() {
        let good = payload(&[("firing", "a1", r#""alertname":"Hot""#)]);
        for (bad, what) in [
            (
                good.replace(r#""version":"4""#, r#""version":"3""#),
                "version",
            ),
            (
                good.replace(
                    r#""status":"firing","labels""#,
                    r#""status":"burning","labels""#,
                ),
                "unknown variant",
            ),
            (
                good.replace("2026-11-25T10:00:00.5Z", "yesterday"),
                "alerts[0].startsAt",
            ),
            (
                good.replace(r#""fingerprint":"a1""#, r#""fingerprint":"""#),
                "alerts[0].fingerprint",
            ),
            (
                good.replace(
                    r#""labels":{"alertname":"Hot"}"#,
                    r#""labels":{"alertname":3}"#,
                ),
                "invalid type",
            ),
            (
                good.replace(r#","fingerprint":"a1""#, ""),
                "missing field `fingerprint`",
            ),
            ("{".to_owned(), "EOF"),
        ] {
            let e = parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        let with_extra = good.replace(r#""version":"4""#, r#""version":"4","newField":[1]"#);
        assert!(
            parse(with_extra.as_bytes()).is_ok(),
            "unknown fields are ignored"
        );
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00.123456789Z"),
            Some(951_868_800_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T23:59:59.9-00:30"),
            Some(1_709_252_999_900)
        );
        assert!(parse_rfc3339_ms("0001-01-01T00:00:00Z").unwrap() < 0);
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
