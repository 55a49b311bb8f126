//! GPIO output pins: the real one through rppal, and a mock that records what was written.
//!
//! Pins are numbered by BCM GPIO number (GPIO17 is physical pin 11 on the 40-pin header), as in
//! rppal and the kernel, never by header position.
//!
//! # Troubleshooting
//! - `PermissionDenied` opening `/dev/gpiomem`: add the user to the `gpio` group, or give the
//!   container `--device /dev/gpiomem`.
//! - `UnknownModel` / no `/dev/gpiomem`: this is not a Raspberry Pi; run the agent with
//!   `--simulate` to try it without hardware.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

/// What an output pin is driving. `Pwm` is software PWM (rppal drives it from a thread), used for
/// LED brightness.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Drive {
    Low,
    High,
    /// Software PWM at `frequency_hz` with `duty` in 0.0 ..= 1.0 (fraction of each period high).
    Pwm {
        frequency_hz: f64,
        duty: f64,
    },
}

impl Drive {
    /// The fraction of time the pin is high.
    pub fn duty(self) -> f64 {
        match self {
            Drive::Low => 0.0,
            Drive::High => 1.0,
            Drive::Pwm { duty, .. } => duty,
        }
    }
}

/// A GPIO failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpioError {
    /// The GPIO peripheral could not be opened: not a Raspberry Pi, or no access to
    /// `/dev/gpiomem`. On a laptop, run with `--simulate`.
    #[error(
        "cannot open GPIO ({0}); not a Raspberry Pi? Try `--simulate` to run without hardware"
    )]
    Unavailable(String),
    /// A Pi whose kernel has no `/dev/gpiomem` (a Raspberry Pi OS driver: Debian's and other
    /// upstream kernels lack it), as a user other than root: rppal's only other way in is
    /// `/dev/mem`, which needs root (and `iomem=relaxed` where the kernel restricts it).
    #[error("cannot open GPIO on this {model}: its kernel has no /dev/gpiomem (the Raspberry Pi OS kernel's driver), and the fallback /dev/mem is for root only ({detail}). Boot Raspberry Pi OS's kernel, or run the agent as root (`edgesense node run --privileged`; with a kernel that restricts /dev/mem, add iomem=relaxed to cmdline.txt)")]
    NoGpiomem { model: String, detail: String },
    /// The pin is in use by another driver (e.g. 1-Wire on GPIO4) or claimed twice in the config.
    #[error("GPIO{pin} is busy: {detail}")]
    PinBusy { pin: u8, detail: String },
    /// The Pi has BCM GPIO 0 … 27 on its header.
    #[error("GPIO{0} does not exist (the header has GPIO0 … GPIO27)")]
    NoSuchPin(u8),
    /// Setting the pin failed.
    #[error("GPIO{pin}: {detail}")]
    Write { pin: u8, detail: String },
}

/// One output pin, owned by whoever drives it (the LED pattern task).
pub trait OutputPin: Send {
    /// The BCM number of this pin.
    fn pin(&self) -> u8;
    /// Drives the pin. `Drive::Pwm` starts (or retunes) software PWM; `Low`/`High` stop it.
    fn drive(&mut self, drive: Drive) -> Result<(), GpioError>;
}

impl fmt::Debug for dyn OutputPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputPin(GPIO{})", self.pin())
    }
}

/// Called with the new level (`true`: high) on every change of an input pin.
pub type LevelCallback = Box<dyn FnMut(bool) + Send>;

/// One input pin (a push button): its level changes are reported as they happen.
pub trait InputPin: Send {
    /// The BCM number of this pin.
    fn pin(&self) -> u8;
    /// The level now (`true`: high).
    fn is_high(&self) -> bool;
    /// Calls `f` on every level change, from the bus's own thread (rppal: an interrupt on both
    /// edges through the kernel's GPIO character device). Replaces an earlier callback.
    fn on_change(&mut self, f: LevelCallback) -> Result<(), GpioError>;
}

/// A source of output and input pins.
pub trait GpioBus: Send + Sync {
    /// Claims `pin` as an output, initially low.
    fn output(&self, pin: u8) -> Result<Box<dyn OutputPin>, GpioError>;
    /// Claims `pin` as an input, with the SoC's internal pull-up (a button wired from the pin to
    /// ground reads high until pressed) or with no pull.
    fn input(&self, pin: u8, pull_up: bool) -> Result<Box<dyn InputPin>, GpioError>;
}

