//! `serve --user NAME`: give up root once the listeners are bound, so ports below 1024
//! do not mean running every plugin's host as root.
//!
//! The user is looked up before anything is bound (a typo fails the start at once); the
//! switch happens after the first load, when every listener named at start holds its
//! socket: supplementary groups are dropped, then the group and the user are set (glibc
//! applies both to every thread of the process). A listener added later (a plugin
//! dropped into the folder) binds as that user, so below 1024 it is refused.

use nix::unistd::{Gid, Uid, User, setgid, setgroups, setuid};

/// A user to become, looked up by name.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// Why `--user` cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user in the password database.
    #[error("--user {0}: there is no such user (see getent passwd)")]
    NoSuchUser(String),
    /// Looking the user up failed.
    #[error("--user {0}: cannot look the user up")]
    Lookup(String, #[source] nix::Error),
    /// Only root can become another user.
    #[error("--user {name}: only root can switch to another user (running as uid {uid}); start as root or drop --user")]
    NotRoot {
        /// The user asked for.
        name: String,
        /// Who we are.
        uid: u32,
    },
    /// A step of the switch failed.
    #[error("--user {name}: {step} failed")]
    Switch {
        /// The user asked for.
        name: String,
        /// `setgroups`, `setgid` or `setuid`.
        step: &'static str,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
}

impl Target {
    /// Looks `name` up; only root may ask to become someone else.
    pub(crate) fn lookup(name: &str) -> Result<Target, PrivilegeError> {
        let user = User::from_name(name).map_err(|e| PrivilegeError::Lookup(name.into(), e))?;
        let user = user.ok_or_else(|| PrivilegeError::NoSuchUser(name.into()))?;
        let me = Uid::effective();
        if !me.is_root() && me != user.uid {
            return Err(PrivilegeError::NotRoot { name: name.into(), uid: me.as_raw() });
        }
        Ok(Target { name: name.into(), uid: user.uid, gid: user.gid })
    }

    /// Becomes this user for good (a no-op when we already are it).
    pub(crate) fn switch(&self) -> Result<(), PrivilegeError> {
        if Uid::effective() == self.uid && Uid::current() == self.uid {
            return Ok(());
        }
        let fail = |step| move |source| PrivilegeError::Switch { name: self.name.clone(), step, source };
        setgroups(&[self.gid]).map_err(fail("setgroups"))?;
        setgid(self.gid).map_err(fail("setgid"))?;
        setuid(self.uid).map_err(fail("setuid"))?;
        tracing::info!(user = %self.name, uid = self.uid.as_raw(), gid = self.gid.as_raw(), "dropped privileges: running as {}", self.name);
        Ok(())
    }
}
