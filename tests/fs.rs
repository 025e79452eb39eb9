//! The file system view, checked from the host side after real confined runs.

use e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const U1: u32 = 1000;

fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn writes_outside_the_workspace_leave_nothing() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let home = home(U1);
    let name = unique("leak");
    let script = format!(
        "echo x > {home}/{name}; echo x > /var/tmp/{name}; echo x > /tmp/{name}; mkdir {home}/{name}.d; \
         echo inside > {ws}/{name}; cat /tmp/{name}",
        home = home.display(),
        ws = ws.path.display()
    );
    let out = d.sh(U1, &ws.path, &[], &script);
    // The command goes on after the refused writes; the private /tmp works.
    assert_eq!(out.stdout.trim(), "x", "{}", out.stderr);
    assert!(
        !home.join(&name).exists(),
        "write to $HOME reached the host"
    );
    assert!(
        !home.join(format!("{name}.d")).exists(),
        "mkdir in $HOME reached the host"
    );
    assert!(
        !Path::new("/var/tmp").join(&name).exists(),
        "write to /var/tmp reached the host"
    );
    assert!(
        !Path::new("/tmp").join(&name).exists(),
        "private /tmp leaked to the host"
    );
    assert_eq!(std::fs::read_to_string(ws.join(&name)).unwrap(), "inside\n");
    // The file left in the workspace belongs to the caller.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(ws.join(&name)).unwrap().uid(), U1);
}

#[test]
fn root_with_allow_root_still_cannot_write_etc() {
    // uid 0 owns /etc, so only the sandbox stands between it and the host.
    let d = Daemon::builder()
        .profile("rooty", "extends = \"workspace\"\nallow_root = true\n")
        .start();
    let ws = Dir::new(0);
    let name = unique("etc");
    let out = d.sh(
        0,
        &ws.path,
        &["--profile", "rooty"],
        &format!("echo x > /etc/{name}; echo done"),
    );
    assert_eq!(out.stdout.trim(), "done", "{}", out.stderr);
    assert!(
        out.stderr.contains("Read-only") || out.stderr.contains("ermission"),
        "{}",
        out.stderr
    );
    assert!(!Path::new("/etc").join(&name).exists());
}

#[test]
fn symlink_hardlink_rename_and_proc_root_tricks_fail() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let home = home(U1);
    let victim = home.join(unique("victim"));
    std::fs::write(&victim, "original\n").unwrap();
    chown(&victim, U1);
    let target = home.join(unique("target"));
    let script = format!(
        r#"ln -s {target} link && echo evil > link
ln {victim} hard; echo evil >> hard
mv {victim} moved
echo evil > /proc/self/root{victim}
echo evil > /proc/1/root{victim}
cp /dev/null /proc/self/root{victim}
true"#,
        target = target.display(),
        victim = victim.display()
    );
    d.sh(U1, &ws.path, &[], &script);
    assert!(!target.exists(), "write through a symlink reached the host");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "original\n",
        "victim changed or moved"
    );
}

#[test]
fn a_denied_path_that_is_a_symlink_hides_what_it_leads_to() {
    // As `~/.ssh` is when a dotfile manager links it to its own tree.
    let d = Daemon::builder()
        .profile(
            "linked",
            "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"{cwd}/keys\", \"{cwd}/token\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    ws.write("dotfiles/keys/id", "PRIVATE KEY\n", U1);
    ws.write("dotfiles/token", "TOKEN VALUE\n", U1);
    for name in ["keys", "token"] {
        std::os::unix::fs::symlink(format!("dotfiles/{name}"), ws.join(name)).unwrap();
        std::os::unix::fs::lchown(ws.join(name), Some(U1), Some(U1)).unwrap();
    }
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "linked"],
        "cat keys/id; cat dotfiles/keys/id; ls keys dotfiles/keys; cat token; cat dotfiles/token; echo done",
    );
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    for secret in ["PRIVATE KEY", "TOKEN VALUE", "id\n"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret:?} leaked: {}",
            out.stdout
        );
    }
    assert_eq!(
        std::fs::read_to_string(ws.join("dotfiles/token")).unwrap(),
        "TOKEN VALUE\n"
    );
}

/// A sandbox cannot move a deny_read path away, nor a directory above it
/// or a symlink to it, so as to leave the next exec's patterns matching
/// nothing and read it there under another name.
#[test]
fn denied_paths_cannot_be_moved_away_for_a_later_exec() {
    let d = Daemon::builder()
        .profile(
            "pinned",
            "extends = \"workspace\"\n[filesystem]\n\
             deny_read = [\"{cwd}/conf/gh\", \"{cwd}/keys\", \"{cwd}/vault/*.key\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    ws.write("conf/gh/hosts.yml", "GH TOKEN\n", U1);
    ws.write("dotfiles/keys/id", "PRIVATE KEY\n", U1);
    ws.write("vault/a.key", "VAULT KEY\n", U1);
    std::os::unix::fs::symlink("dotfiles/keys", ws.join("keys")).unwrap();
    std::os::unix::fs::lchown(ws.join("keys"), Some(U1), Some(U1)).unwrap();
    let run = |script: &str| d.sh(U1, &ws.path, &["--profile", "pinned"], script);
    let out = run("mv conf c2; mv keys k2; mv dotfiles d2; mv vault v2; echo done");
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    for name in ["conf", "keys", "dotfiles", "vault"] {
        assert!(
            ws.join(name).symlink_metadata().is_ok(),
            "{name} was moved: {}",
            out.stderr
        );
    }
    let out = run("cat c2/gh/hosts.yml k2/id d2/keys/id v2/a.key \
         conf/gh/hosts.yml keys/id dotfiles/keys/id vault/a.key; echo done");
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    for secret in ["GH TOKEN", "PRIVATE KEY", "VAULT KEY"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret:?} read: {}",
            out.stdout
        );
    }
    // What is not denied moves as before.
    ws.write("free/x", "x\n", U1);
    run("mv free free2").expect_code(0);
    assert!(ws.join("free2/x").exists());
}