/// The highest BCM GPIO number on the 40-pin header.
pub const MAX_HEADER_PIN: u8 = 27;

// ---------------------------------------------------------------------------------------------
// Real: rppal
// ---------------------------------------------------------------------------------------------

/// The Pi's GPIO through rppal (`/dev/gpiomem` on BCM283x/2711, `/dev/gpiochip*` on the Pi 5's
/// RP1). Opening fails with a clear message on any other machine.
pub struct RppalGpio {
    gpio: rppal::gpio::Gpio,
}

impl RppalGpio {
    pub fn open() -> Result<Self, GpioError> {
        rppal::gpio::Gpio::new()
            .map(|gpio| RppalGpio { gpio })
            .map_err(|e| diagnose(std::path::Path::new("/"), e.to_string()))
    }
}

/// Why rppal could not open the GPIO block, from what the machine under `root` shows: a Pi
/// without `/dev/gpiomem*` and not running as root gets [`GpioError::NoGpiomem`], anything else
/// [`GpioError::Unavailable`].
pub fn diagnose(root: &std::path::Path, detail: String) -> GpioError {
    use std::os::unix::fs::MetadataExt;
    let model = std::fs::read_to_string(root.join("proc/device-tree/model"))
        .map(|m| m.trim_end_matches('\0').trim().to_owned())
        .unwrap_or_default();
    let gpiomem = super::device_nodes(&root.join("dev"))
        .iter()
        .any(|(n, _)| n.starts_with("gpiomem"));
    // The owner of /proc/self is this process's effective user.
    let as_root = std::fs::metadata(root.join("proc/self")).is_ok_and(|m| m.uid() == 0);
    classify(model, gpiomem, as_root, detail)
}

fn classify(model: String, gpiomem: bool, as_root: bool, detail: String) -> GpioError {
    if model.starts_with("Raspberry Pi") && !gpiomem && !as_root {
        GpioError::NoGpiomem { model, detail }
    } else {
        GpioError::Unavailable(detail)
    }
}

impl GpioBus for RppalGpio {
    fn output(&self, pin: u8) -> Result<Box<dyn OutputPin>, GpioError> {
        if pin > MAX_HEADER_PIN {
            return Err(GpioError::NoSuchPin(pin));
        }
        let p = self.gpio.get(pin).map_err(|e| match e {
            rppal::gpio::Error::PinUsed(_) | rppal::gpio::Error::PinNotAvailable(_) => {
                GpioError::PinBusy {
                    pin,
                    detail: e.to_string(),
                }
            }
            other => GpioError::Unavailable(other.to_string()),
        })?;
        Ok(Box::new(RppalPin {
            pin: p.into_output_low(),
        }))
    }

    fn input(&self, pin: u8, pull_up: bool) -> Result<Box<dyn InputPin>, GpioError> {
        if pin > MAX_HEADER_PIN {
            return Err(GpioError::NoSuchPin(pin));
        }
        let p = self.gpio.get(pin).map_err(|e| GpioError::PinBusy {
            pin,
            detail: e.to_string(),
        })?;
        Ok(Box::new(RppalInput {
            pin: if pull_up {
                p.into_input_pullup()
            } else {
                p.into_input()
            },
        }))
    }
}

struct RppalInput {
    pin: rppal::gpio::InputPin,
}

impl InputPin for RppalInput {
    fn pin(&self) -> u8 {
        self.pin.pin()
    }

    fn is_high(&self) -> bool {
        self.pin.is_high()
    }

    fn on_change(&mut self, mut f: LevelCallback) -> Result<(), GpioError> {
        let pin = self.pin.pin();
        // No debounce here: the agent debounces (one rule for the real pin and the mock).
        self.pin
            .set_async_interrupt(rppal::gpio::Trigger::Both, None, move |e| {
                f(e.trigger == rppal::gpio::Trigger::RisingEdge)
            })
            .map_err(|e| GpioError::Write {
                pin,
                detail: format!("interrupt: {e}"),
            })
    }
}

struct RppalPin {
    pin: rppal::gpio::OutputPin,
}

impl OutputPin for RppalPin {
    fn pin(&self) -> u8 {
        self.pin.pin()
    }

