//! Command and escalation approvals end to end: what each approval mode asks
//! before a command starts (through a scripted `--approver`), what answers
//! do (once, for a session, always), and what the audit log records.

use e2e::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const U1: u32 = 1000;
const U2: u32 = 1001;

/// Untrusted: only `ls` and `true` run unasked; `rm -rf` never runs.
const UNTRUSTED: &str = r#"
extends = "workspace"
approval = "untrusted"
[commands]
allow = [["ls"], ["true"]]
forbidden = [["rm", "-rf"]]
"#;

/// On-request with a prompt rule and a forbidden one.
const ON_REQUEST: &str = r#"
extends = "workspace"
[commands]
prompt = [["git", "push"]]
forbidden = [["rm", "-rf"]]
"#;

/// Untrusted, and users may keep their own allow rules.
const AMENDABLE: &str = r#"
extends = "workspace"
approval = "untrusted"
allow_user_profiles = true
[commands]
allow = [["ls"]]
"#;

fn daemon() -> Daemon {
    Daemon::builder()
        .profile("ut", UNTRUSTED)
        .profile("onreq", ON_REQUEST)
        .profile("amend", AMENDABLE)
        .start()
}

/// An approver script owned by `uid` answering `word` (after `delay`
/// seconds), logging each request it gets to its log.
struct Approver {
    /// `exec SCRIPT`: nothing else is left holding the agent's stderr.
    command: String,
    log: PathBuf,
}

impl Approver {
    fn new(dir: &Dir, uid: u32, word: &str) -> Approver {
        Self::slow(dir, uid, word, 0)
    }

    fn slow(dir: &Dir, uid: u32, word: &str, delay: u32) -> Approver {
        let log = dir.join(&format!("approver-{word}-{delay}.log"));
        let script = dir.write(
            &format!("approver-{word}-{delay}.sh"),
            // Its stderr closed: a late answer must not hold the agent's output open.
            &format!(
                "#!/bin/sh\nexec 2>/dev/null\n{{ cat; echo; }} >> {}\nsleep {delay}\necho {word}\n",
                log.display()
            ),
            uid,
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Approver {
            command: format!("exec {}", script.display()),
            log,
        }
    }

    fn arg(&self) -> &str {
        &self.command
    }

    /// The JSON requests it got so far.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("approver got {l:?}: {e}")))
            .collect()
    }
}

/// The arguments of `agent exec [flags] --approver A -- argv`.
fn exec_args<'a>(flags: &[&'a str], a: &'a Approver, argv: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--approver", a.arg(), "--"]);
    args.extend_from_slice(argv);
    args
}

/// `agent exec [flags] --approver A -- argv` as `uid` in `ws`.
fn exec(d: &Daemon, uid: u32, ws: &Dir, flags: &[&str], a: &Approver, argv: &[&str]) -> Out {
    d.agent(uid, &ws.path).run(&exec_args(flags, a, argv))
}

/// The same as `exec` as U1, with `input` on its standard input.
fn exec_with_input(
    d: &Daemon,
    ws: &Dir,
    flags: &[&str],
    a: &Approver,
    argv: &[&str],
    input: &[u8],
) -> Out {
    d.agent(U1, &ws.path)
        .run_with_stdin(&exec_args(flags, a, argv), Some(input))
}

/// The records of `kind` in the audit log.
fn records_of(d: &Daemon, kind: &str) -> Vec<Value> {
    d.records()
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The first `kind` record of the audit log, which must take under `max`
/// bytes as written.
fn bounded_record(d: &Daemon, kind: &str, max: usize) -> Value {
    let text = std::fs::read_to_string(d.state_dir.join("audit.jsonl")).unwrap();
    let tag = format!("\"kind\":\"{kind}\"");
    let line = text
        .lines()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no {kind} record"));
    assert!(line.len() < max, "{kind} record of {} bytes", line.len());
    serde_json::from_str(line).unwrap()
}

#[test]
fn untrusted_asks_for_rm_x_and_not_for_an_allowed_ls() {
    let d = daemon();
    let ws = Dir::new(U1);
    ws.write("x", "", U1);
    ws.write("y", "", U1);
    let yes = Approver::new(&ws, U1, "approve");
    let no = Approver::new(&ws, U1, "deny");

    exec(&d, U1, &ws, &["--profile", "ut"], &yes, &["ls"]).expect_code(0);
    assert!(
        yes.requests().is_empty(),
        "ls was asked about: {:?}",
        yes.requests()
    );

    exec(&d, U1, &ws, &["--profile", "ut"], &yes, &["rm", "x"]).expect_code(0);
    let reqs = yes.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["kind"], "command");
    assert_eq!(strings(&reqs[0]["command"]), ["rm", "x"]);
    assert_eq!(strings(&reqs[0]["parts"]), ["rm x"]);
    assert_eq!(reqs[0]["profile"], "ut");
    assert!(
        reqs[0]["rule"]
            .as_str()
            .unwrap()
            .contains("approval \"untrusted\""),
        "{reqs:?}"
    );
    assert!(!ws.join("x").exists(), "approved rm x did not run");

    let out = exec(&d, U1, &ws, &["--profile", "ut"], &no, &["rm", "y"]);
    out.expect_code(125);
    assert!(
        out.stderr.contains("denied") && out.stderr.contains("approval \"untrusted\""),
        "{}",
        out.stderr
    );
    assert!(ws.join("y").exists(), "denied rm y ran");
    assert_eq!(no.requests().len(), 1);
}