/// Below a pattern's first wildcard too: every directory between a match
/// and the writable root stays where it is, so that an earlier exec cannot
/// move a match out of reach of a later exec's patterns.
#[test]
fn deny_read_matches_below_a_wildcard_cannot_be_moved_away() {
    let d = Daemon::builder()
        .profile(
            "wild",
            "extends = \"workspace\"\n[filesystem]\n\
             deny_read = [\"**/secrets/*.pem\", \"{cwd}/*/token.txt\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    ws.write("app/secrets/key.pem", "PEM KEY\n", U1);
    ws.write("svc/token.txt", "SVC TOKEN\n", U1);
    let run = |script: &str| d.sh(U1, &ws.path, &["--profile", "wild"], script);
    let out = run("mv app/secrets app/s2; mkdir deep; mv svc deep/svc; echo done");
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    for name in ["app/secrets/key.pem", "svc/token.txt"] {
        assert!(ws.join(name).exists(), "{name} was moved: {}", out.stderr);
    }
    let out =
        run("cat app/s2/key.pem deep/svc/token.txt app/secrets/key.pem svc/token.txt; echo done");
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    for secret in ["PEM KEY", "SVC TOKEN"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret:?} read: {}",
            out.stdout
        );
    }
}

/// A match deeper than a path can name (past PATH_MAX, made with directory
/// descriptors) is not skipped by the walk: the exec that cannot hide it
/// is refused.
#[test]
fn a_deny_read_match_past_the_path_length_limit_refuses_the_exec() {
    let d = dotenv_daemon();
    let ws = Dir::new(U1);
    ws.write("sub/.env", "SECRET\n", U1);
    // 18 directories of 250 characters: 4500 bytes and more below the workspace.
    let bury = r#"import os
name = "d" * 250
fd = os.open(".", os.O_RDONLY)
for _ in range(18):
    os.mkdir(name, dir_fd=fd)
    fd = os.open(name, os.O_RDONLY, dir_fd=fd)
os.rename("sub", "sub", src_dir_fd=os.open(".", os.O_RDONLY), dst_dir_fd=fd)
print("buried")
"#;
    // Under a profile that does not deny it, where `sub` may move.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--", "/usr/bin/python3", "-c", bury]);
    assert!(out.stdout.contains("buried"), "{}", out.stderr);
    let read = r#"import os
name = "d" * 250
for _ in range(18):
    os.chdir(name)
print(open("sub/.env").read())
"#;
    let out = d.agent(U1, &ws.path).run(&[
        "exec",
        "--profile",
        "dotenv",
        "--",
        "/usr/bin/python3",
        "-c",
        read,
    ]);
    assert!(!out.stdout.contains("SECRET"), "{}", out.stdout);
    out.expect_code(125);
    assert!(out.stderr.contains("deny_read"), "{}", out.stderr);
}

/// Another sandbox of the caller's, under a profile that does not deny
/// `.env`, renames the directory holding one to and fro while execs start:
/// a match the walk found and the cover then misses refuses the exec
/// rather than leave it readable.
#[test]
fn a_match_moved_while_an_exec_starts_is_never_readable() {
    let d = dotenv_daemon();
    let ws = Dir::new(U1);
    ws.write("sub/.env", "SECRET\n", U1);
    let mover = "import os\nwhile True:\n    for a, b in (('sub', 'sub2'), ('sub2', 'sub')):\n        try:\n            os.rename(a, b)\n        except OSError:\n            pass\n";
    let mut a = d.agent(U1, &ws.path).command(&[
        "exec",
        "--timeout",
        "120s",
        "--",
        "/usr/bin/python3",
        "-c",
        mover,
    ]);
    let mut a = a
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    d.sandbox_id(U1, &ws.path, "python3");
    let mut leaks = 0;
    let mut ran = 0;
    for _ in 0..80 {
        let out = d.sh(
            U1,
            &ws.path,
            &["--profile", "dotenv"],
            "cat sub/.env sub2/.env 2>/dev/null; echo ran",
        );
        leaks += usize::from(out.stdout.contains("SECRET"));
        ran += usize::from(out.stdout.contains("ran"));
    }
    let _ = a.kill();
    let _ = a.wait();
    assert_eq!(leaks, 0, "the secret was read {leaks} times in {ran} runs");
    assert!(ran > 0, "no exec ran while the match moved");
}

