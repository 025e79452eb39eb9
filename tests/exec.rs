//! The exec primitive end to end: identity, streams, exit codes, ps and kill.

use e2e::*;
use std::time::Duration;

const U1: u32 = 1000;
const U2: u32 = 1001;

#[test]
fn runs_as_the_caller_with_its_groups() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    home(U1);
    let out = d
        .agent(U1, &ws.path)
        .groups(&[U1, 27, 4242])
        .run(&["exec", "--", "id", "-u"]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "1000");
    let out = d.agent(U1, &ws.path).groups(&[U1, 27, 4242]).run(&[
        "exec",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    out.expect_code(0);
    let field = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "1000 1000 1000 1000");
    assert_eq!(field("Gid:"), "1000 1000 1000 1000");
    let mut groups: Vec<&str> = field("Groups:").leak().split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["1000", "27", "4242"]);
}

#[test]
fn stdout_stderr_apart_and_stdin_forwarded() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let out = d.sh(U1, &ws.path, &[], "echo out; echo err >&2");
    out.expect_code(0);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| !l.starts_with("agent:"))
            .collect::<Vec<_>>(),
        ["err"]
    );

    let input: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let out = d
        .agent(U1, &ws.path)
        .run_with_stdin(&["exec", "--", "sha256sum"], Some(&input));
    out.expect_code(0);
    let expected = {
        use std::io::Write;
        let mut c = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&input).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    assert_eq!(out.stdout, expected);
}

#[test]
fn exit_codes_follow_the_contract() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "exit 7").expect_code(7);
    d.sh(U1, &ws.path, &[], "kill -TERM $$")
        .expect_code(128 + 15);
    d.agent(U1, &ws.path)
        .run(&["exec", "--", "no-such-command-xyz"])
        .expect_code(127);
    ws.write("notexec.sh", "echo hi\n", U1);
    let p = ws.join("notexec.sh");
    d.agent(U1, &ws.path)
        .run(&["exec", "--", p.to_str().unwrap()])
        .expect_code(126);
    // Searched for in PATH: found but not executable is 126; behind a
    // directory the caller may not search (/root) it is not found, 127.
    let path = format!("PATH=/root/bin:{}:/usr/bin:/bin", ws.path.display());
    d.agent(U1, &ws.path)
        .run(&["exec", "--env", &path, "--", "notexec.sh"])
        .expect_code(126);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--env", &path, "--", "no-such-command-xyz"]);
    out.expect_code(127);
    assert!(out.stderr.contains("No such file"), "{}", out.stderr);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--timeout", "1s", "--", "sleep", "30"]);
    out.expect_code(124);
    // A refusal: unknown profile.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", "no-such-profile", "--", "true"]);
    out.expect_code(125);
    assert!(out.stderr.contains("no-such-profile"), "{}", out.stderr);
}

/// With stderr a pipe no one reads, a failed command still exits with its
/// own code (125), not a panic's 101.
#[test]
fn an_error_with_stderr_a_closed_pipe_exits_125() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = d
        .agent(U1, &ws.path)
        .command(&["kill", "nosuchid"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(125));
}