/// An allowed name is asked about where the caller's PATH finds a program
/// the sandbox could have written (the workspace's own `bin/ls`), and
/// the program does not run when that is denied.
#[test]
fn an_allowed_name_found_in_the_workspace_is_asked_about() {
    let d = daemon();
    let ws = Dir::new(U1);
    let fake = ws.write(
        "bin/ls",
        &format!("#!/bin/sh\ntouch {}\n", ws.join("ran").display()),
        U1,
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let no = Approver::new(&ws, U1, "deny");
    let bin = ws.join("bin").display().to_string();
    let ls_with = |path: String| {
        let env = format!("PATH={path}");
        exec(
            &d,
            U1,
            &ws,
            &["--profile", "ut", "--env", &env],
            &no,
            &["ls"],
        )
    };
    ls_with(format!("{bin}:/usr/bin:/bin")).expect_code(125);
    let reqs = no.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let rule = reqs[0]["rule"].as_str().unwrap();
    assert!(
        rule.contains("commands.allow [\"ls\"] not applied")
            && rule.contains("which the sandbox can write"),
        "{rule}"
    );
    assert!(!ws.join("ran").exists(), "the workspace's ls ran");
    // Found first in a system directory, it runs unasked.
    ls_with(format!("/usr/bin:/bin:{bin}")).expect_code(0);
    assert_eq!(no.requests().len(), 1, "{:?}", no.requests());
    assert!(!ws.join("ran").exists(), "the workspace's ls ran");
}

/// The approver reads the command back as a shell would: `rm 'a b'` is one
/// file, and a script's quoting is not lost (`rm a b` would be two files).
#[test]
fn the_command_asked_about_is_shown_with_its_quoting() {
    let d = daemon();
    let ws = Dir::new(U1);
    let no = Approver::new(&ws, U1, "deny");
    let outs: Vec<_> = [&["rm", "a b", "it's"][..], &["sh", "-c", "rm 'c d' \"e\""]]
        .into_iter()
        .map(|argv| exec(&d, U1, &ws, &["--profile", "ut"], &no, argv))
        .collect();
    for o in &outs {
        o.expect_code(125);
    }
    let out = &outs[1];
    let reqs = no.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(strings(&reqs[0]["parts"]), ["rm 'a b' 'it'\\''s'"]);
    assert_eq!(strings(&reqs[1]["parts"]), ["rm 'c d' e"]);
    assert!(out.stderr.contains("`rm 'c d' e`"), "{}", out.stderr);
}

#[test]
fn a_shell_script_is_judged_on_curl_and_sh_not_on_ls() {
    let d = daemon();
    let ws = Dir::new(U1);
    let no = Approver::new(&ws, U1, "deny");
    let script = "ls > listed && curl x | sh";
    let out = exec(
        &d,
        U1,
        &ws,
        &["--profile", "ut"],
        &no,
        &["sh", "-c", script],
    );
    out.expect_code(125);
    let reqs = no.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(strings(&reqs[0]["parts"]), ["curl x", "sh"], "{reqs:?}");
    assert_eq!(strings(&reqs[0]["command"]), ["sh", "-c", script]);
    assert!(out.stderr.contains("`curl x`, `sh`"), "{}", out.stderr);
    assert!(
        !ws.join("listed").exists(),
        "the script ran although denied"
    );

    // A script of allowed commands only is not asked about.
    exec(
        &d,
        U1,
        &ws,
        &["--profile", "ut"],
        &no,
        &["sh", "-c", "ls > listed; true"],
    )
    .expect_code(0);
    assert_eq!(no.requests().len(), 1);
    assert!(ws.join("listed").exists());
}

#[test]
fn a_forbidden_command_is_refused_in_every_mode_even_when_approved() {
    let d = daemon();
    let ws = Dir::new(U1);
    ws.write("dir/f", "keep", U1);
    let yes = Approver::new(&ws, U1, "approve");
    for (profile, mode) in [
        ("onreq", "untrusted"),
        ("onreq", "on-request"),
        ("onreq", "never"),
        ("ut", "untrusted"),
    ] {
        // Alone, and inside a script too.
        for argv in [&["rm", "-rf", "dir"][..], &["sh", "-c", "true; rm -rf dir"]] {
            let out = exec(
                &d,
                U1,
                &ws,
                &["--profile", profile, "--approval", mode],
                &yes,
                argv,
            );
            out.expect_code(125);
            assert!(
                out.stderr.contains("commands.forbidden"),
                "{profile} {mode} {argv:?}: {}",
                out.stderr
            );
        }
    }
    assert!(ws.join("dir/f").exists());
    assert!(
        yes.requests().is_empty(),
        "a forbidden command was asked about: {:?}",
        yes.requests()
    );
}

#[test]
fn on_request_runs_inside_the_profile_and_asks_for_prompt_rules() {
    let d = daemon();
    let ws = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    exec(
        &d,
        U1,
        &ws,
        &["--profile", "onreq"],
        &yes,
        &["touch", "made"],
    )
    .expect_code(0);
    assert!(ws.join("made").exists());
    assert!(yes.requests().is_empty(), "{:?}", yes.requests());
    // `git push` matches the prompt rule: asked, then run (git fails: no repository).
    let out = exec(
        &d,
        U1,
        &ws,
        &["--profile", "onreq"],
        &yes,
        &["git", "push", "origin"],
    );
    assert_ne!(out.code, 125, "{}", out.stderr);
    let reqs = yes.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0]["rule"]
            .as_str()
            .unwrap()
            .contains("commands.prompt"),
        "{reqs:?}"
    );
}

