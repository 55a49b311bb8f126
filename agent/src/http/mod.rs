//! The HTTP API: one [`AppState`], routers per area, errors mapped in [`error::ApiError`].

mod api;
mod auth;
pub mod error;
mod sim;
mod webhook;

use std::sync::Arc;

use axum::{
    middleware,
    response::{Html, IntoResponse},
    routing::{get, post, put},
    Router,
};
use edgesense_net::page;
use edgesense_sensors::{bus::gpio::MockGpio, sim::SimControl};
use tokio::sync::{mpsc, watch};

use crate::{
    hub::{Msg, Snapshot},
    relay::Relay,
    spec::NodeSpec,
};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub spec: Arc<NodeSpec>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub hub: mpsc::Sender<Msg>,
    /// Controls of the simulated sensors, by sensor index (empty unless simulated).
    pub sim: Arc<[SimControl]>,
    /// The token(s) requests must carry and the agent's TLS set-up, replaced on a reload.
    pub credentials: crate::credentials::Shared,
    /// Forwards Alertmanager payloads to the peers.
    pub relay: Relay,
    /// The mock GPIO of a simulated node, whose record `/api/v1/sim/gpio` serves.
    pub gpio: Option<MockGpio>,
    /// When the node started (the zero of `/api/v1/sim/gpio` times).
    pub started: std::time::Instant,
    /// Recent values of every sensor.
    pub history: crate::history::SharedHistory,
    /// The scrape log and the gaps to push.
    pub backfill: Arc<crate::backfill::Backfill>,
}

/// The agent's routes. Everything sits behind the read check, writes also behind the token
/// check ([`auth`]); the simulation routes exist only on a simulated node (404 otherwise).
pub fn router(state: AppState) -> Router {
    let mut writes = Router::new()
        .route("/api/v1/leds/{name}", put(api::set_led))
        .route("/api/v1/ack", post(api::acknowledge))
        .route("/api/v1/alertmanager", post(webhook::alertmanager));
    let mut reads = Router::new();
    if state.spec.simulate {
        writes = writes
            .route("/api/v1/sim/sensors/{name}", put(sim::set_sensor))
            .route("/api/v1/sim/buttons/{name}", put(sim::press_button));
        reads = reads.route("/api/v1/sim/gpio", get(sim::gpio));
    }
    let writes = writes.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .route("/api/v1/readings", get(api::readings))
        .route("/api/v1/leds", get(api::leds))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/history", get(api::history))
        .merge(reads)
        .merge(writes)
        // Every request, unknown paths too: a stranger learns nothing, not even what exists.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_read,
        ))
        .with_state(state)
}

/// The node page: one HTML file with inline CSS and one script beside it (no CDN, no build
/// step), both embedded in the binary. The script is a file of its own so that the policy can
/// forbid inline scripts: injected markup could not run code even if some text were ever
/// inserted as HTML.
const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");

/// No script but the agent's own file, no connection but to the agent, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn index() -> impl IntoResponse {
    (page::html(CSP), Html(PAGE))
}

async fn script() -> impl IntoResponse {
    (page::SCRIPT, SCRIPT)
}
