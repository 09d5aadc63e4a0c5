//! What a supervision tree of programs is made of: its programs ([`ProgramSpec`]), each a
//! [`Kind`] with the [`Condition`]s it waits for, and the tree's [`Strategy`] and restart
//! intensity ([`TreeConfig`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::cluster::ClusterConfig;
use crate::config::cluster::reconfigure::ReconfigureError;
use crate::config::control_socket::ControlSocket;

/// What a program is to the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// Kept running (a server, a job runner, a sidecar).
    #[default]
    Service,
    /// Runs to completion: exit 0 completes it; any other end is a failure, retried by its
    /// restart policy (a migration, a cache warm-up).
    Oneshot,
}

/// What a program waits for in another before it starts (`depends_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// The other's processes have been started.
    Started,
    /// Every worker of the other is ready.
    Ready,
    /// The other (a oneshot) exited 0.
    Completed,
}

/// What happens to the siblings when a program dies as a whole (OTP's restart strategies,
/// "the children started after it" read along the dependency graph).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Only the dead program is restarted.
    #[default]
    OneForOne,
    /// The dead program and every program that depends on it, directly or transitively, are
    /// restarted, in dependency order; never an unrelated one.
    RestForOne,
    /// Every program is restarted (oneshots run again first).
    OneForAll,
}

/// A word that is not one of the choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not one of {choices}")]
pub struct NotOneOf {
    /// The word.
    pub given: String,
    /// The choices, comma separated.
    pub choices: &'static str,
}

macro_rules! words {
    ($ty:ty, $choices:literal, $($word:literal => $value:expr),+ $(,)?) => {
        impl FromStr for $ty {
            type Err = NotOneOf;
            fn from_str(s: &str) -> Result<Self, NotOneOf> {
                match s {
                    $($word => Ok($value),)+
                    _ => Err(NotOneOf { given: s.to_string(), choices: $choices }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if *self == $value { return f.write_str($word); })+
                Ok(())
            }
        }
    };
}

words!(Kind, "service, oneshot", "service" => Kind::Service, "oneshot" => Kind::Oneshot);
words!(Condition, "started, ready, completed",
    "started" => Condition::Started, "ready" => Condition::Ready, "completed" => Condition::Completed);
words!(Strategy, "one_for_one, rest_for_one, one_for_all",
    "one_for_one" => Strategy::OneForOne, "rest_for_one" => Strategy::RestForOne, "one_for_all" => Strategy::OneForAll);

/// One program of a tree: a name, a cluster (corral workers or a foreign program), its kind
/// and what it waits for.
///
/// ```
/// use corral_runtime::ClusterConfig;
/// use corral_runtime::tree::{Condition, Kind, ProgramSpec};
///
/// let api = ProgramSpec::service("api", ClusterConfig::default().workers(2)).depends_on("migrate", Condition::Completed);
/// assert_eq!(api.kind, Kind::Service);
/// assert_eq!(api.depends_on, vec![("migrate".to_string(), Condition::Completed)]);
/// ```
#[derive(Debug, Clone)]
pub struct ProgramSpec {
    /// Its name, `[a-z0-9_-]+`.
    pub name: String,
    /// Service or oneshot.
    pub kind: Kind,
    /// The programs it waits for, and for what.
    pub depends_on: Vec<(String, Condition)>,
    /// Its cluster. Its control socket is the tree's (the cluster gets none of its own).
    pub config: ClusterConfig,
}

impl ProgramSpec {
    /// A service named `name`.
    pub fn service(name: impl Into<String>, config: ClusterConfig) -> Self {
        ProgramSpec { name: name.into(), kind: Kind::Service, depends_on: Vec::new(), config }
    }

    /// A oneshot named `name`.
    pub fn oneshot(name: impl Into<String>, config: ClusterConfig) -> Self {
        ProgramSpec { name: name.into(), kind: Kind::Oneshot, depends_on: Vec::new(), config }
    }

    /// Waits for `other` to reach `condition` before it starts.
    #[must_use]
    pub fn depends_on(mut self, other: impl Into<String>, condition: Condition) -> Self {
        self.depends_on.push((other.into(), condition));
        self
    }
}

/// A supervision tree of programs: its programs, strategy and restart intensity.
///
/// ```
/// use std::time::Duration;
/// use corral_runtime::ClusterConfig;
/// use corral_runtime::tree::{Condition, ProgramSpec, Strategy, TreeConfig};
///
/// let tree = TreeConfig::default()
///     .strategy(Strategy::RestForOne)
///     .intensity(3, Duration::from_secs(60))
///     .program(ProgramSpec::oneshot("migrate", ClusterConfig::default().workers(1)))
///     .program(ProgramSpec::service("api", ClusterConfig::default().workers(2)).depends_on("migrate", Condition::Completed));
/// assert!(tree.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct TreeConfig {
    /// The tree's name (its default control socket is `NAME.sock`). Default: `corral`.
    pub name: String,
    /// What happens to the siblings of a program that died. Default: one-for-one.
    pub strategy: Strategy,
    /// At most this many program restarts within `period`; one more and the tree gives up.
    /// Default: 3.
    pub max_restarts: u32,
    /// The window of `max_restarts`. Default: 60 s.
    pub period: Duration,
    /// The programs, in the order they were declared.
    pub programs: Vec<ProgramSpec>,
    /// The tree's control socket (one for every program). Default: `NAME.sock` in the
    /// default directory.
    pub control: ControlSocket,
    /// Where a reload of the whole tree ([`TreeHandle::reload`](super::TreeHandle::reload):
    /// SIGHUP, `corral reload`) gets the new configuration (a file re-read). Default: none (a
    /// reload is refused).
    pub reconfigure: Option<TreeReconfigure>,
}

/// A hook that yields a tree's configuration anew (re-reads its file).
#[derive(Clone)]
pub struct TreeReconfigure(std::sync::Arc<dyn Fn() -> Result<TreeConfig, ReconfigureError> + Send + Sync>);

impl TreeReconfigure {
    /// A hook from a function; it runs in the primary's event loop: keep it short.
    pub fn new(hook: impl Fn() -> Result<TreeConfig, ReconfigureError> + Send + Sync + 'static) -> Self {
        TreeReconfigure(std::sync::Arc::new(hook))
    }

    /// Runs the hook.
    ///
    /// # Errors
    ///
    /// Whatever the hook refuses.
    pub fn load(&self) -> Result<TreeConfig, ReconfigureError> {
        (self.0)()
    }
}

impl fmt::Debug for TreeReconfigure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TreeReconfigure(..)")
    }
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            name: "corral".to_string(),
            strategy: Strategy::OneForOne,
            max_restarts: 3,
            period: Duration::from_secs(60),
            programs: Vec::new(),
            control: ControlSocket::Default,
            reconfigure: None,
        }
    }
}

impl TreeConfig {
    /// Sets [`TreeConfig::strategy`].
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets [`TreeConfig::max_restarts`] and [`TreeConfig::period`].
    #[must_use]
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// Adds a program.
    #[must_use]
    pub fn program(mut self, program: ProgramSpec) -> Self {
        self.programs.push(program);
        self
    }

    /// Sets [`TreeConfig::control`].
    #[must_use]
    pub fn control(mut self, control: ControlSocket) -> Self {
        self.control = control;
        self
    }
}