#[test]
fn on_request_escalation_of_a_write_root_approved_and_denied() {
    let d = daemon();
    let ws = Dir::new(U1);
    let outside = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let no = Approver::new(&ws, U1, "deny");
    let target = outside.join("f");
    let script = format!("echo written > {}", target.display());

    // Outside the profile's writable roots, unasked: the sandbox cannot write there.
    let out = exec(&d, U1, &ws, &[], &yes, &["sh", "-c", &script]);
    assert_ne!(
        out.code, 0,
        "wrote outside the workspace without escalation"
    );
    assert!(!target.exists());
    assert!(yes.requests().is_empty());

    let root = outside.path.to_str().unwrap();
    let esc = [
        "--request-write",
        root,
        "--justification",
        "build output goes there",
    ];
    let out = exec(&d, U1, &ws, &esc, &no, &["sh", "-c", &script]);
    out.expect_code(125);
    assert!(
        out.stderr.contains("approval \"on-request\""),
        "{}",
        out.stderr
    );
    assert!(!target.exists(), "denied escalation wrote");
    let reqs = no.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["kind"], "escalation");
    assert_eq!(strings(&reqs[0]["write"]), [root]);
    assert_eq!(reqs[0]["justification"], "build output goes there");

    exec(&d, U1, &ws, &esc, &yes, &["sh", "-c", &script]).expect_code(0);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "written\n");
    let reqs = yes.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["kind"], "escalation");
    // Written as the caller.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), U1);
}

