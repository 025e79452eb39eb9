//! From a profile and one exec request to the effective policy (requests may
//! only narrow). The `policy check` decisions expand templates and clean
//! paths with the helpers here, as an exec would.

use super::domain::{ip_literal, DomainPattern};
use super::model::{
    ApprovalMode, EffectiveLimits, EffectivePolicy, Located, NetworkMode, Origin, Profile,
};
use super::shell;
use super::values::{format_duration, format_size};
use super::Refusal;
use crate::net::NetPolicy;
use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Per-exec facts the templates and `[env]` need.
#[derive(Debug, Clone, Default)]
pub struct ExecContext {
    /// `{cwd}`.
    pub cwd: PathBuf,
    /// `{home}`.
    pub home: PathBuf,
    /// The caller's environment (filtered by `[env] pass/deny`).
    pub caller_env: BTreeMap<String, String>,
    /// `agent exec --env K=V`; a denied name is refused.
    pub set_env: BTreeMap<String, String>,
}

/// What a request asks to narrow; `None` keeps the profile's.
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    pub write: Option<Vec<PathBuf>>,
    pub network_allow: Option<Vec<String>>,
    pub timeout: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub output: Option<u64>,
    pub approval: Option<ApprovalMode>,
}

/// Bytes of output kept when the profile sets no `limits.output`.
pub const DEFAULT_OUTPUT: u64 = 64 << 20;

/// The template `{tmp}` stands for; writable `{tmp}` means a private tmpfs there.
const TMP: &str = "/tmp";

/// `ORIGIN KEY "VALUE"`, the way decisions and refusals name a rule.
pub(crate) fn rule<T: std::fmt::Display>(origin: &Origin, key: &str, value: T) -> String {
    format!("{origin} {key} \"{value}\"")
}

/// Expands a leading template of `entry` (a `key` rule); `escape` quotes the
/// expansion for use in a glob. A template without an absolute value for this
/// exec is refused rather than guessed.
pub(super) fn expand(
    entry: &Located<String>,
    key: &str,
    ctx: &ExecContext,
    escape: bool,
) -> Result<String, Refusal> {
    let e = entry.value.as_str();
    for (template, value) in [
        ("{cwd}", &ctx.cwd),
        ("{home}", &ctx.home),
        ("{tmp}", &PathBuf::from(TMP)),
    ] {
        let Some(rest) = e.strip_prefix(template) else {
            continue;
        };
        let Some(value) = clean(value) else {
            return Err(Refusal {
                message: format!(
                    "{template} has no absolute value for this exec ({:?})",
                    value.display()
                ),
                rule: rule(&entry.origin, key, e),
            });
        };
        let value = value.to_string_lossy();
        let value = if escape {
            crate::backend::spec::glob_literal(&value)
        } else {
            value.into_owned()
        };
        let value = value.trim_end_matches('/');
        return Ok(if value.is_empty() && rest.is_empty() {
            "/".to_string()
        } else {
            format!("{value}{rest}")
        });
    }
    Ok(e.to_string())
}