/// A read root that is a symlink into a denied path (planted by an earlier
/// exec) would be bound at its own place, past the covers: refused.
/// A match inside another (`secrets` and `secrets/.env`) is hidden with it:
/// the exec runs, and neither is readable.
#[test]
fn a_deny_read_match_inside_another_is_hidden_with_it() {
    let d = Daemon::builder()
        .profile(
            "nested",
            "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"{cwd}/secrets\", \"**/.env\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    ws.write("secrets/.env", "SECRET\n", U1);
    ws.write("app/.env", "SECRET\n", U1);
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "nested"],
        "cat secrets/.env app/.env 2>/dev/null; echo ran",
    );
    out.expect_code(0);
    assert!(
        out.stdout.contains("ran") && !out.stdout.contains("SECRET"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_read_root_leading_into_a_denied_path_is_refused() {
    let d = Daemon::builder()
        .profile(
            "linkedread",
            "extends = \"workspace\"\n[filesystem]\n\
             read = [\"{cwd}/cfg\"]\ndeny_read = [\"{cwd}/keys\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    ws.write("keys/id", "PRIVATE KEY\n", U1);
    let run = |script: &str| d.sh(U1, &ws.path, &["--profile", "linkedread"], script);
    run("ln -s keys/id cfg").expect_code(0);
    let out = run("cat cfg; echo done");
    assert!(!out.stdout.contains("PRIVATE KEY"), "{}", out.stdout);
    out.expect_code(125);
    assert!(
        out.stderr.contains("cfg") && out.stderr.contains("deny_read"),
        "{}",
        out.stderr
    );
}

/// Swaps `WS/x` and `WS/y` (RENAME_EXCHANGE) until killed.
const SWAPPER: &str = r#"import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
x, y = (f"{sys.argv[1]}/{n}".encode() for n in "xy")
while True:
    libc.renameat2(-100, x, -100, y, 2)
"#;

#[test]
fn a_write_root_swapped_for_a_symlink_after_its_check_creates_nothing_on_the_host() {
    // The view's root is the host's tree, writable: a write root whose path
    // leads elsewhere by the time its mount point is made must not make root
    // create that elsewhere on the host.
    let marker = unique("e2e-swapped");
    let d = Daemon::builder()
        .profile(
            "swapped",
            &format!("extends = \"full\"\n[filesystem]\nwrite = [\"{{cwd}}/x/etc/{marker}\"]\n"),
        )
        .start();
    let ws = Dir::new(U1);
    ws.write(&format!("x/etc/{marker}/keep"), "", U1);
    std::os::unix::fs::symlink("/", ws.join("y")).unwrap();
    std::os::unix::fs::lchown(ws.join("y"), Some(U1), Some(U1)).unwrap();
    let mut swapper = std::process::Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "--",
            "/usr/bin/python3",
            "-c",
            SWAPPER,
        ])
        .arg(&ws.path)
        .spawn()
        .unwrap();
    let host = Path::new("/etc").join(&marker);
    let mut ran = 0;
    for _ in 0..100 {
        let out = d
            .agent(U1, &ws.path)
            .run(&["exec", "--profile", "swapped", "--", "true"]);
        ran += usize::from(out.code == 0);
        if host.exists() {
            break;
        }
    }
    let _ = swapper.kill();
    let _ = swapper.wait();
    let created = host.exists();
    let _ = std::fs::remove_dir_all(&host);
    assert!(!created, "root created {} on the host", host.display());
    // The swaps did not simply stop every exec.
    assert!(ran > 0, "no exec ran");
}

/// A daemon with profile `dotenv`: the workspace, every `.env` unreadable.
fn dotenv_daemon() -> Daemon {
    Daemon::builder()
        .profile(
            "dotenv",
            "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"**/.env\"]\n",
        )
        .start()
}

#[test]
fn deny_globs_look_only_where_the_caller_can() {
    // A directory the caller cannot enter: root's walk would cover what is
    // in it, and the cover (a mount point) would tell the caller it exists.
    let d = dotenv_daemon();
    let ws = Dir::new(U1);
    ws.write("mine/.env", "MINE\n", U1);
    let private = ws.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join(".env"), "ROOTS\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "dotenv"],
        "cat mine/.env; cat /proc/self/mountinfo",
    );
    assert!(!out.stdout.contains("MINE"), "{}", out.stdout);
    assert!(
        out.stdout.contains("/mine/.env"),
        "the caller's own .env is covered: {}",
        out.stdout
    );
    assert!(!out.stdout.contains("/private/.env"), "{}", out.stdout);
}

