//! The helper both router-level test files use: a node started in-process with a mock GPIO,
//! called through its router (no network).
#![allow(dead_code)]

use std::{path::Path, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use edgesense_agent::{config, hub::Snapshot, spec, Hardware, Running};
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
    let running = edgesense_agent::start(Arc::new(spec), hw, token.map(|t| t.as_bytes().to_vec()));
    let router = running.router.clone();
    Node {
        running: Some(running),
        router,
        gpio,
    }
}

impl Node {
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
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
