//! edgesense node agent: reads the node's sensors, drives its LEDs, and serves Prometheus
//! metrics and an HTTP API.
//!
//! Data flows one way (DESIGN.md): bus → driver → [`poller`] task → [`hub`] (one
//! [`hub::Snapshot`], replaced whole on every change) → `/metrics`, API reads, events; LED
//! requests and edge rules go through the hub's [`leds::Arbiter`] to one [`leds::drive`] task per
//! LED, the only code that touches a pin.

pub mod config;
pub mod http;
pub mod hub;
pub mod leds;
pub mod metrics;
pub mod poller;
pub mod spec;

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use axum::Router;
use edgesense_sensors::{
    bus::gpio::{GpioBus, GpioError, RppalGpio},
    led::{Led, LedMode},
    sim::{SimControl, SimSensor},
    Sensor,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    hub::{Hub, Msg, Snapshot},
    spec::NodeSpec,
};

/// The node's devices, opened and ready.
pub struct Hardware {
    pub sensors: Vec<Box<dyn Sensor>>,
    pub leds: Vec<Led>,
    /// Controls of simulated sensors, by sensor index (empty for real hardware).
    pub sim: Vec<SimControl>,
}

/// Why the hardware could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("LED \"{led}\": {source}")]
    Led { led: String, source: GpioError },
}

impl Hardware {
    /// Simulated sensors (drifting from `spec.seed`) and LEDs on `gpio`.
    pub fn simulated(spec: &NodeSpec, gpio: &dyn GpioBus) -> Result<Hardware, HardwareError> {
        let sensors: Vec<SimSensor> = spec
            .sensors
            .iter()
            .map(|s| SimSensor::new(&s.name, s.kind, spec.seed, &[]))
            .collect();
        let sim = sensors.iter().map(SimSensor::control).collect();
        Ok(Hardware {
            sensors: sensors
                .into_iter()
                .map(|s| Box::new(s) as Box<dyn Sensor>)
                .collect(),
            leds: open_leds(spec, gpio)?,
            sim,
        })
    }

    /// The Pi's own devices. Fails with a hint to use `--simulate` on a machine that is not a Pi.
    pub fn real(spec: &NodeSpec) -> Result<Hardware, HardwareError> {
        let leds = if spec.leds.is_empty() {
            Vec::new()
        } else {
            let gpio = RppalGpio::open().map_err(|source| HardwareError::Led {
                led: spec.leds[0].name.clone(),
                source,
            })?;
            open_leds(spec, &gpio)?
        };
        Ok(Hardware {
            sensors: Vec::new(),
            leds,
            sim: Vec::new(),
        })
    }
}

fn open_leds(spec: &NodeSpec, gpio: &dyn GpioBus) -> Result<Vec<Led>, HardwareError> {
    spec.leds
        .iter()
        .map(|l| {
            gpio.output(l.pin)
                .and_then(|pin| Led::new(pin, l.active_low))
                .map_err(|source| HardwareError::Led {
                    led: l.name.clone(),
                    source,
                })
        })
        .collect()
}

/// Reads a token file: the first line, trimmed; empty is an error.
pub fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read token_file: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!(
            "{}: token_file is empty; put the token on its first line",
            path.display()
        ));
    }
    Ok(token.as_bytes().to_vec())
}

/// A started node: its tasks run on the current runtime.
pub struct Running {
    pub router: Router,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    hub: mpsc::Sender<Msg>,
    pollers: Vec<JoinHandle<()>>,
    led_tasks: Vec<JoinHandle<()>>,
}

/// How long shutdown waits for the LED tasks to switch their LEDs off.
const LED_OFF_DEADLINE: Duration = Duration::from_millis(500);

/// Starts the hub, one poller per sensor and one pattern task per LED. Call inside a runtime.
pub fn start(spec: Arc<NodeSpec>, hw: Hardware, token: Option<Vec<u8>>) -> Running {
    let mut led_modes = Vec::with_capacity(hw.leds.len());
    let mut led_tasks = Vec::with_capacity(hw.leds.len());
    for (led, l) in hw.leds.into_iter().zip(&spec.leds) {
        let (tx, rx) = watch::channel(LedMode::Off);
        led_modes.push(tx);
        led_tasks.push(tokio::spawn(leds::drive(l.name.clone(), led, rx)));
    }
    let (hub, snapshot) = Hub::new(Arc::clone(&spec), led_modes);
    let (hub_tx, hub_rx) = mpsc::channel(64);
    tokio::spawn(hub.run(hub_rx));
    let pollers = hw
        .sensors
        .into_iter()
        .zip(&spec.sensors)
        .enumerate()
        .map(|(i, (sensor, s))| {
            tokio::spawn(poller::poll(
                i,
                sensor,
                s.interval,
                spec.read_timeout,
                hub_tx.clone(),
            ))
        })
        .collect();
    let state = http::AppState {
        spec,
        snapshot: snapshot.clone(),
        hub: hub_tx.clone(),
        sim: hw.sim.into(),
        token: token.map(Into::into),
    };
    Running {
        router: http::router(state),
        snapshot,
        hub: hub_tx,
        pollers,
        led_tasks,
    }
}

impl Running {
    /// Stops polling and switches every LED off; returns once the LEDs are off (or after
    /// [`LED_OFF_DEADLINE`]).
    pub async fn shutdown(self) {
        for p in &self.pollers {
            p.abort();
        }
        let (reply, done) = oneshot::channel();
        if self.hub.send(Msg::Shutdown { reply }).await.is_ok() {
            let _ = done.await;
        }
        let all_off = futures_util::future::join_all(self.led_tasks);
        if tokio::time::timeout(LED_OFF_DEADLINE, all_off)
            .await
            .is_err()
        {
            tracing::error!("LEDs did not switch off within {LED_OFF_DEADLINE:?}");
        }
    }
}

/// Serves `running` on `listener` until `shutdown` completes, then switches the LEDs off.
/// Open connections (event streams) are not waited for.
pub async fn serve(
    listener: TcpListener,
    running: Running,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = running.router.clone();
    tokio::select! {
        r = axum::serve(listener, app) => r?,
        () = shutdown => {}
    }
    running.shutdown().await;
    Ok(())
}
