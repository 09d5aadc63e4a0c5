//! Benchmark settings from the environment (`BENCH_REPS`, `BENCH_DURATION`, …).

/// A whole number (a count, or seconds: a trailing `s` is accepted) from the environment
/// variable `name`, or `default` if it is unset or not a whole number (then said on stderr).
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().trim_end_matches('s').parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a whole number: using {default}");
            default
        }),
        Err(_) => default,
    }
}
