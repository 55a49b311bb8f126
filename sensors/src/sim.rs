//! Simulated sensors for `--simulate` and tests: values that drift like real ones, reproducibly
//! from a seed, and a [`SimControl`] handle to hold a value or inject a fault from outside.
//!
//! Each quantity follows a mean-reverting random walk (Ornstein–Uhlenbeck) around a slow daily
//! sine, which is how a room or an outdoor probe behaves over minutes: small noise, no jumps,
//! no wandering off to implausible values.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant, SystemTime},
};

use crate::{ErrorReason, Quantity, Readings, Sensor, SensorError, SensorKind};

/// How one quantity drifts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    /// Long-run mean, in base units.
    pub mean: f64,
    /// Amplitude of the daily swing around the mean.
    pub daily_swing: f64,
    /// Noise, in base units per √second.
    pub noise: f64,
    /// Time constant of the pull back towards the mean, in seconds.
    pub tau_s: f64,
}

impl Drift {
    pub const fn new(mean: f64, daily_swing: f64, noise: f64, tau_s: f64) -> Self {
        Drift {
            mean,
            daily_swing,
            noise,
            tau_s,
        }
    }
}

/// A fault injected into a simulated sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFault {
    /// Every read fails with an error of this reason.
    Fail(ErrorReason),
    /// Every read blocks until the fault is cleared (at most [`HANG_LIMIT`]), like a wedged bus,
    /// so the agent's per-read timeout fires.
    Hang,
}

/// The longest a [`SimFault::Hang`] read blocks.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Control {
    held: [Option<f64>; 3],
    fault: Option<SimFault>,
}

/// A handle to steer a [`SimSensor`] from outside (the agent's `/api/v1/sim/sensors/{name}`,
/// tests). Cloning shares the sensor.
#[derive(Clone, Debug, Default)]
pub struct SimControl {
    inner: Arc<Mutex<Control>>,
}

impl SimControl {
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `quantity` at exactly `value` (base units) until released with `None`; then it
    /// drifts back towards its mean from there.
    pub fn hold(&self, quantity: Quantity, value: Option<f64>) {
        self.lock().held[quantity as usize] = value;
    }

    /// The value `quantity` is held at, if any.
    pub fn held(&self, quantity: Quantity) -> Option<f64> {
        self.lock().held[quantity as usize]
    }

    /// Injects (or with `None` clears) a fault.
    pub fn set_fault(&self, fault: Option<SimFault>) {
        self.lock().fault = fault;
    }

    pub fn fault(&self) -> Option<SimFault> {
        self.lock().fault
    }
}

/// SplitMix64: tiny, seedable, good enough for noise (not for anything secret).
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// FNV-1a, to give each sensor name its own stream from one seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const DAY_S: f64 = 86_400.0;

/// A simulated sensor of any [`SensorKind`].
pub struct SimSensor {
    name: String,
    kind: SensorKind,
    drift: [Option<Drift>; 3],
    value: [f64; 3],
    /// Simulated seconds since start (advanced by real time in [`Sensor::read`]).
    t_s: f64,
    rng: Rng,
    control: SimControl,
    last_read: Option<Instant>,
}

impl SimSensor {
    /// A sensor of `kind` named `name`; `drifts` gives the behaviour of each quantity the kind
    /// measures (missing ones get [`SimSensor::default_drift`]). Two sensors with the same name,
    /// seed and sequence of time steps produce the same values.
    pub fn new(name: &str, kind: SensorKind, seed: u64, drifts: &[(Quantity, Drift)]) -> Self {
        let mut drift = [None; 3];
        let mut value = [0.0; 3];
        let mut rng = Rng(seed ^ fnv1a(name));
        for &q in kind.quantities() {
            let d = drifts
                .iter()
                .find(|(dq, _)| *dq == q)
                .map_or_else(|| Self::default_drift(kind, q), |(_, d)| *d);
            drift[q as usize] = Some(d);
            // Start somewhere in the walk's stationary spread (σ·√(τ/2)), not exactly on the mean.
            let spread = d.noise * (d.tau_s / 2.0).sqrt();
            value[q as usize] = d.mean + spread * rng.normal().clamp(-2.0, 2.0);
        }
        SimSensor {
            name: name.to_owned(),
            kind,
            drift,
            value,
            t_s: 0.0,
            rng,
            control: SimControl::default(),
            last_read: None,
        }
    }

    /// Plausible indoor behaviour for `kind` and `quantity`.
    pub fn default_drift(kind: SensorKind, quantity: Quantity) -> Drift {
        match (kind, quantity) {
            (_, Quantity::Humidity) => Drift::new(0.45, 0.05, 0.002, 600.0),
            (_, Quantity::Pressure) => Drift::new(101_325.0, 150.0, 2.0, 3600.0),
            (SensorKind::Thermal | SensorKind::Hwmon, _) => Drift::new(48.0, 2.0, 0.3, 30.0),
            _ => Drift::new(21.5, 1.5, 0.01, 900.0),
        }
    }

