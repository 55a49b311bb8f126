//! The test of record for everything swarm-related: a real three-node swarm (tests/fleet.sh:
//! `mgr`, `pi-a`, `pi-b`, each its own Docker host in its own network and UTS namespace, the
//! overlay carried between them over VXLAN), with the local Prometheus and Alertmanager images
//! and simulated agents, driven as an operator would: the CLI run on the node it concerns, and
//! from the manager with `--docker-host` pointing at a worker.

use std::time::{Duration, Instant};

use edgesense_tests::{
    alerting::fast_rules,
    backfill::{node_coverage, wall_ms},
    browser::{artifacts, dashboard, png, run_browser},
    fleet::{scraped_nodes, scraped_nodes_after, Fleet, Node, LOCAL_STACK},
    pairs,
    payload::{rfc3339_in, Alert},
    wait_until, Endpoint, TestFleet,
};
use serde_json::Value;

fn local_agent(f: &TestFleet) -> Endpoint {
    f.agent_at(([127, 0, 0, 1], 9842).into())
}

fn led(f: &TestFleet, node: &Node, led: &str) -> Option<Value> {
    node.agent_led(f, led)
}

fn led_mode(f: &TestFleet, node: &Node, name: &str) -> String {
    led(f, node, name)
        .and_then(|l| l["mode"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn put_sim(f: &TestFleet, node: &Node, sensor: &str, value: f64) {
    node.put_sim(f, sensor, value);
}

/// `edgesense_backfill_samples_pushed_total` of the agent on `node`, asked inside the node.
fn pushed(f: &TestFleet, node: &Node) -> f64 {
    let r = node
        .request_from(&local_agent(f), "GET", "/metrics", &[], "")
        .expect("agent answers");
    edgesense_tests::metric(&r.body, "edgesense_backfill_samples_pushed_total")
        .unwrap_or_else(|| panic!("no backfill metrics on {}: {}", node.name, r.body))
}

/// Waits until Prometheus holds at least 95 % of the room readings `node`'s agent took while
/// Prometheus could not scrape it (since `since_ms`), as one series with the scrapes' labels,
/// at most until a minute after `from` (when the fault ended); returns (held, taken, how long
/// Prometheus went without a scrape in ms).
fn backfilled(
    f: &TestFleet,
    prom: &Endpoint,
    node: &Node,
    since_ms: i64,
    from: Instant,
) -> (usize, usize, i64) {
    let history = node
        .request_from(
            &local_agent(f),
            "GET",
            "/api/v1/history?sensor=room",
            &[],
            "",
        )
        .expect("agent answers")
        .json();
    let seen = std::cell::Cell::new(None);
    edgesense_tests::wait_or(
        &format!("95 % of {}'s readings in Prometheus", node.name),
        (from + Duration::from_secs(60)).saturating_duration_since(Instant::now()),
        || {
            let (found, total, gap) = node_coverage(prom, &node.name, "room", &history, since_ms)?;
            seen.set(Some((found, total)));
            (total >= 5 && found * 100 >= total * 95).then_some((found, total, gap))
        },
        || {
            let metrics = node
                .request_from(&local_agent(f), "GET", "/metrics", &[], "")
                .map(|r| {
                    r.body
                        .lines()
                        .filter(|l| l.starts_with("edgesense_backfill"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_else(|e| format!("agent does not answer: {e}"));
            format!(
                "held/taken: {:?}\n{metrics}\nthe overlay's services as {} sees them: {}\nagent log:\n{}",
                seen.get(),
                node.name,
                node.docker(&[
                    "network",
                    "inspect",
                    "--verbose",
                    "--format",
                    "{{json .Services}}",
                    "core-infra"
                ]),
                node.agent_log(40)
            )
        },
    )
}

#[test]
fn a_three_node_fleet_operated_on_each_node_and_remotely() {
    let started = Instant::now();
    let fleet = Fleet::lock();
    let (mgr, pi_a, pi_b) = (fleet.node("mgr"), fleet.node("pi-a"), fleet.node("pi-b"));
    fleet.clean();

    // --- A worker before the stack exists: a clear refusal, nothing left behind. (A worker
    // cannot see the stack's network before it runs a container on it; what it lacks first is
    // the fleet's credentials, which the stack makes.)
    let (code, _, err) = pi_a.edgesense(&["node", "run", "--simulate", "--no-token"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("credentials") && err.contains("stack up"),
        "says what to do first: {err}"
    );
    assert!(
        pi_a.docker(&["ps", "-aq", "--filter", "label=com.edgesense.role"])
            .trim()
            .is_empty(),
        "no container left behind"
    );

    // --- stack up, run on the manager itself (its own socket), with fast rules.
    std::fs::write(mgr.etc_dir().join("fast-rules.yml"), fast_rules()).unwrap();
    let mut up: Vec<&str> = vec![
        "stack",
        "up",
        "--rules",
        "/etc/edgesense/fast-rules.yml",
        "--timeout",
        "180",
    ];
    up.extend(LOCAL_STACK);
    let t = Instant::now();
    let out = mgr.edgesense_ok(&up);
    eprintln!(
        "stack up on the manager: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let token = out
        .lines()
        .skip_while(|l| !l.starts_with("Webhook token"))
        .nth(1)
        .expect("stack up prints the token it generated")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 32, "{out}");
    assert!(
        out.contains(&format!("Prometheus: https://{}:9090", mgr.addr)),
        "{out}"
    );
    // The fleet's credentials, as stack up keeps them on the manager (root only).
    let f = mgr.kept_fleet();
    assert_eq!(f.kept.token, token);
    assert!(
        out.contains(f.operator_password()),
        "the operator's password, shown once: {out}"
    );
    // The operator keeps the token in a file on the manager.
    std::fs::write(mgr.etc_dir().join("stack.token"), format!("{token}\n")).unwrap();

    // The same stack up from another machine (this host) through the manager's TCP endpoint:
    // nothing changes, and readiness is asked of the manager, not of this machine's loopback.
    let mgr_tcp = mgr.tcp_host();
    let mut remote: Vec<&str> = vec!["--docker-host", &mgr_tcp];
    remote.extend(up.iter().copied());
    remote.retain(|a| *a != "--rules" && *a != "/etc/edgesense/fast-rules.yml");
    let fast_rules_host = mgr.etc_dir().join("fast-rules.yml");
    let fast_rules_host = fast_rules_host.to_str().unwrap();
    remote.extend(["--rules", fast_rules_host, "--token-file"]);
    let token_host = mgr.etc_dir().join("stack.token");
    let token_host = token_host.to_str().unwrap();
    remote.push(token_host);
    let t = Instant::now();
    let o = std::process::Command::new(edgesense_tests::cli_bin())
        .args(&remote)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert!(
        text.contains(&format!("https://{}:9090", mgr.addr)),
        "{text}"
    );
    assert!(
        text.contains("keeps no secrets of the stack"),
        "says the secrets are kept elsewhere: {text}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "answered by the manager at once, not after a timeout: {text}"
    );

    // --- pi-a: `node run` on the node itself. Without the fleet's credentials a refusal that
    // says where to get them (fail closed: no agent in clear, none without a token); with
    // them copied to /etc/edgesense/fleet (as the operator would), every default but
    // --simulate, and the agent (nobody) reads them.
    let (code, _, err) = pi_a.edgesense(&["node", "run", "--simulate", "--publish", "9842"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("/etc/edgesense/fleet"), "says where: {err}");
    pi_a.install_bundle(&f);
    let out = pi_a.edgesense_ok(&["node", "run", "--simulate", "--publish", "9842"]);
    assert!(
        out.contains("node \"pi-a\"") && out.contains("/etc/edgesense/fleet"),
        "node name from the Docker host, credentials from the node's copy: {out}"
    );
    assert!(!out.contains(&token), "the token is never printed: {out}");
    wait_until("pi-a's agent healthy", Duration::from_secs(60), || {
        let h = pi_a.docker(&[
            "inspect",
            "edgesense-agent",
            "--format",
            "{{.State.Health.Status}} {{.RestartCount}}",
        ]);
        (h.trim() == "healthy 0").then_some(())
    });
    let put = |token: &str| {
        pi_a.request_from(
            &local_agent(&f).bearer(token),
            "PUT",
            "/api/v1/leds/amber",
            &[],
            r#"{"mode":"on"}"#,
        )
        .unwrap()
        .status
    };
    assert_eq!(put("wrong"), 401);
    assert_eq!(put(&token), 200, "the fleet's token works");
    // Then with the stack's token (copied to the node by the operator): replaced.
    std::fs::write(pi_a.etc_dir().join("stack.token"), format!("{token}\n")).unwrap();
    let out = pi_a.edgesense_ok(&[
        "node",
        "run",
        "--simulate",
        "--publish",
        "9842",
        "--token-file",
        "/etc/edgesense/stack.token",
    ]);
    assert!(
        out.contains("replaced agent container edgesense-agent"),
        "{out}"
    );

    // --- pi-b: from the manager, through pi-b's Docker endpoint; the token file and the
    // credentials are the manager's, and the node name is pi-b's, not the manager's.
    let out = mgr.edgesense_ok(&[
        "--docker-host",
        &pi_b.tcp_host(),
        "node",
        "run",
        "--simulate",
        "--publish",
        "9842",
        "--token-file",
        "/etc/edgesense/stack.token",
    ]);
    assert!(out.contains("node \"pi-b\""), "{out}");
    assert!(
        out.contains("/var/lib/edgesense/stacks/"),
        "the credentials the manager keeps: {out}"
    );
    assert!(
        !out.contains("systemd"),
        "no systemd unit installed on the manager for pi-b's agent: {out}"
    );

    // --- Prometheus on the manager discovers both remote agents through the alias.
    let prom = f.operator(mgr.at(9090), &mgr.addr.to_string());
    let am = f.operator(mgr.at(9093), &mgr.addr.to_string());
    let t = Instant::now();
    wait_until(
        "both workers' agents scraped by Prometheus on the manager",
        Duration::from_secs(120),
        || (scraped_nodes(&prom) == ["pi-a", "pi-b"]).then_some(()),
    );
    eprintln!(
        "remote agents discovered and scraped after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (code, status, err) = mgr.edgesense(&["stack", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(
        pairs(&v, "nodes", "hostname", "role"),
        ["mgr=manager", "pi-a=worker", "pi-b=worker"],
        "{v}"
    );
    assert_eq!(
        pairs(&v, "agents", "node", "health"),
        ["pi-a=up", "pi-b=up"],
        "{v}"
    );

    // The cluster dashboard (here on the operator's machine) shows both nodes, with the fleet
    // CA and the operator's password the operator took from the manager.
    let (_dash, url) = dashboard(
        &format!("https://{}", mgr.at(9090)),
        &format!("https://{}", mgr.at(9093)),
        &f.ca_file(),
        &f.operator_password_file(),
    );
    let shot = artifacts().join("fleet-cluster-page.png");
    let _ = std::fs::remove_file(&shot);
    run_browser(
        "fleet-page.mjs",
        &[&url, "pi-a,pi-b", shot.to_str().unwrap()],
    );
    assert!(png(&shot));

    // --- An alert for pi-b lights pi-b's LED and leaves pi-a's alone, through Prometheus,
    // Alertmanager and whichever agent Alertmanager reached.
    assert_eq!(led_mode(&f, pi_b, "red"), "off");
    put_sim(&f, pi_b, "room", 40.0);
    let t = Instant::now();
    wait_until("pi-b's red LED blinking", Duration::from_secs(120), || {
        let red = led(&f, pi_b, "red")?;
        (red["mode"] == "blink" && red["source"]["name"] == "EdgesenseTemperatureHigh")
            .then_some(())
    });
    eprintln!(
        "threshold → pi-b's LED across the fleet: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Held for a few seconds (the relay to pi-a, had it lit it, takes milliseconds), and pi-a's
    // agent answering every look.
    edgesense_tests::holds(
        "pi-a, not the alert's node, red off and green on",
        Duration::from_secs(3),
        || {
            let (red, green) = (led(&f, pi_a, "red")?, led(&f, pi_a, "green")?);
            let (red, green) = (red["mode"].clone(), green["mode"].clone());
            Some((red == "off" && green == "on", (red, green)))
        },
    );
    put_sim(&f, pi_b, "room", 21.0);

    // The relay across nodes, each way: a payload posted to one node's agent for the other's
    // node reaches the other through that agent's relay (its log names the relaying node) and
    // lights its LED. The alert is Alertmanager's too (the agents reconcile against it, and
    // drop what it does not know), and the payload is the one it would send.
    for (to, other) in [(pi_a, pi_b), (pi_b, pi_a)] {
        let name = format!("RelayTo{}", other.name.replace('-', ""));
        let alert = Alert::new(&name)
            .label("node", &other.name)
            .label("severity", "warning");
        let in_am = |ends_in: i64| {
            let body = alert.clone().around_now(5, ends_in).post_body();
            edgesense_tests::post_alerts(&am, &body);
        };
        in_am(600);
        let (fingerprint, starts_at) =
            wait_until("the alert in Alertmanager", Duration::from_secs(10), || {
                let v = am.get_json(&format!(
                    "/api/v2/alerts?filter={}",
                    edgesense_tests::http_encode(&format!("alertname=\"{name}\""))
                ));
                let a = v.as_array()?.first()?.clone();
                Some((
                    a["fingerprint"].as_str()?.to_owned(),
                    a["startsAt"].as_str()?.to_owned(),
                ))
            });
        // As Alertmanager sends it: its fingerprint and start.
        let sent = alert
            .clone()
            .starts_at(&starts_at)
            .fingerprint(&fingerprint);
        let post = |status: &str| {
            let a = match status {
                "firing" => sent.clone(),
                _ => sent.clone().resolved_at(&rfc3339_in(0)),
            };
            let r = f.agent_at(to.at(9842)).request(
                "POST",
                "/api/v1/alertmanager",
                &["Content-Type: application/json"],
                &a.webhook(),
            );
            assert_eq!(r.status, 200, "{}", r.body);
        };
        post("firing");
        wait_until(
            &format!("{} relayed from {} lights amber", other.name, to.name),
            Duration::from_secs(30),
            || {
                let amber = led(&f, other, "amber")?;
                let logs = other.docker_output(&["logs", "edgesense-agent"]);
                let logs = String::from_utf8_lossy(&logs.stderr).into_owned();
                let relayed = logs.lines().any(|l| {
                    l.contains(&format!("alertname=\"{name}\""))
                        && l.contains(&format!("relayed_by=\"{}\"", to.name))
                });
                (amber["source"]["name"] == name.as_str() && relayed).then_some(())
            },
        );
        assert_ne!(
            led(&f, to, "amber").map(|l| l["source"]["name"].clone()),
            Some(Value::String(name.clone())),
            "{} keeps its own LEDs",
            to.name
        );
        in_am(-1);
        post("resolved");
        wait_until(
            &format!("the resolve relayed to {}", other.name),
            Duration::from_secs(30),
            || (led_mode(&f, other, "amber") == "off").then_some(()),
        );
    }

    // A cluster-wide alert (no node label), posted to Alertmanager: both light.
    let alert = |ends_in: i64| {
        Alert::new("FleetWide")
            .label("severity", "critical")
            .around_now(5, ends_in)
            .post_body()
    };
    edgesense_tests::post_alerts(&am, &alert(600));
    wait_until(
        "both nodes blink red for the cluster-wide alert",
        Duration::from_secs(90),
        || {
            [pi_a, pi_b]
                .iter()
                .all(|n| {
                    led(&f, n, "red")
                        .is_some_and(|l| l["mode"] == "blink" && l["source"]["name"] == "FleetWide")
                })
                .then_some(())
        },
    );
    edgesense_tests::post_alerts(&am, &alert(-1));
    wait_until("the resolve reaches both", Duration::from_secs(120), || {
        [pi_a, pi_b]
            .iter()
            .all(|n| led(&f, n, "red").is_some_and(|l| l["mode"] == "off"))
            .then_some(())
    });

    // --- Faults. pi-a cut off the network: seen down, and its AgentDown reaches pi-b's LEDs,
    // while pi-a's own edge rule still works; the link back heals everything by itself, and
    // the readings pi-a took while cut off reach Prometheus (backfill).
    let pushed_b = pushed(&f, pi_b);
    let cut_ms = wall_ms();
    pi_a.link(false);
    let t = Instant::now();
    wait_until(
        "EdgesenseAgentDown for pi-a lighting pi-b's amber",
        Duration::from_secs(180),
        || {
            let amber = led(&f, pi_b, "amber")?;
            (amber["source"]["name"] == "EdgesenseAgentDown").then_some(())
        },
    );
    eprintln!(
        "pi-a cut off → pi-b's amber for EdgesenseAgentDown: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    put_sim(&f, pi_a, "room", 40.0);
    wait_until(
        "pi-a's edge rule blinking red while it is cut off",
        Duration::from_secs(40),
        || {
            let red = led(&f, pi_a, "red")?;
            (red["mode"] == "blink" && red["source"]["name"] == "room-hot").then_some(())
        },
    );
    put_sim(&f, pi_a, "room", 21.0);
    // The partition itself lasts two minutes (a Pi off a farm's Wi-Fi), whatever the checks
    // above took: this is the fault being made, not a wait for readiness.
    std::thread::sleep(
        Duration::from_millis(120_000).saturating_sub(Duration::from_millis(
            u64::try_from(wall_ms() - cut_ms).unwrap_or(0),
        )),
    );
    let back_ms = wall_ms();
    pi_a.link(true);
    let t = Instant::now();
    wait_until(
        "pi-a scraped again and pi-b's amber back to idle",
        Duration::from_secs(240),
        || {
            (scraped_nodes(&prom) == ["pi-a", "pi-b"] && led_mode(&f, pi_b, "amber") == "off")
                .then_some(())
        },
    );
    eprintln!(
        "healed after the link came back: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (found, total, gap) = backfilled(&f, &prom, pi_a, cut_ms - 10_000, t);
    eprintln!(
        "pi-a cut off {:.0} s (no scrape for {:.0} s): {found} of its {total} room readings in Prometheus {:.1} s after the link came back",
        (back_ms - cut_ms) as f64 / 1000.0,
        gap as f64 / 1000.0,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        pushed(&f, pi_b),
        pushed_b,
        "pi-b, never cut off, pushed nothing"
    );

    // pi-a's dockerd restarted: its agent comes back (restart policy; the node's
    // start-again unit for moby/moby#32607, which the test runs as systemd would).
    pi_a.restart_dockerd();
    let again = pi_a
        .on("sh")
        .arg(edgesense_tests::workspace().join("stack/assets/node/start-again.sh"))
        .env("START_AGAIN_WAIT", "120")
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    wait_until(
        "pi-a's agent back after its dockerd restart",
        Duration::from_secs(120),
        || {
            (scraped_nodes(&prom) == ["pi-a", "pi-b"]
                && f.agent_at(pi_a.at(9842))
                    .try_request("GET", "/healthz", &[], "")
                    .is_ok_and(|r| r.status == 200))
            .then_some(())
        },
    );

    // pi-b leaves the swarm and joins again: Docker drops the agent's overlay attachment for
    // good; the node's timer runs start-again.sh --no-wait, which attaches it again.
    pi_b.docker(&["swarm", "leave"]);
    mgr.docker(&["node", "rm", "--force", "pi-b"]);
    pi_b.join(mgr);
    pi_b.wait_ready_in(mgr, Duration::from_secs(60));
    let again = pi_b
        .on("sh")
        .arg(edgesense_tests::workspace().join("stack/assets/node/start-again.sh"))
        .args(["--no-wait", "edgesense-agent"])
        .output()
        .unwrap();
    let again_out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.status.success(),
        "{again_out}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        again_out.contains("attached it to core-infra again"),
        "{again_out}"
    );
    wait_until(
        "pi-b scraped again after rejoining",
        Duration::from_secs(120),
        || (scraped_nodes(&prom) == ["pi-a", "pi-b"]).then_some(()),
    );

    // The manager's dockerd restarted: Prometheus keeps its data. The samples of the minute
    // before (`up` of every target: Prometheus's own, scraped every second throughout, and the
    // agents') are counted before and after: none may be lost.
    let before = unix_now() - 2;
    let kept = || {
        let v = prom.get_json(&format!(
            "/api/v1/query?query={}&time={before}",
            edgesense_tests::http_encode("count_over_time(up[1m])")
        ));
        let mut counts: Vec<String> = v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{} {}", r["metric"], r["value"][1].as_str().unwrap_or("?")))
            .collect();
        counts.sort();
        counts
    };
    let samples = kept();
    assert!(
        samples.iter().any(|c| c.contains(r#""job":"prometheus""#)),
        "Prometheus's own samples of the last minute: {samples:?}"
    );
    let gone_ms = wall_ms();
    mgr.restart_dockerd();
    wait_until(
        "Prometheus back on the manager",
        Duration::from_secs(180),
        || {
            let r = prom.try_request("GET", "/-/ready", &[], "").ok()?;
            (r.status == 200).then_some(())
        },
    );
    let back_ms = wall_ms();
    let after = kept();
    assert_eq!(
        after,
        samples,
        "the samples from before the restart are all still there; tasks: {}",
        mgr.docker(&["service", "ps", "--no-trunc", "edgesense_prometheus"])
    );
    // What the agents read while Prometheus was away is filled in from every agent.
    // Docker's DNS on a restarted manager knows the workers' agents again only after the
    // overlay's gossip syncs (moby/moby#34666), 30-60 s after Prometheus is ready on this
    // host; a worker that was cut off before can likewise go without the `prometheus` name.
    // Docker's part is waited for and printed; the agents' part, from the first scrape of
    // both, is what the minute below bounds.
    let ready = Instant::now();
    let rediscovered = wait_until(
        "Prometheus scraping both agents again after the manager's restart",
        Duration::from_secs(180),
        || {
            (scraped_nodes_after(&prom, back_ms as f64 / 1000.0) == ["pi-a", "pi-b"])
                .then(Instant::now)
        },
    );
    for n in [pi_a, pi_b] {
        let (found, total, gap) = backfilled(&f, &prom, n, gone_ms - 10_000, rediscovered);
        eprintln!(
            "manager restarted ({:.0} s, no scrape for {:.0} s): both agents scraped {:.1} s after Prometheus was ready; {found} of {}'s {total} room readings backfilled {:.1} s after that",
            (back_ms - gone_ms) as f64 / 1000.0,
            gap as f64 / 1000.0,
            (rediscovered - ready).as_secs_f64(),
            n.name,
            rediscovered.elapsed().as_secs_f64()
        );
    }

    // --- stack down on the manager, the agents stopped: no stack object on any node.
    for n in [pi_a, pi_b] {
        assert!(n
            .edgesense_ok(&["node", "stop"])
            .contains("stopped and removed"));
    }
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
    wait_until(
        "no stack object on any node",
        Duration::from_secs(60),
        || {
            fleet
                .nodes
                .iter()
                .all(|n| {
                    let ps = n.docker(&["ps", "-aq"]);
                    let nets = n.docker(&["network", "ls", "--format", "{{.Name}}"]);
                    ps.trim().is_empty() && !nets.lines().any(|l| l == "core-infra")
                })
                .then_some(())
        },
    );
    for what in ["service", "config", "secret"] {
        assert!(
            mgr.docker(&[what, "ls", "-q"]).trim().is_empty(),
            "{what}s left on the manager"
        );
    }
    eprintln!("fleet end-to-end: {:.1} s", started.elapsed().as_secs_f64());
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A card flashed by `edgesense flash` boots into the fleet: its first-boot script, read off
/// the card with mtools, runs for real on a new node (`pi-c`: its own hostname, dockerd,
/// /etc/edgesense), in a private mount namespace holding the boot partition's files, with
/// fakes only for what a container host lacks (systemctl, usermod, apt-get). It joins the swarm
/// with the real token, and the agent it starts runs as nobody, reads the root-only token, and
/// is scraped by Prometheus on the manager.
#[test]
fn a_flashed_card_boots_into_the_fleet() {
    use edgesense_tests::card::{build_image, sh, BOOT_OFFSET};
    let mut fleet = Fleet::lock();
    fleet.clean();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mgr = fleet.manager().clone();
    std::fs::write(
        mgr.etc_dir().join("stack.token"),
        "flash-fleet-token-5150\n",
    )
    .unwrap();
    let mut up = vec!["stack", "up", "--token-file", "/etc/edgesense/stack.token"];
    up.extend(LOCAL_STACK);
    mgr.edgesense_ok(&up);
    let f = mgr.kept_fleet();

    // The card, flashed as the README says, on the operator's machine.
    let img = build_image(d, "raspios.img", true);
    let card = d.join("card.img");
    let swarm_token = d.join("swarm.token");
    std::fs::write(
        &swarm_token,
        mgr.docker(&["swarm", "join-token", "-q", "worker"]),
    )
    .unwrap();
    let agent_token = d.join("webhook.token");
    std::fs::write(&agent_token, "flash-fleet-token-5150\n").unwrap();
    let cfg = d.join("pi-c.toml");
    std::fs::write(&cfg, "simulate = true\npoll_interval = \"1s\"\n").unwrap();
    let key = d.join("id.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFleetTestKey pi@laptop\n",
    )
    .unwrap();
    let manager = format!("{}:2377", mgr.addr);
    let o = std::process::Command::new(edgesense_tests::cli_bin())
        .args([
            "flash",
            img.to_str().unwrap(),
            "--to",
            card.to_str().unwrap(),
            "--hostname",
            "pi-c",
            "--user",
            "pi",
            "--ssh-key",
            key.to_str().unwrap(),
            "--swarm-join",
            &manager,
            "--swarm-token-file",
            swarm_token.to_str().unwrap(),
            "--agent-config",
            cfg.to_str().unwrap(),
            "--agent-token-file",
            agent_token.to_str().unwrap(),
            "--agent-credentials",
            f.bundle().to_str().unwrap(),
            "--agent-image",
            "edgesense/agent:local",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let boot = d.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    sh(&format!(
        "mcopy -s -n -i '{}@@{BOOT_OFFSET}' ::edgesense '{}/'",
        card.display(),
        boot.display()
    ));

    // The new Pi, and what it lacks as a container host.
    let pi_c = fleet.add("pi-c");
    let fakes = d.join("fakes");
    std::fs::create_dir_all(&fakes).unwrap();
    for cmd in ["systemctl", "usermod", "apt-get", "shred"] {
        let f = fakes.join(cmd);
        // shred is real (it overwrites the card's files); the others are what a container
        // host lacks.
        let then = if cmd == "shred" {
            "exec /usr/bin/shred \"$@\"\n"
        } else {
            ""
        };
        std::fs::write(
            &f,
            format!(
                "#!/bin/sh\necho \"{cmd} $*\" >>{}/calls\n{then}",
                d.display()
            ),
        )
        .unwrap();
        sh(&format!("chmod 755 '{}'", f.display()));
    }
    // First boot as the image's cloud-init runcmd runs it: bash, as root, on the node.
    let first_boot = format!(
        r#"set -e
mount -t tmpfs tmpfs /boot && mkdir -p /boot/firmware && cp -r '{boot}/edgesense' /boot/firmware/
mkdir -p /usr/local/lib/edgesense && mount -t tmpfs tmpfs /usr/local/lib/edgesense
mount -t tmpfs tmpfs /etc/systemd/system
mount -t tmpfs tmpfs /var/log
PATH='{fakes}':$PATH bash /boot/firmware/edgesense/firstboot.sh
cat /var/log/edgesense-firstboot.log
ls /boot/firmware/edgesense
ls /etc/systemd/system /usr/local/lib/edgesense
"#,
        boot = boot.display(),
        fakes = fakes.display()
    );
    let t = Instant::now();
    let run = pi_c
        .on("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", &first_boot])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!(
        "first boot ran in {:.1} s:\n{log}",
        t.elapsed().as_secs_f64()
    );
    assert!(log.contains("== edgesense first boot done"), "{log}");
    for unit in [
        "edgesense-agent-start-again@.service",
        "edgesense-agent-check@.timer",
        "start-again.sh",
    ] {
        assert!(log.contains(unit), "{unit} installed: {log}");
    }
    let calls = std::fs::read_to_string(d.join("calls")).unwrap_or_default();
    assert!(calls.contains("systemctl enable --now docker"), "{calls}");
    assert!(
        calls.contains("systemctl enable --now edgesense-agent-start-again@edgesense-agent.service edgesense-agent-check@edgesense-agent.timer"),
        "{calls}"
    );

    // In the swarm, the secrets moved to root-only files and off the boot partition.
    pi_c.wait_ready_in(&mgr, Duration::from_secs(60));
    for secret in ["token", "swarm-token", "agent.pem", "alertmanager.password"] {
        assert!(
            !log.contains(&format!("\n{secret}\n")),
            "{secret} off the boot partition: {log}"
        );
        let mode = sh(&format!(
            "stat -c '%a %u' '{}/{secret}'",
            pi_c.etc_dir().display()
        ));
        assert_eq!(mode.trim(), "600 0", "{secret} on the Pi is root's alone");
    }
    // Overwritten where they were before they were removed (shred, through a wrapper that
    // records its calls and runs the real one).
    for secret in ["token", "swarm-token", "agent.pem", "alertmanager.password"] {
        assert!(
            calls.contains(&format!(
                "shred -n 1 -z -u /boot/firmware/edgesense/{secret}"
            )),
            "{secret} shredded on the card: {calls}"
        );
    }

    // The agent: nobody, the token read (auth on), healthy without restarts, scraped.
    wait_until("pi-c's agent healthy", Duration::from_secs(60), || {
        let h = pi_c.docker(&[
            "inspect",
            "edgesense-agent",
            "--format",
            "{{.Config.User}} {{.State.Health.Status}} {{.RestartCount}}",
        ]);
        (h.trim() == "65534:65534 healthy 0").then_some(())
    });
    let logs = pi_c.docker_output(&["logs", "edgesense-agent"]);
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(
        logs.contains("node=pi-c") && logs.contains("auth=true"),
        "{logs}"
    );
    wait_until(
        "Prometheus on the manager scraping pi-c",
        Duration::from_secs(120),
        || {
            let prom = f.operator(mgr.at(9090), &mgr.addr.to_string());
            (scraped_nodes(&prom) == ["pi-c"]).then_some(())
        },
    );

    pi_c.docker(&["rm", "-f", "-v", "edgesense-agent"]);
    fleet.remove("pi-c");
    mgr.edgesense_ok(&["stack", "down", "--volumes"]);
}
