//! Summaries of repeated measurements: medians and nearest-rank percentiles.

use std::time::Duration;

/// The median: the middle value, or the mean of the two middle ones for an even count; NaN
/// for no samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The upper middle value (the median for an odd count); NaN for no samples. The IPC and CPU
/// pool benchmarks have always reported this one, so their figures stay comparable.
pub fn upper_median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

pub fn median_dur(v: &[Duration]) -> Duration {
    Duration::from_secs_f64(median(v.iter().map(Duration::as_secs_f64).collect()))
}

pub fn median_u64(v: &[u64]) -> u64 {
    median(v.iter().map(|&x| x as f64).collect()).round() as u64
}

/// Median and largest of some counts.
pub fn median_max(v: impl Iterator<Item = u64>) -> (u64, u64) {
    let v: Vec<u64> = v.collect();
    (median_u64(&v), v.iter().copied().max().unwrap_or(0))
}

/// Nearest-rank percentile `p` (0–100) of `sorted`, which is in ascending order; the default
/// value for no samples.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied().unwrap_or_default()
}
