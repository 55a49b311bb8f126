//! `PUT /api/v1/sim/sensors/{name}`: steer a simulated sensor. Only routed with `--simulate`.
//!
//! Body: `{"value": 31.5}` holds the sensor's first quantity at 31.5 (base units) until
//! `{"value": null}`; `"quantity"` picks another one; `{"fault": "crc"}` makes every read fail
//! with that reason (`"hang"` makes reads block, so the per-read timeout fires) until
//! `{"fault": null}`.

use axum::{
    extract::{Path, State},
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
