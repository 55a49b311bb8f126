//! edgesense node agent: reads the node's sensors, drives its LEDs, and serves Prometheus
//! metrics and an HTTP API.
//!
//! Data flows one way (DESIGN.md): bus → driver → [`poller`] task → [`hub`] (one
//! [`hub::Snapshot`], replaced whole on every change) → `/metrics`, API reads, events; LED
//! requests and edge rules go through the hub's [`leds::Arbiter`] to one [`leds::drive`] task per
//! LED, the only code that touches a pin.

pub mod access;
pub mod alerts;
pub mod backfill;
pub mod buttons;
pub mod config;
pub mod credentials;
pub mod devices;
pub mod hardware;
pub mod history;
pub mod http;
pub mod hub;
pub mod leds;
pub mod list;
pub mod listener;
pub mod metrics;
pub mod overlay;
pub mod poller;
pub mod probe;
pub mod relay;
pub mod spec;

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use edgesense_sensors::led::LedMode;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

pub use crate::hardware::{Hardware, HardwareError};
use crate::{
    hub::{Hub, Msg, Snapshot},
    spec::NodeSpec,
};

/// A started node: its tasks run on the current runtime.
pub struct Running {
    pub router: Router,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    hub: mpsc::Sender<Msg>,
    pollers: Vec<JoinHandle<()>>,
    led_tasks: Vec<JoinHandle<()>>,
    /// The reconciler and the button tasks: stopped with the pollers.
    others: Vec<JoinHandle<()>>,
    limits: listener::Limits,
    credentials: credentials::Shared,
    /// Kept over a restart when `state_file` is set.
    keep: Option<(
        std::path::PathBuf,
        history::SharedHistory,
        Arc<backfill::Backfill>,
    )>,
}

/// How long shutdown waits for the LED tasks to switch their LEDs off.
const LED_OFF_DEADLINE: Duration = Duration::from_millis(500);

/// Starts the hub, one poller per sensor and one pattern task per LED. Call inside a runtime.
pub fn start(spec: Arc<NodeSpec>, hw: Hardware, credentials: credentials::Shared) -> Running {
    let mut led_modes = Vec::with_capacity(hw.leds.len());
    let mut led_tasks = Vec::with_capacity(hw.leds.len());
    for (led, l) in hw.leds.into_iter().zip(&spec.leds) {
        let (tx, rx) = watch::channel(LedMode::Off);
        led_modes.push(tx);
        led_tasks.push(tokio::spawn(leds::drive(l.name.clone(), led, rx)));
    }
    let history = history::History::shared(&spec);
    tracing::debug!(
        bytes = history::lock(&history).reserved_bytes(),
        "history rings reserved"
    );
    let (hub_tx, hub_rx) = mpsc::channel(64);
    let mut others = Vec::new();
    let am_link = (!spec.alertmanager.urls.is_empty()).then(|| {
        let wake = Arc::new(tokio::sync::Notify::new());
        let (silences, silences_rx) = mpsc::channel(256);
        let (report, mut reports) = mpsc::channel(4);
        others.push(tokio::spawn(alerts::reconcile::run(
            alerts::reconcile::Client::new(&spec.alertmanager.urls, credentials.clone()),
            spec.node.as_str().into(),
            spec.alertmanager.interval,
            Arc::clone(&wake),
            silences_rx,
            report,
        )));
        let to_hub = hub_tx.clone();
        others.push(tokio::spawn(async move {
            while let Some(r) = reports.recv().await {
                if to_hub.send(Msg::Reconciled(r)).await.is_err() {
                    return;
                }
            }
        }));
        hub::AmLink { wake, silences }
    });
    let (hub, snapshot) = Hub::new(Arc::clone(&spec), led_modes, Arc::clone(&history), am_link);
    tokio::spawn(hub.run(hub_rx));
    let backfill = backfill::Backfill::new(backfill::now_ms(), spec.remote_write.is_some());
    if let Some(path) = &spec.state_file {
        match backfill::keep::restore(path, &mut history::lock(&history), &backfill) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(samples = n, gaps = backfill.gaps().len(), file = %path.display(), "history kept over the restart restored")
            }
            Err(e) => tracing::warn!(error = %e, "kept state not restored"),
        }
    }
    // The URL was checked when the spec was resolved.
    if let Some((rw, target)) = spec
        .remote_write
        .as_ref()
        .and_then(|rw| Some((rw, edgesense_net::Target::parse(&rw.url).ok()?)))
    {
        let to_hub = hub_tx.clone();
        others.push(tokio::spawn(backfill::push::run(
            Arc::clone(&backfill),
            Arc::clone(&history),
            credentials.clone(),
            backfill::push::Pusher {
                target,
                job: rw.job.clone(),
                instance: rw.instance.clone(),
            },
            move |status| {
                // Full: the hub is behind and a later status follows.
                let _ = to_hub.try_send(Msg::Backfill(status));
            },
        )));
    }
    for (b, pin) in spec.buttons.iter().zip(hw.buttons) {
        others.push(buttons::watch(b.clone(), pin, hub_tx.clone()));
    }
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
    let limits = listener::Limits {
        max_connections: spec.max_connections,
        per_client: spec.max_connections_per_client,
    };
    let relay = relay::Relay::new(
        spec.relay.clone(),
        spec.listen.port(),
        &spec.node,
        credentials.clone(),
    );
    let keep = spec
        .state_file
        .clone()
        .map(|p| (p, Arc::clone(&history), Arc::clone(&backfill)));
    let state = http::AppState {
        spec,
        snapshot: snapshot.clone(),
        hub: hub_tx.clone(),
        sim: hw.sim.into(),
        credentials: credentials.clone(),
        relay,
        gpio: hw.gpio_record,
        history: Arc::clone(&history),
        backfill: Arc::clone(&backfill),
        started: std::time::Instant::now(),
    };

    Running {
        router: http::router(state),
        snapshot,
        hub: hub_tx,
        pollers,
        led_tasks,
        others,
        limits,
        credentials,
        keep,
    }
}

impl Running {
    /// Stops polling and switches every LED off; returns once the LEDs are off (or after
    /// [`LED_OFF_DEADLINE`]).
    pub async fn shutdown(self) {
        for p in self.pollers.iter().chain(&self.others) {
            p.abort();
        }
        if let Some((path, history, backfill)) = &self.keep {
            match backfill::keep::save(path, &history::lock(history), backfill) {
                Ok(()) => tracing::info!(file = %path.display(), "history kept for the next start"),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot keep the history over the restart")
                }
            }
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

/// Serves `running` on `listener` ([`listener::serve`]: HTTPS when the credentials have a
/// certificate, capped connections) until `shutdown` completes with a value, then switches the
/// LEDs off and returns that value. Open connections (event streams) are closed.
pub async fn serve<T>(
    listener: TcpListener,
    running: Running,
    shutdown: impl Future<Output = T>,
) -> std::io::Result<T> {
    let app = running.router.clone();
    let result = tokio::select! {
        r = listener::serve(listener, app, running.limits, running.credentials.clone()) => {
            r?;
            unreachable!("the listener only returns on error")
        }
        v = shutdown => v,
    };
    running.shutdown().await;
    Ok(result)
}
