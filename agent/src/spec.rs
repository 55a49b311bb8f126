//! The checked description of a node: the config with every reference resolved, defaults
//! applied and command-line flags on top.

use std::{collections::HashSet, net::SocketAddr, path::Path, path::PathBuf, time::Duration};

use edgesense_sensors::{bus::sysfs::Sysfs, detect::Device, led::LedMode, Quantity, SensorKind};

use crate::{
    access::{self, ListenFrom},
    alerts::{self, AlertRoute, RelaySpec},
    config::{self, ConfigError, Loaded, Severity, DEFAULT_LISTEN},
    credentials::CredentialFiles,
    devices,
};

/// The built-in simulated node, used by `--simulate` when the config has no sensors of its own.
pub const SIMULATED_NODE: &str = include_str!("simulated-node.toml");

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Default retention of the in-memory history.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(3600);
pub const MAX_HISTORY: Duration = Duration::from_secs(24 * 3600);
/// Sensors are not read more often than this (a DS18B20 conversion alone takes 750 ms).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    pub node: String,
    /// Raspberry Pi model from the device tree, or `simulated`.
    pub model: String,
    pub listen: SocketAddr,
    /// No token, so the default address was moved to loopback ([`crate::access`]).
    pub loopback_only: bool,
    pub allow_anonymous_writes: bool,
    /// Token, TLS and Alertmanager credential files.
    pub credentials: CredentialFiles,
    /// Open HTTP connections from one address at most.
    pub max_connections_per_client: usize,
    pub read_timeout: Duration,
    /// How much history `/api/v1/history` keeps per sensor.
    pub history: Duration,
    /// Open HTTP connections at most.
    pub max_connections: usize,
    pub simulate: bool,
    /// Where sysfs is mounted (`/` on a Pi).
    pub sysfs_root: PathBuf,
    pub seed: u64,
    pub sensors: Vec<SensorSpec>,
    pub leds: Vec<LedSpec>,
    pub rules: Vec<RuleSpec>,
    /// Which LED each alert lights (`[[alert]]`).
    pub alert_routes: Vec<AlertRoute>,
    /// Where received Alertmanager payloads are forwarded.
    pub relay: RelaySpec,
    /// The Alertmanager(s) to reconcile against (none: the webhook alone).
    pub alertmanager: AlertmanagerSpec,
    /// Where readings Prometheus missed are pushed (none: nowhere).
    pub remote_write: Option<RemoteWriteSpec>,
    /// Where the history and the backfill are kept over a restart.
    pub state_file: Option<PathBuf>,
    pub buttons: Vec<ButtonSpec>,
}

/// Default `[remote_write] job`: the stack's scrape job.
pub const DEFAULT_JOB: &str = "edgesense";

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWriteSpec {
    pub url: String,
    pub job: String,
    /// None: the address the scraper dialed.
    pub instance: Option<String>,
}

