//! The autoscaler's decision, clock-free (times are passed in) and unit-tested: samples in,
//! a step out when a condition has lasted long enough.
//!
//! Each 250 ms sample says how many connections wait and how busy the ready workers were
//! since the last one. Over a sliding window of [`WINDOW`] the means give a verdict —
//! saturated, idle or neither — and the verdict's run (since when it has held) decides:
//!
//! | verdict   | first step                   | each further step       |
//! |-----------|------------------------------|-------------------------|
//! | saturated | run ≥ `up_after`: + `step`   | `cooldown` after the last change |
//! | idle      | run ≥ `down_after`: − `step` | `cooldown` after the last change |
//!
//! The thresholds apart (saturated at ≥ 1 waiting or ≥ 85 % CPU, idle at ≤ 0.25 waiting
//! and < 30 %) are the hysteresis: between them nothing moves, and a run is broken by any
//! other verdict. Any change of the count (a step, an operator's scale) starts a cooldown.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::api::reports::{Load, ScaleReason};
use crate::config::autoscale::{Autoscale, ScaleSignal};

/// How often the load is sampled.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// The sliding window the means are taken over: four samples.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Saturated: on average at least this many connections waited over the window.
const SATURATED_QUEUE: f64 = 1.0;
/// Saturated: the workers used at least this much of their share of the CPUs.
const SATURATED_CPU: f64 = 0.85;
/// Idle: on average at most this many connections waited (one in four samples saw one).
const IDLE_QUEUE: f64 = 0.25;
/// Idle: the workers used less than this much of their share.
const IDLE_CPU: f64 = 0.30;

/// One look at the load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub at: Instant,
    /// Connections waiting at that moment.
    pub waiting: u32,
    /// The ready workers' CPU use since the last sample, as a fraction of their share;
    /// `None` when there was nothing to compare (no ready worker seen twice).
    pub cpu: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Saturated,
    Idle,
    Neither,
}

/// A change of the worker count the autoscaler asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    pub to: usize,
    pub reason: ScaleReason,
}

/// The samples of the last window and the verdict's run.
#[derive(Debug, Default)]
pub(crate) struct Decider {
    window: VecDeque<Sample>,
    run: Option<(Verdict, Instant)>,
}

impl Decider {
    /// Takes `sample` in; the window's load (its `over`: how long the verdict has held).
    pub(crate) fn observe(&mut self, sample: Sample, signal: ScaleSignal) -> Load {
        self.window.push_back(sample);
        while self.window.front().is_some_and(|s| sample.at.duration_since(s.at) >= WINDOW) {
            self.window.pop_front();
        }
        let queue = self.window.iter().map(|s| f64::from(s.waiting)).sum::<f64>() / self.window.len() as f64;
        let cpus: Vec<f64> = self.window.iter().filter_map(|s| s.cpu).collect();
        let cpu = (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64);
        let verdict = verdict(signal, queue, cpu);
        let since = match self.run {
            Some((v, since)) if v == verdict => since,
            _ => sample.at,
        };
        self.run = Some((verdict, since));
        Load { queue, cpu: cpu.unwrap_or(0.0), over: sample.at.duration_since(since) }
    }

    /// The step to take at `now` for a cluster of `workers` whose count last changed at
    /// `changed`, if any.
    pub(crate) fn decide(
        &self,
        config: &Autoscale,
        now: Instant,
        workers: usize,
        changed: Option<Instant>,
        load: Load,
    ) -> Option<Step> {
        let (verdict, since) = self.run?;
        let (patience, to, reason) = match verdict {
            Verdict::Saturated if workers < config.max => {
                (config.up_after, workers.saturating_add(config.step), ScaleReason::Saturated(load))
            }
            Verdict::Idle if workers > config.min => {
                (config.down_after, workers.saturating_sub(config.step), ScaleReason::Idle(load))
            }
            _ => return None,
        };
        let ripe = match changed {
            // The count changed during this run (a step of it): one cooldown from there.
            Some(at) if at > since => now.duration_since(at) >= config.cooldown,
            // A new run: it must last, and the last change be a cooldown ago.
            Some(at) => now.duration_since(since) >= patience && now.duration_since(at) >= config.cooldown,
            None => now.duration_since(since) >= patience,
        };
        ripe.then(|| Step { to: config.clamp(to), reason })
    }
}