/// A directory of its own the caller made unreadable (or a tree deeper
/// than the walk goes) would hide a match from the next exec's walk, to be
/// made readable again inside: that exec is refused instead, naming it.
#[test]
fn a_match_hidden_from_the_deny_walk_refuses_the_exec() {
    let d = dotenv_daemon();
    let ws = Dir::new(U1);
    ws.write("sub/.env", "SECRET\n", U1);
    let flags = ["--profile", "dotenv"];
    // Unreadable, or readable but not searchable.
    for mode in ["000", "600"] {
        d.sh(U1, &ws.path, &flags, &format!("chmod {mode} sub"))
            .expect_code(0);
        let out = d.sh(U1, &ws.path, &flags, "chmod 700 sub; cat sub/.env");
        assert!(!out.stdout.contains("SECRET"), "{mode}: {}", out.stdout);
        assert_ne!(out.code, 0);
        assert!(
            out.stderr.contains("/sub cannot be searched"),
            "{}",
            out.stderr
        );
        std::fs::set_permissions(ws.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let deep = (0..70)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    ws.write(&format!("{deep}/.env"), "DEEP\n", U1);
    let out = d.sh(U1, &ws.path, &flags, &format!("cat {deep}/.env"));
    assert!(!out.stdout.contains("DEEP"), "{}", out.stdout);
    assert!(out.stderr.contains("levels deep"), "{}", out.stderr);
    // Nor does closing a directory above where a pattern starts looking,
    // for a glob or a plain path.
    let d2 = Daemon::builder()
        .profile(
            "fixed",
            "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"{cwd}/a/b/*.env\", \"{cwd}/k/secret.key\", \"{cwd}/s/secret.key\"]\n",
        )
        .start();
    ws.write("a/b/x.env", "SECRET\n", U1);
    ws.write("k/secret.key", "SECRET\n", U1);
    // Reached through a symlink into a directory the caller closes.
    ws.write("real/s/secret.key", "SECRET\n", U1);
    std::os::unix::fs::symlink("real/s", ws.join("s")).unwrap();
    std::os::unix::fs::lchown(ws.join("s"), Some(U1), Some(U1)).unwrap();
    for (dir, file) in [
        ("a", "a/b/x.env"),
        ("k", "k/secret.key"),
        ("real", "s/secret.key"),
    ] {
        let flags = ["--profile", "fixed"];
        d2.sh(U1, &ws.path, &flags, &format!("chmod 600 {dir}"))
            .expect_code(0);
        let out = d2.sh(
            U1,
            &ws.path,
            &flags,
            &format!("chmod 700 {dir}; cat {file}"),
        );
        assert!(!out.stdout.contains("SECRET"), "{file}: {}", out.stdout);
        assert!(
            out.stderr.contains("cannot be searched"),
            "{file}: {}",
            out.stderr
        );
        std::fs::set_permissions(ws.join(dir), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A pattern without `**` looks no deeper than it reaches.
    let d = Daemon::builder()
        .profile(
            "shallow",
            "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"{cwd}/*/.env\"]\n",
        )
        .start();
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "shallow"],
        "cat sub/.env; echo ran",
    );
    assert!(
        out.stdout.contains("ran") && !out.stdout.contains("SECRET"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn deny_read_files_and_dirs_are_unreadable() {
    let d = Daemon::builder()
        .profile(
            "secretive",
            "extends = \"workspace\"\n[filesystem]\ndeny_read = [\"{cwd}/secret.txt\", \"**/.env\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    let home = home(U1);
    let ssh = home.join(".ssh");
    if !ssh.exists() {
        std::fs::create_dir_all(&ssh).unwrap();
        chown(&ssh, U1);
    }
    // A name of our own: the home may be a real user's.
    let key_name = unique("e2e-key");
    let key = ssh.join(&key_name);
    std::fs::write(&key, "PRIVATE KEY\n").unwrap();
    chown(&key, U1);
    ws.write("secret.txt", "TOPSECRET\n", U1);
    ws.write("sub/dir/.env", "DOTENV\n", U1);
    ws.write("visible.txt", "visible\n", U1);
    let script = format!(
        "cat visible.txt; cat {key}; ls {ssh}; cat secret.txt; cat sub/dir/.env; \
         cat /proc/self/root{key}; cat /proc/1/root{ws}/secret.txt; \
         cp secret.txt copy.txt; cat copy.txt; ln secret.txt hl; cat hl; true",
        ssh = ssh.display(),
        key = key.display(),
        ws = ws.path.display()
    );
    let out = d.sh(U1, &ws.path, &["--profile", "secretive"], &script);
    // The embedded read-only profile hides the same keys.
    let read_only = d.sh(
        U1,
        &ws.path,
        &["--profile", "read-only"],
        &format!("cat {}; cat visible.txt", key.display()),
    );
    let _ = std::fs::remove_file(&key);
    assert!(read_only.stdout.contains("visible"), "{}", read_only.stderr);
    assert!(
        !read_only.stdout.contains("PRIVATE KEY"),
        "read-only leaked the key"
    );
    assert!(out.stdout.contains("visible"), "{}", out.stderr);
    for secret in ["PRIVATE KEY", "TOPSECRET", "DOTENV", key_name.as_str()] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} leaked: {}",
            out.stdout
        );
    }
    // Still there, unchanged, on the host.
    assert_eq!(
        std::fs::read_to_string(ws.join("secret.txt")).unwrap(),
        "TOPSECRET\n"
    );
    // And the rule is explained.
    let check = d.agent(U1, &ws.path).run(&[
        "policy",
        "check",
        "secretive",
        "--read",
        key.to_str().unwrap(),
    ]);
    assert_eq!(check.code, 1, "{} {}", check.stdout, check.stderr);
    assert!(check.stdout.contains("deny_read"), "{}", check.stdout);
}

#[test]
fn git_hooks_and_config_are_protected_inside_the_workspace() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    ws.write(".git/hooks/pre-commit.sample", "#!/bin/sh\n", U1);
    ws.write(".git/config", "[core]\n", U1);
    ws.write(".git/HEAD", "ref: refs/heads/main\n", U1);
    let script = "echo evil > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; \
                  echo evil >> .git/config; mv .git x; mv .git/hooks h; rm -rf .git/hooks; \
                  echo ok > .git/HEAD.new; echo done";
    let out = d.sh(U1, &ws.path, &[], script);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(!ws.join(".git/hooks/pre-commit").exists(), "hook written");
    assert!(
        ws.join(".git/hooks/pre-commit.sample").exists(),
        "hooks removed"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join(".git/config")).unwrap(),
        "[core]\n"
    );
    assert!(
        ws.join(".git").is_dir() && !ws.join("x").exists(),
        "mv .git x succeeded"
    );
    // The rest of .git stays writable.
    assert!(ws.join(".git/HEAD.new").exists());
}

