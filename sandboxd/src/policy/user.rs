//! User profiles: `$HOME/.config/sandboxd/profiles/NAME.toml`, kept by a
//! caller to narrow a managed profile further, never to widen it.
//!
//! They are read afresh on every use (exec, list, show, check), by the root
//! daemon but only through directories and a file the caller owns: every
//! component is opened with `O_NOFOLLOW` and must belong to the caller or
//! root and be writable by nobody else, and the file itself must belong to the
//! caller, so a profile can never be a link to someone else's file.
//!
//! A user profile must `extends` a managed profile that sets
//! `allow_user_profiles = true`. It is merged onto that profile's table with
//! one difference from `extends` between managed profiles: the lists that
//! grant something (`filesystem.read/write`, `network.allow/ports/methods/
//! allow_cidrs`, `env.pass`, `commands.allow`) replace the managed list, so
//! that they can shrink; the lists that take something away append. The
//! result is then compared with the managed profile, and anything wider is
//! refused naming the user's line and the managed rule.

use super::domain::{cidr_contains, ip_literal, parse_cidr, DomainPattern};
use super::load::{build, PolicyError, PolicyStore};
use super::model::*;
use super::shell;
use super::tree::{self, Node, Table, TreeError, Value};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Where a user keeps profiles, under their home.
pub const USER_DIR: &str = ".config/sandboxd/profiles";

/// Bigger files are refused: a profile is a few lines.
const MAX_SIZE: u64 = 1 << 20;

/// At most this many user profiles are listed (by name order), so that a
/// directory of many files cannot keep the daemon reading.
const MAX_LISTED: usize = 256;

/// Lists that grant: in a user profile they replace the managed list.
const REPLACED: &[(&str, &str)] = &[
    ("filesystem", "read"),
    ("filesystem", "write"),
    ("network", "allow"),
    ("network", "ports"),
    ("network", "methods"),
    ("network", "allow_cidrs"),
    ("env", "pass"),
    ("commands", "allow"),
];

/// A user profile's name, and the profile or why it was refused.
pub type Loaded = (String, Result<Profile, PolicyError>);

/// The caller's user profiles, under `home`.
pub struct UserProfiles<'a> {
    pub store: &'a PolicyStore,
    pub uid: u32,
    pub home: &'a Path,
}

impl UserProfiles<'_> {
    fn dir(&self) -> PathBuf {
        self.home.join(USER_DIR)
    }

    /// User profile `name`; `Ok(None)` when the caller has no such file.
    pub fn get(&self, name: &str) -> Result<Option<Profile>, PolicyError> {
        if !valid_name(name) {
            return Ok(None);
        }
        let Some(dir) = open_dir(&self.dir(), self.uid)? else {
            return Ok(None);
        };
        let file = self.dir().join(format!("{name}.toml"));
        let Some(text) = read_file(&dir, &file, self.uid)? else {
            return Ok(None);
        };
        self.parse(name, &file, &text).map(Some)
    }

    /// Every user profile of the caller, by name, each loaded or refused.
    pub fn all(&self) -> Result<Vec<Loaded>, PolicyError> {
        let path = self.dir();
        let Some(dir) = open_dir(&path, self.uid)? else {
            return Ok(Vec::new());
        };
        // The magic link reopens the directory already checked, not its path.
        let entries =
            std::fs::read_dir(format!("/proc/self/fd/{}", fd_number(&dir))).map_err(|source| {
                PolicyError::Io {
                    file: path.display().to_string(),
                    source,
                }
            })?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        names.truncate(MAX_LISTED);
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let file = path.join(format!("{name}.toml"));
                let loaded = match read_file(&dir, &file, self.uid) {
                    Ok(Some(text)) => self.parse(&name, &file, &text),
                    Ok(None) => return None,
                    Err(e) => Err(e),
                };
                Some((name, loaded))
            })
            .collect())
    }

    /// The user profile `name` from `text`, merged onto the managed profile
    /// it extends and checked to be no wider.
    fn parse(&self, name: &str, path: &Path, text: &str) -> Result<Profile, PolicyError> {
        let file = path.display().to_string();
        let own = tree::parse(&file, text)?;
        if let Some(managed) = self.store.get(name) {
            return Err(PolicyError::Other {
                file,
                message: format!(
                    "a user profile may not take the name of the managed profile {name:?} ({})",
                    managed.source
                ),
            });
        }
        admin_only(&own)?;
        // Valid on its own, so that errors point into the user's file.
        build(name, &file, &own)?;
        let base_name = match own.get("extends") {
            Some((_, n)) => n.str("extends")?.to_string(),
            None => {
                return Err(PolicyError::Invalid {
                    file,
                    line: 1,
                    column: 1,
                    message: "key `extends`: missing: a user profile must extend a managed profile"
                        .into(),
                })
            }
        };
        let extends_pos = &own["extends"].1.pos;
        let (Some(base), Some(base_table)) =
            (self.store.get(&base_name), self.store.table(&base_name))
        else {
            let known: Vec<&str> = self.store.profiles().map(|p| p.name.as_str()).collect();
            let msg = format!(
                "no managed profile named {base_name:?} (known: {})",
                known.join(", ")
            );
            return Err(TreeError::at(extends_pos, "extends", msg).into());
        };
        if !base.allow_user_profiles.value {
            let msg = format!(
                "profile {base_name} does not allow user profiles (rule: allow_user_profiles, {})",
                base.allow_user_profiles.origin
            );
            return Err(TreeError::at(extends_pos, "extends", msg).into());
        }
        let mut merged = tree::merge(base_table, &own);
        merged.remove("extends");
        for (section, key) in REPLACED {
            replace(&mut merged, &own, section, key);
        }
        let mut profile = build(name, &file, &merged)?;
        profile.extends = Some(base_name);
        // Nothing extends a user profile.
        profile.allow_user_profiles = Located {
            value: false,
            origin: Origin {
                file: file.clone(),
                line: 0,
            },
        };
        no_wider(&profile, base, &file)?;
        Ok(profile)
    }
}

