//! User profiles in `~/.config/sandboxd/profiles`: they narrow a managed
//! profile that allows it, are seen only by their owner, and anything wider,
//! any admin-only key, a link or someone else's file is refused by name.

use e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const U1: u32 = 1000;
const U2: u32 = 1001;

/// A managed profile users may narrow: the workspace, writable `{cwd}`.
const TEAM: &str = r#"
description = "team workspace"
extends = "workspace"
allow_user_profiles = true
[env]
set = { TEAM_MODE = "ci" }
"#;

fn daemon() -> Daemon {
    Daemon::builder().profile("team", TEAM).start()
}

/// `uid`'s user profile `name`, removed on drop.
struct UserProfile(PathBuf);

impl UserProfile {
    fn new(uid: u32, name: &str, body: &str) -> Self {
        let dir = profile_dir(uid);
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        chown(&path, uid);
        UserProfile(path)
    }
}

impl Drop for UserProfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `~/.config/sandboxd/profiles` of `uid`, each level owned by them, mode 0755.
fn profile_dir(uid: u32) -> PathBuf {
    let mut p = home(uid);
    for part in [".config", "sandboxd", "profiles"] {
        p.push(part);
        if !p.exists() {
            std::fs::create_dir(&p).unwrap();
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(&p, uid);
    }
    p
}

fn text(o: &Out) -> String {
    format!("{}{}", o.stdout, o.stderr)
}

/// A narrower profile whose only writable root is a path the managed one
/// protects (`.git/hooks`, inside its writable `{cwd}`) does not make that
/// path writable: the exec is refused, naming it, and nothing is written.
#[test]
fn a_writable_root_at_a_deny_write_path_is_refused() {
    let d = daemon();
    let ws = Dir::new(U1);
    let hooks = ws.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    chown(&ws.join(".git"), U1);
    chown(&hooks, U1);
    let _p = UserProfile::new(
        U1,
        "up-hooks",
        "extends = \"team\"\ndescription = \"hooks\"\n[filesystem]\nwrite = [\"{cwd}/.git/hooks\"]\n",
    );
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "up-hooks"],
        "echo evil > .git/hooks/pre-commit",
    );
    assert_ne!(out.code, 0, "{}", text(&out));
    assert!(text(&out).contains(".git/hooks"), "{}", text(&out));
    assert!(!hooks.join("pre-commit").exists());
}

#[test]
fn a_narrowing_user_profile_is_used_and_seen_only_by_its_owner() {
    let d = daemon();
    let ws = Dir::new(U1);
    let _p = UserProfile::new(
        U1,
        "up-readonly",
        "extends = \"team\"\ndescription = \"mine\"\n[filesystem]\nwrite = [\"{tmp}\"]\n",
    );
    // The managed profile writes the workspace; the user's narrowing does not.
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "up-readonly"],
        "echo x > made-by-user-profile",
    );
    assert_ne!(out.code, 0, "{}", text(&out));
    assert!(!ws.join("made-by-user-profile").exists());
    d.sh(
        U1,
        &ws.path,
        &["--profile", "team"],
        "echo x > made-by-team",
    )
    .expect_code(0);
    assert!(ws.join("made-by-team").exists());
    // policy list / show / check see it, for its owner.
    let list = d.agent(U1, &ws.path).run(&["policy", "list"]);
    list.expect_code(0);
    assert!(
        list.stdout.contains("up-readonly") && list.stdout.contains("mine"),
        "{}",
        list.stdout
    );
    let show = d
        .agent(U1, &ws.path)
        .run(&["policy", "show", "up-readonly"]);
    show.expect_code(0);
    assert!(show.stdout.contains("{tmp}"), "{}", show.stdout);
    let w = ws.join("f").display().to_string();
    let check = d
        .agent(U1, &ws.path)
        .run(&["policy", "check", "up-readonly", "--write", &w]);
    assert_eq!(check.code, 1, "{}", text(&check));
    d.agent(U1, &ws.path)
        .run(&["policy", "check", "team", "--write", &w])
        .expect_code(0);
    // Another user has no such profile.
    let ws2 = Dir::new(U2);
    let list2 = d.agent(U2, &ws2.path).run(&["policy", "list"]);
    assert!(!list2.stdout.contains("up-readonly"), "{}", list2.stdout);
    let out = d
        .agent(U2, &ws2.path)
        .run(&["exec", "--profile", "up-readonly", "--", "true"]);
    assert_eq!(out.code, 125, "{}", text(&out));
    assert!(out.stderr.contains("no profile named"), "{}", out.stderr);
    // Even with HOME pointing at the owner's home.
    let out = d
        .agent(U2, &ws2.path)
        .env("HOME", &home_path(U1).display().to_string())
        .run(&["exec", "--profile", "up-readonly", "--", "true"]);
    assert_eq!(out.code, 125, "{}", text(&out));
}

