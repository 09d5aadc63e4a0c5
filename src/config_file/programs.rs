//! A `corral.toml` with `[programs.NAME]` tables: a supervision tree of programs. Each table
//! is a single-program file of its own, read by the same code ([`ConfigFile::from_table`]), plus
//! `kind` and `depends_on`; at the top, the tree's `strategy`, `max_restarts`, `period` and
//! `[log]`. A file without `[programs]` is one program, as ever ([`CorralFile`]).
//!
//! ```
//! use corral::config_file::{CorralFile, TreeFile};
//! use corral::tree::Strategy;
//!
//! let text = r#"
//! strategy = "rest_for_one"
//! max_restarts = 3
//! period = "60s"
//!
//! [programs.migrate]
//! kind = "oneshot"
//! program = "python3"
//! args = ["migrate.py"]
//!
//! [programs.api]
//! program = "python3"
//! args = ["api.py"]
//! workers = 2
//! listen = ["127.0.0.1:0"]
//! depends_on = { migrate = "completed" }
//! "#;
//! let file = TreeFile::parse("corral.toml", text).unwrap();
//! let tree = file.tree_config().unwrap();
//! assert_eq!(tree.strategy, Strategy::RestForOne);
//! assert_eq!(tree.programs.len(), 2);
//! assert_eq!(tree.programs[1].config.workers, 2);
//!
//! let cycle = "[programs.a]\nprogram = \"sh\"\ndepends_on = { b = \"started\" }\n\
//!              [programs.b]\nprogram = \"sh\"\ndepends_on = { a = \"started\" }\n";
//! let err = TreeFile::parse("corral.toml", cycle).and_then(|f| f.tree_config()).unwrap_err();
//! assert!(err.to_string().contains("depends_on cycle: a -> b -> a"), "{err}");
//! assert!(matches!(CorralFile::parse("corral.toml", "workers = 2\n"), Ok(CorralFile::Single(_))));
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_runtime::tree::{Condition, Kind, ProgramSpec, Strategy, TreeConfig, TreeConfigError};
use corral_runtime::{Readiness, WorkerExec};

use super::{ConfigFile, ConfigFileError, FileProblem, line_of_key, line_of_offset, parse_duration, read_text};
use crate::settings::groups::LogSettings;

/// The keys a file with `[programs]` may have at its top.
const TOP_KEYS: &str = "strategy, max_restarts, period, [log], [programs.NAME]";

/// A configuration file: one program, or a tree of programs.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum CorralFile {
    /// No `[programs]`: one program, as ever.
    Single(ConfigFile),
    /// `[programs.NAME]` tables.
    Tree(TreeFile),
}

impl CorralFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or is refused.
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        Self::parse(path, &read_text(path)?)
    }

    /// Whether the file at `path` has `[programs]` (a tree of programs); `false` when it
    /// cannot be read or is not TOML (the single-program reading says why).
    pub fn is_tree(path: &Path) -> bool {
        std::fs::read_to_string(path).is_ok_and(|text| has_programs(&text))
    }

    /// Parses `text` (from `path`, for messages).
    ///
    /// # Errors
    ///
    /// As [`ConfigFile::parse`] or [`TreeFile::parse`].
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, ConfigFileError> {
        if has_programs(text) {
            TreeFile::parse(path, text).map(CorralFile::Tree)
        } else {
            ConfigFile::parse(path, text).map(CorralFile::Single)
        }
    }
}

fn has_programs(text: &str) -> bool {
    text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("programs"))
}

/// One `[programs.NAME]` table.
#[derive(Debug, Clone)]
pub struct ProgramEntry {
    /// Its name.
    pub name: String,
    /// `kind`.
    pub kind: Kind,
    /// `depends_on`, in the file's order.
    pub depends_on: Vec<(String, Condition)>,
    /// The rest of the table, as a single-program file.
    pub file: ConfigFile,
}