/// `.` and duplicate slashes removed; `None` for relative paths or `..`.
pub(super) fn clean(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn glob(pattern: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// A deny pattern covers `path` when it matches the path or one of its ancestors.
pub(crate) fn covers(pattern: &str, path: &Path) -> bool {
    let Some(m) = glob(pattern) else { return false };
    path.ancestors().any(|a| m.is_match(a))
}

/// A name pattern of `[env]`: `*` any run of characters, `?` one character.
/// Plain matching, no regex: it runs for every variable of every exec.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The effective policy of one exec, or the rule a widening request breaks.
pub fn resolve(
    profile: &Profile,
    ctx: &ExecContext,
    narrow: &Narrowing,
) -> Result<EffectivePolicy, Refusal> {
    let fs = &profile.filesystem;
    let mut read = Vec::new();
    for r in &fs.read {
        push_unique(
            &mut read,
            PathBuf::from(expand(r, "filesystem.read", ctx, false)?),
        );
    }
    let mut write = Vec::new();
    let mut private_tmp = false;
    let mut write_host = false;
    for w in &fs.write {
        if w.value == "{tmp}" {
            private_tmp = true;
        } else {
            // Only a `/` written so: one a template stands for (`{cwd}` of
            // an exec in `/`) is a root the caller must be able to write.
            write_host |= Path::new(&w.value) == Path::new("/");
            push_unique(
                &mut write,
                PathBuf::from(expand(w, "filesystem.write", ctx, false)?),
            );
        }
    }
    if let Some(asked) = &narrow.write {
        write = narrow_write(profile, &write, asked)?;
    }
    let write_host = write_host && write.iter().any(|w| w == Path::new("/"));
    let deny_read = fs
        .deny_read
        .iter()
        .map(|d| expand(d, "filesystem.deny_read", ctx, true))
        .collect::<Result<_, _>>()?;
    let deny_write = fs
        .deny_write
        .iter()
        .map(|d| expand(d, "filesystem.deny_write", ctx, true))
        .collect::<Result<_, _>>()?;

    let (network, network_allow) = narrow_network(profile, narrow.network_allow.as_deref())?;
    let env = environment(profile, ctx)?;
    let lim = &profile.limits;
    let limits = EffectiveLimits {
        timeout: shrink("timeout", &lim.timeout, narrow.timeout, |d| {
            format_duration(*d)
        })?,
        memory: shrink("memory", &lim.memory, narrow.memory, |n| format_size(*n))?,
        pids: shrink("pids", &lim.pids, narrow.pids, |n| n.to_string())?,
        output: shrink("output", &lim.output, narrow.output, |n| format_size(*n))?
            .unwrap_or(DEFAULT_OUTPUT),
    };
    let approval = match narrow.approval {
        Some(to) if !profile.approval.value.may_narrow_to(to) => {
            return Err(Refusal {
                message: format!(
                    "approval {:?} would loosen the profile's {:?}",
                    to.as_str(),
                    profile.approval.value.as_str()
                ),
                rule: rule(
                    &profile.approval.origin,
                    "approval",
                    profile.approval.value.as_str(),
                ),
            })
        }
        Some(to) => to,
        None => profile.approval.value,
    };
    let net = match network {
        NetworkMode::Allowlist => {
            let narrowed = narrow
                .network_allow
                .as_ref()
                .map(|_| network_allow.as_slice());
            let net = NetPolicy::from_profile(profile, narrowed, approval).map_err(|message| {
                Refusal {
                    message,
                    rule: "network".to_string(),
                }
            })?;
            Some(net)
        }
        NetworkMode::None | NetworkMode::Full => None,
    };
    let mut policy = EffectivePolicy {
        profile: profile.name.clone(),
        approval,
        allow_root: profile.allow_root.value,
        landlock: profile.landlock.value,
        read,
        write,
        write_host,
        deny_read,
        deny_write,
        private_tmp,
        home: ctx.home.clone(),
        network,
        network_allow,
        net,
        env,
        limits,
        hash: String::new(),
    };
    policy.hash = hash(&policy);
    Ok(policy)
}

fn push_unique(v: &mut Vec<PathBuf>, p: PathBuf) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// Each requested writable root must lie inside one of the profile's.
fn narrow_write(
    profile: &Profile,
    roots: &[PathBuf],
    asked: &[PathBuf],
) -> Result<Vec<PathBuf>, Refusal> {
    let write_rule = || match profile.filesystem.write.first() {
        Some(first) => format!("{} filesystem.write", first.origin),
        None => format!("{} filesystem.write (empty)", profile.source),
    };
    let mut out = Vec::new();
    for p in asked {
        let Some(clean) = clean(p) else {
            return Err(Refusal {
                message: format!(
                    "writable root {} must be an absolute path without `..`",
                    p.display()
                ),
                rule: write_rule(),
            });
        };
        // A private /tmp does not count: a root asked for there would be
        // the host's directory, bound over the private one.
        let inside = roots.iter().any(|r| clean.starts_with(r));
        if !inside {
            return Err(Refusal {
                message: format!(
                    "{} is not inside a writable root of profile {}",
                    clean.display(),
                    profile.name
                ),
                rule: write_rule(),
            });
        }
        push_unique(&mut out, clean);
    }
    Ok(out)
}

/// The network mode and domain list after an optional narrower list.
fn narrow_network(
    profile: &Profile,
    asked: Option<&[String]>,
) -> Result<(NetworkMode, Vec<String>), Refusal> {
    let net = &profile.network;
    let own: Vec<String> = net.allow.iter().map(|a| a.value.clone()).collect();
    let Some(asked) = asked else {
        return Ok((net.mode.value, own));
    };
    let mode_rule = rule(&net.mode.origin, "network.mode", net.mode.value.as_str());
    let mut out = Vec::new();
    for d in asked {
        // An address only when the profile lists it literally; a pattern
        // when it lies within one of the profile's.
        let (entry, listed) = match ip_literal(d) {
            Some(ip) => (
                ip.to_string(),
                net.allow.iter().any(|a| ip_literal(&a.value) == Some(ip)),
            ),
            None => {
                let p = DomainPattern::parse(d).map_err(|m| Refusal {
                    message: m,
                    rule: "network.allow".to_string(),
                })?;
                let listed = net
                    .allow
                    .iter()
                    .any(|a| DomainPattern::parse(&a.value).is_ok_and(|ap| p.within(&ap)));
                (p.to_string(), listed)
            }
        };
        let allowed = match net.mode.value {
            NetworkMode::None => false,
            NetworkMode::Full => true,
            NetworkMode::Allowlist => listed,
        };
        if !allowed {
            let rule = if net.mode.value == NetworkMode::None {
                mode_rule.clone()
            } else {
                format!(
                    "{} network.allow",
                    net.allow
                        .first()
                        .map(|a| a.origin.to_string())
                        .unwrap_or(profile.source.clone())
                )
            };
            return Err(Refusal {
                message: format!("{d:?} is not allowed by profile {}", profile.name),
                rule,
            });
        }
        out.push(entry);
    }
    let mode = if out.is_empty() {
        NetworkMode::None
    } else {
        NetworkMode::Allowlist
    };
    Ok((mode, out))
}

/// Caller variables that `pass` and not `deny`, then `set`, then the request's
/// own (`--env`), which may not use a denied name.
fn environment(profile: &Profile, ctx: &ExecContext) -> Result<Vec<(String, String)>, Refusal> {
    let rules = &profile.env;
    let denied_by = |name: &str| rules.deny.iter().find(|d| name_matches(&d.value, name));
    let mut env: BTreeMap<String, String> = ctx
        .caller_env
        .iter()
        .filter(|(k, _)| {
            rules.pass.iter().any(|p| name_matches(&p.value, k))
                && denied_by(k).is_none()
                && !shell::runs_code(k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &rules.set {
        env.insert(k.clone(), v.value.clone());
    }
    for (k, v) in &ctx.set_env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(Refusal {
                message: format!("--env {k:?}: not a variable name"),
                rule: "env".to_string(),
            });
        }
        if let Some(d) = denied_by(k) {
            return Err(Refusal {
                message: format!("--env {k}: the name is denied"),
                rule: rule(&d.origin, "env.deny", &d.value),
            });
        }
        if shell::runs_code(k) {
            return Err(Refusal {
                message: format!("--env {k}: it can make a program run code no command rule sees"),
                rule: "env".to_string(),
            });
        }
        env.insert(k.clone(), v.clone());
    }
    Ok(env.into_iter().collect())
}

/// A limit a request may lower, never raise.
fn shrink<T: Copy + PartialOrd>(
    key: &str,
    own: &Option<Located<T>>,
    asked: Option<T>,
    show: impl Fn(&T) -> String,
) -> Result<Option<T>, Refusal> {
    match (own, asked) {
        (_, None) => Ok(own.as_ref().map(|l| l.value)),
        (Some(limit), Some(a)) if a > limit.value => Err(Refusal {
            message: format!(
                "{key} {} exceeds the profile's {}",
                show(&a),
                show(&limit.value)
            ),
            rule: rule(&limit.origin, &format!("limits.{key}"), show(&limit.value)),
        }),
        (_, Some(a)) => Ok(Some(a)),
    }
}

/// SHA-256 (hex) of a canonical JSON rendering (sorted keys) of the policy.
fn hash(p: &EffectivePolicy) -> String {
    let paths = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let canonical = serde_json::json!({
        "profile": p.profile,
        "approval": p.approval.as_str(),
        "allow_root": p.allow_root,
        "landlock": p.landlock.as_str(),
        "read": paths(&p.read),
        "write": paths(&p.write),
        "write_host": p.write_host,
        "deny_read": p.deny_read,
        "deny_write": p.deny_write,
        "private_tmp": p.private_tmp,
        "home": p.home.to_string_lossy(),
        "network": p.network.as_str(),
        "network_allow": p.network_allow,
        "net": p.net.as_ref().map(NetPolicy::canonical),
        "env": p.env,
        "limits": {
            "timeout_ms": p.limits.timeout.map(|d| d.as_millis() as u64),
            "memory": p.limits.memory,
            "pids": p.limits.pids,
            "output": p.limits.output,
        },
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn env_name_patterns() {
        for (pattern, name, hit) in [
            ("*", "PATH", true),
            ("*TOKEN*", "GH_TOKEN", true),
            ("*TOKEN*", "TOKEN", true),
            ("*TOKEN*", "TOKE", false),
            ("*_KEY", "API_KEY", true),
            ("*_KEY", "API_KEYS", false),
            ("AWS_*", "AWS_SECRET", true),
            ("AWS_*", "XAWS_SECRET", false),
            ("SSH_AUTH_SOCK", "SSH_AUTH_SOCK", true),
            ("SSH_AUTH_SOCK", "SSH_AUTH_SOCKET", false),
            ("L?NG", "LANG", true),
            ("L?NG", "LNG", false),
            ("*A*B*", "xxAyyBzz", true),
            ("*A*B*", "xxByyAzz", false),
            ("", "", true),
            ("", "X", false),
        ] {
            assert_eq!(name_matches(pattern, name), hit, "{pattern} vs {name}");
        }
    }
}
