//! The alerts Alertmanager says are firing on this node, by fingerprint.
//!
//! Alertmanager delivers at least once, re-sends on `repeat_interval`, and (with several
//! instances or retries) can deliver out of order. So applying a payload is idempotent (same
//! payload twice: no change), a `resolved` leaves a tombstone with the start time of the
//! incarnation it ended (a late `firing` of that same incarnation is ignored, a new incarnation
//! with a later `startsAt` fires again), and an alert whose `endsAt` passes without a resolve
//! expires.

use std::collections::{BTreeMap, VecDeque};

use super::webhook::{Alert, Status};

/// Tombstones kept for out-of-order deliveries; the oldest go first.
const MAX_TOMBSTONES: usize = 4096;

/// What one payload changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Alerts that started firing, or whose labels or end changed.
    pub fired: usize,
    pub resolved: usize,
    /// Deliveries that came after a newer one for the same alert, or repeated what is known.
    pub unchanged: usize,
}

impl Applied {
    pub fn changed(&self) -> bool {
        self.fired + self.resolved > 0
    }
}

#[derive(Debug, Default)]
pub struct AlertSet {
    active: BTreeMap<String, Alert>,
    /// fingerprint → `startsAt` of the last resolved incarnation.
    resolved: BTreeMap<String, i64>,
    resolved_order: VecDeque<String>,
}

impl AlertSet {
    /// The firing alerts, by fingerprint.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Applies `alerts` (already filtered to this node) at wall-clock `now_ms`.
    pub fn apply(&mut self, alerts: impl IntoIterator<Item = Alert>, now_ms: i64) -> Applied {
        let mut out = Applied::default();
        for a in alerts {
            let stale = self
                .resolved
                .get(&a.fingerprint)
                .is_some_and(|&ended| a.starts_at_ms <= ended);
            let older = self
                .active
                .get(&a.fingerprint)
                .is_some_and(|cur| a.starts_at_ms < cur.starts_at_ms);
            if stale && a.status == Status::Firing || older {
                out.unchanged += 1;
                continue;
            }
            match a.status {
                Status::Firing if a.ends_at_ms.is_some_and(|end| end <= now_ms) => {
                    // Already over: the same as a resolve.
                    out.resolved += usize::from(self.resolve(&a));
                }
                Status::Firing => {
                    if self.active.get(&a.fingerprint) == Some(&a) {
                        out.unchanged += 1;
                    } else {
                        self.active.insert(a.fingerprint.clone(), a);
                        out.fired += 1;
                    }
                }
                Status::Resolved => {
                    if self.resolve(&a) {
                        out.resolved += 1;
                    } else {
                        out.unchanged += 1;
                    }
                }
            }
        }
        out
    }

    /// Removes `a`'s fingerprint and remembers which incarnation ended; true if it was active.
    fn resolve(&mut self, a: &Alert) -> bool {
        let was = self.active.remove(&a.fingerprint).is_some();
        let ended = self
            .resolved
            .entry(a.fingerprint.clone())
            .or_insert(i64::MIN);
        if *ended == i64::MIN {
            self.resolved_order.push_back(a.fingerprint.clone());
        }
        *ended = (*ended).max(a.starts_at_ms);
        while self.resolved_order.len() > MAX_TOMBSTONES {
            if let Some(old) = self.resolved_order.pop_front() {
                self.resolved.remove(&old);
            }
        }
        was
    }

    /// Drops alerts whose `endsAt` is at or before `now_ms`; returns them.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Alert> {
        let over: Vec<Alert> = self
            .active
            .values()
            .filter(|a| a.ends_at_ms.is_some_and(|end| end <= now_ms))
            .cloned()
            .collect();
        for a in &over {
            self.resolve(a);
        }
        over
    }

    /// The earliest `endsAt` of a firing alert.
    pub fn next_expiry_ms(&self) -> Option<i64> {
        self.active.values().filter_map(|a| a.ends_at_ms).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: Status, fp: &str, starts: i64, ends: Option<i64>) -> Alert {
        Alert {
            status,
            labels: [("alertname".to_owned(), format!("A{fp}"))].into(),
            annotations: BTreeMap::new(),
            starts_at_ms: starts,
            ends_at_ms: ends,
            fingerprint: fp.into(),
        }
    }
    use Status::{Firing, Resolved};

    #[test]
    fn same_payload_twice_changes_nothing() {
        let mut s = AlertSet::default();
        let p = vec![alert(Firing, "a", 10, None), alert(Firing, "b", 10, None)];
        assert_eq!(s.apply(p.clone(), 100).fired, 2);
        let again = s.apply(p, 100);
        assert!(!again.changed());
        assert_eq!(again.unchanged, 2);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn resolve_removes_and_late_firing_of_that_incarnation_is_ignored() {
        let mut s = AlertSet::default();
        s.apply([alert(Firing, "a", 10, None)], 100);
        assert_eq!(
            s.apply([alert(Resolved, "a", 10, Some(90))], 100).resolved,
            1
        );
        assert!(s.is_empty());
        // A delayed re-send of the firing notification arrives after the resolve.
        assert!(!s.apply([alert(Firing, "a", 10, None)], 110).changed());
        assert!(s.is_empty());
        // A later incarnation fires again.
        assert_eq!(s.apply([alert(Firing, "a", 200, None)], 210).fired, 1);
        // A resolve of the old incarnation does not end the new one.
        assert!(!s.apply([alert(Resolved, "a", 10, Some(90))], 220).changed());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn ends_at_in_the_past_expires() {
        let mut s = AlertSet::default();
        s.apply(
            [
                alert(Firing, "a", 10, Some(500)),
                alert(Firing, "b", 10, None),
            ],
            100,
        );
        assert_eq!(s.next_expiry_ms(), Some(500));
        assert!(s.expire(499).is_empty());
        let gone = s.expire(500);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].fingerprint, "a");
        assert_eq!(s.next_expiry_ms(), None);
        // A firing whose end already passed is not added at all.
        assert!(!s.apply([alert(Firing, "c", 10, Some(50))], 100).changed());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut s = AlertSet::default();
        for i in 0..(MAX_TOMBSTONES + 10) {
            s.apply([alert(Resolved, &format!("f{i}"), 1, Some(2))], 3);
        }
        assert_eq!(s.resolved.len(), MAX_TOMBSTONES);
        assert!(!s.resolved.contains_key("f0"));
    }
}
