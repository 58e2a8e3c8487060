//! Figures from runs: the median of repeated runs, percentiles, and the
//! resident memory of a process.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;

use crate::measure::Outcome;

/// The run of median rate among `runs` (`None` when there is none), and
/// every run's rate, ascending.
pub(crate) fn median_run(mut runs: Vec<Outcome>) -> Option<(Outcome, Vec<f64>)> {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let rates = runs.iter().map(Outcome::rate).collect();
    let middle = runs.len() / 2;
    Some((runs.into_iter().nth(middle)?, rates))
}

/// Runs `run` `times` times (at least once) and returns the run of median
/// rate and every run's rate.
///
/// # Errors
/// The first failed run.
pub(crate) async fn repeat<F, Fut>(times: usize, mut run: F) -> anyhow::Result<(Outcome, Vec<f64>)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Outcome>>,
{
    let mut runs = Vec::new();
    for _ in 0..times.max(1) {
        runs.push(run().await?);
    }
    median_run(runs).context("no run")
}

/// The median of `values` (the upper one of an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// "median of 3: 1,200 / 1,250 / 1,300" (nothing for a single run).
pub(crate) fn spread(rates: &[f64]) -> String {
    if rates.len() < 2 {
        return String::new();
    }
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    let listed: Vec<String> = sorted.iter().map(|r| crate::table::thousands(*r)).collect();
    format!("median of {}: {}", rates.len(), listed.join(" / "))
}

/// The `p`-th percentile (nearest rank) of sorted `values`.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`: resident now;
/// `VmHWM`: the peak), of this process when `pid` is `None`.
pub(crate) fn memory_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// KiB as MiB, one decimal.
pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&values[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_median_run_is_the_middle_rate() {
        let run = |secs: u64| Outcome {
            completed: 100,
            failed: 0,
            elapsed: Duration::from_secs(secs),
            latencies: Vec::new(),
            first_error: None,
        };
        let (middle, rates) = median_run(vec![run(1), run(4), run(2)]).expect("three runs");
        assert_eq!(middle.elapsed, Duration::from_secs(2));
        assert_eq!(rates, vec![25.0, 50.0, 100.0]);
        assert_eq!(spread(&rates), "median of 3: 25 / 50 / 100");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median_run(Vec::new()).is_none());
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(memory_kib(None, "VmRSS").is_some_and(|kib| kib > 0));
        assert!(memory_kib(None, "VmHWM").is_some_and(|kib| kib > 0));
    }
}
