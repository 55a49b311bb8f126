//! The agent's TOML config: what is on the node (sensors, LEDs, edge rules) and how to serve it.
//!
//! Parsing is strict (unknown keys are errors, so a typo never silently does nothing) and every
//! error names the file, line and column, plus what to change.

use std::{fmt, net::SocketAddr, ops::Range, path::Path, path::PathBuf, time::Duration};

use edgesense_sensors::{led::LedMode, Quantity, SensorKind};
use serde::{de, Deserialize, Deserializer};
use toml::Spanned;

/// Default HTTP listen address (all interfaces, the port Prometheus scrapes).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9842";

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Node name (the `node` label and the name Alertmanager routes by); default: the hostname.
    pub node: Option<String>,
    /// HTTP listen address, default [`DEFAULT_LISTEN`].
    pub listen: Option<Spanned<String>>,
    /// A file holding the bearer token that write requests must carry.
    pub token_file: Option<PathBuf>,
    /// How often each sensor is read unless it sets its own `interval` (default 5 s).
    pub poll_interval: Option<Spanned<Dur>>,
    /// How long one read may take before it counts as a timeout (default 2 s).
    pub read_timeout: Option<Spanned<Dur>>,
    /// How much recent history the node page shows (default 1 h, at most 24 h).
    pub history: Option<Spanned<Dur>>,
    /// Where the history and the backfill's gaps are kept over a restart (written when the
    /// agent stops, read when it starts; default: nowhere).
    pub state_file: Option<PathBuf>,
    /// Open HTTP connections at most (default 512); more wait to be accepted.
    pub max_connections: Option<Spanned<usize>>,
    /// Open HTTP connections from one address at most (default 64); more are closed at once.
    pub max_connections_per_client: Option<Spanned<usize>>,
    /// HTTPS: this agent's certificate and the fleet CA it trusts.
    pub tls: Option<TlsConfig>,
    /// Run every sensor and LED of this file simulated (same as `--simulate`).
    #[serde(default)]
    pub simulate: bool,
    /// Seed for simulated values (same seed, same drift).
    pub seed: Option<u64>,
    /// Where the kernel's sysfs is (default `/`, so `/sys/...`): point it at a copied or
    /// hand-made tree to test a config without the hardware.
    pub sysfs_root: Option<PathBuf>,
    /// `"auto"`: also read every supported sensor found on the node (see `--list-sensors`).
    #[serde(rename = "sensors")]
    pub sensors_auto: Option<Spanned<String>>,
    #[serde(default, rename = "sensor")]
    pub sensors: Vec<SensorConfig>,
    #[serde(default, rename = "led")]
    pub leds: Vec<LedConfig>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// Which LED an alert lights (Alertmanager's and the edge rules'), by its labels.
    #[serde(default, rename = "alert")]
    pub alert_routes: Vec<AlertRouteConfig>,
    /// Where a received Alertmanager payload is forwarded.
    pub relay: Option<RelayConfig>,
    /// The Alertmanager(s) whose API is the truth about this node's alerts.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Push readings Prometheus missed (a partition, a Prometheus outage) by remote write.
    pub remote_write: Option<RemoteWriteConfig>,
    /// Push buttons on GPIO inputs (acknowledge alerts on the node).
    #[serde(default, rename = "button")]
    pub buttons: Vec<ButtonConfig>,
}

/// `[alertmanager]`: reconcile the LEDs against Alertmanager's API v2 (silences, inhibitions,
/// restarts, lost webhooks); the webhook stays the fast path.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `http://host:port`, or a list of them (an HA pair): the first that answers is asked.
    pub url: Option<Spanned<Urls>>,
    /// How often to ask (default 15 s), besides at start and right after each webhook.
    pub reconcile_interval: Option<Spanned<Dur>>,
    /// Basic auth user for Alertmanager's `--web.config.file` (default `agent`).
    pub username: Option<String>,
    /// A file holding that user's password (first line).
    pub password_file: Option<Spanned<PathBuf>>,
}

/// `[remote_write]`: readings taken while no Prometheus scraped the agent are pushed, with
/// their own timestamps, once one scrapes it again (Prometheus's remote-write receiver and an
/// out-of-order window at least as long as `history`; the stack's Prometheus has both).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver, e.g. `https://prometheus:9090/api/v1/write`.
    pub url: Option<Spanned<String>>,
    /// `job` on the pushed series: the scrape job's name (default `edgesense`, the stack's).
    pub job: Option<String>,
    /// `instance` on the pushed series (default: the address the scraper dialed, from its
    /// scrape's `Host` header, which is what Prometheus labels the target with).
    pub instance: Option<String>,
    /// Basic auth user (default: `[alertmanager] username`, else `agent`).
    pub username: Option<String>,
    /// A file holding that user's password (default: `[alertmanager] password_file`).
    pub password_file: Option<PathBuf>,
}

