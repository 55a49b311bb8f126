//! `POST /api/v1/alertmanager`: Alertmanager's webhook (payload version 4).
//!
//! The whole payload is checked before anything changes (400 and no change otherwise); alerts for
//! another node (`node` label set to another name) are ignored; the rest go to the hub's alert
//! set by fingerprint. A payload that did not come from a peer is then relayed to the peers.

use axum::{extract::State, http::HeaderMap, Json};
use serde_json::{json, Value};

use super::{
    error::{ApiError, LimitedBody},
    AppState,
};
use crate::{
    alerts::{
        self,
        webhook::{self, WEBHOOK_BODY_LIMIT},
    },
    hub::Msg,
    relay::{self, RELAYED_BY, RELAY_TO},
};

pub async fn alertmanager(
    State(st): State<AppState>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody<WEBHOOK_BODY_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    let payload = webhook::parse(&body).map_err(ApiError::BadRequest)?;
    let relayed_by = headers
        .get(RELAYED_BY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A tree's group to pass the payload on to: only from a peer, checked before anything changes.
    let relay_to = match (relayed_by.as_deref(), headers.get(RELAY_TO)) {
        (_, None) => None,
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(format!(
                "{RELAY_TO} without {RELAYED_BY}"
            )))
        }
        (Some(_), Some(v)) => Some(
            v.to_str()
                .map_err(|_| format!("{RELAY_TO}: not ASCII"))
                .and_then(relay::parse_relay_to)
                .map_err(ApiError::BadRequest)?,
        ),
    };
    if payload.truncated_alerts > 0 {
        tracing::warn!(
            truncated = payload.truncated_alerts,
            group = %payload.group_key,
            "Alertmanager truncated this notification (max_alerts); some alerts are missing"
        );
    }
    let total = payload.alerts.len();
    let own: Vec<_> = payload
        .alerts
        .into_iter()
        .filter(|a| alerts::for_node(&a.labels, &st.spec.node))
        .collect();
    let ignored = total - own.len();
    let (reply, rx) = tokio::sync::oneshot::channel();
    st.hub
        .send(Msg::Webhook {
            group: payload.group_key.clone(),
            status: payload.status,
            alerts: own,
            reply,
        })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let applied = rx.await.map_err(|_| ApiError::Unavailable)?;
    let relay = relayed_by.is_none() && st.relay.is_enabled();
    let group = relay_to.as_ref().map_or(0, Vec::len);
    if relay {
        st.relay.forward(body);
    } else if let Some(to) = relay_to.filter(|t| !t.is_empty()) {
        st.relay.forward_to(body, to);
    }
    tracing::info!(
        group = %payload.group_key,
        status = ?payload.status,
        alerts = total,
        other_nodes = ignored,
        fired = applied.fired,
        resolved = applied.resolved,
        unchanged = applied.unchanged,
        relayed_by = relayed_by.as_deref().unwrap_or("-"),
        relay,
        pass_on = group,
        "Alertmanager webhook"
    );
    Ok(Json(json!({
        "status": "ok",
        "alerts": total,
        "other_nodes": ignored,
        "fired": applied.fired,
        "resolved": applied.resolved,
        "unchanged": applied.unchanged,
        "relayed": relay,
    })))
}