/// Default `[alertmanager] reconcile_interval`.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(15);
/// Default `[[button]] silence`.
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(2 * 3600);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertmanagerSpec {
    /// `http://host:port` (with an optional path prefix), in the order to try them.
    pub urls: Vec<String>,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ButtonSpec {
    pub name: String,
    pub pin: u8,
    pub active_low: bool,
    /// How long a short press silences this node's alerts.
    pub silence: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SensorSpec {
    pub name: String,
    pub kind: SensorKind,
    pub interval: Duration,
    /// Where the sensor is; `None` only on a simulated node whose config does not say.
    pub device: Option<Device>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LedSpec {
    pub name: String,
    pub pin: u8,
    pub active_low: bool,
    pub idle: LedMode,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Above(f64),
    Below(f64),
}

impl Threshold {
    pub fn holds(self, v: f64) -> bool {
        match self {
            Threshold::Above(t) => v > t,
            Threshold::Below(t) => v < t,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    /// Index into [`NodeSpec::sensors`].
    pub sensor: usize,
    pub quantity: Quantity,
    pub threshold: Threshold,
    pub for_: Duration,
    /// Index into [`NodeSpec::leds`].
    pub led: usize,
    pub mode: LedMode,
    pub severity: Severity,
}

/// Command-line flags that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub simulate: bool,
    pub sysfs_root: Option<PathBuf>,
    pub node: Option<String>,
    /// Token, TLS, Alertmanager user, `--allow-anonymous-writes`.
    pub access: access::AccessFlags,
    /// `name:port` whose A records are relay peers (adds to the file's `[relay]`).
    pub relay_dns: Option<String>,
    /// Alertmanager URLs (replace the file's `[alertmanager] url`).
    pub alertmanager: Vec<String>,
    /// Remote-write URL (replaces the file's `[remote_write] url`).
    pub remote_write: Option<String>,
    /// Replaces the file's `state_file`.
    pub state_file: Option<PathBuf>,
}

/// Checks `loaded` and applies `flags`. With `--simulate` and no sensors, LEDs or rules in the
/// file, the node is the built-in simulated one; the file's other settings still apply.
pub fn resolve(loaded: &Loaded, flags: &Overrides) -> Result<NodeSpec, ConfigError> {
    let c = &loaded.config;
    let simulate = flags.simulate || c.simulate;

    let (listen, listen_from) = match (&flags.listen, &c.listen) {
        (Some(a), _) => (*a, ListenFrom::Flag),
        (None, Some(s)) => (
            config::parse_listen(s.get_ref()).map_err(|m| loaded.error_at(s.span(), m))?,
            ListenFrom::File(s.span()),
        ),
        (None, None) => (
            config::parse_listen(DEFAULT_LISTEN).map_err(|m| ConfigError {
                path: loaded.path.clone(),
                location: None,
                message: m,
            })?,
            ListenFrom::Default,
        ),
    };
    let dur = |d: &Option<toml::Spanned<config::Dur>>, default: Duration, what: &str| match d {
        None => Ok(default),
        Some(s) if s.get_ref().0 < MIN_INTERVAL => Err(loaded.error_at(
            s.span(),
            format!("{what} must be at least {} ms", MIN_INTERVAL.as_millis()),
        )),
        Some(s) => Ok(s.get_ref().0),
    };
    let read_timeout = dur(&c.read_timeout, DEFAULT_READ_TIMEOUT, "read_timeout")?;
    let history = dur(&c.history, DEFAULT_HISTORY, "history")?;
    if history > MAX_HISTORY {
        let span = c.history.as_ref().map_or(0..0, |h| h.span());
        return Err(loaded.error_at(span, "history can be at most 24h (it is kept in memory)"));
    }

    let sysfs_root = flags
        .sysfs_root
        .clone()
        .or_else(|| c.sysfs_root.clone())
        .unwrap_or_else(|| PathBuf::from("/"));
    let hardware_from_file = !(c.sensors.is_empty()
        && c.leds.is_empty()
        && c.rules.is_empty()
        && c.alert_routes.is_empty()
        && c.sensors_auto.is_none());
    let builtin;
    let (hw, hw_loaded) = if simulate && !hardware_from_file {
        builtin = config::parse(
            Path::new("<built-in simulated node>"),
            SIMULATED_NODE.into(),
        )?;
        (&builtin.config, &builtin)
    } else {
        (c, loaded)
    };
    let poll_interval = match &c.poll_interval {
        Some(_) => dur(&c.poll_interval, DEFAULT_POLL_INTERVAL, "poll_interval")?,
        None => dur(&hw.poll_interval, DEFAULT_POLL_INTERVAL, "poll_interval")?,
    };

    let sysfs = Sysfs::new(&sysfs_root);
    let mut names = HashSet::new();
    let mut sensors = Vec::with_capacity(hw.sensors.len());
    for s in &hw.sensors {
        let name = s.name.get_ref();
        check_name(hw_loaded, &s.name)?;
        if !names.insert(name.as_str()) {
            return Err(hw_loaded.error_at(
                s.name.span(),
                format!(
                    "a sensor named \"{name}\" is already defined; sensor names must be unique"
                ),
            ));
        }
        sensors.push(SensorSpec {
            name: name.clone(),
            kind: s.kind.get_ref().0,
            interval: dur(&s.interval, poll_interval, "interval")?,
            device: devices::device_of(hw_loaded, s, simulate, &sysfs)?,
        });
    }
    if let Some(auto) = &hw.sensors_auto {
        if auto.get_ref() != "auto" {
            return Err(hw_loaded.error_at(
                auto.span(),
                format!("sensors = \"{}\" is not a choice; write sensors = \"auto\" to read every sensor found, or list them in [[sensor]] tables", auto.get_ref()),
            ));
        }
        let found = devices::detect(&sysfs_root);
        devices::add_detected(&mut sensors, found, poll_interval, &sysfs);
    }

    let mut led_names = HashSet::new();
    let mut pins = HashSet::new();
    let mut leds = Vec::with_capacity(hw.leds.len());
    for l in &hw.leds {
        let name = l.name.get_ref();
        check_name(hw_loaded, &l.name)?;
        if !led_names.insert(name.as_str()) {
            return Err(hw_loaded.error_at(
                l.name.span(),
                format!("an LED named \"{name}\" is already defined; LED names must be unique"),
            ));
        }
        let pin = *l.pin.get_ref();
        if pin > edgesense_sensors::bus::gpio::MAX_HEADER_PIN {
            return Err(hw_loaded.error_at(
                l.pin.span(),
                format!("GPIO{pin} is not on the header; use a BCM number 0 … 27"),
            ));
        }
        if !pins.insert(pin) {
            return Err(hw_loaded.error_at(
                l.pin.span(),
                format!("GPIO{pin} is already used by another LED"),
            ));
        }
        leds.push(LedSpec {
            name: name.clone(),
            pin,
            active_low: l.active_low,
            idle: l.idle.as_ref().map_or(LedMode::Off, |m| m.get_ref().0),
        });
    }

    let mut rules = Vec::with_capacity(hw.rules.len());
    for r in &hw.rules {
        let sensor = sensors
            .iter()
            .position(|s| s.name == *r.sensor.get_ref())
            .ok_or_else(|| {
                hw_loaded.error_at(
                    r.sensor.span(),
                    format!(
                        "no sensor named \"{}\"; define it in a [[sensor]] table",
                        r.sensor.get_ref()
                    ),
                )
            })?;
        let led = leds
            .iter()
            .position(|l| l.name == *r.led.get_ref())
            .ok_or_else(|| {
                hw_loaded.error_at(
                    r.led.span(),
                    format!(
                        "no LED named \"{}\"; define it in a [[led]] table",
                        r.led.get_ref()
                    ),
                )
            })?;
        let quantity = r
            .quantity
            .as_ref()
            .map_or(Quantity::Temperature, |q| q.get_ref().0);
        if !sensors[sensor].kind.quantities().contains(&quantity) {
            let span = r.quantity.as_ref().map_or(r.sensor.span(), |q| q.span());
            return Err(hw_loaded.error_at(
                span,
                format!(
                    "sensor \"{}\" ({}) does not measure {}",
                    sensors[sensor].name,
                    sensors[sensor].kind,
                    quantity.as_str()
                ),
            ));
        }
        let threshold = match (r.above, r.below) {
            (Some(a), None) if a.is_finite() => Threshold::Above(a),
            (None, Some(b)) if b.is_finite() => Threshold::Below(b),
            _ => {
                return Err(hw_loaded.error_at(
                    r.sensor.span(),
                    "a rule needs exactly one of `above = <value>` or `below = <value>` (in base units: °C, ratio 0–1, Pa)",
                ))
            }
        };
        let mode = r
            .mode_fields()
            .to_mode("blink")
            .map_err(|m| hw_loaded.error_at(r.led.span(), m))?;
        let name = r.name.clone().unwrap_or_else(|| match threshold {
            Threshold::Above(t) => format!("{}-above-{t}", sensors[sensor].name),
            Threshold::Below(t) => format!("{}-below-{t}", sensors[sensor].name),
        });
        rules.push(RuleSpec {
            name,
            sensor,
            quantity,
            threshold,
            for_: r.for_.map_or(Duration::ZERO, |d| d.0),
            led,
            mode,
            severity: r.severity,
        });
    }

    let mut buttons = Vec::with_capacity(hw.buttons.len());
    for b in &hw.buttons {
        let name = b
            .name
            .as_ref()
            .map_or_else(|| "button".to_owned(), |n| n.get_ref().clone());
        if let Some(n) = &b.name {
            check_name(hw_loaded, n)?;
        }
        let pin = *b.pin.get_ref();
        if pin > edgesense_sensors::bus::gpio::MAX_HEADER_PIN {
            return Err(hw_loaded.error_at(
                b.pin.span(),
                format!("GPIO{pin} is not on the header; use a BCM number 0 … 27"),
            ));
        }
        if !pins.insert(pin) {
            return Err(hw_loaded.error_at(
                b.pin.span(),
                format!("GPIO{pin} is already used by an LED or another button"),
            ));
        }
        if buttons.iter().any(|x: &ButtonSpec| x.name == name) {
            let span = b.name.as_ref().map_or(b.pin.span(), |n| n.span());
            return Err(hw_loaded.error_at(
                span,
                format!("a button named \"{name}\" is already defined; give each a `name`"),
            ));
        }
        let silence =
            match &b.silence {
                None => DEFAULT_SILENCE,
                Some(s) if s.get_ref().0 >= Duration::from_secs(60) => s.get_ref().0,
                Some(s) => return Err(hw_loaded.error_at(
                    s.span(),
                    "silence must be at least 1m (Alertmanager silences are for minutes to days)",
                )),
            };
        buttons.push(ButtonSpec {
            name,
            pin,
            active_low: b.active_low.unwrap_or(true),
            silence,
        });
    }

    let mut am = AlertmanagerSpec {
        urls: Vec::new(),
        interval: DEFAULT_RECONCILE_INTERVAL,
    };
    let mut am_urls = Vec::new();
    if let Some(a) = &c.alertmanager {
        if let Some(u) = &a.url {
            for url in &u.get_ref().0 {
                let url = url.trim_end_matches('/');
                am_urls.push((url.to_owned(), Some(u.span())));
                am.urls.push(url.to_owned());
            }
        }
        am.interval = dur(
            &a.reconcile_interval,
            DEFAULT_RECONCILE_INTERVAL,
            "reconcile_interval",
        )?;
    }
    if !flags.alertmanager.is_empty() {
        am.urls = flags
            .alertmanager
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        am_urls = am.urls.iter().map(|u| (u.clone(), None)).collect();
    }
    let rw = c.remote_write.as_ref();
    let rw_url = match (&flags.remote_write, rw.and_then(|r| r.url.as_ref())) {
        (Some(u), _) => Some((u.clone(), None)),
        (None, Some(u)) => Some((u.get_ref().clone(), Some(u.span()))),
        (None, None) => None,
    };
    let remote_write = rw_url.as_ref().map(|(url, _)| RemoteWriteSpec {
        url: url.clone(),
        job: rw
            .and_then(|r| r.job.clone())
            .unwrap_or_else(|| DEFAULT_JOB.into()),
        instance: rw.and_then(|r| r.instance.clone()),
    });
    let access = access::resolve(
        loaded,
        &flags.access,
        listen,
        listen_from,
        &am_urls,
        rw_url.as_ref(),
    )?;

    let alert_routes = alerts::resolve_routes(hw_loaded, &leds)?;
    let mut relay = alerts::resolve_relay(loaded, c.relay.as_ref())?;
    if let Some(dns) = &flags.relay_dns {
        relay.dns = Some(dns.clone());
    }

    Ok(NodeSpec {
        node: flags
            .node
            .clone()
            .or_else(|| c.node.clone())
            .unwrap_or_else(hostname),
        model: if simulate {
            "simulated".into()
        } else {
            pi_model()
        },
        listen: access.listen,
        loopback_only: access.loopback_only,
        allow_anonymous_writes: access.allow_anonymous_writes,
        credentials: access.credentials,
        max_connections_per_client: access.max_connections_per_client,
        read_timeout,
        history,
        max_connections: match &c.max_connections {
            None => crate::listener::DEFAULT_MAX_CONNECTIONS,
            Some(m) if (1..=65_536).contains(m.get_ref()) => *m.get_ref(),
            Some(m) => {
                return Err(loaded.error_at(m.span(), "max_connections must be between 1 and 65536"))
            }
        },
        simulate,
        sysfs_root,
        seed: c.seed.or(hw.seed).unwrap_or(42),
        sensors,
        leds,
        rules,
        alert_routes,
        relay,
        alertmanager: am,
        remote_write,
        state_file: flags.state_file.clone().or_else(|| c.state_file.clone()),
        buttons,
    })
}

/// Names become metric label values and URL path segments: keep them plain.
fn check_name(loaded: &Loaded, name: &toml::Spanned<String>) -> Result<(), ConfigError> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(loaded.error_at(
            name.span(),
            format!("invalid name \"{n}\": use 1–64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// The kernel's hostname (`/proc/sys/kernel/hostname`); in a container, pass `--hostname`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edgesense".into())
}

/// The board model from the device tree (`/proc/device-tree/model`, NUL-terminated), e.g.
/// "Raspberry Pi 4 Model B Rev 1.4".
fn pi_model() -> String {
    std::fs::read_to_string("/proc/device-tree/model")
        .map(|s| s.trim_end_matches('\0').trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The simulated node `text` describes (a config file's text), for the library's unit tests.
#[cfg(test)]
pub(crate) fn simulated(text: &str) -> NodeSpec {
    let l = config::parse(std::path::Path::new("test.toml"), text.into()).expect("test config");
    resolve(
        &l,
        &Overrides {
            simulate: true,
            ..Default::default()
        },
    )
    .expect("test config resolves")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str, simulate: bool) -> Result<NodeSpec, ConfigError> {
        let loaded = config::parse(Path::new("n.toml"), text.into())?;
        resolve(
            &loaded,
            &Overrides {
                listen: None,
                simulate,
                sysfs_root: None,
                ..Overrides::default()
            },
        )
    }

    #[test]
    fn builtin_simulated_node_matches_design() {
        let n = resolve(
            &Loaded::none(),
            &Overrides {
                listen: None,
                simulate: true,
                sysfs_root: None,
                ..Overrides::default()
            },
        )
        .unwrap();
        let names: Vec<_> = n
            .sensors
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("room", SensorKind::Ds18b20),
                ("outside", SensorKind::Ds18b20),
                ("soc", SensorKind::Thermal),
                ("env", SensorKind::Bme280)
            ]
        );
        let leds: Vec<_> = n.leds.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(leds, ["red", "amber", "green"]);
        assert_eq!(n.rules.len(), 1);
        let r = &n.rules[0];
        assert_eq!(n.sensors[r.sensor].name, "room");
        assert_eq!(n.leds[r.led].name, "red");
        assert_eq!(r.threshold, Threshold::Above(30.0));
        assert_eq!(r.for_, Duration::from_secs(10));
        assert!(matches!(r.mode, LedMode::Blink { .. }));
        assert_eq!(n.listen.port(), 9842);
    }

    #[test]
    fn simulate_with_a_file_that_only_sets_serving_options() {
        let n = resolve_text("listen = \"127.0.0.1:0\"\ntoken_file = \"/t\"\n", true).unwrap();
        assert_eq!(n.sensors.len(), 4, "built-in hardware");
        assert_eq!(n.listen.to_string(), "127.0.0.1:0");
        assert_eq!(n.credentials.token_file.as_deref(), Some(Path::new("/t")));
    }

    #[test]
    fn flags_override_the_file() {
        let loaded =
            config::parse(Path::new("n.toml"), "listen = \"127.0.0.1:1\"\n".into()).unwrap();
        let n = resolve(
            &loaded,
            &Overrides {
                listen: Some("127.0.0.1:2".parse().unwrap()),
                simulate: true,
                sysfs_root: None,
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(n.listen.port(), 2);
    }

    #[test]
    fn semantic_errors_point_at_the_line() {
        let base =
            "[[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n[[led]]\nname = \"red\"\npin = 17\n";
        let e = resolve_text(
            &format!("{base}[[rule]]\nsensor = \"kitchen\"\nabove = 30\nled = \"red\"\n"),
            true,
        )
        .unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(8), "{e}");
        assert!(e.message.contains("kitchen"), "{e}");
        let e =
            resolve_text(&format!("{base}[[led]]\nname = \"blue\"\npin = 17\n"), true).unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(9), "{e}");
        let e = resolve_text(
            &format!("{base}[[rule]]\nsensor = \"room\"\nled = \"red\"\n"),
            true,
        )
        .unwrap_err();
        assert!(e.message.contains("above"), "{e}");
        let e = resolve_text(&format!("{base}[[rule]]\nsensor = \"room\"\nquantity = \"humidity\"\nbelow = 0.2\nled = \"red\"\n"), true).unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(9), "{e}");
        let e = resolve_text("listen = \"localhost\"\n", true).unwrap_err();
        assert_eq!(e.location, Some((1, 10)), "{e}");
        let e = resolve_text("poll_interval = \"10ms\"\n", true).unwrap_err();
        assert!(e.message.contains("at least"), "{e}");
    }
}