#[test]
fn a_widening_user_profile_is_refused_naming_file_line_and_rule() {
    let d = daemon();
    let ws = Dir::new(U1);
    // (file name, body, line named, what the message says)
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "up-wide-write",
            "extends = \"team\"\n[filesystem]\nwrite = [\"/srv\"]\n",
            3,
            "key `filesystem.write`",
        ),
        (
            "up-wide-net",
            "extends = \"team\"\n\n[network]\nmode = \"full\"\n",
            4,
            "key `network.mode`",
        ),
        (
            "up-wide-env",
            "extends = \"team\"\n[env]\nset = { GH_TOKEN = \"x\" }\n",
            3,
            "key `env.set.GH_TOKEN`",
        ),
        (
            "up-wide-limit",
            "extends = \"team\"\n[limits]\nmemory = \"64GiB\"\n",
            3,
            "key `limits.memory`",
        ),
        (
            "up-wide-cmd",
            "extends = \"team\"\napproval = \"never\"\n[commands]\nallow = [[\"rm\"]]\n",
            4,
            "key `commands.allow`",
        ),
        (
            "up-admin-root",
            "extends = \"team\"\nallow_root = true\n",
            2,
            "key `allow_root`: admin-only",
        ),
        (
            "up-admin-nest",
            "extends = \"team\"\nallow_user_profiles = true\n",
            2,
            "key `allow_user_profiles`: admin-only",
        ),
        (
            "up-not-allowed",
            "extends = \"workspace\"\n",
            1,
            "profile workspace does not allow user profiles",
        ),
    ];
    let files: Vec<UserProfile> = cases
        .iter()
        .map(|(n, b, _, _)| UserProfile::new(U1, n, b))
        .collect();
    for (name, _, line, expect) in cases {
        let out = d
            .agent(U1, &ws.path)
            .run(&["exec", "--profile", name, "--", "true"]);
        assert_eq!(out.code, 125, "{name}: {}", text(&out));
        assert!(
            out.stderr.contains(&format!("{name}.toml:{line}:")),
            "{name}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(expect), "{name}: {}", out.stderr);
        let check =
            d.agent(U1, &ws.path)
                .run(&["policy", "check", name, "--read", "/etc/hostname"]);
        assert_ne!(check.code, 0, "{name}: {}", text(&check));
        assert!(check.stderr.contains(expect), "{name}: {}", check.stderr);
    }
    // A user file may not shadow a managed profile: the managed one is used,
    // and the list shows the file refused.
    let _shadow = UserProfile::new(U1, "team", "extends = \"team\"\n");
    d.agent(U1, &ws.path)
        .run(&["exec", "--profile", "team", "--", "true"])
        .expect_code(0);
    let list = d.agent(U1, &ws.path).run(&["policy", "list"]);
    assert!(
        list.stdout.contains("may not take the name"),
        "{}",
        list.stdout
    );
    // The widening ones name the managed rule they go beyond.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", "up-wide-write", "--", "true"]);
    assert!(
        out.stderr.contains("rule: filesystem.write") && out.stderr.contains("workspace.toml"),
        "{}",
        out.stderr
    );
    drop(files);
}

