//! The policy layer from the outside: loading (errors name file, line and key),
//! `extends`, the shipped profiles, narrowing, and the decisions behind `policy check`.

use sandboxd::config::{Config, ConfigError};
use sandboxd::policy::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Loads `files` (name, body) from a fresh policy dir.
fn load(
    files: &[(&str, &str)],
    embedded: bool,
) -> (tempfile::TempDir, Result<PolicyStore, PolicyError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let r = PolicyStore::load(Some(dir.path()), embedded);
    (dir, r)
}

fn store(files: &[(&str, &str)]) -> PolicyStore {
    let (_d, r) = load(files, true);
    r.unwrap()
}

fn ctx() -> ExecContext {
    ExecContext {
        cwd: "/srv/ws".into(),
        home: "/home/u".into(),
        ..Default::default()
    }
}

#[test]
fn each_kind_of_broken_profile_names_file_line_and_key() {
    // (body, line, what the message must mention)
    let cases: &[(&str, usize, &str)] = &[
        ("[filesystem\nread = []\n", 1, ""),
        ("description = \"x\"\n\nbogus_key = 1\n", 3, "`bogus_key`"),
        (
            "[filesystem]\nread = [\"/\"]\nwrit = [\"{cwd}\"]\n",
            3,
            "`filesystem.writ`",
        ),
        (
            "description = \"x\"\napproval = \"sometimes\"\n",
            2,
            "`approval`",
        ),
        ("landlock = \"maybe\"\n", 1, "`landlock`"),
        ("[network]\nmode = \"open\"\n", 2, "`network.mode`"),
        (
            "[limits]\ntimeout = \"10 fortnights\"\n",
            2,
            "`limits.timeout`",
        ),
        ("[limits]\ntimeout = \"0s\"\n", 2, "`limits.timeout`"),
        ("[limits]\nmemory = \"lots\"\n", 2, "`limits.memory`"),
        ("[limits]\n\noutput = 0\n", 3, "`limits.output`"),
        ("[limits]\npids = -1\n", 2, "`limits.pids`"),
        (
            "[network]\nmode = \"allowlist\"\nports = [70000]\n",
            3,
            "`network.ports`",
        ),
        // Not "the default ports", which would widen a narrower base.
        (
            "[network]\nmode = \"allowlist\"\nports = []\n",
            3,
            "`network.ports`",
        ),
        (
            "[filesystem]\nwrite = [\"relative/path\"]\n",
            2,
            "relative/path",
        ),
        (
            "[filesystem]\nread = [\"{nope}/x\"]\n",
            2,
            "unknown template {nope}",
        ),
        (
            "[filesystem]\nwrite = [\"{cwd}/*\"]\n",
            2,
            "`filesystem.write`",
        ),
        (
            "[filesystem]\ndeny_read = [\"/a/../b\"]\n",
            2,
            "`filesystem.deny_read`",
        ),
        (
            "[network]\nmode = \"allowlist\"\nallow = [\"*\"]\n",
            3,
            "\"*\"",
        ),
        ("[network]\nallow = [\"**\"]\n", 2, "`network.allow`"),
        (
            "[network]\nmode = \"allowlist\"\nallow = [\"ok.test\",\n  \"*.com\"]\n",
            4,
            "*.com",
        ),
        ("[network]\ndeny = [\"**.co.uk\"]\n", 2, "`network.deny`"),
        ("[network]\nallow_ech = 1\n", 2, "`network.allow_ech`"),
        (
            "[network]\nallow_cidrs = [\"10.0.0.0/33\"]\n",
            2,
            "`network.allow_cidrs`",
        ),
        (
            "[[network.rule]]\nhost = \"*.com\"\n",
            2,
            "`network.rule.host`",
        ),
        ("[env]\ndeny = [\"A=B\"]\n", 2, "`env.deny`"),
        ("[commands]\nallow = [[]]\n", 2, "`commands.allow`"),
        ("allow_root = \"yes\"\n", 1, "`allow_root`"),
        ("extends = 3\n", 1, "`extends`"),
    ];
    for (body, line, mention) in cases {
        let (dir, r) = load(&[("bad.toml", body)], true);
        let msg = r.expect_err(&format!("accepted:\n{body}")).to_string();
        let file = dir.path().join("bad.toml");
        let prefix = format!("{}:{line}:", file.display());
        assert!(
            msg.starts_with(&prefix),
            "want {prefix} for:\n{body}\ngot: {msg}"
        );
        assert!(
            msg.contains(mention),
            "no mention of {mention:?} for:\n{body}\ngot: {msg}"
        );
    }
}

#[test]
fn extends_errors_name_the_parent_or_the_cycle() {
    let (_d, r) = load(
        &[(
            "child.toml",
            "description = \"c\"\nextends = \"missing-parent\"\n",
        )],
        true,
    );
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("child.toml:2:")
            && msg.contains("missing-parent")
            && msg.contains("`extends`"),
        "{msg}"
    );

    let (_d, r) = load(
        &[
            ("a.toml", "extends = \"b\"\n"),
            ("b.toml", "extends = \"c\"\n"),
            ("c.toml", "extends = \"a\"\n"),
        ],
        true,
    );
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("cycle") && msg.contains("a -> b -> c -> a"),
        "{msg}"
    );

    let (_d, r) = load(&[("self.toml", "extends = \"self\"\n")], true);
    assert!(r.unwrap_err().to_string().contains("cycle"));
}

#[test]
fn extends_merges_tables_appends_lists_overrides_scalars() {
    let s = store(&[
        ("base.toml", "description = \"base\"\napproval = \"untrusted\"\n[filesystem]\nread = [\"/\"]\nwrite = [\"{cwd}\"]\n[env]\nset = { A = \"1\", B = \"2\" }\n[limits]\ntimeout = \"1h\"\nmemory = \"1GiB\"\n"),
        ("child.toml", "extends = \"base\"\napproval = \"never\"\n[filesystem]\nwrite = [\"{tmp}\"]\n[env]\nset = { B = \"3\" }\n[limits]\ntimeout = \"1m\"\n"),
    ]);
    let c = s.get("child").unwrap();
    assert_eq!(c.extends.as_deref(), Some("base"));
    assert_eq!(c.description, "base");
    assert_eq!(c.approval.value, ApprovalMode::Never);
    assert!(
        c.approval.origin.file.ends_with("child.toml") && c.approval.origin.line == 2,
        "{:?}",
        c.approval.origin
    );
    let w: Vec<_> = c
        .filesystem
        .write
        .iter()
        .map(|l| l.value.as_str())
        .collect();
    assert_eq!(w, ["{cwd}", "{tmp}"]);
    assert!(c.filesystem.write[0].origin.file.ends_with("base.toml"));
    assert_eq!(c.filesystem.read.len(), 1);
    let set: Vec<_> = c
        .env
        .set
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(set, [("A", "1"), ("B", "3")]);
    assert_eq!(
        c.limits.timeout.as_ref().unwrap().value,
        Duration::from_secs(60)
    );
    assert_eq!(c.limits.memory.as_ref().unwrap().value, 1 << 30);
    // Extending an embedded profile.
    let s = store(&[(
        "short.toml",
        "extends = \"workspace\"\n[limits]\ntimeout = \"1m\"\n",
    )]);
    let p = s.get("short").unwrap();
    assert_eq!(p.filesystem.deny_write.len(), 2);
    assert_eq!(
        p.limits.timeout.as_ref().unwrap().value,
        Duration::from_secs(60)
    );
    assert!(p.filesystem.deny_read[0].origin.file == "embedded:workspace.toml");
}

