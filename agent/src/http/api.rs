//! Read endpoints (`/metrics`, `/healthz`, `/api/v1/readings`, `/api/v1/leds`, the SSE stream)
//! and the LED write endpoint. Reads only look at the current snapshot, never at hardware.

use std::{
    convert::Infallible,
    time::{Duration, UNIX_EPOCH},
};

use axum::{
    extract::{Path, RawQuery, State},
    http::header,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse,
    },
    Json,
};
use edgesense_sensors::{led::LedMode, ErrorReason};
use futures_util::Stream;
use serde_json::{json, Value};

use super::{
    error::{ApiError, StrictJson},
    AppState,
};
use crate::{
    config::ModeFields,
    hub::{LedCommand, LedStatus, Msg, Snapshot},
    metrics,
};

/// `GET /metrics`. A scrape by Prometheus (it sends `X-Prometheus-Scrape-Timeout-Seconds`) is
/// noted for the backfill, with the address it dialed (`Host`, Prometheus's `instance`).
pub async fn metrics(
    State(st): State<AppState>,
    peer: Option<axum::Extension<crate::listener::Peer>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(axum::Extension(peer)) = peer {
        if headers.contains_key("x-prometheus-scrape-timeout-seconds") {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map_or_else(|| peer.local.to_string(), str::to_owned);
            st.backfill
                .scraped(peer.addr.ip(), &host, crate::backfill::now_ms());
        }
    }
    let body = st.snapshot.borrow().metrics.clone();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}

pub async fn healthz(State(st): State<AppState>) -> Json<Value> {
    let snap = st.snapshot.borrow().clone();
    let up = snap.sensors.iter().filter(|s| s.up).count();
    Json(
        json!({ "status": "ok", "node": st.spec.node, "sensors_up": up, "sensors": snap.sensors.len() }),
    )
}

pub async fn readings(State(st): State<AppState>) -> Json<Value> {
    let snap = st.snapshot.borrow().clone();
    Json(readings_json(&st, &snap))
}

/// `GET /api/v1/history[?sensor=NAME]`: recent values for sparklines.
pub async fn history(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let only = match q.as_deref() {
        None | Some("") => None,
        Some(q) => Some(q.strip_prefix("sensor=").ok_or_else(|| {
            ApiError::BadRequest(format!(
                "bad query \"{q}\": the only parameter is sensor=NAME"
            ))
        })?),
    };
    let h = crate::history::lock(&st.history);
    h.to_json(only)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no sensor named \"{}\"", only.unwrap_or(""))))
}

pub async fn leds(State(st): State<AppState>) -> Json<Value> {
    let snap = st.snapshot.borrow().clone();
    Json(json!({ "leds": snap.leds.iter().map(led_json).collect::<Vec<_>>() }))
}

/// `POST /api/v1/ack`: what a short press of the node's button does (acknowledge this node's
/// firing alerts: edge rules at once, Alertmanager's by a silence of the first button's
/// `silence`, default 2 h). The answer lists what was acknowledged.
pub async fn acknowledge(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let silence = st
        .spec
        .buttons
        .first()
        .map_or(crate::spec::DEFAULT_SILENCE, |b| b.silence);
    let (reply, answer) = tokio::sync::oneshot::channel();
    st.hub
        .send(crate::hub::Msg::Button {
            long: false,
            silence,
            reply: Some(reply),
        })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let done = answer.await.map_err(|_| ApiError::Unavailable)?;
    Ok(Json(json!(done)))
}

/// `PUT /api/v1/leds/{name}` with `{"mode":"on|off|blink|pulse|auto","period_ms":…,"brightness":…}`.
pub async fn set_led(
    State(st): State<AppState>,
    Path(name): Path<String>,
    StrictJson(body): StrictJson<ModeFields>,
) -> Result<Json<Value>, ApiError> {
    let led = st
        .spec
        .leds
        .iter()
        .position(|l| l.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no LED named \"{name}\"")))?;
    let cmd = match body.mode.as_deref() {
        None => {
            return Err(ApiError::BadRequest(
                "\"mode\" is required: off, on, blink, pulse or auto".into(),
            ))
        }
        Some("auto") if body.period_ms.is_none() && body.brightness.is_none() => LedCommand::Auto,
        Some("auto") => {
            return Err(ApiError::BadRequest(
                "mode \"auto\" takes no period_ms or brightness".into(),
            ))
        }
        Some(_) => LedCommand::Set(body.to_mode("off").map_err(ApiError::BadRequest)?),
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    st.hub
        .send(Msg::Led { led, cmd, reply })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let status = rx.await.map_err(|_| ApiError::Unavailable)?;
    tracing::info!(led = %name, mode = status.mode.name(), "LED set through the API");
    Ok(Json(led_json(&status)))
}

