//! The man pages in `man/` are generated from the command-line definition; this test fails when
//! they are stale. Regenerate with `CHARGECTL_BLESS=1 cargo test --test manpages`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::path::Path;

#[test]
fn man_pages_match_the_command_line_definition() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let bless = std::env::var_os("CHARGECTL_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut stale = Vec::new();
    for (name, text) in chargectl::cli::manpages::render_all().unwrap() {
        let path = dir.join(&name);
        if bless {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read(&path) {
            Ok(existing) if existing == text => {}
            _ => stale.push(name),
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date: {stale:?}; run `CHARGECTL_BLESS=1 cargo test --test manpages`"
    );
}

#[test]
fn command_line_definition_is_consistent() {
    use clap::CommandFactory;
    chargectl::cli::Cli::command().debug_assert();
}
