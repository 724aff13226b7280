//! The pidfile (`-p`): created exclusively, never through a symbolic link, mode 0644; a stale one is replaced.
//!
//! The file is opened with `O_CREAT|O_EXCL|O_NOFOLLOW`, so the pid is never written through a link another
//! user planted (issue 11 row 9), and gets mode 0644 whatever the umask. When the path exists already:
//!
//! - a symbolic link, or anything but a regular file, is refused;
//! - a regular file naming a running process (another daemon) is refused;
//! - a regular file naming no running process (or holding no pid) is stale, left by a daemon that could not
//!   remove it (killed, or without the right to after dropping privileges): it is removed and created again.
//!
//! At exit the file is removed if it still holds this process's pid. After `-u`/`-g` the daemon may no longer
//! write the directory (`/run` is root's): the file then stays, and the next start replaces it as stale.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tracing::{debug, info, warn};

/// The pidfile's mode: readable by everyone, written by its owner.
const MODE: u32 = 0o644;

/// The most bytes read from an existing pidfile (a pid and a newline; more is not a pidfile of ours).
const MAX_READ: u64 = 64;

/// Why the pidfile could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PidfileError {
    /// Creating, reading, writing or removing it failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The path is a symbolic link: refused, the pid is never written through one.
    #[error("it is a symbolic link (refused: remove it if it is safe)")]
    Symlink,
    /// The path is a directory, a socket, a device…
    #[error("it exists and is not a regular file")]
    NotRegular,
    /// It names a running process: another daemon uses this pidfile.
    #[error("process {pid} is running (another mta-sts-daemon?); stop it or use another pidfile")]
    Running {
        /// The pid it holds.
        pid: i32,
    },
}

/// A pidfile holding this process's pid, removed when dropped (when this process still may).
#[derive(Debug)]
pub(crate) struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    /// Creates `path` holding this process's pid (see the [module docs](self) for an existing path).
    pub(crate) fn create(path: &Path) -> Result<Self, PidfileError> {
        let pid = std::process::id();
        let mut file = match create_exclusive(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                check_stale(path)?;
                std::fs::remove_file(path)?;
                info!(path = %path.display(), "stale pidfile replaced");
                create_exclusive(path)?
            }
            Err(error) => return Err(error.into()),
        };
        // The umask may have taken bits from the mode given at creation.
        file.set_permissions(std::fs::Permissions::from_mode(MODE))?;
        file.write_all(format!("{pid}\n").as_bytes())?;
        Ok(Self {
            path: path.to_owned(),
            pid,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Only our own: a successor may have replaced it meanwhile.
        if read_pid(&self.path).ok().flatten() != i32::try_from(self.pid).ok() {
            debug!(path = %self.path.display(), "pidfile no longer ours; left as it is");
            return;
        }
        if let Err(error) = std::fs::remove_file(&self.path) {
            // Typically: privileges were dropped and the directory is root's. The next start replaces it.
            warn!(path = %self.path.display(), %error, "cannot remove the pidfile (the next start replaces it)");
        }
    }
}

/// Opens `path` for writing only if it does not exist, never through a symbolic link.
fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// `Ok` when the existing `path` is a stale pidfile: a regular file naming no running process.
fn check_stale(path: &Path) -> Result<(), PidfileError> {
    let kind = std::fs::symlink_metadata(path)?.file_type();
    if kind.is_symlink() {
        return Err(PidfileError::Symlink);
    }
    if !kind.is_file() {
        return Err(PidfileError::NotRegular);
    }
    match read_pid(path)? {
        // Our own pid in a file left from before a reboot (or a container's pid 1) is stale too.
        Some(pid) if is_running(pid) && u32::try_from(pid).ok() != Some(std::process::id()) => {
            Err(PidfileError::Running { pid })
        }
        _ => Ok(()),
    }
}

/// The pid `path` holds, if it holds one; read without following a symbolic link.
fn read_pid(path: &Path) -> io::Result<Option<i32>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut text = String::new();
    if file.take(MAX_READ).read_to_string(&mut text).is_err() {
        return Ok(None);
    }
    Ok(text.trim().parse().ok().filter(|pid: &i32| *pid > 0))
}

/// Whether process `pid` exists (signal 0: `EPERM` means it exists under another user).
fn is_running(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_with_mode_0644_and_removed_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.pid");
        let pidfile = Pidfile::create(&path).expect("create");
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o7777, MODE);
        assert_eq!(
            read_pid(&path).expect("read"),
            i32::try_from(std::process::id()).ok()
        );
        drop(pidfile);
        assert!(!path.exists());
    }

    #[test]
    fn stale_and_empty_pidfiles_are_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.pid");
        // Pid 0 and garbage name no process; i32::MAX is above any pid_max.
        for stale in ["", "garbage\n", "0\n", &format!("{}\n", i32::MAX)] {
            std::fs::write(&path, stale).expect("write");
            let pidfile = Pidfile::create(&path).unwrap_or_else(|e| panic!("{stale:?}: {e}"));
            assert_eq!(
                read_pid(&path).expect("read"),
                i32::try_from(std::process::id()).ok()
            );
            drop(pidfile);
        }
    }

    #[test]
    fn a_symlink_a_directory_and_a_live_pid_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(Pidfile::create(&link), Err(PidfileError::Symlink)));
        assert!(!target.exists(), "written through the link");

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        assert!(matches!(
            Pidfile::create(&sub),
            Err(PidfileError::NotRegular)
        ));

        // Pid 1 always runs.
        let live = dir.path().join("live.pid");
        std::fs::write(&live, "1\n").expect("write");
        assert!(matches!(
            Pidfile::create(&live),
            Err(PidfileError::Running { pid: 1 })
        ));
        assert_eq!(std::fs::read_to_string(&live).expect("read"), "1\n");
    }
}
