//! Library code returns typed errors, never `String`s: in every crate's sources (tests,
//! `#[cfg(test)]` modules and comments aside) no `Result<…, String>`, no `Err(format!(…))` or
//! `Err("…".into())`, no `map_err` / `ok_or_else` closure that makes a `String` of an error,
//! and no `String` field named like a message (`reason`, `message`, `error`, `cause`,
//! `detail`, `why`) in a type deriving `thiserror::Error`, no `io::Error` boxed from a
//! `format!`. Each offender is printed as `path:line`.

use std::path::{Path, PathBuf};

mod source_tree;

use source_tree::{CRATES, root};

/// Field names that say "this is an error message".
const MESSAGE_FIELDS: [&str; 6] = ["reason", "message", "error", "cause", "detail", "why"];

/// Every library source file below `dir`, test folders aside.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut all = Vec::new();
    source_tree::sources(dir, &mut all);
    let under = |f: &Path| f.strip_prefix(dir).is_ok_and(|rel| rel.components().any(|c| c.as_os_str() == "tests"));
    out.extend(all.into_iter().filter(|f| !under(f)));
}

/// The code of a file with comments and string/char literal contents blanked (same length,
/// same lines), so that offsets still give line numbers. A literal keeps its quotes.
fn blank_comments_and_literals(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) =>
            {
                // r"…", r#"…"#
                let mut j = i + 1;
                let mut hashes = 0;
                while bytes.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if bytes.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[j + 1..].find(&close).map_or(bytes.len(), |n| j + 1 + n);
                blank(&mut out, j + 1, end);
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j.min(bytes.len()));
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\''), not a lifetime ('a).
                let end = if bytes.get(i + 1) == Some(&b'\\') {
                    text[i + 2..].find('\'').map(|n| i + 2 + n)
                } else if bytes.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i + 1, end);
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII replaced or whole chars)")
}

/// The index just past the bracket closing the one at `open` (`(`, `[`, `{` or `<`).
fn closing(code: &str, open: usize) -> usize {
    let bytes = code.as_bytes();
    let (o, c) = match bytes[open] {
        b'(' => (b'(', b')'),
        b'[' => (b'[', b']'),
        b'{' => (b'{', b'}'),
        _ => (b'<', b'>'),
    };
    let mut depth = 0usize;
    for (k, &b) in bytes.iter().enumerate().skip(open) {
        if b == o {
            depth += 1;
        } else if b == c && !(c == b'>' && k > 0 && bytes[k - 1] == b'-') {
            depth -= 1;
            if depth == 0 {
                return k + 1;
            }
        }
    }
    bytes.len()
}

/// The code with every `#[cfg(test)]` item (a `mod tests { … }`, a test-only fn or impl)
/// blanked.
fn without_test_items(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|n| from + n) {
        let after = at + "#[cfg(test)]".len();
        let brace = code[after..].find('{').map(|n| after + n);
        let semi = code[after..].find(';').map(|n| after + n);
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => closing(code, b),
            (None, Some(s)) => s + 1,
            (None, None) => code.len(),
        };
        let blanked: String = code[at..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
        out.replace_range(at..end, &blanked);
        from = end;
    }
    out
}

/// Files declared `#[cfg(test)] mod name;`: skipped whole.
fn test_only_files(code: &str, file: &Path) -> Vec<PathBuf> {
    let dir = match file.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().expect("parent").to_path_buf(),
        _ => file.with_extension(""),
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let tail = rest[at + "#[cfg(test)]".len()..].trim_start();
        let tail = tail.strip_prefix("pub(crate) ").or_else(|| tail.strip_prefix("pub ")).unwrap_or(tail);
        if let Some(decl) = tail.strip_prefix("mod ") {
            let name: String = decl.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                out.push(dir.join(format!("{name}.rs")));
                out.push(dir.join(&name).join("mod.rs"));
            }
        }
        rest = &rest[at + 1..];
    }
    out
}

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].matches('\n').count() + 1
}

fn is_string_type(ty: &str) -> bool {
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    matches!(ty.as_str(), "String" | "std::string::String" | "Option<String>" | "Box<str>" | "Cow<'static,str>")
}

/// Whether an expression (a value given to `Err` or `ok_or`, or a closure or function
/// given to `map_err` / `ok_or_else`) makes a `String`.
fn makes_a_string(arg: &str) -> bool {
    let arg = arg.trim();
    if matches!(arg, "ToString::to_string" | "String::from" | "std::string::ToString::to_string") {
        return true;
    }
    // `|e| body`, `|e: T| body`, `|| body`, `move |e| body`.
    let body = match arg.trim_start_matches("move ").strip_prefix('|') {
        Some(rest) => match rest.find('|') {
            Some(n) => rest[n + 1..].trim(),
            None => return false,
        },
        None => arg,
    };
    let body = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')).map_or(body, str::trim);
    let simple_receiver = |b: &str| {
        // `e.to_string()`, `e.0.to_string()`, `"…".to_string()`: a receiver, then one call.
        let recv = b.rsplit_once('.').map_or("", |(r, _)| r);
        recv.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '"' || c == ' ')
    };
    body.starts_with("format!(")
        || body.starts_with("String::from(")
        || ((body.ends_with(".to_string()") || body.ends_with(".to_owned()")) && simple_receiver(body))
        || (body.starts_with('"') && body.ends_with(".into()"))
}

