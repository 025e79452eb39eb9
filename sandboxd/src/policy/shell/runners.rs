//! Programs that run a command no rule sees, judged by their own name and
//! arguments: `xargs`, `sudo` and other runners, shells whose scripts are
//! not read, and what makes `less`, `perf`, `find` or `git` run a command
//! (git's options, subcommands and configuration).

use super::builtins::is_one_field;
use super::shells::OTHER_SHELLS;
use super::Word;

/// Programs that run a command (or a shell) in ways not followed here: as
/// another user or in another namespace or root, traced, repeated, built
/// from their input. Given any argument but `--help` or `--version`, not
/// understood.
const RUNNERS: &[&str] = &[
    "xargs",
    "sudo",
    "doas",
    "su",
    "runuser",
    "setpriv",
    "nsenter",
    "unshare",
    "chroot",
    "script",
    "watch",
    "parallel",
    "strace",
    "ltrace",
    "valgrind",
    "pkexec",
    "sg",
    "setarch",
    "linux32",
    "linux64",
    "prlimit",
    "numactl",
    "cgexec",
    "fakeroot",
    "firejail",
    "bwrap",
    "unbuffer",
    "rlwrap",
    "gosu",
    "su-exec",
    "chpst",
    "systemd-run",
    "dbus-run-session",
    "xvfb-run",
    "catchsegv",
    "faketime",
    "torsocks",
    "proxychains",
    "proxychains4",
    "ssh-agent",
    "tmux",
    "screen",
    "hyperfine",
];