#[test]
fn embedded_profiles_match_the_spec() {
    let (_d, r) = load(&[], true);
    let s = r.unwrap();
    let names: Vec<_> = s.profiles().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["full", "read-only", "workspace"]);
    assert_eq!(PolicyStore::DEFAULT, "workspace");
    for p in s.profiles() {
        assert!(
            !p.allow_root.value && !p.allow_user_profiles.value,
            "{}",
            p.name
        );
        assert_eq!(p.approval.value, ApprovalMode::OnRequest, "{}", p.name);
        assert_eq!(p.landlock.value, LandlockMode::Required, "{}", p.name);
        assert_eq!(p.source, format!("embedded:{}.toml", p.name));
        assert!(p.limits.timeout.is_some() && p.limits.memory.is_some() && p.limits.pids.is_some());
    }
    let vals = |v: &[Located<String>]| v.iter().map(|l| l.value.clone()).collect::<Vec<_>>();
    let ro = s.get("read-only").unwrap();
    assert_eq!(vals(&ro.filesystem.read), ["/"]);
    assert_eq!(vals(&ro.filesystem.write), ["{tmp}"]);
    assert_eq!(ro.network.mode.value, NetworkMode::None);
    let ws = s.get("workspace").unwrap();
    assert_eq!(vals(&ws.filesystem.write), ["{cwd}", "{tmp}"]);
    assert_eq!(
        vals(&ws.filesystem.deny_write),
        ["{cwd}/.git/hooks", "{cwd}/.git/config"]
    );
    assert_eq!(
        vals(&ws.filesystem.deny_read),
        ["{home}/.ssh", "{home}/.aws", "{home}/.gnupg"]
    );
    assert_eq!(ws.network.mode.value, NetworkMode::None);
    assert_eq!(
        ws.limits.timeout.as_ref().unwrap().value,
        Duration::from_secs(600)
    );
    assert_eq!(ws.limits.memory.as_ref().unwrap().value, 4 << 30);
    assert_eq!(ws.limits.pids.as_ref().unwrap().value, 1024);
    assert_eq!(ws.limits.output.as_ref().unwrap().value, 64 << 20);
    let full = s.get("full").unwrap();
    assert_eq!(vals(&full.filesystem.write), ["/"]);
    assert_eq!(full.network.mode.value, NetworkMode::Full);
}

#[test]
fn policy_dir_replaces_or_stands_alone() {
    let s = store(&[("full.toml", "description = \"site full\"\n")]);
    let full = s.get("full").unwrap();
    assert_eq!(full.description, "site full");
    assert!(full.source.ends_with("full.toml") && !full.source.starts_with("embedded:"));
    assert_eq!(
        full.network.mode.value,
        NetworkMode::None,
        "defaults, not the embedded full"
    );

    let (_d, r) = load(
        &[
            ("mine.toml", "description = \"m\"\n"),
            ("notes.txt", "ignored"),
        ],
        false,
    );
    let s = r.unwrap();
    assert_eq!(
        s.profiles().map(|p| p.name.clone()).collect::<Vec<_>>(),
        ["mine"]
    );
    assert!(s.get("workspace").is_none());

    let missing = PolicyStore::load(Some(Path::new("/nonexistent/policies")), true).unwrap();
    assert_eq!(missing.profiles().count(), 3);
}

#[test]
fn render_round_trips() {
    let s = store(&[(
        "rich.toml",
        "extends = \"workspace\"\n[network]\nmode = \"allowlist\"\nallow = [\"crates.io\", \"**.crates.io\"]\nports = [443]\nmethods = [\"GET\"]\n[[network.rule]]\nhost = \"api.github.com\"\nmethods = [\"GET\"]\npaths = [\"/repos/**\"]\ninject = { header = \"Authorization\", value = \"Bearer {secret:GH_TOKEN}\" }\n[commands]\nprompt = [[\"git\", \"push\"]]\n[env]\nset = { TERM = \"dumb\" }\n",
    )]);
    for name in ["read-only", "workspace", "full", "rich"] {
        let text = s.render(name).unwrap();
        let (_d, again) = load(&[(&format!("{name}.toml"), &text)], false);
        let again = again.unwrap_or_else(|e| panic!("{name} does not re-parse: {e}\n{text}"));
        assert_eq!(
            again
                .render(name)
                .unwrap()
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            text.lines().skip(1).collect::<Vec<_>>()
        );
    }
    let ws = s.render("workspace").unwrap();
    assert!(
        ws.contains("{cwd}/.git/hooks")
            && ws.contains("timeout = \"10m\"")
            && ws.contains("memory = \"4GiB\""),
        "{ws}"
    );
    assert!(s.render("nope").is_none());
}

