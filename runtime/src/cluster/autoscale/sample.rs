//! The autoscaler's look at the load: connections waiting on the listeners, and the ready
//! workers' CPU time since the last look against their share of the machine.

use std::collections::HashMap;
use std::time::Instant;

use super::decide::Sample;
use crate::routing::balance::Listeners;

/// The CPU ticks of each ready worker at the last look, to take differences.
pub(crate) struct Sampler {
    last: HashMap<u32, u64>,
    at: Option<Instant>,
    cores: usize,
    hz: f64,
}

impl Sampler {
    pub(crate) fn new() -> Self {
        Sampler {
            last: HashMap::new(),
            at: None,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            hz: crate::sys::procfs::ticks_per_second(),
        }
    }

    /// Looks at `listeners` and the ready, active workers `pids` now.
    pub(crate) fn sample(&mut self, listeners: &Listeners, pids: &[u32]) -> Sample {
        let now = Instant::now();
        let waiting = listeners.waiting();
        let ticks: HashMap<u32, u64> =
            pids.iter().filter_map(|&pid| crate::sys::procfs::cpu_ticks(pid).map(|t| (pid, t))).collect();
        // Only the workers seen both times count, in the sum and in the share.
        let (mut used, mut seen) = (0u64, 0usize);
        for (pid, now_ticks) in &ticks {
            if let Some(before) = self.last.get(pid) {
                used += now_ticks.saturating_sub(*before);
                seen += 1;
            }
        }
        let cpu = match self.at {
            Some(at) if seen > 0 && now > at => {
                let seconds = used as f64 / self.hz;
                Some(seconds / now.duration_since(at).as_secs_f64() / share(seen, self.cores))
            }
            _ => None,
        };
        self.last = ticks;
        self.at = Some(now);
        Sample { at: now, waiting, cpu }
    }
}

/// The CPUs `workers` may use together: one core each, or all the cores when there are more
/// workers than cores.
fn share(workers: usize, cores: usize) -> f64 {
    workers.min(cores).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_a_core_each_up_to_the_machine() {
        assert_eq!(share(1, 2), 1.0);
        assert_eq!(share(2, 2), 2.0);
        assert_eq!(share(4, 2), 2.0);
        assert_eq!(share(0, 2), 1.0);
    }

    #[test]
    fn a_busy_process_reads_as_busy_and_the_first_look_as_unknown() {
        let listeners =
            Listeners::new(corral_protocol::Scheduling::RoundRobin, crate::config::sticky_key::StickyKey::Ip);
        let mut sampler = Sampler::new();
        let me = std::process::id();
        assert_eq!(sampler.sample(&listeners, &[me]).cpu, None, "nothing to compare yet");
        // Burn 10 ticks of this process's CPU time (however long that takes on a loaded
        // machine), then look again.
        let ticks = || crate::sys::procfs::cpu_ticks(me).unwrap();
        let start = ticks();
        let mut x = 0u64;
        while ticks() < start + 10 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let s = sampler.sample(&listeners, &[me]);
        assert!(s.cpu.is_some_and(|c| c > 0.0), "{:?}", s.cpu);
        assert_eq!(s.waiting, 0);
    }
}
