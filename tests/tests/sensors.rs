//! The real `edgesense-agent` binary reading real drivers from a fake sysfs tree: the files a
//! Raspberry Pi's kernel shows for DS18B20s (w1_therm), the SoC thermal zone, a hwmon chip, a
//! BME280 and a DHT22 on IIO, laid out in a temp dir and given as `--sysfs-root`.

use std::{path::Path, process::Command, time::Duration};

use edgesense_tests::{agent_bin, metric, put_file, w1_slave, wait_until, Agent};

/// `w1_slave` as w1_therm writes it: the scratchpad bytes with the CRC verdict, then `t=`.
const ROOM: &str = "28-0316a2795bff";
const OUTSIDE: &str = "28-0000075f8e2a";
const BROKEN: &str = "28-00000a1b2c3d";

/// A Pi with three DS18B20s (one with a CRC failure), the SoC zone, an SSD's hwmon chip, a
/// BME280 and a DHT22 on their kernel drivers.
fn pi_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let w1 = "sys/bus/w1/devices";
    put_file(r, &format!("{w1}/{ROOM}/w1_slave"), &w1_slave(21_125, true));
    // A newer kernel: the `temperature` attribute, preferred over w1_slave.
    put_file(
        r,
        &format!("{w1}/{OUTSIDE}/w1_slave"),
        &w1_slave(1_000, true),
    );
    put_file(r, &format!("{w1}/{OUTSIDE}/temperature"), "-3250\n");
    put_file(
        r,
        &format!("{w1}/{BROKEN}/w1_slave"),
        &w1_slave(20_000, false),
    );
    for id in [ROOM, OUTSIDE, BROKEN] {
        put_file(r, &format!("{w1}/w1_bus_master1/{id}/id"), "");
    }
    put_file(r, &format!("{w1}/w1_bus_master1/therm_bulk_read"), "0\n");
    put_file(r, "sys/class/thermal/thermal_zone0/temp", "48312\n");
    put_file(r, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
    put_file(r, "sys/class/hwmon/hwmon0/name", "cpu_thermal\n");
    put_file(r, "sys/class/hwmon/hwmon0/temp1_input", "48312\n");
    put_file(r, "sys/class/hwmon/hwmon1/name", "drivetemp\n");
    put_file(r, "sys/class/hwmon/hwmon1/temp1_input", "35000\n");
    let iio = "sys/bus/iio/devices";
    put_file(r, &format!("{iio}/iio:device0/name"), "bme280\n");
    put_file(r, &format!("{iio}/iio:device0/in_temp_input"), "22870\n");
    put_file(
        r,
        &format!("{iio}/iio:device0/in_humidityrelative_input"),
        "45123\n",
    );
    put_file(
        r,
        &format!("{iio}/iio:device0/in_pressure_input"),
        "101.325000000\n",
    );
    put_file(r, &format!("{iio}/iio:device1/name"), "dht11\n");
    put_file(r, &format!("{iio}/iio:device1/in_temp_input"), "18400\n");
    put_file(
        r,
        &format!("{iio}/iio:device1/in_humidityrelative_input"),
        "61300\n",
    );
    dir
}

const CONFIG: &str = r#"
poll_interval = "200ms"
[[sensor]]
name = "room"
kind = "ds18b20"
id = "28-0316a2795bff"
[[sensor]]
name = "outside"
kind = "ds18b20"
id = "28-0000075f8e2a"
[[sensor]]
name = "shed"
kind = "ds18b20"
id = "28-00000a1b2c3d"
[[sensor]]
name = "soc"
kind = "thermal"
[[sensor]]
name = "ssd"
kind = "hwmon"
chip = "drivetemp"
[[sensor]]
name = "env"
kind = "bme280"
[[sensor]]
name = "porch"
kind = "dht22"
"#;

fn series(name: &str, kind: &str, sensor: &str) -> String {
    format!("{name}{{kind=\"{kind}\",sensor=\"{sensor}\"}}")
}

fn temp(kind: &str, sensor: &str) -> String {
    series("edgesense_temperature_celsius", kind, sensor)
}