    /// The handle to hold values or inject faults.
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Advances the model by `dt` and returns the readings, honouring held values (but not
    /// faults: those belong to [`Sensor::read`]). Deterministic for a given seed and `dt` sequence.
    pub fn step(&mut self, dt: Duration, at: SystemTime) -> Result<Readings, SensorError> {
        let dt_s = dt.as_secs_f64().min(DAY_S);
        self.t_s += dt_s;
        let mut out = Readings::new(at);
        for &q in self.kind.quantities() {
            let i = q as usize;
            let Some(d) = self.drift[i] else { continue };
            if let Some(v) = self.control.held(q) {
                self.value[i] = v;
            } else {
                let target =
                    d.mean + d.daily_swing * (2.0 * std::f64::consts::PI * self.t_s / DAY_S).sin();
                let pull = (target - self.value[i]) * (dt_s / d.tau_s).min(1.0);
                self.value[i] += pull + d.noise * dt_s.sqrt() * self.rng.normal();
            }
            let (min, max) = self.kind.range(q);
            // A held value is reported as set, so a test can push a sensor out of range; a
            // drifting one stays inside what the device can measure.
            let v = if self.control.held(q).is_some() {
                self.value[i]
            } else {
                self.value[i].clamp(min, max)
            };
            out = out.with(q, SensorError::check_range(self.kind, q, v)?);
        }
        Ok(out)
    }
}

impl Sensor for SimSensor {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SensorKind {
        self.kind
    }

    fn read(&mut self) -> Result<Readings, SensorError> {
        let started = Instant::now();
        match self.control.fault() {
            Some(SimFault::Hang) => {
                while self.control.fault() == Some(SimFault::Hang) {
                    if started.elapsed() >= HANG_LIMIT {
                        return Err(SensorError::Timeout(HANG_LIMIT));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
            Some(SimFault::Fail(reason)) => return Err(injected(reason, &self.name)),
            None => {}
        }
        let now = Instant::now();
        let dt = self
            .last_read
            .map_or(Duration::ZERO, |last| now.duration_since(last));
        self.last_read = Some(now);
        self.step(dt, SystemTime::now())
    }
}

/// The error a real device would give for `reason`.
fn injected(reason: ErrorReason, name: &str) -> SensorError {
    let detail = format!("simulated fault on {name}");
    match reason {
        ErrorReason::NotPresent => SensorError::NotPresent {
            what: format!("simulated sensor {name}"),
        },
        ErrorReason::Crc => SensorError::Crc { detail },
        ErrorReason::Parse => SensorError::Parse {
            what: "reading".into(),
            detail,
        },
        ErrorReason::OutOfRange => SensorError::OutOfRange {
            quantity: Quantity::Temperature,
            value: -127.0,
            min: -55.0,
            max: 125.0,
        },
        ErrorReason::Timeout => SensorError::Timeout(Duration::ZERO),
        ErrorReason::Io => SensorError::Io(std::io::Error::other(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, name: &str, steps: usize) -> Vec<f64> {
        let mut s = SimSensor::new(name, SensorKind::Ds18b20, seed, &[]);
        (0..steps)
            .map(|_| {
                s.step(Duration::from_secs(5), SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .get(Quantity::Temperature)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        assert_eq!(run(7, "room", 50), run(7, "room", 50));
        assert_ne!(run(7, "room", 50), run(8, "room", 50));
        assert_ne!(run(7, "room", 50), run(7, "outside", 50));
    }

    #[test]
    fn drift_moves_but_stays_plausible() {
        let v = run(1, "room", 2000); // about 2.8 h of 5 s polls
        let (min, max) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(max - min > 0.05, "values should move: {min} … {max}");
        assert!(
            min > 15.0 && max < 28.0,
            "stays near 21.5 °C: {min} … {max}"
        );
        let biggest_step = v
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f64::max);
        assert!(biggest_step < 0.5, "no jumps between polls: {biggest_step}");
    }

    #[test]
    fn held_value_is_exact_and_released_value_drifts_back() {
        let mut s = SimSensor::new("room", SensorKind::Bme280, 3, &[]);
        let c = s.control();
        c.hold(Quantity::Temperature, Some(31.5));
        for _ in 0..3 {
            let r = s
                .step(Duration::from_secs(5), SystemTime::UNIX_EPOCH)
                .unwrap();
            assert_eq!(r.get(Quantity::Temperature), Some(31.5));
            assert!(r.get(Quantity::Humidity).is_some());
            assert!(r.get(Quantity::Pressure).is_some());
        }
        c.hold(Quantity::Temperature, None);
        let mut last = 31.5;
        for _ in 0..200 {
            last = s
                .step(Duration::from_secs(60), SystemTime::UNIX_EPOCH)
                .unwrap()
                .get(Quantity::Temperature)
                .unwrap();
        }
        assert!(last < 26.0, "drifted back towards the mean: {last}");
    }

    #[test]
    fn held_out_of_range_value_is_an_error() {
        let mut s = SimSensor::new("room", SensorKind::Ds18b20, 3, &[]);
        s.control().hold(Quantity::Temperature, Some(-127.0));
        let err = s.step(Duration::ZERO, SystemTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(err.reason(), ErrorReason::OutOfRange);
    }

    #[test]
    fn injected_faults_fail_reads_until_cleared() {
        let mut s = SimSensor::new("room", SensorKind::Ds18b20, 3, &[]);
        let c = s.control();
        c.set_fault(Some(SimFault::Fail(ErrorReason::Crc)));
        assert_eq!(s.read().unwrap_err().reason(), ErrorReason::Crc);
        c.set_fault(None);
        assert!(s.read().is_ok());
    }

    #[test]
    fn hang_blocks_until_cleared() {
        let mut s = SimSensor::new("room", SensorKind::Ds18b20, 3, &[]);
        let c = s.control();
        c.set_fault(Some(SimFault::Hang));
        let t = thread::spawn(move || {
            let started = Instant::now();
            let r = s.read();
            (r.is_ok(), started.elapsed())
        });
        thread::sleep(Duration::from_millis(100));
        c.set_fault(None);
        let (ok, took) = t.join().unwrap();
        assert!(ok);
        assert!(took >= Duration::from_millis(100), "{took:?}");
    }
}
