//! `cargo xtask dist`, `deb` and `deb-check`: release artifacts.
//!
//! Man pages and shell completions come from the binaries' own clap definitions (`--generate …`, as
//! ripgrep does), so they can never drift from the flags the binaries accept. The configuration file's
//! page, `mta-sts-daemon.yml(5)`, is written by hand in `docs/man/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::cargo;

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

const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd mta-sts >/dev/null; then
        adduser --system --group --home /var/lib/mta-sts \
            --gecos "MTA-STS policy daemon" mta-sts >/dev/null
    fi
    install -d -o mta-sts -g mta-sts -m 0750 /var/lib/mta-sts
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null || true
        systemctl enable mta-sts-daemon.service >/dev/null || true
        systemctl restart mta-sts-daemon.service >/dev/null || true
    fi
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop mta-sts-daemon.socket mta-sts-daemon.service >/dev/null 2>&1 || true
    systemctl disable mta-sts-daemon.socket mta-sts-daemon.service >/dev/null 2>&1 || true
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/mta-sts
    if getent passwd mta-sts >/dev/null && command -v deluser >/dev/null; then
        deluser --quiet --system mta-sts >/dev/null || true
    fi
fi
exit 0
"#;

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
    // The shipped configuration: in-memory cache, loopback listener.
    fs::create_dir_all(stage.join("etc"))?;
    fs::copy(
        root.join("config_examples/mta-sts-daemon.yml.internal"),
        stage.join("etc/mta-sts-daemon.yml"),
    )
    .context("copying config_examples/mta-sts-daemon.yml.internal")?;
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
         Depends: libc6, adduser\nSuggests: postfix\nSection: mail\nPriority: optional\n\
         Homepage: https://github.com/mtasts/mtasts\n\
         Description: MTA-STS (RFC 8461) policy daemon for Postfix\n \
         mta-sts-daemon answers Postfix's smtp_tls_policy_maps socketmap lookups with the\n \
         MTA-STS policy of the next-hop domain; a drop-in replacement for\n \
         postfix-mta-sts-resolver. mta-sts-query shows what policy a domain publishes.\n"
    );
    write(&stage.join("DEBIAN/control"), control)?;
    write(&stage.join("DEBIAN/conffiles"), "/etc/mta-sts-daemon.yml\n")?;
    for (name, body) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        let path = stage.join("DEBIAN").join(name);
        write(&path, body)?;
        run(Command::new("chmod").arg("0755").arg(&path))?;
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

/// Builds the .deb, installs it, starts the installed daemon with the installed config, asks it through
/// Postfix's `postmap -q`, stops it and removes the package. Needs root, dpkg and postmap.
pub(crate) fn deb_check(root: &Path) -> Result<()> {
    let deb = deb(root)?;
    run(Command::new("dpkg").arg("-i").arg(&deb))?;
    let result = (|| -> Result<()> {
        ensure!(
            Path::new("/usr/bin/mta-sts-daemon").exists(),
            "dpkg -i did not install the daemon"
        );
        check_installed_pages()?;
        check_installed_units()?;
        ensure!(
            Path::new("/etc/mta-sts-daemon.yml").exists(),
            "dpkg -i did not install the config"
        );
        let mut daemon = Command::new("/usr/bin/mta-sts-daemon")
            .args(["-c", "/etc/mta-sts-daemon.yml"])
            .spawn()
            .context("starting the installed daemon")?;
        // postmap refuses to run without a main.cf; an unconfigured Postfix package has none.
        let postfix_dir = root.join("target/dist/postfix-conf");
        write(&postfix_dir.join("main.cf"), "")?;
        let answer = (|| -> Result<()> {
            // A parent-domain key must be NOTFOUND without any network access (RFC 8461 §3.4):
            // postmap -q prints nothing and exits 1 for NOTFOUND, 0 for a hit, 2+ on a lookup error; a refused
            // connection also exits 1, but with a warning on stderr, so NOTFOUND means both streams are empty.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let out = Command::new("postmap")
                    .arg("-c")
                    .arg(&postfix_dir)
                    .args([
                        "-q",
                        ".example.com",
                        "socketmap:inet:127.0.0.1:8461:postfix",
                    ])
                    .output()
                    .context("running postmap (apt-get install postfix)")?;
                match out.status.code() {
                    Some(1) if out.stdout.is_empty() && out.stderr.is_empty() => return Ok(()),
                    _ if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    code => bail!(
                        "postmap -q against the installed daemon: exit {code:?}, stdout {:?}, stderr {:?}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                }
            }
        })();
        daemon.kill().ok();
        daemon.wait().ok();
        answer
    })();
    run(Command::new("dpkg").args(["-r", PACKAGE]))?;
    result?;
    ensure!(
        !Path::new("/usr/bin/mta-sts-daemon").exists(),
        "dpkg -r left the daemon installed"
    );
    eprintln!("xtask: deb-check passed: installed, answered postmap -q, removed");
    Ok(())
}

/// Every installed man page renders with `man -l` without warnings, and every bash completion loads.
fn check_installed_pages() -> Result<()> {
    for page in [
        "/usr/share/man/man8/mta-sts-daemon.8.gz",
        "/usr/share/man/man1/mta-sts-query.1.gz",
        "/usr/share/man/man5/mta-sts-daemon.yml.5.gz",
    ] {
        let out = Command::new("man")
            .args(["--warnings", "-l", page])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .context("running man (apt-get install man-db)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success() && out.stdout.len() > 200 && stderr.trim().is_empty(),
            "man -l {page} failed or warned: {stderr}"
        );
    }
    for bin in BINARIES {
        let script = format!(
            "source /usr/share/bash-completion/completions/{bin} && complete -p {bin} >/dev/null"
        );
        run(Command::new("bash").args(["-c", &script]))
            .with_context(|| format!("the bash completion of {bin} does not load"))?;
    }
    Ok(())
}

/// `systemd-analyze verify` accepts the installed units (their user, binary and directives).
fn check_installed_units() -> Result<()> {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args([
            "/usr/lib/systemd/system/mta-sts-daemon.service",
            "/usr/lib/systemd/system/mta-sts-daemon.socket",
        ])
        .output()
        .context("running systemd-analyze")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    Ok(())
}
