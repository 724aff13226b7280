//! `cargo xtask deb-check`: the Debian package on this machine, as an administrator meets it.
//!
//! Needs root, dpkg, Postfix's `postmap`, systemd's `systemd-socket-activate` and `systemd-analyze`, `man` and
//! `setpriv`; systemd itself need not run (units are checked and enabled offline). It installs and purges
//! packages, so it first purges any `mtasts` and `postfix-mta-sts-resolver` left on the machine. Scenarios:
//!
//! 1. Over Debian's `postfix-mta-sts-resolver` (a stub with its paths, conffile, user and maintainer-script
//!    behaviour): `dpkg -i` replaces it; its user, uid and state directory are kept; the conffile is 0640
//!    root:_mta-sts and names the same SQLite file; man pages render, completions load, units verify; the
//!    installed daemon, run as the socket unit would run it, answers `postmap` over TCP and over both UNIX
//!    sockets (relative paths from the queue directory, as a chrooted Postfix uses them, as user postfix).
//! 2. The administrator's enable state survives a reinstall and a remove + install.
//! 3. Rolling back to Debian's package works, and purging ours then leaves its state alone.
//! 4. A fresh install creates the user and directories; purge deletes exactly them.
//! 5. A host with our earlier `mta-sts` user: its files move to `_mta-sts`, the old user goes.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::{PACKAGE, output, run, write};

const DEBIAN_PACKAGE: &str = "postfix-mta-sts-resolver";
const USER: &str = "_mta-sts";
const STATE: &str = "/var/lib/mta-sts";
const SPOOL: &str = "/var/spool/postfix/run/mta-sts";
const CONF: &str = "/etc/mta-sts-daemon.yml";
const SOCKET_UNIT: &str = "/usr/lib/systemd/system/mta-sts-daemon.socket";
const SERVICE_UNIT: &str = "/usr/lib/systemd/system/mta-sts-daemon.service";
const SOCKET_LINK: &str = "/etc/systemd/system/sockets.target.wants/mta-sts-daemon.socket";
const SERVICE_LINK: &str = "/etc/systemd/system/multi-user.target.wants/mta-sts-daemon.service";
/// Left by Debian's package (as its own state) in its scenario; ours must never delete it.
const FOREIGN: &str = "/var/lib/mta-sts/foreign-state";

pub(crate) fn deb_check(root: &Path) -> Result<()> {
    let deb = super::deb(root)?;
    let stub = debian_stub(root)?;
    purge_all();
    let result = scenarios(&deb, &stub);
    purge_all();
    result?;
    eprintln!(
        "xtask: deb-check passed: replaces Debian's package and back, enable state kept, conffile 0640, \
         answered postmap over TCP and both UNIX sockets, purge deleted only its own state"
    );
    Ok(())
}

