//! Rules saved by `approve-always`: the command prefixes a user approved,
//! per profile, in a small file of its own in the state dir, read on every
//! exec of a profile that allows user rules.

use crate::policy::narrow::rule;
use crate::policy::Profile;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Saved rules per user and profile.
const MAX_AMENDMENTS: usize = 1024;
/// Words and bytes of one saved rule: a longer command approved `always` is
/// approved once and not saved, so that each rule stays small.
const MAX_AMENDMENT_WORDS: usize = 32;
const MAX_AMENDMENT_BYTES: usize = 4096;
/// Size of an amendments file, read on every exec: a larger one is not
/// read (its rules count as none), nor written.
const MAX_AMENDMENTS_FILE: u64 = 1 << 20;

/// An amendment file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AmendmentError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: already {MAX_AMENDMENTS} rules for profile {profile}")]
    Full { path: String, profile: String },
    #[error("{path}: larger than {MAX_AMENDMENTS_FILE} bytes, too large for an amendments file")]
    TooLarge { path: String },
    #[error("{path}: not a map of profile names to command prefixes: {source}")]
    Format {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Command prefixes a user approved with `approve-always`, per profile:
/// `STATE_DIR/amendments/UID.json` (mode 0600), `{"PROFILE": [["cmd", "arg"], ...]}`.
pub(super) struct Amendments {
    pub(super) dir: PathBuf,
    /// Serialises read-modify-write of the files.
    pub(super) lock: Mutex<()>,
}

type AmendmentFile = BTreeMap<String, Vec<Vec<String>>>;

impl Amendments {
    fn path(&self, uid: u32) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    fn load(&self, uid: u32) -> Result<AmendmentFile, AmendmentError> {
        let path = self.path(uid);
        let shown = || path.display().to_string();
        let io = |source| AmendmentError::Io {
            path: shown(),
            source,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AmendmentFile::new()),
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_AMENDMENTS_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_AMENDMENTS_FILE {
            return Err(AmendmentError::TooLarge { path: shown() });
        }
        serde_json::from_slice(&bytes).map_err(|source| AmendmentError::Format {
            path: shown(),
            source,
        })
    }

    /// The user's saved prefixes for `profile`. An unreadable or too large
    /// file counts as none (so the command is asked about) and is logged.
    pub(super) fn rules(&self, uid: u32, profile: &str) -> Vec<Vec<String>> {
        match self.load(uid) {
            Ok(mut f) => f.remove(profile).unwrap_or_default(),
            Err(e) => {
                tracing::error!(uid, error = %e, "reading amendments: ignored, commands are asked");
                Vec::new()
            }
        }
    }

    /// Adds `prefixes` to the user's rules for `profile`, durably.
    pub(super) fn save(
        &self,
        uid: u32,
        profile: &str,
        prefixes: &[Vec<String>],
    ) -> Result<(), AmendmentError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| AmendmentError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        let mut file = self.load(uid)?;
        let list = file.entry(profile.to_string()).or_default();
        for p in prefixes {
            if !list.contains(p) {
                list.push(p.clone());
            }
        }
        if list.len() > MAX_AMENDMENTS {
            return Err(AmendmentError::Full {
                path: self.path(uid).display().to_string(),
                profile: profile.to_string(),
            });
        }
        let path = self.path(uid);
        let tmp = self.dir.join(format!("{uid}.json.tmp"));
        let text = serde_json::to_vec_pretty(&file).map_err(|source| AmendmentError::Format {
            path: path.display().to_string(),
            source,
        })?;
        // Not written past what is read back.
        if text.len() as u64 > MAX_AMENDMENTS_FILE {
            return Err(AmendmentError::TooLarge {
                path: path.display().to_string(),
            });
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

/// Whether `approve-always` can save `prefixes` under `profile`; else why
/// not, and the rule that says so (if one does).
pub(super) fn amendable(
    profile: &Profile,
    prefixes: &[Vec<String>],
) -> Result<(), (String, String)> {
    let allow = &profile.allow_user_profiles;
    if !allow.value {
        let note = format!(
            "amendment not saved: profile {} does not allow user rules; approved once",
            profile.name
        );
        return Err((
            note,
            rule(&allow.origin, "allow_user_profiles", allow.value),
        ));
    }
    if prefixes.is_empty() {
        let note = "amendment not saved: the command has words the shell would still expand; approved once";
        return Err((note.into(), String::new()));
    }
    let long = |p: &Vec<String>| {
        p.len() > MAX_AMENDMENT_WORDS
            || p.iter().map(String::len).sum::<usize>() > MAX_AMENDMENT_BYTES
    };
    if prefixes.iter().any(long) {
        let note = format!(
            "amendment not saved: a command of more than {MAX_AMENDMENT_WORDS} words or {MAX_AMENDMENT_BYTES} bytes is not saved as a rule; approved once"
        );
        return Err((note, String::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::prefix;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn amendments_are_saved_0600_and_read_back_per_profile() {
        let dir = tempfile::tempdir().unwrap();
        let a = Amendments {
            dir: dir.path().join("amendments"),
            lock: Mutex::new(()),
        };
        a.save(1000, "ws", &[prefix(&["rm", "x"])]).unwrap();
        a.save(1000, "ws", &[prefix(&["rm", "x"]), prefix(&["make"])])
            .unwrap();
        let f = a.load(1000).unwrap();
        assert_eq!(f["ws"], vec![prefix(&["rm", "x"]), prefix(&["make"])]);
        assert!(a.load(1001).unwrap().is_empty());
        let mode = std::fs::metadata(a.path(1000))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(a.path(1001), "not json").unwrap();
        assert!(matches!(a.load(1001), Err(AmendmentError::Format { .. })));
        std::fs::write(a.path(1001), " ".repeat(1 << 20) + "{}").unwrap();
        assert!(matches!(a.load(1001), Err(AmendmentError::TooLarge { .. })));
    }
}