/// A profile name a file may carry: no path, no hidden file, and short
/// enough for a file name (NAME_MAX, 255 bytes, with `.toml`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() + ".toml".len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn fd_number(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// Is this inode safe to trust for `uid`: owned by them (or root, when
/// `root_ok`) and writable by no one else?
fn trusted(meta: &std::fs::Metadata, uid: u32, root_ok: bool) -> Result<(), String> {
    if meta.uid() != uid && !(root_ok && meta.uid() == 0) {
        return Err(format!(
            "owned by uid {}, not by the caller (uid {uid}){}",
            meta.uid(),
            if root_ok { " or root" } else { "" }
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn refused(path: &Path, message: String) -> PolicyError {
    PolicyError::Other {
        file: path.display().to_string(),
        message: format!("user profiles refused: {message}"),
    }
}

/// Opens directory `path` component by component from `/`, never following a
/// symlink, each directory owned by `uid` or root and writable by no one
/// else. `Ok(None)` when some component does not exist.
fn open_dir(path: &Path, uid: u32) -> Result<Option<OwnedFd>, PolicyError> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if !path.is_absolute() {
        return Err(refused(
            path,
            "the home directory is not an absolute path".into(),
        ));
    }
    let mut fd =
        open("/", flags, Mode::empty()).map_err(|e| refused(path, format!("opening /: {e}")))?;
    let mut at = PathBuf::from("/");
    for comp in path.components() {
        let name = match comp {
            Component::RootDir => continue,
            Component::Normal(n) => n,
            _ => {
                return Err(refused(
                    path,
                    format!("{} has . or .. in it", path.display()),
                ))
            }
        };
        at.push(name);
        fd = match openat(&fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                return Err(refused(
                    path,
                    format!("{} is a symlink or not a directory", at.display()),
                ))
            }
            Err(e) => return Err(refused(path, format!("opening {}: {e}", at.display()))),
        };
        let meta = File::from(fd.try_clone().map_err(|e| refused(path, e.to_string()))?)
            .metadata()
            .map_err(|e| refused(path, format!("{}: {e}", at.display())))?;
        trusted(&meta, uid, true).map_err(|m| refused(path, format!("{}: {m}", at.display())))?;
    }
    Ok(Some(fd))
}

/// Reads `file` (a name in `dir`) if it is a regular file of `uid` that no
/// one else may write, without following a symlink or blocking on a FIFO.
fn read_file(dir: &OwnedFd, file: &Path, uid: u32) -> Result<Option<String>, PolicyError> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let name = file.file_name().unwrap_or_default();
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    let fd = match openat(dir.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(nix::errno::Errno::ELOOP) => {
            return Err(refused(file, "a symlink is not followed".into()))
        }
        Err(e) => return Err(refused(file, format!("opening: {e}"))),
    };
    let f = File::from(fd);
    let meta = f.metadata().map_err(|e| refused(file, e.to_string()))?;
    if !meta.is_file() {
        return Err(refused(file, "not a regular file".into()));
    }
    trusted(&meta, uid, false).map_err(|m| refused(file, m))?;
    if meta.len() > MAX_SIZE {
        return Err(refused(file, format!("larger than {MAX_SIZE} bytes")));
    }
    let mut text = String::new();
    f.take(MAX_SIZE)
        .read_to_string(&mut text)
        .map_err(|source| PolicyError::Io {
            file: file.display().to_string(),
            source,
        })?;
    Ok(Some(text))
}

/// Keys only the policy dir may set, refused in a user profile with file:line:key.
fn admin_only(own: &Table) -> Result<(), PolicyError> {
    const WHY: &str = "admin-only: it can be set only in the policy dir, not in a user profile";
    for key in ["allow_root", "allow_user_profiles"] {
        if let Some((kpos, _)) = own.get(key) {
            return Err(TreeError::at(kpos, key, WHY).into());
        }
    }
    let rules = own
        .get("network")
        .and_then(|(_, n)| match &n.value {
            Value::Table(t) => t.get("rule"),
            _ => None,
        })
        .map(|(_, n)| match &n.value {
            Value::Array(a) => a.as_slice(),
            _ => &[],
        })
        .unwrap_or(&[]);
    for r in rules {
        if let Value::Table(t) = &r.value {
            if let Some((kpos, _)) = t.get("inject") {
                return Err(TreeError::at(
                    kpos,
                    "network.rule.inject",
                    format!("{WHY} (it carries secrets)"),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// `merged[section][key]` becomes the user's own list when the user wrote one.
fn replace(merged: &mut Table, own: &Table, section: &str, key: &str) {
    let Some(theirs) = own.get(section).and_then(|(_, n)| match &n.value {
        Value::Table(t) => t.get(key).cloned(),
        _ => None,
    }) else {
        return;
    };
    if let Some((
        _,
        Node {
            value: Value::Table(t),
            ..
        },
    )) = merged.get_mut(section)
    {
        t.insert(key.to_string(), theirs);
    }
}

/// A widening: the user's line, and the managed rule it goes beyond.
fn wider(at: &Origin, key: &str, what: String, base: &Profile, rule: String) -> PolicyError {
    PolicyError::Other {
        file: at.to_string(),
        message: format!(
            "key `{key}`: {what}: wider than the managed profile {} (rule: {rule})",
            base.name
        ),
    }
}

/// The rule text "`what` in PLACE": where the managed list starts, or the
/// managed profile's file when the list is empty.
fn listed_in<T>(what: &str, list: &[Located<T>], base: &Profile) -> String {
    let place = list
        .first()
        .map_or(base.source.clone(), |b| b.origin.to_string());
    format!("{what} in {place}")
}

/// Does root (or template root) `inner` lie within `outer`?
fn within_root(inner: &str, outer: &str) -> bool {
    let outer = outer.trim_end_matches('/');
    outer.is_empty()
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|r| r.starts_with('/'))
}

/// Does writable root `inner` lie within `outer`? `{tmp}` is the private
/// /tmp: a root below it would be the host's directory, so only `{tmp}`
/// itself lies within it.
fn write_within(inner: &str, outer: &str) -> bool {
    match outer.trim_end_matches('/') {
        "{tmp}" => inner.trim_end_matches('/') == "{tmp}",
        _ => within_root(inner, outer),
    }
}

/// Is every name env pattern `inner` matches also matched by `outer`?
fn env_within(inner: &str, outer: &str) -> bool {
    if outer == "*" || inner == outer {
        return true;
    }
    if !inner.contains(['*', '?']) {
        return globset::Glob::new(outer).is_ok_and(|g| g.compile_matcher().is_match(inner));
    }
    // A pattern within a pattern: only `PREFIX*` around a longer prefix is recognised.
    outer
        .strip_suffix('*')
        .filter(|p| !p.contains(['*', '?']))
        .is_some_and(|p| inner.starts_with(p))
}

fn domain_within(inner: &str, outer: &str) -> bool {
    match (ip_literal(inner), ip_literal(outer)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => match (DomainPattern::parse(inner), DomainPattern::parse(outer)) {
            (Ok(a), Ok(b)) => a.within(&b),
            _ => false,
        },
        _ => false,
    }
}

fn domains_overlap(a: &str, b: &str) -> bool {
    domain_within(a, b) || domain_within(b, a)
}

fn cidr_within(inner: &str, outer: &str) -> bool {
    match (parse_cidr(inner), parse_cidr(outer)) {
        (Some((ip, p)), Some((net, q))) => q <= p && cidr_contains(net, q, ip),
        _ => false,
    }
}

fn listed(v: &[Located<String>]) -> String {
    let items: Vec<&str> = v.iter().map(|l| l.value.as_str()).collect();
    format!("[{}]", items.join(", "))
}

/// Each entry of `user` must lie within some entry of `base`.
fn subset(
    user: &[Located<String>],
    base_list: &[Located<String>],
    key: &str,
    base: &Profile,
    inside: fn(&str, &str) -> bool,
) -> Result<(), PolicyError> {
    for u in user {
        if !base_list.iter().any(|b| inside(&u.value, &b.value)) {
            let rule = match base_list.first() {
                Some(b) => format!("{key} {} at {}", listed(base_list), b.origin),
                None => format!("{key} (empty) in {}", base.source),
            };
            return Err(wider(
                &u.origin,
                key,
                format!("{:?} is not within the managed list", u.value),
                base,
                rule,
            ));
        }
    }
    Ok(())
}

/// Each entry of `base` must still be in `user`.
fn kept(
    user: &[Located<String>],
    base_list: &[Located<String>],
    key: &str,
    base: &Profile,
    file: &str,
) -> Result<(), PolicyError> {
    for b in base_list {
        if !user.iter().any(|u| u.value == b.value) {
            let at = Origin {
                file: file.to_string(),
                line: 0,
            };
            return Err(wider(
                &at,
                key,
                format!("drops {:?}", b.value),
                base,
                format!("{key} {:?} at {}", b.value, b.origin),
            ));
        }
    }
    Ok(())
}

/// A limit: the user's must be set and no higher when the managed one is set.
fn limit<T: PartialOrd + std::fmt::Debug>(
    user: &Option<Located<T>>,
    managed: &Option<Located<T>>,
    key: &str,
    base: &Profile,
    file: &str,
) -> Result<(), PolicyError> {
    let Some(b) = managed else { return Ok(()) };
    let rule = format!("{key} {:?} at {}", b.value, b.origin);
    match user {
        Some(u) if u.value <= b.value => Ok(()),
        Some(u) => Err(wider(
            &u.origin,
            key,
            format!("{:?} is higher", u.value),
            base,
            rule,
        )),
        None => {
            let at = Origin {
                file: file.to_string(),
                line: 0,
            };
            Err(wider(&at, key, "no limit".into(), base, rule))
        }
    }
}

/// Refuses `user` if it allows anything `base` does not.
fn no_wider(user: &Profile, base: &Profile, file: &str) -> Result<(), PolicyError> {
    let rule = |key: &str, o: &Origin, v: &dyn std::fmt::Display| format!("{key} = {v} at {o}");
    if !base.approval.value.may_narrow_to(user.approval.value) {
        let (u, b) = (&user.approval, &base.approval);
        return Err(wider(
            &u.origin,
            "approval",
            format!("{} is looser", u.value.as_str()),
            base,
            rule("approval", &b.origin, &b.value.as_str()),
        ));
    }
    if base.landlock.value == LandlockMode::Required
        && user.landlock.value != LandlockMode::Required
    {
        let b = &base.landlock;
        return Err(wider(
            &user.landlock.origin,
            "landlock",
            "best-effort is looser".into(),
            base,
            rule("landlock", &b.origin, &b.value.as_str()),
        ));
    }
    let (uf, bf) = (&user.filesystem, &base.filesystem);
    subset(&uf.read, &bf.read, "filesystem.read", base, within_root)?;
    subset(&uf.write, &bf.write, "filesystem.write", base, write_within)?;
    kept(
        &uf.deny_read,
        &bf.deny_read,
        "filesystem.deny_read",
        base,
        file,
    )?;
    kept(
        &uf.deny_write,
        &bf.deny_write,
        "filesystem.deny_write",
        base,
        file,
    )?;

    let (un, bn) = (&user.network, &base.network);
    if un.mode.value > bn.mode.value {
        return Err(wider(
            &un.mode.origin,
            "network.mode",
            format!("{} is looser", un.mode.value.as_str()),
            base,
            rule("network.mode", &bn.mode.origin, &bn.mode.value.as_str()),
        ));
    }
    if bn.mode.value == NetworkMode::Allowlist && un.mode.value == NetworkMode::Allowlist {
        subset(&un.allow, &bn.allow, "network.allow", base, domain_within)?;
    }
    kept(&un.deny, &bn.deny, "network.deny", base, file)?;
    let ports = |p: &[Located<u16>]| -> Vec<u16> {
        if p.is_empty() {
            DEFAULT_PORTS.to_vec()
        } else {
            p.iter().map(|l| l.value).collect()
        }
    };
    let base_ports = ports(&bn.ports);
    if let Some(p) = un.ports.iter().find(|p| !base_ports.contains(&p.value)) {
        let r = listed_in(&format!("network.ports {base_ports:?}"), &bn.ports, base);
        return Err(wider(
            &p.origin,
            "network.ports",
            format!("port {}", p.value),
            base,
            r,
        ));
    }
    if let Some(bm) = &bn.methods {
        match &un.methods {
            Some(um) => subset(um, bm, "network.methods", base, |a, b| a == b)?,
            None => {
                let at = Origin {
                    file: file.to_string(),
                    line: 0,
                };
                return Err(wider(
                    &at,
                    "network.methods",
                    "all methods".into(),
                    base,
                    format!("network.methods {}", listed(bm)),
                ));
            }
        }
    }
    subset(
        &un.allow_cidrs,
        &bn.allow_cidrs,
        "network.allow_cidrs",
        base,
        cidr_within,
    )?;
    if un.inspect.value != bn.inspect.value {
        return Err(wider(
            &un.inspect.origin,
            "network.inspect",
            "a user profile cannot change inspection".into(),
            base,
            rule("network.inspect", &bn.inspect.origin, &bn.inspect.value),
        ));
    }
    for (key, u, b) in [
        (
            "network.allow_non_tls_443",
            &un.allow_non_tls_443,
            &bn.allow_non_tls_443,
        ),
        ("network.allow_ech", &un.allow_ech, &bn.allow_ech),
    ] {
        if u.value && !b.value {
            return Err(wider(
                &u.origin,
                key,
                "true is looser".into(),
                base,
                rule(key, &b.origin, &b.value),
            ));
        }
    }
    // Rules for one host add up: a user rule may only cover hosts no managed rule does.
    for r in un.rules.iter().filter(|r| r.origin.file == file) {
        if let Some(b) = bn
            .rules
            .iter()
            .find(|b| domains_overlap(&r.value.host, &b.value.host))
        {
            let what = format!(
                "a rule for {} would add to the managed rule for {}",
                r.value.host, b.value.host
            );
            return Err(wider(
                &r.origin,
                "network.rule",
                what,
                base,
                format!("network.rule at {}", b.origin),
            ));
        }
    }

    let (ue, be) = (&user.env, &base.env);
    subset(&ue.pass, &be.pass, "env.pass", base, env_within)?;
    kept(&ue.deny, &be.deny, "env.deny", base, file)?;
    for (name, v) in ue.set.iter().filter(|(_, v)| v.origin.file == file) {
        if let Some(d) = ue.deny.iter().find(|d| env_within(name, &d.value)) {
            let what = format!("sets {name}, a denied name");
            return Err(wider(
                &v.origin,
                &format!("env.set.{name}"),
                what,
                base,
                format!("env.deny {:?} at {}", d.value, d.origin),
            ));
        }
        // What `--env` refuses, a user profile may not set either.
        if shell::runs_code(name) {
            return Err(wider(
                &v.origin,
                &format!("env.set.{name}"),
                format!("sets {name}, from which a program takes code no command rule sees"),
                base,
                "env: names `--env` refuses".into(),
            ));
        }
        if let Some((_, b)) = be
            .set
            .iter()
            .find(|(b, bv)| b == name && bv.value != v.value)
        {
            return Err(wider(
                &v.origin,
                &format!("env.set.{name}"),
                format!("changes {name}, set by the managed profile"),
                base,
                format!("env.set.{name} at {}", b.origin),
            ));
        }
    }

    let (ul, bl) = (&user.limits, &base.limits);
    limit(&ul.timeout, &bl.timeout, "limits.timeout", base, file)?;
    limit(&ul.memory, &bl.memory, "limits.memory", base, file)?;
    limit(&ul.pids, &bl.pids, "limits.pids", base, file)?;
    limit(&ul.output, &bl.output, "limits.output", base, file)?;

    let (uc, bc) = (&user.commands, &base.commands);
    if let Some(a) = uc
        .allow
        .iter()
        .find(|a| !bc.allow.iter().any(|b| b.value == a.value))
    {
        let r = listed_in("commands.allow", &bc.allow, base);
        return Err(wider(
            &a.origin,
            "commands.allow",
            format!("{:?} is not allowed by the managed profile", a.value),
            base,
            r,
        ));
    }
    for (key, u, b) in [
        ("commands.prompt", &uc.prompt, &bc.prompt),
        ("commands.forbidden", &uc.forbidden, &bc.forbidden),
    ] {
        if let Some(missing) = b.iter().find(|b| !u.iter().any(|x| x.value == b.value)) {
            let at = Origin {
                file: file.to_string(),
                line: 0,
            };
            return Err(wider(
                &at,
                key,
                format!("drops {:?}", missing.value),
                base,
                format!("{key} at {}", missing.origin),
            ));
        }
    }
    Ok(())
}

/// The profile rendered back to TOML, for `policy show`.
pub fn render(p: &Profile) -> String {
    super::render::render(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> PolicyStore {
        let dir = tempfile::tempdir().unwrap();
        let managed = r#"
description = "narrowable"
allow_user_profiles = true
approval = "on-request"
[filesystem]
read = ["/"]
write = ["{cwd}", "{tmp}", "/srv/shared"]
deny_read = ["{home}/.ssh"]
[network]
mode = "allowlist"
allow = ["**.example.com", "crates.io"]
ports = [443]
[env]
pass = ["*"]
deny = ["*TOKEN*"]
set = { LANG = "C" }
[limits]
timeout = "10m"
memory = "1GiB"
[commands]
allow = [["ls"], ["git", "status"]]
forbidden = [["rm", "-rf", "/"]]
"#;
        std::fs::write(dir.path().join("team.toml"), managed).unwrap();
        PolicyStore::load(Some(dir.path()), true).unwrap()
    }

    fn parse(text: &str) -> Result<Profile, PolicyError> {
        let s = store();
        let u = UserProfiles {
            store: &s,
            uid: 1000,
            home: Path::new("/nonexistent"),
        };
        u.parse(
            "mine",
            Path::new("/h/.config/sandboxd/profiles/mine.toml"),
            text,
        )
    }

    #[test]
    fn narrowing_is_accepted_and_lists_replace() {
        let p = parse(
            "extends = \"team\"\napproval = \"untrusted\"\n[filesystem]\nwrite = [\"{cwd}/src\"]\n[network]\nallow = [\"api.example.com\"]\n[limits]\nmemory = \"512MiB\"\n[commands]\nallow = [[\"ls\"]]\n",
        )
        .unwrap();
        assert_eq!(p.filesystem.write.len(), 1);
        assert_eq!(p.network.allow.len(), 1);
        assert_eq!(p.filesystem.deny_read.len(), 1);
        assert_eq!(p.extends.as_deref(), Some("team"));
        assert!(!p.allow_user_profiles.value);
    }

    #[test]
    fn each_widening_is_refused_naming_the_rule() {
        let cases: &[(&str, &str)] = &[
            ("[filesystem]\nwrite = [\"/etc\"]\n", "filesystem.write"),
            // Below the private /tmp is the host's /tmp.
            ("[filesystem]\nwrite = [\"{tmp}/x\"]\n", "filesystem.write"),
            (
                "[filesystem]\nread = [\"/\", \"/srv\"]\nwrite = [\"{home}\"]\n",
                "filesystem.write",
            ),
            ("[network]\nmode = \"full\"\n", "network.mode"),
            ("[network]\nallow = [\"evil.test\"]\n", "network.allow"),
            ("[network]\nports = [22]\n", "network.ports"),
            (
                "[network]\nallow_cidrs = [\"10.0.0.0/8\"]\n",
                "network.allow_cidrs",
            ),
            ("[network]\ninspect = true\n", "network.inspect"),
            (
                "[network]\nallow_non_tls_443 = true\n",
                "network.allow_non_tls_443",
            ),
            ("[network]\nallow_ech = true\n", "network.allow_ech"),
            (
                "approval = \"never\"\n[commands]\nallow = [[\"rm\"]]\n",
                "commands.allow",
            ),
            ("[limits]\nmemory = \"8GiB\"\n", "limits.memory"),
            ("[limits]\ntimeout = \"2h\"\n", "limits.timeout"),
            ("[env]\nset = { GH_TOKEN = \"x\" }\n", "env.set.GH_TOKEN"),
            ("[env]\nset = { BASH_ENV = \"/x\" }\n", "env.set.BASH_ENV"),
            ("[env]\nset = { LANG = \"C.UTF-8\" }\n", "env.set.LANG"),
            ("landlock = \"best-effort\"\n", "landlock"),
        ];
        for (body, key) in cases {
            let err = parse(&format!("extends = \"team\"\n{body}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("key `{key}`")), "{body}: {err}");
            assert!(err.contains("mine.toml:"), "{body}: {err}");
            assert!(err.contains("rule:"), "{body}: {err}");
        }
    }

    #[test]
    fn admin_keys_names_and_bases_are_refused() {
        let err = parse("extends = \"team\"\n\nallow_root = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mine.toml:3") && err.contains("allow_root") && err.contains("admin-only"),
            "{err}"
        );
        let err = parse("extends = \"team\"\nallow_user_profiles = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mine.toml:2") && err.contains("allow_user_profiles"),
            "{err}"
        );
        let err = parse("extends = \"team\"\n[[network.rule]]\nhost = \"a.example.com\"\ninject = { header = \"A\", value = \"{secret:X}\" }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mine.toml:4") && err.contains("inject"),
            "{err}"
        );
        let err = parse("extends = \"workspace\"\n").unwrap_err().to_string();
        assert!(
            err.contains("allow_user_profiles") && err.contains("mine.toml:1"),
            "{err}"
        );
        let err = parse("description = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("extends"), "{err}");
        let s = store();
        let u = UserProfiles {
            store: &s,
            uid: 1000,
            home: Path::new("/nonexistent"),
        };
        let err = u
            .parse("team", Path::new("/h/team.toml"), "extends = \"team\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("may not take the name"), "{err}");
    }

    #[test]
    fn names_are_plain_file_names() {
        assert!(valid_name("team-ci_2.x"));
        assert!(valid_name(&"a".repeat(250)));
        // Longer would not open (ENAMETOOLONG): no such profile, not an error.
        assert!(!valid_name(&"a".repeat(251)));
        for bad in ["", ".hidden", "a/b", "../x", "sp ace"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn files_must_belong_to_the_caller() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::Builder::new().tempdir_in("/srv").unwrap();
        let home = root.path().join("home");
        let dir = home.join(USER_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        for d in [
            root.path(),
            &home,
            &home.join(".config"),
            &home.join(".config/sandboxd"),
            &dir,
        ] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dir.join("mine.toml"), "extends = \"team\"\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link.toml")).unwrap();
        let s = store();
        // Root owns everything here: uid 0 may read them, uid 1000 may not (the file is not theirs).
        let as_root = UserProfiles {
            store: &s,
            uid: 0,
            home: &home,
        };
        assert!(as_root.get("mine").unwrap().is_some());
        assert!(as_root.get("missing").unwrap().is_none());
        let err = as_root.get("link").unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        let as_user = UserProfiles {
            store: &s,
            uid: 1000,
            home: &home,
        };
        let err = as_user.get("mine").unwrap_err().to_string();
        assert!(err.contains("owned by uid 0"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = as_root.get("mine").unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
    }
}
