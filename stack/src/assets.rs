//! The shipped Prometheus and Alertmanager files (`stack/assets/`, embedded in the binary), and
//! how `stack up` flags change them. Each rendered file goes into a swarm config named by a hash
//! of its content, so a changed threshold makes a new config and rolls the service, and an
//! unchanged one changes nothing.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Result, StackError};

pub const PROMETHEUS_YML: &str = include_str!("../assets/prometheus.yml");
pub const RULES_YML: &str = include_str!("../assets/rules/edgesense.yml");
pub const RULES_TEST_YML: &str = include_str!("../assets/rules/edgesense.test.yml");
pub const ALERTMANAGER_YML: &str = include_str!("../assets/alertmanager.yml");
pub const GRAFANA_DASHBOARD: &str = include_str!("../assets/grafana/edgesense.json");

/// Alert thresholds in °C (the shipped rules' values are the defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub warn_celsius: f64,
    pub crit_celsius: f64,
    pub soc_warn_celsius: f64,
    pub soc_crit_celsius: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn_celsius: 30.0,
            crit_celsius: 35.0,
            soc_warn_celsius: 75.0,
            soc_crit_celsius: 80.0,
        }
    }
}

/// What the rendered files depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetOptions {
    pub thresholds: Thresholds,
    /// Replaces the shipped rules file entirely (thresholds then do not apply).
    pub rules: Option<String>,
    pub scrape_interval: Duration,
    /// How long Alertmanager waits before the first notification of a new group (shipped: 10 s;
    /// `for:` in the rules already debounces, so 0 is fine for LEDs that must react at once).
    pub group_wait: Duration,
}

/// The shipped `group_wait`.
pub const GROUP_WAIT: Duration = Duration::from_secs(10);

impl Default for AssetOptions {
    fn default() -> Self {
        AssetOptions {
            thresholds: Thresholds::default(),
            rules: None,
            scrape_interval: Duration::from_secs(15),
            group_wait: GROUP_WAIT,
        }
    }
}

/// The three files as deployed.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub prometheus_yml: String,
    pub rules_yml: String,
    pub alertmanager_yml: String,
}

/// `text` with exactly `n` occurrences of `from` replaced by `to`.
fn replace_n(text: &str, from: &str, to: &str, n: usize) -> Result<String> {
    let found = text.matches(from).count();
    if found != n {
        return Err(StackError::Input(format!(
            "the shipped file changed: expected {n} × {from:?}, found {found}"
        )));
    }
    Ok(text.replace(from, to))
}

