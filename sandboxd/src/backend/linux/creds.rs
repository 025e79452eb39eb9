//! Dropping from root to the caller's credentials in the command child: no
//! capabilities in any set (bounding included, so nothing can be regained
//! through exec), the caller's uid, gid and groups, and no_new_privs.

use crate::backend::spec::Credentials;
use caps::errors::CapsError;
use caps::CapSet;
use nix::unistd::{Gid, Uid};
use std::io;

/// A credential step that failed; the message names the step.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("drop capability {cap} from the bounding set: {source}")]
    Bounding { cap: u32, source: io::Error },
    #[error("setgroups {groups:?}: {source}")]
    SetGroups {
        groups: Vec<u32>,
        source: nix::Error,
    },
    #[error("setresgid {gid}: {source}")]
    SetGid { gid: u32, source: nix::Error },
    #[error("setresuid {uid}: {source}")]
    SetUid { uid: u32, source: nix::Error },
    #[error("clear {set} capabilities: {source}")]
    ClearCaps {
        set: &'static str,
        source: CapsError,
    },
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("verify credentials: {0}")]
    Verify(String),
}

/// Turns the calling (root, single-threaded) process into `creds` with no
/// capabilities and no_new_privs set, then checks that this holds.
pub fn drop_to(creds: &Credentials) -> Result<(), CredsError> {
    // The bounding set can only be lowered with CAP_SETPCAP, so while root.
    clear_bounding_set()?;

    let groups: Vec<Gid> = creds.groups.iter().copied().map(Gid::from_raw).collect();
    nix::unistd::setgroups(&groups).map_err(|source| CredsError::SetGroups {
        groups: creds.groups.clone(),
        source,
    })?;
    let gid = Gid::from_raw(creds.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|source| CredsError::SetGid {
        gid: creds.gid,
        source,
    })?;
    let uid = Uid::from_raw(creds.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|source| CredsError::SetUid {
        uid: creds.uid,
        source,
    })?;

    // Leaving uid 0 clears permitted/effective/ambient unless securebits say
    // otherwise; clear every set explicitly rather than rely on that.
    for (set, name) in [
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        caps::clear(None, set).map_err(|source| CredsError::ClearCaps { set: name, source })?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(CredsError::NoNewPrivs)?;
    verify(creds)
}

/// Drops every capability the kernel knows from the bounding set. The kernel
/// answers EINVAL past its last capability, which ends the loop.
fn clear_bounding_set() -> Result<(), CredsError> {
    for cap in 0..64u32 {
        // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let source = io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                return Ok(());
            }
            return Err(CredsError::Bounding { cap, source });
        }
    }
    Ok(())
}

/// Checks the outcome through the kernel's own view: ids, groups, empty
/// capability sets (bounding included) and no_new_privs.
fn verify(creds: &Credentials) -> Result<(), CredsError> {
    let uids = nix::unistd::getresuid().map_err(|e| CredsError::Verify(e.to_string()))?;
    let gids = nix::unistd::getresgid().map_err(|e| CredsError::Verify(e.to_string()))?;
    if [uids.real, uids.effective, uids.saved] != [Uid::from_raw(creds.uid); 3]
        || [gids.real, gids.effective, gids.saved] != [Gid::from_raw(creds.gid); 3]
    {
        return Err(CredsError::Verify(format!(
            "ids are {uids:?}/{gids:?}, wanted {}/{}",
            creds.uid, creds.gid
        )));
    }
    let mut groups: Vec<u32> = nix::unistd::getgroups()
        .map_err(|e| CredsError::Verify(e.to_string()))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    let mut wanted = creds.groups.clone();
    groups.sort_unstable();
    groups.dedup();
    wanted.sort_unstable();
    wanted.dedup();
    if groups != wanted {
        return Err(CredsError::Verify(format!(
            "groups are {groups:?}, wanted {wanted:?}"
        )));
    }
    for (set, name) in [
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
        (CapSet::Bounding, "bounding"),
    ] {
        let held = caps::read(None, set).map_err(|e| CredsError::Verify(e.to_string()))?;
        if !held.is_empty() {
            return Err(CredsError::Verify(format!(
                "{name} capabilities still hold {held:?}"
            )));
        }
    }
    match nix::sys::prctl::get_no_new_privs() {
        Ok(true) => Ok(()),
        Ok(false) => Err(CredsError::Verify("no_new_privs is not set".into())),
        Err(e) => Err(CredsError::Verify(format!("read no_new_privs: {e}"))),
    }
}
