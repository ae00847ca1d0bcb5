//! The shape of the crate, checked:
//!
//! - the core library has no terminal code: `stack`, `link`, `firmware`, `emulator`, `csms` and
//!   `dryrun` never import ratatui, crossterm or clap (the TUI and the CLI are thin consumers);
//! - the domains depend on each other only as [`ALLOWED`] says: every `crate::<domain>` path
//!   (in a `use`, a grouped `use crate::{..}`, or an expression) and every `super::` chain that
//!   climbs out of a domain is checked, and a forbidden one is reported as `file:line`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::path::Path;

fn scan(dir: &Path, offenders: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, offenders);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                for forbidden in [
                    "ratatui::",
                    "crossterm::",
                    "clap::",
                    "println!",
                    "eprintln!",
                ] {
                    if line.contains(forbidden) && !line.trim_start().starts_with("//") {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
}

#[test]
fn library_domains_have_no_terminal_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for domain in ["stack", "link", "firmware", "emulator", "csms", "dryrun"] {
        scan(&src.join(domain), &mut offenders);
    }
    assert!(
        offenders.is_empty(),
        "terminal code in the library:\n{}",
        offenders.join("\n")
    );
}

// ----- the dependency graph between domains ------------------------------------------------

/// Each domain (a top-level module of `src/`) and the other domains it may import. `None`
/// means any. A domain not listed here is an error of the test itself, so a new module gets a
/// row when it is added.
const ALLOWED: &[(&str, Option<&[&str]>)] = &[
    // The charger stack: its own firmware slots and atomic files; never a consumer or the link.
    ("stack", Some(&["firmware", "storage", "sync"])),
    // The serial service protocol carries the stack's types.
    ("link", Some(&["stack"])),
    ("firmware", Some(&["storage"])),
    ("storage", Some(&[])),
    ("sync", Some(&[])),
    // The process's open-file limit, raised by whatever holds thousands of connections.
    ("rlimit", Some(&[])),
    // Provisioning workflows run over the link against the stack's configuration.
    ("provision", Some(&["stack", "link", "firmware", "storage"])),
    // The emulated charger wires the stack to simulated hardware and a service port.
    (
        "emulator",
        Some(&[
            "stack",
            "link",
            "firmware",
            "provision",
            "storage",
            "rlimit",
        ]),
    ),
    // The sandbox CSMS speaks OCPP with the stack's messages and nothing else.
    ("csms", Some(&["stack", "rlimit"])),
    // The commissioning dry run drives an emulated charger against a CSMS (the sandbox when none
    // is given) and analyses what it saw.
    (
        "dryrun",
        Some(&["stack", "emulator", "csms", "provision", "storage"]),
    ),
    // Application plumbing, for the consumers only.
    ("paths", Some(&[])),
    ("logging", Some(&[])),
    // The consumers.
    ("tui", None),
    ("cli", None),
];

fn allowed(from: &str, to: &str) -> Result<bool, String> {
    let rule = |name: &str| {
        ALLOWED
            .iter()
            .find(|(d, _)| *d == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| format!("domain {name:?} has no row in ALLOWED"))
    };
    rule(to)?;
    Ok(from == to
        || match rule(from)? {
            None => true,
            Some(list) => list.contains(&to),
        })
}

/// The source with comments and the contents of string and character literals blanked out
/// (newlines kept, so offsets still give line numbers).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                blank(&mut out, i, end);
                i = end;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && starts_word(b, i) => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                let end = text[start..].find(&close).map_or(b.len(), |p| start + p);
                blank(&mut out, start, end);
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j.min(b.len()));
                i = j + 1;
            }
            b'\'' => {
                // A character literal ('x', '\n', '"'), or a lifetime ('a) left alone.
                if b.get(i + 1) == Some(&b'\\') {
                    let end = b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map_or(b.len(), |p| i + 2 + p);
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                } else if let Some(c) = text[i + 1..].chars().next()
                    && text[i + 1 + c.len_utf8()..].starts_with('\'')
                {
                    blank(&mut out, i + 1, i + 1 + c.len_utf8());
                    i += 2 + c.len_utf8();
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether the `r` of a raw string at `i` starts a token (`r"..."`, `br"..."`).
fn starts_word(b: &[u8], i: usize) -> bool {
    match i {
        0 => true,
        _ if !is_ident(b[i - 1]) => true,
        1 => b[0] == b'b',
        _ => b[i - 1] == b'b' && !is_ident(b[i - 2]),
    }
}

/// The first path segment of each item of a `{a::b, c, d::{e, f}}` group starting at `open`
/// (the `{`), with its offset.
fn group_heads(code: &str, open: usize) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    at_item_start = true;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => at_item_start = true,
            c if depth == 1 && at_item_start && is_ident(c) => {
                let end = b[i..]
                    .iter()
                    .position(|&c| !is_ident(c))
                    .map_or(b.len(), |p| i + p);
                heads.push((i, code[i..end].to_string()));
                at_item_start = false;
                i = end;
                continue;
            }
            c if depth == 1 && !c.is_ascii_whitespace() => at_item_start = false,
            _ => {}
        }
        i += 1;
    }
    heads
}

