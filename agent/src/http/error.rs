//! API errors mapped to status codes in one place, and the strict JSON body extractor.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::de::DeserializeOwned;

/// Largest request body accepted (Alertmanager payloads of a few hundred alerts fit easily).
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A read from another host without a client certificate or the token.
    #[error("this agent needs credentials: a client certificate from the fleet CA, the token as a bearer token, or basic auth with the token as the password")]
    ReadUnauthorized,
    #[error("request body larger than {} KiB", .0 / 1024)]
    PayloadTooLarge(usize),
    #[error("the agent is shutting down")]
    Unavailable,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::ReadUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        // A browser prompts for basic auth (reads); writes want a bearer token it never sends
        // on its own.
        let challenge = match self {
            ApiError::Unauthorized => Some("Bearer realm=\"edgesense\""),
            ApiError::ReadUnauthorized => {
                Some("Basic realm=\"edgesense agent\", charset=\"UTF-8\"")
            }
            _ => None,
        };
        match challenge {
            Some(c) => (status, [(header::WWW_AUTHENTICATE, c)], body).into_response(),
            None => (status, body).into_response(),
        }
    }
}

/// Reads a request body of at most `limit` bytes: 413 beyond it, checked against the declared
/// `Content-Length` first so an oversized upload is refused before it is read.
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))
}

/// A JSON body, at most [`BODY_LIMIT`] bytes, parsed strictly (the target types deny unknown
/// fields). Any content type is accepted, so `curl -d` works without `-H`.
pub struct StrictJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, BODY_LIMIT).await?;
        serde_json::from_slice(&bytes)
            .map(StrictJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// A raw body of at most `LIMIT` bytes.
pub struct LimitedBody<const LIMIT: usize>(pub Bytes);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for LimitedBody<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_body(req, LIMIT).await.map(LimitedBody)
    }
}