fn scenarios(deb: &Path, stub: &Path) -> Result<()> {
    // 1. Over Debian's package.
    dpkg_install(stub)?;
    let uid = uid_of(USER)?;
    write(Path::new(FOREIGN), "theirs\n")?;
    dpkg_install(deb)?;
    // Removed, its init script kept as a conffile (docs/migration.md: do not purge it afterwards).
    ensure!(
        status(DEBIAN_PACKAGE)? == "config-files",
        "{DEBIAN_PACKAGE} is not left removed with its configuration files"
    );
    ensure!(uid_of(USER)? == uid, "the {USER} user was re-created");
    ensure!(Path::new(FOREIGN).exists(), "{FOREIGN} is gone");
    ensure!(
        dpkg_owner(CONF)? == PACKAGE,
        "{CONF} does not belong to {PACKAGE}"
    );
    check_conffile()?;
    check_dir(SPOOL, USER, "postfix", 0o750)?;
    ensure!(
        enabled(SOCKET_LINK) && enabled(SERVICE_LINK),
        "a first installation enables the socket and the service"
    );
    check_installed_pages()?;
    check_installed_units()?;
    serve_and_query()?;
    let cache = fs::metadata(Path::new(STATE).join("cache.db")).context(
        "the daemon did not create /var/lib/mta-sts/cache.db (the packaged SQLite cache)",
    )?;
    ensure!(cache.uid() == uid, "cache.db is not owned by {USER}");

    // 2. The administrator's enable state.
    run(Command::new("systemctl").args(["disable", "mta-sts-daemon.socket"]))?;
    dpkg_install(deb)?;
    ensure!(
        !enabled(SOCKET_LINK),
        "a reinstall re-enabled the disabled socket unit"
    );
    ensure!(enabled(SERVICE_LINK), "a reinstall disabled the service");
    run(Command::new("dpkg").args(["-r", PACKAGE]))?;
    dpkg_install(deb)?;
    ensure!(
        !enabled(SOCKET_LINK),
        "remove + install re-enabled the disabled socket unit"
    );
    run(Command::new("systemctl").args(["enable", "mta-sts-daemon.socket"]))?;

    // 3. Back to Debian's package; then purging ours leaves its state alone.
    run(Command::new("dpkg").args(["-r", PACKAGE]))?;
    dpkg_install(stub)?;
    run(Command::new("dpkg").args(["--purge", PACKAGE]))?;
    ensure!(
        installed(DEBIAN_PACKAGE)?,
        "{DEBIAN_PACKAGE} is not installed"
    );
    ensure!(
        uid_of(USER)? == uid,
        "purging {PACKAGE} touched the {USER} user"
    );
    ensure!(
        Path::new(FOREIGN).exists() && Path::new(STATE).join("cache.db").exists(),
        "purging {PACKAGE} deleted Debian's package's state in {STATE}"
    );
    run(Command::new("dpkg").args(["--purge", DEBIAN_PACKAGE]))?;
    remove_test_state()?;

    // 4. A fresh installation: purge deletes what it created.
    dpkg_install(deb)?;
    check_dir(STATE, USER, USER, 0o750)?;
    check_conffile()?;
    run(Command::new("dpkg").args(["--purge", PACKAGE]))?;
    ensure!(user_absent(USER)?, "purge kept the {USER} user it created");
    for dir in [STATE, SPOOL, "/var/lib/mtasts"] {
        ensure!(
            !Path::new(dir).exists(),
            "purge kept {dir}, which it created"
        );
    }

    // 5. Our earlier versions' `mta-sts` user and directory move over.
    run(Command::new("adduser").args([
        "--quiet",
        "--system",
        "--group",
        "--no-create-home",
        "--home",
        STATE,
        "--gecos",
        "MTA-STS policy daemon",
        "mta-sts",
    ]))?;
    run(
        Command::new("install").args(["-d", "-o", "mta-sts", "-g", "mta-sts", "-m", "0750", STATE])
    )?;
    let old_file = Path::new(STATE).join("cache.db");
    write(&old_file, "")?;
    run(Command::new("chown")
        .args(["mta-sts:mta-sts"])
        .arg(&old_file))?;
    dpkg_install(deb)?;
    ensure!(
        user_absent("mta-sts")?,
        "the earlier mta-sts user is still there"
    );
    check_dir(STATE, USER, USER, 0o750)?;
    let moved = fs::metadata(&old_file)?;
    ensure!(
        (moved.uid(), moved.gid()) == (uid_of(USER)?, gid_of(USER)?),
        "the earlier user's files were not moved to {USER}"
    );
    run(Command::new("dpkg").args(["--purge", PACKAGE]))?;
    ensure!(
        !Path::new(STATE).exists(),
        "purge kept {STATE}, which our earlier version created"
    );
    Ok(())
}

/// `dpkg -i`, never asking about conffiles (standard input is not a terminal in CI).
fn dpkg_install(deb: &Path) -> Result<()> {
    run(Command::new("dpkg")
        .args(["-i", "--force-confdef", "--force-confold"])
        .arg(deb)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null()))
}

/// Purges both packages and what the scenarios create by hand; errors are ignored (nothing may be there).
fn purge_all() {
    for package in [PACKAGE, DEBIAN_PACKAGE] {
        let _ = Command::new("dpkg").args(["--purge", package]).output();
    }
    let _ = remove_test_state();
}

