//! The core library has no terminal code: `stack`, `link`, `firmware`, `emulator`, `csms` and
//! `dryrun` never import ratatui, crossterm or clap (the TUI and the CLI are thin consumers).
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
