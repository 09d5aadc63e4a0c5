//! Each setting is declared once (`src/settings/groups.rs`); this checks, for every setting
//! the declaration has (none listed here), that it appears with the same default in the
//! keys the `corral.toml` parser accepts, the `corral run` flags, the `corral init` template,
//! the book's reference page and the JSON Schema (`corral schema`), and that the schema
//! validates the template.
//!
//! The reference page is generated: `CORRAL_BLESS=1 cargo test --test settings` rewrites it.

use std::path::PathBuf;
use std::process::Command;

use corral::config_file::ConfigFile;
use corral::settings::{Setting, settings_of, toml_value};
use serde_json::Value;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/reference/config.md");

fn corral(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(args).output().expect("run corral");
    assert!(out.status.success(), "corral {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn every_setting() -> Vec<(Option<&'static str>, Setting)> {
    let settings: Vec<_> =
        settings_of().into_iter().flat_map(|g| g.settings.into_iter().map(move |s| (g.table, s))).collect();
    assert!(settings.len() > 30, "{} settings", settings.len());
    settings
}

/// The value a setting is shown at: its default, or an example.
fn shown(s: &Setting) -> &Value {
    let value = s.default.as_ref().or(s.example.as_ref());
    value.unwrap_or_else(|| panic!("{} has neither a default nor an example", s.key))
}

/// A one-key file setting `s` to `value`.
fn file_with(table: Option<&str>, s: &Setting, value: &Value) -> String {
    let line = match value {
        Value::Object(entries) => {
            let mut text = format!("[{}]\n", s.name);
            for (k, v) in entries {
                text.push_str(&format!("{k} = {}\n", toml_value(v)));
            }
            return text;
        }
        v => format!("{} = {}\n", s.name, toml_value(v)),
    };
    match table {
        Some(t) => format!("[{t}]\n{line}"),
        None => line,
    }
}

fn schema() -> Value {
    serde_json::from_str(&corral(&["schema"])).expect("corral schema prints JSON")
}

#[test]
fn every_setting_appears_everywhere_with_the_same_default() {
    let schema = schema();
    let help = corral(&["run", "--help"]);
    let template = corral(&["init", "-"]);
    let reference = std::fs::read_to_string(REFERENCE).expect("the reference page (CORRAL_BLESS=1 writes it)");
    let mut schema_keys = 0;
    for (table, s) in every_setting() {
        let value = shown(&s);

        // The JSON Schema: the key, with the default.
        let property = match table {
            Some(t) => &schema["properties"][t]["properties"][&s.name],
            None => &schema["properties"][&s.name],
        };
        assert!(property.is_object(), "{} is not in the schema", s.key);
        assert_eq!(property.get("default"), s.default.as_ref(), "{}: the schema's default", s.key);
        schema_keys += 1;

        // The parser: the key is accepted, and read as the value.
        let text = file_with(table, &s, value);
        let file = ConfigFile::parse("corral.toml", &text).unwrap_or_else(|e| panic!("{}: {e}", s.key));
        let read = serde_json::to_value(&file.settings).expect("settings as JSON");
        let read = match table {
            Some(t) => &read[t][&s.name],
            None => &read[&s.name],
        };
        assert_eq!(read, value, "{}: read back from {text:?}", s.key);

        // The default is the default: saying it changes nothing.
        if s.default.is_some() {
            let base = match table {
                // A table's settings need the table's needed keys (examples) around them.
                Some(t) => every_setting()
                    .into_iter()
                    .filter(|(tt, o)| *tt == Some(t) && o.default.is_none())
                    .map(|(_, o)| format!("{} = {}\n", o.name, toml_value(shown(&o))))
                    .collect::<String>(),
                None => String::new(),
            };
            let plain = match table {
                Some(t) => format!("program = \"/bin/true\"\n[{t}]\n{base}"),
                None => "program = \"/bin/true\"\n".to_string(),
            };
            let explicit = format!("{plain}{} = {}\n", s.name, toml_value(value));
            let config = |text: &str| ConfigFile::parse("corral.toml", text).expect("parses").cluster_config();
            match (config(&plain), config(&explicit)) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}: not the default", s.key),
                // [node] needs a cookie file that exists and a build with the feature.
                (Err(a), Err(b)) if table == Some("node") => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{}: {a:?} / {b:?}", s.key),
            }
        }

        // The flag, in `corral run --help`, with the default.
        if s.flag == "--" {
            assert!(help.contains("[PROGRAM [ARGS]]"), "{help}");
        } else {
            assert!(s.flag.starts_with("--"), "{} has no flag", s.key);
            let line = help
                .lines()
                .find(|l| l.split_whitespace().any(|w| w.trim_end_matches(',') == s.flag))
                .unwrap_or_else(|| panic!("{} ({}) is not in `corral run --help`", s.key, s.flag));
            if let Some(d) = &s.default {
                let d = d.as_str().map_or_else(|| toml_value(d), str::to_string);
                assert!(line.contains(&format!("[default: {d}]")), "{}: {line}", s.key);
            }
        }

        // The template: `# key = value` in the key's table.
        let wanted = format!("# {}", file_with(None, &s, value).lines().next().unwrap_or_default());
        let mut current = None;
        let mut found = false;
        for line in template.lines() {
            if let Some(t) = line.strip_prefix("# [").and_then(|l| l.strip_suffix(']')) {
                current = Some(t.to_string());
            }
            let in_table = match (&current, table) {
                (None, None) => true,
                (Some(c), Some(t)) => c == t,
                (Some(c), None) => matches!(value, Value::Object(_)) && *c == s.name,
                (None, Some(_)) => false,
            };
            found |= in_table && (line == wanted || line.starts_with(&format!("{wanted}  ")));
        }
        assert!(found, "{}: `{wanted}` is not in the template:\n{template}", s.key);

        // The reference page: a row with the key and the default.
        let row = reference
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", s.key)))
            .unwrap_or_else(|| panic!("{} is not on the reference page", s.key));
        match &s.default {
            Some(d) => assert!(row.contains(&format!("| `{}` |", toml_value(d))), "{}: {row}", s.key),
            None => assert!(row.contains("| — |"), "{}: {row}", s.key),
        }
    }
    // And the schema has no key the declaration does not list.
    let top = schema["properties"].as_object().expect("properties");
    let in_tables: usize = top.values().filter_map(|p| p["properties"].as_object()).map(|p| p.len()).sum();
    let tables = top.values().filter(|p| p["properties"].is_object()).count();
    assert_eq!(top.len() - tables + in_tables, schema_keys, "the schema has keys no group declares");
}