/// A repository whose config sends git to hooks in the work tree (husky's
/// `core.hooksPath = .husky/_`): that directory is protected as
/// `.git/hooks` is, and git on the host runs nothing the sandbox wrote.
#[test]
fn the_hooks_directory_a_repository_config_names_is_protected() {
    let d = Daemon::start();
    // A repository whose config names husky's `.husky/_`, holding `files`;
    // `script` run in it is refused at least one write.
    let run = |files: &[&str], script: &str| {
        let ws = Dir::new(U1);
        ws.write(".git/HEAD", "ref: refs/heads/main\n", U1);
        ws.write(".git/config", "[core]\n\thooksPath = .husky/_\n", U1);
        for f in files {
            ws.write(f, "x\n", U1);
        }
        let out = d.sh(U1, &ws.path, &[], &format!("{script}; echo done"));
        assert!(out.stdout.contains("done"), "{}", out.stderr);
        assert!(
            out.stderr.contains("Read-only file system"),
            "{}",
            out.stderr
        );
        ws
    };
    let hook = "printf '#!/bin/sh\\ntouch ran\\n' > .husky/_/pre-commit";
    let ws = run(
        &[".husky/_/.gitignore"],
        &format!("{hook}; chmod +x .husky/_/pre-commit; mv .husky/_ .husky/x; mv .husky h; echo x > .husky/other"),
    );
    assert!(!ws.join(".husky/_/pre-commit").exists(), "hook written");
    assert!(
        ws.join(".husky/_/.gitignore").exists() && !ws.join("h").exists(),
        "the hooks directory was moved"
    );
    // Only that directory: the rest of the work tree stays writable.
    assert!(ws.join(".husky/other").exists());

    // Husky's own (`_/h` runs `.husky/NAME` for each hook): the scripts
    // it runs are protected too.
    let ws = run(
        &[".husky/_/h", ".husky/_/post-checkout", ".husky/pre-commit"],
        "echo 'curl evil' > .husky/post-checkout; echo x >> .husky/pre-commit; echo x > other",
    );
    assert!(
        !ws.join(".husky/post-checkout").exists(),
        "hook script written"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join(".husky/pre-commit")).unwrap(),
        "x\n"
    );
    assert!(ws.join("other").exists());

    // Missing, before `husky install` made it: its parent is made
    // read-only, as for any missing deny_write path inside the root.
    let ws = run(
        &[".husky/pre-commit"],
        &format!("mkdir -p .husky/_ && {hook}; mv .husky h; echo x > other"),
    );
    assert!(!ws.join(".husky/_").exists(), "hooks directory made");
    assert!(ws.join(".husky/pre-commit").exists() && !ws.join("h").exists());
    assert!(ws.join("other").exists());
}

/// Where a pattern protects the hooks of every repository, each one's
/// configured hooks directory is protected too.
#[test]
fn hooks_directories_are_protected_where_a_glob_protects_hooks() {
    let d = Daemon::builder()
        .profile(
            "repos",
            "extends = \"workspace\"\n[filesystem]\ndeny_write = [\"**/.git/hooks\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    for repo in ["a", "b"] {
        ws.write(&format!("{repo}/.git/HEAD"), "ref: refs/heads/main\n", U1);
        ws.write(&format!("{repo}/.git/hooks/pre-commit.sample"), "", U1);
    }
    ws.write("a/.git/config", "[core]\n\thooksPath = .githooks\n", U1);
    ws.write("a/.githooks/pre-commit", "true\n", U1);
    let script = "echo evil > a/.githooks/pre-commit; echo evil > a/.githooks/post-checkout; \
                  echo x > b/.githooks-not-named; echo done";
    let out = d.sh(U1, &ws.path, &["--profile", "repos"], script);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.join("a/.githooks/pre-commit")).unwrap(),
        "true\n"
    );
    assert!(!ws.join("a/.githooks/post-checkout").exists());
    assert!(ws.join("b/.githooks-not-named").exists());
}

