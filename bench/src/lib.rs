//! Small helpers shared by the benchmark binaries.

use std::time::Duration;

/// The `q`-quantile (0 – 1) of sorted `v` (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `--name value` from the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--name 1,2,3` from the command line as numbers, else `default` (the same form); a list
/// that does not parse ends the bench with what it wanted.
pub fn arg_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    arg(name)
        .unwrap_or_else(|| default.to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: comma-separated numbers, e.g. {default}"))
        })
        .collect()
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn lists_fall_back_to_their_default() {
        let v: Vec<u64> = arg_list("--no-such-flag", "120, 1800");
        assert_eq!(v, [120, 1800]);
    }
}
