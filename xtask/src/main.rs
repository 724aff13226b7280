//! Release and CI tooling for mtasts, run as `cargo xtask <command>`.
//!
//! `cargo xtask ci` runs exactly what CI runs, in the order CI runs it, and stops at the first failure:
//! formatting, clippy with warnings denied, the whole test suite (unit, integration and doc tests of every
//! crate with every feature), rustdoc with warnings denied, and `cargo deny`. Outside CI a missing
//! cargo-deny is skipped with a note; under CI (the repository's one rule, `mtasts_test_support::is_ci`) it
//! is required.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bench;
// The repository's one definition of "under CI", shared with the tests' skip-or-fail rule without making
// xtask depend on the test fixtures.
// reason: xtask uses `is_ci` only; the file's other item and its `pub` serve mtasts-test-support.
#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/mtasts-test-support/src/ci.rs"]
mod ci;
mod dist;
mod fuzz;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci        fmt check, clippy -D warnings, all tests, rustdoc -D warnings, cargo deny (what CI runs)
  test      the whole test suite only (every crate, every feature, doc tests included)
  lint      fmt check, clippy -D warnings, rustdoc -D warnings, cargo deny
  dist      release tarball: binaries, man pages, completions, examples, units, docs, SHA-256 sums
  deb       Debian package (needs dpkg-deb)
  deb-check build the .deb, install it with dpkg -i, query the installed daemon with postmap, dpkg -r it
  bench     load generator on the release daemon vs a bare netstring server (docs/performance.md);
            [--baseline-rev REV] also measures the daemon of REV; `cargo xtask bench --help` for flags
  fuzz [S]  run every fuzz target with cargo-fuzz for S seconds each (default: 5 min shared out, >= 30 s)
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = project_root();
    match args.first().map(String::as_str) {
        Some("ci") => {
            lint(&root)?;
            test(&root)
        }
        Some("test") => test(&root),
        Some("lint") => lint(&root),
        Some("dist") => dist::dist(&root).map(|_| ()),
        Some("deb") => dist::deb(&root).map(|_| ()),
        Some("deb-check") => dist::deb_check(&root),
        Some("bench") => bench::bench(&root, &args[1..]),
        Some("fuzz") => fuzz::fuzz(&root, args.get(1).map(|s| s.parse()).transpose()?),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root, found from this crate's manifest directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn lint(root: &Path) -> Result<()> {
    cargo(root, &["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        root,
        &[
            "doc",
            "--workspace",
            "--all-features",
            "--no-deps",
            "--locked",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    deny(root)
}

fn test(root: &Path) -> Result<()> {
    // Tests and doc tests of every crate with every feature. `--no-fail-fast` so one run reports every
    // failing test binary, not only the first.
    cargo(
        root,
        &[
            "test",
            "--workspace",
            "--all-features",
            "--locked",
            "--no-fail-fast",
        ],
        &[],
    )
}

/// `cargo deny` checks licenses, bans and sources. The advisory database needs the network (it is a git
/// repository), so advisories are checked only when `MTASTS_DENY_ADVISORIES=1`. When cargo-deny is not
/// installed, CI fails and anywhere else the step is skipped with a note, so a newcomer's first
/// `cargo xtask ci` reaches the tests.
fn deny(root: &Path) -> Result<()> {
    const INSTALL: &str = "cargo install --locked cargo-deny";
    if Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .map(|out| !out.status.success())
        .unwrap_or(true)
    {
        if ci::is_ci() {
            bail!("cargo-deny is not installed and CI requires it: run `{INSTALL}`");
        }
        eprintln!(
            "xtask: note: skipping `cargo deny` (licenses, bans, sources): cargo-deny is not installed; \
             install it with `{INSTALL}` (CI runs it)"
        );
        return Ok(());
    }
    let mut checks = vec!["bans", "licenses", "sources"];
    if env::var_os("MTASTS_DENY_ADVISORIES").is_some_and(|v| v == "1") {
        checks.push("advisories");
    }
    let mut args = vec!["deny", "--all-features", "check"];
    args.extend(checks);
    cargo(root, &args, &[])
}

pub(crate) fn cargo(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root)
        .status()
        .with_context(|| format!("could not run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