#[test]
fn the_reference_page_is_up_to_date() {
    let page = corral::cli::reference_page();
    if std::env::var_os("CORRAL_BLESS").is_some() {
        let path = PathBuf::from(REFERENCE);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&path, &page).expect("write the reference page");
    }
    let committed = std::fs::read_to_string(REFERENCE).unwrap_or_default();
    assert!(committed == page, "{REFERENCE} is stale: regenerate it with CORRAL_BLESS=1 cargo test --test settings");
}

fn valid(schema: &Value, toml_text: &str) -> bool {
    let instance: Value = toml::from_str(toml_text).expect("TOML");
    jsonschema::validator_for(schema).expect("a valid schema").is_valid(&instance)
}

#[test]
fn the_schema_validates_the_init_template_and_rejects_wrong_types() {
    let schema = schema();
    let template = corral(&["init", "-"]);
    assert!(valid(&schema, &template), "the template as written");
    // Every key uncommented, each at its default or example.
    let uncommented: String = template
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(uncommented.contains("kill_timeout = \"5s\"") && uncommented.contains("[node]"), "{uncommented}");
    assert!(valid(&schema, &uncommented), "the template uncommented:\n{uncommented}");
    assert!(ConfigFile::parse("corral.toml", &uncommented).is_ok(), "the parser takes what the schema takes");

    for wrong in ["workers = \"four\"\n", "kill_timeout = 5\n", "listen = \"127.0.0.1:80\"\n", "wrokers = 4\n"] {
        assert!(!valid(&schema, wrong), "the schema takes {wrong:?}");
        assert!(ConfigFile::parse("corral.toml", wrong).is_err(), "the parser takes {wrong:?}");
    }
    assert!(!valid(&schema, "[backoff]\nfactor = \"fast\"\n"));
    assert!(!valid(&schema, "[env]\nA = 1\n"));
}

/// `corral schema | head -c 10` (a reader that goes away): the command ends quietly, killed by
/// SIGPIPE as Unix tools are, not with a panic from `println!`.
#[test]
fn a_command_writing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral schema");
    // The reader goes away before the first write.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(sigpipe()), "{:?} {stderr}", out.status);
}

fn sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}