/// A user profile may not set a variable `--env` refuses (`BASH_ENV` makes
/// bash run a file first), nor change one the managed profile sets: the exec
/// is refused naming it, and the hook never runs.
#[test]
fn a_user_profile_setting_code_variables_is_refused() {
    let d = daemon();
    let ws = Dir::new(U1);
    let marker = ws.join("hook-ran");
    let hook = ws.join("hook.sh");
    std::fs::write(&hook, format!("touch {}\n", marker.display())).unwrap();
    chown(&hook, U1);
    let set = |vars: &str| format!("extends = \"team\"\n[env]\nset = {{ {vars} }}\n");
    let cases = [
        (
            "up-env-bash",
            set(&format!("BASH_ENV = \"{}\"", hook.display())),
            "key `env.set.BASH_ENV`",
        ),
        (
            "up-env-preload",
            set("LD_PRELOAD = \"/nonexistent.so\""),
            "key `env.set.LD_PRELOAD`",
        ),
        (
            "up-env-changed",
            set("TEAM_MODE = \"dev\""),
            "key `env.set.TEAM_MODE`: changes TEAM_MODE",
        ),
    ];
    for (name, body, expect) in &cases {
        let _p = UserProfile::new(U1, name, body);
        let out =
            d.agent(U1, &ws.path)
                .run(&["exec", "--profile", name, "--", "bash", "-c", "true"]);
        assert_eq!(out.code, 125, "{name}: {}", text(&out));
        assert!(out.stderr.contains(expect), "{name}: {}", out.stderr);
        assert!(!marker.exists(), "{name}: the hook ran");
    }
    // The managed value, restated, is no change.
    let _p = UserProfile::new(U1, "up-env-same", &set("TEAM_MODE = \"ci\""));
    d.agent(U1, &ws.path)
        .run(&["exec", "--profile", "up-env-same", "--", "true"])
        .expect_code(0);
}

#[test]
fn links_and_files_not_owned_by_the_caller_are_refused() {
    let d = daemon();
    let ws = Dir::new(U2);
    let owner = UserProfile::new(U1, "up-theirs", "extends = \"team\"\n");
    // A symlink to another user's profile.
    let link = profile_dir(U2).join("up-link.toml");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&owner.0, &link).unwrap();
    let out = d
        .agent(U2, &ws.path)
        .run(&["exec", "--profile", "up-link", "--", "true"]);
    assert_eq!(out.code, 125, "{}", text(&out));
    assert!(out.stderr.contains("symlink"), "{}", out.stderr);
    std::fs::remove_file(&link).unwrap();
    // A hard link (or copy) owned by someone else.
    let foreign = profile_dir(U2).join("up-foreign.toml");
    std::fs::write(&foreign, "extends = \"team\"\n").unwrap();
    chown(&foreign, U1);
    let out = d
        .agent(U2, &ws.path)
        .run(&["exec", "--profile", "up-foreign", "--", "true"]);
    assert_eq!(out.code, 125, "{}", text(&out));
    assert!(out.stderr.contains("owned by uid 1000"), "{}", out.stderr);
    std::fs::remove_file(&foreign).unwrap();
    // A profiles directory others may write.
    let _own = UserProfile::new(U2, "up-mine", "extends = \"team\"\n");
    d.agent(U2, &ws.path)
        .run(&["exec", "--profile", "up-mine", "--", "true"])
        .expect_code(0);
    let dir = profile_dir(U2);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = d
        .agent(U2, &ws.path)
        .run(&["exec", "--profile", "up-mine", "--", "true"]);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.code, 125, "{}", text(&out));
    assert!(
        out.stderr.contains("writable by group or others"),
        "{}",
        out.stderr
    );
}

#[test]
fn edits_take_effect_on_the_next_exec() {
    let d = daemon();
    let ws = Dir::new(U1);
    let p = UserProfile::new(U1, "up-edit", "extends = \"team\"\n");
    d.sh(U1, &ws.path, &["--profile", "up-edit"], "echo x > first")
        .expect_code(0);
    std::fs::write(
        &p.0,
        "extends = \"team\"\n[filesystem]\nwrite = [\"{tmp}\"]\n",
    )
    .unwrap();
    let out = d.sh(U1, &ws.path, &["--profile", "up-edit"], "echo x > second");
    assert_ne!(out.code, 0, "{}", text(&out));
    assert!(ws.join("first").exists() && !ws.join("second").exists());
    assert!(Path::new(&p.0).exists());
}
