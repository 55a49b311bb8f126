//! `PUT /api/v1/leds/{name}` bodies: never a panic; an accepted mode has a sane pattern.
#![no_main]
use edgesense_agent::config::ModeFields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(fields) = serde_json::from_slice::<ModeFields>(data) else { return };
    if let Ok(mode) = fields.to_mode("off") {
        let p = mode.pattern();
        if let Some(step) = p.step() {
            assert!(!step.is_zero(), "{mode:?}");
        }
        for k in 0..4 {
            let d = p.duty(k);
            assert!((0.0..=1.0).contains(&d), "{mode:?} duty {d}");
        }
    }
});
