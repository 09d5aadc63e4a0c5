//! The dependency graph of a tree's programs: checked once (names, unknown dependencies,
//! cycles), then read for the start order (topological), the stop order (its reverse) and
//! the programs that depend on one (for `rest_for_one`).

use std::collections::{BTreeMap, BTreeSet};

use super::error::TreeConfigError;
use super::spec::{Condition, Kind, ProgramSpec, TreeConfig};

/// The programs by name, with their dependencies, in a topological order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Each program's dependencies.
    deps: BTreeMap<String, Vec<(String, Condition)>>,
    /// Every program after all it depends on (ties in declaration order).
    order: Vec<String>,
}

impl TreeConfig {
    /// Checks names, dependencies (no unknown name, no cycle) and every program's cluster.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), TreeConfigError> {
        Graph::of(&self.programs).map(|_| ())
    }
}

/// Whether `name` is `[a-z0-9_-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Graph {
    /// The graph of `programs`, checked.
    ///
    /// ```
    /// use corral_runtime::ClusterConfig;
    /// use corral_runtime::tree::{Condition, Graph, ProgramSpec, TreeConfigError};
    ///
    /// let c = ClusterConfig::default;
    /// let g = Graph::of(&[
    ///     ProgramSpec::service("jobs", c()).depends_on("api", Condition::Ready),
    ///     ProgramSpec::service("api", c()),
    /// ]).unwrap();
    /// assert_eq!(g.order(), ["api", "jobs"]);
    ///
    /// let cycle = Graph::of(&[
    ///     ProgramSpec::service("a", c()).depends_on("b", Condition::Started),
    ///     ProgramSpec::service("b", c()).depends_on("a", Condition::Started),
    /// ]);
    /// assert_eq!(cycle.unwrap_err().to_string(), "depends_on cycle: a -> b -> a");
    /// ```
    ///
    /// # Errors
    ///
    /// No program, a bad or duplicate name, an unknown dependency, `completed` of a service,
    /// a cycle, or a program whose cluster configuration is refused.
    pub fn of(programs: &[ProgramSpec]) -> Result<Graph, TreeConfigError> {
        if programs.is_empty() {
            return Err(TreeConfigError::Empty);
        }
        let mut deps = BTreeMap::new();
        let kinds: BTreeMap<&str, Kind> = programs.iter().map(|p| (p.name.as_str(), p.kind)).collect();
        for p in programs {
            if !valid_name(&p.name) {
                return Err(TreeConfigError::BadName(p.name.clone()));
            }
            if deps.insert(p.name.clone(), p.depends_on.clone()).is_some() {
                return Err(TreeConfigError::Duplicate(p.name.clone()));
            }
            p.config.validate().map_err(|source| TreeConfigError::Program { program: p.name.clone(), source })?;
        }
        for p in programs {
            for (dep, condition) in &p.depends_on {
                match kinds.get(dep.as_str()) {
                    None => return Err(TreeConfigError::Unknown { program: p.name.clone(), unknown: dep.clone() }),
                    Some(Kind::Service) if *condition == Condition::Completed => {
                        return Err(TreeConfigError::NeverCompletes { program: p.name.clone(), service: dep.clone() });
                    }
                    Some(_) => {}
                }
            }
        }
        let declared: Vec<String> = programs.iter().map(|p| p.name.clone()).collect();
        let order = topological(&declared, &deps)?;
        Ok(Graph { deps, order })
    }

    /// Every program after all it depends on.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// What `name` waits for.
    pub fn deps(&self, name: &str) -> &[(String, Condition)] {
        self.deps.get(name).map_or(&[], Vec::as_slice)
    }

    /// The programs that depend on `name` directly.
    pub fn dependents<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.deps.iter().filter(move |(_, d)| d.iter().any(|(n, _)| n == name)).map(|(p, _)| p.as_str())
    }

    /// `name` and every program that depends on it, directly or transitively.
    pub fn with_dependents(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::from([name.to_string()]);
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            for d in self.dependents(&n) {
                if out.insert(d.to_string()) {
                    todo.push(d.to_string());
                }
            }
        }
        out
    }

    /// `names` and every program that waits for one of them to complete (`completed`),
    /// directly or through another such program: what runs again when they do.
    ///
    /// ```
    /// use corral_runtime::ClusterConfig;
    /// use corral_runtime::tree::{Condition, Graph, ProgramSpec};
    ///
    /// let c = || ClusterConfig::default().workers(1);
    /// let programs = [
    ///     ProgramSpec::oneshot("migrate", c()),
    ///     ProgramSpec::oneshot("seed", c()).depends_on("migrate", Condition::Completed),
    ///     ProgramSpec::service("api", c()).depends_on("seed", Condition::Completed),
    ///     ProgramSpec::service("jobs", c()).depends_on("api", Condition::Ready),
    /// ];
    /// let graph = Graph::of(&programs).unwrap();
    /// let again: Vec<String> = graph.awaiting_completion(["migrate"]).into_iter().collect();
    /// assert_eq!(again, ["api", "migrate", "seed"]);
    /// ```
    pub fn awaiting_completion<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = names.into_iter().map(str::to_string).collect();
        let mut todo: Vec<String> = out.iter().cloned().collect();
        while let Some(n) = todo.pop() {
            for (p, deps) in &self.deps {
                if deps.iter().any(|(d, c)| *d == n && *c == Condition::Completed) && out.insert(p.clone()) {
                    todo.push(p.clone());
                }
            }
        }
        out
    }
}

