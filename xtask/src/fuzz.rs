//! `cargo xtask fuzz [SECONDS]`: runs every fuzz target of `fuzz/` with cargo-fuzz, starting from its seed
//! corpus, for SECONDS each (default: 5 minutes shared out, at least 30 s each). What CI runs.
//!
//! Toolchain: nightly where rustup has one (libFuzzer with AddressSanitizer); else stable with
//! `RUSTC_BOOTSTRAP=1` and `--sanitizer none` (coverage-guided, no ASan: safe Rust needs none). When
//! neither builds the targets, a note says so and the step is skipped. A crash fails the step; its input
//! is left in `fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use crate::ci;

/// Total fuzzing time when SECONDS is not given, shared out among the targets.
const TOTAL_SECS: u64 = 300;
/// The least time each target gets.
const MIN_SECS: u64 = 30;

/// How the targets are built and run.
struct Toolchain {
    name: &'static str,
    /// The command that runs cargo for this toolchain (before `fuzz …`).
    cargo: fn() -> Command,
    /// Extra `cargo fuzz build|run` arguments.
    args: &'static [&'static str],
}

fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]);
    cmd
}

fn stable_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env("RUSTC_BOOTSTRAP", "1");
    cmd
}

const NIGHTLY: Toolchain = Toolchain {
    name: "nightly (AddressSanitizer)",
    cargo: nightly_cargo,
    args: &[],
};

const STABLE: Toolchain = Toolchain {
    name: "stable with RUSTC_BOOTSTRAP=1 (--sanitizer none)",
    cargo: stable_cargo,
    args: &["--sanitizer", "none"],
};

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|out| out.status.success())
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("nightly"))
        })
}

/// The first toolchain that builds every target, or `None`.
fn build(root: &Path) -> Option<Toolchain> {
    let candidates = if has_nightly() {
        vec![NIGHTLY, STABLE]
    } else {
        vec![STABLE]
    };
    for toolchain in candidates {
        eprintln!("xtask: building the fuzz targets on {}", toolchain.name);
        let built = (toolchain.cargo)()
            .args(["fuzz", "build"])
            .args(toolchain.args)
            .current_dir(root)
            .status()
            .is_ok_and(|status| status.success());
        if built {
            return Some(toolchain);
        }
        eprintln!("xtask: the fuzz targets do not build on {}", toolchain.name);
    }
    None
}

/// `Done 1234 runs in 31 second(s)` from libFuzzer's last lines.
fn runs(stderr: &str) -> Option<(u64, u64)> {
    stderr.lines().rev().find_map(|line| {
        let rest = line.strip_prefix("Done ")?;
        let (runs, rest) = rest.split_once(" runs in ")?;
        let secs = rest.split_whitespace().next()?;
        Some((runs.parse().ok()?, secs.parse().ok()?))
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn fuzz(root: &Path, seconds: Option<u64>) -> Result<()> {
    const INSTALL: &str = "cargo install --locked cargo-fuzz";
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        if ci::is_ci() {
            bail!("cargo-fuzz is not installed and CI requires it: run `{INSTALL}`");
        }
        eprintln!("xtask: note: skipping the fuzz run: cargo-fuzz is not installed (`{INSTALL}`)");
        return Ok(());
    }
    let listed = Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(root)
        .output()
        .context("running cargo fuzz list")?;
    let targets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !listed.status.success() || targets.is_empty() {
        bail!("cargo fuzz list found no targets in fuzz/");
    }
    let Some(toolchain) = build(root) else {
        eprintln!(
            "xtask: note: skipping the fuzz run: the targets build neither on nightly nor on stable with \
             RUSTC_BOOTSTRAP=1 (the seed corpora still replay in `cargo test -p xtask`)"
        );
        return Ok(());
    };
    let count = u64::try_from(targets.len()).unwrap_or(u64::MAX);
    let secs = seconds.unwrap_or_else(|| (TOTAL_SECS / count).max(MIN_SECS));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut summary = Vec::new();
    for target in &targets {
        // New inputs go to a scratch corpus; the committed seeds are only read.
        let corpus = target_dir.join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {secs} s on {}", toolchain.name);
        let Output { status, stderr, .. } = (toolchain.cargo)()
            .args(["fuzz", "run"])
            .args(toolchain.args)
            .arg(target)
            .arg(&corpus)
            .arg(root.join("fuzz/seeds").join(target))
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            // One input taking this long is a hang, reported like a crash.
            .arg("-timeout=20")
            .current_dir(root)
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let stderr = String::from_utf8_lossy(&stderr);
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}); the input is in fuzz/artifacts/{target}/, \
                 replay it with `cargo fuzz run {target} fuzz/artifacts/{target}/<file>`:\n{}",
                tail(&stderr, 60)
            );
        }
        let (runs, took) = runs(&stderr).unwrap_or_default();
        summary.push(format!("{target}: {runs} runs in {took} s"));
    }
    eprintln!(
        "xtask: fuzz passed on {}: {}",
        toolchain.name,
        summary.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn libfuzzer_final_line_is_read() {
        let stderr = "#1024 pulse cov: 10\nDone 1234567 runs in 31 second(s)\nstat::x: 1\n";
        assert_eq!(runs(stderr), Some((1_234_567, 31)));
        assert_eq!(runs("INFO: Seed: 1\n"), None);
    }
}