/// `agent exec -- seq ... | head -2`: once `head` is gone the agent ends
/// quietly as by SIGPIPE, and the sandbox with it.
#[test]
fn a_reader_gone_ends_the_exec_quietly_with_141() {
    use std::io::BufRead;
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let mut child = d
        .agent(U1, &ws.path)
        .command(&["exec", "--", "seq", "1", "10000017"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    head.read_line(&mut first).unwrap();
    head.read_line(&mut first).unwrap();
    assert_eq!(first, "1\n2\n");
    drop(head);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        eventually(Duration::from_secs(10), || pids_matching("seq 1 10000017")
            .is_empty()),
        "the sandbox outlived its client"
    );
}

#[test]
fn root_caller_refused_without_allow_root() {
    let d = Daemon::builder()
        .profile("rooty", "extends = \"workspace\"\nallow_root = true\n")
        .start();
    let ws = Dir::new(0);
    let out = d.agent(0, &ws.path).run(&["exec", "--", "id", "-u"]);
    out.expect_code(125);
    assert!(out.stderr.contains("allow_root"), "{}", out.stderr);
    let out = d.agent(0, &ws.path).run(&[
        "exec",
        "--profile",
        "rooty",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        out.stdout
    );
}

#[test]
fn tty_gives_a_terminal() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // `script` gives the agent itself a terminal, as a person would have.
    let agent = d.agent(U1, &ws.path);
    let cmd = agent.command(&[
        "exec",
        "--tty",
        "--",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && tty",
    ]);
    let out = under_script(&cmd, &ws.path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/dev/pts/"), "{text}");
}

#[test]
fn ps_and_kill_are_per_user_and_admins_see_all() {
    let d = Daemon::builder().config("admin_group = \"4343\"").start();
    let ws1 = Dir::new(U1);
    let ws2 = Dir::new(U2);
    let mut long = d
        .agent(U2, &ws2.path)
        .command(&["exec", "--", "sleep", "61.75"]);
    let mut child = long.stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut id = String::new();
    assert!(eventually(Duration::from_secs(10), || {
        let out = d.agent(U2, &ws2.path).run(&["ps"]);
        id = out
            .stdout
            .lines()
            .find(|l| l.contains("sleep"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        !id.is_empty()
    }));
    // uid 1000 sees nothing of it and cannot kill it.
    let ps1 = d.agent(U1, &ws1.path).run(&["ps"]);
    assert!(!ps1.stdout.contains("sleep"), "{}", ps1.stdout);
    let ps1all = d.agent(U1, &ws1.path).run(&["ps", "--all"]);
    assert!(!ps1all.stdout.contains("sleep"), "{}", ps1all.stdout);
    let k = d.agent(U1, &ws1.path).run(&["kill", &id]);
    assert_ne!(k.code, 0, "uid 1000 killed uid 1001's sandbox");
    assert!(child.try_wait().unwrap().is_none(), "sandbox died");
    // An admin-group member sees and kills it.
    let admin = d
        .agent(U1, &ws1.path)
        .groups(&[U1, 4343])
        .run(&["ps", "--all"]);
    assert!(admin.stdout.contains(&id), "{}", admin.stdout);
    d.agent(U1, &ws1.path)
        .groups(&[U1, 4343])
        .run(&["kill", &id])
        .expect_code(0);
    let status = {
        let mut s = None;
        assert!(eventually(Duration::from_secs(5), || {
            s = child.try_wait().unwrap();
            s.is_some()
        }));
        s.unwrap()
    };
    assert!(!status.success());
    assert!(pids_matching("sleep 61.75").is_empty());
    // Both kills are on record: the refused one as uid 1000's refusal, the
    // admin's with the sandbox's owner.
    let records = d.audit(U1, &[U1, 4343], &ws1.path);
    let of = |kind: &str| {
        records
            .iter()
            .filter(|r| r["kind"] == kind && r["id"] == id.as_str())
            .cloned()
            .collect::<Vec<_>>()
    };
    let refused = of("refusal");
    assert!(
        refused
            .iter()
            .any(|r| r["request"] == "kill" && r["uid"] == U1 && r["rule"] == "owner"),
        "{records:#?}"
    );
    let killed = of("kill");
    assert!(
        killed
            .iter()
            .any(|r| r["uid"] == U1 && r["owner"] == U2 && r["decision"] == "allow"),
        "{records:#?}"
    );
}

/// `ps` shows each sandbox's command bounded, its cut marked, however long
/// the argv: three sandboxes of 1.5 MB argv each would not fit in one List
/// response (4 MiB), and one user's must not blind an admin's `ps --all`.
#[test]
fn ps_shows_a_bounded_marked_argv_of_a_huge_command() {
    let d = Daemon::builder().config("admin_group = \"4343\"").start();
    let ws1 = Dir::new(U1);
    let ws2 = Dir::new(U2);
    let word = "w".repeat(100_000);
    let mut args = vec!["exec", "--", "sh", "-c", "sleep 62.25", "huge-argv"];
    args.extend(std::iter::repeat_n(word.as_str(), 15));
    let mut children: Vec<std::process::Child> = (0..3)
        .map(|_| {
            d.agent(U1, &ws1.path)
                .command(&args)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ps = None;
    let all_three = eventually(Duration::from_secs(20), || {
        let out = d.agent(U1, &ws1.path).run(&["ps"]);
        let n = out
            .stdout
            .lines()
            .filter(|l| l.contains("huge-argv"))
            .count();
        ps = Some(out);
        n == 3
    });
    let ps = ps.unwrap();
    assert!(all_three, "{ps:?}");
    ps.expect_code(0);
    let admin = d
        .agent(U2, &ws2.path)
        .groups(&[U2, 4343])
        .run(&["ps", "--all"]);
    admin.expect_code(0);
    for out in [&ps, &admin] {
        let rows: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains("huge-argv"))
            .collect();
        assert_eq!(rows.len(), 3, "{}", out.stdout);
        for row in rows {
            assert!(row.len() < 4 << 10, "a row of {} bytes", row.len());
            assert!(row.contains("(19 words, 1500024 bytes in all)"), "{row}");
        }
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A client whose stream ends after its ExecStart, without StdinEof, has
/// no more input to send: the command's stdin is closed then, and `cat`
/// ends at once rather than at its timeout.
#[test]
fn the_end_of_the_clients_stream_closes_the_commands_stdin() {
    use sandbox_proto::v1::{exec_request, exec_response, ExecRequest, ExecStart};
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let cwd = ws.path.to_string_lossy().into_owned();
    let began = std::time::Instant::now();
    let exit = client_as(U1, &d.socket, |mut client| async move {
        let start = ExecStart {
            argv: vec!["cat".into()],
            cwd,
            timeout_ms: 30_000,
            ..Default::default()
        };
        let sent = vec![ExecRequest {
            msg: Some(exec_request::Msg::Start(start)),
        }];
        let mut got = client
            .exec(tokio_stream::iter(sent))
            .await
            .expect("exec")
            .into_inner();
        while let Some(m) = got.message().await.expect("the exec's stream") {
            if let Some(exec_response::Msg::Exit(e)) = m.msg {
                return Some(e);
            }
        }
        None
    });
    let exit = exit.expect("an exit");
    assert!(!exit.timed_out, "{exit:?}");
    assert!(exit.exited && exit.code == 0, "{exit:?}");
    assert!(began.elapsed() < Duration::from_secs(20));
}