fn remove_test_state() -> Result<()> {
    for user in [USER, "mta-sts"] {
        if !user_absent(user)? {
            let _ = Command::new("deluser")
                .args(["--quiet", "--system", user])
                .output();
            let _ = Command::new("delgroup")
                .args(["--quiet", "--system", user])
                .output();
        }
    }
    for dir in [STATE, SPOOL, "/var/lib/mtasts"] {
        if Path::new(dir).exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {dir}"))?;
        }
    }
    // The parent the package may have created for the socket directory (left when empty only).
    let _ = fs::remove_dir("/var/spool/postfix/run");
    Ok(())
}

/// dpkg's status of `package`: `installed`, `config-files`, `not-installed`, … (empty when unknown).
fn status(package: &str) -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", package])
        .output()
        .context("running dpkg-query")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn installed(package: &str) -> Result<bool> {
    Ok(status(package)? == "installed")
}

fn dpkg_owner(path: &str) -> Result<String> {
    let out = String::from_utf8(output(Command::new("dpkg").args(["-S", path]))?)?;
    Ok(out.split(':').next().unwrap_or_default().trim().to_owned())
}

fn id(flag: &str, name: &str) -> Result<u32> {
    let out = String::from_utf8(output(Command::new("id").args([flag, name]))?)?;
    out.trim()
        .parse()
        .with_context(|| format!("id {flag} {name}: {out:?}"))
}

fn uid_of(user: &str) -> Result<u32> {
    id("-u", user)
}

fn gid_of(user: &str) -> Result<u32> {
    id("-g", user)
}

fn user_absent(user: &str) -> Result<bool> {
    let status = Command::new("getent")
        .args(["passwd", user])
        .stdout(Stdio::null())
        .status()
        .context("running getent")?;
    Ok(status.code() == Some(2))
}

fn group_id(group: &str) -> Result<u32> {
    let out = String::from_utf8(output(Command::new("getent").args(["group", group]))?)?;
    out.split(':')
        .nth(2)
        .and_then(|gid| gid.trim().parse().ok())
        .with_context(|| format!("getent group {group}: {out:?}"))
}

fn enabled(link: &str) -> bool {
    fs::symlink_metadata(link).is_ok()
}

fn check_dir(dir: &str, user: &str, group: &str, mode: u32) -> Result<()> {
    let meta = fs::metadata(dir).with_context(|| format!("{dir} is missing"))?;
    ensure!(meta.is_dir(), "{dir} is not a directory");
    ensure!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
            == (uid_of(user)?, group_id(group)?, mode),
        "{dir} is not {user}:{group} {mode:o}"
    );
    Ok(())
}

/// The conffile: 0640 root:_mta-sts, SQLite at Debian's path.
fn check_conffile() -> Result<()> {
    let meta = fs::metadata(CONF).with_context(|| format!("{CONF} is missing"))?;
    ensure!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777) == (0, group_id(USER)?, 0o640),
        "{CONF} is not root:{USER} 0640"
    );
    let text = fs::read_to_string(CONF)?;
    ensure!(
        text.lines().any(|l| l.trim() == "type: sqlite")
            && text.contains("/var/lib/mta-sts/cache.db"),
        "{CONF} does not keep policies in SQLite at /var/lib/mta-sts/cache.db:\n{text}"
    );
    Ok(())
}

/// The `[Socket]` settings of the installed socket unit that the emulation needs.
struct SocketUnit {
    listen: Vec<String>,
    user: String,
    group: String,
    mode: u32,
}

fn socket_unit() -> Result<SocketUnit> {
    let text = fs::read_to_string(SOCKET_UNIT)?;
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_owned())
            .collect()
    };
    let one = |key: &str| {
        values(key)
            .pop()
            .with_context(|| format!("no {key}= in {SOCKET_UNIT}"))
    };
    Ok(SocketUnit {
        listen: values("ListenStream"),
        user: one("SocketUser")?,
        group: one("SocketGroup")?,
        mode: u32::from_str_radix(&one("SocketMode")?, 8)?,
    })
}

