//! Profiles: broken files are refused with file, line and key; requests may
//! only narrow; `policy list/show/check` explain.

use e2e::*;
use std::process::Command;

const U1: u32 = 1000;

fn check_config(files: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let cfg = dir.path().join("none.toml");
    std::fs::write(&cfg, "").unwrap();
    let o = Command::new(bin("sandboxd"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .arg("--policy-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn embedded_profiles_pass_check_config() {
    let out = check_config(&[]);
    out.expect_code(0);
    for name in ["read-only", "workspace", "full"] {
        assert!(out.stdout.contains(name), "{name} missing:\n{}", out.stdout);
    }
}

#[test]
fn each_kind_of_broken_profile_is_named() {
    // (file body, what the error must mention besides "bad.toml:LINE")
    let cases: &[(&str, usize, &str)] = &[
        (
            "description = \"x\"\napproval = \"sometimes\"\n",
            2,
            "approval",
        ),
        ("description = \"x\"\n\nbogus_key = 1\n", 3, "bogus_key"),
        (
            "[filesystem]\nread = [\"/\"]\nwrit = [\"{cwd}\"]\n",
            3,
            "writ",
        ),
        ("[limits]\nmemory = \"lots\"\n", 2, "memory"),
        ("[limits]\ntimeout = \"10 fortnights\"\n", 2, "timeout"),
        (
            "[network]\nmode = \"allowlist\"\nports = [70000]\n",
            3,
            "ports",
        ),
        ("[network]\nmode = \"allowlist\"\nallow = [\"*\"]\n", 3, "*"),
        (
            "[network]\nmode = \"allowlist\"\nallow = [\"ok.test\", \"*.com\"]\n",
            3,
            "*.com",
        ),
        (
            "[filesystem]\nwrite = [\"relative/path\"]\n",
            2,
            "relative/path",
        ),
        ("[filesystem\nread = []\n", 1, ""),
    ];
    for (body, line, mention) in cases {
        let out = check_config(&[("bad.toml", body)]);
        assert_eq!(out.code, 1, "accepted:\n{body}\n{}", out.stdout);
        let msg = format!("{}{}", out.stdout, out.stderr);
        assert!(
            msg.contains(&format!("bad.toml:{line}")),
            "no file:line {line} for:\n{body}\ngot: {msg}"
        );
        assert!(
            msg.contains(mention),
            "no mention of {mention:?} for:\n{body}\ngot: {msg}"
        );
    }
    let out = check_config(&[("child.toml", "extends = \"missing-parent\"\n")]);
    assert_eq!(out.code, 1);
    assert!(format!("{}{}", out.stdout, out.stderr).contains("missing-parent"));
    let out = check_config(&[
        ("a.toml", "extends = \"b\"\n"),
        ("b.toml", "extends = \"a\"\n"),
    ]);
    assert_eq!(out.code, 1);
    assert!(format!("{}{}", out.stdout, out.stderr).contains("cycle"));
}

#[test]
fn daemon_refuses_a_broken_policy_dir_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "nonsense = true\n").unwrap();
    let o = Command::new(bin("sandboxd"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--policy-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.toml:1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn requests_may_narrow_but_never_widen() {
    let d = Daemon::builder()
        .profile(
            "short",
            "extends = \"workspace\"\n[limits]\ntimeout = \"1m\"\n",
        )
        .start();
    let ws = Dir::new(U1);
    // Shorter timeout: fine.
    d.agent(U1, &ws.path)
        .run(&[
            "exec",
            "--profile",
            "short",
            "--timeout",
            "10s",
            "--",
            "true",
        ])
        .expect_code(0);
    // Longer: refused naming the rule.
    let out = d.agent(U1, &ws.path).run(&[
        "exec",
        "--profile",
        "short",
        "--timeout",
        "2h",
        "--",
        "true",
    ]);
    out.expect_code(125);
    assert!(out.stderr.contains("timeout"), "{}", out.stderr);
    // A denied environment name cannot be smuggled in with --env.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--env", "GH_TOKEN=abc", "--", "true"]);
    out.expect_code(125);
    assert!(out.stderr.contains("TOKEN"), "{}", out.stderr);
    // The caller's secrets do not pass into the sandbox; ordinary variables do.
    let out = d
        .agent(U1, &ws.path)
        .env("MY_API_TOKEN", "s3cret")
        .env("FAVOURITE", "blue")
        .run(&["exec", "--env", "EXTRA=1", "--", "env"]);
    out.expect_code(0);
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
    assert!(
        out.stdout.contains("FAVOURITE=blue") && out.stdout.contains("EXTRA=1"),
        "{}",
        out.stdout
    );
}

#[test]
fn policy_list_show_and_check() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let out = d.agent(U1, &ws.path).run(&["policy", "list"]);
    out.expect_code(0);
    for name in ["read-only", "workspace", "full"] {
        assert!(out.stdout.contains(name), "{}", out.stdout);
    }
    let out = d.agent(U1, &ws.path).run(&["policy", "show", "workspace"]);
    out.expect_code(0);
    assert!(out.stdout.contains(".git/hooks"), "{}", out.stdout);
    let w = ws.join("file.txt");
    let out = d.agent(U1, &ws.path).run(&[
        "policy",
        "check",
        "workspace",
        "--write",
        w.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("allow"), "{}", out.stdout);
    let out =
        d.agent(U1, &ws.path)
            .run(&["policy", "check", "workspace", "--write", "/etc/passwd"]);
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    let hooks = ws.join(".git/hooks/pre-commit");
    let out = d.agent(U1, &ws.path).run(&[
        "policy",
        "check",
        "workspace",
        "--write",
        hooks.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("deny_write"), "{}", out.stdout);
}

#[test]
fn full_profile_writes_as_the_caller_anywhere_but_keeps_its_own_namespaces() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let elsewhere = Dir::new(U1);
    let name = format!("full-{}", std::process::id());
    let script = format!(
        "echo out > {other}/{name}; echo x > /etc/{name}; ls /proc | grep -c '^[0-9]'; \
         test -S {sock} && echo SOCKET-VISIBLE; true",
        other = elsewhere.path.display(),
        sock = d.socket.display(),
    );
    let out = d.sh(U1, &ws.path, &["--profile", "full"], &script);
    out.expect_code(0);
    // The caller's own permissions decide: its directory yes, /etc no.
    assert_eq!(
        std::fs::read_to_string(elsewhere.join(&name)).unwrap(),
        "out\n"
    );
    assert!(!std::path::Path::new("/etc").join(&name).exists());
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    // Still its own pid namespace (a handful of pids), and the daemon's socket stays hidden.
    let pids: u32 = out
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(999);
    assert!(pids < 10, "{}", out.stdout);
    assert!(!out.stdout.contains("SOCKET-VISIBLE"), "{}", out.stdout);
}

#[test]
fn policy_check_cmd_judges_each_command_of_a_shell_script() {
    let d = Daemon::builder()
        .profile(
            "rules",
            "extends = \"workspace\"\n[commands]\nallow = [[\"ls\"]]\nprompt = [[\"curl\"]]\nforbidden = [[\"rm\", \"-rf\", \"/\"]]\n",
        )
        .start();
    let ws = Dir::new(U1);
    let check = |argv: &[&str]| {
        let mut args = vec!["policy", "check", "rules", "--cmd", "--"];
        args.extend_from_slice(argv);
        d.agent(U1, &ws.path).run(&args)
    };
    let out = check(&["ls", "-l"]);
    out.expect_code(0);
    assert!(
        out.stdout.starts_with("allow") && out.stdout.contains("commands.allow [\"ls\"]"),
        "{}",
        out.stdout
    );
    let out = check(&["sh", "-c", "ls && curl x | sh"]);
    out.expect_code(2);
    assert!(
        out.stdout
            .contains("commands.prompt [\"curl\"] (in sh -c script)"),
        "{}",
        out.stdout
    );
    let out = check(&["bash", "-lc", "git status; rm -rf /"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains(
            "rules.toml:5 commands.forbidden [\"rm\", \"-rf\", \"/\"] (in bash -c script)"
        ),
        "{}",
        out.stdout
    );
    let out = check(&["sh", "-c", "for f in *; do rm -rf \"$f\"; done"]);
    out.expect_code(2);
    assert!(
        out.stdout
            .contains("commands: script not understood: `for`"),
        "{}",
        out.stdout
    );
}

/// Errors repeat the caller's text bounded, so that the reason reaches the
/// caller (a message travels in a header, which clients take 16 KiB of):
/// a huge profile name is "no profile named ...", a huge relative cwd "not
/// an absolute path".
#[test]
fn a_huge_name_or_cwd_is_refused_with_a_bounded_reason() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let name = "p".repeat(100_000);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", &name, "--", "true"]);
    out.expect_code(125);
    assert!(out.stderr.contains("no profile named"), "{}", out.stderr);
    assert!(
        out.stderr.contains("(100000 bytes in all)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.len() < 8 << 10, "{} bytes", out.stderr.len());
    let show = d.agent(U1, &ws.path).run(&["policy", "show", &name]);
    assert_ne!(show.code, 0);
    assert!(show.stderr.contains("no profile named"), "{}", show.stderr);
    let cwd = std::path::PathBuf::from("c".repeat(200_000));
    let refused = client_as(U1, &d.socket, |mut client| async move {
        let opts = agent::ExecOptions::new(vec!["true".into()], cwd);
        agent::run_exec(&mut client, &opts, agent::ExecIo::discard())
            .await
            .err()
            .map(|e| e.to_string())
    });
    let refused = refused.expect("refused");
    assert!(refused.contains("is not an absolute path"), "{refused}");
}