/// Why `name ARGS` would run a command no rule sees, for programs that
/// are judged only by their own name otherwise.
pub(super) fn runs_unseen(name: &str, args: &[Word]) -> Option<String> {
    let any = |f: &dyn Fn(&Word) -> bool| args.iter().find(|w| f(w));
    if RUNNERS.contains(&name) {
        let info = matches!(args, [w] if w.text == "--help" || w.text == "--version");
        // Without arguments, `script`, `tmux` and `screen` start `$SHELL`.
        let starts_shell = matches!(name, "script" | "tmux" | "screen");
        return (name == "xargs" || starts_shell && !info || !(args.is_empty() || info))
            .then(|| format!("`{name}` runs a command given to it"));
    }
    if OTHER_SHELLS.contains(&name) {
        return any(&|w| !w.literal || w.text.starts_with('-'))
            .map(|w| format!("`{name} {}`: a shell whose scripts are not parsed", w.text));
    }
    match name {
        // A key file may set `LESSOPEN`, a command less runs.
        "less" => any(&|w| {
            let t = w.text.as_str();
            !w.literal
                || t.starts_with("--lesskey")
                || (t.starts_with('-') && !t.starts_with("--") && t.contains('k'))
        })
        .map(|w| format!("`less {}`: a key file may set what less runs", w.text)),
        // Subcommands that only read or list; the others (`record`,
        // `stat`, `trace`, `script`, ...) may run a command or a script.
        "perf" => {
            let reads = [
                "report",
                "list",
                "annotate",
                "top",
                "diff",
                "evlist",
                "version",
                "help",
                "--help",
                "--version",
            ];
            match args.first() {
                // Unless told which program disassembles or symbolizes.
                Some(w)
                    if w.literal
                        && reads.contains(&w.text.as_str())
                        && !args.iter().any(|a| {
                            !a.literal
                                || ["--objdump", "--addr2line"]
                                    .iter()
                                    .any(|o| a.text.starts_with(o))
                        }) =>
                {
                    None
                }
                None => None,
                Some(w) => Some(format!("`perf {}` may run a command", w.text)),
            }
        }
        // A word from an expansion may be `-exec` too, but one
        // double-quoted expansion (`find "$dir" -name x`) is one word, and
        // `-exec` and the like need a `;` or `+` after them.
        "find" => {
            let runs = |t: &str| matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir");
            let mut expanded = args.iter().filter(|w| !w.literal);
            let one = match (expanded.next(), expanded.next()) {
                (Some(w), None) => is_one_field(w),
                _ => false,
            };
            any(&|w| {
                (w.literal && runs(&w.text))
                    || (!w.literal && !one)
                    || (one && w.literal && matches!(w.text.as_str(), ";" | "+"))
            })
            .map(|w| format!("`find {}` may run a command", w.text))
        }
        // `-c core.pager=...`, `alias.x=!...` and the like run commands;
        // `--exec-path` chooses the programs behind subcommands.
        "git" => {
            let mut i = 0;
            while let Some(w) = args.get(i) {
                let t = w.text.as_str();
                if !w.literal
                    || t == "-c"
                    || t.starts_with("--config-env")
                    || t.starts_with("--exec-path=")
                {
                    return Some(format!(
                        "`git {t}` may run a command from its configuration"
                    ));
                }
                if !t.starts_with('-') {
                    break;
                }
                // Options whose argument is the next word (or after `=`),
                // and those that take none; any other could take the
                // subcommand as its argument, as git reads it.
                let with_arg = [
                    "-C",
                    "--git-dir",
                    "--work-tree",
                    "--namespace",
                    "--super-prefix",
                    "--attr-source",
                    "--shallow-file",
                    "--list-cmds",
                ];
                let flags = [
                    "-p",
                    "--paginate",
                    "-P",
                    "--no-pager",
                    "--no-replace-objects",
                    "--no-lazy-fetch",
                    "--no-optional-locks",
                    "--no-advice",
                    "--bare",
                    "--literal-pathspecs",
                    "--glob-pathspecs",
                    "--noglob-pathspecs",
                    "--icase-pathspecs",
                    "--exec-path",
                    "--html-path",
                    "--man-path",
                    "--info-path",
                    "--version",
                    "-v",
                    "--help",
                    "-h",
                ];
                let attached = with_arg
                    .iter()
                    .any(|o| o.starts_with("--") && t.starts_with(&format!("{o}=")));
                i += if with_arg.contains(&t) {
                    2
                } else if flags.contains(&t) || attached {
                    1
                } else {
                    return Some(format!("`git {t}`: an option not known here"));
                };
            }
            // Subcommands that run a command they are given.
            let sub = args.get(i).map(|w| w.text.as_str());
            let rest = args.get(i + 1..).unwrap_or_default();
            let has = |f: &dyn Fn(&str) -> bool| rest.iter().any(|w| !w.literal || f(&w.text));
            // A long option by any prefix git would take for it, or a
            // cluster of short ones holding one of `letters`.
            let option = |long: &[&str], letters: &str| {
                has(&|t| {
                    long_option(t, long)
                        || (t.len() > 1
                            && t.starts_with('-')
                            && !t.starts_with("--")
                            && t.contains(|c| letters.contains(c)))
                })
            };
            let runs = match sub {
                Some("grep") => option(&["open-files-in-pager"], "O"),
                Some("fetch" | "pull" | "fetch-pack") => option(&["upload-pack", "exec"], ""),
                Some("ls-remote") => option(&["upload-pack", "exec"], "u"),
                // `-c`/`--config` set configuration, `--template` hooks.
                Some("clone") => option(&["upload-pack", "config", "template"], "uc"),
                Some("init") => option(&["template"], ""),
                Some("push" | "send-pack") => option(&["receive-pack", "exec"], ""),
                Some("archive") => option(&["exec"], ""),
                Some("config") => return git_config(rest),
                // Only as their own subcommand: `git bisect start "$bad"`
                // and `git submodule update --init "$p"` run nothing given.
                Some("bisect") => sub_subcommand(rest, "run"),
                Some("submodule") => sub_subcommand(rest, "foreach"),
                Some("filter-branch" | "mergetool") => true,
                Some("rebase") => option(&["exec"], "x"),
                Some("difftool") => option(&["extcmd"], "x"),
                _ => false,
            };
            runs.then(|| {
                format!(
                    "`git {}` may run a command given to it",
                    sub.unwrap_or_default()
                )
            })
        }
        "emulate" => any(&|w| !w.literal || (w.text.starts_with('-') && w.text.contains('c')))
            .map(|w| format!("`emulate {}` runs a string as shell code", w.text)),
        _ => None,
    }
}

