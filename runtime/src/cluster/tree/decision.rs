//! The tree's answer to a program's death, in the spirit of OTP's `supervisor:restart_child`
//! and `add_restart`: count the restart in the intensity window, then restart the dead
//! program alone (`one_for_one`), with every program that depends on it (`rest_for_one`,
//! along the dependency graph), or every program (`one_for_all`); or give up. No clock of
//! its own: the caller passes `now`.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::supervision::intensity::RestartIntensity;

use super::graph::Graph;
use super::spec::Strategy;

/// What follows a program's death.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stop these (the dead one is down already), then start them again in dependency order.
    Restart(BTreeSet<String>),
    /// One restart too many within the period: the tree stops.
    GiveUp {
        /// Restarts counted in the window.
        restarts: usize,
    },
}

/// The strategy and the intensity window, with the restarts it counted.
#[derive(Debug, Clone)]
pub(crate) struct Decider {
    pub strategy: Strategy,
    pub intensity: RestartIntensity,
}

impl Decider {
    /// `dead` died as a whole at `now`; `eligible` says which programs the strategy may touch
    /// (not those stopped by the operator or being removed).
    pub(crate) fn on_death(
        &mut self,
        graph: &Graph,
        dead: &str,
        eligible: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Verdict {
        if !self.intensity.allow(now) {
            return Verdict::GiveUp { restarts: self.intensity.count() };
        }
        let mut set: BTreeSet<String> = match self.strategy {
            Strategy::OneForOne => BTreeSet::new(),
            Strategy::RestForOne => graph.with_dependents(dead),
            Strategy::OneForAll => graph.order().iter().cloned().collect(),
        };
        set.retain(|n| eligible(n));
        set.insert(dead.to_string());
        Verdict::Restart(set)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::tree::spec::{Condition, ProgramSpec};
    use crate::config::cluster::ClusterConfig;

    fn stack() -> Graph {
        let c = ClusterConfig::default;
        Graph::of(&[
            ProgramSpec::oneshot("migrate", c()),
            ProgramSpec::service("api", c()).depends_on("migrate", Condition::Completed),
            ProgramSpec::service("jobs", c()).depends_on("api", Condition::Ready),
            ProgramSpec::service("cron", c()),
        ])
        .unwrap()
    }

    fn decide(strategy: Strategy, dead: &str) -> Vec<String> {
        let mut d = Decider { strategy, intensity: RestartIntensity::new(3, Duration::from_secs(60)) };
        match d.on_death(&stack(), dead, |_| true, Instant::now()) {
            Verdict::Restart(set) => set.into_iter().collect(),
            Verdict::GiveUp { .. } => panic!("gave up"),
        }
    }

    #[test]
    fn strategies_pick_along_the_graph() {
        assert_eq!(decide(Strategy::OneForOne, "api"), ["api"]);
        assert_eq!(decide(Strategy::RestForOne, "api"), ["api", "jobs"]);
        assert_eq!(decide(Strategy::RestForOne, "migrate"), ["api", "jobs", "migrate"]);
        assert_eq!(decide(Strategy::RestForOne, "cron"), ["cron"]);
        assert_eq!(decide(Strategy::OneForAll, "api"), ["api", "cron", "jobs", "migrate"]);
    }

    #[test]
    fn operator_stopped_programs_are_left_alone() {
        let mut d =
            Decider { strategy: Strategy::OneForAll, intensity: RestartIntensity::new(3, Duration::from_secs(60)) };
        let v = d.on_death(&stack(), "api", |n| n != "cron", Instant::now());
        assert_eq!(v, Verdict::Restart(["api", "jobs", "migrate"].map(String::from).into()));
    }

    #[test]
    fn intensity_gives_up() {
        let mut d =
            Decider { strategy: Strategy::OneForOne, intensity: RestartIntensity::new(1, Duration::from_secs(60)) };
        let t = Instant::now();
        assert!(matches!(d.on_death(&stack(), "migrate", |_| true, t), Verdict::Restart(_)));
        assert_eq!(d.on_death(&stack(), "migrate", |_| true, t), Verdict::GiveUp { restarts: 1 });
        let later = t + Duration::from_secs(61);
        assert!(matches!(d.on_death(&stack(), "migrate", |_| true, later), Verdict::Restart(_)));
    }
}
