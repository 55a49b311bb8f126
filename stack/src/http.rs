//! Plain HTTP GETs to Prometheus and Alertmanager (their published ports): readiness, targets,
//! alerts. hyper's HTTP/1 client connection, already in the tree through bollard.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;

/// GETs `url` (`http://host:port/path`) within `timeout`: (status, body).
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, request(url, None))
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

/// POSTs the JSON `body` to `url` within `timeout`: (status, body).
pub async fn post_json(
    url: &str,
    body: String,
    timeout: Duration,
) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, request(url, Some(body)))
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

async fn request(url: &str, json: Option<String>) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// is supported"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let builder = match &json {
        None => Request::get(path),
        Some(_) => Request::post(path).header(hyper::header::CONTENT_TYPE, "application/json"),
    };
    let req = builder
        .header(hyper::header::HOST, authority)
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `%XX`-escapes `s` for a query string.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn urlencode_escapes_promql() {
        assert_eq!(
            super::urlencode("up{job=\"edgesense\"}"),
            "up%7Bjob%3D%22edgesense%22%7D"
        );
    }
}