fn offenders_in(file: &Path, text: &str) -> Vec<String> {
    let rel = file.strip_prefix(root()).unwrap_or(file).display().to_string();
    let code = without_test_items(&blank_comments_and_literals(text));
    let mut found: Vec<(usize, &'static str)> = Vec::new();

    // Result<…, String>
    for (at, _) in code.match_indices("Result<") {
        if at > 0 && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_') {
            continue;
        }
        let open = at + "Result".len();
        let close = closing(&code, open);
        let inner = &code[open + 1..close.saturating_sub(1)];
        // The last top-level argument.
        let (mut depth, mut last) = (0i32, 0usize);
        for (k, c) in inner.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => last = k + 1,
                _ => {}
            }
        }
        if last > 0 && is_string_type(&inner[last..]) {
            found.push((at, "Result<_, String>"));
        }
    }

    // Err(format!(…)), Err("…".into() / .to_string() / .to_owned()), Err(String::from(…)),
    // Err(e.to_string())
    for (at, _) in code.match_indices("Err(") {
        if at > 0 && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_') {
            continue;
        }
        let close = closing(&code, at + 3);
        let arg = code[at + 4..close.saturating_sub(1)].trim();
        if makes_a_string(arg) {
            found.push((at, "Err(String)"));
        }
    }

    // io::Error::new(kind, format!(…)), io::Error::other(format!(…)): an error boxed from a String.
    for call in ["Error::new(", "Error::other("] {
        for (at, _) in code.match_indices(call) {
            let open = at + call.len() - 1;
            let close = closing(&code, open);
            let args = &code[open + 1..close.saturating_sub(1)];
            if args.contains("format!(") || args.contains("String::from(") || args.trim_end().ends_with(".to_string()")
            {
                found.push((at, "an error boxed from a String"));
            }
        }
    }

    // map_err / ok_or_else / ok_or making a String.
    for call in [".map_err(", ".ok_or_else(", ".ok_or("] {
        for (at, _) in code.match_indices(call) {
            let open = at + call.len() - 1;
            let close = closing(&code, open);
            if makes_a_string(&code[open + 1..close.saturating_sub(1)]) {
                found.push((at, "an error made a String"));
            }
        }
    }

    // String fields named like a message in a `thiserror::Error` type.
    for (at, _) in code.match_indices("#[derive(") {
        let close = closing(&code, at + "#[derive".len());
        let derives = &code[at + "#[derive(".len()..close - 1];
        if !derives.split(',').any(|d| matches!(d.trim(), "thiserror::Error" | "Error")) {
            continue;
        }
        // The item's body: the first `{` after its attributes (`#[error(…)]` may hold braces).
        let mut after = close + 1;
        while code[after..].trim_start().starts_with("#[") {
            let open = after + code[after..].find('[').expect("an attribute");
            after = closing(&code, open);
        }
        let Some(item) = code[after..].find(['{', ';']).map(|n| after + n) else { continue };
        if code.as_bytes()[item] != b'{' {
            continue;
        }
        let end = closing(&code, item);
        let body = &code[item..end];
        for name in MESSAGE_FIELDS {
            for (k, _) in body.match_indices(name) {
                let before = body[..k].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let Some(rest) = body[k + name.len()..].trim_start().strip_prefix(':') else { continue };
                if rest.starts_with(':') {
                    continue;
                }
                let ty_end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
                if is_string_type(&rest[..ty_end]) {
                    found.push((item + k, "a String error message field"));
                }
            }
        }
    }

    found.sort();
    found.into_iter().map(|(at, what)| format!("{rel}:{} ({what})", line_of(&code, at))).collect()
}

fn library_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in CRATES {
        sources(&root().join(krate), &mut files);
    }
    let skipped: Vec<PathBuf> =
        files.iter().flat_map(|f| test_only_files(&std::fs::read_to_string(f).unwrap_or_default(), f)).collect();
    files.retain(|f| !skipped.contains(f));
    files.sort();
    files
}

#[test]
fn library_code_has_no_string_error_payloads() {
    let files = library_sources();
    assert!(files.len() > 50, "found only {} library sources", files.len());
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        offenders.extend(offenders_in(file, &text));
    }
    assert!(
        offenders.is_empty(),
        "{} String error payload(s); return a typed error (thiserror) instead:\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

/// The scanner itself finds each kind of payload, and none in tests or comments.
#[test]
fn the_scanner_finds_each_kind() {
    let sample = r#"
fn a() -> Result<(), String> { Ok(()) }
fn b() -> std::io::Result<u8> { Err(format!("no {}", 1)) }
fn c() { let _ = x.map_err(|e| e.to_string()); }
fn d() { let _ = x.map_err(|e: Foo| format!("bad: {e}")); }
fn e() { let _ = x.ok_or_else(|| "none".to_string()); }
#[derive(Debug, thiserror::Error)]
enum E {
    #[error("{reason}")]
    A { reason: String },
    #[error("{0}")]
    B(#[from] std::io::Error),
}
#[derive(Debug, thiserror::Error)]
#[error("{path}: {}", if message.is_empty() { "?" } else { message })]
struct F { path: String, message: String }
fn g() -> Result<(), Box<str>> { Err("gone".into()) }
// fn h() -> Result<(), String> — a comment
fn i() -> Result<(), MyError> { Err(MyError::Gone { name: "x".to_string() }) }
#[derive(Debug, thiserror::Error)]
enum Fine { #[error("{name}")] A { name: String } }
#[cfg(test)]
mod tests {
    fn t() -> Result<(), String> { Err(format!("fine in tests")) }
}
fn j() -> io::Result<()> { Err(io::Error::new(io::ErrorKind::NotFound, format!("no {name}"))) }
"#;
    let found = offenders_in(Path::new("sample.rs"), sample);
    let lines: Vec<&str> = found.iter().map(|f| f.split(' ').next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "sample.rs:2",
            "sample.rs:3",
            "sample.rs:4",
            "sample.rs:5",
            "sample.rs:6",
            "sample.rs:10",
            "sample.rs:16",
            "sample.rs:17",
            "sample.rs:17",
            "sample.rs:26"
        ],
        "{found:#?}"
    );
}