    fn drive(&mut self, drive: Drive) -> Result<(), GpioError> {
        let pin = self.pin.pin();
        match drive {
            Drive::Low => {
                let _ = self.pin.clear_pwm();
                self.pin.set_low();
            }
            Drive::High => {
                let _ = self.pin.clear_pwm();
                self.pin.set_high();
            }
            Drive::Pwm { frequency_hz, duty } => self
                .pin
                .set_pwm_frequency(frequency_hz, duty.clamp(0.0, 1.0))
                .map_err(|e| GpioError::Write {
                    pin,
                    detail: e.to_string(),
                })?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod diagnose_tests {
    use super::*;

    #[test]
    fn a_pi_without_gpiomem_says_what_to_do_a_laptop_says_simulate() {
        let pi = || "Raspberry Pi 3 Model B".to_owned();
        let e = classify(pi(), false, false, "Permission denied".into()).to_string();
        assert!(
            e.contains("no /dev/gpiomem")
                && e.contains("--privileged")
                && e.contains("Permission denied"),
            "{e}"
        );
        // As root, or with gpiomem, it is something else; on a laptop, --simulate.
        assert!(matches!(
            classify(pi(), false, true, "x".into()),
            GpioError::Unavailable(_)
        ));
        assert!(matches!(
            classify(pi(), true, false, "x".into()),
            GpioError::Unavailable(_)
        ));
        let e = classify("QEMU Virtual Machine".into(), false, false, "x".into()).to_string();
        assert!(e.contains("--simulate"), "{e}");
        // The model and devices are read from the tree.
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("proc/device-tree")).unwrap();
        std::fs::create_dir_all(r.join("dev")).unwrap();
        std::fs::write(r.join("proc/device-tree/model"), "Raspberry Pi Zero\0").unwrap();
        std::fs::write(r.join("dev/gpiomem"), "").unwrap();
        assert!(matches!(diagnose(r, "x".into()), GpioError::Unavailable(_)));
    }
}

// ---------------------------------------------------------------------------------------------
// Fake: a mock that records every write
// ---------------------------------------------------------------------------------------------

/// One recorded pin write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PinWrite {
    pub pin: u8,
    pub drive: Drive,
    /// When the write happened (monotonic clock).
    pub at: Instant,
}

#[derive(Default)]
struct MockState {
    claimed: Vec<u8>,
    writes: Vec<PinWrite>,
    /// Pins that fail every write, to test error paths.
    failing: Vec<u8>,
    /// Input pins: their level and who watches it.
    inputs: Vec<MockInput>,
}

struct MockInput {
    pin: u8,
    high: bool,
    watcher: Option<Arc<Mutex<LevelCallback>>>,
}

/// A GPIO bus that records every write with its time, so tests can check blink timing and the
/// final state of every pin. Cloning shares the record.
#[derive(Clone, Default)]
pub struct MockGpio {
    state: Arc<Mutex<MockState>>,
}

/// How many writes the mock keeps; older ones are dropped so a long `--simulate` run stays small.
const MOCK_MAX_WRITES: usize = 100_000;

impl MockGpio {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every write so far, oldest first.
    pub fn writes(&self) -> Vec<PinWrite> {
        self.lock().writes.clone()
    }

    /// The writes to `pin`, oldest first.
    pub fn writes_to(&self, pin: u8) -> Vec<PinWrite> {
        self.lock()
            .writes
            .iter()
            .filter(|w| w.pin == pin)
            .copied()
            .collect()
    }

    /// The first write to `pin` at or after `since`, if any (scans back from the newest only
    /// as far as `since`, so it stays cheap on a long record).
    pub fn first_write_since(&self, pin: u8, since: Instant) -> Option<PinWrite> {
        self.lock()
            .writes
            .iter()
            .rev()
            .take_while(|w| w.at >= since)
            .filter(|w| w.pin == pin)
            .last()
            .copied()
    }

    /// What `pin` is driving now (`None` if it was never claimed).
    pub fn level(&self, pin: u8) -> Option<Drive> {
        let st = self.lock();
        if !st.claimed.contains(&pin) {
            return None;
        }
        Some(
            st.writes
                .iter()
                .rev()
                .find(|w| w.pin == pin)
                .map_or(Drive::Low, |w| w.drive),
        )
    }

    /// The pins claimed so far.
    pub fn claimed(&self) -> Vec<u8> {
        self.lock().claimed.clone()
    }

    /// Makes every later write to `pin` fail.
    pub fn fail_pin(&self, pin: u8) {
        self.lock().failing.push(pin);
    }

