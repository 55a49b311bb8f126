//! Bearer-token check for write requests, as a middleware layer on the write routes.

use axum::{
    extract::{Request, State},
    http::header::AUTHORIZATION,
    middleware::Next,
    response::Response,
};
use subtle::ConstantTimeEq;

use super::{error::ApiError, AppState};

/// Passes the request on when no token is configured or the `Authorization: Bearer` header
/// carries it; 401 otherwise. The comparison takes the same time wherever the tokens differ.
pub async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &st.token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token)));
        if !ok {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(req).await)
}
