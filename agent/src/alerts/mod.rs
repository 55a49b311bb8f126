//! Alerts and the LEDs they light: the webhook payload ([`webhook`]), the set of firing
//! Alertmanager alerts ([`set`]), and the `[[alert]]` routes that map an alert's labels to an LED
//! pattern, for Alertmanager's alerts and the edge rules' alike.

pub mod reconcile;
pub mod set;
pub mod webhook;

use std::collections::BTreeMap;

use edgesense_sensors::led::LedMode;

use crate::{
    config::{ConfigError, Loaded, ModeFields, RelayConfig, Severity},
    spec::{LedSpec, NodeSpec, RuleSpec},
};

/// One `[[alert]]` route, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRoute {
    /// (label, value) pairs the alert must all have.
    pub matchers: Vec<(String, String)>,
    /// Index into the node's LEDs.
    pub led: usize,
    pub mode: LedMode,
    /// The rank of the claim; `None`: the alert's own severity.
    pub severity: Option<Severity>,
}

impl AlertRoute {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }
}

/// An alert's rank from its `severity` label: `critical` is critical; anything else (warning,
/// info, none) ranks as a warning, above a manual LED setting.
pub fn severity_of(labels: &BTreeMap<String, String>) -> Severity {
    match labels.get("severity").map(String::as_str) {
        Some("critical") => Severity::Critical,
        _ => Severity::Warning,
    }
}

/// One alert's claim on one LED.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub led: usize,
    /// Unique per alert and route.
    pub key: String,
    pub severity: Severity,
    pub mode: LedMode,
}

/// An alert that is active on this node, edge rule or Alertmanager's.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveAlert {
    pub name: String,
    pub severity: Severity,
    /// `rule` (edge rule) or `alertmanager`.
    pub origin: &'static str,
    /// The LEDs it claims (whether or not it wins them).
    pub claims: Vec<Claim>,
    pub fingerprint: Option<String>,
    pub summary: Option<String>,
    /// When it started, in ms since the Unix epoch (Alertmanager's `startsAt`).
    pub since_ms: Option<i64>,
    /// `firing` (its claims apply), `silenced` or `inhibited` (Alertmanager's state, from the
    /// last reconcile), or `acknowledged` (an edge rule acknowledged on the node until it
    /// clears): only firing alerts light LEDs.
    pub state: &'static str,
    /// Who silenced it (the silences' `createdBy`) and until when (ms since the Unix epoch).
    pub silenced_by: Vec<String>,
    pub until_ms: Option<i64>,
    /// The `node` label's value (empty for a cluster-wide alert): what a silence matches.
    pub node_label: String,
}

