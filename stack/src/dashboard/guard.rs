//! What the dashboard refuses, before any handler runs.
//!
//! - A silence is an LED control, and a page the operator opens on another site can make the
//!   browser send a request to the dashboard: a `fetch(…, {mode: "no-cors"})` with a
//!   `text/plain` body needs no CORS preflight. So every write must be `Content-Type:
//!   application/json` (which a cross-site page can only send after a preflight this server
//!   never answers) and, when the browser says where it comes from (`Origin`, sent with every
//!   cross-origin and same-origin POST by current browsers), come from the dashboard's own
//!   origin.
//! - On loopback, only the loopback names are answered in `Host` (`127.0.0.1`, `localhost`,
//!   `[::1]`): a DNS-rebinding page (evil.example resolving to 127.0.0.1) is refused even for
//!   reads.
//! - Beyond loopback, every request needs the operator's basic auth (user `edgesense`); the
//!   CLI refuses to listen there without it.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// The dashboard's own address and, beyond loopback, the password it asks for.
#[derive(Clone, Debug)]
pub struct Guard {
    pub listen: SocketAddr,
    /// The operator's password (user `edgesense`): required of every request when set.
    pub password: Option<String>,
}

/// The refusal, also on stderr (what the operator's terminal shows).
fn refuse(req: &Request, status: StatusCode, why: &str) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    eprintln!(
        "dashboard: refused {} {} (origin {origin}): {why}",
        req.method(),
        req.uri().path()
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

impl Guard {
    /// Whether `host` (a `Host` header, or an `Origin`'s authority) names this dashboard.
    fn is_own(&self, host: &str) -> bool {
        let port = self.listen.port();
        if self.listen.ip().is_loopback() {
            ["127.0.0.1", "localhost", "[::1]"]
                .iter()
                .any(|h| host == format!("{h}:{port}"))
        } else {
            // Any name of this machine may be used to reach it; the password guards it.
            host.rsplit_once(':')
                .is_some_and(|(_, p)| p == port.to_string())
        }
    }

    fn password_ok(&self, req: &Request) -> bool {
        let Some(want) = &self.password else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .unwrap_or_default();
        let expected = format!("{}:{want}", crate::credentials::OPERATOR);
        bool::from(given.ct_eq(expected.as_bytes()))
    }
}

/// The middleware: refuses what [`Guard`] says, passes the rest.
pub async fn check(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !g.is_own(host) {
        return refuse(
            &req,
            StatusCode::MISDIRECTED_REQUEST,
            "this is the edgesense dashboard of another host name",
        );
    }
    if !g.password_ok(&req) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"edgesense dashboard\", charset=\"UTF-8\"",
            )],
            "the operator's password (user edgesense)\n",
        )
            .into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return refuse(
                &req,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "writes are application/json",
            );
        }
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("?"));
        if let Some(o) = origin {
            let authority = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .unwrap_or("");
            if authority != host {
                return refuse(
                    &req,
                    StatusCode::FORBIDDEN,
                    "a write from another origin (a page of another site) is refused",
                );
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, routing::post, Router};
    use tower::ServiceExt;

    fn app(g: Guard) -> Router {
        Router::new()
            .route(
                "/api/silence",
                post(|| async { "made" }).get(|| async { "read" }),
            )
            .layer(axum::middleware::from_fn_with_state(Arc::new(g), check))
    }

    async fn status(r: &Router, method: &str, headers: &[(&str, &str)]) -> StatusCode {
        let mut b = Request::builder().method(method).uri("/api/silence");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        r.clone()
            .oneshot(b.body(Body::from("{}")).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn cross_site_and_rebinding_requests_are_refused_on_loopback() {
        let r = app(Guard {
            listen: "127.0.0.1:9843".parse().unwrap(),
            password: None,
        });
        let host = ("host", "127.0.0.1:9843");
        let json = ("content-type", "application/json");
        assert_eq!(status(&r, "GET", &[host]).await, StatusCode::OK);
        assert_eq!(
            status(
                &r,
                "POST",
                &[host, json, ("origin", "http://127.0.0.1:9843")]
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            status(&r, "POST", &[host, json]).await,
            StatusCode::OK,
            "curl"
        );
        for (why, h) in [
            (
                "text/plain (no preflight)",
                vec![
                    host,
                    ("content-type", "text/plain"),
                    ("origin", "https://evil.example"),
                ],
            ),
            (
                "no content type",
                vec![host, ("origin", "http://127.0.0.1:9843")],
            ),
            (
                "foreign origin",
                vec![host, json, ("origin", "https://evil.example")],
            ),
            ("opaque origin", vec![host, json, ("origin", "null")]),
        ] {
            assert_ne!(status(&r, "POST", &h).await, StatusCode::OK, "{why}");
        }
        let rebound = ("host", "evil.example:9843");
        assert_eq!(
            status(&r, "GET", &[rebound]).await,
            StatusCode::MISDIRECTED_REQUEST
        );
    }

    #[tokio::test]
    async fn beyond_loopback_every_request_needs_the_password() {
        let r = app(Guard {
            listen: "0.0.0.0:9843".parse().unwrap(),
            password: Some("pw".into()),
        });
        let host = ("host", "mgr:9843");
        assert_eq!(status(&r, "GET", &[host]).await, StatusCode::UNAUTHORIZED);
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("edgesense:pX")
        );
        assert_eq!(
            status(&r, "GET", &[host, ("authorization", &wrong)]).await,
            StatusCode::UNAUTHORIZED
        );
        let right = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("edgesense:pw")
        );
        assert_eq!(
            status(&r, "GET", &[host, ("authorization", &right)]).await,
            StatusCode::OK
        );
        assert_eq!(
            status(
                &r,
                "POST",
                &[
                    host,
                    ("authorization", &right),
                    ("content-type", "text/plain")
                ]
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "basic auth is resent by the browser: the content type still decides"
        );
    }
}