/// A `~/` in a repository's `core.hooksPath` is the caller's home, as for
/// git on the host, even where the profile gives the command another HOME.
#[test]
fn a_hooks_directory_in_the_home_is_found_whatever_the_commands_home() {
    let d = Daemon::builder()
        .profile(
            "homes",
            "extends = \"workspace\"\n[filesystem]\nwrite = [\"{home}\"]\n\
             [env]\nset = { HOME = \"/tmp\" }\n",
        )
        .start();
    let ws = Dir::new(U1);
    let name = format!(
        ".githooks-{}",
        ws.path.file_name().unwrap().to_string_lossy()
    );
    let hooks = home(U1).join(&name);
    std::fs::create_dir(&hooks).unwrap();
    chown(&hooks, U1);
    ws.write(".git/HEAD", "ref: refs/heads/main\n", U1);
    ws.write(
        ".git/config",
        &format!("[core]\n\thooksPath = ~/{name}\n"),
        U1,
    );
    let script = format!(
        "echo \"$HOME\"; echo evil > {}/pre-commit; echo done",
        hooks.display()
    );
    let out = d.sh(U1, &ws.path, &["--profile", "homes"], &script);
    let written = hooks.join("pre-commit").exists();
    std::fs::remove_dir_all(&hooks).unwrap();
    assert!(out.stdout.starts_with("/tmp\n"), "{}", out.stdout);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(!written, "hook written: {}", out.stderr);
}

#[test]
fn a_protected_path_cannot_be_moved_away_by_a_parent_in_an_outer_writable_root() {
    let d = Daemon::builder()
        .profile(
            "nested",
            "extends = \"workspace\"\n[filesystem]\nwrite = [\"{cwd}/w/p\"]\n\
             deny_write = [\"{cwd}/w/p/.git/hooks\"]\n",
        )
        .start();
    let ws = Dir::new(U1);
    ws.write("w/p/.git/hooks/pre-commit.sample", "#!/bin/sh\n", U1);
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "nested"],
        "mv w w2; mv w/p w/q; echo done",
    );
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(
        ws.join("w/p/.git/hooks").is_dir(),
        "the protected tree moved"
    );
    assert!(!ws.join("w2").exists() && !ws.join("w/q").exists());
}

#[test]
fn a_dot_git_file_is_protected_as_the_hooks_behind_it() {
    // A worktree's or submodule's `.git` is a file naming the real directory:
    // pointed elsewhere, it would bring hooks and config of the sandbox's
    // making.
    let d = Daemon::start();
    let ws = Dir::new(U1);
    ws.write(".git", "gitdir: /srv/repo/.git/worktrees/wt\n", U1);
    let script = "printf 'gitdir: /tmp/x\\n' > .git; rm -f .git; mv .git moved; echo done";
    let out = d.sh(U1, &ws.path, &[], script);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.join(".git")).unwrap(),
        "gitdir: /srv/repo/.git/worktrees/wt\n"
    );
    assert!(!ws.join("moved").exists());
}

#[test]
fn git_hooks_are_protected_when_dot_git_is_a_symlink() {
    // Layouts like the `repo` tool's: `.git` links to the real directory.
    let d = Daemon::start();
    let ws = Dir::new(U1);
    ws.write("real.git/hooks/pre-commit.sample", "#!/bin/sh\n", U1);
    ws.write("real.git/config", "[core]\n", U1);
    std::os::unix::fs::symlink("real.git", ws.join(".git")).unwrap();
    std::os::unix::fs::lchown(ws.join(".git"), Some(U1), Some(U1)).unwrap();
    let script = "echo evil > .git/hooks/pre-commit; echo evil >> .git/config; \
                  mv real.git moved; mkdir -p real.git/hooks; echo evil > real.git/hooks/pre-commit; \
                  echo done";
    let out = d.sh(U1, &ws.path, &[], script);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(
        !ws.join("real.git/hooks/pre-commit").exists(),
        "hook written"
    );
    assert!(!ws.join("moved").exists(), "the real .git moved away");
    assert_eq!(
        std::fs::read_to_string(ws.join("real.git/config")).unwrap(),
        "[core]\n"
    );
    // The real directory without `hooks`: it cannot be made there either.
    let ws = Dir::new(U1);
    ws.write("real.git/config", "[core]\n", U1);
    std::os::unix::fs::symlink("real.git", ws.join(".git")).unwrap();
    std::os::unix::fs::lchown(ws.join(".git"), Some(U1), Some(U1)).unwrap();
    let script = "mkdir .git/hooks; echo evil > .git/hooks/pre-commit; \
                  mkdir real.git/hooks; echo evil > real.git/hooks/pre-commit; echo done";
    let out = d.sh(U1, &ws.path, &[], script);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(!ws.join("real.git/hooks").exists(), "hooks made");
}

