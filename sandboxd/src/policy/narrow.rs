//! From a profile and one exec request to the effective policy (requests may
//! only narrow), and the pure decisions behind `policy check`.

use super::domain::{ip_literal, DomainPattern};
use super::model::{
    ApprovalMode, EffectiveLimits, EffectivePolicy, Located, NetworkMode, Origin, Profile,
};
use super::shell::{self, Runs, Word};
use super::values::{format_duration, format_size};
use super::{Decision, Refusal, Verdict};
use crate::net::{Host, NetDecision, NetPolicy};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
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
fn expand(
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
fn clean(path: &Path) -> Option<PathBuf> {
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

/// Would a command under `profile` be able to read/write `path`? Names the rule.
pub fn check_path(profile: &Profile, ctx: &ExecContext, path: &Path, access: Access) -> Decision {
    let fs = &profile.filesystem;
    let key = match access {
        Access::Read => "filesystem.read",
        Access::Write => "filesystem.write",
    };
    let Some(path) = clean(path) else {
        return Decision {
            verdict: Verdict::Deny,
            rule: key.to_string(),
            reason: format!("{} is not an absolute path without `..`", path.display()),
        };
    };
    let shown = path.display();
    // Deny patterns win over roots; an unreadable file is not writable either.
    let denies: Vec<(&str, &Located<String>)> = match access {
        Access::Read => fs
            .deny_read
            .iter()
            .map(|d| ("filesystem.deny_read", d))
            .collect(),
        Access::Write => {
            let w = fs.deny_write.iter().map(|d| ("filesystem.deny_write", d));
            w.chain(fs.deny_read.iter().map(|d| ("filesystem.deny_read", d)))
                .collect()
        }
    };
    for (k, d) in denies {
        let pattern = match expand(d, k, ctx, true) {
            Ok(p) => p,
            Err(r) => {
                return Decision {
                    verdict: Verdict::Deny,
                    rule: r.rule,
                    reason: r.message,
                }
            }
        };
        if covers(&pattern, &path) {
            return Decision {
                verdict: Verdict::Deny,
                rule: rule(&d.origin, k, &d.value),
                reason: format!("{shown} is covered by {k} {:?}", d.value),
            };
        }
    }
    let in_root = |roots: &[Located<String>], k: &str| -> Option<Decision> {
        roots.iter().find_map(|r| {
            let root = expand(r, k, ctx, false).ok()?;
            if !path.starts_with(&root) {
                return None;
            }
            let reason = if r.value == "{tmp}" && k == "filesystem.write" {
                format!("{shown} is in the private /tmp (a fresh tmpfs, not the host's)")
            } else {
                format!("{shown} is inside {k} root {root}")
            };
            Some(Decision {
                verdict: Verdict::Allow,
                rule: rule(&r.origin, k, &r.value),
                reason,
            })
        })
    };
    let found = match access {
        Access::Read => {
            in_root(&fs.read, "filesystem.read").or_else(|| in_root(&fs.write, "filesystem.write"))
        }
        Access::Write => in_root(&fs.write, "filesystem.write"),
    };
    found.unwrap_or_else(|| Decision {
        verdict: Verdict::Deny,
        rule: format!("{key} (no root covers {shown})"),
        reason: format!(
            "{shown} is outside every {key} root of profile {}",
            profile.name
        ),
    })
}

/// Shells and wrappers nested deeper than this are not looked into.
const MAX_COMMAND_DEPTH: usize = 8;

/// `[commands]` prefix rules: forbidden > prompt > allow; no match falls back
/// on the approval mode (prompt under `untrusted`, allow otherwise). In a
/// forbidden or prompt rule the command name also matches by its basename
/// (`/bin/rm` is `rm`); an allow rule's only as written (`./git` or
/// `/home/u/bin/ls`, which the sandbox may have made, is not `git` or `ls`),
/// and not where `lookup` says the bare name may find such a program (a
/// PATH through the workspace), nor behind words that may set PATH.
/// A shell's
/// `-c` script is judged on each of its simple commands, a wrapper (`env`,
/// `nohup`, `timeout`, ...) on the command it runs as well as on its own
/// argv's rules, and the strictest decision wins. What cannot be understood
/// counts as prompt, unless no command at all could need more than allow.
pub fn check_command(profile: &Profile, argv: &[String], lookup: Lookup) -> Decision {
    command_parts(profile, argv, lookup)
        .into_iter()
        .map(|p| p.decision)
        .reduce(stricter)
        .unwrap_or_else(|| fallback(profile, &shell::command_line(argv)))
}

/// One command an argv runs, judged on its own: the argv itself when a rule
/// names it, the command behind a wrapper, or one simple command of a `-c`
/// script. An approval is asked, remembered and amended per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPart {
    /// The words as written (an unexpanded one as in the script).
    pub words: Vec<String>,
    /// The words as one command line for people (quoted where needed).
    pub shown: String,
    /// Every word is known before the shell runs (nothing left to expand).
    pub literal: bool,
    pub decision: Decision,
}

/// Why a bare command name may run a program a sandbox could have made
/// (where the exec's PATH finds it), or `None`: an allow rule is not
/// applied to such a name. [`NO_LOOKUP`] where nothing is known of PATH.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Judges command names on the rules alone.
pub const NO_LOOKUP: Lookup<'static> = &|_| None;

/// The parts [`check_command`] judges `argv` on; never empty. Its decision
/// is the strictest of theirs (the first on a tie).
pub fn command_parts(profile: &Profile, argv: &[String], lookup: Lookup) -> Vec<CommandPart> {
    let words: Vec<Word> = argv.iter().map(|a| Word::literal(a)).collect();
    let mut parts = Vec::new();
    let size: usize = argv.iter().map(String::len).sum();
    let mut budget = (COMMAND_READING_FACTOR * size).max(MIN_COMMAND_READING);
    judge(profile, &words, lookup, 0, &mut budget, &mut parts);
    parts
}

/// Bytes of words the judging of one argv may read, as a multiple of the
/// argv's own (at least [`MIN_COMMAND_READING`]): scripts nested in scripts,
/// each read more than one way, would otherwise multiply the work.
const COMMAND_READING_FACTOR: usize = 4;
const MIN_COMMAND_READING: usize = 64 << 10;

fn judge(
    profile: &Profile,
    words: &[Word],
    lookup: Lookup,
    depth: usize,
    budget: &mut usize,
    parts: &mut Vec<CommandPart>,
) {
    let shown = shell::words_line(words);
    let part = |decision| CommandPart {
        words: words.iter().map(|w| w.text.clone()).collect(),
        shown: shown.clone(),
        literal: words.iter().all(|w| w.literal),
        decision,
    };
    match words.first() {
        None => return parts.push(part(fallback(profile, &shown))),
        Some(w) if !w.literal => {
            let why = format!("script not understood: `{}` in command position", w.text);
            return parts.push(part(not_understood(profile, &why, &shown)));
        }
        Some(_) => {}
    }
    let before = parts.len();
    // A rule naming the command itself applies however deep it is.
    let own = rule_match(profile, words, &shown, lookup);
    let ruled = own.is_some();
    if let Some(own) = own {
        parts.push(part(own));
    }
    if depth > MAX_COMMAND_DEPTH {
        let why = format!(
            "script not understood: shells and wrappers nested deeper than {MAX_COMMAND_DEPTH}"
        );
        return parts.push(part(not_understood(profile, &why, &shown)));
    }
    let size: usize = words.iter().map(|w| w.text.len()).sum();
    match budget.checked_sub(size) {
        Some(left) => *budget = left,
        None => {
            let why = "script not understood: more to read than the command line holds, nested";
            return parts.push(part(not_understood(profile, why, &shown)));
        }
    }
    // What this command runs finds bare names through a PATH it may set.
    let sets_path = words[1..].iter().find(|w| may_set_path(&w.text));
    let unknown_path = |name: &str| {
        sets_path.map(|w| format!("`{name}` is looked up in a PATH that `{}` may set", w.text))
    };
    let inner: Lookup = if sets_path.is_some() {
        &unknown_path
    } else {
        lookup
    };
    let runs = shell::runs(words);
    if !ruled && matches!(runs, Ok(Runs::Wrapped(_) | Runs::Script { .. })) {
        if let Some(d) = doubted_runner(profile, words, &shown, lookup) {
            parts.push(part(d));
        }
    }
    match runs {
        Err(e) => parts.push(part(not_understood(profile, &e.0, &shown))),
        Ok(Runs::Itself) => {}
        Ok(Runs::Wrapped(w)) => judge(profile, &w, inner, depth + 1, budget, parts),
        Ok(Runs::Script { shell, commands }) => {
            for c in &commands {
                let from = parts.len();
                judge(profile, c, inner, depth + 1, budget, parts);
                for p in &mut parts[from..] {
                    p.decision
                        .rule
                        .push_str(&format!(" (in {shell} -c script)"));
                }
            }
        }
    }
    if parts.len() == before {
        parts.push(part(fallback(profile, &shown)));
    }
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Prompt => 1,
        Verdict::Deny => 2,
    }
}

