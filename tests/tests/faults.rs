//! Faults against the real agent binary: a sensor that vanishes and comes back, CRC errors in
//! bursts, a read that hangs in the kernel (a FIFO stands in for a wedged sysfs attribute),
//! Prometheus and Alertmanager killed (edge rules still light LEDs), a config replaced by a broken
//! one and SIGHUP (the old one stays), then by a good one (reloaded), and 200 event-stream
//! clients with scrapes at once (memory bounded, the poll loop not starved).

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use edgesense_tests::{
    alerting::FastStack, free_port, metric, put_file, w1_slave, wait_until, Agent, TestFleet,
};

const ROOM: &str = "sys/bus/w1/devices/28-0316a2795bff";
const SHED: &str = "sys/bus/w1/devices/28-0000075f8e2a";
const WEDGED: &str = "sys/bus/w1/devices/28-00000a1b2c3d";

fn series(name: &str, sensor: &str) -> String {
    format!("{name}{{kind=\"ds18b20\",sensor=\"{sensor}\"}}")
}

fn errors(sensor: &str, reason: &str) -> String {
    format!("edgesense_sensor_read_errors_total{{kind=\"ds18b20\",reason=\"{reason}\",sensor=\"{sensor}\"}}")
}

#[test]
fn vanishing_crc_bursts_and_a_hanging_read_leave_the_rest_working() {
    let tree = tempfile::tempdir().unwrap();
    let r = tree.path();
    put_file(r, &format!("{ROOM}/w1_slave"), &w1_slave(21_000, true));
    put_file(r, &format!("{SHED}/w1_slave"), &w1_slave(15_000, true));
    std::fs::create_dir_all(r.join(WEDGED)).unwrap();
    let fifo = r.join(WEDGED).join("temperature");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success(), "mkfifo");
    let cfg = r.join("node.toml");
    std::fs::write(
        &cfg,
        "poll_interval = \"200ms\"\nread_timeout = \"500ms\"\n\
         [[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\nid = \"28-0316a2795bff\"\n\
         [[sensor]]\nname = \"shed\"\nkind = \"ds18b20\"\nid = \"28-0000075f8e2a\"\n\
         [[sensor]]\nname = \"wedged\"\nkind = \"ds18b20\"\nid = \"28-00000a1b2c3d\"\n",
    )
    .unwrap();
    let agent = Agent::start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--sysfs-root",
        r.to_str().unwrap(),
    ]);
    let scrape = || agent.get("/metrics").body;

    // The wedged sensor times out again and again; the others and the scrapes go on.
    wait_until(
        "wedged sensor timing out, others up",
        Duration::from_secs(20),
        || {
            let m = scrape();
            let timeouts = metric(&m, &errors("wedged", "timeout"))?;
            let up = metric(&m, &series("edgesense_sensor_up", "room"))? == 1.0
                && metric(&m, &series("edgesense_sensor_up", "wedged"))? == 0.0;
            (timeouts >= 3.0 && up).then_some(())
        },
    );
    put_file(r, &format!("{ROOM}/w1_slave"), &w1_slave(22_500, true));
    wait_until(
        "room's new value while wedged hangs",
        Duration::from_secs(5),
        || {
            (metric(&scrape(), &series("edgesense_temperature_celsius", "room"))? == 22.5)
                .then_some(())
        },
    );

    // Vanish and come back.
    let saved = r.join("room-saved");
    std::fs::rename(r.join(ROOM), &saved).unwrap();
    wait_until("room not present", Duration::from_secs(5), || {
        let m = scrape();
        (metric(&m, &series("edgesense_sensor_up", "room"))? == 0.0
            && metric(&m, &errors("room", "not_present"))? >= 1.0
            && metric(&m, &series("edgesense_temperature_celsius", "room")).is_none())
        .then_some(())
    });
    std::fs::rename(&saved, r.join(ROOM)).unwrap();
    wait_until("room back", Duration::from_secs(5), || {
        let m = scrape();
        (metric(&m, &series("edgesense_sensor_up", "room"))? == 1.0
            && metric(&m, &series("edgesense_temperature_celsius", "room"))? == 22.5)
            .then_some(())
    });

    // A burst of CRC errors, then clean reads again.
    let before = metric(&scrape(), &errors("shed", "crc")).unwrap_or(0.0);
    put_file(r, &format!("{SHED}/w1_slave"), &w1_slave(15_000, false));
    wait_until(
        "a burst of CRC errors counted",
        Duration::from_secs(5),
        || {
            let m = scrape();
            (metric(&m, &errors("shed", "crc"))? >= before + 5.0
                && metric(&m, &series("edgesense_sensor_up", "shed"))? == 0.0)
                .then_some(())
        },
    );
    put_file(r, &format!("{SHED}/w1_slave"), &w1_slave(15_500, true));
    wait_until("shed recovered", Duration::from_secs(5), || {
        let m = scrape();
        (metric(&m, &series("edgesense_sensor_up", "shed"))? == 1.0
            && metric(&m, &series("edgesense_temperature_celsius", "shed"))? == 15.5)
            .then_some(())
    });
    // Still answering, still timing out the wedged one.
    assert_eq!(agent.get("/healthz").status, 200);
    let readings = agent.get("/api/v1/readings").json();
    let wedged = readings["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "wedged")
        .unwrap()
        .clone();
    assert_eq!(wedged["error"]["reason"], "timeout", "{wedged}");
}