/// The top-level module paths of `code` start with, by offset: `crate::x` gives `x`, a
/// `super::` chain of length k gives its next segment when k equals `depth_at(offset)` (the
/// chain climbs to the crate root). Grouped forms give one entry per item.
fn root_paths(code: &str, depth_at: impl Fn(usize) -> usize) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':') {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let (after, reaches_root) = if rest.starts_with("crate::") {
            (i + "crate::".len(), true)
        } else if rest.starts_with("super::") {
            let mut j = i;
            let mut climbs = 0;
            while code[j..].starts_with("super::") {
                j += "super::".len();
                climbs += 1;
            }
            (j, climbs >= depth_at(i))
        } else {
            i += 1;
            continue;
        };
        if reaches_root {
            if b.get(after) == Some(&b'{') {
                found.extend(group_heads(code, after));
            } else {
                let end = b[after..]
                    .iter()
                    .position(|&c| !is_ident(c))
                    .map_or(b.len(), |p| after + p);
                if end > after {
                    found.push((after, code[after..end].to_string()));
                }
            }
        }
        i = after;
    }
    found
}

/// Module depth below the crate root at each offset: the file's own depth plus the inline
/// `mod name { .. }` blocks around the offset.
fn depth_map(code: &str, file_depth: usize) -> Vec<usize> {
    let b = code.as_bytes();
    let mut depths = vec![file_depth; b.len() + 1];
    // Brace depth at which each open inline module's block started.
    let mut modules: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut pending_mod = false;
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !is_ident(b[i - 1]);
        if word_start && code[i..].starts_with("mod ") {
            pending_mod = true;
        }
        match b[i] {
            b'{' => {
                if pending_mod {
                    modules.push(braces);
                    pending_mod = false;
                }
                braces += 1;
            }
            b'}' => {
                braces = braces.saturating_sub(1);
                if modules.last() == Some(&braces) {
                    modules.pop();
                }
            }
            b';' => pending_mod = false,
            _ => {}
        }
        depths[i + 1] = file_depth + modules.len();
        i += 1;
    }
    depths
}

/// The module depth of a file below `src/`: `a.rs` and `a/mod.rs` are 1, `a/b.rs` is 2.
fn file_depth(relative: &Path) -> usize {
    let parts = relative.components().count();
    match relative.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs") => parts - 1,
        _ => parts,
    }
}

/// Every forbidden import in one file's text, as `label:line: from -> to`.
fn forbidden_imports(label: &str, domain: &str, depth: usize, text: &str) -> Vec<String> {
    let code = code_only(text);
    let depths = depth_map(&code, depth);
    let mut found = Vec::new();
    for (offset, target) in root_paths(&code, |at| depths[at]) {
        // `crate::*`-style globs and the crate's own macros are not domains.
        if target.is_empty() || target == "self" {
            continue;
        }
        let ok = match allowed(domain, &target) {
            Ok(ok) => ok,
            Err(e) => {
                found.push(format!("{label}: {e}"));
                continue;
            }
        };
        if !ok {
            let line = code[..offset].matches('\n').count() + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            found.push(format!(
                "{label}:{line}: {domain} must not import {target}: {source}"
            ));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn domains_import_only_what_the_table_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut offenders = Vec::new();
    let mut checked = 0;
    for path in files {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap();
        let domain = first.as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if matches!(domain, "lib" | "main") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let label = format!("src/{}", relative.display());
        offenders.extend(forbidden_imports(
            &label,
            domain,
            file_depth(relative),
            &text,
        ));
        checked += 1;
    }
    assert!(checked > 50, "only {checked} files found under src/");
    assert!(
        offenders.is_empty(),
        "imports between domains that the architecture forbids (see ALLOWED in \
         tests/architecture.rs):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_domain_of_src_has_a_row() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let domain = name.trim_end_matches(".rs");
        if matches!(domain, "lib" | "main") {
            continue;
        }
        assert!(
            allowed(domain, domain).is_ok(),
            "src/{name} has no row in ALLOWED"
        );
    }
}

#[test]
fn the_checker_catches_forbidden_imports_in_every_form() {
    let fixture = r#"
//! A doc comment naming crate::tui is not an import.
use crate::stack::messages::Timestamp;
use crate::{
    stack::rpc,
    tui::State,
};
use super::super::csms::Sandbox;

fn f() {
    let s = "crate::cli in a string";
    let c = '"';
    let t = crate::emulator::headless::ERROR_CODES;
    /* crate::cli in a block comment */
}

mod inner {
    // Two levels down from src/stack/a.rs, two supers stay inside stack.
    use super::super::rpc::Frame;
    use super::super::super::link::Client;
}
"#;
    let found = forbidden_imports("src/stack/a.rs", "stack", 2, fixture);
    let lines: Vec<&str> = found
        .iter()
        .map(|f| f.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "src/stack/a.rs:6",
            "src/stack/a.rs:8",
            "src/stack/a.rs:13",
            "src/stack/a.rs:20"
        ],
        "{found:#?}"
    );
    assert!(
        found[0].contains("stack must not import tui"),
        "{}",
        found[0]
    );
    assert!(
        found[1].contains("stack must not import csms"),
        "{}",
        found[1]
    );
    assert!(
        found[2].contains("stack must not import emulator"),
        "{}",
        found[2]
    );
    assert!(
        found[3].contains("stack must not import link"),
        "{}",
        found[3]
    );
    // The same imports are fine from a consumer.
    assert!(forbidden_imports("src/tui/a.rs", "tui", 2, fixture).is_empty());
    // An unknown domain is named.
    let found = forbidden_imports("src/csms/a.rs", "csms", 2, "use crate::fleet::X;");
    assert!(found[0].contains("\"fleet\" has no row"), "{found:?}");
}
