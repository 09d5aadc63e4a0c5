//! What is generated from the declaration: the settings as a list ([`settings_of`]), the
//! JSON Schema ([`schema`]), the `corral init` template ([`template`]), the book's reference
//! page ([`reference_page`]) and the defaults in `corral run --help`.

use std::fmt::Write as _;

use clap::Args as _;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::Settings;
use super::groups::{
    AutoscaleSettings, BackoffSettings, ListenerSettings, LogSettings, LogsSettings, MetricsSettings, NodeSettings,
    ProbeSettings, ProgramSettings, ReadinessSettings, RecycleSettings, RestartSettings, StopSettings,
};

/// One setting, as the generated texts show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The key: `kill_timeout`, or `table.key` in a table (`backoff.max`).
    pub key: String,
    /// Its name inside its table (the key without the table).
    pub name: String,
    /// Its `corral run` flag, as `--kill-timeout`, or `--` for the program and its arguments.
    pub flag: String,
    /// The flag's value name (`DUR`), if it takes one.
    pub value_name: Option<String>,
    /// The doc comment.
    pub doc: String,
    /// Its default, as JSON; `None` for a setting that has none (off, or needed).
    pub default: Option<Value>,
    /// An example value for a setting without a default.
    pub example: Option<Value>,
}

/// A topic: a group of top-level keys, or a `[table]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The title (`Restarts`, `[backoff]`).
    pub title: String,
    /// What the group is about.
    pub description: String,
    /// The table, for a `[table]` group.
    pub table: Option<&'static str>,
    /// Its settings, in declaration order.
    pub settings: Vec<Setting>,
}

/// The declared groups in order: each `groups` struct, with its table when it is one.
fn declared() -> Vec<(Value, &'static [&'static str], Option<&'static str>)> {
    fn group<T: JsonSchema + for<'de> Deserialize<'de>>(
        table: Option<&'static str>,
    ) -> (Value, &'static [&'static str], Option<&'static str>) {
        (inline_schema::<T>(), field_names::<T>(), table)
    }
    vec![
        group::<ProgramSettings>(None),
        group::<ListenerSettings>(None),
        group::<ReadinessSettings>(None),
        group::<StopSettings>(None),
        group::<RestartSettings>(None),
        group::<RecycleSettings>(None),
        group::<ProbeSettings>(Some("probe")),
        group::<AutoscaleSettings>(Some("autoscale")),
        group::<BackoffSettings>(Some("backoff")),
        group::<LogsSettings>(Some("logs")),
        group::<LogSettings>(Some("log")),
        group::<MetricsSettings>(Some("metrics")),
        group::<NodeSettings>(Some("node")),
    ]
}