/// The stricter of two decisions; the first on a tie.
fn stricter(a: Decision, b: Decision) -> Decision {
    if rank(b.verdict) > rank(a.verdict) {
        b
    } else {
        a
    }
}

/// How a rule's tokens meet a command's words.
enum Prefix {
    Yes,
    No,
    /// Undecided: the word at this index is not known until the shell expands it.
    Unknown(usize),
}

/// Whether `words` start with `rule`; `by_basename`: a command name given as
/// a path matches a rule naming it bare.
fn prefix(rule: &[String], words: &[Word], by_basename: bool) -> Prefix {
    for (i, r) in rule.iter().enumerate() {
        let Some(w) = words.get(i) else {
            return Prefix::No;
        };
        if !w.literal {
            return Prefix::Unknown(i);
        }
        let hit = w.text == *r
            || (by_basename && i == 0 && !r.contains('/') && shell::basename(&w.text) == r);
        if !hit {
            return Prefix::No;
        }
    }
    Prefix::Yes
}

/// Whether a word may assign PATH (`PATH=...`, `export PATH`, a script
/// doing either, `${PATH:=...}`, `printf -v P''ATH`): only `$PATH` and
/// `${PATH}` surely read it. Quotes and backslashes are taken out first,
/// and a `$'...'` string may spell anything. Errs towards yes (`echo PATH`
/// counts).
fn may_set_path(word: &str) -> bool {
    if word.contains("$'") {
        return true;
    }
    let word: String = word
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    let b = word.as_bytes();
    let ident = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    word.match_indices("PATH").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 4);
        if before.as_ref().is_some_and(ident) || after.is_some_and(ident) {
            return false;
        }
        let read = before == Some(b'$')
            || (before == Some(b'{') && i >= 2 && b[i - 2] == b'$' && after == Some(&b'}'));
        !read
    })
}