/// Git on the host takes config and hooks from wherever `.git/commondir`
/// points, and a submodule's from `.git/modules/`: files a sandbox can
/// make, as no missing file can be mounted read-only. The daemon moves a
/// new `commondir` aside and tells the client and the audit log of both,
/// so a host `git status` does not run the sandbox's fsmonitor command.
#[test]
fn a_commondir_left_by_a_sandbox_is_moved_aside_and_reported() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let ok = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&ws.path)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new("chown")
        .args(["-R", &format!("{U1}:{U1}")])
        .arg(&ws.path)
        .status()
        .unwrap();
    assert!(ok.success());
    let ran = ws.join("fsmonitor-ran");
    let script = format!(
        "git init -q --bare evil && \
         printf '[core]\\n\\tbare = false\\n\\tfsmonitor = \"touch {}; false\"\\n' > evil/config && \
         echo ../evil > .git/commondir && sub=\"$(printf 's\\033[2Jub')\" && \
         mkdir -p \".git/modules/$sub\" && \
         echo 'ref: refs/heads/main' > \".git/modules/$sub/HEAD\" && \
         echo '[core]' > \".git/modules/$sub/config\" && echo done",
        ran.display()
    );
    let out = d.sh(U1, &ws.path, &[], &script);
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    let git = ws.join(".git");
    let told = format!(
        "sandboxd: git: {} was created while the sandbox ran",
        git.join("commondir").display()
    );
    assert!(
        out.stderr.contains(&told) && out.stderr.contains("moved aside to"),
        "{}",
        out.stderr
    );
    // A name with an escape sequence is shown escaped: it erases nothing.
    let told = format!(
        "{} was created while the sandbox ran",
        git.join("modules/s\\u{1b}[2Jub/config").display()
    );
    assert!(out.stderr.contains(&told), "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    assert!(!git.join("commondir").exists(), "commondir left in place");
    // Git on the host runs none of it.
    let status = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "-C"])
        .arg(&ws.path)
        .arg("status")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    assert!(!ran.exists(), "the sandbox's fsmonitor ran on the host");
    // On record with the exec's end.
    let log = std::fs::read_to_string(d.state_dir.join("audit.jsonl")).unwrap();
    let end: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "exec-end")
        .expect("an exec-end record");
    let changes = end["git"].as_array().expect("git changes on record");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["change"], "created");
    let moved = changes[0]["moved_to"].as_str().expect("moved_to");
    assert!(Path::new(moved).exists(), "{moved}");
    // A repository's own git commands leave nothing to report.
    let out = d.sh(
        U1,
        &ws.path,
        &[],
        "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x && echo done",
    );
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(!out.stderr.contains("sandboxd: git"), "{}", out.stderr);
    // A worktree added inside is reported and keeps working on the host.
    let out = d.sh(U1, &ws.path, &[], "git worktree add -q wt && echo done");
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(
        out.stderr.contains("worktrees/wt/commondir"),
        "{}",
        out.stderr
    );
    let status = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "-C"])
        .arg(ws.join("wt"))
        .arg("status")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
}