fn inline_schema<T: JsonSchema>() -> Value {
    let generator =
        schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// Every setting, by group, with its flag in `corral run`'s command line.
pub fn settings_of() -> Vec<Group> {
    // Every setting's flag is declared on `Settings` itself; `program` and `args` are the
    // words after `--` (`corral run`'s last positional, named `program`).
    let run = Settings::augment_args(clap::Command::new("run"))
        .arg(clap::Arg::new("program").last(true).num_args(0..).value_name("PROGRAM [ARGS]"));
    let defaults = serde_json::to_value(Settings::defaults()).unwrap_or(Value::Null);
    declared()
        .into_iter()
        .map(|(schema, names, table)| {
            let text = schema["description"].as_str().unwrap_or_default();
            let (title, description) = text.split_once(": ").unwrap_or((text, ""));
            let settings = names
                .iter()
                .map(|name| {
                    let key = table.map_or_else(|| name.to_string(), |t| format!("{t}.{name}"));
                    let property = &schema["properties"][*name];
                    // `args` is the rest of the words after `--`, whose first is the program.
                    let id = if *name == "args" && table.is_none() { "program" } else { key.as_str() };
                    let arg = run.get_arguments().find(|a| a.get_id() == id);
                    let flag = match arg.and_then(|a| a.get_long()) {
                        Some(long) => format!("--{long}"),
                        None if arg.is_some() => "--".to_string(),
                        None => String::new(),
                    };
                    let value_name =
                        arg.and_then(|a| a.get_value_names()).and_then(|v| v.first()).map(|v| v.to_string());
                    let default = match table {
                        Some(t) => defaults.get(t).and_then(|t| t.get(*name)),
                        None => defaults.get(*name),
                    };
                    Setting {
                        name: name.to_string(),
                        key,
                        flag,
                        value_name,
                        doc: property["description"].as_str().unwrap_or_default().to_string(),
                        default: default.filter(|d| !d.is_null()).cloned(),
                        example: property["examples"].get(0).cloned(),
                    }
                })
                .collect();
            Group { title: capitalized(title), description: capitalized(description), table, settings }
        })
        .collect()
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The JSON Schema of `corral.toml` (what `corral schema` prints): every key, its type, its
/// doc text and its default.
pub fn schema() -> Value {
    let mut schema = inline_schema::<Settings>();
    schema["$id"] = Value::from("https://corral.invalid/corral.schema.json");
    for group in settings_of() {
        for s in group.settings {
            let property = match group.table {
                Some(t) => &mut schema["properties"][t]["properties"][&s.name],
                None => &mut schema["properties"][&s.name],
            };
            // schemars writes `null` for a field that serde defaults: the real default instead.
            if let Value::Object(p) = property {
                match s.default {
                    Some(d) => p.insert("default".into(), d),
                    None => p.remove("default"),
                };
            }
        }
        if let Some(t) = group.table
            && let Value::Object(p) = &mut schema["properties"][t]
        {
            p.remove("default");
            p.insert("description".into(), Value::from(format!("{}: {}", group.title, group.description)));
        }
    }
    schema
}

/// A value as TOML writes it.
pub fn toml_value(v: &Value) -> String {
    match v {
        // JSON's string escapes are TOML's (basic strings).
        Value::String(_) => v.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn wrap(out: &mut String, prefix: &str, text: &str) {
    for paragraph in text.split("\n\n") {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && prefix.len() + line.len() + word.len() >= 92 {
                let _ = writeln!(out, "{prefix}{line}");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            let _ = writeln!(out, "{prefix}{line}");
        }
    }
}

/// The commented `corral.toml` that `corral init` writes: every key, with its doc text, at
/// its default (or, without one, at an example value), commented out.
pub fn template() -> String {
    let mut out = String::from(
        "# corral.toml — a cluster of worker processes, supervised by corral.\n\
         # Every option is shown at its default (or, marked \"no default\", an example); uncomment\n\
         # and change what you need. Durations: \"5s\", \"250ms\", \"1m 30s\". Sizes: \"512MiB\",\n\
         # \"2GB\". Flags of `corral run` override. The schema: `corral schema`.\n",
    );
    let groups = settings_of();
    let mut tables = String::new();
    for group in &groups {
        let target = if group.table.is_some() { &mut tables } else { &mut out };
        target.push('\n');
        wrap(target, "# ", &format!("{}: {}", group.title, group.description));
        if let Some(t) = group.table {
            let _ = writeln!(target, "# [{t}]");
        }
        for s in &group.settings {
            let value = s.default.as_ref().or(s.example.as_ref());
            let Some(value) = value else { continue };
            if let Value::Object(entries) = value {
                // A table of its own (`[env]`): after every top-level key.
                tables.push('\n');
                wrap(&mut tables, "# ", &s.doc);
                let _ = writeln!(tables, "# [{}]", s.name);
                for (k, v) in entries {
                    let _ = writeln!(tables, "# {k} = {}", toml_value(v));
                }
                continue;
            }
            let target = if group.table.is_some() { &mut tables } else { &mut out };
            wrap(target, "## ", &s.doc);
            let note = if s.default.is_none() { "    # no default; an example" } else { "" };
            let _ = writeln!(target, "# {} = {}{note}", s.name, toml_value(value));
        }
    }
    out.push_str(&tables);
    out
}

fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

/// The book's reference page of `corral.toml` and `corral run`
/// (`docs/src/reference/config.md`): a table per group.
pub fn reference_page(invocation_flags: &[(String, String)]) -> String {
    let mut out = String::from(
        "<!-- Generated from the settings declaration (src/settings/groups.rs) by\n     \
         corral::settings::reference_page(); do not edit. Regenerate with\n     \
         CORRAL_BLESS=1 cargo test --test settings -->\n\n\
         # Configuration reference\n\n\
         Every setting of `corral.toml` and its `corral run` flag. The flags override the file;\n\
         what neither sets keeps its default. `corral init` writes a commented file with every\n\
         key, and `corral schema` prints the JSON Schema of the file (for editors: taplo, Even\n\
         Better TOML). Durations are written `\"5s\"`, `\"250ms\"`, `\"1m 30s\"`; sizes `\"512MiB\"`,\n\
         `\"2GB\"` or a number of bytes.\n",
    );
    for group in settings_of() {
        let _ = write!(out, "\n## {}\n\n{}\n\n", group.title, cell(&group.description));
        out.push_str("| Key | Flag | Default | Description |\n| --- | --- | --- | --- |\n");
        for s in &group.settings {
            let flag = match (&s.flag[..], &s.value_name) {
                ("--", _) if s.name == "program" => "`-- PROGRAM`".to_string(),
                ("--", _) => "`-- PROGRAM ARGS…`".to_string(),
                ("", _) => "—".to_string(),
                (f, Some(v)) => format!("`{f} {}`", v.replace('|', "\\|")),
                (f, None) => format!("`{f}`"),
            };
            let (default, doc) = match (&s.default, &s.example) {
                (Some(d), _) => (format!("`{}`", toml_value(d).replace('|', "\\|")), cell(&s.doc)),
                (None, Some(e)) => ("—".to_string(), format!("{} Example: `{}`", cell(&s.doc), cell(&example(e)))),
                (None, None) => ("—".to_string(), cell(&s.doc)),
            };
            let _ = writeln!(out, "| `{}` | {flag} | {default} | {doc} |", s.key);
        }
    }
    out.push_str(
        "\n## Flags of `corral run` only\n\nAbout the invocation itself, not the cluster: no key in the file.\n\n",
    );
    out.push_str("| Flag | Description |\n| --- | --- |\n");
    for (flag, help) in invocation_flags {
        let _ = writeln!(out, "| `{}` | {} |", flag.replace('|', "\\|"), cell(help));
    }
    out
}

fn example(v: &Value) -> String {
    match v {
        Value::Object(entries) => {
            entries.iter().map(|(k, v)| format!("{k} = {}", toml_value(v))).collect::<Vec<_>>().join(", ")
        }
        other => toml_value(other),
    }
}

/// `corral run`'s command with each setting's default in its flag's help (`[default: 5s]`).
pub fn with_defaults(mut run: clap::Command) -> clap::Command {
    for group in settings_of() {
        for s in group.settings {
            let (Some(default), true) = (&s.default, s.flag.starts_with("--") && s.flag.len() > 2) else { continue };
            let shown = match default {
                Value::String(text) => text.clone(),
                other => toml_value(other),
            };
            run = run.mut_arg(s.key.as_str(), |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            });
        }
    }
    run
}

/// The fields of a struct, in declaration order, as serde knows them.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("only the field names were wanted")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Recorder {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut recorder = Recorder(None);
    let _ = T::deserialize(&mut recorder);
    recorder.0.unwrap_or(&[])
}