/// `[tls]`: serve HTTPS with this certificate, verify peers, Alertmanager and clients'
/// certificates against the fleet CA (`edgesense stack up` issues both).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The agent's certificate chain, PEM (may hold the key as well).
    pub cert_file: Option<Spanned<PathBuf>>,
    /// Its private key, PEM (default: `cert_file`).
    pub key_file: Option<Spanned<PathBuf>>,
    /// The CA certificate(s) to trust, PEM.
    pub ca_file: Option<PathBuf>,
}

/// One URL or a list of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Urls(pub Vec<String>);

impl<'de> Deserialize<'de> for Urls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Urls;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a URL (\"http://alertmanager:9093\") or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Urls, E> {
                Ok(Urls(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Urls, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Urls(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[button]]`: a push button on a GPIO input, wired from the pin to ground (internal
/// pull-up, active low). A short press acknowledges this node's firing alerts (silences them in
/// Alertmanager, drops the edge rules' claims until they fire again); a long press (3 s or more)
/// hands every manually set LED back to `auto`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonConfig {
    /// Default `button`.
    pub name: Option<Spanned<String>>,
    /// BCM GPIO number.
    pub pin: Spanned<u8>,
    /// Pressed reads low (default true: the pin to ground, the internal pull-up on).
    pub active_low: Option<bool>,
    /// How long a press silences the alerts in Alertmanager (default 2h).
    pub silence: Option<Spanned<Dur>>,
}

/// `[[alert]]`: every firing alert whose labels match lights `led` in this pattern.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRouteConfig {
    /// Label values the alert must all have, e.g. `{ severity = "critical" }`; none: every alert.
    #[serde(default, rename = "match")]
    pub matchers: std::collections::BTreeMap<String, String>,
    pub led: Spanned<String>,
    pub mode: Option<String>,
    pub period_ms: Option<u32>,
    pub brightness: Option<f64>,
    /// The claim's rank on the LED; default the alert's own `severity` label.
    pub severity: Option<Severity>,
}

/// `[relay]`: the peers a received Alertmanager payload is forwarded to (once; they do not
/// forward it again).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Peer agents as `host:port`.
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    /// `name:port` whose A records are the peers (in the swarm: `edgesense-agent:9842`).
    pub dns: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    pub name: Spanned<String>,
    pub kind: Spanned<KindName>,
    /// Overrides `poll_interval` for this sensor.
    pub interval: Option<Spanned<Dur>>,
    /// ds18b20: the 1-Wire serial directory, `28-0316a2795bff`.
    pub id: Option<Spanned<String>>,
    /// thermal: the zone number (default 0, the SoC on every Pi).
    pub zone: Option<Spanned<u32>>,
    /// hwmon: the chip's `name` (`cpu_thermal`, `drivetemp`, `lm75`, …), or `hwmon<N>` for a
    /// chip without one.
    pub chip: Option<Spanned<String>>,
    /// hwmon: the input (default `temp1`).
    pub input: Option<Spanned<String>>,
    /// bme280 / bmp280: `"iio"` (kernel driver, the default) or `"i2c"` (direct).
    pub bus: Option<Spanned<String>>,
    /// bme280 / bmp280 on IIO, dht22: the IIO directory (`iio:device0`); default the first
    /// device of the kernel driver. hwmon: the chip's device, the last part of where
    /// `hwmon<N>/device` points (`1-0048`, `coretemp.1`), needed when two chips share a name.
    pub device: Option<Spanned<String>>,
    /// bme280 / bmp280 on I2C: the bus number (default 1, `/dev/i2c-1`).
    pub i2c_bus: Option<Spanned<u8>>,
    /// bme280 / bmp280 on I2C: 0x76 (default) or 0x77.
    pub address: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedConfig {
    pub name: Spanned<String>,
    /// BCM GPIO number.
    pub pin: Spanned<u8>,
    /// True when the LED is wired from 3V3 to the pin (pin low = lit).
    #[serde(default)]
    pub active_low: bool,
    /// What the LED shows when nothing claims it (default off).
    pub idle: Option<Spanned<ModeSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown in the API and logs; default `<sensor>-above-<x>` / `<sensor>-below-<x>`.
    pub name: Option<String>,
    pub sensor: Spanned<String>,
    #[serde(default)]
    pub quantity: Option<Spanned<QuantityName>>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    /// How long the condition must hold before the rule fires (default 0 s).
    #[serde(default, rename = "for")]
    pub for_: Option<Dur>,
    pub led: Spanned<String>,
    /// The LED pattern while the rule fires (default blink): `mode`, `period_ms`, `brightness`
    /// as in the LED API.
    pub mode: Option<String>,
    pub period_ms: Option<u32>,
    pub brightness: Option<f64>,
    #[serde(default)]
    pub severity: Severity,
}

impl RuleConfig {
    /// The LED mode fields of this rule.
    pub fn mode_fields(&self) -> ModeFields {
        ModeFields {
            mode: self.mode.clone(),
            period_ms: self.period_ms,
            brightness: self.brightness,
        }
    }
}

/// An LED mode as written in configs and API bodies: `{mode = "blink", period_ms = 250}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeFields {
    pub mode: Option<String>,
    pub period_ms: Option<u32>,
    pub brightness: Option<f64>,
}

/// Default blink period.
pub const DEFAULT_BLINK_MS: u32 = 500;
/// Default pulse period.
pub const DEFAULT_PULSE_MS: u32 = 2000;

impl ModeFields {
    /// The mode these fields describe; `default` when `mode` is absent.
    pub fn to_mode(&self, default: &str) -> Result<LedMode, String> {
        let name = self.mode.as_deref().unwrap_or(default);
        let mode = match name {
            "off" | "on" => {
                if self.period_ms.is_some() {
                    return Err(format!("period_ms does not apply to mode \"{name}\""));
                }
                if name == "off" {
                    if self.brightness.is_some() {
                        return Err("brightness does not apply to mode \"off\"".into());
                    }
                    LedMode::Off
                } else {
                    LedMode::On {
                        brightness: self.brightness.unwrap_or(1.0),
                    }
                }
            }
            "blink" => {
                if self.brightness.is_some() {
                    return Err("brightness does not apply to mode \"blink\"".into());
                }
                LedMode::Blink {
                    period_ms: self.period_ms.unwrap_or(DEFAULT_BLINK_MS),
                }
            }
            "pulse" => LedMode::Pulse {
                period_ms: self.period_ms.unwrap_or(DEFAULT_PULSE_MS),
                brightness: self.brightness.unwrap_or(1.0),
            },
            other => {
                return Err(format!(
                    "unknown mode \"{other}\", expected one of: off, on, blink, pulse"
                ))
            }
        };
        mode.validate().map_err(|e| e.to_string())
    }
}

/// An LED mode table that is checked while parsing (so the error points at it).
#[derive(Clone, Copy, Debug)]
pub struct ModeSpec(pub LedMode);

impl<'de> Deserialize<'de> for ModeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Table(ModeFields),
        }
        let fields = match Raw::deserialize(d)? {
            Raw::Name(mode) => ModeFields {
                mode: Some(mode),
                ..ModeFields::default()
            },
            Raw::Table(f) => f,
        };
        fields
            .to_mode("off")
            .map(ModeSpec)
            .map_err(de::Error::custom)
    }
}

