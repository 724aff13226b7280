//! `-u USER` / `-g GROUP`: looked up before anything is bound, given to the UNIX sockets the daemon creates, then
//! switched to once every socket is bound.
//!
//! The Python daemon switches ids before binding, so its UNIX socket belongs to that user and group; this daemon
//! binds as root (it may need a privileged port or a root-only directory) and switches afterwards, so it gives
//! the socket file the same owner and group itself ([`SocketOwner`]), before the socket listens: `mode: 0660`
//! with `-g postfix` gives Postfix a socket it can open.

use std::io;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};
use tracing::info;

use crate::StartError;

/// Who a UNIX socket file the daemon creates belongs to: the user and group it switches to (`None`: unchanged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SocketOwner {
    uid: Option<Uid>,
    gid: Option<Gid>,
}

impl SocketOwner {
    /// Gives `path` this owner and group (nothing to do when both are unchanged).
    pub(crate) fn apply(self, path: &Path) -> io::Result<()> {
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, self.uid.map(Uid::as_raw), self.gid.map(Gid::as_raw))
    }
}

/// The ids `-u`/`-g` name, looked up. With only `-u`, the user's primary group; with only `-g`, the current
/// user keeps its id.
#[derive(Debug, Clone)]
pub(crate) struct Privileges {
    user: Option<User>,
    gid: Gid,
}

impl Privileges {
    /// Looks up `user` and `group` (names or numeric ids); `None` when neither is given.
    ///
    /// # Errors
    ///
    /// A name that does not exist, or a failed lookup.
    pub(crate) fn resolve(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<Self>, StartError> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let user = match user {
            Some(name) => {
                let found = match name.parse::<u32>() {
                    Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                    Err(_) => User::from_name(name),
                };
                Some(
                    found
                        .map_err(|e| failed(format!("look up user {name}"), e))?
                        .ok_or_else(|| StartError::Privileges {
                            what: format!("user {name} does not exist"),
                            source: io::ErrorKind::NotFound.into(),
                        })?,
                )
            }
            None => None,
        };
        let gid = match group {
            Some(name) => match name.parse::<u32>() {
                Ok(gid) => Gid::from_raw(gid),
                Err(_) => {
                    Group::from_name(name)
                        .map_err(|e| failed(format!("look up group {name}"), e))?
                        .ok_or_else(|| StartError::Privileges {
                            what: format!("group {name} does not exist"),
                            source: io::ErrorKind::NotFound.into(),
                        })?
                        .gid
                }
            },
            None => user.as_ref().map_or_else(nix::unistd::getgid, |u| u.gid),
        };
        Ok(Some(Self { user, gid }))
    }

    /// The owner and group of the sockets created before the switch.
    pub(crate) fn socket_owner(&self) -> SocketOwner {
        SocketOwner {
            uid: self.user.as_ref().map(|u| u.uid),
            gid: Some(self.gid),
        }
    }

    /// Switches to the group, then the user (supplementary groups are dropped first when root).
    ///
    /// # Errors
    ///
    /// The process may not switch (not root).
    pub(crate) fn apply(&self) -> Result<(), StartError> {
        use nix::unistd::{setgid, setgroups, setuid};
        if Uid::effective().is_root() {
            setgroups(&[self.gid]).map_err(|e| failed("drop supplementary groups".into(), e))?;
        }
        setgid(self.gid).map_err(|e| failed(format!("switch to group {}", self.gid), e))?;
        if let Some(u) = &self.user {
            setuid(u.uid).map_err(|e| failed(format!("switch to user {}", u.name), e))?;
        }
        info!(uid = %nix::unistd::getuid(), gid = %nix::unistd::getgid(), "privileges dropped");
        Ok(())
    }
}

fn failed(what: String, source: nix::Error) -> StartError {
    StartError::Privileges {
        what,
        source: source.into(),
    }
}