#[test]
fn an_approved_write_root_is_still_opened_as_the_caller() {
    let d = daemon();
    let ws = Dir::new(U1);
    let theirs = Dir::new(U2);
    std::fs::set_permissions(&theirs.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yes = Approver::new(&ws, U1, "approve");
    let target = theirs.join("f");
    let esc = ["--request-write", theirs.path.to_str().unwrap()];
    let out = exec(
        &d,
        U1,
        &ws,
        &esc,
        &yes,
        &["sh", "-c", &format!("echo x > {}", target.display())],
    );
    out.expect_code(125);
    assert!(
        out.stderr.contains("not writable by the caller"),
        "{}",
        out.stderr
    );
    assert!(!target.exists());
}

#[test]
fn never_refuses_without_asking() {
    let d = daemon();
    let ws = Dir::new(U1);
    let outside = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let out = exec(
        &d,
        U1,
        &ws,
        &["--profile", "onreq", "--approval", "never"],
        &yes,
        &["git", "push"],
    );
    out.expect_code(125);
    assert!(
        out.stderr.contains("never") && out.stderr.contains("commands.prompt"),
        "{}",
        out.stderr
    );
    let esc = [
        "--approval",
        "never",
        "--request-write",
        outside.path.to_str().unwrap(),
    ];
    let out = exec(
        &d,
        U1,
        &ws,
        &esc,
        &yes,
        &["touch", &outside.join("f").display().to_string()],
    );
    out.expect_code(125);
    assert!(out.stderr.contains("escalation refused"), "{}", out.stderr);
    assert!(!outside.join("f").exists());
    // Inside the profile, never runs as on-request does.
    exec(
        &d,
        U1,
        &ws,
        &["--approval", "never"],
        &yes,
        &["touch", "ok"],
    )
    .expect_code(0);
    assert!(
        yes.requests().is_empty(),
        "never asked: {:?}",
        yes.requests()
    );
}

#[test]
fn without_an_approver_a_command_that_needs_one_is_refused_unasked() {
    let d = daemon();
    let ws = Dir::new(U1);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", "ut", "--", "touch", "z"]);
    out.expect_code(125);
    assert!(
        out.stderr.contains("cannot answer approval requests"),
        "{}",
        out.stderr
    );
    assert!(!ws.join("z").exists());
}

#[test]
fn session_answers_apply_to_later_execs_of_the_same_session_only() {
    let d = daemon();
    let ws = Dir::new(U1);
    let ws2 = Dir::new(U2);
    let session = Approver::new(&ws, U1, "approve-session");
    let no = Approver::new(&ws, U1, "deny");
    let ut = ["--profile", "ut", "--session", "s1"];

    exec(&d, U1, &ws, &ut, &session, &["touch", "a"]).expect_code(0);
    assert_eq!(session.requests().len(), 1);
    // Same session: not asked again (the denying approver is never run).
    exec(&d, U1, &ws, &ut, &no, &["touch", "a"]).expect_code(0);
    exec(&d, U1, &ws, &ut, &no, &["sh", "-c", "touch a && ls"]).expect_code(0);
    assert!(no.requests().is_empty(), "{:?}", no.requests());
    // Another command in the same session is asked.
    exec(&d, U1, &ws, &ut, &no, &["touch", "b"]).expect_code(125);
    assert_eq!(no.requests().len(), 1);
    // Another session, no session, another user with the same session id: asked again.
    exec(
        &d,
        U1,
        &ws,
        &["--profile", "ut", "--session", "s2"],
        &no,
        &["touch", "a"],
    )
    .expect_code(125);
    exec(&d, U1, &ws, &["--profile", "ut"], &no, &["touch", "a"]).expect_code(125);
    assert_eq!(no.requests().len(), 3);
    let no2 = Approver::new(&ws2, U2, "deny");
    exec(&d, U2, &ws2, &ut, &no2, &["touch", "a"]).expect_code(125);
    assert_eq!(no2.requests().len(), 1);
    assert!(!ws2.join("a").exists());

    // Escalations answered for the session are remembered too.
    let outside = Dir::new(U1);
    let esc = [
        "--session",
        "s3",
        "--request-write",
        outside.path.to_str().unwrap(),
    ];
    let touch = format!("{}", outside.join("e").display());
    exec(&d, U1, &ws, &esc, &session, &["touch", &touch]).expect_code(0);
    assert_eq!(session.requests().len(), 2);
    exec(&d, U1, &ws, &esc, &no, &["touch", &touch]).expect_code(0);
    assert_eq!(
        no.requests().len(),
        3,
        "a remembered escalation was asked again"
    );
}

#[test]
fn approve_always_persists_across_execs_and_a_restart() {
    let mut d = daemon();
    let ws = Dir::new(U1);
    let ws2 = Dir::new(U2);
    let always = Approver::new(&ws, U1, "approve-always");
    let no = Approver::new(&ws, U1, "deny");
    let out = exec(
        &d,
        U1,
        &ws,
        &["--profile", "amend"],
        &always,
        &["touch", "b"],
    );
    out.expect_code(0);
    assert!(out.stderr.contains("amendment saved"), "{}", out.stderr);
    assert_eq!(always.requests().len(), 1);
    exec(&d, U1, &ws, &["--profile", "amend"], &no, &["touch", "b"]).expect_code(0);
    assert!(no.requests().is_empty(), "{:?}", no.requests());

    let file = d.state_dir.join("amendments/1000.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());

    d.restart();
    exec(&d, U1, &ws, &["--profile", "amend"], &no, &["touch", "b"]).expect_code(0);
    assert!(no.requests().is_empty(), "{:?}", no.requests());
    // Only that command, only that user, only that profile.
    exec(&d, U1, &ws, &["--profile", "amend"], &no, &["touch", "c"]).expect_code(125);
    exec(&d, U1, &ws, &["--profile", "ut"], &no, &["touch", "b"]).expect_code(125);
    let no2 = Approver::new(&ws2, U2, "deny");
    exec(&d, U2, &ws2, &["--profile", "amend"], &no2, &["touch", "b"]).expect_code(125);
    assert_eq!(no.requests().len(), 2);
    assert_eq!(no2.requests().len(), 1);
}

/// A saved rule is short (32 words, 4 KiB at most): `approve-always` of a
/// longer command approves it once and saves nothing, while a short one is
/// saved; an amendments file past 1 MiB is not read, so it is asked again.
#[test]
fn approve_always_saves_short_commands_only_and_reads_small_files_only() {
    let d = daemon();
    let ws = Dir::new(U1);
    let always = Approver::new(&ws, U1, "approve-always");
    let no = Approver::new(&ws, U1, "deny");
    let words: Vec<String> = (0..39).map(|i| format!("f{i}")).collect();
    let long: Vec<&str> = std::iter::once("touch")
        .chain(words.iter().map(String::as_str))
        .collect();
    let out = exec(&d, U1, &ws, &["--profile", "amend"], &always, &long);
    out.expect_code(0);
    assert!(
        out.stderr.contains("amendment not saved") && out.stderr.contains("32 words"),
        "{}",
        out.stderr
    );
    exec(&d, U1, &ws, &["--profile", "amend"], &no, &long).expect_code(125);
    assert_eq!(
        no.requests().len(),
        1,
        "the long command was not asked again"
    );

    exec(
        &d,
        U1,
        &ws,
        &["--profile", "amend"],
        &always,
        &["touch", "b"],
    )
    .expect_code(0);
    exec(&d, U1, &ws, &["--profile", "amend"], &no, &["touch", "b"]).expect_code(0);
    assert_eq!(no.requests().len(), 1, "the short command was asked again");

    // Still valid JSON, but too large to be read on every exec.
    let file = d.state_dir.join("amendments/1000.json");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&" ".repeat(1 << 20));
    std::fs::write(&file, text).unwrap();
    exec(&d, U1, &ws, &["--profile", "amend"], &no, &["touch", "b"]).expect_code(125);
    assert_eq!(
        no.requests().len(),
        2,
        "a rule from a too large file was used"
    );
}

#[test]
fn approve_always_where_user_rules_are_not_allowed_is_approve_once() {
    let d = daemon();
    let ws = Dir::new(U1);
    let always = Approver::new(&ws, U1, "approve-always");
    let no = Approver::new(&ws, U1, "deny");
    let out = exec(&d, U1, &ws, &["--profile", "ut"], &always, &["touch", "b"]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("amendment not saved") && out.stderr.contains("allow_user_profiles"),
        "{}",
        out.stderr
    );
    exec(&d, U1, &ws, &["--profile", "ut"], &no, &["touch", "b"]).expect_code(125);
    assert!(!d.state_dir.join("amendments/1000.json").exists());
}

#[test]
fn an_unanswered_request_times_out_as_a_deny() {
    let d = Daemon::builder()
        .config("[approvals]\ntimeout = \"2s\"\n")
        .profile("ut", UNTRUSTED)
        .start();
    let ws = Dir::new(U1);
    let slow = Approver::slow(&ws, U1, "approve", 6);
    let t = Instant::now();
    let out = exec(&d, U1, &ws, &["--profile", "ut"], &slow, &["touch", "late"]);
    out.expect_code(125);
    assert!(out.stderr.contains("no answer within 2s"), "{}", out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "waited {:?}",
        t.elapsed()
    );
    assert!(!ws.join("late").exists());
    let answered = records_of(&d, "approval-answered");
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["answer"], "timeout");
}

