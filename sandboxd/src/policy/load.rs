//! Loading profiles: embedded defaults plus the policy dir, TOML with `extends`,
//! errors that name file, line and key.

use super::domain::{ip_literal, parse_cidr, DomainPattern};
use super::model::*;
use super::tree::{self, join, known_keys, Node, Pos, Table, TreeError, Value};
use super::values::{parse_duration, parse_size};
use std::collections::BTreeMap;
use std::path::Path;

/// A profile file or set that cannot be loaded; the message names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Other { file: String, message: String },
}

impl From<TreeError> for PolicyError {
    fn from(e: TreeError) -> Self {
        PolicyError::Invalid {
            file: e.file,
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

/// The shipped profiles, compiled in (also in the repository's `policies/`).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "read-only",
        include_str!("../../../policies/read-only.toml"),
    ),
    (
        "workspace",
        include_str!("../../../policies/workspace.toml"),
    ),
    ("full", include_str!("../../../policies/full.toml")),
];

/// Every profile the daemon knows, by name.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    profiles: BTreeMap<String, Profile>,
    /// Each profile's table with its `extends` chain merged in: what a user
    /// profile that extends it is merged onto.
    tables: BTreeMap<String, Table>,
}

/// One profile file, parsed but not yet merged with its parents.
struct Source {
    file: String,
    table: Table,
}

impl PolicyStore {
    /// The default profile's name.
    pub const DEFAULT: &'static str = "workspace";

    /// Embedded defaults (when `embedded`) plus every `*.toml` in `policy_dir`
    /// (a file replaces the embedded profile of its name). A missing dir is empty.
    pub fn load(policy_dir: Option<&Path>, embedded: bool) -> Result<Self, PolicyError> {
        let mut texts: BTreeMap<String, (String, String)> = BTreeMap::new();
        if embedded {
            for (name, text) in EMBEDDED {
                texts.insert(
                    name.to_string(),
                    (format!("embedded:{name}.toml"), text.to_string()),
                );
            }
        }
        if let Some(dir) = policy_dir {
            for (name, path) in profile_files(dir)? {
                let file = path.display().to_string();
                let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                    file: file.clone(),
                    source,
                })?;
                texts.insert(name, (file, text));
            }
        }
        Self::from_texts(texts)
    }

    /// Profiles from (name -> (file label, TOML text)).
    fn from_texts(texts: BTreeMap<String, (String, String)>) -> Result<Self, PolicyError> {
        let mut sources = BTreeMap::new();
        for (name, (file, text)) in texts {
            let table = tree::parse(&file, &text)?;
            // Each file must be valid on its own, whether or not anything uses it.
            build(&name, &file, &table)?;
            sources.insert(name, Source { file, table });
        }
        let mut profiles = BTreeMap::new();
        let mut tables = BTreeMap::new();
        for name in sources.keys() {
            let merged = merged_table(name, &sources, &mut Vec::new())?;
            let src = &sources[name];
            let mut profile = build(name, &src.file, &merged)?;
            // The merged table no longer holds `extends`; keep the file's own.
            profile.extends = src
                .table
                .get("extends")
                .and_then(|(_, n)| n.str("extends").ok())
                .map(str::to_string);
            profiles.insert(name.clone(), profile);
            tables.insert(name.clone(), merged);
        }
        Ok(PolicyStore { profiles, tables })
    }

    /// The merged table of managed profile `name`.
    pub(super) fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The effective profile rendered back to TOML (for `policy show`, `check-config`).
    pub fn render(&self, name: &str) -> Option<String> {
        self.get(name).map(super::render::render)
    }
}