/// Runs the installed daemon with the installed configuration the way the socket unit does (systemd holds
/// the listeners, the service runs as `_mta-sts`), then asks it with `postmap -q` over each listener: TCP as
/// root, the UNIX sockets as user postfix through the paths a chrooted Postfix uses (relative to the queue
/// directory). A parent-domain key is `NOTFOUND` without any network access (RFC 8461 §3.4).
fn serve_and_query() -> Result<()> {
    let unit = socket_unit()?;
    ensure!(
        unit.listen
            .iter()
            .any(|l| l == "/var/spool/postfix/run/mta-sts/mta-sts.sock")
            && unit
                .listen
                .iter()
                .any(|l| l == "/var/spool/postfix/private/mta-sts")
            && unit.listen.iter().any(|l| l == "127.0.0.1:8461"),
        "{SOCKET_UNIT} listens on {:?}",
        unit.listen
    );
    let unix: Vec<&String> = unit.listen.iter().filter(|l| l.starts_with('/')).collect();
    for path in &unix {
        let _ = fs::remove_file(path);
    }
    let mut activate = Command::new("systemd-socket-activate");
    for listen in &unit.listen {
        activate.arg("-l").arg(listen);
    }
    // setpriv execs in place: the daemon keeps the pid LISTEN_PID names.
    let mut daemon = activate
        .args([
            "setpriv",
            "--reuid",
            USER,
            "--regid",
            USER,
            "--init-groups",
            "--",
        ])
        .args(["/usr/bin/mta-sts-daemon", "-c", CONF])
        .stdin(Stdio::null())
        .spawn()
        .context("running systemd-socket-activate (apt-get install systemd)")?;
    let answered = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !unix.iter().all(|p| Path::new(p).exists()) {
            ensure!(
                Instant::now() < deadline,
                "systemd-socket-activate did not bind {unix:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // What systemd does with SocketUser=, SocketGroup= and SocketMode=.
        for path in &unix {
            run(Command::new("chown")
                .arg(format!("{}:{}", unit.user, unit.group))
                .arg(path))?;
            fs::set_permissions(path, fs::Permissions::from_mode(unit.mode))?;
        }
        // postmap refuses to run without a main.cf; an unconfigured Postfix package has none. The directory
        // must be readable by user postfix.
        let postfix_conf = PathBuf::from("/tmp/mtasts-deb-check-postfix");
        write(&postfix_conf.join("main.cf"), "")?;
        fs::set_permissions(&postfix_conf, fs::Permissions::from_mode(0o755))?;
        postmap_notfound(
            None,
            Path::new("/"),
            &postfix_conf,
            "socketmap:inet:127.0.0.1:8461:postfix",
        )?;
        for relative in ["run/mta-sts/mta-sts.sock", "private/mta-sts"] {
            postmap_notfound(
                Some("postfix"),
                Path::new("/var/spool/postfix"),
                &postfix_conf,
                &format!("socketmap:unix:{relative}:postfix"),
            )?;
        }
        Ok(())
    })();
    stop(&mut daemon);
    answered
}

fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `postmap -q .example.com MAP` (as `user`, from `cwd`) prints nothing and exits 1: NOTFOUND. A refused
/// connection also exits 1, but with a warning on stderr, so both streams must be empty. Retried for 30 s
/// while the daemon starts.
fn postmap_notfound(user: Option<&str>, cwd: &Path, conf: &Path, map: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut cmd = match user {
            Some(user) => {
                let mut cmd = Command::new("setpriv");
                cmd.args([
                    "--reuid",
                    user,
                    "--regid",
                    user,
                    "--init-groups",
                    "--",
                    "postmap",
                ]);
                cmd
            }
            None => Command::new("postmap"),
        };
        let out = cmd
            .arg("-c")
            .arg(conf)
            .args(["-q", ".example.com", map])
            .current_dir(cwd)
            .output()
            .context("running postmap (apt-get install postfix)")?;
        match out.status.code() {
            Some(1) if out.stdout.is_empty() && out.stderr.is_empty() => return Ok(()),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            code => bail!(
                "postmap -q .example.com {map} (user {user:?}, in {}): exit {code:?}, stdout {:?}, stderr {:?}",
                cwd.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
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
    for bin in super::BINARIES {
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
        .args(["verify", "--man=no", SERVICE_UNIT, SOCKET_UNIT])
        .output()
        .context("running systemd-analyze")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    Ok(())
}

/// A stand-in for Debian's `postfix-mta-sts-resolver` 1.1.2-1.1: the same package name and version, the same
/// files where ours has them (binaries, conffile with SQLite at /var/lib/mta-sts/cache.db, man pages), its
/// unit, and its maintainer scripts' effects (the `_mta-sts` system user, /var/lib/mta-sts 0755; purge deletes
/// both).
fn debian_stub(root: &Path) -> Result<PathBuf> {
    let stage = root.join("target/dist/debian-stub");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    for bin in super::BINARIES {
        let path = stage.join("usr/bin").join(bin);
        write(
            &path,
            "#!/bin/sh\necho \"stub of Debian's postfix-mta-sts-resolver\" >&2\nexit 1\n",
        )?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    write(
        &stage.join("etc/mta-sts-daemon.yml"),
        "# stub of Debian's default: the listener's defaults, policies in SQLite\n\
         cache:\n  type: sqlite\n  options:\n    filename: \"/var/lib/mta-sts/cache.db\"\n",
    )?;
    for page in [
        "usr/share/man/man1/mta-sts-daemon.1",
        "usr/share/man/man1/mta-sts-query.1",
        "usr/share/man/man5/mta-sts-daemon.yml.5",
    ] {
        write(&stage.join(page), ".TH STUB 1\nstub\n")?;
        super::gzip(&stage.join(page))?;
    }
    // Its second conffile: dpkg keeps it after the package is replaced (state `rc`, config-files).
    let init = stage.join("etc/init.d/postfix-mta-sts-resolver");
    write(&init, "#!/bin/sh\nexit 0\n")?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    write(
        &stage.join("lib/systemd/system/postfix-mta-sts-resolver.service"),
        "[Service]\nExecStart=/usr/bin/mta-sts-daemon --config /etc/mta-sts-daemon.yml\nUser=_mta-sts\n",
    )?;
    write(
        &stage.join("DEBIAN/control"),
        format!(
            "Package: {DEBIAN_PACKAGE}\nVersion: 1.1.2-1.1\nArchitecture: all\n\
             Maintainer: mtasts deb-check <mtasts@localhost>\nDepends: adduser\n\
             Description: stub of Debian's postfix-mta-sts-resolver for cargo xtask deb-check\n"
        ),
    )?;
    write(
        &stage.join("DEBIAN/conffiles"),
        "/etc/init.d/postfix-mta-sts-resolver\n/etc/mta-sts-daemon.yml\n",
    )?;
    let scripts = [
        (
            "postinst",
            "#!/bin/sh\nset -e\n\
             adduser --quiet --system --disabled-login --no-create-home --home /var/lib/mta-sts/ \
             --shell /usr/sbin/nologin --group _mta-sts\n\
             mkdir --parents --mode=0755 /var/lib/mta-sts/\nchown _mta-sts:_mta-sts /var/lib/mta-sts/\n",
        ),
        (
            "postrm",
            "#!/bin/sh\nset -e\nif [ \"$1\" = purge ]; then\n    rm -rf /var/lib/mta-sts/\n    \
             deluser --quiet --system _mta-sts >/dev/null 2>&1 || true\n    \
             delgroup --quiet --system _mta-sts >/dev/null 2>&1 || true\nfi\n",
        ),
    ];
    for (name, body) in scripts {
        let path = stage.join("DEBIAN").join(name);
        write(&path, body)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    let deb = root.join(format!("target/dist/{DEBIAN_PACKAGE}_1.1.2-1.1_all.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}