#[test]
fn an_unknown_approvals_key_is_refused_by_name() {
    let dir = Dir::new(0);
    let config = dir.write("sandboxd.toml", "[approvals]\ntimout = \"2s\"\n", 0);
    let out = std::process::Command::new(bin("sandboxd"))
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .arg("--policy-dir")
        .arg(dir.join("policies"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("approvals.timout"), "{err}");
}

#[test]
fn questions_and_answers_are_audited_before_the_exec_proceeds() {
    let d = daemon();
    let ws = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let no = Approver::new(&ws, U1, "deny");
    exec(&d, U1, &ws, &["--profile", "ut"], &yes, &["touch", "p"]).expect_code(0);
    exec(&d, U1, &ws, &["--profile", "ut"], &no, &["touch", "q"]).expect_code(125);

    let records = d.records();
    let pos = |f: &dyn Fn(&Value) -> bool| {
        records
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("{records:#?}"))
    };
    let asked = pos(&|r| r["kind"] == "approval-asked" && strings(&r["argv"]) == ["touch", "p"]);
    let id = records[asked]["id"].as_str().unwrap().to_string();
    assert_eq!(records[asked]["uid"], U1);
    assert!(records[asked]["rule"]
        .as_str()
        .unwrap()
        .contains("untrusted"));
    assert_eq!(strings(&records[asked]["parts"]), ["touch p"]);
    let answered = pos(&|r| r["kind"] == "approval-answered" && r["id"] == id.as_str());
    assert_eq!(records[answered]["answer"], "approve");
    assert_eq!(records[answered]["answered_by"], U1);
    let started = pos(&|r| r["kind"] == "exec-start" && strings(&r["argv"]) == ["touch", "p"]);
    assert!(strings(&records[started]["approvals"]).contains(&id.as_str()));
    assert!(
        asked < answered && answered < started,
        "{asked} {answered} {started}"
    );

    let asked = pos(&|r| r["kind"] == "approval-asked" && strings(&r["argv"]) == ["touch", "q"]);
    let id = records[asked]["id"].as_str().unwrap();
    let answered = pos(&|r| r["kind"] == "approval-answered" && r["id"] == id);
    assert_eq!(records[answered]["answer"], "deny");
    let refused = pos(&|r| r["kind"] == "refusal" && strings(&r["argv"]) == ["touch", "q"]);
    assert!(answered < refused);
    assert!(!records
        .iter()
        .any(|r| r["kind"] == "exec-start" && strings(&r["argv"]) == ["touch", "q"]));
}

