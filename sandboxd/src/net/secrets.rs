//! Secrets for header injection: read once from the files `[secrets]` names
//! (daemon config), held only in the daemon's memory, handed to the execs of
//! the users each one lists; plus those a caller brings to its own exec.

use crate::config::SecretSource;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `origin` is where the config names the file.
    #[error("{origin}: key `secrets.{name}.file`: {path}: {message}")]
    File {
        origin: String,
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
    /// Reads every source. A file that is missing, not a regular file, a
    /// symbolic link, not root-owned or open to others than root is an
    /// error naming it and where the config names it. One trailing newline
    /// is dropped.
    pub fn load(sources: &BTreeMap<String, SecretSource>) -> Result<SecretStore, SecretError> {
        let mut secrets = BTreeMap::new();
        for (name, src) in sources {
            let err = |message: String| SecretError::File {
                origin: src.origin.to_string(),
                name: name.clone(),
                path: src.file.display().to_string(),
                message,
            };
            let text = read_private(&src.file).map_err(err)?;
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

    /// The names in the secrets' `users` that are neither a uid nor a user
    /// of `etc_passwd` (the text of /etc/passwd, where names are looked up):
    /// nobody gets a secret by such a name. As `(secret, name)`.
    pub fn unknown_users(&self, etc_passwd: &str) -> Vec<(String, String)> {
        let known: std::collections::HashSet<&str> = etc_passwd
            .lines()
            .filter_map(|l| l.split(':').next())
            .collect();
        self.secrets
            .iter()
            .flat_map(|(n, s)| s.users.iter().map(move |u| (n, u)))
            .filter(|(_, u)| u.parse::<u32>().is_err() && !known.contains(u.as_str()))
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect()
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

/// The text of the file at `path`, opened without following a symbolic
/// link there and checked on the open file (no swap between check and
/// read): a regular file owned by root with no access for group or others.
fn read_private(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO placed there must not hang the start.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symbolic link (name the file itself)".to_string(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "must be owned by root and not readable by group or others (mode {:o}, uid {})",
            meta.mode() & 0o7777,
            meta.uid()
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
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
                    origin: crate::policy::model::Origin {
                        file: "/etc/sandboxd/sandboxd.toml".into(),
                        line: 7,
                    },
                },
            )])
        };
        let e = SecretStore::load(&src(&["alice"])).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/sandboxd/sandboxd.toml:7: key `secrets.TOK.file`: ")
                && e.contains("not readable by group or others"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = SecretStore::load(&src(&["alice", "1001"])).unwrap();
        assert_eq!(s.for_user(1000, Some("alice"))["TOK"], "s3cret");
        assert_eq!(s.for_user(1001, None)["TOK"], "s3cret");
        assert!(s.for_user(1002, Some("bob")).is_empty());
        assert!(!format!("{s:?}").contains("s3cret"));
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let s = SecretStore::load(&src(&["alice", "1001", "alcie"])).unwrap();
        assert_eq!(
            s.unknown_users(passwd),
            [("TOK".to_string(), "alcie".to_string())]
        );
    }

    /// The file is checked as opened: a symbolic link to a root-only file
    /// (which whoever may write the directory could swap in) and a FIFO
    /// (which would hang the start) are refused.
    #[test]
    fn links_and_special_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::write(&real, "s3cret\n").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (file, want) in [(&link, "a symbolic link"), (&fifo, "not a regular file")] {
            let src = BTreeMap::from([(
                "TOK".to_string(),
                SecretSource {
                    file: file.clone(),
                    users: vec![],
                    origin: crate::policy::model::Origin {
                        file: "c.toml".into(),
                        line: 2,
                    },
                },
            )]);
            let e = SecretStore::load(&src).unwrap_err().to_string();
            assert!(e.starts_with("c.toml:2: ") && e.contains(want), "{e}");
        }
    }
}
