//! LEDs on GPIO output pins: what an LED should show ([`LedMode`]), the timing of each pattern
//! ([`Pattern`]), and the pin it is wired to ([`Led`]).
//!
//! # Wiring
//! An LED with a series resistor (330 Ω – 1 kΩ for 3.3 V logic; a GPIO pin should source no more
//! than about 16 mA) from the GPIO pin to GND is *active high*: the pin high lights it. Wired from
//! 3V3 to the pin it is *active low* (`active_low = true` in the config): the pin low lights it.
//!
//! # Brightness
//! Brightness below 1.0 uses rppal's software PWM at [`PWM_FREQUENCY_HZ`]; the Pi's two hardware
//! PWM channels are left for other uses. Perceived brightness is not linear in duty cycle.
//!
//! # Timing
//! A pattern is a list of steps at fixed offsets from its start (step `k` at `k × step`), so a
//! driver that sleeps until each absolute deadline never drifts, however late one wake-up is.

use std::time::Duration;

use crate::bus::gpio::{Drive, GpioError, OutputPin};

/// Software PWM frequency for dimmed LEDs: well above flicker fusion, low enough for rppal's
/// software PWM thread to hold its timing on a Pi Zero.
pub const PWM_FREQUENCY_HZ: f64 = 200.0;

/// The shortest blink or pulse period accepted: faster patterns look steady or strain a Pi Zero.
pub const MIN_PERIOD_MS: u32 = 40;
/// The longest period accepted (one minute).
pub const MAX_PERIOD_MS: u32 = 60_000;

/// What an LED shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LedMode {
    Off,
    /// Steady on at `brightness` (0.0 – 1.0; below 1.0 uses PWM).
    On {
        brightness: f64,
    },
    /// Full on for half of `period_ms`, off for the other half.
    Blink {
        period_ms: u32,
    },
    /// Fades up to `brightness` and back down once per `period_ms` (PWM).
    Pulse {
        period_ms: u32,
        brightness: f64,
    },
}

/// Why a mode is not acceptable.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ModeError {
    #[error("period_ms must be between {MIN_PERIOD_MS} and {MAX_PERIOD_MS}, got {0}")]
    Period(u32),
    #[error("brightness must be between 0.0 and 1.0, got {0}")]
    Brightness(f64),
}

impl LedMode {
    /// Full brightness, steady.
    pub const ON: LedMode = LedMode::On { brightness: 1.0 };

    /// The mode's name as used in the API and configs.
    pub fn name(&self) -> &'static str {
        match self {
            LedMode::Off => "off",
            LedMode::On { .. } => "on",
            LedMode::Blink { .. } => "blink",
            LedMode::Pulse { .. } => "pulse",
        }
    }

    /// Checks the period and brightness limits.
    pub fn validate(self) -> Result<LedMode, ModeError> {
        let period_ok = |p: u32| (MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&p);
        let bright_ok = |b: f64| b.is_finite() && (0.0..=1.0).contains(&b);
        match self {
            LedMode::Blink { period_ms } | LedMode::Pulse { period_ms, .. }
                if !period_ok(period_ms) =>
            {
                Err(ModeError::Period(period_ms))
            }
            LedMode::On { brightness } | LedMode::Pulse { brightness, .. }
                if !bright_ok(brightness) =>
            {
                Err(ModeError::Brightness(brightness))
            }
            m => Ok(m),
        }
    }

    /// True unless the LED is dark all the time.
    pub fn is_lit(&self) -> bool {
        match *self {
            LedMode::Off => false,
            LedMode::On { brightness } | LedMode::Pulse { brightness, .. } => brightness > 0.0,
            LedMode::Blink { .. } => true,
        }
    }

    /// The step timing of this mode.
    pub fn pattern(&self) -> Pattern {
        Pattern { mode: *self }
    }
}

/// Steps of a pulse per period, at most; fewer for short periods (see [`Pattern::step`]).
const PULSE_STEPS: u32 = 32;
/// The shortest time between two pulse steps.
const MIN_PULSE_STEP_MS: u32 = 20;

/// The timing of a [`LedMode`]: step `k` happens at `k × step()` after the pattern started and
/// drives the LED at `duty(k)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pattern {
    mode: LedMode,
}

impl Pattern {
    fn pulse_steps(period_ms: u32) -> u32 {
        (period_ms / MIN_PULSE_STEP_MS).clamp(4, PULSE_STEPS)
    }

    /// Time between steps, or `None` for a steady mode (one step, then nothing changes).
    pub fn step(&self) -> Option<Duration> {
        match self.mode {
            LedMode::Off | LedMode::On { .. } => None,
            LedMode::Blink { period_ms } => Some(Duration::from_micros(u64::from(period_ms) * 500)),
            LedMode::Pulse { period_ms, .. } => Some(Duration::from_micros(
                u64::from(period_ms) * 1000 / u64::from(Self::pulse_steps(period_ms)),
            )),
        }
    }

