//! Every fuzz target's seed corpus replays through its check on stable Rust, without libFuzzer (the checks
//! live in `fuzz/src/lib.rs`): every seed directory belongs to a target, every target has seeds, and no
//! seed makes a check panic. `cargo xtask fuzz` runs the same targets with cargo-fuzz.

use std::fs;
use std::path::{Path, PathBuf};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_seed_replays_through_its_target() {
    let seeds = seeds_dir();
    let mut targets: Vec<&str> = mtasts_fuzz::TARGETS.iter().map(|(name, _)| *name).collect();
    targets.sort_unstable();
    assert_eq!(
        names_in(&seeds),
        targets,
        "one seed directory per fuzz target"
    );
    for (target, check) in mtasts_fuzz::TARGETS {
        let dir = seeds.join(target);
        let files = names_in(&dir);
        assert!(!files.is_empty(), "{target} has no seeds");
        for file in files {
            let path = dir.join(&file);
            let data =
                fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let replayed = std::panic::catch_unwind(|| check(&data));
            assert!(
                replayed.is_ok(),
                "fuzz target {target} panics on seed {}",
                path.display()
            );
        }
    }
}
