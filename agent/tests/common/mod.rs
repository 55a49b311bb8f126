//! The helper both router-level test files use: a node started in-process with a mock GPIO,
//! called through its router (no network).
#![allow(dead_code)]

use std::{path::Path, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use edgesense_agent::{
    config, credentials, hub::Snapshot, listener::Peer, spec, Hardware, Running,
};
use edgesense_sensors::bus::gpio::MockGpio;
use serde_json::Value;
use tower::ServiceExt;

pub struct Node {
    pub running: Option<Running>,
    pub router: Router,
    pub gpio: MockGpio,
}

pub fn node(text: &str, token: Option<&str>, simulate: bool) -> Node {
    let loaded = config::parse(Path::new("test.toml"), text.into()).unwrap();
    let mut spec = spec::resolve(
        &loaded,
        &spec::Overrides {
            sysfs_root: None,
            listen: None,
            simulate: true,
            ..spec::Overrides::default()
        },
    )
    .unwrap();
    let gpio = MockGpio::new();
    let hw = Hardware::simulated(&spec, &gpio).unwrap();
    spec.simulate = simulate;
    let creds = match token {
        Some(t) => credentials::Credentials::tokens_only(&[t.as_bytes()]),
        None => credentials::Credentials::none(),
    };
    let running = edgesense_agent::start(Arc::new(spec), hw, credentials::Shared::new(creds));
    let router = running.router.clone();
    Node {
        running: Some(running),
        router,
        gpio,
    }
}

/// A client on this host (loopback, as the listener records it).
pub const LOCAL: &str = "127.0.0.1:40000";
/// A client on another host of the LAN.
pub const REMOTE: &str = "192.168.1.77:40000";

impl Node {
    /// A request from [`LOCAL`] with `token` as the bearer token.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        self.call_from(LOCAL, false, method, uri, auth.as_deref(), body)
            .await
    }

    /// A request from `peer` (with a verified client certificate if `cert`), `authorization`
    /// as its `Authorization` header.
    pub async fn call_from(
        &self,
        peer: &str,
        cert: bool,
        method: Method,
        uri: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let mut req = req.body(Body::from(body.to_owned())).unwrap();
        req.extensions_mut().insert(Peer {
            addr: peer.parse().unwrap(),
            local: "127.0.0.1:9842".parse().unwrap(),
            tls: cert,
            client_cert: cert,
        });
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, json)
    }

    pub async fn text(&self, uri: &str) -> String {
        match self.call(Method::GET, uri, None, "").await {
            (StatusCode::OK, Value::String(s)) => s,
            other => panic!("GET {uri}: {other:?}"),
        }
    }

    pub async fn led(&self, name: &str) -> Value {
        let (_, v) = self.call(Method::GET, "/api/v1/leds", None, "").await;
        v["leds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    }

    /// Waits (bounded) for a snapshot that satisfies `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
        let mut rx = self.running.as_ref().unwrap().snapshot.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let snap = rx.borrow_and_update().clone();
            if pred(&snap) {
                return snap;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("timed out waiting for {what}"),
            }
        }
    }

    pub async fn shutdown(&mut self) {
        self.running.take().unwrap().shutdown().await;
    }
}

pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
