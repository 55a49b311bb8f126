//! Push buttons on GPIO inputs: each level change (rppal's interrupt, or the mock's) goes to one
//! task per button, which debounces it and turns a press into a message for the hub. A
//! mechanical button bounces for a few milliseconds when it closes and opens; a change within
//! [`DEBOUNCE`] of the last accepted one is that bounce, not a press.

use std::time::Duration;

use edgesense_sensors::bus::gpio::InputPin;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use crate::{hub::Msg, spec::ButtonSpec};

/// Changes closer together than this are contact bounce.
pub const DEBOUNCE: Duration = Duration::from_millis(30);
/// A press held this long or longer is a long press.
pub const LONG_PRESS: Duration = Duration::from_secs(3);

/// What a press is, from how long it was held.
pub fn classify(held: Duration) -> bool {
    held >= LONG_PRESS
}

/// Watches `pin` for presses of button `b`, reporting each to `hub`.
pub fn watch(b: ButtonSpec, mut pin: Box<dyn InputPin>, hub: mpsc::Sender<Msg>) -> JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, bool)>();
    let set = pin.on_change(Box::new(move |high| {
        let _ = tx.send((Instant::now(), high));
    }));
    tokio::spawn(async move {
        // Keep the pin (and its interrupt) alive as long as the task.
        let _pin = pin;
        if let Err(e) = set {
            tracing::error!(button = %b.name, error = %e, "cannot watch the button");
            return;
        }
        let mut last: Option<Instant> = None;
        let mut pressed_at: Option<Instant> = None;
        while let Some((at, high)) = rx.recv().await {
            if last.is_some_and(|l| at.duration_since(l) < DEBOUNCE) {
                continue;
            }
            last = Some(at);
            let pressed = high != b.active_low;
            match (pressed, pressed_at) {
                (true, None) => pressed_at = Some(at),
                (false, Some(since)) => {
                    pressed_at = None;
                    let held = at.duration_since(since);
                    let long = classify(held);
                    tracing::info!(button = %b.name, held_ms = held.as_millis() as u64, long, "button pressed");
                    let msg = Msg::Button {
                        long,
                        silence: b.silence,
                        reply: None,
                    };
                    if hub.send(msg).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesense_sensors::bus::gpio::{GpioBus, MockGpio};

    fn button() -> ButtonSpec {
        ButtonSpec {
            name: "ack".into(),
            pin: 23,
            active_low: true,
            silence: Duration::from_secs(7200),
        }
    }

    #[tokio::test]
    async fn presses_are_debounced_and_told_short_from_long() {
        let gpio = MockGpio::new();
        let pin = gpio.input(23, true).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let _task = watch(button(), pin, tx);
        tokio::task::yield_now().await;
        // A bouncy short press: low, high, low within the debounce time, then released.
        gpio.set_input(23, false);
        gpio.set_input(23, true);
        gpio.set_input(23, false);
        tokio::time::sleep(Duration::from_millis(80)).await;
        gpio.set_input(23, true);
        let Some(Msg::Button { long, silence, .. }) = rx.recv().await else {
            panic!("no press");
        };
        assert!(!long);
        assert_eq!(silence, Duration::from_secs(7200));
        assert!(rx.try_recv().is_err(), "one press, not three");
        assert!(classify(Duration::from_millis(3000)) && !classify(Duration::from_millis(2999)));
    }
}
