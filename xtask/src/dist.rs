//! `cargo xtask dist`, `deb` and `deb-check`: release artifacts.
//!
//! Man pages and shell completions come from the binaries (`--generate …`, as ripgrep does): completions and
//! mta-sts-query(1) from the clap definitions, so they can never drift from the flags the binaries accept;
//! mta-sts-daemon(8) is written by hand in `docs/man/` and printed by the binary (a unit test checks that it
//! lists every flag, command and exit status). The configuration file's page, `mta-sts-daemon.yml(5)`, is
//! written by hand in `docs/man/` too.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

use crate::cargo;

mod deb_check;
pub(crate) use deb_check::deb_check;

const BINARIES: [&str; 2] = ["mta-sts-daemon", "mta-sts-query"];
const PACKAGE: &str = "mtasts";

fn version(root: &Path) -> Result<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let in_package = manifest
        .split("[workspace.package]")
        .nth(1)
        .context("no [workspace.package] in Cargo.toml")?;
    in_package
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("version")?.trim_start();
            Some(rest.strip_prefix('=')?.trim().trim_matches('"').to_owned())
        })
        .context("no version in [workspace.package]")
}

fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed ({})", out.status);
    Ok(out.stdout)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not run {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Release binaries, man pages, completions, examples, units and docs in `target/dist/`, as a tarball
/// with a SHA-256 checksum file beside it. Returns the unpacked tree the tarball was made from.
pub(crate) fn dist(root: &Path) -> Result<PathBuf> {
    let version = version(root)?;
    let mut args = vec!["build", "--release", "--locked"];
    for bin in BINARIES {
        args.extend(["-p", bin]);
    }
    cargo(root, &args, &[])?;

    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let release = target_dir.join("release");
    let arch = std::env::consts::ARCH;
    let name = format!("{PACKAGE}-{version}-{arch}-linux");
    let out = root.join("target/dist");
    let tree = out.join(&name);
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }

    for bin in BINARIES {
        let exe = release.join(bin);
        fs::create_dir_all(tree.join("bin"))?;
        fs::copy(&exe, tree.join("bin").join(bin))
            .with_context(|| format!("copying {}", exe.display()))?;
        let section = if bin == "mta-sts-daemon" { 8 } else { 1 };
        let page = output(Command::new(&exe).args(["--generate", "man"]))?;
        write(
            &tree.join(format!("man/man{section}/{bin}.{section}")),
            page,
        )?;
        for (shell, file) in [
            ("bash", format!("completions/bash/{bin}")),
            ("zsh", format!("completions/zsh/_{bin}")),
            ("fish", format!("completions/fish/{bin}.fish")),
        ] {
            let script =
                output(Command::new(&exe).args(["--generate", &format!("complete-{shell}")]))?;
            write(&tree.join(file), script)?;
        }
    }
    fs::copy(root.join("docs/man/mta-sts-daemon.yml.5"), {
        fs::create_dir_all(tree.join("man/man5"))?;
        tree.join("man/man5/mta-sts-daemon.yml.5")
    })
    .context("copying docs/man/mta-sts-daemon.yml.5")?;
    copy_dir(&root.join("config_examples"), &tree.join("config_examples"))?;
    copy_dir(&root.join("contrib"), &tree.join("contrib"))?;
    copy_dir(&root.join("docs"), &tree.join("docs"))?;
    for file in ["README.md", "CHANGELOG.md", "LICENSE-MIT", "LICENSE-APACHE"] {
        fs::copy(root.join(file), tree.join(file)).with_context(|| format!("copying {file}"))?;
    }

    let tarball = out.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .current_dir(&out)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-czf",
        ])
        .arg(&tarball)
        .arg(&name))?;
    let sum = output(
        Command::new("sha256sum")
            .current_dir(&out)
            .arg(tarball.file_name().unwrap_or_default()),
    )?;
    write(&out.join(format!("{name}.tar.gz.sha256")), sum)?;
    eprintln!("xtask: wrote {}", tarball.display());
    Ok(tree)
}

fn gzip(path: &Path) -> Result<()> {
    run(Command::new("gzip").args(["-9nf"]).arg(path))
}

