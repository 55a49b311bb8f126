//! The shipped ARM binaries on emulated Raspberry Pis (tests/qemu.sh: QEMU's raspi3b with
//! Debian's arm64 kernel and the aarch64 agent, raspi0 with the armel rpi kernel and the ARMv6
//! agent). The rppal calls and the kernel interfaces run for real; every LED is checked at the
//! register level with busybox devmem in the guest (GPFSELn, GPLEV0), independent of the agent.
//! The upstream kernel has no /dev/gpiomem, so the agent runs as root through /dev/mem
//! (`iomem=relaxed`), and as nobody it must say what to do.

use std::time::Duration;

use edgesense_tests::{
    payload::Alert,
    qemu::{arm_bin, Board, Pi, PI_3B, PI_ZERO},
    wait_or, wait_until, Endpoint, TestFleet,
};
use serde_json::Value;

const TOKEN: &str = "emulated-pi-token-2718";

/// LEDs on four pins (amber wired active low), an edge rule on the SoC's real thermal zone
/// lighting `warm`, and the webhook's critical alerts blinking red.
const CONFIG: &str = r#"
node = "emulated-pi"
token_file = "/etc/edgesense/token"
poll_interval = "1s"

# HTTPS with the fleet's certificate: ring's ARM code on the emulated SoC.
[tls]
cert_file = "/etc/edgesense/agent.pem"
ca_file = "/etc/edgesense/ca.crt"

[[sensor]]
name = "soc"
kind = "thermal"

[[led]]
name = "red"
pin = 17

[[led]]
name = "amber"
pin = 27
active_low = true

[[led]]
name = "green"
pin = 22
idle = "on"

[[led]]
name = "warm"
pin = 23

[[alert]]
match = { severity = "critical" }
led = "red"
mode = "blink"
period_ms = 600

[[rule]]
name = "soc-warm"
sensor = "soc"
above = 10.0
for = "1s"
led = "warm"
mode = "on"
severity = "warning"
"#;