/// The strictest rule matching `words`; a forbidden or prompt rule that an
/// unexpanded word might match makes it a prompt. An allow rule matching a
/// bare name that `lookup` doubts leaves the decision to the approval mode.
fn rule_match(profile: &Profile, words: &[Word], shown: &str, lookup: Lookup) -> Option<Decision> {
    let c = &profile.commands;
    let mut unknown = None;
    // An allow rule matched a name that may find a program the sandbox made.
    let mut doubted: Option<(String, String)> = None;
    let mut looked: Option<Option<String>> = None;
    for (verdict, key, rules) in [
        (Verdict::Deny, "commands.forbidden", &c.forbidden),
        (Verdict::Prompt, "commands.prompt", &c.prompt),
        (Verdict::Allow, "commands.allow", &c.allow),
    ] {
        if verdict == Verdict::Allow && unknown.is_some() {
            return unknown;
        }
        for r in rules {
            let named = format!("{} {key} {:?}", r.origin, r.value);
            let hit = |named| Decision {
                verdict,
                rule: named,
                reason: format!("`{shown}` starts with `{}`", shell::command_line(&r.value)),
            };
            match prefix(&r.value, words, verdict != Verdict::Allow) {
                Prefix::Yes if verdict == Verdict::Allow => {
                    match looked.get_or_insert_with(|| lookup(&words[0].text)) {
                        Some(why) => {
                            doubted.get_or_insert((named, why.clone()));
                        }
                        None => return Some(hit(named)),
                    }
                }
                Prefix::Yes => return Some(hit(named)),
                Prefix::Unknown(i) if verdict != Verdict::Allow && unknown.is_none() => {
                    unknown = Some(Decision {
                        verdict: Verdict::Prompt,
                        rule: format!(
                            "commands: script not understood: `{}` may expand to match {named}",
                            words[i].text
                        ),
                        reason: format!(
                            "`{shown}` may start with `{}` once expanded",
                            shell::command_line(&r.value)
                        ),
                    });
                }
                Prefix::Unknown(_) | Prefix::No => {}
            }
        }
    }
    let (named, why) = doubted?;
    Some(
        doubted_decision(
            profile,
            shown,
            &format!("{named} not applied: {why}"),
            &format!("{why}, so {named} is not applied"),
        )
        .unwrap_or_else(|| fallback(profile, shown)),
    )
}

/// The approval mode's decision on `shown`, with why a rule or program was
/// doubted; `None` where that mode allows anyway.
fn doubted_decision(profile: &Profile, shown: &str, note: &str, why: &str) -> Option<Decision> {
    let f = fallback(profile, shown);
    (f.verdict != Verdict::Allow).then(|| Decision {
        rule: format!("{} ({note})", f.rule),
        reason: format!("`{shown}`: {why}"),
        ..f
    })
}

/// A shell or wrapper that `lookup` doubts (`./bash -c ls`, or `env` found
/// in the workspace): it runs instead of what it is asked to, so it is the
/// approval mode's to decide, whatever rules allow the command it wraps.
/// `None` where that mode allows anyway.
fn doubted_runner(
    profile: &Profile,
    words: &[Word],
    shown: &str,
    lookup: Lookup,
) -> Option<Decision> {
    let why = lookup(&words[0].text)?;
    doubted_decision(profile, shown, &why, &why)
}