/// `GET /api/v1/events`: a `snapshot` event with readings, LEDs and alerts now and after every
/// change.
pub async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = st.snapshot.clone();
    rx.mark_changed();
    let stream = futures_util::stream::unfold((rx, st), |(mut rx, st)| async move {
        rx.changed().await.ok()?;
        let snap = rx.borrow_and_update().clone();
        let data = json!({
            "seq": snap.seq,
            "readings": readings_json(&st, &snap),
            "leds": snap.leds.iter().map(led_json).collect::<Vec<_>>(),
        });
        let event = Event::default().event("snapshot").data(data.to_string());
        Some((Ok(event), (rx, st)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn readings_json(st: &AppState, snap: &Snapshot) -> Value {
    let sensors: Vec<Value> = snap
        .sensors
        .iter()
        .map(|s| {
            let values: serde_json::Map<String, Value> = s
                .last_good
                .iter()
                .flat_map(|r| r.iter())
                .map(|r| (format!("{}_{}", r.quantity.as_str(), r.quantity.unit()), json!(r.value)))
                .collect();
            let at_ms = s
                .last_good
                .and_then(|r| r.at.duration_since(UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let errors: serde_json::Map<String, Value> = ErrorReason::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), json!(s.errors_total[*r as usize])))
                .collect();
            json!({
                "name": s.name,
                "kind": s.kind.as_str(),
                "up": s.up,
                "values": values,
                "at_ms": at_ms,
                "error": s.error.as_ref().map(|(r, m)| json!({ "reason": r.as_str(), "message": m })),
                "errors_total": errors,
                "read_duration_seconds": s.read_duration.as_secs_f64(),
            })
        })
        .collect();
    let alerts: Vec<Value> = snap
        .alerts
        .iter()
        .map(|a| {
            let mut leds: Vec<&str> = a
                .claims
                .iter()
                .filter_map(|c| st.spec.leds.get(c.led).map(|l| l.name.as_str()))
                .collect();
            leds.dedup();
            json!({
                "name": a.name,
                "severity": a.severity,
                "origin": a.origin,
                "led": leds.first(),
                "leds": leds,
                "fingerprint": a.fingerprint,
                "summary": a.summary,
                "since_ms": a.since_ms,
                "state": a.state,
                "silenced_by": a.silenced_by,
                "until_ms": a.until_ms,
            })
        })
        .collect();
    json!({
        "node": st.spec.node,
        "model": st.spec.model,
        "simulate": st.spec.simulate,
        "auth": st.credentials.get().has_token(),
        "version": env!("CARGO_PKG_VERSION"),
        "sensors": sensors,
        "alerts": alerts,
        "alertmanager": snap.alertmanager.configured.then(|| json!({
            "up": snap.alertmanager.up,
            "last_reconcile_ms": snap.alertmanager.last_ms,
        })),
        "backfill": snap.backfill.configured.then(|| json!({
            "waiting": snap.backfill.waiting,
            "pushed_total": snap.backfill.counts.pushed,
            "rejected_total": snap.backfill.counts.rejected,
        })),
        "buttons": st.spec.buttons.iter().map(|b| json!({"name": b.name, "pin": b.pin})).collect::<Vec<_>>(),
    })
}

fn led_json(l: &LedStatus) -> Value {
    let mut v = json!({
        "name": l.name,
        "pin": l.pin,
        "mode": l.mode.name(),
        "lit": l.mode.is_lit(),
        "source": l.source,
    });
    match l.mode {
        LedMode::Off => {}
        LedMode::On { brightness } => v["brightness"] = json!(brightness),
        LedMode::Blink { period_ms } => v["period_ms"] = json!(period_ms),
        LedMode::Pulse {
            period_ms,
            brightness,
        } => {
            v["period_ms"] = json!(period_ms);
            v["brightness"] = json!(brightness);
        }
    }
    v
}