/// The labels an edge rule's alert carries, for matching `[[alert]]` routes.
fn rule_labels(spec: &NodeSpec, rule: &RuleSpec) -> BTreeMap<String, String> {
    [
        ("alertname", rule.name.as_str()),
        ("severity", rule.severity.as_str()),
        ("sensor", spec.sensors[rule.sensor].name.as_str()),
        ("node", spec.node.as_str()),
        ("origin", "rule"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn routed(
    spec: &NodeSpec,
    key: &str,
    labels: &BTreeMap<String, String>,
    own: Severity,
) -> Vec<Claim> {
    spec.alert_routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches(labels))
        .map(|(i, r)| Claim {
            led: r.led,
            key: format!("{key}#{i}"),
            severity: r.severity.unwrap_or(own),
            mode: r.mode,
        })
        .collect()
}

/// Every active alert with its claims: the firing edge rules (their own LED, then the routes
/// that match them) and the firing Alertmanager alerts (the routes that match them).
pub fn active(
    spec: &NodeSpec,
    firing_rules: &[usize],
    acked_rules: &[usize],
    webhook: &set::AlertSet,
    suppressed: &BTreeMap<String, reconcile::Suppression>,
) -> Vec<ActiveAlert> {
    let mut out = Vec::with_capacity(firing_rules.len() + webhook.len());
    for &ri in firing_rules {
        let rule = &spec.rules[ri];
        let key = format!("rule:{}", rule.name);
        let mut claims = vec![Claim {
            led: rule.led,
            key: key.clone(),
            severity: rule.severity,
            mode: rule.mode,
        }];
        claims.extend(routed(spec, &key, &rule_labels(spec, rule), rule.severity));
        out.push(ActiveAlert {
            name: rule.name.clone(),
            severity: rule.severity,
            origin: "rule",
            claims,
            fingerprint: None,
            summary: None,
            since_ms: None,
            state: if acked_rules.contains(&ri) {
                "acknowledged"
            } else {
                "firing"
            },
            silenced_by: Vec::new(),
            until_ms: None,
            node_label: spec.node.clone(),
        });
    }
    for a in webhook.active() {
        let severity = severity_of(&a.labels);
        out.push(ActiveAlert {
            name: a.name().to_owned(),
            severity,
            origin: "alertmanager",
            claims: routed(spec, &format!("am:{}", a.fingerprint), &a.labels, severity),
            fingerprint: Some(a.fingerprint.clone()),
            summary: a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .cloned(),
            since_ms: Some(a.starts_at_ms),
            state: suppressed.get(&a.fingerprint).map_or("firing", |s| s.state),
            silenced_by: suppressed
                .get(&a.fingerprint)
                .map(|s| s.by.clone())
                .unwrap_or_default(),
            until_ms: suppressed.get(&a.fingerprint).and_then(|s| s.until_ms),
            node_label: a.labels.get("node").cloned().unwrap_or_default(),
        });
    }
    out
}

/// True if `labels` are for this node: `node` equal to its name, or no `node` label at all
/// (a cluster-wide alert).
pub fn for_node(labels: &BTreeMap<String, String>, node: &str) -> bool {
    labels.get("node").is_none_or(|n| n == node)
}

/// Checks the `[[alert]]` tables of `loaded` against the node's LEDs.
pub fn resolve_routes(loaded: &Loaded, leds: &[LedSpec]) -> Result<Vec<AlertRoute>, ConfigError> {
    loaded
        .config
        .alert_routes
        .iter()
        .map(|r| {
            let led = leds
                .iter()
                .position(|l| l.name == *r.led.get_ref())
                .ok_or_else(|| {
                    loaded.error_at(
                        r.led.span(),
                        format!(
                            "no LED named \"{}\"; define it in a [[led]] table",
                            r.led.get_ref()
                        ),
                    )
                })?;
            let mode = ModeFields {
                mode: r.mode.clone(),
                period_ms: r.period_ms,
                brightness: r.brightness,
            }
            .to_mode("on")
            .map_err(|m| loaded.error_at(r.led.span(), m))?;
            Ok(AlertRoute {
                matchers: r
                    .matchers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                led,
                mode,
                severity: r.severity,
            })
        })
        .collect()
}

/// Where payloads are relayed, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelaySpec {
    /// `host:port` of each static peer.
    pub peers: Vec<String>,
    /// `name:port` whose A records are the peers.
    pub dns: Option<String>,
}

impl RelaySpec {
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.dns.is_none()
    }
}

/// Checks `[relay]`: every address must be `host:port`.
pub fn resolve_relay(
    loaded: &Loaded,
    relay: Option<&RelayConfig>,
) -> Result<RelaySpec, ConfigError> {
    let Some(r) = relay else {
        return Ok(RelaySpec::default());
    };
    let check = |s: &toml::Spanned<String>| {
        let v = s.get_ref();
        let ok = v.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if ok {
            Ok(v.clone())
        } else {
            Err(loaded.error_at(
                s.span(),
                format!("\"{v}\" is not host:port; write e.g. \"10.0.0.12:9842\" or \"edgesense-agent:9842\""),
            ))
        }
    };
    Ok(RelaySpec {
        peers: r.peers.iter().map(check).collect::<Result<_, _>>()?,
        dns: r.dns.as_ref().map(check).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_need_every_label() {
        let r = AlertRoute {
            matchers: vec![
                ("severity".into(), "critical".into()),
                ("sensor".into(), "room".into()),
            ],
            led: 0,
            mode: LedMode::ON,
            severity: None,
        };
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(r.matches(&labels(&[
            ("severity", "critical"),
            ("sensor", "room"),
            ("x", "y")
        ])));
        assert!(!r.matches(&labels(&[("severity", "critical")])));
        assert!(!r.matches(&labels(&[("severity", "warning"), ("sensor", "room")])));
        let any = AlertRoute {
            matchers: vec![],
            ..r
        };
        assert!(any.matches(&BTreeMap::new()));
        assert_eq!(
            severity_of(&labels(&[("severity", "critical")])),
            Severity::Critical
        );
        assert_eq!(
            severity_of(&labels(&[("severity", "info")])),
            Severity::Warning
        );
        assert_eq!(severity_of(&BTreeMap::new()), Severity::Warning);
    }
}
