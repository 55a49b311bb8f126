//! `PUT /api/v1/sim/sensors/{name}`: steer a simulated sensor. Only routed with `--simulate`.
//!
//! Body: `{"value": 31.5}` holds the sensor's first quantity at 31.5 (base units) until
//! `{"value": null}`; `"quantity"` picks another one; `{"fault": "crc"}` makes every read fail
//! with that reason (`"hang"` makes reads block, so the per-read timeout fires) until
//! `{"fault": null}`.

use axum::{
    extract::{Path, RawQuery, State},
    Json,
};
use edgesense_sensors::{sim::SimFault, ErrorReason, Quantity};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{
    error::{ApiError, StrictJson},
    AppState,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBody {
    #[serde(default, deserialize_with = "present")]
    value: Option<Option<f64>>,
    quantity: Option<String>,
    #[serde(default, deserialize_with = "present")]
    fault: Option<Option<String>>,
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub async fn set_sensor(
    State(st): State<AppState>,
    Path(name): Path<String>,
    StrictJson(body): StrictJson<SimBody>,
) -> Result<Json<Value>, ApiError> {
    let (i, spec) = st
        .spec
        .sensors
        .iter()
        .enumerate()
        .find(|(_, s)| s.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no sensor named \"{name}\"")))?;
    let control = st
        .sim
        .get(i)
        .ok_or_else(|| ApiError::NotFound(format!("sensor \"{name}\" is not simulated")))?;
    let quantity = match &body.quantity {
        None => spec.kind.quantities()[0],
        Some(q) => Quantity::parse(q)
            .filter(|q| spec.kind.quantities().contains(q))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "sensor \"{name}\" ({}) does not measure \"{q}\"",
                    spec.kind
                ))
            })?,
    };
    if body.value.is_none() && body.fault.is_none() {
        return Err(ApiError::BadRequest(
            "give \"value\" (a number or null) and/or \"fault\"".into(),
        ));
    }
    if let Some(Some(v)) = body.value {
        if !v.is_finite() {
            return Err(ApiError::BadRequest("value must be a finite number".into()));
        }
    }
    let fault = match &body.fault {
        None => None,
        Some(None) => Some(None),
        Some(Some(f)) if f == "hang" => Some(Some(SimFault::Hang)),
        Some(Some(f)) => Some(Some(SimFault::Fail(ErrorReason::parse(f).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown fault \"{f}\", expected hang, not_present, crc, parse, out_of_range, timeout or io"
            ))
        })?))),
    };
    // Everything is checked: now apply.
    if let Some(v) = body.value {
        control.hold(quantity, v);
    }
    if let Some(f) = fault {
        control.set_fault(f);
    }
    tracing::info!(sensor = %name, quantity = quantity.as_str(), held = ?control.held(quantity), fault = ?control.fault(), "simulated sensor steered");
    Ok(Json(json!({
        "name": name,
        "quantity": quantity.as_str(),
        "held": control.held(quantity),
        "fault": control.fault().map(|f| match f {
            SimFault::Hang => "hang",
            SimFault::Fail(r) => r.as_str(),
        }),
    })))
}

/// `GET /api/v1/sim/gpio[?since_ms=T]`: the mock GPIO's record of pin writes, oldest first, with
/// times in ms since the node started, so a test outside the process can check LED patterns.
pub async fn gpio(
    State(st): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let gpio = st
        .gpio
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this node has no mock GPIO".into()))?;
    let since = match query.as_deref() {
        None | Some("") => f64::NEG_INFINITY,
        Some(q) => q
            .strip_prefix("since_ms=")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| !v.is_nan())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "bad query \"{q}\": the only parameter is since_ms=<number>"
                ))
            })?,
    };
    let ms = |at: std::time::Instant| at.saturating_duration_since(st.started).as_secs_f64() * 1e3;
    let writes: Vec<Value> = gpio
        .writes()
        .into_iter()
        .filter(|w| ms(w.at) > since)
        .map(|w| {
            let led = st
                .spec
                .leds
                .iter()
                .find(|l| l.pin == w.pin)
                .map(|l| l.name.as_str());
            json!({ "pin": w.pin, "led": led, "duty": w.drive.duty(), "at_ms": ms(w.at) })
        })
        .collect();
    Ok(Json(json!({
        "now_ms": st.started.elapsed().as_secs_f64() * 1e3,
        "writes": writes,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PressBody {
    /// How long the button is held down (ms): under 3000 a short press, else a long one.
    press_ms: u64,
}

/// `PUT /api/v1/sim/buttons/{name}` `{"press_ms": 200}`: presses a simulated node's button on
/// its mock GPIO input (the pin goes to its pressed level, then back), answering once it is
/// released.
pub async fn press_button(
    State(st): State<AppState>,
    Path(name): Path<String>,
    StrictJson(body): StrictJson<PressBody>,
) -> Result<Json<Value>, ApiError> {
    let b = st
        .spec
        .buttons
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no button named \"{name}\"")))?
        .clone();
    if body.press_ms > 60_000 {
        return Err(ApiError::BadRequest("press_ms is at most 60000".into()));
    }
    let gpio = st
        .gpio
        .clone()
        .ok_or_else(|| ApiError::NotFound("no mock GPIO on this node".into()))?;
    // Pressed is low for an active-low button.
    gpio.set_input(b.pin, !b.active_low);
    tokio::time::sleep(std::time::Duration::from_millis(body.press_ms)).await;
    gpio.set_input(b.pin, b.active_low);
    Ok(Json(
        json!({ "button": name, "pin": b.pin, "press_ms": body.press_ms }),
    ))
}