/// A threshold as PromQL and as text: `30`, `27.5`.
fn num(v: f64) -> String {
    let s = format!("{v}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// A duration as Prometheus writes it: `15s`, `500ms`, `2m`.
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Renders the files for `opts`.
pub fn render(opts: &AssetOptions) -> Result<Rendered> {
    let t = opts.thresholds;
    for (name, v) in [
        ("--warn-celsius", t.warn_celsius),
        ("--crit-celsius", t.crit_celsius),
        ("--soc-warn-celsius", t.soc_warn_celsius),
        ("--soc-crit-celsius", t.soc_crit_celsius),
    ] {
        if !v.is_finite() || !(-55.0..=150.0).contains(&v) {
            return Err(StackError::Input(format!(
                "{name} {v}: give a temperature between -55 and 150 °C"
            )));
        }
    }
    if t.warn_celsius >= t.crit_celsius || t.soc_warn_celsius >= t.soc_crit_celsius {
        return Err(StackError::Input(
            "each warning threshold must be below its critical one".into(),
        ));
    }
    let rules_yml = match &opts.rules {
        Some(custom) => custom.clone(),
        None => {
            let d = Thresholds::default();
            let mut r = RULES_YML.to_owned();
            for (kind, old, new) in [
                ("!=", d.warn_celsius, t.warn_celsius),
                ("!=", d.crit_celsius, t.crit_celsius),
                ("=", d.soc_warn_celsius, t.soc_warn_celsius),
                ("=", d.soc_crit_celsius, t.soc_crit_celsius),
            ] {
                let expr = |v: f64| {
                    format!(
                        "edgesense_temperature_celsius{{kind{kind}\"thermal\"}} > {})",
                        num(v)
                    )
                };
                r = replace_n(&r, &expr(old), &expr(new), 1)?;
                let text = |v: f64| format!("(above {} °C)", num(v));
                r = replace_n(&r, &text(old), &text(new), 1)?;
            }
            r = replace_n(
                &r,
                &format!(
                    "air (ds18b20, bme280, …): warning {}, critical {}",
                    num(d.warn_celsius),
                    num(d.crit_celsius)
                ),
                &format!(
                    "air (ds18b20, bme280, …): warning {}, critical {}",
                    num(t.warn_celsius),
                    num(t.crit_celsius)
                ),
                1,
            )?;
            r = replace_n(
                &r,
                &format!(
                    "SoC (thermal): warning {}, critical {}",
                    num(d.soc_warn_celsius),
                    num(d.soc_crit_celsius)
                ),
                &format!(
                    "SoC (thermal): warning {}, critical {}",
                    num(t.soc_warn_celsius),
                    num(t.soc_crit_celsius)
                ),
                1,
            )?;
            r
        }
    };
    let interval = prom_duration(opts.scrape_interval);
    let mut prometheus_yml = PROMETHEUS_YML.to_owned();
    if opts.scrape_interval != Duration::from_secs(15) {
        if opts.scrape_interval < Duration::from_secs(1) {
            return Err(StackError::Input(
                "--scrape-interval must be at least 1s".into(),
            ));
        }
        prometheus_yml = replace_n(
            &prometheus_yml,
            "scrape_interval: 15s",
            &format!("scrape_interval: {interval}"),
            1,
        )?;
        prometheus_yml = replace_n(
            &prometheus_yml,
            "evaluation_interval: 15s",
            &format!("evaluation_interval: {interval}"),
            1,
        )?;
        let timeout = prom_duration(opts.scrape_interval.min(Duration::from_secs(5)));
        prometheus_yml = replace_n(
            &prometheus_yml,
            "scrape_timeout: 5s",
            &format!("scrape_timeout: {timeout}"),
            1,
        )?;
    }
    let mut alertmanager_yml = ALERTMANAGER_YML.to_owned();
    if opts.group_wait != GROUP_WAIT {
        alertmanager_yml = replace_n(
            &alertmanager_yml,
            "group_wait: 10s",
            &format!("group_wait: {}", prom_duration(opts.group_wait)),
            1,
        )?;
    }
    Ok(Rendered {
        prometheus_yml,
        rules_yml,
        alertmanager_yml,
    })
}

/// The first 10 hex digits of the SHA-256 of `data`: config and secret names.
pub fn short_hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_the_shipped_files_unchanged() {
        let r = render(&AssetOptions::default()).unwrap();
        assert_eq!(r.rules_yml, RULES_YML);
        assert_eq!(r.prometheus_yml, PROMETHEUS_YML);
        assert_eq!(r.alertmanager_yml, ALERTMANAGER_YML);
    }

    #[test]
    fn thresholds_change_exactly_their_expressions() {
        let opts = AssetOptions {
            thresholds: Thresholds {
                warn_celsius: 27.5,
                crit_celsius: 33.0,
                ..Thresholds::default()
            },
            ..AssetOptions::default()
        };
        let r = render(&opts).unwrap();
        assert!(
            r.rules_yml.contains(r#"{kind!="thermal"} > 27.5)"#),
            "{}",
            r.rules_yml
        );
        assert!(r.rules_yml.contains(r#"{kind!="thermal"} > 33)"#));
        assert!(r.rules_yml.contains("(above 27.5 °C)"));
        assert!(!r.rules_yml.contains(r#"{kind!="thermal"} > 30)"#));
        assert!(
            r.rules_yml.contains(r#"{kind="thermal"} > 80)"#),
            "SoC kept"
        );
        assert_ne!(
            short_hash(r.rules_yml.as_bytes()),
            short_hash(RULES_YML.as_bytes())
        );
    }

    #[test]
    fn group_wait_is_set_in_alertmanager_yml_only() {
        let r = render(&AssetOptions {
            group_wait: Duration::ZERO,
            ..AssetOptions::default()
        })
        .unwrap();
        assert!(
            r.alertmanager_yml.contains("\n  group_wait: 0s\n"),
            "{}",
            r.alertmanager_yml
        );
        assert!(!r.alertmanager_yml.contains("group_wait: 10s"));
        assert_eq!(r.prometheus_yml, PROMETHEUS_YML);
    }

    #[test]
    fn bad_thresholds_and_intervals_are_refused() {
        let mut o = AssetOptions::default();
        o.thresholds.crit_celsius = 20.0;
        assert!(render(&o).is_err());
        let o = AssetOptions {
            scrape_interval: Duration::from_millis(200),
            ..AssetOptions::default()
        };
        assert!(render(&o).is_err());
        let o = AssetOptions {
            scrape_interval: Duration::from_secs(2),
            ..AssetOptions::default()
        };
        let r = render(&o).unwrap();
        assert!(r.prometheus_yml.contains("scrape_interval: 2s"));
        assert!(r.prometheus_yml.contains("evaluation_interval: 2s"));
        assert!(r.prometheus_yml.contains("scrape_timeout: 2s"));
    }

    #[test]
    fn durations_and_hashes() {
        assert_eq!(prom_duration(Duration::from_secs(15)), "15s");
        assert_eq!(prom_duration(Duration::from_secs(120)), "2m");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(short_hash(b"abc"), "ba7816bf8f");
    }
}