/// Alert severity, highest wins an LED: critical > warning > manual setting > idle pattern.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 2] = [Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A sensor kind name, checked while parsing.
#[derive(Clone, Copy, Debug)]
pub struct KindName(pub SensorKind);

impl<'de> Deserialize<'de> for KindName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SensorKind::parse(&s).map(KindName).ok_or_else(|| {
            let all: Vec<_> = SensorKind::ALL.iter().map(|k| k.as_str()).collect();
            de::Error::custom(format!(
                "unknown sensor kind \"{s}\", expected one of: {}",
                all.join(", ")
            ))
        })
    }
}

/// A quantity name, checked while parsing.
#[derive(Clone, Copy, Debug)]
pub struct QuantityName(pub Quantity);

impl<'de> Deserialize<'de> for QuantityName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Quantity::parse(&s).map(QuantityName).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown quantity \"{s}\", expected one of: temperature, humidity, pressure"
            ))
        })
    }
}

/// A duration written as `"500ms"`, `"5s"`, `"2m"`, `"1h"`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| {
            format!("invalid duration \"{s}\", write e.g. \"500ms\", \"5s\" or \"2m\"")
        })?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            u => {
                return Err(format!(
                    "unknown unit \"{u}\" in duration \"{s}\", use ms, s, m or h"
                ))
            }
        };
        Duration::try_from_secs_f64(secs)
            .map(Dur)
            .map_err(|_| format!("duration \"{s}\" is out of range"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"5s\", \"2m\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                Dur::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                u64::try_from(n)
                    .map(|n| Dur(Duration::from_secs(n)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Duration::try_from_secs_f64(n)
                    .map(Dur)
                    .map_err(|_| E::custom("a duration must be a positive number of seconds"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A config error with its place in the file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// A loaded config with its source, so later checks can point into the file.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    text: String,
}

impl Loaded {
    /// An error at `span` of the file.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            location: Some(line_col(&self.text, span.start)),
            message: message.into(),
        }
    }

    /// An empty config (no file given).
    pub fn none() -> Loaded {
        Loaded {
            config: Config::default(),
            path: PathBuf::from("<built-in>"),
            text: String::new(),
        }
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        location: None,
        message: format!("cannot read config: {e}"),
    })?;
    parse(path, text)
}

/// Parses `text` as the config file `path`.
pub fn parse(path: &Path, text: String) -> Result<Loaded, ConfigError> {
    match toml::from_str::<Config>(&text) {
        Ok(config) => Ok(Loaded {
            config,
            path: path.to_owned(),
            text,
        }),
        Err(e) => Err(ConfigError {
            path: path.to_owned(),
            location: e.span().map(|s| line_col(&text, s.start)),
            message: e.message().trim_end().to_owned(),
        }),
    }
}

/// Parses a listen address, with a hint for the common mistakes.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("invalid listen address \"{s}\", write host:port, e.g. \"0.0.0.0:9842\" or \"127.0.0.1:9842\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(Path::new("node.toml"), text.to_owned()).unwrap_err()
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e =
            err("node = \"pi\"\n\n[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\ncolour = 3\n");
        assert_eq!(e.location, Some((6, 1)), "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(e.to_string().starts_with("node.toml:6:1: "), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let e = err("[[led]]\nname = \"red\"\npin = \"seventeen\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
        assert!(
            e.message.contains("u8") || e.message.contains("integer"),
            "{e}"
        );
    }

    #[test]
    fn bad_kind_and_mode_are_explained() {
        let e = err("[[sensor]]\nname = \"x\"\nkind = \"ds18b21\"\n");
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
        assert!(e.message.contains("ds18b20"), "lists the valid kinds: {e}");
        let e =
            err("[[led]]\nname = \"red\"\npin = 17\nidle = { mode = \"blink\", period_ms = 1 }\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(e.message.contains("period_ms"), "{e}");
    }

    #[test]
    fn syntax_error_has_place() {
        let e = err("listen = \"0.0.0.0:9842\"\npoll_interval = \n");
        assert_eq!(e.location.map(|l| l.0), Some(2), "{e}");
    }

    #[test]
    fn missing_file_names_it() {
        let e = load(Path::new("/nonexistent/edgesense.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/edgesense.toml"), "{e}");
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn full_config_parses() {
        let l = parse(
            Path::new("a.toml"),
            r#"
node = "pi-kitchen"
listen = "127.0.0.1:9842"
poll_interval = "2s"
read_timeout = 1.5
[[sensor]]
name = "room"
kind = "ds18b20"
interval = "500ms"
[[led]]
name = "red"
pin = 17
active_low = true
idle = "on"
[[rule]]
sensor = "room"
above = 30
for = "10s"
led = "red"
mode = "blink"
period_ms = 250
severity = "critical"
"#
            .into(),
        )
        .unwrap();
        let c = &l.config;
        assert_eq!(
            c.poll_interval.as_ref().unwrap().get_ref().0,
            Duration::from_secs(2)
        );
        assert_eq!(
            c.read_timeout.as_ref().unwrap().get_ref().0,
            Duration::from_millis(1500)
        );
        assert_eq!(
            c.sensors[0].interval.as_ref().unwrap().get_ref().0,
            Duration::from_millis(500)
        );
        assert!(c.leds[0].active_low);
        assert_eq!(c.rules[0].severity, Severity::Critical);
        assert_eq!(
            c.rules[0].mode_fields().to_mode("on"),
            Ok(LedMode::Blink { period_ms: 250 })
        );
    }

    #[test]
    fn durations() {
        assert_eq!(Dur::parse("250ms"), Ok(Dur(Duration::from_millis(250))));
        assert_eq!(Dur::parse("2m"), Ok(Dur(Duration::from_secs(120))));
        assert!(Dur::parse("5 parsecs").is_err());
        assert!(Dur::parse("").is_err());
    }
}
