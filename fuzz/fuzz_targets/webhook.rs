//! Alertmanager webhook bodies: parsing never panics, and applying a parsed payload twice
//! changes nothing the second time (Alertmanager re-delivers).
#![no_main]
use edgesense_agent::alerts::{set::AlertSet, webhook};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = webhook::parse(data) else { return };
    let mut set = AlertSet::default();
    let now = 1_795_600_800_000;
    set.apply(&p.group_key, p.status, p.alerts.clone(), now);
    let before: Vec<String> = set.active().map(|a| a.fingerprint.clone()).collect();
    let again = set.apply(&p.group_key, p.status, p.alerts.clone(), now);
    let after: Vec<String> = set.active().map(|a| a.fingerprint.clone()).collect();
    assert_eq!(before, after, "a repeated payload changed the alert set");
    assert!(!again.changed() || before.is_empty() && after.is_empty(), "{again:?}");
    let _ = set.expire(now + 1);
    let _ = set.next_expiry_ms();
});