/// Whether the subcommand of `git bisect` or `git submodule` (the first
/// word after their options) may be `target`: it is, or it (or an option
/// before it) is not known before the shell runs.
fn sub_subcommand(rest: &[Word], target: &str) -> bool {
    rest.iter()
        .find(|w| !w.literal || !w.text.starts_with('-'))
        .is_some_and(|w| !w.literal || w.text == target)
}

/// `--NAME` or `--NAME=...` where NAME is one of `names` or a prefix of
/// one, as git's option parser takes a unique prefix (`--upload` is
/// `--upload-pack`).
fn long_option(t: &str, names: &[&str]) -> bool {
    let Some(name) = t.strip_prefix("--") else {
        return false;
    };
    let name = name.split('=').next().unwrap_or(name);
    !name.is_empty() && names.iter().any(|n| n.starts_with(name))
}

/// Why `git config ARGS` may run a command: it sets a key (`alias.x`,
/// `core.pager`, `*.command`, `credential.helper`, ... hold commands git
/// runs later), unless the key is one of a few plain settings, with only
/// options known here before it. Reading and unsetting keys is understood.
fn git_config(args: &[Word]) -> Option<String> {
    const PLAIN: &[&str] = &[
        "user.name",
        "user.email",
        "init.defaultbranch",
        "pull.rebase",
        "pull.ff",
        "push.default",
        "push.autosetupremote",
        "fetch.prune",
        "color.ui",
        "core.autocrlf",
        "core.filemode",
    ];
    const FLAGS: &[&str] = &[
        "--global",
        "--system",
        "--local",
        "--worktree",
        "--add",
        "--replace-all",
        "--get",
        "--get-all",
        "--get-regexp",
        "--unset",
        "--unset-all",
        "--list",
        "-l",
        "--bool",
        "--int",
        "--path",
        "--null",
        "-z",
        "--name-only",
        "--show-origin",
        "--show-scope",
        "--includes",
        "--no-includes",
        "--fixed-value",
    ];
    const WITH_ARG: &[&str] = &["-f", "--file", "--blob", "--type", "--default"];
    let why = |t: &str| Some(format!("`git config {t}` may set a command git runs"));
    let mut positional = Vec::new();
    let mut sets = false;
    // `--get KEY REGEX`, `--unset KEY REGEX`: two words, nothing set.
    let mut reads = false;
    let mut i = 0;
    while let Some(w) = args.get(i) {
        let t = w.text.as_str();
        if !w.literal {
            return why(t);
        }
        i += 1;
        if WITH_ARG.contains(&t) {
            i += 1;
        } else if FLAGS.contains(&t) {
            sets |= matches!(t, "--add" | "--replace-all");
            reads |= ["--get", "--unset", "--list", "-l"]
                .iter()
                .any(|o| t.starts_with(o));
        } else if t.starts_with('-') {
            // `--file=x`, `--type=bool`; any other option is not guessed at.
            let known = ["--file=", "--blob=", "--type="]
                .iter()
                .any(|o| t.starts_with(o));
            if !known {
                return why(t);
            }
        } else {
            positional.push(t);
        }
    }
    // `git config set KEY VALUE` (git 2.46): the other subcommands read,
    // unset or edit.
    if positional.first() == Some(&"set") {
        positional.remove(0);
        sets = true;
    }
    if matches!(positional.first(), Some(&("rename-section" | "edit"))) {
        return why(positional[0]);
    }
    sets |= positional.len() >= 2
        && !reads
        && !matches!(positional[0], "get" | "list" | "unset" | "remove-section");
    match positional.first() {
        Some(key) if sets && !PLAIN.contains(&key.to_ascii_lowercase().as_str()) => why(key),
        _ => None,
    }
}
