//! The recipes of `docs/src/recipes/`, read as the tests run them: a recipe's command is the
//! first command of the first ```` ```sh ```` block after `<!-- recipe: NAME -->` on one of the
//! pages, a `corral run` (lines after it, such as a `curl`, are the reader's); its
//! configuration file, when the page shows one, the first ```` ```toml ```` block after
//! `<!-- recipe config: NAME -->` (docs/src/commands.md).

use std::path::Path;

/// The recipe page that holds recipe `name` (`<!-- recipe: NAME -->`).
pub fn page(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/recipes");
    let marker = format!("<!-- recipe: {name} -->");
    let mut pages: Vec<_> = std::fs::read_dir(&dir).expect("docs/src/recipes").flatten().map(|e| e.path()).collect();
    pages.sort();
    pages
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find(|text| text.lines().any(|l| l.trim() == marker))
        .unwrap_or_else(|| panic!("no page of {} holds {marker}", dir.display()))
}

/// The lines of the first ```` ```LANG ```` block after the line `marker`.
fn block_after<'a>(text: &'a str, marker: &str, lang: &str) -> Option<Vec<&'a str>> {
    let mut lines = text.lines().skip_while(|l| l.trim() != marker);
    lines.next()?;
    let mut lines = lines.skip_while(|l| l.trim() != format!("```{lang}"));
    lines.next()?;
    Some(lines.take_while(|l| !l.starts_with("```")).collect())
}

/// The words of recipe `name`'s command (`corral run …`), as written on its page.
pub fn command(name: &str) -> Vec<String> {
    let text = page(name);
    let marker = format!("<!-- recipe: {name} -->");
    let block = block_after(&text, &marker, "sh").unwrap_or_else(|| panic!("{name}.md: no ```sh block after {marker}"));
    let joined = block.join("\n").replace("\\\n", " ");
    let commands: Vec<&str> = joined
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!commands.is_empty(), "{name}: an empty recipe block");
    assert!(!commands[0].contains(['\'', '"', '$', '|', '&', ';']), "{name}: a recipe's command is plain words");
    let words: Vec<String> = commands[0].split_whitespace().map(String::from).collect();
    assert!(words.starts_with(&["corral".into(), "run".into()]), "{name}.md: a recipe is a `corral run`: {words:?}");
    words
}

/// Recipe `name`'s `corral.toml`, if its page shows one.
pub fn config(name: &str) -> Option<String> {
    let text = page(name);
    block_after(&text, &format!("<!-- recipe config: {name} -->"), "toml").map(|lines| lines.join("\n") + "\n")
}

/// The arguments of `corral` (after `corral`) that run a recipe's command in a test: its
/// listener's fixed port made 0, the scheduling `sched`, and the control socket `control`
/// (for `corral status`) in place of whatever the recipe says of them.
pub fn for_test(words: &[String], sched: &str, control: &Path) -> Vec<String> {
    let sep = words.iter().position(|w| w == "--").expect("`--` before the program");
    let (mut out, mut listeners, mut skip) = (Vec::new(), 0, false);
    for (i, word) in words[1..sep].iter().enumerate() {
        if std::mem::take(&mut skip) {
            continue;
        }
        let flag = words[1..sep].get(i.wrapping_sub(1)).map(String::as_str).unwrap_or("");
        // `--cwd examples/servers` (for running it from the repository root): the test runs
        // from that folder already.
        if ["--sched", "--control", "--name", "--cwd"].contains(&word.as_str()) {
            skip = true;
            continue;
        }
        if word == "--no-control" {
            continue;
        }
        if ["-l", "--listen"].contains(&flag) {
            let (name, addr) = word.rsplit_once('=').map_or(("", word.as_str()), |(n, a)| (n, a));
            let host = addr.strip_prefix("127.0.0.1:").unwrap_or_else(|| panic!("listens on 127.0.0.1: {word}"));
            assert!(host.parse::<u16>().is_ok(), "a port: {word}");
            listeners += 1;
            out.push(if name.is_empty() { "127.0.0.1:0".to_string() } else { format!("{name}=127.0.0.1:0") });
            continue;
        }
        out.push(word.clone());
    }
    assert_eq!(listeners, 1, "a recipe listens on one address: {words:?}");
    out.extend(["--sched".to_string(), sched.to_string(), "--control".to_string(), control.display().to_string()]);
    out.extend(words[sep..].iter().cloned());
    out
}

/// The program and its arguments (after `--`).
pub fn program(words: &[String]) -> Vec<String> {
    let sep = words.iter().position(|w| w == "--").expect("`--` before the program");
    words[sep + 1..].to_vec()
}

/// The value of a flag of the command (`--ready delay:1500` → `delay:1500`).
pub fn flag<'a>(words: &'a [String], names: &[&str]) -> Option<&'a str> {
    let sep = words.iter().position(|w| w == "--").unwrap_or(words.len());
    words[..sep].windows(2).find(|w| names.contains(&w[0].as_str())).map(|w| w[1].as_str())
}