    /// The duty cycle (0.0 dark – 1.0 full) at step `k`.
    pub fn duty(&self, k: u64) -> f64 {
        match self.mode {
            LedMode::Off => 0.0,
            LedMode::On { brightness } => brightness,
            LedMode::Blink { .. } => {
                if k % 2 == 0 {
                    1.0
                } else {
                    0.0
                }
            }
            LedMode::Pulse {
                period_ms,
                brightness,
            } => {
                let n = u64::from(Self::pulse_steps(period_ms));
                // sin² rises from 0 to 1 at half period and back: a smooth breathing curve.
                let phase = (k % n) as f64 / n as f64;
                let s = (std::f64::consts::PI * phase).sin();
                brightness * s * s
            }
        }
    }
}

/// An LED on one output pin.
pub struct Led {
    pin: Box<dyn OutputPin>,
    active_low: bool,
    last: Option<Drive>,
}

impl Led {
    /// An LED on `pin`; `active_low` when the pin sinks current (LED from 3V3 to the pin).
    /// The LED is switched off at once.
    pub fn new(pin: Box<dyn OutputPin>, active_low: bool) -> Result<Led, GpioError> {
        let mut led = Led {
            pin,
            active_low,
            last: None,
        };
        led.off()?;
        Ok(led)
    }

    /// The BCM pin number.
    pub fn pin(&self) -> u8 {
        self.pin.pin()
    }

    /// Shows `duty` (0.0 dark – 1.0 full). Writes the pin only when the level changes.
    pub fn set_duty(&mut self, duty: f64) -> Result<(), GpioError> {
        let duty = if duty.is_finite() {
            duty.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let pin_duty = if self.active_low { 1.0 - duty } else { duty };
        let drive = if pin_duty <= 0.0 {
            Drive::Low
        } else if pin_duty >= 1.0 {
            Drive::High
        } else {
            Drive::Pwm {
                frequency_hz: PWM_FREQUENCY_HZ,
                duty: pin_duty,
            }
        };
        if self.last == Some(drive) {
            return Ok(());
        }
        self.pin.drive(drive)?;
        self.last = Some(drive);
        Ok(())
    }

    /// Dark: pin low, or high when active low. Used on shutdown.
    pub fn off(&mut self) -> Result<(), GpioError> {
        self.last = None;
        self.set_duty(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::gpio::{GpioBus, MockGpio};

    #[test]
    fn validate_limits() {
        assert!(LedMode::Blink { period_ms: 500 }.validate().is_ok());
        assert_eq!(
            LedMode::Blink { period_ms: 5 }.validate(),
            Err(ModeError::Period(5))
        );
        assert_eq!(
            LedMode::On { brightness: 1.5 }.validate(),
            Err(ModeError::Brightness(1.5))
        );
        assert!(LedMode::Pulse {
            period_ms: 1000,
            brightness: f64::NAN
        }
        .validate()
        .is_err());
    }

    #[test]
    fn blink_alternates_at_half_period() {
        let p = LedMode::Blink { period_ms: 500 }.pattern();
        assert_eq!(p.step(), Some(Duration::from_millis(250)));
        assert_eq!((p.duty(0), p.duty(1), p.duty(2)), (1.0, 0.0, 1.0));
        assert_eq!(LedMode::ON.pattern().step(), None);
    }

    #[test]
    fn pulse_rises_to_brightness_and_falls() {
        let p = LedMode::Pulse {
            period_ms: 1600,
            brightness: 0.5,
        }
        .pattern();
        assert_eq!(p.step(), Some(Duration::from_millis(50)));
        let duties: Vec<f64> = (0..32).map(|k| p.duty(k)).collect();
        assert_eq!(duties[0], 0.0);
        assert!((duties[16] - 0.5).abs() < 1e-9);
        assert!(duties[1..=16].windows(2).all(|w| w[0] < w[1]));
        assert!(duties[16..].windows(2).all(|w| w[0] > w[1]));
        assert_eq!(p.duty(32), 0.0);
    }

    #[test]
    fn active_low_inverts_and_off_is_inactive_level() {
        let gpio = MockGpio::new();
        let mut led = Led::new(gpio.output(22).unwrap(), true).unwrap();
        assert_eq!(gpio.level(22), Some(Drive::High));
        led.set_duty(1.0).unwrap();
        assert_eq!(gpio.level(22), Some(Drive::Low));
        led.set_duty(0.25).unwrap();
        assert_eq!(gpio.level(22).map(Drive::duty), Some(0.75));
        led.off().unwrap();
        assert_eq!(gpio.level(22), Some(Drive::High));
    }

    #[test]
    fn unchanged_level_is_not_rewritten() {
        let gpio = MockGpio::new();
        let mut led = Led::new(gpio.output(17).unwrap(), false).unwrap();
        let before = gpio.writes_to(17).len();
        led.set_duty(1.0).unwrap();
        led.set_duty(1.0).unwrap();
        assert_eq!(gpio.writes_to(17).len(), before + 1);
    }
}