#[test]
fn resolve_expands_templates_and_filters_env() {
    let s = store(&[]);
    let ws = s.get("workspace").unwrap();
    let mut c = ctx();
    c.caller_env = [
        ("PATH", "/usr/bin"),
        ("MY_API_TOKEN", "s3cret"),
        ("AWS_REGION", "x"),
        ("DEPLOY_KEY", "k"),
        ("FAVOURITE", "blue"),
        // Code a shell or the loader would run unseen by command rules.
        ("BASH_ENV", "/tmp/x.sh"),
        ("BASH_FUNC_ls%%", "() { rm -rf ~; }"),
        ("LD_PRELOAD", "/tmp/x.so"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.set_env.insert("EXTRA".into(), "1".into());
    let e = resolve(ws, &c, &Narrowing::default()).unwrap();
    assert_eq!(e.read, [PathBuf::from("/")]);
    assert_eq!(e.write, [PathBuf::from("/srv/ws")]);
    assert!(e.private_tmp);
    assert_eq!(e.deny_write, ["/srv/ws/.git/hooks", "/srv/ws/.git/config"]);
    assert_eq!(
        e.deny_read,
        ["/home/u/.ssh", "/home/u/.aws", "/home/u/.gnupg"]
    );
    assert_eq!(e.network, NetworkMode::None);
    let names: Vec<_> = e.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["EXTRA", "FAVOURITE", "PATH"]);
    assert_eq!(e.limits.timeout, Some(Duration::from_secs(600)));
    assert_eq!(e.limits.output, 64 << 20);
    assert_eq!(e.hash.len(), 64);
    // Same inputs, same hash; a different cwd, a different hash.
    assert_eq!(resolve(ws, &c, &Narrowing::default()).unwrap().hash, e.hash);
    let mut c2 = c.clone();
    c2.cwd = "/srv/other".into();
    assert_ne!(
        resolve(ws, &c2, &Narrowing::default()).unwrap().hash,
        e.hash
    );
    for name in [
        "ENV",
        "SHELLOPTS",
        "BASH_FUNC_f%%",
        "LD_AUDIT",
        "GIT_CONFIG_KEY_0",
        "NODE_OPTIONS",
    ] {
        let mut c3 = c.clone();
        c3.set_env.insert(name.into(), "x".into());
        let r = resolve(ws, &c3, &Narrowing::default()).unwrap_err();
        assert!(r.message.contains(&format!("--env {name}:")), "{r:?}");
    }

    // A cwd of / is the root, not an empty path, and a root the caller must
    // be able to write: only a profile's own `/` is the whole host.
    let mut c = ctx();
    c.cwd = "/".into();
    let e = resolve(ws, &c, &Narrowing::default()).unwrap();
    assert_eq!(e.write, [PathBuf::from("/")]);
    assert!(!e.write_host);
    let full = resolve(s.get("full").unwrap(), &c, &Narrowing::default()).unwrap();
    assert_eq!(full.write, [PathBuf::from("/")]);
    assert!(full.write_host);
    // An unknown home is refused, not guessed.
    let mut c = ctx();
    c.home = PathBuf::new();
    let r = resolve(ws, &c, &Narrowing::default()).unwrap_err();
    assert!(
        r.rule.contains("filesystem.deny_read \"{home}/.ssh\""),
        "{r}"
    );

    // `**/.env` becomes an absolute pattern.
    let s = store(&[(
        "dot.toml",
        "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"**/.env\"]\n",
    )]);
    let e = resolve(s.get("dot").unwrap(), &ctx(), &Narrowing::default()).unwrap();
    assert!(
        e.deny_read.contains(&"**/.env".to_string()),
        "{:?}",
        e.deny_read
    );

    // A denied name cannot be smuggled in with --env; the refusal names the rule.
    let mut c = ctx();
    c.set_env.insert("GH_TOKEN".into(), "abc".into());
    let r = resolve(ws, &c, &Narrowing::default()).unwrap_err();
    assert!(
        r.rule.contains("env.deny")
            && r.rule.contains("*TOKEN*")
            && r.rule.contains("embedded:workspace.toml:"),
        "{r}"
    );
    assert!(r.to_string().contains("GH_TOKEN"));
}

#[test]
fn narrowing_is_allowed_widening_is_refused_naming_the_rule() {
    let s = store(&[
        (
            "short.toml",
            "extends = \"workspace\"\n[limits]\ntimeout = \"1m\"\n",
        ),
        (
            "net.toml",
            "[network]\nmode = \"allowlist\"\nallow = [\"**.crates.io\", \"pypi.org\"]\n",
        ),
        ("open.toml", "[network]\nmode = \"full\"\n"),
        ("strict.toml", "approval = \"untrusted\"\n"),
    ]);
    let p = |n| s.get(n).unwrap();
    let ok =
        |name, n: Narrowing| resolve(p(name), &ctx(), &n).unwrap_or_else(|r| panic!("{name}: {r}"));
    let net = |v: &[&str]| Narrowing {
        network_allow: Some(v.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };

    let e = ok(
        "short",
        Narrowing {
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    assert_eq!(e.limits.timeout, Some(Duration::from_secs(10)));
    let e = ok(
        "workspace",
        Narrowing {
            memory: Some(1 << 20),
            pids: Some(10),
            output: Some(4096),
            ..Default::default()
        },
    );
    assert_eq!(
        (e.limits.memory, e.limits.pids, e.limits.output),
        (Some(1 << 20), Some(10), 4096)
    );

    let e = ok(
        "workspace",
        Narrowing {
            write: Some(vec!["/srv/ws/sub/".into()]),
            ..Default::default()
        },
    );
    assert_eq!(e.write, [PathBuf::from("/srv/ws/sub")]);
    ok(
        "workspace",
        Narrowing {
            write: Some(vec![]),
            ..Default::default()
        },
    );

    for to in [
        ApprovalMode::Untrusted,
        ApprovalMode::Never,
        ApprovalMode::OnRequest,
    ] {
        assert_eq!(
            ok(
                "workspace",
                Narrowing {
                    approval: Some(to),
                    ..Default::default()
                }
            )
            .approval,
            to
        );
    }

    let e = ok("net", net(&["static.crates.io", "**.crates.io"]));
    assert_eq!(
        (e.network, e.network_allow.clone()),
        (
            NetworkMode::Allowlist,
            vec!["static.crates.io".to_string(), "**.crates.io".to_string()]
        )
    );
    assert_eq!(ok("net", net(&[])).network, NetworkMode::None);
    assert_eq!(
        ok("net", Narrowing::default()).network_allow,
        ["**.crates.io", "pypi.org"]
    );
    let e = ok("open", net(&["crates.io"]));
    assert_eq!(e.network, NetworkMode::Allowlist);

    let write = |root: &str| Narrowing {
        write: Some(vec![root.into()]),
        ..Default::default()
    };
    // Each row: case, profile, narrowing asked for, what the refusal's rule names.
    let widenings = [
        (
            "longer timeout",
            "short",
            Narrowing {
                timeout: Some(Duration::from_secs(7200)),
                ..Default::default()
            },
            "limits.timeout \"1m\"",
        ),
        (
            "more memory",
            "workspace",
            Narrowing {
                memory: Some(8 << 30),
                ..Default::default()
            },
            "limits.memory \"4GiB\"",
        ),
        (
            "more pids",
            "workspace",
            Narrowing {
                pids: Some(4096),
                ..Default::default()
            },
            "limits.pids",
        ),
        (
            "more output",
            "workspace",
            Narrowing {
                output: Some(1 << 30),
                ..Default::default()
            },
            "limits.output",
        ),
        // The private /tmp is writable, but a root asked for there would be the
        // host's /tmp/x: a widening.
        (
            "write under /tmp",
            "workspace",
            write("/tmp/x"),
            "filesystem.write",
        ),
        ("write /etc", "workspace", write("/etc"), "filesystem.write"),
        (
            "write out of the workspace by ..",
            "workspace",
            write("/srv/ws/../etc"),
            "filesystem.write",
        ),
        (
            "write a sibling of the workspace",
            "workspace",
            write("/srv/wsx"),
            "embedded:workspace.toml:",
        ),
        (
            "untrusted to on-request",
            "strict",
            Narrowing {
                approval: Some(ApprovalMode::OnRequest),
                ..Default::default()
            },
            "approval \"untrusted\"",
        ),
        (
            "untrusted to never",
            "strict",
            Narrowing {
                approval: Some(ApprovalMode::Never),
                ..Default::default()
            },
            "approval",
        ),
        (
            "a host not allowed",
            "net",
            net(&["evil.com"]),
            "network.allow",
        ),
        (
            "a wider pattern",
            "net",
            net(&["*.pypi.org"]),
            "network.allow",
        ),
        (
            "a host with no network",
            "workspace",
            net(&["crates.io"]),
            "network.mode \"none\"",
        ),
    ];
    for (case, name, n, rule) in widenings {
        let r = resolve(p(name), &ctx(), &n).expect_err(case);
        assert!(r.rule.contains(rule), "{case}: want rule {rule:?}, got {r}");
    }
}

#[test]
fn may_narrow_to_table() {
    use ApprovalMode::*;
    let cases = [
        (OnRequest, Untrusted, true),
        (OnRequest, Never, true),
        (OnRequest, OnRequest, true),
        (Untrusted, Untrusted, true),
        (Untrusted, OnRequest, false),
        (Untrusted, Never, false),
        (Never, Never, true),
        (Never, OnRequest, false),
        (Never, Untrusted, false),
    ];
    for (from, to, want) in cases {
        assert_eq!(from.may_narrow_to(to), want, "{from:?} -> {to:?}");
    }
    for m in [Untrusted, OnRequest, Never] {
        assert_eq!(ApprovalMode::parse(m.as_str()), Some(m));
    }
}

#[test]
fn check_path_table() {
    let s = store(&[(
        "secretive.toml",
        "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"{cwd}/secret.txt\", \"**/.env\"]\n",
    )]);
    let c = ctx();
    use Access::*;
    use Verdict::*;
    // (profile, path, access, verdict, rule must contain)
    let cases: &[(&str, &str, Access, Verdict, &str)] = &[
        (
            "workspace",
            "/srv/ws/file.txt",
            Write,
            Allow,
            "filesystem.write \"{cwd}\"",
        ),
        (
            "workspace",
            "/srv/ws/file.txt",
            Read,
            Allow,
            "filesystem.read \"/\"",
        ),
        (
            "workspace",
            "/etc/passwd",
            Write,
            Deny,
            "filesystem.write (no root covers /etc/passwd)",
        ),
        ("workspace", "/etc/passwd", Read, Allow, "filesystem.read"),
        (
            "workspace",
            "/srv/ws/.git/hooks/pre-commit",
            Write,
            Deny,
            "filesystem.deny_write \"{cwd}/.git/hooks\"",
        ),
        (
            "workspace",
            "/srv/ws/.git/config",
            Write,
            Deny,
            "deny_write",
        ),
        (
            "workspace",
            "/srv/ws/.git/HEAD",
            Write,
            Allow,
            "filesystem.write",
        ),
        (
            "workspace",
            "/srv/ws/.git/hooks/x",
            Read,
            Allow,
            "filesystem.read",
        ),
        (
            "workspace",
            "/home/u/.ssh/id_ed25519",
            Read,
            Deny,
            "filesystem.deny_read \"{home}/.ssh\"",
        ),
        ("workspace", "/home/u/.ssh", Read, Deny, "deny_read"),
        ("workspace", "/home/u/.sshx", Read, Allow, "filesystem.read"),
        ("workspace", "/tmp/scratch", Write, Allow, "\"{tmp}\""),
        (
            "workspace",
            "/srv/ws/../../etc/passwd",
            Read,
            Deny,
            "filesystem.read",
        ),
        ("workspace", "relative", Read, Deny, "filesystem.read"),
        (
            "read-only",
            "/srv/ws/file.txt",
            Write,
            Deny,
            "filesystem.write (no root covers",
        ),
        ("full", "/etc/passwd", Write, Allow, "embedded:full.toml:"),
        (
            "secretive",
            "/srv/ws/secret.txt",
            Read,
            Deny,
            "secretive.toml:3 filesystem.deny_read \"{cwd}/secret.txt\"",
        ),
        (
            "secretive",
            "/srv/ws/sub/dir/.env",
            Read,
            Deny,
            "\"**/.env\"",
        ),
        (
            "secretive",
            "/srv/ws/sub/dir/.env",
            Write,
            Deny,
            "deny_read",
        ),
        (
            "secretive",
            "/srv/ws/sub/dir/.envrc",
            Read,
            Allow,
            "filesystem.read",
        ),
        (
            "secretive",
            "/home/u/.aws/credentials",
            Read,
            Deny,
            "embedded:workspace.toml:",
        ),
    ];
    for (name, path, access, verdict, rule) in cases {
        let d = check_path(s.get(name).unwrap(), &c, Path::new(path), *access);
        assert_eq!(d.verdict, *verdict, "{name} {path} {access:?}: {d:?}");
        assert!(
            d.rule.contains(rule),
            "{name} {path} {access:?}: want {rule:?} in {:?}",
            d.rule
        );
    }
}

#[test]
fn check_command_table() {
    let s = store(&[
        ("cmds.toml", "[commands]\nallow = [[\"git\", \"status\"], [\"ls\"], [\"rm\"]]\nprompt = [[\"git\", \"push\"], [\"rm\", \"-rf\"]]\nforbidden = [[\"rm\", \"-rf\", \"/\"]]\n"),
        ("wary.toml", "extends = \"cmds\"\napproval = \"untrusted\"\n"),
        ("quiet.toml", "extends = \"cmds\"\napproval = \"never\"\n"),
    ]);
    use Verdict::*;
    let cases: &[(&str, &[&str], Verdict, &str)] = &[
        (
            "cmds",
            &["git", "status", "-s"],
            Allow,
            "commands.allow [\"git\", \"status\"]",
        ),
        ("cmds", &["ls"], Allow, "commands.allow"),
        (
            "cmds",
            &["git", "push", "origin"],
            Prompt,
            "commands.prompt [\"git\", \"push\"]",
        ),
        ("cmds", &["rm", "x"], Allow, "commands.allow [\"rm\"]"),
        (
            "cmds",
            &["rm", "-rf", "x"],
            Prompt,
            "commands.prompt [\"rm\", \"-rf\"]",
        ),
        (
            "cmds",
            &["rm", "-rf", "/"],
            Deny,
            "cmds.toml:4 commands.forbidden",
        ),
        ("cmds", &["git"], Allow, "approval \"on-request\""),
        // A pager set for git is judged as the command it is.
        (
            "cmds",
            &["sh", "-c", "PAGER='rm -rf /' git log"],
            Deny,
            "commands.forbidden",
        ),
        (
            "cmds",
            &["sh", "-c", "GIT_PAGER=cat git status"],
            Allow,
            "approval",
        ),
        ("cmds", &["make"], Allow, "approval"),
        (
            "wary",
            &["make"],
            Prompt,
            "wary.toml:2 approval \"untrusted\"",
        ),
        ("wary", &["ls", "-l"], Allow, "commands.allow"),
        ("wary", &["rm", "-rf", "/"], Deny, "commands.forbidden"),
        ("quiet", &["make"], Allow, "approval \"never\""),
        ("quiet", &["git", "push"], Prompt, "commands.prompt"),
    ];
    for (name, argv, verdict, rule) in cases {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let d = check_command(s.get(name).unwrap(), &argv, NO_LOOKUP);
        assert_eq!(d.verdict, *verdict, "{name} {argv:?}: {d:?}");
        assert!(
            d.rule.contains(rule),
            "{name} {argv:?}: want {rule:?} in {:?}",
            d.rule
        );
    }
}

/// An allow rule names a tool, not whatever its name finds: where the
/// exec's PATH may find a program the sandbox made (the lookup says why),
/// or behind words that may set PATH, the approval mode decides instead.
/// Forbidden and prompt rules still match.
#[test]
fn allow_rules_are_not_applied_to_names_a_sandbox_may_have_placed() {
    let s = store(&[
        ("cmds.toml", "[commands]\nallow = [[\"ls\"], [\"git\", \"status\"]]\nprompt = [[\"git\", \"push\"]]\n"),
        ("wary.toml", "extends = \"cmds\"\napproval = \"untrusted\"\n"),
    ]);
    let in_workspace = |n: &str| (n == "ls").then(|| "`ls` is /ws/bin/ls".to_string());
    let made =
        |n: &str| (n.starts_with("./") || n == "env").then(|| format!("`{n}` is the sandbox's"));
    use Verdict::*;
    let cases: &[(&str, &[&str], Lookup, Verdict, &str)] = &[
        ("wary", &["ls"], NO_LOOKUP, Allow, "commands.allow"),
        (
            "wary",
            &["ls"],
            &in_workspace,
            Prompt,
            "cmds.toml:2 commands.allow [\"ls\"] not applied: `ls` is /ws/bin/ls)",
        ),
        (
            "wary",
            &["git", "status"],
            &in_workspace,
            Allow,
            "commands.allow",
        ),
        // Under a mode that allows anyway, nothing changes.
        (
            "cmds",
            &["ls"],
            &in_workspace,
            Allow,
            "approval \"on-request\"",
        ),
        (
            "cmds",
            &["git", "push"],
            &in_workspace,
            Prompt,
            "commands.prompt",
        ),
        // Wrapped and in scripts, the same lookup.
        (
            "wary",
            &["sh", "-c", "ls -l"],
            &in_workspace,
            Prompt,
            "not applied",
        ),
        ("wary", &["env", "ls"], &in_workspace, Prompt, "not applied"),
        // A shell or wrapper the sandbox may have made runs instead.
        (
            "wary",
            &["./bash", "-c", "ls"],
            &made,
            Prompt,
            "`./bash` is the sandbox's",
        ),
        (
            "wary",
            &["env", "ls"],
            &made,
            Prompt,
            "`env` is the sandbox's",
        ),
        (
            "wary",
            &["bash", "-c", "ls"],
            &made,
            Allow,
            "commands.allow",
        ),
        (
            "cmds",
            &["./bash", "-c", "ls"],
            &made,
            Allow,
            "commands.allow",
        ),
        // PATH set on the way: nothing is known of where names are found.
        (
            "wary",
            &["sh", "-c", "PATH=./bin:$PATH ls"],
            NO_LOOKUP,
            Prompt,
            "PATH that `PATH=./bin:$PATH ls` may set",
        ),
        (
            "wary",
            &["sh", "-c", "export PATH=/tmp; git status"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["sh", "-c", "cd /; PATH+=:.; ls"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["sh", "-c", ": ${PATH:=.}; ls"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["env", "PATH=/w", "ls"],
            NO_LOOKUP,
            Prompt,
            "`PATH=/w` may set",
        ),
        (
            "wary",
            &["sh", "-c", "printf -v P''ATH /w; ls"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["sh", "-c", "printf -v P\\ATH /w; ls"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["sh", "-c", "export P\"ATH\"=/w; ls"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["bash", "-c", "declare $'P\\x41TH'=/w; ls"],
            NO_LOOKUP,
            Prompt,
            "not applied",
        ),
        (
            "wary",
            &["env", "PATH=/w", "git", "push"],
            NO_LOOKUP,
            Prompt,
            "commands.prompt",
        ),
        // Reading PATH, or another variable with PATH in its name, sets nothing.
        (
            "wary",
            &["sh", "-c", "ls \"$PATH\" ${PATH}"],
            NO_LOOKUP,
            Allow,
            "commands.allow",
        ),
        (
            "wary",
            &["sh", "-c", "MANPATH=x LD_LIBRARY_PATH=y ls"],
            NO_LOOKUP,
            Allow,
            "commands.allow",
        ),
        (
            "wary",
            &["env", "PYTHONPATH=/w", "ls"],
            NO_LOOKUP,
            Allow,
            "commands.allow",
        ),
    ];
    for (name, argv, lookup, verdict, rule) in cases {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let profile = s.get(name).unwrap();
        let d = check_command(profile, &argv, *lookup);
        assert_eq!(d.verdict, *verdict, "{name} {argv:?}: {d:?}");
        // The part of a script the case is about, not necessarily the first asked.
        let parts = command_parts(profile, &argv, *lookup);
        assert!(
            parts.iter().any(|p| p.decision.rule.contains(rule)),
            "{name} {argv:?}: want {rule:?} in {parts:?}"
        );
    }
}

/// Scripts nested in scripts, each read two ways (bash's and dash's), do
/// not multiply the work of judging one argv: past a budget of four times
/// the argv's bytes, what is left is not understood, and so asked about.
#[test]
fn nested_scripts_are_read_within_a_budget() {
    let s = store(&[(
        "cmds.toml",
        "[commands]\nforbidden = [[\"rm\", \"-rf\", \"/\"]]\n",
    )]);
    // Each level: `sh -c "<escaped inner>" &>/dev/null :`, which bash and
    // dash read as different commands.
    let mut t = format!(": {}", "A".repeat(120_000));
    for _ in 0..9 {
        t = format!(
            "sh -c \"{}\" &>/dev/null :",
            t.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    let argv = vec!["sh".to_string(), "-c".into(), t];
    let start = std::time::Instant::now();
    let d = check_command(s.get("cmds").unwrap(), &argv, NO_LOOKUP);
    // A guard against the doubling, not a benchmark: 2^9 readings of
    // 120 KB take far longer than this.
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(d.verdict, Verdict::Prompt, "{d:?}");
    assert!(d.rule.contains("more to read"), "{d:?}");
    // A forbidden command is refused all the same, judged after the
    // budget ran out, and too long for what was left of it.
    let argv = vec![
        "sh".to_string(),
        "-c".into(),
        format!("{}; rm -rf / {}", argv[2], "B".repeat(130_000)),
    ];
    let d = check_command(s.get("cmds").unwrap(), &argv, NO_LOOKUP);
    assert_eq!(d.verdict, Verdict::Deny, "{d:?}");
}

#[test]
fn check_url_table() {
    let s = store(&[
        (
            "net.toml",
            "[network]\nmode = \"allowlist\"\nallow = [\"crates.io\", \"**.crates.io\", \"*.pythonhosted.org\", \"Gist.GitHub.com\", \"github.com\", \"10.1.2.3\", \"192.168.1.1\"]\ndeny = [\"gist.github.com\"]\nports = [443, 80]\nallow_cidrs = [\"10.0.0.0/8\"]\n",
        ),
        (
            "strict.toml",
            "approval = \"never\"\n[network]\nmode = \"allowlist\"\nallow = [\"**.allowed.test\", \"xn--bcher-kva.test\", \"127.0.0.1\", \"[::1]\"]\ndeny = [\"denied.allowed.test\"]\nmethods = [\"GET\"]\n[[network.rule]]\nhost = \"api.allowed.test\"\npaths = [\"/v1/**\"]\n",
        ),
    ]);
    use Verdict::*;
    let cases: &[(&str, &str, Verdict, &str)] = &[
        (
            "workspace",
            "https://crates.io/",
            Deny,
            "network.mode \"none\"",
        ),
        (
            "full",
            "https://anything.example:8443/x",
            Allow,
            "network.mode \"full\"",
        ),
        (
            "net",
            "https://crates.io/api",
            Allow,
            "net.toml:3 network.allow \"crates.io\"",
        ),
        (
            "net",
            "https://STATIC.crates.io./x",
            Allow,
            "\"**.crates.io\"",
        ),
        (
            "net",
            "http://files.pythonhosted.org/p",
            Allow,
            "\"*.pythonhosted.org\"",
        ),
        // Unlisted under approval on-request: the person would be asked.
        (
            "net",
            "https://pythonhosted.org/",
            Prompt,
            "network.allow (no pattern matches pythonhosted.org); ",
        ),
        (
            "net",
            "https://gist.github.com/x",
            Deny,
            "network.deny \"gist.github.com\"",
        ),
        (
            "net",
            "https://github.com/x",
            Allow,
            "network.allow \"github.com\"",
        ),
        (
            "net",
            "https://crates.io:8080/",
            Deny,
            "net.toml:5 network.ports [443, 80]",
        ),
        ("net", "crates.io:443", Allow, "network.allow"),
        ("net", "crates.io", Deny, "network.ports"),
        ("net", "https://evilcrates.io/", Prompt, "network.allow"),
        ("net", "https://user@crates.io/", Allow, "network.allow"),
        (
            "net",
            "http://10.1.2.3/",
            Allow,
            "net.toml:6 network.allow_cidrs \"10.0.0.0/8\"",
        ),
        (
            "net",
            "http://10.1.2.4/",
            Deny,
            "network.allow (no literal 10.1.2.4)",
        ),
        (
            "net",
            "http://192.168.1.1/",
            Deny,
            "ssrf: 192.168.1.1 is private",
        ),
        (
            "net",
            "http://127.1/",
            Deny,
            "network.allow (no literal 127.0.0.1)",
        ),
        ("net", "https:///nohost", Deny, "network.allow"),
        (
            "strict",
            "http://ALLOWED.TEST./",
            Allow,
            "network.allow \"**.allowed.test\"",
        ),
        (
            "strict",
            "http://allowed.test.evil.test/",
            Deny,
            "network.allow (no pattern matches allowed.test.evil.test)",
        ),
        (
            "strict",
            "http://127.1/",
            Deny,
            "ssrf: 127.0.0.1 is loopback",
        ),
        (
            "strict",
            "http://0x7f.1/",
            Deny,
            "ssrf: 127.0.0.1 is loopback",
        ),
        (
            "strict",
            "http://2130706433/",
            Deny,
            "ssrf: 127.0.0.1 is loopback",
        ),
        ("strict", "http://[::1]:80/", Deny, "ssrf: ::1 is loopback"),
        ("strict", "http://[fe80::1%25eth0]/", Deny, "network.allow"),
        (
            "strict",
            "http://allowed.test@evil.test/",
            Deny,
            "no pattern matches evil.test",
        ),
        (
            "strict",
            "http://evil.test\\@allowed.test/",
            Deny,
            "no pattern matches evil.test",
        ),
        (
            "strict",
            "https://bücher.test/",
            Allow,
            "network.allow \"xn--bcher-kva.test\"",
        ),
        (
            "strict",
            "https://denied.allowed.test/",
            Deny,
            "strict.toml:5 network.deny \"denied.allowed.test\"",
        ),
        (
            "strict",
            "https://allowed.test:8443/",
            Deny,
            "network.ports (default [80, 443])",
        ),
        (
            "strict",
            "http://api.allowed.test/v1/x",
            Allow,
            "strict.toml:7 network.rule",
        ),
        (
            "strict",
            "http://api.allowed.test/v2/x",
            Deny,
            "strict.toml:7 network.rule \"api.allowed.test\"",
        ),
        // Without inspection an https URL shows no path: the host decides.
        (
            "strict",
            "https://api.allowed.test/v2/x",
            Allow,
            "network.allow",
        ),
    ];
    for (name, url, verdict, rule) in cases {
        let d = check_url(s.get(name).unwrap(), url);
        assert_eq!(d.verdict, *verdict, "{name} {url}: {d:?}");
        assert!(
            d.rule.contains(rule),
            "{name} {url}: want {rule:?} in {:?}",
            d.rule
        );
    }
    let d = check_url(s.get("strict").unwrap(), "https://allowed.test:8443/");
    assert!(d.reason.starts_with("blocked-by-port: "), "{d:?}");
}

#[test]
fn network_keys_load_and_refuse() {
    for (body, line, mention) in [
        ("[network]\nallow = [\"*.co.uk\"]\n", 2, "public suffix"),
        (
            "[network]\nallow = [\"ok.test\",\n  \"**.com\"]\n",
            3,
            "public suffix",
        ),
        ("[network]\ndeny = [\"*\"]\n", 2, "every host"),
        (
            "[network]\nallow = [\"127.1\"]\n",
            2,
            "write it as 127.0.0.1",
        ),
        (
            "[network]\ndeny = [\"*.0.1\"]\n",
            2,
            "wildcard over an address",
        ),
        (
            "[network]\nallow = [\"1.2.3.4.5\"]\n",
            2,
            "not an IPv4 address",
        ),
        (
            "[network]\nallow_non_tls_443 = \"yes\"\n",
            2,
            "`network.allow_non_tls_443`",
        ),
        ("[network]\nallow_ech = 1\n", 2, "`network.allow_ech`"),
        (
            "[network]\nallow_cidrs = [\"10.0.0.0/33\"]\n",
            2,
            "`network.allow_cidrs`",
        ),
        (
            "[network]\n[[network.rule]]\nhost = \"*.com\"\n",
            3,
            "public suffix",
        ),
    ] {
        let (_d, r) = load(&[("bad.toml", body)], false);
        let e = r.expect_err(body).to_string();
        assert!(e.contains(&format!("bad.toml:{line}:")), "{body}: {e}");
        assert!(e.contains(mention), "{body}: want {mention:?} in {e}");
    }
    let s = store(&[(
        "lit.toml",
        "[network]\nmode = \"allowlist\"\nallow = [\"10.0.0.1\", \"[fd00::1]\", \"a.test\"]\nallow_non_tls_443 = true\nallow_ech = true\n",
    )]);
    let p = s.get("lit").unwrap();
    assert!(p.network.allow_non_tls_443.value);
    assert_eq!(p.network.allow_non_tls_443.origin.line, 4);
    assert!(p.network.allow_ech.value);
    assert_eq!(p.network.allow_ech.origin.line, 5);
    let workspace = &s.get("workspace").unwrap().network;
    assert!(!workspace.allow_non_tls_443.value && !workspace.allow_ech.value);
    let shown = s.render("lit").unwrap();
    assert!(shown.contains("allow_non_tls_443 = true"), "{shown}");
    assert!(shown.contains("allow_ech = true"), "{shown}");
}

#[test]
fn effective_policy_carries_the_compiled_network_rules() {
    let s = store(&[
        (
            "net.toml",
            "[network]\nmode = \"allowlist\"\nallow = [\"**.crates.io\", \"pypi.org\", \"[fd00::1]\"]\n",
        ),
        ("wide.toml", "[network]\nmode = \"full\"\n"),
    ]);
    let resolve_with =
        |name: &str, n: Narrowing| resolve(s.get(name).unwrap(), &ctx(), &n).unwrap();
    let host = |h: &str| sandboxd::net::Host::Name(h.to_string());
    let e = resolve_with("net", Narrowing::default());
    let net = e.net.as_ref().expect("allowlist has a NetPolicy");
    assert_eq!(
        net.decide_host(&host("static.crates.io"), 443).verdict,
        Verdict::Allow
    );
    assert_eq!(
        net.decide_host(&host("evil.test"), 443).verdict,
        Verdict::Prompt
    );
    assert!(resolve_with("workspace", Narrowing::default())
        .net
        .is_none());
    assert!(resolve_with("wide", Narrowing::default()).net.is_none());

    // A narrowed list and a stricter approval reach the decisions, and the hash.
    let narrowed = resolve_with(
        "net",
        Narrowing {
            network_allow: Some(vec!["pypi.org".into()]),
            approval: Some(ApprovalMode::Never),
            ..Default::default()
        },
    );
    let net = narrowed.net.as_ref().unwrap();
    assert_eq!(narrowed.network_allow, ["pypi.org"]);
    assert_eq!(
        net.decide_host(&host("pypi.org"), 443).verdict,
        Verdict::Allow
    );
    assert_eq!(
        net.decide_host(&host("static.crates.io"), 443).verdict,
        Verdict::Deny
    );
    assert_eq!(
        net.decide_host(&host("evil.test"), 443).verdict,
        Verdict::Deny
    );
    assert_ne!(narrowed.hash, e.hash);
    let never = resolve_with(
        "net",
        Narrowing {
            approval: Some(ApprovalMode::Never),
            ..Default::default()
        },
    );
    assert_ne!(
        never.hash, e.hash,
        "the approval's effect on the network is hashed"
    );
    // Addresses narrow only to the ones the profile lists literally.
    let lit = resolve_with(
        "net",
        Narrowing {
            network_allow: Some(vec!["[FD00::1]".into()]),
            ..Default::default()
        },
    );
    assert_eq!(lit.network_allow, ["fd00::1"]);
    let ip = sandboxd::net::Host::Ip("fd00::1".parse().unwrap());
    assert_eq!(
        lit.net.unwrap().decide_host(&ip, 443).verdict,
        Verdict::Allow
    );
    let r = resolve(
        s.get("net").unwrap(),
        &ctx(),
        &Narrowing {
            network_allow: Some(vec!["fd00::2".into()]),
            ..Default::default()
        },
    );
    assert!(r.is_err(), "{r:?}");
    // Mode full narrowed to a list becomes an allowlist with a policy.
    let e = resolve_with(
        "wide",
        Narrowing {
            network_allow: Some(vec!["crates.io".into()]),
            ..Default::default()
        },
    );
    let net = e.net.as_ref().unwrap();
    assert_eq!(
        net.decide_host(&host("crates.io"), 443).verdict,
        Verdict::Allow
    );
    assert_eq!(
        net.decide_host(&host("crates.io"), 22).verdict,
        Verdict::Deny
    );
}

fn config(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandboxd.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path))
}

#[test]
fn config_defaults_and_full_file() {
    let c = config("").unwrap();
    assert_eq!(c.socket, Path::new("/run/sandboxd/sandboxd.sock"));
    assert_eq!(c.state_dir, Path::new("/var/lib/sandboxd"));
    assert_eq!(c.policy_dir, Path::new("/etc/sandboxd/policies"));
    assert!(c.embedded_profiles);
    assert_eq!(c.admin_group, "sandboxd-admin");
    assert_eq!((c.limits.max_sandboxes, c.limits.max_per_user), (256, 64));
    assert_eq!(c.limits.share(1000), None, "no per-user cap unless set");
    assert!(c.dns.upstream.is_none() && c.secrets.is_empty());

    let c = config(
        r#"socket = "/run/s.sock"
state_dir = "/var/lib/x"
policy_dir = "/etc/x/policies"
embedded_profiles = false
admin_group = "wheel"
[dns]
upstream = ["10.0.0.1:53", "10.0.0.2"]
hosts = { "Mirror.corp.test" = ["10.0.0.5"], "Bücher.corp.test." = ["10.0.0.6"] }
[limits]
max_sandboxes = 10
max_per_user = 2
user_memory = "16GiB"
user_pids = 4096
[tls]
extra_roots = ["/etc/sandboxd/corp-ca.pem"]
[secrets]
GH_TOKEN = { file = "/etc/sandboxd/secrets/gh-token", users = ["alice", "1000"] }
"#,
    )
    .unwrap();
    assert_eq!(c.socket, Path::new("/run/s.sock"));
    assert!(!c.embedded_profiles);
    assert_eq!(c.admin_group, "wheel");
    let up = c.dns.upstream.unwrap();
    assert_eq!(up[1].port(), 53);
    assert_eq!(
        c.dns.hosts["mirror.corp.test"],
        ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]
    );
    // Kept as a lookup asks for it: punycode, lower case, no trailing dot.
    assert_eq!(
        c.dns.hosts["xn--bcher-kva.corp.test"],
        ["10.0.0.6".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!((c.limits.max_sandboxes, c.limits.max_per_user), (10, 2));
    let share = c.limits.share(1000).unwrap();
    assert_eq!(
        (share.uid, share.memory_bytes, share.pids),
        (1000, Some(16 << 30), Some(4096))
    );
    assert_eq!(
        c.tls.extra_roots,
        [PathBuf::from("/etc/sandboxd/corp-ca.pem")]
    );
    assert_eq!(c.secrets["GH_TOKEN"].users, ["alice", "1000"]);

    let c = config("[dns]\nupstream = \"system\"\n").unwrap();
    assert!(c.dns.upstream.is_none());
}

#[test]
fn config_errors_name_file_line_and_key() {
    let cases: &[(&str, usize, &str)] = &[
        ("socket = \n", 1, ""),
        ("\nsokcet = \"/x\"\n", 2, "`sokcet`"),
        ("socket = \"relative.sock\"\n", 1, "`socket`"),
        ("embedded_profiles = \"yes\"\n", 1, "`embedded_profiles`"),
        ("[limits]\nmax_sandboxes = 0\n", 2, "`limits.max_sandboxes`"),
        ("[limits]\nmax_per_user = -3\n", 2, "`limits.max_per_user`"),
        ("[limits]\nmax_total = 3\n", 2, "`limits.max_total`"),
        (
            "[limits]\nuser_memory = \"lots\"\n",
            2,
            "`limits.user_memory`",
        ),
        (
            "[limits]\nuser_memory = \"4KiB\"\n",
            2,
            "`limits.user_memory`",
        ),
        ("[limits]\nuser_pids = 0\n", 2, "`limits.user_pids`"),
        ("[dns]\nupstream = [\"dns.example\"]\n", 2, "`dns.upstream`"),
        ("[dns]\nupstream = \"google\"\n", 2, "`dns.upstream`"),
        (
            "[dns]\nhosts = { \"a.test\" = [\"not-an-ip\"] }\n",
            2,
            "`dns.hosts.a.test`",
        ),
        (
            "[tls]\nextra_roots = [\"ca.pem\"]\n",
            2,
            "`tls.extra_roots`",
        ),
        (
            "[secrets]\nGH = { users = [\"a\"] }\n",
            2,
            "`secrets.GH.file`",
        ),
        (
            "[secrets]\nGH = { file = \"/x\", user = [\"a\"] }\n",
            2,
            "`secrets.GH.user`",
        ),
    ];
    for (body, line, mention) in cases {
        let msg = config(body).expect_err(body).to_string();
        assert!(
            msg.contains(&format!("sandboxd.toml:{line}:")),
            "want line {line} for:\n{body}\ngot: {msg}"
        );
        assert!(
            msg.contains(mention),
            "no mention of {mention:?} for:\n{body}\ngot: {msg}"
        );
    }
    // An explicitly named file must exist.
    let err = Config::load(Some(Path::new("/nonexistent/sandboxd.toml"))).unwrap_err();
    assert!(
        matches!(err, ConfigError::Io { .. })
            && err.to_string().contains("/nonexistent/sandboxd.toml"),
        "{err}"
    );
}

#[test]
fn env_context_defaults_are_usable() {
    // A profile with no [env] passes nothing but what it sets.
    let s = store(&[("bare.toml", "[env]\nset = { LANG = \"C.UTF-8\" }\n")]);
    let mut c = ctx();
    c.caller_env = BTreeMap::from([("PATH".to_string(), "/bin".to_string())]);
    let e = resolve(s.get("bare").unwrap(), &c, &Narrowing::default()).unwrap();
    assert_eq!(e.env, [("LANG".to_string(), "C.UTF-8".to_string())]);
    assert_eq!(e.limits.output, narrow::DEFAULT_OUTPUT);
    assert!(e.write.is_empty() && !e.private_tmp && e.read.is_empty());
}

#[test]
fn check_command_looks_into_shell_scripts_and_wrappers() {
    let rules = "[commands]\nallow = [[\"ls\"], [\"git\", \"status\"], [\"echo\"]]\nprompt = [[\"curl\"]]\nforbidden = [[\"rm\", \"-rf\", \"/\"]]\n";
    let s = store(&[
        ("rules.toml", rules),
        (
            "wary.toml",
            "extends = \"rules\"\napproval = \"untrusted\"\n",
        ),
    ]);
    use Verdict::*;
    let forbidden = "rules.toml:4 commands.forbidden [\"rm\", \"-rf\", \"/\"]";
    let cases: &[(&str, &[&str], Verdict, &str)] = &[
        // Judged on curl and sh; the first of the strictest names the rule.
        (
            "rules",
            &["sh", "-c", "ls && curl x | sh"],
            Prompt,
            "commands.prompt [\"curl\"] (in sh -c script)",
        ),
        (
            "rules",
            &["bash", "-lc", "git status; rm -rf /"],
            Deny,
            &format!("{forbidden} (in bash -c script)"),
        ),
        (
            "rules",
            &["/bin/sh", "-c", "ls; 'r'\"m\" -rf \\/"],
            Deny,
            forbidden,
        ),
        (
            "rules",
            &["env", "A=1", "dash", "-c", "echo $(rm -rf /)"],
            Deny,
            forbidden,
        ),
        (
            "rules",
            &["zsh", "-c", "echo `curl x`"],
            Prompt,
            "commands.prompt [\"curl\"] (in zsh -c script)",
        ),
        (
            "rules",
            &["sh", "-c", "ls; (cd /; { echo hi; })"],
            Allow,
            "commands.allow [\"ls\"] (in sh -c script)",
        ),
        (
            "rules",
            &["sh", "-c", "X=1 ls -l > out 2>&1"],
            Allow,
            "commands.allow [\"ls\"] (in sh -c script)",
        ),
        (
            "rules",
            &["sh", "-c", "sh -c 'bash -c \"rm -rf /\"'"],
            Deny,
            &format!("{forbidden} (in bash -c script) (in sh -c script) (in sh -c script)"),
        ),
        ("rules", &["/usr/bin/rm", "-rf", "/"], Deny, forbidden),
        // An allow rule names the program as written: one at a path (which
        // the sandbox may have made) is not it.
        ("wary", &["./git", "status"], Prompt, "approval"),
        ("wary", &["/home/u/bin/ls"], Prompt, "approval"),
        ("wary", &["ls", "-l"], Allow, "commands.allow [\"ls\"]"),
        (
            "wary",
            &["/usr/bin/curl", "x"],
            Prompt,
            "commands.prompt [\"curl\"]",
        ),
        ("rules", &["nohup", "rm", "-rf", "/"], Deny, forbidden),
        // What the parser cannot follow counts as prompt, naming why.
        (
            "rules",
            &["sh", "-c", "for f in *; do rm -rf $f; done"],
            Prompt,
            "commands: script not understood: `for`",
        ),
        (
            "rules",
            &["sh", "-c", "cat <<EOF\nrm -rf /\nEOF"],
            Prompt,
            "commands: script not understood: a here-document",
        ),
        (
            "rules",
            &["sh", "-c", "eval \"$X\""],
            Prompt,
            "commands: script not understood: `eval`",
        ),
        (
            "rules",
            &["sh", "-c", "$CMD -rf /"],
            Prompt,
            "commands: script not understood: `$CMD` in command position",
        ),
        (
            "rules",
            &["sh", "-c", "rm -rf $DIR"],
            Prompt,
            "commands: script not understood: `$DIR` may expand to match ",
        ),
        (
            "rules",
            &["sh", "-c", "echo 'unclosed"],
            Prompt,
            "commands: script not understood: an unterminated single quote",
        ),
        (
            "rules",
            &["sh", "-c", "f() { rm -rf /; }; f"],
            Prompt,
            "script not understood",
        ),
        // Plain argv keeps its semantics.
        ("rules", &["ls", "-l"], Allow, "commands.allow [\"ls\"]"),
        ("rules", &["make"], Allow, "approval \"on-request\""),
        (
            "rules",
            &["sh", "script.sh"],
            Allow,
            "approval \"on-request\"",
        ),
        // Untrusted: an allowed command inside a script is not asked for, another one is.
        (
            "wary",
            &["sh", "-c", "ls | echo x"],
            Allow,
            "commands.allow",
        ),
        (
            "wary",
            &["sh", "-c", "ls; make"],
            Prompt,
            "wary.toml:2 approval \"untrusted\" (in sh -c script)",
        ),
        (
            "wary",
            &["sh", "-c", "ls && echo x | sh"],
            Prompt,
            "wary.toml:2 approval \"untrusted\" (in sh -c script)",
        ),
        // With no rule that could stop a command, not understanding a script changes nothing.
        (
            "workspace",
            &["sh", "-c", "for i in 1 2; do echo $i; done"],
            Allow,
            "approval \"on-request\"",
        ),
    ];
    for (name, argv, verdict, rule) in cases {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let d = check_command(s.get(name).unwrap(), &argv, NO_LOOKUP);
        assert_eq!(d.verdict, *verdict, "{name} {argv:?}: {d:?}");
        assert!(
            d.rule.contains(rule),
            "{name} {argv:?}: want {rule:?} in {:?}",
            d.rule
        );
    }
}