/// Builds `target/dist/mtasts_<version>_<arch>.deb` from the `dist` tree with `dpkg-deb`.
pub(crate) fn deb(root: &Path) -> Result<PathBuf> {
    let tree = dist(root)?;
    let version = version(root)?;
    let arch = String::from_utf8(output(Command::new("dpkg").arg("--print-architecture"))?)?
        .trim()
        .to_owned();
    let stage = root.join("target/dist/deb");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    for bin in BINARIES {
        let to = stage.join("usr/bin").join(bin);
        fs::create_dir_all(to.parent().unwrap_or(&stage))?;
        fs::copy(tree.join("bin").join(bin), &to)?;
    }
    for section in [1, 5, 8] {
        let dir = tree.join(format!("man/man{section}"));
        if dir.exists() {
            let to = stage.join(format!("usr/share/man/man{section}"));
            copy_dir(&dir, &to)?;
            for page in fs::read_dir(&to)? {
                gzip(&page?.path())?;
            }
        }
    }
    copy_dir(
        &tree.join("completions/bash"),
        &stage.join("usr/share/bash-completion/completions"),
    )?;
    copy_dir(
        &tree.join("completions/zsh"),
        &stage.join("usr/share/zsh/vendor-completions"),
    )?;
    copy_dir(
        &tree.join("completions/fish"),
        &stage.join("usr/share/fish/vendor_completions.d"),
    )?;
    copy_dir(
        &root.join("contrib/systemd"),
        &stage.join("usr/lib/systemd/system"),
    )?;
    // The shipped configuration means what Debian's postfix-mta-sts-resolver ships (SQLite at
    // /var/lib/mta-sts/cache.db), so replacing that package keeps an unmodified host's cache. It may hold store
    // passwords: 0640 (postinst gives it the daemon's group).
    let conffile = stage.join("etc/mta-sts-daemon.yml");
    fs::create_dir_all(stage.join("etc"))?;
    fs::copy(
        root.join("config_examples/mta-sts-daemon.yml.default"),
        &conffile,
    )
    .context("copying config_examples/mta-sts-daemon.yml.default")?;
    fs::set_permissions(&conffile, fs::Permissions::from_mode(0o640))?;
    let doc = stage.join(format!("usr/share/doc/{PACKAGE}"));
    copy_dir(&root.join("config_examples"), &doc.join("examples"))?;
    copy_dir(&root.join("docs"), &doc.join("docs"))?;
    fs::copy(root.join("README.md"), doc.join("README.md"))?;
    fs::copy(root.join("CHANGELOG.md"), doc.join("changelog"))?;
    gzip(&doc.join("changelog"))?;
    write(
        &doc.join("copyright"),
        format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: mtasts\n\nFiles: *\nCopyright: The mtasts developers\n\
             License: MIT or Apache-2.0\n\n{}\n\n{}\n",
            fs::read_to_string(root.join("LICENSE-MIT"))?,
            "The Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0."
        ),
    )?;

    let installed_kib = dir_size(&stage)?.div_ceil(1024);
    let control = format!(
        "Package: {PACKAGE}\nVersion: {version}-1\nArchitecture: {arch}\n\
         Maintainer: The mtasts developers <mtasts@localhost>\nInstalled-Size: {installed_kib}\n\
         Depends: libc6, adduser, init-system-helpers (>= 1.54~)\nSuggests: postfix\n\
         Conflicts: postfix-mta-sts-resolver\nReplaces: postfix-mta-sts-resolver\n\
         Provides: postfix-mta-sts-resolver\nSection: mail\nPriority: optional\n\
         Homepage: https://github.com/mtasts/mtasts\n\
         Description: MTA-STS (RFC 8461) policy daemon for Postfix\n \
         mta-sts-daemon answers Postfix's smtp_tls_policy_maps socketmap lookups with the\n \
         MTA-STS policy of the next-hop domain; a drop-in replacement for\n \
         postfix-mta-sts-resolver. mta-sts-query shows what policy a domain publishes.\n"
    );
    write(&stage.join("DEBIAN/control"), control)?;
    write(&stage.join("DEBIAN/conffiles"), "/etc/mta-sts-daemon.yml\n")?;
    // The maintainer scripts (xtask/src/dist/): the shared `_mta-sts` user, state created by this package
    // recorded so that purge deletes only that, and the administrator's enable state kept.
    for (name, body) in [
        ("postinst", include_str!("dist/postinst")),
        ("prerm", include_str!("dist/prerm")),
        ("postrm", include_str!("dist/postrm")),
    ] {
        let path = stage.join("DEBIAN").join(name);
        write(&path, body)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    let deb = root.join(format!("target/dist/{PACKAGE}_{version}-1_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&stage)
        .arg(&deb))?;
    eprintln!("xtask: wrote {}", deb.display());
    Ok(deb)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        total += if entry.file_type()?.is_dir() {
            dir_size(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}