    /// Drives input `pin` to `high`, as a button or the wire would; the pin's watcher hears of
    /// it (on this thread). False if no input is claimed on `pin`.
    pub fn set_input(&self, pin: u8, high: bool) -> bool {
        let watcher = {
            let mut st = self.lock();
            let Some(i) = st.inputs.iter_mut().find(|i| i.pin == pin) else {
                return false;
            };
            let changed = i.high != high;
            i.high = high;
            changed.then(|| i.watcher.clone()).flatten()
        };
        if let Some(w) = watcher {
            (w.lock().unwrap_or_else(PoisonError::into_inner))(high);
        }
        true
    }
}

struct MockInputPin {
    pin: u8,
    state: Arc<Mutex<MockState>>,
}

impl InputPin for MockInputPin {
    fn pin(&self) -> u8 {
        self.pin
    }

    fn is_high(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.inputs.iter().any(|i| i.pin == self.pin && i.high)
    }

    fn on_change(&mut self, f: LevelCallback) -> Result<(), GpioError> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = st.inputs.iter_mut().find(|i| i.pin == self.pin) {
            i.watcher = Some(Arc::new(Mutex::new(f)));
        }
        Ok(())
    }
}

impl MockGpio {
    /// Claims header pin `pin` for one output or input, as the kernel does: once.
    fn claim(&self, pin: u8) -> Result<MutexGuard<'_, MockState>, GpioError> {
        if pin > MAX_HEADER_PIN {
            return Err(GpioError::NoSuchPin(pin));
        }
        let mut st = self.lock();
        if st.claimed.contains(&pin) {
            return Err(GpioError::PinBusy {
                pin,
                detail: "already claimed".into(),
            });
        }
        st.claimed.push(pin);
        Ok(st)
    }
}

impl GpioBus for MockGpio {
    fn output(&self, pin: u8) -> Result<Box<dyn OutputPin>, GpioError> {
        let mut st = self.claim(pin)?;
        st.writes.push(PinWrite {
            pin,
            drive: Drive::Low,
            at: Instant::now(),
        });
        Ok(Box::new(MockPin {
            pin,
            gpio: self.clone(),
        }))
    }

    fn input(&self, pin: u8, pull_up: bool) -> Result<Box<dyn InputPin>, GpioError> {
        let mut st = self.claim(pin)?;
        st.inputs.push(MockInput {
            pin,
            high: pull_up,
            watcher: None,
        });
        Ok(Box::new(MockInputPin {
            pin,
            state: Arc::clone(&self.state),
        }))
    }
}

struct MockPin {
    pin: u8,
    gpio: MockGpio,
}

impl OutputPin for MockPin {
    fn pin(&self) -> u8 {
        self.pin
    }

    fn drive(&mut self, drive: Drive) -> Result<(), GpioError> {
        let mut st = self.gpio.lock();
        if st.failing.contains(&self.pin) {
            return Err(GpioError::Write {
                pin: self.pin,
                detail: "injected failure".into(),
            });
        }
        if st.writes.len() >= MOCK_MAX_WRITES {
            st.writes.drain(..MOCK_MAX_WRITES / 2);
        }
        st.writes.push(PinWrite {
            pin: self.pin,
            drive,
            at: Instant::now(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_records_writes_and_levels() {
        let gpio = MockGpio::new();
        let mut p = gpio.output(17).unwrap();
        assert_eq!(gpio.level(17), Some(Drive::Low));
        p.drive(Drive::High).unwrap();
        p.drive(Drive::Pwm {
            frequency_hz: 100.0,
            duty: 0.25,
        })
        .unwrap();
        assert_eq!(gpio.level(17).map(Drive::duty), Some(0.25));
        assert_eq!(gpio.writes_to(17).len(), 3);
        assert_eq!(gpio.level(18), None);
        let w = gpio.writes();
        assert!(w.windows(2).all(|p| p[0].at <= p[1].at));
    }

    #[test]
    fn mock_refuses_double_claim_and_bad_pins() {
        let gpio = MockGpio::new();
        let _p = gpio.output(4).unwrap();
        assert!(matches!(
            gpio.output(4),
            Err(GpioError::PinBusy { pin: 4, .. })
        ));
        assert!(matches!(gpio.output(40), Err(GpioError::NoSuchPin(40))));
    }

    #[test]
    fn mock_can_fail_writes() {
        let gpio = MockGpio::new();
        let mut p = gpio.output(5).unwrap();
        gpio.fail_pin(5);
        assert!(p.drive(Drive::High).is_err());
        assert_eq!(gpio.level(5), Some(Drive::Low));
    }
}