/// Kahn's algorithm, picking ready programs in declaration order; what is left over lies on
/// (or behind) a cycle, which is then named.
fn topological(
    declared: &[String],
    deps: &BTreeMap<String, Vec<(String, Condition)>>,
) -> Result<Vec<String>, TreeConfigError> {
    let mut order: Vec<String> = Vec::with_capacity(declared.len());
    let mut placed = BTreeSet::new();
    while order.len() < declared.len() {
        let next = declared.iter().find(|n| !placed.contains(*n) && deps[*n].iter().all(|(d, _)| placed.contains(d)));
        match next {
            Some(n) => {
                placed.insert(n.clone());
                order.push(n.clone());
            }
            None => return Err(TreeConfigError::Cycle(cycle(declared, deps, &placed))),
        }
    }
    Ok(order)
}

/// A cycle among the programs not placed: follow unplaced dependencies from the first one
/// until a name comes again.
fn cycle(
    declared: &[String],
    deps: &BTreeMap<String, Vec<(String, Condition)>>,
    placed: &BTreeSet<String>,
) -> Vec<String> {
    let Some(mut at) = declared.iter().find(|n| !placed.contains(*n)).cloned() else { return Vec::new() };
    let mut path: Vec<String> = Vec::new();
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut ring = path[i..].to_vec();
            ring.push(at);
            return ring;
        }
        path.push(at.clone());
        // Every unplaced program has an unplaced dependency (else it would have been placed).
        match deps[&at].iter().find(|(d, _)| !placed.contains(d)) {
            Some((d, _)) => at = d.clone(),
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::ClusterConfig;

    fn p(name: &str, deps: &[&str]) -> ProgramSpec {
        deps.iter()
            .fold(ProgramSpec::service(name, ClusterConfig::default()), |p, d| p.depends_on(*d, Condition::Started))
    }

    #[test]
    fn order_respects_dependencies_and_declaration() {
        let g = Graph::of(&[p("jobs", &["api"]), p("cron", &[]), p("api", &["migrate"]), p("migrate", &[])]).unwrap();
        assert_eq!(g.order(), ["cron", "migrate", "api", "jobs"]);
        assert_eq!(g.with_dependents("migrate"), BTreeSet::from(["migrate".into(), "api".into(), "jobs".into()]));
        assert_eq!(g.with_dependents("cron"), BTreeSet::from(["cron".into()]));
    }

    #[test]
    fn refuses_cycles_unknown_names_and_bad_names() {
        let e = Graph::of(&[p("x", &[]), p("a", &["b"]), p("b", &["c"]), p("c", &["a"])]).unwrap_err();
        assert_eq!(e, TreeConfigError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
        let e = Graph::of(&[p("a", &["a"])]).unwrap_err();
        assert_eq!(e.to_string(), "depends_on cycle: a -> a");
        let e = Graph::of(&[p("gamma", &["ghost"])]).unwrap_err();
        assert!(e.to_string().contains("\"ghost\""), "{e}");
        assert_eq!(Graph::of(&[p("Api", &[])]).unwrap_err(), TreeConfigError::BadName("Api".into()));
        assert_eq!(Graph::of(&[p("a", &[]), p("a", &[])]).unwrap_err(), TreeConfigError::Duplicate("a".into()));
        let never = Graph::of(&[
            ProgramSpec::service("api", ClusterConfig::default()),
            ProgramSpec::service("jobs", ClusterConfig::default()).depends_on("api", Condition::Completed),
        ]);
        assert!(matches!(never, Err(TreeConfigError::NeverCompletes { .. })));
    }
}