/// `NAME.toml` regular files in `dir`, by name; a missing dir has none.
fn profile_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, PolicyError> {
    let io = |source| PolicyError::Io {
        file: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                out.push((stem.to_string(), path.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The profile's table with its `extends` chain merged in (parent first).
fn merged_table(
    name: &str,
    sources: &BTreeMap<String, Source>,
    chain: &mut Vec<String>,
) -> Result<Table, PolicyError> {
    let src = &sources[name];
    let mut own = src.table.clone();
    let Some((_, parent)) = own.remove("extends") else {
        return Ok(own);
    };
    let parent_name = parent.str("extends")?.to_string();
    chain.push(name.to_string());
    if chain.contains(&parent_name) {
        let mut cycle = chain.clone();
        cycle.push(parent_name);
        return Err(TreeError::at(
            &parent.pos,
            "extends",
            format!("cycle: {}", cycle.join(" -> ")),
        )
        .into());
    }
    if !sources.contains_key(&parent_name) {
        return Err(TreeError::at(
            &parent.pos,
            "extends",
            format!("no profile named {parent_name:?}"),
        )
        .into());
    }
    let base = merged_table(&parent_name, sources, chain)?;
    chain.pop();
    Ok(tree::merge(&base, &own))
}

/// A typed profile from a (merged) table.
pub(super) fn build(name: &str, file: &str, t: &Table) -> Result<Profile, TreeError> {
    known_keys(
        t,
        "",
        &[
            "description",
            "extends",
            "approval",
            "allow_root",
            "allow_user_profiles",
            "landlock",
            "filesystem",
            "network",
            "env",
            "limits",
            "commands",
        ],
    )?;
    let default = Origin {
        file: file.to_string(),
        line: 0,
    };
    let get = |key: &str| t.get(key).map(|(_, n)| n);
    let description = match get("description") {
        Some(n) => n.str("description")?.to_string(),
        None => String::new(),
    };
    let extends = get("extends")
        .map(|n| n.str("extends").map(str::to_string))
        .transpose()?;
    let approval = match get("approval") {
        Some(n) => keyword(
            n,
            "approval",
            ApprovalMode::parse,
            "untrusted, on-request or never",
        )?,
        None => defaulted(ApprovalMode::OnRequest, &default),
    };
    let landlock = match get("landlock") {
        Some(n) => keyword(
            n,
            "landlock",
            LandlockMode::parse,
            "required or best-effort",
        )?,
        None => defaulted(LandlockMode::Required, &default),
    };
    let flag = |key: &str| -> Result<Located<bool>, TreeError> {
        match get(key) {
            Some(n) => Ok(Located {
                value: n.bool(key)?,
                origin: n.pos.origin(),
            }),
            None => Ok(defaulted(false, &default)),
        }
    };
    let empty = Table::new();
    let section = |key: &str| -> Result<&Table, TreeError> {
        match get(key) {
            Some(n) => n.table(key),
            None => Ok(&empty),
        }
    };
    Ok(Profile {
        name: name.to_string(),
        description,
        source: file.to_string(),
        extends,
        approval,
        allow_root: flag("allow_root")?,
        allow_user_profiles: flag("allow_user_profiles")?,
        landlock,
        filesystem: filesystem(section("filesystem")?)?,
        network: network(section("network")?, &default)?,
        env: env(section("env")?)?,
        limits: limits(section("limits")?)?,
        commands: commands(section("commands")?)?,
    })
}

/// A value not written anywhere, charged to the profile's file (line 0).
fn defaulted<T>(value: T, origin: &Origin) -> Located<T> {
    Located {
        value,
        origin: origin.clone(),
    }
}

/// A string that must be one of a few words.
fn keyword<T>(
    n: &Node,
    key: &str,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Located<T>, TreeError> {
    let s = n.str(key)?;
    match parse(s) {
        Some(value) => Ok(Located {
            value,
            origin: n.pos.origin(),
        }),
        None => Err(TreeError::at(
            &n.pos,
            key,
            format!("{s:?} is not one of {expected}"),
        )),
    }
}

/// A list of strings, each checked by `check`.
fn list(
    t: &Table,
    key: &str,
    prefix: &str,
    check: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Vec<Located<String>>, TreeError> {
    let full = join(prefix, key);
    let Some((_, n)) = t.get(key) else {
        return Ok(Vec::new());
    };
    n.strings(&full)?
        .into_iter()
        .map(|(s, pos)| {
            check(s).map_err(|m| TreeError::at(pos, &full, m))?;
            Ok(Located {
                value: s.to_string(),
                origin: pos.origin(),
            })
        })
        .collect()
}

const TEMPLATES: &[&str] = &["{cwd}", "{home}", "{tmp}"];

/// A root (`glob` false) or deny pattern (`glob` true): absolute, or starting
/// with a template; deny patterns may also start with `**/`.
pub(crate) fn check_path(s: &str, glob: bool) -> Result<(), String> {
    let rest = if let Some(inner) = s.strip_prefix('{') {
        let end = inner
            .find('}')
            .ok_or_else(|| format!("{s:?}: unclosed template"))?;
        let template = &s[..end + 2];
        if !TEMPLATES.contains(&template) {
            return Err(format!(
                "{s:?}: unknown template {template} (known: {})",
                TEMPLATES.join(" ")
            ));
        }
        let rest = &s[end + 2..];
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(format!(
                "{s:?}: a template must be followed by `/` or nothing"
            ));
        }
        rest
    } else if s.starts_with('/') || (glob && s.starts_with("**/")) {
        s
    } else {
        let starts = if glob {
            "/, **/, {cwd}, {home} or {tmp}"
        } else {
            "/, {cwd}, {home} or {tmp}"
        };
        return Err(format!("{s:?} is not absolute (start it with {starts})"));
    };
    if rest.split('/').any(|c| c == "..") {
        return Err(format!("{s:?}: `..` is not allowed"));
    }
    if glob {
        globset::Glob::new(rest).map_err(|e| format!("{s:?}: {e}"))?;
    } else if rest.contains(['*', '?', '[', '{']) {
        return Err(format!(
            "{s:?}: roots cannot be globs (only deny_read/deny_write take globs)"
        ));
    }
    Ok(())
}

fn filesystem(t: &Table) -> Result<FilesystemRules, TreeError> {
    const P: &str = "filesystem";
    known_keys(t, P, &["read", "write", "deny_read", "deny_write"])?;
    let root = |s: &str| check_path(s, false);
    let pattern = |s: &str| check_path(s, true);
    Ok(FilesystemRules {
        read: list(t, "read", P, &root)?,
        write: list(t, "write", P, &root)?,
        deny_read: list(t, "deny_read", P, &pattern)?,
        deny_write: list(t, "deny_write", P, &pattern)?,
    })
}

/// A host pattern or an IP literal (`network.allow`, `network.deny`,
/// `network.rule.host`). A name ending in a number (`127.1`, `*.0.1`) is
/// refused: hosts written that way are addresses and would never match.
fn domain(s: &str) -> Result<(), String> {
    if ip_literal(s).is_some() {
        return Ok(());
    }
    DomainPattern::parse(s)?;
    let base = s
        .strip_prefix("**.")
        .or_else(|| s.strip_prefix("*."))
        .unwrap_or(s);
    match crate::net::normalize_host(base.trim()) {
        Ok(crate::net::Host::Ip(ip)) if base == s => {
            Err(format!("{s:?} reads as the address {ip}: write it as {ip}"))
        }
        Ok(crate::net::Host::Ip(_)) => Err(format!("{s:?} is a wildcard over an address")),
        Ok(crate::net::Host::Name(_)) => Ok(()),
        Err(m) => Err(m),
    }
}

fn method(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("{s:?} is not an HTTP method in upper case"))
    }
}

fn network(t: &Table, default: &Origin) -> Result<NetworkRules, TreeError> {
    const P: &str = "network";
    known_keys(
        t,
        P,
        &[
            "mode",
            "allow",
            "deny",
            "ports",
            "methods",
            "allow_cidrs",
            "inspect",
            "allow_non_tls_443",
            "allow_ech",
            "rule",
        ],
    )?;
    let mode = match t.get("mode") {
        Some((_, n)) => keyword(
            n,
            "network.mode",
            NetworkMode::parse,
            "none, allowlist or full",
        )?,
        None => defaulted(NetworkMode::None, default),
    };
    let mut ports = Vec::new();
    if let Some((_, n)) = t.get("ports") {
        let listed = n.array("network.ports")?;
        // Read as "the default ports" an empty list would widen whatever
        // it was meant to narrow.
        if listed.is_empty() {
            return Err(TreeError::at(
                &n.pos,
                "network.ports",
                "an empty list; leave the key out for the default [80, 443], or set mode = \"none\"",
            ));
        }
        for p in listed {
            let v = p.int("network.ports")?;
            let port = u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| {
                TreeError::at(
                    &p.pos,
                    "network.ports",
                    format!("{v} is not a port (1-65535)"),
                )
            })?;
            ports.push(Located {
                value: port,
                origin: p.pos.origin(),
            });
        }
    }
    let methods = match t.get("methods") {
        Some(_) => Some(list(t, "methods", P, &method)?),
        None => None,
    };
    let cidr = |s: &str| {
        parse_cidr(s)
            .map(|_| ())
            .ok_or_else(|| format!("{s:?} is not an address or ADDRESS/PREFIX"))
    };
    let flag = |key: &str| -> Result<Located<bool>, TreeError> {
        match t.get(key) {
            Some((_, n)) => Ok(Located {
                value: n.bool(&join(P, key))?,
                origin: n.pos.origin(),
            }),
            None => Ok(defaulted(false, default)),
        }
    };
    let mut rules = Vec::new();
    if let Some((_, n)) = t.get("rule") {
        for r in n.array("network.rule")? {
            rules.push(Located {
                value: host_rule(r.table("network.rule")?, &r.pos)?,
                origin: r.pos.origin(),
            });
        }
    }
    Ok(NetworkRules {
        mode,
        allow: list(t, "allow", P, &domain)?,
        deny: list(t, "deny", P, &domain)?,
        ports,
        methods,
        allow_cidrs: list(t, "allow_cidrs", P, &cidr)?,
        inspect: flag("inspect")?,
        allow_non_tls_443: flag("allow_non_tls_443")?,
        allow_ech: flag("allow_ech")?,
        rules,
    })
}

fn host_rule(t: &Table, pos: &Pos) -> Result<HostRule, TreeError> {
    const P: &str = "network.rule";
    known_keys(t, P, &["host", "methods", "paths", "inject"])?;
    let host = match t.get("host") {
        Some((_, n)) => {
            let h = n.str("network.rule.host")?;
            domain(h).map_err(|m| TreeError::at(&n.pos, "network.rule.host", m))?;
            h.to_string()
        }
        None => {
            return Err(TreeError::at(
                pos,
                "network.rule.host",
                "missing: each rule names its host pattern",
            ))
        }
    };
    let path = |s: &str| {
        if s.starts_with('/') {
            globset::Glob::new(s)
                .map(|_| ())
                .map_err(|e| format!("{s:?}: {e}"))
        } else {
            Err(format!("{s:?} must start with /"))
        }
    };
    let inject = match t.get("inject") {
        Some((_, n)) => {
            let it = n.table("network.rule.inject")?;
            known_keys(it, "network.rule.inject", &["header", "value"])?;
            let field = |k: &str| -> Result<String, TreeError> {
                let key = format!("network.rule.inject.{k}");
                match it.get(k) {
                    Some((_, v)) => Ok(v.str(&key)?.to_string()),
                    None => Err(TreeError::at(&n.pos, &key, "missing")),
                }
            };
            Some(Inject {
                header: field("header")?,
                value: field("value")?,
            })
        }
        None => None,
    };
    let strings = |v: Vec<Located<String>>| v.into_iter().map(|l| l.value).collect();
    Ok(HostRule {
        host,
        methods: strings(list(t, "methods", P, &method)?),
        paths: strings(list(t, "paths", P, &path)?),
        inject,
    })
}

fn env_glob(s: &str) -> Result<(), String> {
    if s.is_empty() || s.contains('=') {
        return Err(format!("{s:?} is not a variable name or name pattern"));
    }
    if let Some(c) = s.chars().find(|c| "[]{}\\!".contains(*c)) {
        return Err(format!(
            "{s:?}: name patterns use only `*` and `?`, not {c:?}"
        ));
    }
    Ok(())
}

fn env(t: &Table) -> Result<EnvRules, TreeError> {
    const P: &str = "env";
    known_keys(t, P, &["pass", "deny", "set"])?;
    let mut set = Vec::new();
    if let Some((_, n)) = t.get("set") {
        for (name, (kpos, v)) in n.table("env.set")? {
            let key = format!("env.set.{name}");
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(TreeError::at(kpos, &key, "not a variable name"));
            }
            let value = v.str(&key)?;
            if value.contains('\0') {
                return Err(TreeError::at(&v.pos, &key, "a value cannot hold NUL"));
            }
            set.push((
                name.clone(),
                Located {
                    value: value.to_string(),
                    origin: v.pos.origin(),
                },
            ));
        }
    }
    Ok(EnvRules {
        pass: list(t, "pass", P, &env_glob)?,
        deny: list(t, "deny", P, &env_glob)?,
        set,
    })
}

fn limits(t: &Table) -> Result<LimitRules, TreeError> {
    known_keys(t, "limits", &["timeout", "memory", "pids", "output"])?;
    let size = |key: &str| -> Result<Option<Located<u64>>, TreeError> {
        let full = format!("limits.{key}");
        let Some((_, n)) = t.get(key) else {
            return Ok(None);
        };
        let v = match &n.value {
            Value::Str(s) => parse_size(s).ok_or_else(|| {
                TreeError::at(
                    &n.pos,
                    &full,
                    format!("{s:?} is not a size like \"4GiB\", \"64MiB\" or \"512k\""),
                )
            })?,
            Value::Int(i) => u64::try_from(*i)
                .map_err(|_| TreeError::at(&n.pos, &full, format!("{i} is not a size")))?,
            _ => {
                return Err(TreeError::at(
                    &n.pos,
                    &full,
                    format!("expected a size, found {}", n.type_name()),
                ))
            }
        };
        positive(v, n, &full)
    };
    let timeout = match t.get("timeout") {
        Some((_, n)) => {
            let s = n.str("limits.timeout")?;
            let d = parse_duration(s).ok_or_else(|| {
                TreeError::at(
                    &n.pos,
                    "limits.timeout",
                    format!("{s:?} is not a duration like \"10m\", \"90s\" or \"1h\""),
                )
            })?;
            if d.is_zero() {
                return Err(TreeError::at(
                    &n.pos,
                    "limits.timeout",
                    "must be more than zero",
                ));
            }
            Some(Located {
                value: d,
                origin: n.pos.origin(),
            })
        }
        None => None,
    };
    let pids = match t.get("pids") {
        Some((_, n)) => {
            let i = n.int("limits.pids")?;
            let v = u64::try_from(i)
                .map_err(|_| TreeError::at(&n.pos, "limits.pids", format!("{i} is not a count")))?;
            positive(v, n, "limits.pids")?
        }
        None => None,
    };
    Ok(LimitRules {
        timeout,
        memory: size("memory")?,
        pids,
        output: size("output")?,
    })
}

fn positive(v: u64, n: &Node, key: &str) -> Result<Option<Located<u64>>, TreeError> {
    if v == 0 {
        return Err(TreeError::at(&n.pos, key, "must be more than zero"));
    }
    Ok(Some(Located {
        value: v,
        origin: n.pos.origin(),
    }))
}

fn commands(t: &Table) -> Result<CommandRules, TreeError> {
    known_keys(t, "commands", &["allow", "prompt", "forbidden"])?;
    let rules = |key: &str| -> Result<Vec<Located<Vec<String>>>, TreeError> {
        let full = format!("commands.{key}");
        let Some((_, n)) = t.get(key) else {
            return Ok(Vec::new());
        };
        n.array(&full)?
            .iter()
            .map(|r| {
                let words: Vec<String> = r
                    .strings(&full)?
                    .into_iter()
                    .map(|(s, _)| s.to_string())
                    .collect();
                if words.is_empty() {
                    return Err(TreeError::at(
                        &r.pos,
                        &full,
                        "an empty prefix would match every command",
                    ));
                }
                Ok(Located {
                    value: words,
                    origin: r.pos.origin(),
                })
            })
            .collect()
    };
    Ok(CommandRules {
        allow: rules("allow")?,
        prompt: rules("prompt")?,
        forbidden: rules("forbidden")?,
    })
}
