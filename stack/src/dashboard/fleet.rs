//! The fleet's nodes in the order that answers "what is wrong, where": every node classified
//! (down, alerting, backfilling, a stale sensor), the problem nodes first, most urgent first, then
//! the rest in natural order (`sim2` before `sim10`), and the counts the summary bar shows.

use std::{cmp::Ordering, collections::HashSet};

use serde::Serialize;
use serde_json::Value;

/// What is wrong with a node; the declaration order is the cards' order (most urgent first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    /// Not scraped: the agent is down or unreachable.
    Down,
    /// A firing alert, not silenced, carries the node's name (`node` or `down_node`).
    Alerting,
    /// It still pushes readings Prometheus missed (`edgesense_backfill_samples_waiting > 0`).
    Backfilling,
    /// A sensor fails to read (`edgesense_sensor_up` not 1): its values are its last good ones.
    Stale,
}

/// An alert as a node's card shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeAlert {
    pub name: String,
    pub severity: String,
    pub sensor: String,
    pub silenced: bool,
    pub summary: String,
}

/// One node's card: `sensors` and `leds` are the fields Prometheus had for each (a failing
/// sensor has only its `last_*` values).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Node {
    pub instance: String,
    pub node: String,
    pub model: String,
    pub version: String,
    pub up: bool,
    pub backfilling: Option<f64>,
    pub sensors: Vec<Value>,
    pub leds: Vec<Value>,
    pub alerts: Vec<NodeAlert>,
    pub problems: Vec<Problem>,
}

impl Node {
    /// Fills `problems` from what the node shows (after its alerts are attached).
    pub fn classify(&mut self) {
        let stale = self.sensors.iter().any(|s| s["up"].as_f64() != Some(1.0));
        self.problems = [
            (!self.up, Problem::Down),
            (self.alerts.iter().any(|a| !a.silenced), Problem::Alerting),
            (self.backfilling.is_some(), Problem::Backfilling),
            (self.up && stale, Problem::Stale),
        ]
        .into_iter()
        .filter_map(|(is, p)| is.then_some(p))
        .collect();
    }

    pub fn silenced(&self) -> bool {
        self.alerts.iter().any(|a| a.silenced)
    }

    pub fn has(&self, p: Problem) -> bool {
        self.problems.contains(&p)
    }
}

/// `a` against `b` with runs of digits compared as numbers (`sim2` < `sim10`, `pi-a-07` after
/// `pi-a-6`), letters without case; a total order (ties broken by the plain string order).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    fn number(s: &[u8]) -> &[u8] {
        let zeros = s.iter().take_while(|&&c| c == b'0').count();
        &s[zeros..]
    }
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        let order = match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (n, m) = (digits(x), digits(y));
                let (p, q) = (number(&x[..n]), number(&y[..m]));
                let o = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                (x, y) = (&x[n..], &y[m..]);
                o
            }
            (Some(c), Some(d)) => {
                let o = c.to_ascii_lowercase().cmp(&d.to_ascii_lowercase());
                (x, y) = (&x[1..], &y[1..]);
                o
            }
        };
        if order != Ordering::Equal {
            return order;
        }
    }
}

/// One card per node: an agent that was replaced (a new container, a new address) leaves its
/// old instance in the last hour's node_info, but the node is the instance that is up, not a
/// second, down card; a node with no instance up keeps one (down) card. Sorted by name.
pub fn fold_replaced(nodes: &mut Vec<Node>) {
    let live: HashSet<String> = nodes
        .iter()
        .filter(|n| n.up)
        .map(|n| n.node.clone())
        .collect();
    nodes.retain(|n| n.up || !live.contains(&n.node));
    nodes.sort_by(|a, b| natural_cmp(&a.node, &b.node).then(b.up.cmp(&a.up)));
    nodes.dedup_by(|a, b| a.node == b.node && !a.up && !b.up);
}

/// Problem nodes first, the most urgent problem first (down, alerting, backfilling, stale),
/// then every other node; by name within each group.
pub fn order(nodes: &mut [Node]) {
    let rank = |n: &Node| n.problems.first().map_or((1, Problem::Down), |&p| (0, p));
    nodes.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| natural_cmp(&a.node, &b.node))
    });
}

/// The summary bar's counts: a node is in every count that applies (a down node that a firing
/// alert names is down and alerting); `healthy` nodes have no problem at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub up: usize,
    pub down: usize,
    pub alerting: usize,
    pub backfilling: usize,
    pub stale: usize,
    pub silenced: usize,
    pub healthy: usize,
    /// Firing, unsilenced alerts without a node (they concern the whole fleet).
    pub cluster_alerts: usize,
}