fn verdict(signal: ScaleSignal, queue: f64, cpu: Option<f64>) -> Verdict {
    let (queue_full, queue_empty) = (queue >= SATURATED_QUEUE, queue <= IDLE_QUEUE);
    let (cpu_busy, cpu_quiet) = (cpu.is_some_and(|c| c >= SATURATED_CPU), cpu.is_some_and(|c| c < IDLE_CPU));
    let (saturated, idle) = match signal {
        ScaleSignal::Auto => (queue_full || cpu_busy, queue_empty && cpu_quiet),
        ScaleSignal::Queue => (queue_full, queue_empty),
        ScaleSignal::Cpu => (cpu_busy, cpu_quiet),
    };
    if saturated {
        Verdict::Saturated
    } else if idle {
        Verdict::Idle
    } else {
        Verdict::Neither
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Autoscale {
        Autoscale::new(1, 4)
            .up_after(Duration::from_secs(2))
            .down_after(Duration::from_secs(5))
            .cooldown(Duration::from_secs(1))
    }

    /// Feeds up to `n` samples 250 ms apart from `*t` on, stopping at the first step: how long
    /// after `*t` it came, and the step.
    fn feed(
        d: &mut Decider,
        t: &mut Instant,
        n: usize,
        load: (u32, f64),
        workers: usize,
        changed: Option<Instant>,
    ) -> Option<(Duration, Step)> {
        let start = *t;
        for _ in 0..n {
            *t += TICK;
            let seen = d.observe(Sample { at: *t, waiting: load.0, cpu: Some(load.1) }, ScaleSignal::Auto);
            if let Some(step) = d.decide(&config(), *t, workers, changed, seen) {
                return Some((t.duration_since(start), step));
            }
        }
        None
    }

    #[test]
    fn saturation_steps_up_after_up_after_and_not_before() {
        let (mut d, mut t) = (Decider::default(), Instant::now());
        assert!(feed(&mut d, &mut t, 8, (0, 0.1), 1, None).is_none(), "idle at the minimum: nothing");
        let (after, step) = feed(&mut d, &mut t, 12, (12, 1.0), 1, None).expect("a step up");
        assert_eq!(step.to, 2);
        assert!(matches!(step.reason, ScaleReason::Saturated(l) if l.queue >= 1.0));
        // The run starts at the first saturated sample; the step comes up_after later.
        assert_eq!(after, Duration::from_millis(2250));
    }

    #[test]
    fn further_steps_wait_a_cooldown_from_the_last_change() {
        let (mut d, mut t) = (Decider::default(), Instant::now());
        feed(&mut d, &mut t, 10, (12, 1.0), 1, None).expect("a step up");
        let changed = t; // stepped to 2 now
        let (after, step) = feed(&mut d, &mut t, 8, (12, 1.0), 2, Some(changed)).expect("another");
        assert_eq!((after, step.to), (Duration::from_secs(1), 3), "one cooldown after the change");
        let now = t;
        assert!(feed(&mut d, &mut t, 8, (12, 1.0), 4, Some(now)).is_none(), "never above max");
    }

    #[test]
    fn idleness_steps_down_after_down_after_then_each_cooldown() {
        let (mut d, mut t) = (Decider::default(), Instant::now());
        let long_ago = t;
        assert!(feed(&mut d, &mut t, 8, (12, 1.0), 4, Some(long_ago)).is_none(), "at max");
        // The window forgets the busy samples within a second; then five seconds of idleness.
        let (first, step) = feed(&mut d, &mut t, 40, (0, 0.05), 4, Some(long_ago)).expect("a step down");
        assert_eq!(first, Duration::from_secs(6));
        assert_eq!(step.to, 3);
        assert!(matches!(step.reason, ScaleReason::Idle(l) if l.over >= Duration::from_secs(5)));
        let changed = t;
        let (after, step) = feed(&mut d, &mut t, 8, (0, 0.05), 3, Some(changed)).expect("another");
        assert_eq!((after, step.to), (Duration::from_secs(1), 2));
        assert!(feed(&mut d, &mut t, 40, (0, 0.0), 1, Some(changed)).is_none(), "never below min");
    }

    #[test]
    fn the_band_between_the_thresholds_moves_nothing_and_breaks_a_run() {
        let (mut d, mut t) = (Decider::default(), Instant::now());
        assert!(feed(&mut d, &mut t, 40, (0, 0.5), 2, None).is_none(), "50 % CPU: neither");
        // Idle for 4 s, one busy second (breaks the run), idle again: the run starts over.
        assert!(feed(&mut d, &mut t, 16, (0, 0.1), 2, None).is_none());
        assert!(feed(&mut d, &mut t, 4, (0, 0.6), 2, None).is_none());
        let (after, _) = feed(&mut d, &mut t, 40, (0, 0.1), 2, None).expect("a step down");
        assert!(after > Duration::from_secs(5), "{after:?}");
    }

    #[test]
    fn one_stray_queued_connection_in_a_window_keeps_a_cluster_idle() {
        let mut d = Decider::default();
        let t = Instant::now();
        for i in 1..=24u32 {
            let load = d.observe(
                Sample { at: t + TICK * i, waiting: u32::from(i % 8 == 0), cpu: Some(0.1) },
                ScaleSignal::Auto,
            );
            if i > 4 {
                assert!(load.over >= TICK * (i - 1), "the idle run held through a stray queued connection");
            }
        }
    }

    #[test]
    fn each_signal_reads_only_its_own_measure() {
        assert_eq!(verdict(ScaleSignal::Queue, 0.0, Some(0.99)), Verdict::Idle);
        assert_eq!(verdict(ScaleSignal::Cpu, 20.0, Some(0.1)), Verdict::Idle);
        assert_eq!(verdict(ScaleSignal::Auto, 20.0, Some(0.1)), Verdict::Saturated);
        assert_eq!(verdict(ScaleSignal::Auto, 0.0, Some(0.9)), Verdict::Saturated);
        assert_eq!(verdict(ScaleSignal::Auto, 0.0, None), Verdict::Neither);
    }
}