/// `{cwd}` of an exec in `/` is a writable root like any other, which the
/// caller cannot write: refused, not the whole host made writable as the
/// caller. The `full` profile's own `/` still is.
#[test]
fn a_cwd_of_slash_is_refused_as_a_writable_root_but_full_still_writes() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let home = home(U1);
    let name = unique("slash");
    let script = format!(
        "echo x > {home}/{name}; echo x > /var/tmp/{name}; echo done",
        home = home.display()
    );
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--cwd", "/", "--", "/bin/sh", "-c", &script]);
    let leaked = [home.join(&name), Path::new("/var/tmp").join(&name)];
    let written: Vec<_> = leaked.iter().filter(|p| p.exists()).collect();
    for p in &written {
        let _ = std::fs::remove_file(p);
    }
    assert!(written.is_empty(), "written on the host: {written:?}");
    out.expect_code(125);
    assert!(
        out.stderr.contains("write root (/)") && out.stderr.contains("not writable by the caller"),
        "{}",
        out.stderr
    );
    // The full profile, from / too: the caller's own permissions decide.
    let script = format!("echo x > {}/{name}; echo done", ws.path.display());
    let out = d.agent(U1, &ws.path).run(&[
        "exec",
        "--profile",
        "full",
        "--cwd",
        "/",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    out.expect_code(0);
    assert_eq!(std::fs::read_to_string(ws.join(&name)).unwrap(), "x\n");
}

#[test]
fn unreachable_paths_are_refused_as_the_caller() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // A root-only directory: root could bind it, the caller cannot reach it.
    let private = Dir::new(0);
    std::fs::set_permissions(&private.path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sub = private.join("sub");
    std::fs::create_dir(&sub).unwrap();
    chown(&sub, U1);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--cwd", sub.to_str().unwrap(), "--", "true"]);
    out.expect_code(125);
    assert!(out.stderr.contains(sub.to_str().unwrap()), "{}", out.stderr);
    // A workspace that is a symlink to somewhere the caller cannot write.
    let link = ws.join("etc-link");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--cwd", link.to_str().unwrap(), "--", "true"]);
    out.expect_code(125);
    assert!(out.stderr.contains("/etc"), "{}", out.stderr);
    // A special file system.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--cwd", "/proc/self", "--", "true"]);
    out.expect_code(125);
    assert!(out.stderr.contains("/proc"), "{}", out.stderr);
}

#[test]
fn host_unix_sockets_and_the_daemon_are_unreachable() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let sock = std::path::PathBuf::from(format!("/run/e2e-{}.sock", unique("s")));
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A service's socket inside the writable workspace (an agent, a user's
    // docker) is the host's too.
    let inside = ws.path.join("service.sock");
    let inside_listener = std::os::unix::net::UnixListener::bind(&inside).unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o777)).unwrap();
    let code = format!(
        r#"import socket
for p in [{s:?}, {w:?}, {d:?}]:
    c = socket.socket(socket.AF_UNIX)
    try:
        c.connect(p); print("CONNECTED", p)
    except OSError as e:
        print("refused", p, e.errno)
"#,
        s = sock.to_str().unwrap(),
        w = inside.to_str().unwrap(),
        d = d.socket.to_str().unwrap()
    );
    let out = py(&d, U1, &ws.path, &code);
    let _ = std::fs::remove_file(&sock);
    drop(listener);
    drop(inside_listener);
    assert!(
        !out.stdout.contains("CONNECTED"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        out.stdout.matches("refused").count(),
        3,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // The state dir is hidden too.
    let out = d.sh(
        U1,
        &ws.path,
        &[],
        &format!("ls -a {} | wc -l", d.state_dir.display()),
    );
    assert!(
        out.stdout.trim() == "0" || out.stdout.trim() == "2",
        "{}",
        out.stdout
    );
}

/// Users' runtime directories are hidden: a socket bound there after the
/// sandbox started (an agent started on demand), which no list taken at
/// its start names, is out of reach too.
#[test]
fn a_socket_made_later_in_a_users_runtime_dir_is_unreachable() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let runtime = std::path::PathBuf::from(format!("/run/user/{U1}"));
    let made = !runtime.exists();
    if made {
        std::fs::create_dir_all(&runtime).unwrap();
        chown(&runtime, U1);
    }
    let sock = runtime.join(format!("{}.sock", unique("late")));
    let code = format!(
        "import socket, time\nfor _ in range(40):\n    c = socket.socket(socket.AF_UNIX)\n    try:\n        c.connect({:?}); print('CONNECTED'); break\n    except OSError:\n        time.sleep(0.1)\nelse:\n    print('never')\n",
        sock.to_str().unwrap()
    );
    let bind = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
            l
        })
    };
    let out = py(&d, U1, &ws.path, &code);
    drop(bind.join().unwrap());
    let _ = std::fs::remove_file(&sock);
    if made {
        let _ = std::fs::remove_dir(&runtime);
    }
    assert_eq!(out.stdout.trim(), "never", "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn a_host_socket_in_a_workspace_under_tmp_is_unreachable() {
    // The private /tmp hides the host's sockets there, but a workspace in
    // /tmp is the host's directory, bound over the private one.
    let d = Daemon::start();
    let tmp = tempfile::Builder::new()
        .prefix("e2e-ws-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(tmp.path(), U1);
    let sock = tmp.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let code = format!(
        "import socket\nc = socket.socket(socket.AF_UNIX)\ntry:\n    c.connect({:?}); print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)\n",
        sock.to_str().unwrap()
    );
    let out = py(&d, U1, tmp.path(), &code);
    drop(listener);
    assert!(
        out.stdout.contains("refused"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// A host socket bound in a writable root stays where it was bound: an
/// exec cannot move its directory away, and a socket with another name
/// refuses the exec rather than leave that other name reachable.
#[test]
fn a_host_socket_in_a_writable_root_cannot_be_reached_by_another_name() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let run = ws.join("run");
    std::fs::create_dir(&run).unwrap();
    chown(&run, U1);
    let sock = run.join("app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();

    let out = d.sh(
        U1,
        &ws.path,
        &[],
        "mv run run2; mv run/app.sock x.sock; echo done",
    );
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(
        sock.exists() && !ws.join("run2").exists(),
        "the socket was moved"
    );

    // Another name for it (made while no exec ran): no exec starts.
    let other = ws.join("other.sock");
    std::fs::hard_link(&sock, &other).unwrap();
    let out = d.sh(U1, &ws.path, &[], "echo ran");
    out.expect_code(125);
    assert!(
        out.stderr.contains("2 names") && out.stderr.contains(sock.to_str().unwrap()),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&other).unwrap();
    d.sh(U1, &ws.path, &[], "echo ran").expect_code(0);
}

#[test]
fn proc_dev_and_hostname_are_the_sandboxs_own() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let out = d.sh(
        U1,
        &ws.path,
        &[],
        "ls /proc | grep -c '^[0-9]'; ls /dev | sort | tr '\\n' ' '; echo; hostname",
    );
    out.expect_code(0);
    let mut lines = out.stdout.lines();
    let npids: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(npids <= 4, "sandbox sees {npids} pids");
    let devs = lines.next().unwrap();
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts",
    ] {
        assert!(
            devs.split_whitespace().any(|d| d == dev),
            "/dev lacks {dev}: {devs}"
        );
    }
    for host_only in ["sda", "vda", "kmsg", "mem", "kvm"] {
        assert!(
            !devs.split_whitespace().any(|d| d == host_only),
            "/dev has {host_only}: {devs}"
        );
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(lines.next().unwrap().trim(), host.trim());
}