#[test]
fn real_drivers_read_a_fake_tree_and_follow_its_changes() {
    let tree = pi_tree();
    let cfg = tree.path().join("node.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let root = tree.path().to_str().unwrap();
    let agent = Agent::start(&["--config", cfg.to_str().unwrap(), "--sysfs-root", root]);

    let expected = [
        (temp("ds18b20", "room"), 21.125),
        (temp("ds18b20", "outside"), -3.25),
        (temp("thermal", "soc"), 48.312),
        (temp("hwmon", "ssd"), 35.0),
        (temp("bme280", "env"), 22.87),
        (series("edgesense_humidity_ratio", "bme280", "env"), 0.45123),
        (
            series("edgesense_pressure_pascals", "bme280", "env"),
            101_325.0,
        ),
        (temp("dht22", "porch"), 18.4),
        (series("edgesense_humidity_ratio", "dht22", "porch"), 0.613),
    ];
    let text = wait_until("every sensor read", Duration::from_secs(20), || {
        let body = agent.get("/metrics").body;
        expected
            .iter()
            .all(|(s, _)| metric(&body, s).is_some())
            .then_some(body)
    });
    for (s, v) in &expected {
        let got = metric(&text, s).unwrap();
        assert!((got - v).abs() < 1e-9, "{s}: {got} != {v}");
    }
    // The CRC failure is an error, not a value: no temperature, up 0, the crc counter grows.
    assert_eq!(metric(&text, &temp("ds18b20", "shed")), None);
    assert_eq!(
        metric(&text, &series("edgesense_sensor_up", "ds18b20", "shed")),
        Some(0.0)
    );
    wait_until("crc errors counted", Duration::from_secs(10), || {
        let body = agent.get("/metrics").body;
        let crc =
            "edgesense_sensor_read_errors_total{kind=\"ds18b20\",reason=\"crc\",sensor=\"shed\"}";
        (metric(&body, crc)? >= 2.0).then_some(())
    });
    // The bulk reader triggered the master's conversion.
    let bulk = std::fs::read_to_string(
        tree.path()
            .join("sys/bus/w1/devices/w1_bus_master1/therm_bulk_read"),
    )
    .unwrap();
    assert_eq!(bulk.trim(), "trigger", "bulk conversion requested");

    // The tree changes: a new value is read, an unplugged sensor goes not_present.
    put_file(
        tree.path(),
        &format!("sys/bus/w1/devices/{ROOM}/w1_slave"),
        &w1_slave(30_500, true),
    );
    std::fs::remove_dir_all(tree.path().join("sys/bus/iio/devices/iio:device1")).unwrap();
    wait_until(
        "new value and unplugged sensor",
        Duration::from_secs(10),
        || {
            let body = agent.get("/metrics").body;
            let room = metric(&body, &temp("ds18b20", "room"))?;
            let porch_up = metric(&body, &series("edgesense_sensor_up", "dht22", "porch"))?;
            let gone = metric(
            &body,
            "edgesense_sensor_read_errors_total{kind=\"dht22\",reason=\"not_present\",sensor=\"porch\"}",
        )?;
            (room == 30.5 && porch_up == 0.0 && gone >= 1.0).then_some(())
        },
    );
    let readings = agent.get("/api/v1/readings");
    assert_eq!(readings.status, 200);
    assert!(readings.body.contains("not_present"), "{}", readings.body);
}

#[test]
fn listed_sensors_paste_into_a_config_that_reads_them_all() {
    let tree = pi_tree();
    let root = tree.path().to_str().unwrap();
    let out = Command::new(agent_bin())
        .args(["--list-sensors", "--sysfs-root", root])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("# 7 sensors found"), "{listed}");
    assert!(
        listed.contains("now: 21.12 °C") || listed.contains("now: 21.13 °C"),
        "{listed}"
    );
    assert!(listed.contains("read failed: CRC"), "{listed}");
    assert!(
        !listed.contains("cpu_thermal"),
        "the SoC's hwmon twin is listed once, as thermal: {listed}"
    );

    let cfg = tree.path().join("listed.toml");
    std::fs::write(&cfg, format!("poll_interval = \"200ms\"\n{listed}")).unwrap();
    let agent = Agent::start(&["--config", cfg.to_str().unwrap(), "--sysfs-root", root]);
    let text = wait_until("listed sensors read", Duration::from_secs(20), || {
        let body = agent.get("/metrics").body;
        let ups = body
            .lines()
            .filter(|l| l.starts_with("edgesense_sensor_up{"))
            .count();
        let good = body
            .lines()
            .filter(|l| l.starts_with("edgesense_sensor_up{") && l.ends_with(" 1"))
            .count();
        (ups == 7 && good == 6).then_some(body)
    });
    assert_eq!(metric(&text, &temp("thermal", "cpu-thermal")), Some(48.312));
    assert_eq!(
        metric(&text, &temp("ds18b20", "ds18b20-0316a2795bff")),
        Some(21.125)
    );
    assert_eq!(metric(&text, &temp("dht22", "dht22-1")), Some(18.4));
}

#[test]
fn auto_reads_every_sensor_found() {
    let tree = pi_tree();
    let cfg = tree.path().join("auto.toml");
    std::fs::write(
        &cfg,
        format!(
            "sensors = \"auto\"\npoll_interval = \"200ms\"\nsysfs_root = \"{}\"\n",
            tree.path().display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    wait_until("auto sensors read", Duration::from_secs(20), || {
        let body = agent.get("/metrics").body;
        let values = body
            .lines()
            .filter(|l| l.starts_with("edgesense_temperature_celsius{"))
            .count();
        (values == 6).then_some(())
    });
}

#[test]
fn leds_on_a_machine_that_is_not_a_pi_suggest_simulate() {
    if Path::new("/dev/gpiomem").exists() {
        return; // a real Pi: the LED would open
    }
    let tree = pi_tree();
    let cfg = tree.path().join("led.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\n[[led]]\nname = \"red\"\npin = 17\n",
    )
    .unwrap();
    let out = Command::new(agent_bin())
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("LED \"red\""), "{err}");
    assert!(err.contains("--simulate"), "{err}");
}
