//! The alerts Alertmanager says are firing on this node, by fingerprint.
//!
//! Alertmanager delivers at least once, re-sends on `repeat_interval`, and (with several
//! instances or retries) can deliver out of order. So applying a payload is idempotent (same
//! payload twice: no change), a `resolved` leaves a tombstone with the start time of the
//! incarnation it ended (a late `firing` of that same incarnation is ignored, a new incarnation
//! with a later `startsAt` fires again), and an alert whose `endsAt` passes without a resolve
//! expires.
//!
//! Each alert remembers its notification group (`groupKey`). A payload whose group status is
//! `resolved` ends every alert of that group that started before the payload's latest `endsAt`,
//! even one the payload leaves out: Alertmanager leaves out alerts an inhibit rule mutes at
//! flush time, and its inhibitor can lag the notification pipeline, so a warning notified just
//! before its critical twin can have its own resolve muted by the critical that is resolving in
//! the same payload. Without this the warning's LED would stay lit for good (a firing alert's
//! `endsAt` in a webhook is the zero time, so it never expires).

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
    /// fingerprint → `groupKey` of the payload that last fired it.
    group_of: BTreeMap<String, String>,
    /// fingerprint → `startsAt` of the last resolved incarnation.
    resolved: BTreeMap<String, i64>,
    resolved_order: VecDeque<String>,
    /// fingerprint → when a webhook last fired it (wall-clock ms).
    fired_ms: BTreeMap<String, i64>,
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

    /// Applies the `alerts` (already filtered to this node) of one payload for notification
    /// group `group` whose group status is `status`, at wall-clock `now_ms`.
    pub fn apply(
        &mut self,
        group: &str,
        status: Status,
        alerts: impl IntoIterator<Item = Alert>,
        now_ms: i64,
    ) -> Applied {
        let mut out = Applied::default();
        let mut horizon = None::<i64>;
        let mut any_firing = false;
        for a in alerts {
            any_firing |= a.status == Status::Firing;
            if let Some(end) = a.ends_at_ms {
                horizon = Some(horizon.map_or(end, |h| h.max(end)));
            }
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
                    if self.group_of.get(&a.fingerprint).map(String::as_str) != Some(group) {
                        self.group_of
                            .insert(a.fingerprint.clone(), group.to_owned());
                    }
                    if self.active.get(&a.fingerprint) == Some(&a) {
                        out.unchanged += 1;
                    } else {
                        self.fired_ms.insert(a.fingerprint.clone(), now_ms);
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
        if status == Status::Resolved && !any_firing {
            // Nothing of this group fires any more: end what the payload left out (muted) too.
            // No tombstone: if the left-out alert still fires, its next notification brings it
            // back. Alerts that started after the payload's resolves belong to a newer round.
            let horizon = horizon.unwrap_or(now_ms);
            let over: Vec<String> = self
                .active
                .values()
                .filter(|a| {
                    a.starts_at_ms <= horizon
                        && self.group_of.get(&a.fingerprint).map(String::as_str) == Some(group)
                })
                .map(|a| a.fingerprint.clone())
                .collect();
            for fp in over {
                self.active.remove(&fp);
                self.group_of.remove(&fp);
                self.fired_ms.remove(&fp);
                out.resolved += 1;
            }
        }
        out
    }

    /// Removes `a`'s fingerprint and remembers which incarnation ended; true if it was active.
    fn resolve(&mut self, a: &Alert) -> bool {
        let was = self.active.remove(&a.fingerprint).is_some();
        self.group_of.remove(&a.fingerprint);
        self.fired_ms.remove(&a.fingerprint);
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

    /// Makes the firing alerts exactly `truth` (Alertmanager's, from a reconcile whose request
    /// went out at `asked_ms`), except alerts a webhook fired after that: the reconcile could not
    /// have seen them. What goes leaves no tombstone: if it still fires, its next notification
    /// or reconcile brings it back. With `complete` false (a young Alertmanager) nothing goes:
    /// only additions and updates. Returns whether anything changed.
    pub fn replace(&mut self, truth: Vec<Alert>, asked_ms: i64, complete: bool) -> bool {
        let keep: BTreeMap<String, Alert> = truth
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect();
        let before: Vec<String> = self.active.keys().cloned().collect();
        let mut changed = false;
        for fp in before {
            if keep.contains_key(&fp) || !complete {
                continue;
            }
            if self.fired_ms.get(&fp).is_some_and(|&at| at >= asked_ms) {
                continue;
            }
            self.active.remove(&fp);
            self.group_of.remove(&fp);
            self.fired_ms.remove(&fp);
            changed = true;
        }
        for (fp, a) in keep {
            let same = self
                .active
                .get(&fp)
                .is_some_and(|cur| cur.labels == a.labels && cur.starts_at_ms == a.starts_at_ms);
            if !same {
                self.active.insert(fp, a);
                changed = true;
            }
        }
        changed
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

    /// One payload of group "g" whose group status follows its alerts (as Alertmanager sets it).
    fn apply(s: &mut AlertSet, alerts: impl IntoIterator<Item = Alert>, now: i64) -> Applied {
        let alerts: Vec<Alert> = alerts.into_iter().collect();
        let status = if alerts.iter().any(|a| a.status == Firing) {
            Firing
        } else {
            Resolved
        };
        s.apply("g", status, alerts, now)
    }

    fn labelled(mut a: Alert, severity: &str) -> Alert {
        a.labels.insert("severity".into(), severity.into());
        a
    }

    #[test]
    fn a_young_alertmanager_adds_alerts_but_ends_none() {
        let mut s = AlertSet::default();
        apply(&mut s, [alert(Firing, "a", 1, None)], 10);
        // Alertmanager restarted: it has only "b" so far (Prometheus resends "a" within a
        // minute). "a" stays lit, "b" is added.
        assert!(s.replace(vec![alert(Firing, "b", 2, None)], 20, false));
        assert_eq!(s.len(), 2);
        // Complete again: what it lacks ends.
        assert!(s.replace(vec![alert(Firing, "b", 2, None)], 30, true));
        assert_eq!(s.len(), 1);
    }

    /// Seen with Alertmanager 0.25 (group_wait 0): the warning twin is notified before the
    /// inhibitor knows its critical; then its resolve is muted by the critical resolving in the
    /// same payload. The group's `resolved` status still ends it.
    #[test]
    fn a_resolved_group_ends_the_alerts_it_left_out() {
        let mut s = AlertSet::default();
        apply(
            &mut s,
            [labelled(alert(Firing, "w", 10, None), "warning")],
            100,
        );
        // Critical fires; the warning is muted (left out).
        apply(
            &mut s,
            [labelled(alert(Firing, "c", 10, None), "critical")],
            200,
        );
        assert_eq!(s.len(), 2);
        // An alert of another group is not touched.
        s.apply("other", Firing, [alert(Firing, "x", 10, None)], 250);
        let r = apply(
            &mut s,
            [labelled(alert(Resolved, "c", 10, Some(290)), "critical")],
            300,
        );
        assert_eq!(r.resolved, 2, "{r:?}");
        assert_eq!(
            s.active()
                .map(|a| a.fingerprint.as_str())
                .collect::<Vec<_>>(),
            ["x"]
        );
        // No tombstone for the left-out one: if it still fires, its next notification counts.
        assert_eq!(apply(&mut s, [alert(Firing, "w", 10, None)], 400).fired, 1);
        // A resolved payload of an older round does not end an alert that started after it.
        apply(&mut s, [alert(Firing, "n", 500, None)], 510);
        apply(&mut s, [alert(Resolved, "c", 10, Some(290))], 520);
        assert!(s.active().any(|a| a.fingerprint == "n"));
    }

    #[test]
    fn same_payload_twice_changes_nothing() {
        let mut s = AlertSet::default();
        let p = vec![alert(Firing, "a", 10, None), alert(Firing, "b", 10, None)];
        assert_eq!(apply(&mut s, p.clone(), 100).fired, 2);
        let again = apply(&mut s, p, 100);
        assert!(!again.changed());
        assert_eq!(again.unchanged, 2);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn resolve_removes_and_late_firing_of_that_incarnation_is_ignored() {
        let mut s = AlertSet::default();
        apply(&mut s, [alert(Firing, "a", 10, None)], 100);
        assert_eq!(
            apply(&mut s, [alert(Resolved, "a", 10, Some(90))], 100).resolved,
            1
        );
        assert!(s.is_empty());
        // A delayed re-send of the firing notification arrives after the resolve.
        assert!(!apply(&mut s, [alert(Firing, "a", 10, None)], 110).changed());
        assert!(s.is_empty());
        // A later incarnation fires again.
        assert_eq!(apply(&mut s, [alert(Firing, "a", 200, None)], 210).fired, 1);
        // A resolve of the old incarnation does not end the new one.
        assert!(!apply(&mut s, [alert(Resolved, "a", 10, Some(90))], 220).changed());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn ends_at_in_the_past_expires() {
        let mut s = AlertSet::default();
        apply(
            &mut s,
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
        assert!(!apply(&mut s, [alert(Firing, "c", 10, Some(50))], 100).changed());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut s = AlertSet::default();
        for i in 0..(MAX_TOMBSTONES + 10) {
            apply(&mut s, [alert(Resolved, &format!("f{i}"), 1, Some(2))], 3);
        }
        assert_eq!(s.resolved.len(), MAX_TOMBSTONES);
        assert!(!s.resolved.contains_key("f0"));
    }
}
