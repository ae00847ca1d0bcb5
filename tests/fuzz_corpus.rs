//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and every input a fuzzer ever crashed on
//! (`fuzz/regressions/<target>/`) through the same target functions the AFL binaries run
//! (`fuzz/targets.rs`), as a normal test without AFL: each crash stays fixed, and the seeds keep
//! exercising every decoder of untrusted bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[allow(dead_code)]
#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_past_crashes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        for path in seeds
            .iter()
            .chain(inputs(&root.join("regressions").join(name)).iter())
        {
            let data = std::fs::read(path).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} panics on {}", path.display());
            replayed += 1;
        }
    }
    println!("{replayed} fuzz inputs replayed");
}
