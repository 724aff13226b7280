//! `cargo xtask bench`: builds the release daemon and the load generator (`crates/mtasts-bench`), and with
//! `--baseline-rev REV` the daemon of another revision too, then runs the load generator on them.
//!
//! The measuring lives in its own crate, so that xtask keeps its few dependencies; this module only builds.
//! A baseline revision is built in a temporary `git worktree` with its own target directory (kept under
//! `<target>/bench-baseline/`, so the next build of another revision is incremental), and its binary is kept
//! as `<target>/bench-baseline/<commit>/mta-sts-daemon`, so a revision is built once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cargo;

/// Runs the benchmark; `args` are the load generator's flags plus `--baseline-rev REV`.
pub(crate) fn bench(root: &Path, args: &[String]) -> Result<()> {
    let mut rest = Vec::new();
    let mut baseline_rev = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if let Some(rev) = arg.strip_prefix("--baseline-rev=") {
            baseline_rev = Some(rev.to_owned());
        } else if arg == "--baseline-rev" {
            baseline_rev = Some(
                args.next()
                    .context("--baseline-rev needs a revision")?
                    .clone(),
            );
        } else {
            rest.push(arg.clone());
        }
    }
    // The baseline first: it has a target directory of its own, so it can build while another run holds
    // the workspace's.
    let baseline = baseline_rev
        .map(|rev| Ok::<_, anyhow::Error>((build_revision(root, &rev)?, describe(root, &rev)?)))
        .transpose()?;
    let build = [
        "build",
        "--release",
        "--locked",
        "-p",
        "mta-sts-daemon",
        "-p",
        "mtasts-bench",
    ];
    cargo(root, &build, &[])?;
    let release = target_dir(root).join("release");
    let mut command = Command::new(release.join("mtasts-bench"));
    command
        .arg("--daemon")
        .arg(release.join("mta-sts-daemon"))
        .arg("--label")
        .arg(describe(root, "HEAD")?)
        .arg("--bare")
        .arg(release.join("bare-netstring-server"));
    if let Some((binary, label)) = baseline {
        command
            .arg("--baseline")
            .arg(binary)
            .arg("--baseline-label")
            .arg(label);
    }
    let status = command
        .args(&rest)
        .status()
        .context("could not run mtasts-bench")?;
    if !status.success() {
        bail!("mtasts-bench failed ({status})");
    }
    Ok(())
}

/// Builds `mta-sts-daemon` of `rev` (once per commit) and returns the binary's path.
fn build_revision(root: &Path, rev: &str) -> Result<PathBuf> {
    let commit = git(
        root,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )?;
    let base = target_dir(root).join("bench-baseline");
    let binary = base.join(&commit).join("mta-sts-daemon");
    if binary.is_file() {
        eprintln!("xtask: baseline {rev} already built: {}", binary.display());
        return Ok(binary);
    }
    let tree = base.join("worktree");
    remove_worktree(root, &tree)?;
    let tree_arg = tree.to_string_lossy();
    git(root, &["worktree", "add", "--detach", &tree_arg, &commit])?;
    let target = base.join("target");
    let built = cargo(
        &tree,
        &["build", "--release", "--locked", "-p", "mta-sts-daemon"],
        &[("CARGO_TARGET_DIR", &target.to_string_lossy())],
    );
    remove_worktree(root, &tree)?;
    built?;
    std::fs::create_dir_all(base.join(&commit))?;
    std::fs::copy(target.join("release/mta-sts-daemon"), &binary)
        .context("copy the baseline daemon")?;
    Ok(binary)
}

/// Removes the temporary worktree (also one left by an interrupted run).
fn remove_worktree(root: &Path, tree: &Path) -> Result<()> {
    if tree.exists() {
        git(
            root,
            &["worktree", "remove", "--force", &tree.to_string_lossy()],
        )?;
    }
    git(root, &["worktree", "prune"]).map(drop)
}

/// `git describe --always --dirty` of HEAD, or the abbreviated commit of another revision.
fn describe(root: &Path, rev: &str) -> Result<String> {
    if rev == "HEAD" {
        git(root, &["describe", "--always", "--dirty"])
    } else {
        git(root, &["rev-parse", "--short", rev])
    }
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("could not run git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `$CARGO_TARGET_DIR`, else `target/` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}
