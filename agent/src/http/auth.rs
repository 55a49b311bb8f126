//! Who may read and who may write, as middleware layers: [`require_read`] on every route,
//! [`require_token`] on the write routes. Nothing is checked on an agent without a token (it
//! listens on loopback only, unless started with `--allow-anonymous-writes`).
//!
//! - Reads (`/metrics`, the API, the node page) from another host need one of: a client
//!   certificate from the fleet CA (Prometheus's scrapes, peers), `Authorization: Bearer
//!   <token>`, or basic auth with the token as the password (a browser asks for it; any user
//!   name). Reads from loopback need nothing.
//! - Writes need `Authorization: Bearer <token>` from anywhere. A browser never sends a bearer
//!   token by itself, so a page on another origin cannot make one (basic auth, which a browser
//!   would resend, does not count for writes).
//!
//! Token comparisons take the same time wherever the bytes differ.

use axum::{
    extract::{Request, State},
    http::header::AUTHORIZATION,
    middleware::Next,
    response::Response,
};
use base64::Engine as _;

use super::{error::ApiError, AppState};
use crate::listener::Peer;

/// The bearer token of `req`, if it carries one.
fn bearer(req: &Request) -> Option<&[u8]> {
    let v = req.headers().get(AUTHORIZATION)?.as_bytes();
    let t = v.strip_prefix(b"Bearer ")?;
    Some(t.trim_ascii())
}

/// The password of `req`'s basic auth, if it carries one.
fn basic_password(req: &Request) -> Option<Vec<u8>> {
    let v = req.headers().get(AUTHORIZATION)?.as_bytes();
    let b64 = v.strip_prefix(b"Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_ascii())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    Some(raw[colon + 1..].to_vec())
}

/// Passes reads from loopback, from a verified client certificate, or with the token; 401
/// (asking for basic auth, so a browser prompts) otherwise.
pub async fn require_read(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let creds = st.credentials.get();
    if creds.has_token() {
        // No peer recorded: not served by our listener (tests driving the router); strict.
        let peer = req.extensions().get::<Peer>().copied();
        let ok = peer.is_some_and(|p| p.is_local() || p.client_cert)
            || bearer(&req).is_some_and(|t| creds.accepts(t))
            || basic_password(&req).is_some_and(|p| creds.accepts(&p));
        if !ok {
            return Err(ApiError::ReadUnauthorized);
        }
    }
    Ok(next.run(req).await)
}

/// Passes writes that carry the token as a bearer token; 401 otherwise.
pub async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let creds = st.credentials.get();
    if creds.has_token() && !bearer(&req).is_some_and(|t| creds.accepts(t)) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}