/// A file with `[programs.NAME]` tables.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Where it was read from.
    pub path: PathBuf,
    source: String,
    /// `strategy`.
    pub strategy: Strategy,
    /// `max_restarts` of the tree.
    pub max_restarts: Option<u32>,
    /// `period` of the tree.
    pub period: Option<Duration>,
    /// `[log]`.
    pub log: LogSettings,
    /// The programs, in the file's order.
    pub programs: Vec<ProgramEntry>,
}

impl TreeFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or [`parse`](Self::parse) refuses it.
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        Self::parse(path, &read_text(path)?)
    }

    /// Parses `text` (from `path`, for messages): each program's table by
    /// [`ConfigFile::from_table`], its errors located in this file.
    ///
    /// # Errors
    ///
    /// Not TOML, a key that is not for the top of a tree file, a bad `kind`, `depends_on`
    /// or `strategy`, or a program's table refused.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, ConfigFileError> {
        let path = path.as_ref().to_path_buf();
        let err = |key: Option<String>, line: Option<usize>, problem| ConfigFileError {
            path: path.clone(),
            line,
            key,
            problem,
        };
        let at = |key: &str, problem| {
            let line = line_of_key(text, key).or_else(|| header_line(text, key));
            err(Some(key.to_string()), line, problem)
        };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            err(None, line, FileProblem::Toml(Box::new(e)))
        })?;
        let mut file = TreeFile {
            path: path.clone(),
            source: text.to_string(),
            strategy: Strategy::default(),
            max_restarts: None,
            period: None,
            log: LogSettings::default(),
            programs: Vec::new(),
        };
        let mut programs = None;
        for (key, value) in table {
            match (key.as_str(), value) {
                ("strategy", toml::Value::String(s)) => {
                    file.strategy = s.parse().map_err(|e: corral_runtime::tree::NotOneOf| {
                        at("strategy", FileProblem::NotOneOf { given: e.given, choices: e.choices })
                    })?;
                }
                ("max_restarts", toml::Value::Integer(n)) => {
                    file.max_restarts =
                        Some(u32::try_from(n).map_err(|_| at("max_restarts", FileProblem::NotA("a count")))?);
                }
                ("period", toml::Value::String(s)) => {
                    file.period = Some(parse_duration(&s).map_err(|_| at("period", FileProblem::NotA("a duration")))?);
                }
                ("log", v @ toml::Value::Table(_)) => {
                    file.log = v.try_into().map_err(|e| at("log", FileProblem::Toml(Box::new(e))))?;
                }
                ("programs", toml::Value::Table(t)) => programs = Some(t),
                ("strategy" | "max_restarts" | "period" | "log" | "programs", _) => {
                    return Err(at(&key, FileProblem::NotA("the right type")));
                }
                _ => return Err(at(&key, FileProblem::NotAtTop(TOP_KEYS))),
            }
        }
        for (name, value) in programs.unwrap_or_default() {
            let key = format!("programs.{name}");
            let toml::Value::Table(mut t) = value else {
                return Err(at(&key, FileProblem::NotA("a table")));
            };
            let kind = match t.remove("kind") {
                None => Kind::Service,
                Some(toml::Value::String(s)) => s.parse().map_err(|e: corral_runtime::tree::NotOneOf| {
                    at(&format!("{key}.kind"), FileProblem::NotOneOf { given: e.given, choices: e.choices })
                })?,
                Some(_) => return Err(at(&format!("{key}.kind"), FileProblem::NotA("a string"))),
            };
            let mut depends_on = Vec::new();
            match t.remove("depends_on") {
                None => {}
                Some(toml::Value::Table(deps)) => {
                    for (dep, cond) in deps {
                        let dkey = format!("{key}.depends_on");
                        let toml::Value::String(cond) = cond else {
                            return Err(at(&dkey, FileProblem::NotA("a table of conditions")));
                        };
                        let cond = cond.parse().map_err(|e: corral_runtime::tree::NotOneOf| {
                            at(&dkey, FileProblem::NotOneOf { given: e.given, choices: e.choices })
                        })?;
                        depends_on.push((dep, cond));
                    }
                }
                Some(_) => return Err(at(&format!("{key}.depends_on"), FileProblem::NotA("a table of conditions"))),
            }
            let program = ConfigFile::from_table(&path, t).map_err(|e| relocate(e, &key, text))?;
            file.programs.push(ProgramEntry { name, kind, depends_on, file: program });
        }
        if file.programs.is_empty() {
            return Err(at("programs", FileProblem::Tree(Box::new(TreeConfigError::Empty))));
        }
        Ok(file)
    }

    /// The [`TreeConfig`] this file describes, checked: every program's cluster as
    /// [`ConfigFile::cluster_config`] makes it (a oneshot without `ready` is ready at once),
    /// the dependency graph without unknown names or cycles.
    ///
    /// # Errors
    ///
    /// A program refused, a bad dependency graph (naming the cycle or the unknown program).
    pub fn tree_config(&self) -> Result<TreeConfig, ConfigFileError> {
        let mut tree = TreeConfig::default().strategy(self.strategy);
        if let Some(n) = self.max_restarts {
            tree.max_restarts = n;
        }
        if let Some(p) = self.period {
            tree.period = p;
        }
        for p in &self.programs {
            let key = format!("programs.{}", p.name);
            if p.file.settings.program.program.is_none() {
                return Err(self.error(&key, FileProblem::Needed("in every program: `program`")));
            }
            let mut config = p.file.cluster_config().map_err(|e| relocate(e, &key, &self.source))?;
            config.name = p.name.clone();
            if let WorkerExec::Foreign(f) = &mut config.exec
                && p.kind == Kind::Oneshot
                && p.file.settings.readiness.ready.is_none()
            {
                // A migration says nothing: it is ready once started, and done at exit 0.
                f.ready = Readiness::Delay(Duration::ZERO);
            }
            tree.programs.push(ProgramSpec {
                name: p.name.clone(),
                kind: p.kind,
                depends_on: p.depends_on.clone(),
                config,
            });
        }
        tree.validate().map_err(|e| {
            let key = match &e {
                TreeConfigError::Unknown { program, .. } | TreeConfigError::NeverCompletes { program, .. } => {
                    format!("programs.{program}.depends_on")
                }
                TreeConfigError::Cycle(names) => {
                    format!("programs.{}.depends_on", names.first().map_or("", String::as_str))
                }
                TreeConfigError::BadName(name) | TreeConfigError::Duplicate(name) => format!("programs.{name}"),
                TreeConfigError::Program { program, .. } => format!("programs.{program}"),
                _ => "programs".to_string(),
            };
            self.error(&key, FileProblem::Tree(Box::new(e)))
        })?;
        Ok(tree)
    }

    fn error(&self, key: &str, problem: FileProblem) -> ConfigFileError {
        let line = line_of_key(&self.source, key).or_else(|| header_line(&self.source, key));
        ConfigFileError { path: self.path.clone(), line, key: Some(key.to_string()), problem }
    }
}

/// An error about a program's own table, as found in the whole file: its key under
/// `programs.NAME`, and its line there.
fn relocate(mut e: ConfigFileError, prefix: &str, text: &str) -> ConfigFileError {
    let key = match &e.key {
        Some(k) => format!("{prefix}.{k}"),
        None => prefix.to_string(),
    };
    e.line = line_of_key(text, &key).or_else(|| header_line(text, &key)).or_else(|| header_line(text, prefix));
    e.key = Some(key);
    e
}

/// The line of the table header `[key]` (or of the nearest table above it that the file has).
fn header_line(text: &str, key: &str) -> Option<usize> {
    let mut key = key;
    loop {
        let found = text.lines().position(|l| {
            l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')).is_some_and(|h| h.trim() == key)
        });
        if let Some(i) = found {
            return Some(i + 1);
        }
        key = key.rsplit_once('.')?.0;
    }
}
