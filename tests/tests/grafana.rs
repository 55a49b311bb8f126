//! The shipped Grafana dashboard (stack/assets/grafana/edgesense.json) against a real Prometheus
//! scraping a simulated agent with an alert firing: every PromQL expression of every panel and
//! annotation, with the dashboard variables substituted as Grafana would, returns data, and
//! every variable query finds values.

use std::time::Duration;

use edgesense_tests::{
    alerting::{assets, FastStack},
    http_encode, wait_until, TestFleet,
};
use serde_json::Value;

fn substitute(expr: &str) -> String {
    expr.replace("$instance", ".*")
        .replace("$sensor", ".*")
        .replace("$node", "pi-graf")
        .replace("$__rate_interval", "1m")
}

#[test]
fn every_expression_in_the_grafana_dashboard_returns_data() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(assets().join("grafana/edgesense.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs: Vec<(String, String)> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push((
                format!("panel {:?}", p["title"].as_str().unwrap()),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if let Some(e) = a["expr"].as_str() {
            exprs.push((format!("annotation {:?}", a["name"]), e.to_owned()));
        }
    }
    assert!(exprs.len() >= 8, "{exprs:?}");
    let vars: Vec<String> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["definition"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(vars.len(), 3, "node, instance, sensor");

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "graf\n").unwrap();
    let cfg = dir.path().join("n.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"pi-graf\"\ntoken_file = \"{}\"\npoll_interval = \"1s\"\n",
            token.display()
        ),
    )
    .unwrap();
    let fleet = TestFleet::new(dir.path(), "graf");
    let agent = fleet.agent(&["--simulate", "--config", cfg.to_str().unwrap()]);
    let stack = FastStack::start(dir.path(), &fleet, agent.addr);
    assert_eq!(
        agent
            .put("/api/v1/sim/sensors/room", Some("graf"), r#"{"value":40}"#)
            .status,
        200
    );

    for (what, expr) in &exprs {
        let q = substitute(expr);
        assert!(!q.contains('$'), "{what}: unsubstituted variable in {q}");
        wait_until(
            &format!("{what} returning data: {q}"),
            Duration::from_secs(60),
            || {
                let v = stack
                    .prom_api
                    .get_json(&format!("/api/v1/query?query={}", http_encode(&q)));
                assert_eq!(v["status"], "success", "{what}: {v}");
                (!v["data"]["result"].as_array()?.is_empty()).then_some(())
            },
        );
    }
    // Variable queries: label_values(SELECTOR, LABEL) finds values.
    for def in &vars {
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap();
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let (selector, label) = (substitute(selector.trim()), label.trim().to_owned());
        let v = stack
            .prom_api
            .get_json(&format!("/api/v1/query?query={}", http_encode(&selector)));
        let values: Vec<&str> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["metric"][&label].as_str())
            .collect();
        assert!(!values.is_empty(), "{def} finds no {label}");
        if label == "node" {
            assert_eq!(values, ["pi-graf"]);
        }
    }
}