pub fn summary(nodes: &[Node], cluster_alerts: usize) -> Summary {
    let count = |p: Problem| nodes.iter().filter(|n| n.has(p)).count();
    Summary {
        nodes: nodes.len(),
        up: nodes.iter().filter(|n| n.up).count(),
        down: count(Problem::Down),
        alerting: count(Problem::Alerting),
        backfilling: count(Problem::Backfilling),
        stale: count(Problem::Stale),
        silenced: nodes.iter().filter(|n| n.silenced()).count(),
        healthy: nodes.iter().filter(|n| n.problems.is_empty()).count(),
        cluster_alerts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, up: bool) -> Node {
        Node {
            node: name.into(),
            instance: format!("{name}:9842"),
            up,
            sensors: vec![json!({"sensor": "room", "up": 1.0})],
            ..Node::default()
        }
    }

    fn alert(name: &str, silenced: bool) -> NodeAlert {
        NodeAlert {
            name: name.into(),
            silenced,
            ..NodeAlert::default()
        }
    }

    #[test]
    fn names_sort_naturally() {
        let mut v = vec![
            "sim10", "sim1", "sim100", "sim2", "pi-a-07", "pi-a-6", "pi-b", "Pi-a-10", "sim02",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["pi-a-6", "pi-a-07", "Pi-a-10", "pi-b", "sim1", "sim02", "sim2", "sim10", "sim100"]
        );
        assert_eq!(natural_cmp("sim2", "sim2"), Ordering::Equal);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("a9x", "a10"), Ordering::Less);
    }

    #[test]
    fn a_replaced_agent_is_one_card_and_a_down_node_stays_one() {
        let n = |name: &str, inst: &str, up: bool| Node {
            instance: inst.into(),
            ..node(name, up)
        };
        let mut v = vec![
            n("pi-b", "10.0.1.9:9842", true),
            n("pi-a", "10.0.1.5:9842", false),
            n("pi-a", "10.0.1.7:9842", true),
            n("pi-c", "10.0.1.3:9842", false),
            n("pi-c", "10.0.1.4:9842", false),
            n("pi-10", "10.0.1.2:9842", true),
            n("pi-9", "10.0.1.1:9842", true),
        ];
        fold_replaced(&mut v);
        let got: Vec<String> = v.iter().map(|x| format!("{}={}", x.node, x.up)).collect();
        assert_eq!(
            got,
            [
                "pi-9=true",
                "pi-10=true",
                "pi-a=true",
                "pi-b=true",
                "pi-c=false"
            ]
        );
        assert_eq!(v[2].instance, "10.0.1.7:9842");
    }

    #[test]
    fn problems_come_first_most_urgent_first_then_names_in_order() {
        let mut v: Vec<Node> = ["sim10", "sim2", "sim1", "sim30", "sim4", "sim3", "sim20"]
            .iter()
            .map(|n| node(n, true))
            .collect();
        v[0].sensors.push(json!({"sensor": "outside", "up": 0.0})); // sim10: stale
        v[1].backfilling = Some(120.0); // sim2: backfilling
        v[3].up = false; // sim30: down
        v[4].alerts.push(alert("EdgesenseTemperatureHigh", false)); // sim4: alerting
        v[5].alerts.push(alert("EdgesenseTemperatureHigh", true)); // sim3: silenced only
        v[6].sensors[0]["up"] = Value::Null; // sim20: a sensor that never reported
        for n in &mut v {
            n.classify();
        }
        order(&mut v);
        let got: Vec<&str> = v.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(
            got,
            ["sim30", "sim4", "sim2", "sim10", "sim20", "sim1", "sim3"]
        );
        assert_eq!(
            v[0].problems,
            [Problem::Down],
            "a down node is not also stale"
        );
        assert!(v[6].problems.is_empty(), "a silenced alert is no problem");
    }

    #[test]
    fn summary_counts_each_node_in_every_count_that_applies() {
        let mut v: Vec<Node> = (1..=6).map(|i| node(&format!("sim{i}"), true)).collect();
        v[0].up = false;
        v[0].alerts.push(alert("EdgesenseAgentDown", false));
        v[1].alerts.push(alert("EdgesenseTemperatureHigh", false));
        v[1].alerts.push(alert("EdgesenseSensorFailing", true));
        v[2].backfilling = Some(3.0);
        v[3].sensors[0]["up"] = json!(0.0);
        v[4].alerts.push(alert("EdgesenseTemperatureHigh", true));
        for n in &mut v {
            n.classify();
        }
        assert_eq!(
            summary(&v, 2),
            Summary {
                nodes: 6,
                up: 5,
                down: 1,
                alerting: 2,
                backfilling: 1,
                stale: 1,
                silenced: 2,
                healthy: 2,
                cluster_alerts: 2,
            }
        );
        let json = serde_json::to_value(&v[0]).unwrap();
        assert_eq!(json["problems"], json!(["down", "alerting"]));
    }
}