#[test]
fn edge_rules_light_leds_with_prometheus_and_alertmanager_dead() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = d.join("token");
    std::fs::write(&token, "faults\n").unwrap();
    let cfg = d.join("n.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"pi-offline\"\ntoken_file = \"{}\"\npoll_interval = \"250ms\"\n\
             [[sensor]]\nname = \"room\"\nkind = \"ds18b20\"\n\
             [[led]]\nname = \"red\"\npin = 17\n\
             [[rule]]\nname = \"room-hot\"\nsensor = \"room\"\nabove = 30\nfor = \"1s\"\nled = \"red\"\nmode = \"blink\"\nperiod_ms = 250\nseverity = \"critical\"\n",
            token.display()
        ),
    )
    .unwrap();
    let fleet = TestFleet::new(d, "faults");
    let agent = fleet.agent(&["--simulate", "--config", cfg.to_str().unwrap()]);
    let stack = FastStack::start(d, &fleet, agent.addr);
    wait_until("Prometheus scraping", Duration::from_secs(30), || {
        let v = stack
            .prom_api
            .get_json("/api/v1/query?query=up%7Bjob%3D%22edgesense%22%7D");
        (v["data"]["result"][0]["value"][1] == "1").then_some(())
    });
    drop(stack); // Prometheus and Alertmanager killed
    let t0 = agent.now_ms();
    agent.set_sim("room", 35.0, Some("faults"));
    wait_until(
        "red blinking from the edge rule",
        Duration::from_secs(10),
        || {
            let red = agent.led("red");
            (red["mode"] == "blink" && red["source"]["name"] == "room-hot").then_some(())
        },
    );
    let blinks = agent.gpio_writes(17, t0);
    assert!(
        blinks.iter().any(|w| w.1 == 1.0),
        "the pin was driven: {blinks:?}"
    );
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_a_good_one_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("node.toml");
    let good = |node: &str| {
        format!("node = \"{node}\"\nlisten = \"127.0.0.1:{port}\"\npoll_interval = \"200ms\"\n")
    };
    std::fs::write(&cfg, good("before")).unwrap();
    let mut agent = Agent::start(&[
        "--simulate",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(agent.get("/healthz").json()["node"], "before");

    std::fs::write(&cfg, "node = \"broken\"\nlisten = \n").unwrap();
    agent.signal(libc::SIGHUP);
    wait_until("the reload error logged", Duration::from_secs(10), || {
        agent.log().contains("config reload failed").then_some(())
    });
    assert!(
        agent.log().contains("node.toml:2:"),
        "the error names the place: {}",
        agent.log()
    );
    assert_eq!(
        agent.get("/healthz").json()["node"],
        "before",
        "the old config stays in force"
    );

    std::fs::write(&cfg, good("after")).unwrap();
    agent.signal(libc::SIGHUP);
    wait_until("the new config in force", Duration::from_secs(10), || {
        let r = edgesense_tests::try_request(agent.addr, "GET", "/healthz", &[], "").ok()?;
        (r.status == 200 && r.json()["node"] == "after").then_some(())
    });
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(3)).expect("exits");
    assert!(status.success());
}

/// VmHWM of `pid` in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn two_hundred_event_streams_and_scrapes_keep_memory_bounded_and_polls_going() {
    let agent = Agent::start(&["--simulate"]);
    let pid = agent.pid();
    let t_start = Instant::now();
    // 200 clients on the event stream, each reading its first event.
    let mut streams: Vec<BufReader<TcpStream>> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(agent.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(s, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            BufReader::new(s)
        })
        .collect();
    for s in &mut streams {
        next_snapshot(s);
    }
    // Scrapes while the streams are open (and every poll sends each stream an event).
    let reads = |a: &Agent| -> f64 {
        let r = a.get("/api/v1/readings").json();
        r["sensors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["at_ms"].as_f64())
            .fold(0.0, f64::max)
    };
    let first = reads(&agent);
    for _ in 0..500 {
        let r = agent.get("/metrics");
        assert_eq!(r.status, 200);
    }
    wait_until(
        "polls continuing under load",
        Duration::from_secs(10),
        || (reads(&agent) > first).then_some(()),
    );
    let peak = peak_kib(pid);
    eprintln!(
        "200 event streams + 500 scrapes: VmHWM {peak} KiB after {:.1} s",
        t_start.elapsed().as_secs_f64()
    );
    assert!(peak < 32 * 1024, "memory bounded: {peak} KiB");
    // The streams are still alive: each gets the next snapshot.
    for s in streams.iter_mut().take(20) {
        next_snapshot(s);
    }
}

/// Reads an event stream up to its next `snapshot` event.
fn next_snapshot(s: &mut BufReader<TcpStream>) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(s.read_line(&mut line).unwrap() > 0, "event stream closed");
        if line.starts_with("event: snapshot") {
            break;
        }
    }
}