#[test]
fn an_approved_network_escalation_turns_mode_none_into_an_allowlist_of_those_names() {
    let d = Daemon::builder()
        .config("[dns]\nhosts = { \"granted.test\" = [\"10.9.9.9\"], \"other.test\" = [\"10.9.9.8\"] }\n")
        .start();
    let ws = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let no = Approver::new(&ws, U1, "deny");
    let script = "getent hosts granted.test; echo proxy=$HTTP_PROXY; getent hosts other.test || echo other-refused";

    // Without the escalation, the workspace profile has no network.
    let out = exec(&d, U1, &ws, &[], &yes, &["sh", "-c", script]);
    assert!(!out.stdout.contains("10.9.9.9"), "{}", out.stdout);
    assert!(yes.requests().is_empty());

    let esc = [
        "--request-network",
        "granted.test",
        "--justification",
        "fetch a fixture",
    ];
    exec(&d, U1, &ws, &esc, &no, &["sh", "-c", script]).expect_code(125);
    let reqs = no.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["kind"], "escalation");
    assert_eq!(strings(&reqs[0]["network_allow"]), ["granted.test"]);

    let out = exec(&d, U1, &ws, &esc, &yes, &["sh", "-c", script]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("10.9.9.9") && out.stdout.contains("granted.test"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("proxy=http://127.0.0.1:3128"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("other-refused") && !out.stdout.contains("10.9.9.8"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_approved_unsandboxed_run_has_the_full_view_and_its_own_pid_namespace() {
    let d = daemon();
    let ws = Dir::new(U1);
    let outside = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let target = outside.join("f");
    let script = format!("touch {}; readlink /proc/self/ns/pid", target.display());
    let out = exec(
        &d,
        U1,
        &ws,
        &["--request-unsandboxed", "--justification", "debugging"],
        &yes,
        &["sh", "-c", &script],
    );
    out.expect_code(0);
    assert!(
        target.exists(),
        "the full view did not let the caller write its own directory"
    );
    let host_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        out.stdout.trim(),
        host_ns.to_str().unwrap(),
        "no pid namespace of its own"
    );
    let reqs = yes.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["unsandboxed"], true);
    assert_eq!(reqs[0]["justification"], "debugging");
    let message = reqs[0]["message"].as_str().unwrap();
    assert!(message.contains("pid namespace"), "{reqs:?}");
    // The question shows what would run unsandboxed, quoted as a shell would read it.
    assert!(message.contains(&format!("sh -c '{script}'")), "{message}");
    let start = d
        .records()
        .into_iter()
        .find(|r| r["kind"] == "exec-start" && strings(&r["argv"]).last() == Some(&script.as_str()))
        .expect("exec-start");
    assert!(
        strings(&start["escalation"])[0].contains("unsandboxed"),
        "{start}"
    );
}

/// Where the admin keeps no `full` profile (`embedded_profiles = false`,
/// none in the policy dir), an unsandboxed run cannot be granted: refused
/// before anyone is asked.
#[test]
fn no_unsandboxed_run_where_the_daemon_has_no_full_profile() {
    let d = Daemon::builder()
        .config("embedded_profiles = false\n")
        .profile(
            "workspace",
            "description = \"managed\"\n[filesystem]\nread = [\"/\"]\nwrite = [\"{cwd}\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let out = exec(&d, U1, &ws, &["--request-unsandboxed"], &yes, &["true"]);
    out.expect_code(125);
    assert!(out.stderr.contains("no `full` profile"), "{}", out.stderr);
    assert!(yes.requests().is_empty(), "{:?}", yes.requests());
}

#[test]
fn input_sent_while_a_command_is_asked_about_reaches_it() {
    let d = daemon();
    let ws = Dir::new(U1);
    let slow = Approver::slow(&ws, U1, "approve", 1);
    let out = exec_with_input(
        &d,
        &ws,
        &["--profile", "ut"],
        &slow,
        &["cat"],
        b"sent before the start\n",
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "sent before the start\n");
    assert_eq!(slow.requests().len(), 1);
}

/// Runs shell command line `line` on a terminal of its own (a pty), answers
/// `typed` when sandboxd asks, and returns the exit code and everything the
/// terminal showed.
fn on_a_terminal(line: &str, dir: &std::path::Path, typed: &str) -> (i32, String) {
    let driver = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", sys.argv[1]])
seen, answered, deadline = b"", False, time.time() + 30
while time.time() < deadline:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if not answered and b"[d]eny?" in seen:
        os.write(fd, sys.argv[2].encode() + b"\r")
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", driver, line, typed])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn on_a_terminal_the_person_is_asked_and_their_answer_decides() {
    let d = daemon();
    let ws = Dir::new(U1);
    let agent = d.agent(U1, &ws.path);
    let cmd = agent.command(&["exec", "--profile", "ut", "--", "touch", "approved"]);
    let (code, shown) = on_a_terminal(&shell_line(&cmd), &ws.path, "o");
    assert!(
        shown.contains("sandboxd asks:") && shown.contains("touch"),
        "{shown}"
    );
    assert_eq!(code, 0, "{shown}");
    assert!(
        ws.join("approved").exists(),
        "approved once: the command ran"
    );

    let cmd = agent.command(&["exec", "--profile", "ut", "--", "touch", "denied"]);
    let (code, shown) = on_a_terminal(&shell_line(&cmd), &ws.path, "d");
    assert_eq!(code, 125, "{shown}");
    assert!(!ws.join("denied").exists(), "denied: nothing ran");

    // Without a terminal and without --approver nobody is asked.
    let out = agent.run(&["exec", "--profile", "ut", "--", "touch", "unasked"]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(!ws.join("unasked").exists());
}

/// A question comes after a reset of what an earlier command left on the
/// terminal to hide it: concealed black-on-black text, a scroll region, the
/// line-drawing character set shifted in, no cursor.
#[test]
fn on_a_terminal_the_question_is_not_hidden_by_what_was_left_on_it() {
    let d = daemon();
    let ws = Dir::new(U1);
    let cmd =
        d.agent(U1, &ws.path)
            .command(&["exec", "--profile", "ut", "--", "touch", "approved"]);
    let hide = r"printf '\033[8m\033[30;40m\033[2;3r\033)0\016\033[?25l'";
    let (code, shown) = on_a_terminal(&format!("{hide}; {}", shell_line(&cmd)), &ws.path, "o");
    assert_eq!(code, 0, "{shown:?}");
    let asked = shown.find("sandboxd asks:").expect("asked");
    let hidden = shown[..asked]
        .find("\u{1b}[?25l")
        .expect("the hiding printed");
    let between = &shown[hidden..asked];
    for reset in ["\u{1b}[r", "\u{f}", "\u{1b}(B", "\u{1b}[0m", "\u{1b}[?25h"] {
        assert!(
            between.contains(reset),
            "no {reset:?} before the question: {shown:?}"
        );
    }
}

#[test]
fn much_input_sent_while_asked_about_goes_through_a_command_that_echoes_it() {
    // More input arrives while the command is asked about than the daemon
    // holds at once; once approved, `cat` writes it back as it reads it. The
    // output is pumped while that input is replayed: else `cat` would stall
    // on its full output, and the replay on its unread input, until the
    // timeout.
    let d = daemon();
    let ws = Dir::new(U1);
    let slow = Approver::slow(&ws, U1, "approve", 1);
    let input = vec![b'x'; 7 << 20];
    let began = Instant::now();
    let out = exec_with_input(
        &d,
        &ws,
        &["--profile", "ut", "--timeout", "60s"],
        &slow,
        &["cat"],
        &input,
    );
    out.expect_code(0);
    assert_eq!(out.stdout.len(), input.len());
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "took {:?}",
        began.elapsed()
    );
}

/// The agent sends its input once the command has started, not while it is
/// asked about: more of it than the daemon would hold meanwhile (8 MiB)
/// goes through.
#[test]
fn more_input_than_the_daemon_holds_while_asked_goes_through_once_approved() {
    let d = daemon();
    let ws = Dir::new(U1);
    let slow = Approver::slow(&ws, U1, "approve", 1);
    let input = vec![0u8; 10 << 20];
    let out = exec_with_input(
        &d,
        &ws,
        &["--profile", "ut", "--timeout", "60s"],
        &slow,
        &["wc", "-c"],
        &input,
    );
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), (10 << 20).to_string());
    assert_eq!(slow.requests().len(), 1);
}

#[test]
fn an_exec_waiting_for_an_answer_counts_against_the_users_limit() {
    let d = Daemon::builder()
        .profile("ut", UNTRUSTED)
        .config("[limits]\nmax_per_user = 1")
        .start();
    let ws = Dir::new(U1);
    let slow = Approver::slow(&ws, U1, "approve", 3);
    let waiting = d
        .agent(U1, &ws.path)
        .command(&exec_args(&["--profile", "ut"], &slow, &["echo", "asked"]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once it is being asked about, a second exec of the same user is over the limit.
    assert!(eventually(Duration::from_secs(10), || !slow
        .requests()
        .is_empty()));
    let second = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", "ut", "--", "true"]);
    let first = waiting.wait_with_output().unwrap();
    second.expect_code(125);
    assert!(second.stderr.contains("max_per_user"), "{}", second.stderr);
    assert!(first.status.success());
    assert_eq!(String::from_utf8_lossy(&first.stdout), "asked\n");
}

/// A shell's startup file (BASH_ENV) runs code no command rule sees: it is
/// not taken from the caller's environment, and `--env` with it is refused.
#[test]
fn a_shell_startup_file_from_the_callers_environment_does_not_run() {
    let d = daemon();
    let ws = Dir::new(U1);
    let hook = ws.write("hook.sh", "touch pwned\n", U1);
    let out = d
        .agent(U1, &ws.path)
        .env("BASH_ENV", hook.to_str().unwrap())
        .run(&["exec", "--", "bash", "-c", "echo ran"]);
    out.expect_code(0);
    assert_eq!(out.stdout, "ran\n");
    assert!(!ws.join("pwned").exists(), "BASH_ENV ran");
    let out = d.agent(U1, &ws.path).run(&[
        "exec",
        "--env",
        &format!("BASH_ENV={}", hook.display()),
        "--",
        "bash",
        "-c",
        "echo ran",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--env BASH_ENV"), "{}", out.stderr);
    assert!(!ws.join("pwned").exists(), "BASH_ENV ran");
}

/// A question's record keeps the argv and its parts bounded, with the
/// whole one's length and hash, however long the command asked about.
#[test]
fn a_question_about_a_long_command_has_a_bounded_record() {
    let d = daemon();
    let ws = Dir::new(U1);
    let no = Approver::new(&ws, U1, "deny");
    // Control characters take 6 bytes each as written in JSON.
    let word = "\u{1}".repeat(125_000);
    let mut argv = vec!["touch"];
    argv.extend(std::iter::repeat_n(word.as_str(), 12));
    let out = exec(&d, U1, &ws, &["--profile", "ut"], &no, &argv);
    assert_ne!(out.code, 0);
    let r = bounded_record(&d, "approval-asked", 200_000);
    assert_eq!(r["argv_cut"]["bytes"], 5 + 12 * 125_000);
    assert_eq!(r["argv_cut"]["words"], 13);
    assert_eq!(r["parts_cut"]["sha256"].as_str().map(str::len), Some(64));
}

/// An `approve-always` of a long command keeps its prefixes out of the
/// answer's record past 64 KiB, giving their length and hash instead.
#[test]
fn an_approve_always_of_a_long_command_has_a_bounded_record() {
    let d = daemon();
    let ws = Dir::new(U1);
    let always = Approver::new(&ws, U1, "approve-always");
    // 360 KB as written in JSON, and small enough to be asked about.
    let word = "\u{1}".repeat(20_000);
    let argv = ["touch", &word, &word, &word];
    exec(&d, U1, &ws, &["--profile", "ut"], &always, &argv);
    let r = bounded_record(&d, "approval-answered", 100_000);
    assert_eq!(r["amendment"]["saved"], false);
    let cut = &r["amendment"]["prefixes_cut"];
    assert_eq!(cut["sha256"].as_str().map(str::len), Some(64), "{r}");
}

/// An approved escalation of many write roots is kept in the exec's start
/// record to 4 KiB, with the whole list's length and hash.
#[test]
fn an_exec_start_keeps_a_bounded_escalation() {
    let d = daemon();
    let ws = Dir::new(U1);
    let outside = Dir::new(U1);
    let yes = Approver::new(&ws, U1, "approve");
    let mut esc = Vec::new();
    for i in 0..40 {
        let dir = outside.join(&format!("{i:0>200}"));
        std::fs::create_dir(&dir).unwrap();
        chown(&dir, U1);
        esc.push("--request-write".to_string());
        esc.push(dir.display().to_string());
    }
    let esc: Vec<&str> = esc.iter().map(String::as_str).collect();
    exec(&d, U1, &ws, &esc, &yes, &["true"]).expect_code(0);
    let recs = d.records();
    let start = recs
        .iter()
        .find(|r| r["kind"] == "exec-start")
        .expect("an exec-start record");
    let written = serde_json::to_string(&start["escalation"]).unwrap().len();
    assert!(written <= (4 << 10) + 2, "{written}");
    assert_eq!(start["escalation_cut"]["words"], 40, "{start}");
}

/// A daemon told to stop kills what runs, with its end on record, and runs
/// nothing it was still asking about, whatever the answer says later.
#[test]
fn a_stopping_daemon_ends_its_sandboxes_and_runs_nothing_still_asked_about() {
    use std::process::Stdio;
    let mut d = daemon();
    let ws = Dir::new(U1);
    let spawn = |args: &[&str]| {
        d.agent(U1, &ws.path)
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent")
    };
    let running = spawn(&["exec", "--", "sh", "-c", "sleep 30 # stop-marker"]);
    let id = d.sandbox_id(U1, &ws.path, "stop-marker");
    let late = Approver::slow(&ws, U1, "approve", 3);
    let asked = spawn(&exec_args(
        &["--profile", "ut"],
        &late,
        &["touch", "ran-after-stop"],
    ));
    assert!(
        eventually(Duration::from_secs(15), || !late.requests().is_empty()),
        "the approver was never asked"
    );

    let stopping = Instant::now();
    d.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "the daemon took {:?} to stop",
        stopping.elapsed()
    );
    let ran = running.wait_with_output().unwrap();
    assert!(!ran.status.success(), "the running exec was not ended");
    let refused = asked.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(125), "{err}");
    // Naming the question left open.
    assert!(
        err.contains("shutting down") && err.contains("was not answered"),
        "{err}"
    );
    // Past the approver's answer: it changed nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !ws.join("ran-after-stop").exists(),
        "a command ran after the stop"
    );
    assert!(
        pids_matching("stop-marker").is_empty(),
        "a sandbox outlived the daemon"
    );

    let records = d.records();
    let of = |kind: &str| -> Vec<&Value> { records.iter().filter(|r| r["kind"] == kind).collect() };
    assert!(of("exec-start").iter().any(|r| r["id"] == id.as_str()));
    let end = of("exec-end")
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no exec-end for {id}: {records:?}"));
    assert!(end.to_string().contains("shutting down"), "{end}");
    assert!(
        !of("exec-start")
            .iter()
            .any(|r| strings(&r["argv"]).contains(&"ran-after-stop")),
        "{records:?}"
    );
    assert!(
        of("refusal").iter().any(|r| r["rule"] == "shutdown"),
        "{records:?}"
    );
}

/// A command too long for a session to remember (15 KB) is approved for
/// its exec only, the client told so and the answer's record saying it;
/// the same command in the same session is asked again.
#[test]
fn a_session_does_not_remember_a_command_too_long_to_keep() {
    let d = daemon();
    let ws = Dir::new(U1);
    let session = Approver::new(&ws, U1, "approve-session");
    let ut = ["--profile", "ut", "--session", "long"];
    let word = "x".repeat(1500);
    let mut argv = vec!["echo"];
    argv.extend(std::iter::repeat_n(word.as_str(), 10));
    let out = exec(&d, U1, &ws, &ut, &session, &argv);
    out.expect_code(0);
    assert!(
        out.stderr.contains("not remembered for the session"),
        "{}",
        out.stderr
    );
    let answered = records_of(&d, "approval-answered");
    assert_eq!(answered[0]["too_long_to_remember"], 1, "{answered:?}");
    exec(&d, U1, &ws, &ut, &session, &argv).expect_code(0);
    assert_eq!(session.requests().len(), 2);
}