/// No rule matched: the approval mode decides.
fn fallback(profile: &Profile, shown: &str) -> Decision {
    let a = &profile.approval;
    let verdict = if a.value == ApprovalMode::Untrusted {
        Verdict::Prompt
    } else {
        Verdict::Allow
    };
    Decision {
        verdict,
        rule: rule(&a.origin, "approval", a.value.as_str()),
        reason: format!("no [commands] rule matches `{shown}`"),
    }
}

/// A command whose effect cannot be known counts as prompt, except under a
/// profile where every command is allowed anyway (no forbidden or prompt
/// rule, approval not `untrusted`).
fn not_understood(profile: &Profile, why: &str, shown: &str) -> Decision {
    let c = &profile.commands;
    let a = &profile.approval;
    if c.forbidden.is_empty() && c.prompt.is_empty() && a.value != ApprovalMode::Untrusted {
        return Decision {
            verdict: Verdict::Allow,
            rule: rule(&a.origin, "approval", a.value.as_str()),
            reason: format!("`{shown}`: {why}, but the profile allows every command"),
        };
    }
    Decision {
        verdict: Verdict::Prompt,
        rule: format!("commands: {why}"),
        reason: format!("`{shown}`: {why}"),
    }
}

/// The parts of `url` (`scheme://[userinfo@]host[:port][/path]`, or
/// `host[:port]`) the network policy looks at.
struct UrlParts {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
}

/// Splits `url` the way URL parsers find the authority: it ends at `/`, `\`,
/// `?` or `#`, and the host follows the last `@` (so `http://a@b/` is b).
fn split_url(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, url),
    };
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (h, after) = authority.split_at(close + 1);
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => match scheme.as_deref() {
            Some("http") | Some("ws") => Some(80),
            Some("https") | Some("wss") => Some(443),
            _ => None,
        },
    };
    let path = if path.is_empty() { "/" } else { path };
    Some(UrlParts {
        scheme,
        host,
        port,
        path: path.replace('\\', "/"),
    })
}

/// Could a command under `profile` reach `url`? Names the rule. Decided as
/// the proxy would, without resolving or connecting: an http URL (an https
/// one too when the profile inspects) as a GET request, anything else by
/// host and port; an address is also put through the SSRF guard.
pub fn check_url(profile: &Profile, url: &str) -> Decision {
    let net = &profile.network;
    let mode_rule = rule(&net.mode.origin, "network.mode", net.mode.value.as_str());
    let deny = |rule: String, reason: String| Decision {
        verdict: Verdict::Deny,
        rule,
        reason,
    };
    match net.mode.value {
        NetworkMode::None => return deny(mode_rule, "the profile has no network".to_string()),
        NetworkMode::Full => {
            return Decision {
                verdict: Verdict::Allow,
                rule: mode_rule,
                reason: "the profile's network is unrestricted".into(),
            }
        }
        NetworkMode::Allowlist => {}
    }
    let Some(parts) = split_url(url) else {
        return deny(
            "network.allow".to_string(),
            format!("{url:?} is not a URL or HOST[:PORT]"),
        );
    };
    let host = match crate::net::normalize_host(&parts.host) {
        Ok(h) => h,
        Err(m) => {
            return deny(
                "network.allow".to_string(),
                format!("blocked-by-bad-request: {m}"),
            )
        }
    };
    let Some(port) = parts.port else {
        return deny(
            "network.ports".to_string(),
            format!("{url:?} names no port or known scheme"),
        );
    };
    let policy = match NetPolicy::from_profile(profile, None, profile.approval.value) {
        Ok(p) => p,
        Err(m) => return deny("network".to_string(), m),
    };
    let request = match parts.scheme.as_deref() {
        Some("http") => true,
        Some("https") => policy.inspect(),
        _ => false,
    };
    let mut d = if request {
        policy.decide_request(&host, port, "GET", &parts.path).0
    } else {
        policy.decide_host(&host, port)
    };
    if let (Host::Ip(ip), Verdict::Allow | Verdict::Prompt) = (&host, d.verdict) {
        let vetted = policy.vet_addr(*ip, &crate::net::addr::host_addresses());
        d = if vetted.verdict == Verdict::Deny {
            vetted
        } else {
            NetDecision {
                rule: format!("{}; {}", d.rule, vetted.rule),
                ..d
            }
        };
    }
    let reason = match (d.verdict, d.block) {
        (Verdict::Deny, Some(b)) => format!("blocked-by-{}: {}", b.as_str(), d.reason),
        _ => d.reason,
    };
    Decision {
        verdict: d.verdict,
        rule: d.rule,
        reason,
    }
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