fn put(agent: &Endpoint, led: &str, body: &str) {
    let r = agent.request("PUT", &format!("/api/v1/leds/{led}"), &[], body);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Waits for GPIO `pin` at `level` (GPLEV0 read in the guest); on a timeout the panic has the
/// agent's own view of its LEDs, the guest's load, each agent thread's state (`/proc` stat:
/// state, utime, stime, priority; its wait channel and syscall) and the agent's log.
fn wait_level(pi: &Pi, api: &Endpoint, pin: u32, level: u32, what: &str) {
    wait_or(
        what,
        Duration::from_secs(30),
        || (pi.level(pin) == level).then_some(()),
        || {
            let leds = api
                .try_request("GET", "/api/v1/leds", &[], "")
                .map(|r| r.body)
                .unwrap_or_else(|e| format!("no answer: {e}"));
            format!(
                "GPLEV0 {:#010x}\nthe agent's LEDs: {leds}\nguest: {}\nagent log:\n{}",
                pi.register(0x34),
                pi.sh(concat!(
                    "cat /proc/loadavg; p=$(pidof edgesense-agent); echo \"agent pid $p\"; ",
                    "for t in /proc/$p/task/*; do ",
                    "echo \"${t##*/}: $(cut -d' ' -f3,14,15,18 $t/stat) ",
                    "wchan=$(cat $t/wchan 2>/dev/null) syscall=$(cut -d' ' -f1 $t/syscall 2>/dev/null)\"; done; ",
                    // The clock event device's next event against now: one far in the past
                    // is a timer match the guest missed (its timers stalled).
                    "grep -E '^now at|^Clock Event Device|next_event' /proc/timer_list | head -6; ",
                    "grep -iE 'timer' /proc/interrupts"
                ))
                .0,
                pi.sh("tail -40 /tmp/agent.log").0
            )
        },
    );
}

/// The times (s) at which bit `pin` changes in `samples`.
fn edges(samples: &[(f64, u32)], pin: u32) -> Vec<f64> {
    samples
        .windows(2)
        .filter(|w| (w[0].1 >> pin) & 1 != (w[1].1 >> pin) & 1)
        .map(|w| w[1].0)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn on_an_emulated_pi(board: Board) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let fleet = TestFleet::new(dir.path(), TOKEN);
    let (ca, cert) = (
        fleet.bundle().join("ca.crt"),
        fleet.bundle().join("agent.pem"),
    );
    let agent = arm_bin(board.target, "edgesense-agent");
    let cli = arm_bin(board.target, "edgesense");
    let pi = Pi::boot(
        board,
        &[
            (&agent, "/bin/edgesense-agent"),
            (&cli, "/bin/edgesense"),
            (&cfg, "/etc/edgesense/agent.toml"),
            (&token, "/etc/edgesense/token"),
            (&ca, "/etc/edgesense/ca.crt"),
            (&cert, "/etc/edgesense/agent.pem"),
        ],
    );
    // Through QEMU's port forward: another host to the agent, so TLS and credentials.
    let api = fleet.agent_at(pi.agent);
    let m = board.machine;

    // --- No real-time clock: the board boots at 1970, before any certificate was issued (and
    // nothing sets its clock). TLS below works all the same.
    let clock: u64 = pi.sh_ok("date +%s").trim().parse().unwrap();
    assert!(
        clock < 86_400,
        "{m}: the emulated Pi's clock is at the epoch: {clock}"
    );

    // --- The board as the kernel sees it.
    let model = pi.sh_ok("tr -d '\\0' </proc/device-tree/model");
    assert!(model.starts_with(board.model), "{m}: {model}");
    let zone: f64 = pi
        .sh_ok("cat /sys/class/thermal/thermal_zone0/temp")
        .trim()
        .parse()
        .unwrap();
    let list = pi.sh_ok("edgesense-agent --list-sensors");
    assert!(
        list.contains("kind = \"thermal\"") && list.contains("zone = 0"),
        "{m}: --list-sensors finds the SoC zone:\n{list}"
    );

    // --- doctor on the Pi: the model, the overlays it lacks (no boot partition here), and the
    // missing /dev/gpiomem with what to do.
    let (doc, _) = pi.sh("edgesense doctor --json");
    let checks: Value = serde_json::from_str(doc.trim())
        .unwrap_or_else(|e| panic!("{m}: doctor --json: {e}\n{doc}"));
    let find = |name: &str| -> Value {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{m}: no check {name}: {checks}"))
    };
    let pi_check = find("raspberry pi");
    assert_eq!(pi_check["status"], "pass", "{pi_check}");
    assert!(
        pi_check["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with(board.model),
        "{pi_check}"
    );
    assert_eq!(find("config.txt")["status"], "warn");
    assert_eq!(find("1-wire")["status"], "warn", "no 1-Wire master in QEMU");
    let gpio = find("gpio");
    assert_eq!(gpio["status"], "fail", "{gpio}");
    assert!(
        gpio["fix"].as_str().unwrap_or("").contains("--privileged"),
        "{gpio}"
    );

    // --- As nobody, on a kernel without /dev/gpiomem: a clear failure, saying what to do.
    let (out, code) = pi.sh(
        "chmod 644 /etc/edgesense/token /etc/edgesense/agent.pem /etc/edgesense/ca.crt\nsu -s /bin/sh -c 'id -u; edgesense-agent --config /etc/edgesense/agent.toml --listen 127.0.0.1:9843' nobody",
    );
    assert_ne!(code, 0, "{m}: {out}");
    assert!(out.starts_with("65534"), "{m}: ran as nobody: {out}");
    assert!(
        out.contains("no /dev/gpiomem") && out.contains("--privileged"),
        "{m}: the error says what to do: {out}"
    );

    // --- The agent as root (rppal through /dev/mem).
    pi.sh_ok(
        "edgesense-agent --config /etc/edgesense/agent.toml --listen 0.0.0.0:9842 >/tmp/agent.log 2>&1 &\necho $! >/tmp/agent.pid",
    );
    wait_or(
        &format!("{m}: the agent answering"),
        Duration::from_secs(60),
        || {
            api.try_request("GET", "/healthz", &[], "")
                .ok()
                .filter(|r| r.status == 200)
        },
        || pi.sh("cat /tmp/agent.log").0,
    );
    for pin in [17, 22, 23, 27] {
        assert_eq!(pi.function(pin), 1, "{m}: GPIO{pin} is an output");
    }
    // Idle: red off (low), amber off (active low: high), green's idle on (high), and the edge
    // rule on the real SoC temperature lights `warm`.
    wait_level(&pi, &api, 23, 1, "the edge rule lighting GPIO23");
    assert_eq!(pi.level(17), 0, "{m}: red off");
    assert_eq!(pi.level(27), 1, "{m}: amber off is high (active low)");
    assert_eq!(pi.level(22), 1, "{m}: green idle on");
    let readings = api.get_json("/api/v1/readings");
    let soc = readings["sensors"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["name"] == "soc").cloned())
        .unwrap_or_else(|| panic!("{m}: {readings}"));
    let c = soc["values"]["temperature_celsius"]
        .as_f64()
        .unwrap_or_else(|| panic!("{m}: soc reading: {soc}"));
    assert!(
        (c - zone / 1000.0).abs() < 1e-6,
        "{m}: the agent reads thermal_zone0/temp: {c} vs {zone}"
    );

    // --- Every LED mode at the register.
    put(&api, "red", r#"{"mode":"on"}"#);
    wait_level(&pi, &api, 17, 1, "red on");
    put(&api, "red", r#"{"mode":"off"}"#);
    wait_level(&pi, &api, 17, 0, "red off");
    put(&api, "amber", r#"{"mode":"on"}"#);
    wait_level(&pi, &api, 27, 0, "amber on drives its active-low pin low");
    put(&api, "amber", r#"{"mode":"off"}"#);
    wait_level(&pi, &api, 27, 1, "amber off drives it high");
    put(&api, "red", r#"{"mode":"blink","period_ms":600}"#);
    // 8 s of the guest's clock: a host busy with other tests can stall the emulated CPU for
    // seconds (CI once saw no edge in 4 s); the median half period does not mind one stall.
    let s = pi.sample_levels(8);
    let e = edges(&s, 17);
    let halves: Vec<f64> = e.windows(2).map(|w| w[1] - w[0]).collect();
    let half = median(halves.clone());
    eprintln!(
        "{m}: blink 600 ms: {} samples in 8 s, {} edges, median half period {:.0} ms",
        s.len(),
        e.len(),
        half * 1e3
    );
    assert!(
        e.len() >= 6 && (0.21..=0.39).contains(&half),
        "{m}: blink at 600 ms toggles every 300 ms ± 30 %: {halves:?}"
    );
    put(
        &api,
        "red",
        r#"{"mode":"pulse","period_ms":1000,"brightness":0.6}"#,
    );
    // 8 s as for blink: CI once saw the Pi Zero's PWM thread stalled for most of 3 s.
    let s = pi.sample_levels(8);
    let high = s.iter().filter(|(_, v)| (v >> 17) & 1 == 1).count();
    let e = edges(&s, 17);
    let fraction = high as f64 / s.len().max(1) as f64;
    eprintln!(
        "{m}: pulse: {} samples, {high} high ({:.0} %), {} edges",
        s.len(),
        fraction * 1e2,
        e.len()
    );
    // rppal's software PWM runs on the pin: it toggles, and over whole periods of the sin²
    // up to 0.6 the pin is high 30 % of the time. Sampled in the guest, 23-37 % on both Pis.
    // (The 2 %, 56 % and 88 % CI saw on the Pi Zero were its timer stalling, tests/qemu.sh's
    // -icount: a PWM thread asleep with the pin high or low until something else reprogrammed
    // the timer.) The duty per brightness is checked exactly at the bus
    // (leds::tests::pulse_uses_pwm_up_to_brightness).
    assert!(
        e.len() >= 6 && (0.15..=0.45).contains(&fraction),
        "{m}: pulse at brightness 0.6 drives the pin through software PWM, high 30 % ± 15 of the time: {high} of {} high, {} edges",
        s.len(),
        e.len()
    );
    put(&api, "red", r#"{"mode":"auto"}"#);
    wait_level(&pi, &api, 17, 0, "red back to idle");

    // --- The webhook lights the right pin (critical → red blinks), and only that one.
    let body = Alert::new("PiHot")
        .label("severity", "critical")
        .label("node", "emulated-pi")
        .webhook();
    let r = api.request("POST", "/api/v1/alertmanager", &[], &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let s = pi.sample_levels(3);
    assert!(
        edges(&s, 17).len() >= 4,
        "{m}: the alert blinks GPIO17: {:?}",
        edges(&s, 17)
    );
    assert!(
        edges(&s, 27).is_empty() && edges(&s, 22).is_empty(),
        "{m}: amber and green untouched"
    );

    // --- SIGTERM: every pin at its off level, the process gone.
    pi.sh_ok("kill -TERM $(cat /tmp/agent.pid)");
    wait_until(
        &format!("{m}: the agent exiting"),
        Duration::from_secs(30),
        || {
            let (_, code) = pi.sh("kill -0 $(cat /tmp/agent.pid)");
            (code != 0).then_some(())
        },
    );
    let lev = pi.register(0x34);
    let bit = |p: u32| (lev >> p) & 1;
    assert_eq!(
        (bit(17), bit(22), bit(23), bit(27)),
        (0, 0, 0, 1),
        "{m}: after SIGTERM red, green, warm low and amber (active low) high; GPLEV0 {lev:#010x}; agent log:\n{}",
        pi.sh("cat /tmp/agent.log").0
    );
    pi.poweroff();
}

#[test]
fn pi_3b_runs_the_aarch64_agent() {
    on_an_emulated_pi(PI_3B);
}

#[test]
fn pi_zero_runs_the_armv6_agent() {
    on_an_emulated_pi(PI_ZERO);
}
