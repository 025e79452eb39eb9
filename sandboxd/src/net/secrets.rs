//! Secrets for header injection: read once from the files `[secrets]` names
//! (daemon config), held only in the daemon's memory, handed to the execs of
//! the users each one lists; plus those a caller brings to its own exec.

use crate::config::SecretSource;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name}: {path}: {message}")]
    File {
        name: String,
        path: String,
        message: String,
    },
}

struct Secret {
    value: String,
    /// User names or numeric uids.
    users: Vec<String>,
}

/// The daemon's secrets.
#[derive(Default)]
pub struct SecretStore {
    secrets: BTreeMap<String, Secret>,
}

impl std::fmt::Debug for SecretStore {
    /// Names only: values never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.secrets.keys()).finish()
    }
}

impl SecretStore {
    /// Reads every source. A file that is missing, not root-owned or readable
    /// by others than root is an error naming it. One trailing newline is dropped.
    pub fn load(sources: &BTreeMap<String, SecretSource>) -> Result<SecretStore, SecretError> {
        let mut secrets = BTreeMap::new();
        for (name, src) in sources {
            let err = |message: String| SecretError::File {
                name: name.clone(),
                path: src.file.display().to_string(),
                message,
            };
            let meta = std::fs::metadata(&src.file).map_err(|e| err(e.to_string()))?;
            if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
                return Err(err(format!(
                    "must be owned by root and not readable by group or others (mode {:o}, uid {})",
                    meta.mode() & 0o7777,
                    meta.uid()
                )));
            }
            let text = std::fs::read_to_string(&src.file).map_err(|e| err(e.to_string()))?;
            let value = text.strip_suffix('\n').unwrap_or(&text).to_string();
            if value.contains(['\r', '\n']) {
                return Err(err("a secret is one line (it goes into a header)".into()));
            }
            secrets.insert(
                name.clone(),
                Secret {
                    value,
                    users: src.users.clone(),
                },
            );
        }
        Ok(SecretStore { secrets })
    }

    /// The secrets `uid` (named `user` in /etc/passwd, if it is) may use.
    pub fn for_user(&self, uid: u32, user: Option<&str>) -> BTreeMap<String, String> {
        let uid = uid.to_string();
        self.secrets
            .iter()
            .filter(|(_, s)| {
                s.users
                    .iter()
                    .any(|u| *u == uid || Some(u.as_str()) == user)
            })
            .map(|(n, s)| (n.clone(), s.value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_must_be_private_and_users_are_names_or_uids() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tok");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let src = |users: &[&str]| {
            BTreeMap::from([(
                "TOK".to_string(),
                SecretSource {
                    file: f.clone(),
                    users: users.iter().map(|u| u.to_string()).collect(),
                },
            )])
        };
        let e = SecretStore::load(&src(&["alice"])).unwrap_err().to_string();
        assert!(
            e.contains("secret TOK") && e.contains("not readable by group or others"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = SecretStore::load(&src(&["alice", "1001"])).unwrap();
        assert_eq!(s.for_user(1000, Some("alice"))["TOK"], "s3cret");
        assert_eq!(s.for_user(1001, None)["TOK"], "s3cret");
        assert!(s.for_user(1002, Some("bob")).is_empty());
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
