//! Just enough shell syntax to apply `[commands]` rules to what a command
//! really runs: the simple commands of a `sh -c` script (across pipelines,
//! lists, subshells, brace groups and command substitutions), and the command
//! behind a wrapper such as `env` or `nohup`.
//!
//! The parser understands a small, safe subset and says so when a script
//! leaves it (loops, functions, here-documents, `eval`, ...): a caller must
//! then not pretend to know what the script runs.

/// A word after quote removal. `literal` is false when the shell would still
/// expand it (parameters, command substitution, globs, `~`, braces): its
/// value is unknown and `text` is the word as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Word {
    pub text: String,
    pub literal: bool,
}

impl Word {
    /// A word known as it is, e.g. an argv entry.
    pub fn literal(text: &str) -> Word {
        Word {
            text: text.to_string(),
            literal: true,
        }
    }
}

/// Words as one command line a person can read back unambiguously: `rm "a b"`
/// is not shown as `rm a b`, nor `sh -c 'ls; rm x'` as `sh -c ls; rm x`.
pub fn command_line(words: &[String]) -> String {
    line(words.iter().map(|w| (w.as_str(), true)))
}

/// [`command_line`] of parsed words: a known value quoted where needed, one
/// still to be expanded as written.
pub fn words_line(words: &[Word]) -> String {
    line(words.iter().map(|w| (w.text.as_str(), w.literal)))
}

fn line<'a>(words: impl Iterator<Item = (&'a str, bool)>) -> String {
    words
        .enumerate()
        .map(|(i, (text, literal))| match (literal, i) {
            (false, _) => std::borrow::Cow::Borrowed(text),
            // In command position `A=b` would read as an assignment and
            // `if` as a keyword, not as the program they name.
            (true, 0) if is_assignment(text) || RESERVED.contains(&text) || text == "time" => {
                std::borrow::Cow::Owned(single_quoted(text))
            }
            (true, _) => quote(text),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` for a POSIX shell: as is when every character in it is plain
/// (letters, digits and `_@%+=:,./-`), else single-quoted, or in `$'...'`
/// with escapes when it holds characters that would not show (a newline, a
/// bidirectional override: see [`sandbox_proto::is_hidden`]).
pub fn quote(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        std::borrow::Cow::Borrowed(word)
    } else if word.chars().any(sandbox_proto::is_hidden) {
        std::borrow::Cow::Owned(escaped(word))
    } else {
        std::borrow::Cow::Owned(single_quoted(word))
    }
}

fn single_quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `$'...'` with every hidden character, backslash and quote escaped.
fn escaped(word: &str) -> String {
    let mut out = String::from("$'");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if sandbox_proto::is_hidden(c) => {
                let n = c as u32;
                out.push_str(&match n {
                    0..=0x7f => format!("\\x{n:02x}"),
                    0x80..=0xffff => format!("\\u{n:04x}"),
                    _ => format!("\\U{n:08x}"),
                });
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Why a script (or a wrapper's arguments) is outside what this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotUnderstood(pub String);

fn nu<T>(why: impl Into<String>) -> Result<T, NotUnderstood> {
    Err(NotUnderstood(why.into()))
}

/// Deepest nesting of `( )`, `$( )` and backticks a script may use.
const MAX_NESTING: usize = 16;

/// Shells whose `-c SCRIPT` is parsed (by the basename of argv[0]).
const SHELLS: &[&str] = &[
    "sh", "bash", "rbash", "dash", "zsh", "ksh", "ksh93", "mksh", "lksh", "oksh", "pdksh", "ash",
    "posh", "yash",
];

/// Shells whose scripts are not parsed: given an option (`-c`, fish's
/// `--command`, `-C`), not understood.
const OTHER_SHELLS: &[&str] = &[
    "csh", "tcsh", "fish", "hush", "rc", "es", "xonsh", "elvish", "nu", "ion",
];

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
fn runs_unseen(name: &str, args: &[Word]) -> Option<String> {
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

/// Words that open compound commands or belong to them.
const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "select", "function", "in", "[[", "]]", "coproc",
];

/// Builtins that run a string or a file the parser cannot see into.
const OPAQUE: &[&str] = &["eval", "trap", "alias", "source", ".", "fc"];

/// Builtins that, given one of these options, run a string as code, load
/// code, or give a command another program (`hash -p /bin/rm ls`).
const OPAQUE_WITH: &[(&str, &str)] = &[
    ("hash", "p"),
    ("enable", "f"),
    ("compgen", "CF"),
    ("complete", "CF"),
    ("mapfile", "C"),
    ("readarray", "C"),
];

/// Variables from which a shell takes code as it starts (`BASH_ENV`,
/// `ENV`, `ZDOTDIR`, `BASH_FUNC_*` functions) or as it traces (`PS4`, with
/// xtrace set through `SHELLOPTS`), whose assigned value bash evaluates as
/// arithmetic (`OPTIND='a[$(rm -rf /)]'` runs rm), that give a command
/// another program or text (`BASH_CMDS` as `hash -p`, `BASH_ALIASES`), and
/// the common ones from which the loader, git or an interpreter takes code
/// (`LD_PRELOAD`, `GIT_CONFIG_*`, `GIT_PAGER`, `NODE_OPTIONS`, ...):
/// assigning one in a script is not understood, and the daemon neither
/// passes one in from the caller nor takes it from `--env`. Not every such
/// setting: files a program reads can do the same.
pub fn runs_code(var: &str) -> bool {
    const NAMES: &[&str] = &[
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "ZDOTDIR",
        "OPTIND",
        "RANDOM",
        "SRANDOM",
        "HISTCMD",
        "BASH_CMDS",
        "BASH_ALIASES",
        "LD_PRELOAD",
        "LD_AUDIT",
        "GIT_CONFIG_COUNT",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_PAGER",
        "GIT_EDITOR",
        "GIT_EXTERNAL_DIFF",
        "GIT_ASKPASS",
        "GIT_EXEC_PATH",
        "GIT_SEQUENCE_EDITOR",
        "GIT_PROXY_COMMAND",
        "GIT_TEMPLATE_DIR",
        "JAVA_TOOL_OPTIONS",
        "NODE_OPTIONS",
        "PERL5OPT",
        "RUBYOPT",
    ];
    const PREFIXES: &[&str] = &["BASH_FUNC_", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"];
    NAMES.contains(&var) || PREFIXES.iter().any(|p| var.starts_with(p))
}

/// Variables whose value is a command line another program runs (git's
/// pager and editors, `PAGER`, `EDITOR`, ...): assigned a literal value
/// before a command in a script, that value is judged as the commands it
/// runs (`PAGER=cat git log` runs `cat`), rather than not understood.
const COMMAND_VALUED: &[&str] = &[
    "GIT_PAGER",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_SSH_COMMAND",
    "PAGER",
    "EDITOR",
    "VISUAL",
];

/// Whether `var=value` may run code; `value` is `None` when unknown. A
/// number is safe for the variables bash only evaluates as arithmetic
/// (`OPTIND=1`, `RANDOM=42`).
fn assignment_runs_code(var: &str, value: Option<&str>) -> bool {
    let number = value.is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()));
    chooses_code(var) && !(number && matches!(var, "OPTIND" | "RANDOM" | "SRANDOM" | "HISTCMD"))
}

/// Variables naming a command other programs run (`git commit` runs
/// `$EDITOR`, `git log` `$PAGER`, ssh `$SSH_ASKPASS`): set in a script (or
/// through `env`), not understood. Not in [`runs_code`], which also keeps
/// variables out of every command's environment, where users commonly
/// have these set.
const CHOSEN_COMMANDS: &[&str] = &[
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MANPAGER",
    "PERF_PAGER",
    "BROWSER",
    "LESSOPEN",
    "LESSCLOSE",
    "LESS",
    "LESSKEY",
    "LESSKEYIN",
    "LESSKEY_SRC",
    "LESSKEY_CONTENT",
    "SHELL",
    "SUDO_ASKPASS",
    "RSYNC_RSH",
    "ARGV0",
    "SSH_ASKPASS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
];

/// [`runs_code`], or one of [`CHOSEN_COMMANDS`]: assigning it is not understood.
fn chooses_code(var: &str) -> bool {
    runs_code(var) || CHOSEN_COMMANDS.contains(&var)
}

fn code_variable<T>(var: &str) -> Result<T, NotUnderstood> {
    nu(format!(
        "an assignment to `{var}`, from which a shell takes code to run"
    ))
}

/// `HOME=...` or `ZDOTDIR=...` (as `NAME=`, `NAME+=` or the bare name, as
/// `export`, `read` and such take it): where shells find startup files
/// (`~/.bashrc`, `~/.profile`, zsh's `$ZDOTDIR/.zshenv`).
fn sets_startup_dir(t: &str) -> bool {
    let var = t.split(['=', '+']).next().unwrap_or(t);
    matches!(var, "HOME" | "ZDOTDIR")
}

/// The command runs a shell, itself or through wrappers [`runs`] looks
/// through (`nice bash -l`); not `pip install sh`. A wrapper not looked
/// through is not understood anyway.
fn runs_a_shell(words: &[Word]) -> bool {
    let mut words = words.to_vec();
    for _ in 0..MAX_NESTING {
        let Some(first) = words.first() else {
            return false;
        };
        let name = basename(&first.text);
        if SHELLS.contains(&name) || OTHER_SHELLS.contains(&name) {
            return true;
        }
        match runs_checking(&words, false) {
            Ok(Runs::Wrapped(w)) => words = w,
            _ => return false,
        }
    }
    true
}

fn startup_dir_why() -> String {
    "a shell started after `HOME` or `ZDOTDIR` changed, which may read startup files from there"
        .to_string()
}

/// A command path that names a program under another name: a file under
/// `/proc/` (`/proc/self/exe` is the shell itself) or `/dev/fd/`, read
/// with `.`, `..` and repeated slashes resolved as written.
fn is_indirect_program(name: &str) -> bool {
    if !name.starts_with('/') {
        return false;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    matches!(
        parts.as_slice(),
        ["proc", _, ..] | ["dev", "fd", _, ..] | ["dev", "stdin" | "stdout" | "stderr"]
    )
}

/// The dynamic loader's name (`ld-linux-x86-64.so.2`, `ld.so`,
/// `ld-musl-x86_64.so.1`, `ld64.so.2`), by which it runs a program.
fn is_loader(name: &str) -> bool {
    name.starts_with("ld") && name.contains(".so")
}

/// The last component of a command name: `/bin/sh` counts as `sh`.
pub fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The simple commands of `script`, each without its leading `VAR=value`
/// assignments and redirections; commands inside `$( )` and backticks are
/// included (before the command whose word holds them).
pub fn parse(script: &str) -> Result<Vec<Vec<Word>>, NotUnderstood> {
    parse_as(script, false)
}

/// [`parse`] as bash reads the script, or (`posix`) as dash and posh do:
/// `$'...'` and `$"..."` are `$` and a quoted string, `&>` is `&` then `>`,
/// and `<<<` starts a here-document.
fn parse_as(script: &str, posix: bool) -> Result<Vec<Vec<Word>>, NotUnderstood> {
    let mut p = Parser::new(script, 0, false);
    p.posix = posix;
    p.list(None)?;
    Ok(p.out)
}

/// The script as `shell` reads it: bash, rbash and zsh as bash, dash and
/// posh as POSIX, and shells that may be either (`sh` is dash or bash;
/// busybox ash and the ksh family take some of bash's syntax) both ways,
/// with the commands of either reading.
fn parse_for(shell: &str, script: &str) -> Result<Vec<Vec<Word>>, NotUnderstood> {
    match shell {
        "bash" | "rbash" => parse_as(script, false),
        // Read as bash, but for what only zsh expands: `=rm` is the path
        // of rm, `$=x`, `$~x` and `$^x` split, glob and spread x.
        "zsh" => {
            if ["$=", "$~", "$^", "${=", "${~", "${^"]
                .iter()
                .any(|z| script.contains(z))
            {
                return nu("zsh's own expansions (`$=`, `$~`, `$^`)");
            }
            let commands = parse_as(script, false)?;
            if commands
                .iter()
                .flatten()
                .any(|w| w.text.starts_with('=') && !w.text.chars().all(|c| c == '='))
            {
                return nu("a word zsh expands as a command's path (`=name`)");
            }
            Ok(commands)
        }
        "dash" | "posh" => parse_as(script, true),
        _ => both_readings(script, 0, false),
    }
}

/// `script` as bash reads it and as POSIX shells do, the commands of either
/// (bash's reading first), for text a shell that may be either will run.
fn both_readings(
    script: &str,
    nesting: usize,
    startup_dir: bool,
) -> Result<Vec<Vec<Word>>, NotUnderstood> {
    let read = |posix| {
        let mut p = Parser::new(script, nesting, startup_dir);
        p.posix = posix;
        p.list(None).map(|()| p.out)
    };
    let mut commands = read(false)?;
    let seen: std::collections::HashSet<Vec<Word>> = commands.iter().cloned().collect();
    let posix = read(true)?;
    commands.extend(posix.into_iter().filter(|c| !seen.contains(c)));
    Ok(commands)
}

/// What running an argv means beyond the argv itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// Nothing further to look into.
    Itself,
    /// A wrapper that runs this command (`env FOO=1 make` runs `make`).
    Wrapped(Vec<Word>),
    /// A shell running a `-c` script: its simple commands.
    Script {
        shell: String,
        commands: Vec<Vec<Word>>,
    },
}

/// Looks through shells with `-c` and through wrappers that run their
/// arguments as a command. `argv` must not be empty.
pub fn runs(argv: &[Word]) -> Result<Runs, NotUnderstood> {
    runs_checking(argv, true)
}

/// [`runs`]; without `startup`, `env HOME=...` is not checked for a shell
/// behind it (as [`runs_a_shell`] does that itself, which would otherwise
/// recurse through a chain of such `env`s again at every step).
fn runs_checking(argv: &[Word], startup: bool) -> Result<Runs, NotUnderstood> {
    if is_indirect_program(&argv[0].text) {
        return nu(format!(
            "not understood: `{}` runs a program under a name no rule knows",
            argv[0].text
        ));
    }
    let name = basename(&argv[0].text);
    if SHELLS.contains(&name) {
        return shell_script(name, argv)
            .map_err(|e| NotUnderstood(format!("script not understood: {}", e.0)));
    }
    names_and_arithmetic(name, &argv[1..])
        .map_err(|e| NotUnderstood(format!("script not understood: {}", e.0)))?;
    if OPAQUE.contains(&name) {
        return nu(format!(
            "script not understood: `{name}` runs a string or file as shell code"
        ));
    }
    if let Some(why) = runs_unseen(name, &argv[1..]) {
        return nu(format!("not understood: {why}"));
    }
    if let Some((_, letters)) = OPAQUE_WITH.iter().find(|(n, _)| *n == name) {
        let risky = |w: &Word| {
            !w.literal || (w.text.starts_with('-') && w.text.contains(|c| letters.contains(c)))
        };
        if let Some(w) = argv[1..].iter().find(|w| risky(w)) {
            return nu(format!(
                "script not understood: `{name} {}` may run code or rename a command",
                w.text
            ));
        }
    }
    let rest = match name {
        "env" => after_options(
            argv,
            &["-i", "-", "-0", "--ignore-environment", "--null"],
            &["-u", "--unset", "-C", "--chdir"],
            true,
        ),
        "nohup" | "builtin" => after_options(argv, &[], &[], false),
        // `busybox APPLET ARGS` runs the applet.
        "busybox" | "toybox" => {
            after_options(argv, &["--list", "--list-full", "--help"], &[], false)
        }
        "setsid" => after_options(
            argv,
            &["-c", "-f", "-w", "--ctty", "--fork", "--wait"],
            &[],
            false,
        ),
        // `-a NAME` gives the program another argv[0], from which busybox
        // and the like choose what to run: not understood (unknown option).
        "exec" => after_options(argv, &["-c", "-l", "-cl", "-lc"], &[], false),
        "eatmydata" => after_options(argv, &[], &[], false),
        "sshpass" => after_options(argv, &["-e", "-v"], &["-p", "-f", "-d", "-P"], false),
        "systemd-inhibit" => after_options(
            argv,
            &["--no-pager", "--no-legend"],
            &["--what", "--who", "--why", "--mode"],
            false,
        ),
        // `-s` runs the command through a shell: not understood.
        "entr" => after_options(
            argv,
            &["-a", "-c", "-d", "-n", "-p", "-r", "-z"],
            &[],
            false,
        ),
        // The dynamic loader runs the program it is given; `--preload`,
        // `--audit`, `--library-path` and `--argv0` are not understood.
        n if is_loader(n) => after_options(argv, &["--inhibit-cache"], &[], false),
        "nice" => after_options(argv, &[], &["-n", "--adjustment"], false),
        "stdbuf" => after_options(
            argv,
            &[],
            &["-i", "-o", "-e", "--input", "--output", "--error"],
            false,
        ),
        "ionice" => after_options(
            argv,
            &["-t", "--ignore"],
            &["-c", "--class", "-n", "--classdata"],
            false,
        ),
        // A priority, then the command (`-p PID` is not understood).
        "chrt" => after_options(
            argv,
            &[
                "-b",
                "--batch",
                "-d",
                "--deadline",
                "-f",
                "--fifo",
                "-i",
                "--idle",
                "-o",
                "--other",
                "-r",
                "--rr",
                "-R",
                "--reset-on-fork",
                "-v",
                "--verbose",
            ],
            &[
                "-T",
                "--sched-runtime",
                "-P",
                "--sched-period",
                "-D",
                "--sched-deadline",
            ],
            false,
        )
        .and_then(|rest| match rest.split_first() {
            Some((p, cmd)) if p.text.bytes().all(|b| b.is_ascii_digit()) => Ok(cmd),
            Some((p, _)) => nu(format!("`{}` where chrt takes a priority", p.text)),
            None => Ok(rest),
        }),
        // A mask, then the command (`-p PID` is not understood).
        "taskset" => after_options(argv, &["-a", "--all-tasks", "-c", "--cpu-list"], &[], false)
            .map(|rest| rest.get(1..).unwrap_or_default()),
        // A lock file, then a command; `-c STRING` runs a shell.
        "flock" => after_options(
            argv,
            &[
                "-s",
                "--shared",
                "-x",
                "-e",
                "--exclusive",
                "-u",
                "--unlock",
                "-n",
                "--nb",
                "--nonblock",
                "-o",
                "--close",
                "-F",
                "--no-fork",
                "--verbose",
            ],
            &["-E", "--conflict-exit-code", "-w", "--wait", "--timeout"],
            false,
        )
        .and_then(|rest| match rest.get(1) {
            Some(c) if c.text == "-c" || c.text == "--command" => {
                nu("`flock -c` runs a string as shell code")
            }
            _ => Ok(rest.get(1..).unwrap_or_default()),
        }),
        // zsh's precommand modifiers.
        "noglob" | "nocorrect" | "-" => Ok(&argv[1..]),
        "repeat" => match argv.get(1) {
            Some(n) if n.literal && n.text.bytes().all(|b| b.is_ascii_digit()) => Ok(&argv[2..]),
            Some(n) => nu(format!("`repeat {}`: a count zsh evaluates", n.text)),
            None => Ok(&argv[1..]),
        },
        // Bash's keyword takes `-p`; /usr/bin/time (GNU) these.
        "time" => after_options(
            argv,
            &[
                "-p",
                "--portability",
                "-a",
                "--append",
                "-v",
                "--verbose",
                "-q",
                "--quiet",
            ],
            &["-f", "--format", "-o", "--output"],
            false,
        ),
        "command"
            if argv
                .get(1)
                .is_some_and(|w| w.text == "-v" || w.text == "-V") =>
        {
            return Ok(Runs::Itself)
        }
        "command" => after_options(argv, &["-p"], &[], false),
        // The duration comes before the command.
        "timeout" => after_options(
            argv,
            &["--preserve-status", "--foreground", "-v", "--verbose"],
            &["-s", "--signal", "-k", "--kill-after"],
            false,
        )
        .map(|rest| rest.get(1..).unwrap_or_default()),
        _ => return Ok(Runs::Itself),
    }
    .map_err(|e| NotUnderstood(format!("not understood: {}", e.0)))?;
    if name == "env" {
        let set = &argv[1..argv.len() - rest.len()];
        if startup && set.iter().any(|w| sets_startup_dir(&w.text)) && runs_a_shell(rest) {
            return nu(startup_dir_why());
        }
    }
    // `command eval ...` is eval.
    if let Some(w) = rest.first().filter(|w| OPAQUE.contains(&basename(&w.text))) {
        return nu(format!(
            "script not understood: `{name} {}` runs a string or file as shell code",
            w.text
        ));
    }
    Ok(if rest.is_empty() {
        Runs::Itself
    } else {
        Runs::Wrapped(rest.to_vec())
    })
}

/// Checks the bash builtins that take variable names or arithmetic. Bash
/// evaluates a subscript in a name (`printf -v 'a[$(rm -rf /)]' x` runs
/// rm) and, in arithmetic, the value of every name it meets, which may hold
/// such a subscript. Understood only where each name is a plain one, known
/// before the shell runs, and no arithmetic names a variable; integer
/// (`-i`) and reference (`-n`) variables are not understood, as assigning
/// or expanding them does the same.
fn names_and_arithmetic(name: &str, args: &[Word]) -> Result<(), NotUnderstood> {
    let plain = |w: Option<&Word>| match w {
        Some(w) if !(w.literal && is_name(&w.text)) => nu(format!(
            "`{name}` with `{}` where a plain variable name is understood",
            w.text
        )),
        Some(w) if chooses_code(&w.text) => code_variable(&w.text),
        _ => Ok(()),
    };
    match name {
        "let" => {
            if let Some(w) = args.iter().find(|w| !w.literal || !is_constant(&w.text)) {
                return nu(format!(
                    "`let {}`: arithmetic on anything but numbers",
                    w.text
                ));
            }
        }
        "declare" | "typeset" | "local" | "export" | "readonly" | "unset" => {
            for w in args {
                let t = w.text.as_str();
                if w.literal && (t.starts_with('-') || t.starts_with('+')) {
                    if !matches!(name, "export" | "readonly" | "unset") && t.contains(['i', 'n']) {
                        return nu(format!(
                            "`{name} {t}`: integer variables assign by arithmetic, name references expand indirectly"
                        ));
                    }
                    continue;
                }
                // The name part, as written: `x="$1"` names `x`.
                let var = t.split('=').next().unwrap_or(t);
                let var = var.strip_suffix('+').unwrap_or(var);
                if !is_name(var) {
                    return nu(format!(
                        "`{name}` with `{t}` where a plain variable name is understood"
                    ));
                }
                // A bare name assigns nothing.
                let value = match t.split_once('=') {
                    None => Some(""),
                    Some((_, v)) => w.literal.then_some(v),
                };
                if assignment_runs_code(var, value) && name != "unset" {
                    return code_variable(var);
                }
            }
        }
        "printf" => match args.first() {
            Some(w) if !w.literal => {
                return nu(format!(
                    "`printf {}`: may expand to `-v` and a variable name",
                    w.text
                ))
            }
            Some(w) if w.text == "-v" => plain(args.get(1))?,
            Some(w) => {
                if let Some(var) = w.text.strip_prefix("-v") {
                    plain(Some(&Word::literal(var)))?;
                }
            }
            None => {}
        },
        // `-a NAME` and the names after the options; the other options
        // with an argument take no name.
        "read" => {
            let mut i = 0;
            let mut options = true;
            while let Some(w) = args.get(i) {
                i += 1;
                let t = w.text.as_str();
                if options && t == "--" {
                    options = false;
                    continue;
                }
                let Some(cluster) = t
                    .strip_prefix('-')
                    .filter(|c| options && w.literal && !c.is_empty())
                else {
                    options = false;
                    plain(Some(w))?;
                    continue;
                };
                if let Some(at) = cluster.find(|c| "adinNptu".contains(c)) {
                    let attached = &cluster[at + 1..];
                    let arg = if attached.is_empty() {
                        i += 1;
                        args.get(i - 1)
                    } else {
                        None
                    };
                    if cluster[at..].starts_with('a') {
                        match arg {
                            Some(a) => plain(Some(a))?,
                            None => plain(Some(&Word::literal(attached)))?,
                        }
                    }
                }
            }
        }
        // `getopts OPTSTRING NAME [ARGS]` assigns NAME.
        "getopts" => {
            let args = match args.first() {
                Some(w) if w.literal && w.text == "--" => &args[1..],
                _ => args,
            };
            if let Some(w) = args.first().filter(|w| !is_one_field(w)) {
                return nu(format!(
                    "`getopts {}`: may split into a different variable name",
                    w.text
                ));
            }
            plain(args.get(1))?;
        }
        // The array name after the options (`-C` is refused elsewhere).
        "mapfile" | "readarray" => {
            let mut i = 0;
            while let Some(w) = args.get(i) {
                if !w.literal {
                    return nu(format!(
                        "`{name} {}`: may expand to a variable name",
                        w.text
                    ));
                }
                match w.text.as_str() {
                    "--" => {
                        plain(args.get(i + 1))?;
                        break;
                    }
                    t if t.starts_with('-') && t.len() > 1 => {
                        // An option taking an argument, last in its cluster
                        // and without it attached, takes the next word.
                        let takes = |c: char| "dnOsuCc".contains(c);
                        let at = t[1..].find(takes);
                        i += match at {
                            Some(at) if at + 2 == t.len() => 2,
                            _ => 1,
                        };
                    }
                    _ => {
                        plain(Some(w))?;
                        break;
                    }
                }
            }
        }
        // With `-k` (`-o keyword`), every `NAME=value` argument of a later
        // command is put in its environment, past every check here.
        "set" => {
            for (i, w) in args.iter().enumerate() {
                let t = w.text.as_str();
                let cluster = t.strip_prefix('-').or_else(|| t.strip_prefix('+'));
                let keyword = cluster.is_some_and(|c| !c.starts_with('-') && c.contains('k'))
                    || (matches!(t, "-o" | "+o")
                        && args
                            .get(i + 1)
                            .is_some_and(|n| !n.literal || n.text == "keyword"));
                if !w.literal || keyword {
                    return nu(format!(
                        "`set {t}`: may put arguments in commands' environments"
                    ));
                }
            }
        }
        // Aliases would rename commands the parser sees.
        "shopt" => {
            if let Some(w) = args
                .iter()
                .find(|w| !w.literal || w.text == "expand_aliases")
            {
                return nu(format!("`shopt {}`: may expand aliases", w.text));
            }
        }
        "wait" => {
            for (i, w) in args.iter().enumerate() {
                if !w.literal && i + 1 < args.len() {
                    return nu(format!(
                        "`wait {}`: may expand to `-p` and a variable name",
                        w.text
                    ));
                }
                if w.literal && w.text.starts_with('-') && w.text.contains('p') {
                    plain(args.get(i + 1))?;
                }
            }
        }
        "test" | "[" => {
            let args = match args.split_last() {
                Some((last, rest)) if name == "[" && last.literal && last.text == "]" => rest,
                _ => args,
            };
            for (i, w) in args.iter().enumerate() {
                if w.literal && w.text == "-v" {
                    plain(args.get(i + 1))?;
                }
                // An expansion that may be (or split into) `-v` and a name.
                let operand = i + 1 == args.len()
                    || i.checked_sub(1)
                        .and_then(|p| args.get(p))
                        .is_some_and(|p| p.literal && is_test_operator(&p.text))
                    || args
                        .get(i + 1)
                        .is_some_and(|n| n.literal && is_test_binary(&n.text));
                if !(w.literal || (operand && is_one_field(w))) {
                    return nu(format!(
                        "`{name}` with `{}` that may expand to `-v` and a variable name",
                        w.text
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A valid shell variable name.
fn is_name(t: &str) -> bool {
    let mut chars = t.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Arithmetic of numbers only: no name whose value would be evaluated.
fn is_constant(t: &str) -> bool {
    t.chars()
        .all(|c| c.is_ascii_digit() || " \t\n+-*/%<>=!&|^~?:,()".contains(c))
}

/// An expansion that stays one word: all in double quotes (without `$@`),
/// or a special parameter that expands to a number.
fn is_one_field(w: &Word) -> bool {
    let t = w.text.as_str();
    let quoted = t.len() >= 2
        && t.starts_with('"')
        && t.ends_with('"')
        && !t[1..t.len() - 1].contains('"')
        && !t.contains("$@")
        && !t.contains("${@");
    w.literal || quoted || matches!(t, "$#" | "$?" | "$$" | "$!")
}

/// A `test` operator after which a word is an operand (not `-a`/`-o`,
/// which may also join two expressions).
fn is_test_operator(t: &str) -> bool {
    is_test_binary(t)
        || (t.len() == 2 && t.starts_with('-') && "bcdefghknprstuwxzGLNOSRv".contains(&t[1..]))
}

fn is_test_binary(t: &str) -> bool {
    matches!(
        t,
        "=" | "=="
            | "!="
            | "<"
            | ">"
            | "-eq"
            | "-ne"
            | "-lt"
            | "-le"
            | "-gt"
            | "-ge"
            | "-nt"
            | "-ot"
            | "-ef"
    )
}

/// The words after a wrapper's options: `flags` take no argument, `with_arg`
/// take one (as the next word or `--opt=value`). With `assignments` (env),
/// every later word holding a `=` is skipped, whatever its name (GNU env
/// passes `A B=1` or `1=x` on as is), also after `--`, and the first other
/// word, even `-x` or `--`, is the command. An unknown option is not
/// guessed at.
fn after_options<'a>(
    argv: &'a [Word],
    flags: &[&str],
    with_arg: &[&str],
    assignments: bool,
) -> Result<&'a [Word], NotUnderstood> {
    let name = basename(&argv[0].text);
    let mut i = 1;
    // An assignment was skipped: options are over.
    let mut assigned = false;
    while let Some(w) = argv.get(i) {
        if !w.literal {
            return nu(format!("`{}` among the options of {name}", w.text));
        }
        let t = w.text.as_str();
        if assignments && t.contains('=') && (assigned || !t.starts_with('-')) {
            if let Some((var, _)) = t
                .split_once('=')
                .filter(|(v, value)| assignment_runs_code(v, Some(value)))
            {
                return code_variable(var);
            }
            assigned = true;
            i += 1;
            continue;
        }
        if assigned {
            break;
        }
        if t == "--" {
            i += 1;
            // env still takes `NAME=value` words after `--`.
            if assignments {
                assigned = true;
                continue;
            }
            break;
        }
        let attached_arg = with_arg.iter().any(|o| {
            t.strip_prefix(o)
                .is_some_and(|v| v.starts_with('=') || (!o.starts_with("--") && !v.is_empty()))
        });
        let nice_number = name == "nice"
            && t.strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if with_arg.contains(&t) && !flags.contains(&t) {
            i += 2;
        } else if flags.contains(&t) || attached_arg || nice_number {
            i += 1;
        } else if t.starts_with('-') && t.len() > 1 {
            return nu(format!("option `{t}` of {name}"));
        } else {
            break;
        }
    }
    Ok(argv.get(i..).unwrap_or_default())
}

/// Bash's long options (bash 5.2's `long_args`), which it takes with one
/// dash or two, and only before any other option.
const BASH_LONG: &[&str] = &[
    "debug",
    "debugger",
    "dump-po-strings",
    "dump-strings",
    "help",
    "init-file",
    "login",
    "noediting",
    "noprofile",
    "norc",
    "posix",
    "pretty-print",
    "protected",
    "rcfile",
    "restricted",
    "verbose",
    "version",
    "wordexp",
];

/// The single-letter options `name` takes that the parser knows (besides
/// `c`, and `o`/`O`, which take the next word): a cluster with any other
/// letter is not understood, since that letter might take a word too.
fn shell_letters(name: &str) -> &'static str {
    match name {
        "bash" | "rbash" => "abefhiklmnprstuvxBCDEHPT",
        "sh" | "dash" | "ash" => "abefilmnpsuvxCEIV",
        // zsh has a single-letter option for nearly every letter and digit.
        "zsh" => "abdefghijklmnpqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ0123456789",
        _ => "abefhiklmnprsuvxC",
    }
}

/// The script of `SHELL [OPTIONS] -c SCRIPT [NAME ARGS...]`, parsed; a shell
/// without `-c` (reading a file or stdin) is itself. Bash's long options
/// are read as bash reads them (`bash -posix -c x` is `--posix`, not a
/// cluster holding `o`); an option the parser does not know is not
/// understood rather than guessed at.
fn shell_script(name: &str, argv: &[Word]) -> Result<Runs, NotUnderstood> {
    let bash = matches!(name, "bash" | "rbash");
    let letters = shell_letters(name);
    let mut has_c = false;
    // Still before any short option: where bash takes long ones.
    let mut leading = true;
    let mut i = 1;
    while let Some(w) = argv.get(i) {
        if !w.literal {
            return nu(format!("`{}` among the options of {name}", w.text));
        }
        let t = w.text.as_str();
        if t == "--" || t == "-" {
            i += 1;
            break;
        }
        let long = t.strip_prefix("--");
        let single = t.strip_prefix('-').filter(|l| BASH_LONG.contains(l));
        if leading && (bash || name == "sh") {
            // `sh` may be bash or dash, which would read `-posix` as a cluster.
            if let (Some(l), None, "sh") = (single, long, name) {
                return nu(format!("`-{l}`: a long option of bash, letters to dash"));
            }
            if let Some(l) = long.or(single).filter(|l| BASH_LONG.contains(l)) {
                if matches!(l, "rcfile" | "init-file") {
                    return nu(format!("`{t}`: {name} runs the startup file it names"));
                }
                i += 1;
                continue;
            }
        }
        if let Some(l) = long {
            let takes_file = ["rcfile", "init-file", "profile"]
                .iter()
                .any(|f| l.contains(f));
            if takes_file {
                return nu(format!("`{t}`: {name} runs the startup file it names"));
            }
            // zsh's long options are `-o` names, but for `--emulate MODE`.
            match name {
                "zsh" if l == "emulate" => i += 2,
                "zsh" | "yash" => i += 1,
                _ => return nu(format!("option `{t}` of {name}")),
            }
            continue;
        }
        let Some(cluster) = t.strip_prefix('-').or_else(|| t.strip_prefix('+')) else {
            break;
        };
        if cluster.is_empty() {
            break;
        }
        leading = false;
        if let Some(c) = cluster
            .chars()
            .find(|&c| !(letters.contains(c) || "coO".contains(c)))
        {
            return nu(format!("option `{c}` of {name} in `{t}`"));
        }
        has_c |= cluster.contains('c');
        // Each `o OPTION` (and `O`: bash's shopt, zsh's) takes the next word.
        i += 1 + cluster.matches(['o', 'O']).count();
    }
    if !has_c {
        return Ok(Runs::Itself);
    }
    let Some(script) = argv.get(i) else {
        return nu(format!("{name} -c without a script"));
    };
    if !script.literal {
        return nu(format!("the script of {name} -c is not a literal string"));
    }
    Ok(Runs::Script {
        shell: name.to_string(),
        commands: parse_for(name, &script.text)?,
    })
}

/// `NAME=...` or `NAME+=...` with a valid variable name.
fn is_assignment(t: &str) -> bool {
    let Some((name, _)) = t.split_once('=') else {
        return false;
    };
    is_name(name.strip_suffix('+').unwrap_or(name))
}

/// A word as read, with what the caller needs to classify it.
struct Raw {
    word: Word,
    /// No quoting or escapes: may be a reserved word or `{`/`}`.
    plain: bool,
    /// `NAME=value` with the name unquoted.
    assignment: bool,
}

struct Parser {
    chars: Vec<char>,
    /// For each position, the first one at or after it that is not the
    /// start of a backslash-newline: computed once, so that skipping a run
    /// of continuations never rescans it (reading stays linear).
    skip: Vec<usize>,
    pos: usize,
    nesting: usize,
    out: Vec<Vec<Word>>,
    /// `HOME` or `ZDOTDIR` was assigned earlier (or in this command): a
    /// shell run from here on may read startup files the script wrote.
    startup_dir: bool,
    /// Read as dash does, not as bash (see [`parse_as`]).
    posix: bool,
}

/// Characters that end an unquoted word.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
    )
}

impl Parser {
    fn new(script: &str, nesting: usize, startup_dir: bool) -> Parser {
        let chars: Vec<char> = script.chars().collect();
        let mut skip = vec![chars.len(); chars.len() + 1];
        for i in (0..chars.len()).rev() {
            skip[i] = if chars[i] == '\\' && chars.get(i + 1) == Some(&'\n') {
                skip[i + 2]
            } else {
                i
            };
        }
        Parser {
            chars,
            skip,
            pos: 0,
            nesting,
            out: Vec::new(),
            startup_dir,
            posix: false,
        }
    }

    /// `i`, past any backslash-newlines there: bash drops them as it reads,
    /// before tokens, quotes or expansions are seen (`i\<newline>f` is `if`),
    /// except in single quotes, `$'...'` and comments, which read raw.
    fn past_continuations(&self, i: usize) -> usize {
        self.skip.get(i).copied().unwrap_or(i)
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    /// The `n`th character ahead, line continuations dropped (`n` is small:
    /// a longer look ahead scans forward once itself, as in `io_number`).
    fn peek_at(&self, n: usize) -> Option<char> {
        let mut i = self.past_continuations(self.pos);
        for _ in 0..n {
            i = self.past_continuations(i + 1);
        }
        self.chars.get(i).copied()
    }

    /// Moves past `n` characters as [`Parser::peek_at`] counts them.
    fn bump(&mut self, n: usize) {
        for _ in 0..n {
            self.pos = self.past_continuations(self.pos) + 1;
        }
    }

    /// The character at the cursor as written (after a backslash, or
    /// where continuations are not dropped).
    fn raw(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// The commands of `value`, a command line another program will run,
    /// read as a script nested in this one and added to [`Parser::out`].
    /// The program may run it through `/bin/sh` (dash or bash), so it is
    /// read both ways; one that would not be a plain command line there
    /// (an assignment or a redirection, which a program splitting it into
    /// words would run as a program name) is not understood.
    fn value_commands(&mut self, value: &str) -> Result<(), NotUnderstood> {
        if value.contains(['=', '<', '>']) {
            return nu(format!("a command line {value:?} for another program"));
        }
        self.enter()?;
        let commands = both_readings(value, self.nesting, self.startup_dir);
        self.nesting -= 1;
        let commands = commands?;
        if commands.is_empty() {
            return nu(format!("a command line {value:?} that runs nothing"));
        }
        self.out.extend(commands);
        Ok(())
    }

    fn enter(&mut self) -> Result<(), NotUnderstood> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return nu(format!("nested deeper than {MAX_NESTING} levels"));
        }
        Ok(())
    }

    /// Spaces, tabs and line continuations.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t') => self.bump(1),
                _ => return,
            }
        }
    }

    /// Commands up to the end of input, or up to and including `closer`
    /// (`)` of a subshell or `$( )`).
    fn list(&mut self, closer: Option<char>) -> Result<(), NotUnderstood> {
        let mut words: Vec<Word> = Vec::new();
        let mut braces: i32 = 0;
        // A `( )` group just ended: only operators and redirections may follow.
        let mut after_group = false;
        // Assignments came first in this command (so `(` would make an array).
        let mut assigned = false;
        // Bash's `time` keyword and its options: 1 after `time`, 2 after
        // `-p`, 3 after `--`.
        let mut timed = 0u8;
        loop {
            self.skip_blanks();
            let Some(c) = self.peek() else {
                if closer.is_some() {
                    return nu("an unclosed `(`");
                }
                break;
            };
            let mut end_command = true;
            match c {
                // A comment reads raw: it ends at a newline even after a backslash.
                '#' => {
                    self.bump(1);
                    while self.raw().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                    end_command = false;
                }
                '\n' => self.bump(1),
                ';' => {
                    if self.peek_at(1) == Some(';') {
                        return nu("`;;` outside a case");
                    }
                    self.bump(1);
                }
                '&' if !self.posix && self.peek_at(1) == Some('>') => {
                    self.bump(1);
                    self.redirection()?;
                    end_command = false;
                }
                '&' | '|' => {
                    self.bump(1);
                    if matches!(self.peek(), Some('&' | '|')) {
                        self.bump(1);
                    }
                }
                ')' => {
                    if closer != Some(')') {
                        return nu("an unmatched `)`");
                    }
                    self.bump(1);
                    self.finish(&mut words)?;
                    break;
                }
                '(' => {
                    if !words.is_empty() || assigned || after_group {
                        return nu("a function definition or array");
                    }
                    if self.peek_at(1) == Some('(') {
                        return nu("an arithmetic command `((`");
                    }
                    self.bump(1);
                    self.enter()?;
                    self.list(Some(')'))?;
                    self.nesting -= 1;
                    after_group = true;
                    continue;
                }
                '<' | '>' => {
                    self.redirection()?;
                    end_command = false;
                }
                d if d.is_ascii_digit() && self.io_number() => {
                    self.redirection()?;
                    end_command = false;
                }
                _ => {
                    if after_group {
                        return nu("words after a `( )` group");
                    }
                    let raw = self.word()?;
                    end_command = false;
                    if words.is_empty() {
                        if raw.assignment {
                            let t = &raw.word.text;
                            let var = t.split(['=', '+']).next().unwrap_or(t);
                            let value = t.split_once('=').map(|(_, v)| v);
                            let literal = value.filter(|_| raw.word.literal && !t.contains("+="));
                            if let (true, Some(v)) = (COMMAND_VALUED.contains(&var), literal) {
                                let v = v.to_string();
                                self.value_commands(&v)?;
                                assigned = true;
                                continue;
                            }
                            if assignment_runs_code(var, literal) {
                                return code_variable(var);
                            }
                            self.startup_dir |= sets_startup_dir(var);
                            assigned = true;
                            continue;
                        }
                        // `NAME[KEY]=value` assigns an element of NAME.
                        let t = &raw.word.text;
                        if let Some((var, _)) = t.split_once('[') {
                            if chooses_code(var) && t.contains("]=") {
                                return code_variable(var);
                            }
                        }
                        // Another option after `time`: in dash `time` is the
                        // program /usr/bin/time, kept as its command, whose
                        // options `runs` looks through; bash may read it as
                        // its keyword, which runs the option word itself as
                        // the command (`time -f %e true` runs `-f`), or as
                        // the program (after a pipe or a redirection):
                        // there it is not understood.
                        let t = raw.word.text.as_str();
                        let time_option = (timed == 1 || timed == 2)
                            && raw.word.literal
                            && t.len() > 1
                            && t.starts_with('-')
                            && !(raw.plain && (t == "--" || (t == "-p" && timed == 1)));
                        if time_option && !self.posix {
                            return nu(format!(
                                "`time {t}`: bash's keyword runs `{t}`, /usr/bin/time an option"
                            ));
                        }
                        if time_option {
                            words.push(Word::literal("time"));
                            if timed == 2 {
                                words.push(Word::literal("-p"));
                            }
                            words.push(raw.word);
                            continue;
                        }
                        if raw.plain {
                            match raw.word.text.as_str() {
                                "{" => {
                                    braces += 1;
                                    continue;
                                }
                                "}" => {
                                    braces -= 1;
                                    if braces < 0 {
                                        return nu("an unmatched `}`");
                                    }
                                    continue;
                                }
                                "!" => continue,
                                "time" if !assigned => {
                                    if timed != 0 {
                                        return nu("`time time`");
                                    }
                                    timed = 1;
                                    continue;
                                }
                                "-p" if timed == 1 => {
                                    timed = 2;
                                    continue;
                                }
                                "--" if timed == 1 || timed == 2 => {
                                    timed = 3;
                                    continue;
                                }
                                t if RESERVED.contains(&t) => {
                                    return nu(format!(
                                        "`{t}` (compound commands are not supported)"
                                    ));
                                }
                                _ => {}
                            }
                        }
                    }
                    words.push(raw.word);
                }
            }
            if end_command {
                self.finish(&mut words)?;
                after_group = false;
                assigned = false;
                timed = 0;
            }
        }
        if braces != 0 {
            return nu("an unclosed `{`");
        }
        self.finish(&mut words)?;
        Ok(())
    }

    /// Ends a simple command; not understood when it may start a shell
    /// after `HOME` or `ZDOTDIR` changed (here, as `export HOME=x`, or earlier).
    fn finish(&mut self, words: &mut Vec<Word>) -> Result<(), NotUnderstood> {
        if words.is_empty() {
            return Ok(());
        }
        // `NAME=value` for env, export, ...; a bare name for builtins that
        // assign or export one.
        let by_name = matches!(
            basename(&words[0].text),
            "export"
                | "declare"
                | "typeset"
                | "local"
                | "readonly"
                | "read"
                | "printf"
                | "getopts"
                | "mapfile"
                | "readarray"
        );
        self.startup_dir |= words[1..]
            .iter()
            .any(|w| w.literal && sets_startup_dir(&w.text) && (by_name || w.text.contains('=')));
        if self.startup_dir && runs_a_shell(words) {
            return nu(startup_dir_why());
        }
        self.out.push(std::mem::take(words));
        Ok(())
    }

    /// Digits right before `<` or `>` (as in `2>&1`) are a descriptor, not a word.
    /// One forward scan: `peek_at(n)` for each `n` would be quadratic.
    fn io_number(&mut self) -> bool {
        let mut i = self.past_continuations(self.pos);
        while self.chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i = self.past_continuations(i + 1);
        }
        if matches!(self.chars.get(i), Some('<' | '>')) {
            self.pos = i;
            true
        } else {
            false
        }
    }

    /// A redirection operator at the cursor (or after `&` of `&>`) and its
    /// target word, which is dropped (its substitutions are still collected).
    fn redirection(&mut self) -> Result<(), NotUnderstood> {
        let c = self.peek();
        let next = self.peek_at(1);
        match (c, next) {
            (Some('<'), Some('<')) if !self.posix && self.peek_at(2) == Some('<') => self.bump(3),
            (Some('<'), Some('<')) => return nu("a here-document"),
            (Some('<' | '>'), Some('(')) => return nu("a process substitution"),
            (Some('<'), Some('&' | '>')) | (Some('>'), Some('&' | '>' | '|')) => self.bump(2),
            _ => self.bump(1),
        }
        self.skip_blanks();
        match self.peek() {
            Some(c) if !is_meta(c) => self.word().map(drop),
            _ => nu("a redirection without a target"),
        }
    }

    /// One word: quotes and escapes resolved, expansions noted (and command
    /// substitutions parsed into `out`).
    fn word(&mut self) -> Result<Raw, NotUnderstood> {
        let start = self.past_continuations(self.pos);
        let mut text = String::new();
        let mut literal = true;
        let mut plain = true;
        let mut assignment = false;
        let mut seen_eq = false;
        let mut bracket = false;
        let mut brace = false;
        while let Some(c) = self.peek() {
            if is_meta(c) {
                break;
            }
            match c {
                // Not before a newline (peek dropped that pair): it quotes
                // the next character as written.
                '\\' => {
                    plain = false;
                    self.bump(1);
                    match self.raw() {
                        Some(e) => {
                            text.push(e);
                            self.pos += 1;
                        }
                        None => text.push('\\'),
                    }
                }
                '\'' => {
                    plain = false;
                    self.bump(1);
                    loop {
                        match self.raw() {
                            None => return nu("an unterminated single quote"),
                            Some('\'') => break,
                            Some(q) => text.push(q),
                        }
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                '"' => {
                    plain = false;
                    self.bump(1);
                    literal &= self.double_quoted(&mut text)?;
                }
                '$' => {
                    plain = false;
                    literal &= self.dollar(&mut text, false)?;
                }
                '`' => {
                    plain = false;
                    literal = false;
                    self.backticks(false)?;
                }
                _ => {
                    match c {
                        '*' | '?' => literal = false,
                        '[' => bracket = true,
                        '{' | '}' => brace = true,
                        '~' if self.past_continuations(self.pos) == start => literal = false,
                        '=' if !seen_eq => {
                            seen_eq = true;
                            assignment = plain && is_assignment(&format!("{text}="));
                        }
                        _ => {}
                    }
                    text.push(c);
                    self.bump(1);
                }
            }
        }
        // `[` alone is the test command; `{`/`}` alone are grouping words.
        if (bracket && text != "[") || (brace && text != "{" && text != "}") {
            literal = false;
        }
        if !literal {
            // Its value is unknown: keep it as written, to name it.
            text = self.chars[start..self.pos].iter().collect();
        }
        Ok(Raw {
            word: Word { text, literal },
            plain,
            assignment,
        })
    }

    /// The inside of `"..."` (the cursor is past the opening quote); false
    /// when it holds an expansion.
    fn double_quoted(&mut self, text: &mut String) -> Result<bool, NotUnderstood> {
        let mut literal = true;
        loop {
            match self.peek() {
                None => return nu("an unterminated double quote"),
                Some('"') => {
                    self.bump(1);
                    return Ok(literal);
                }
                Some('\\') => {
                    self.bump(1);
                    match self.raw() {
                        Some(e @ ('$' | '`' | '"' | '\\')) => text.push(e),
                        Some(e) => {
                            text.push('\\');
                            text.push(e);
                        }
                        None => return nu("an unterminated double quote"),
                    }
                    self.pos += 1;
                }
                Some('$') => literal &= self.dollar(text, true)?,
                Some('`') => {
                    literal = false;
                    self.backticks(true)?;
                }
                Some(c) => {
                    text.push(c);
                    self.bump(1);
                }
            }
        }
    }

    /// `$...` at the cursor; false when it expands (always, except a lone `$`).
    fn dollar(&mut self, text: &mut String, quoted: bool) -> Result<bool, NotUnderstood> {
        self.bump(1);
        match self.peek() {
            Some('(') if self.peek_at(1) == Some('(') => self.arithmetic()?,
            Some('(') => {
                self.bump(1);
                self.enter()?;
                self.list(Some(')'))?;
                self.nesting -= 1;
            }
            Some('{') => {
                self.enter()?;
                self.braced()?;
                self.nesting -= 1;
            }
            Some('[') => return nu("a `$[ ]` arithmetic expansion"),
            // In dash a `$` before a quote is just a `$`.
            Some('\'' | '"') if self.posix => {
                text.push('$');
                return Ok(true);
            }
            Some('\'') if !quoted => {
                // $'...': escapes are not decoded, so the text stays unknown.
                self.bump(1);
                loop {
                    match self.raw() {
                        None => return nu("an unterminated $'...'"),
                        Some('\\') => self.pos += 2,
                        Some('\'') => break,
                        Some(_) => self.pos += 1,
                    }
                }
                self.pos += 1;
            }
            Some('"') if !quoted => {
                // $"...": a translated string; the translation is unknown.
                self.bump(1);
                self.double_quoted(&mut String::new())?;
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.bump(1);
                }
            }
            Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => self.bump(1),
            _ => {
                text.push('$');
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `$((...))` from its first `(`: understood only when it holds numbers,
    /// blanks, operators and parentheses. Bash evaluates a name's value as
    /// arithmetic too, and a subscript there (`x='a[$(rm -rf /)]'`) runs a
    /// command; and `$((cmd); x)`, not being arithmetic, is a command
    /// substitution.
    fn arithmetic(&mut self) -> Result<(), NotUnderstood> {
        self.bump(2);
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return nu("an unclosed arithmetic `$((`"),
                Some('(') => depth += 1,
                Some(')') if depth > 0 => depth -= 1,
                Some(')') if self.peek_at(1) == Some(')') => {
                    self.bump(2);
                    return Ok(());
                }
                Some(')') => return nu("a `$((` that is not closed as arithmetic"),
                Some(c) if c.is_ascii_digit() || " \t\n+-*/%<>=!&|^~?:,".contains(c) => {}
                Some(c) => {
                    return nu(format!(
                        "`{c}` in arithmetic `$(( ))` (only numbers and operators are understood)"
                    ))
                }
            }
            self.bump(1);
        }
    }

    /// `${...}` from its `{`. Understood: a name, a positional or special
    /// parameter, `#` and one of those (length), or one of those, an
    /// operator (`-`, `=`, `+`, `?`, each also after `:`; `#`, `##`, `%`,
    /// `%%`) and a word of plain characters, `$NAME` and such `${...}`.
    /// Bash ends that word at its first `}` (a `{` does not nest). Anything
    /// else (subscripts, `@` transformations, substrings, which are
    /// arithmetic, `!` indirection, quotes) is not understood.
    fn braced(&mut self) -> Result<(), NotUnderstood> {
        let inside = |c: char| {
            nu(format!(
                "`{c}` inside `${{ }}` (only plain parameter expansions are understood)"
            ))
        };
        self.bump(1);
        let length = self.peek() == Some('#') && self.peek_at(1).is_some_and(|c| c != '}');
        if length {
            self.bump(1);
        }
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                    self.bump(1);
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump(1);
                }
            }
            Some(c) if "@*#?-$!".contains(c) => self.bump(1),
            Some(c) => return inside(c),
            None => return nu("an unclosed `${`"),
        }
        let operator = match (self.peek(), self.peek_at(1)) {
            (Some('}'), _) => {
                self.bump(1);
                return Ok(());
            }
            (Some(c), _) if length => return inside(c),
            (Some(':'), Some('-' | '=' | '+' | '?'))
            | (Some('#'), Some('#'))
            | (Some('%'), Some('%')) => 2,
            (Some('-' | '=' | '+' | '?' | '#' | '%'), _) => 1,
            (Some(c), _) => return inside(c),
            (None, _) => return nu("an unclosed `${`"),
        };
        // `${V=x}` and `${V:=x}` assign V.
        let assigns = matches!(
            (self.peek(), self.peek_at(1)),
            (Some('='), _) | (Some(':'), Some('='))
        );
        if assigns && chooses_code(&name) {
            return code_variable(&name);
        }
        self.startup_dir |= assigns && sets_startup_dir(&name);
        self.bump(operator);
        loop {
            match self.peek() {
                None => return nu("an unclosed `${`"),
                Some('}') => {
                    self.bump(1);
                    return Ok(());
                }
                Some('$') => match self.peek_at(1) {
                    Some('(') => return nu("a command substitution inside `${ }`"),
                    Some('{') => {
                        self.bump(1);
                        self.enter()?;
                        self.braced()?;
                        self.nesting -= 1;
                    }
                    Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                        self.bump(1);
                        while self
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            self.bump(1);
                        }
                    }
                    Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => self.bump(2),
                    _ => return inside('$'),
                },
                Some('`') => return nu("a command substitution inside `${ }`"),
                Some(c @ ('{' | '(' | '\'' | '"' | '\\')) => return inside(c),
                Some(_) => self.bump(1),
            }
        }
    }

    /// `` `...` ``: the inside is unescaped and parsed as a script of its own;
    /// within double quotes (`quoted`) `\"` is unescaped too.
    fn backticks(&mut self, quoted: bool) -> Result<(), NotUnderstood> {
        self.bump(1);
        let mut inner = String::new();
        loop {
            match self.peek() {
                None => return nu("an unterminated backquote"),
                Some('`') => break,
                Some('\\') => {
                    self.bump(1);
                    match self.raw() {
                        Some(e @ ('`' | '\\' | '$')) => inner.push(e),
                        Some('"') if quoted => inner.push('"'),
                        Some(e) => {
                            inner.push('\\');
                            inner.push(e);
                        }
                        None => return nu("an unterminated backquote"),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    inner.push(c);
                    self.bump(1);
                }
            }
        }
        self.bump(1);
        self.enter()?;
        let mut sub = Parser::new(&inner, self.nesting, self.startup_dir);
        sub.posix = self.posix;
        sub.list(None)?;
        self.nesting -= 1;
        self.startup_dir |= sub.startup_dir;
        self.out.append(&mut sub.out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_where_a_shell_would_read_them_otherwise() {
        for (word, shown) in [
            ("ls", "ls"),
            ("/usr/bin/git", "/usr/bin/git"),
            ("--color=auto", "--color=auto"),
            ("", "''"),
            ("a b", "'a b'"),
            ("ls; rm x", "'ls; rm x'"),
            ("it's", r"'it'\''s'"),
            ("$HOME", "'$HOME'"),
            ("*", "'*'"),
            ("résumé", "'résumé'"),
            ("a\nb", r"$'a\nb'"),
            ("x\ty", r"$'x\ty'"),
            ("it's\u{202e}", r"$'it\'s\u202e'"),
            ("zero\u{200b}width", r"$'zero\u200bwidth'"),
            ("\u{1b}[2J", r"$'\x1b[2J'"),
        ] {
            assert_eq!(quote(word), shown, "{word:?}");
        }
        let line =
            |argv: &[&str]| command_line(&argv.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(
            line(&["sh", "-c", "ls && rm -rf ~"]),
            "sh -c 'ls && rm -rf ~'"
        );
        // A program named like an assignment or a keyword is not shown as one.
        assert_eq!(line(&["TZ=./UTC", "date"]), "'TZ=./UTC' date");
        assert_eq!(line(&["env", "A=b", "ls"]), "env A=b ls");
        for argv in [
            &["sh", "-c", "ls && rm -rf ~"][..],
            &["TZ=./UTC", "date"],
            &["if", "x"],
            &["time", "x"],
            &["env", "A=b", "ls"],
        ] {
            // Parsed back, the line gives the same words, the first still the command.
            let back = parse(&line(argv)).expect("parses");
            let back: Vec<&str> = back[0].iter().map(|w| w.text.as_str()).collect();
            assert_eq!(back, argv, "{}", line(argv));
        }
    }

    fn texts(script: &str) -> Vec<Vec<String>> {
        parse(script)
            .unwrap_or_else(|e| panic!("{script:?}: {e}"))
            .into_iter()
            .map(|c| c.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn splits_lists_pipelines_and_groups() {
        let cases: &[(&str, &[&[&str]])] = &[
            ("ls && curl x | sh", &[&["ls"], &["curl", "x"], &["sh"]]),
            (
                "git status; rm -rf /",
                &[&["git", "status"], &["rm", "-rf", "/"]],
            ),
            ("a || b & c\nd", &[&["a"], &["b"], &["c"], &["d"]]),
            (
                "(cd x && make) ; { ls; }",
                &[&["cd", "x"], &["make"], &["ls"]],
            ),
            ("echo $(curl x)", &[&["curl", "x"], &["echo", "$(curl x)"]]),
            (
                "echo \"a $(id -u) b\"",
                &[&["id", "-u"], &["echo", "\"a $(id -u) b\""]],
            ),
            ("echo `whoami`", &[&["whoami"], &["echo", "`whoami`"]]),
            ("X=1 Y=\"2 3\" env", &[&["env"]]),
            ("X=$(curl x)", &[&["curl", "x"]]),
            (
                "echo x > /etc/f 2>&1; cat </dev/null >>log",
                &[&["echo", "x"], &["cat"]],
            ),
            ("ls -l # rm -rf /", &[&["ls", "-l"]]),
            ("'r''m' \"-rf\" \\/", &[&["rm", "-rf", "/"]]),
            ("echo a\\\nb", &[&["echo", "ab"]]),
            ("! grep x f |& tee y", &[&["grep", "x", "f"], &["tee", "y"]]),
            ("[ -f x ] && ls", &[&["[", "-f", "x", "]"], &["ls"]]),
            ("cmd &>/dev/null", &[&["cmd"]]),
            ("cat <<< \"$(curl x)\"", &[&["curl", "x"], &["cat"]]),
        ];
        for (script, want) in cases {
            let want: Vec<Vec<String>> = want
                .iter()
                .map(|c| c.iter().map(|s| s.to_string()).collect())
                .collect();
            assert_eq!(texts(script), want, "{script:?}");
        }
    }

    #[test]
    fn expansions_are_not_literal() {
        for (script, index, literal) in [
            ("$CMD x", 0, false),
            ("ls *.rs", 1, false),
            ("ls '*.rs'", 1, true),
            ("ls ~/x", 1, false),
            ("ls a~", 1, true),
            ("echo ${X:-y}", 1, false),
            ("echo $((1+2))", 1, false),
            ("echo a{b,c}", 1, false),
            ("echo '$X'", 1, true),
            ("echo \"$X\"", 1, false),
            ("echo \\$X", 1, true),
            ("echo $", 1, true),
        ] {
            let cmds = parse(script).unwrap();
            let w = &cmds.last().unwrap()[index];
            assert_eq!(w.literal, literal, "{script:?}: {w:?}");
        }
    }

    #[test]
    fn what_is_not_understood_says_why() {
        for (script, why) in [
            ("for i in 1 2; do rm $i; done", "`for`"),
            ("if true; then ls; fi", "`if`"),
            ("f() { ls; }; f", "function"),
            ("cat <<EOF\nx\nEOF", "here-document"),
            ("diff <(ls) x", "process substitution"),
            ("echo 'abc", "single quote"),
            ("echo \"abc", "double quote"),
            ("echo $(ls", "unclosed"),
            ("ls )", "unmatched `)`"),
            ("{ ls", "unclosed `{`"),
            ("a=(1 2)", "array"),
            ("((x++))", "arithmetic"),
            ("echo ${X:-$(curl x)}", "inside `${ }`"),
            ("echo ${X:-`curl x`}", "inside `${ }`"),
            // Bash ends `${` at the first `}`: the rest is a script.
            ("echo ${X:-{}; rm -rf /; : }", "`${ }`"),
            ("echo ${X:-'}'}", "`${ }`"),
            ("echo ${X@P}", "`${ }`"),
            ("echo ${a[0]} ${#a[@]}", "`${ }`"),
            ("echo ${x:1:2}", "`${ }`"),
            ("echo ${x: -1}", "`${ }`"),
            ("echo ${!x}", "`${ }`"),
            ("echo ${X/a/b}", "`${ }`"),
            ("echo ${#x:-y}", "`${ }`"),
            // Not arithmetic: bash runs it as a command substitution.
            ("echo $((rm -rf /); true)", "arithmetic"),
            // A name's value is evaluated too, and `a[$(rm -rf /)]` runs rm.
            ("x='a[$(rm -rf /)]'; echo $((x))", "arithmetic"),
            ("echo $((1) + (2))", "arithmetic"),
            ("echo $[x]", "arithmetic"),
            ("[[ -f x ]]", "`[[`"),
            ("[[ $x -eq 0 ]]", "`[[`"),
            ("ls >", "without a target"),
        ] {
            let e = parse(script).expect_err(script);
            assert!(e.0.contains(why), "{script:?}: {e}");
        }
        let deep = "$(".repeat(40) + &")".repeat(40);
        assert!(parse(&deep).unwrap_err().0.contains("nested"));
    }

    #[test]
    fn plain_expansions_are_understood() {
        for (script, want) in [
            ("echo ${HOME}", &["echo", "${HOME}"][..]),
            ("echo ${X:-default}", &["echo", "${X:-default}"]),
            (
                "echo ${#x} ${#} ${10} ${!} ${@}",
                &["echo", "${#x}", "${#}", "${10}", "${!}", "${@}"],
            ),
            (
                "echo ${X%/*} ${X##*/} ${X:=y}",
                &["echo", "${X%/*}", "${X##*/}", "${X:=y}"],
            ),
            ("echo \"${X:+a b}\"", &["echo", "\"${X:+a b}\""]),
            (
                "echo ${X:-$HOME} ${X:-${Y:-z}}",
                &["echo", "${X:-$HOME}", "${X:-${Y:-z}}"],
            ),
            ("echo ${X:-a}}", &["echo", "${X:-a}}"]),
            (
                "echo $((1 + 2*3)) $(( (1<<2) % 3 ))",
                &["echo", "$((1 + 2*3))", "$(( (1<<2) % 3 ))"],
            ),
        ] {
            assert_eq!(texts(script), [want], "{script:?}");
        }
        assert_eq!(
            texts("cd \"$d\" && make; echo $(date)"),
            [
                &["cd", "\"$d\""][..],
                &["make"],
                &["date"],
                &["echo", "$(date)"]
            ]
        );
    }

    /// Every simple command of `script` looked into by [`runs`].
    fn runs_all(script: &str) -> Result<(), NotUnderstood> {
        for c in parse(script)? {
            runs(&c)?;
        }
        Ok(())
    }

    /// Each script, and every command in it, is understood.
    fn understood(scripts: &[&str]) {
        for script in scripts {
            runs_all(script).unwrap_or_else(|e| panic!("{script:?}: {e}"));
        }
    }

    /// No script is understood, as a whole or in one of its commands.
    fn not_understood(scripts: &[&str]) {
        for script in scripts {
            assert!(runs_all(script).is_err(), "{script:?}");
        }
    }

    /// A command line set for another program to run (`PAGER=cat git log`)
    /// is judged as the commands it runs.
    #[test]
    fn command_valued_variables_are_judged_by_their_value() {
        let texts = |script: &str| -> Vec<Vec<String>> {
            parse(script)
                .unwrap()
                .into_iter()
                .map(|c| c.into_iter().map(|w| w.text).collect())
                .collect()
        };
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            texts("PAGER=cat git log"),
            [w(&["cat"]), w(&["git", "log"])]
        );
        assert_eq!(
            texts("GIT_EDITOR='rm -rf /;' git commit"),
            [w(&["rm", "-rf", "/"]), w(&["git", "commit"])]
        );
        assert_eq!(
            texts("EDITOR=true GIT_PAGER='less -R' git rebase --continue"),
            [
                w(&["true"]),
                w(&["less", "-R"]),
                w(&["git", "rebase", "--continue"])
            ]
        );
        // Read as /bin/sh may read it too (dash: `&` then `>`), and not
        // understood where a program splitting it into words would run
        // another name (`A=./x`, `>./x`).
        for script in [
            "GIT_PAGER='true &>/dev/null rm -rf /' git log",
            "PAGER='A=./x' git log",
            "PAGER='>./x' git log",
            "MANPAGER=./x man ls",
        ] {
            assert!(parse(script).is_err(), "{script:?}");
        }
    }

    /// Bash evaluates a subscript in a variable name (running its command
    /// substitutions) and, in arithmetic, the value of every name it meets.
    #[test]
    fn builtins_taking_names_or_arithmetic() {
        understood(&[
            "let 1+2 '3 << 1'",
            "declare -a x; local x=\"$1\" y; export PATH=\"$PATH:/x\"; readonly X=1",
            "printf '[%s]\\n' \"$x\"; printf -v out '%s' \"$x\"",
            "read -r line; read -r -p 'Go [y/n]? ' ans; read -t \"$t\" -a arr",
            "wait $!; wait \"$pid\"; unset x y",
            "[ -n \"$x\" ] && [ \"$a\" = \"$b\" ] && test -z \"$x\" && [ \"$x\" ]",
            "[ \"$#\" -gt 0 ] && [ $# -gt 0 ] && test -v name",
        ]);
        for script in [
            "let x",
            "let 'x=1'",
            "let \"$n\"",
            "declare -i n",
            "local -n r=x",
            "typeset -ni r",
            "declare 'a[$(rm -rf /)]=1'",
            "declare \"$o\" r=x",
            "export 'a[x]=1'",
            "printf -v 'a[$(rm -rf /)]' x",
            "printf -va[x] x",
            "printf \"$f\" \"$g\" x",
            "read 'a[x]'",
            "read -a 'a[x]'",
            "read \"$n\"",
            "wait -p 'a[x]' -n",
            "wait \"$a\" \"$b\"",
            "test -v 'a[$(rm -rf /)]'",
            "[ -v 'a[x]' ]",
            "[ \"$a\" \"$b\" ]",
            "[ $x ]",
            "[ \"$@\" ]",
            "[ x = y -o \"$a\" \"$b\" ]",
            "unset 'a[x]'",
        ] {
            let e = runs_all(script).expect_err(script);
            assert!(
                e.0.contains("name") || e.0.contains("arithmetic"),
                "{script:?}: {e}"
            );
        }
    }

    fn words(argv: &[&str]) -> Vec<Word> {
        argv.iter().map(|a| Word::literal(a)).collect()
    }

    #[test]
    fn shells_and_wrappers() {
        let script = |r: Runs| match r {
            Runs::Script { shell, commands } => (shell, commands.len()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            script(runs(&words(&["sh", "-c", "a; b"])).unwrap()),
            ("sh".into(), 2)
        );
        assert_eq!(
            script(runs(&words(&["/bin/bash", "-lc", "a"])).unwrap()),
            ("bash".into(), 1)
        );
        assert_eq!(
            script(runs(&words(&["bash", "-o", "pipefail", "-ec", "a|b|c", "name"])).unwrap()),
            ("bash".into(), 3)
        );
        assert_eq!(
            script(runs(&words(&["zsh", "--no-rcs", "-c", "a"])).unwrap()),
            ("zsh".into(), 1)
        );
        assert_eq!(runs(&words(&["sh", "script.sh"])).unwrap(), Runs::Itself);
        assert_eq!(runs(&words(&["ls", "-c"])).unwrap(), Runs::Itself);
        assert!(runs(&words(&["sh", "-c"])).is_err());
        assert_eq!(
            runs(&words(&["env", "-i", "-u", "B", "A=1", "sh", "-c", "x"])).unwrap(),
            Runs::Wrapped(words(&["sh", "-c", "x"]))
        );
        assert_eq!(runs(&words(&["env"])).unwrap(), Runs::Itself);
        assert!(runs(&words(&["env", "-S", "sh -c x"])).is_err());
        assert_eq!(
            runs(&words(&["nice", "-n", "5", "make"])).unwrap(),
            Runs::Wrapped(words(&["make"]))
        );
        assert_eq!(
            runs(&words(&["nice", "-5", "make"])).unwrap(),
            Runs::Wrapped(words(&["make"]))
        );
        // A multi-byte first character is an argument like any other, not a panic.
        assert_eq!(
            runs(&words(&["nice", "éx"])).unwrap(),
            Runs::Wrapped(words(&["éx"]))
        );
        assert_eq!(
            runs(&words(&["timeout", "-s", "KILL", "5", "make", "x"])).unwrap(),
            Runs::Wrapped(words(&["make", "x"]))
        );
        assert_eq!(
            runs(&words(&["setsid", "-f", "sh"])).unwrap(),
            Runs::Wrapped(words(&["sh"]))
        );
        assert_eq!(
            runs(&words(&["command", "-v", "rm"])).unwrap(),
            Runs::Itself
        );
        assert!(runs(&words(&["eval", "ls"])).is_err());
    }

    /// [`runs`] followed through wrappers, as the policy judges them.
    fn runs_through(argv: &[&str]) -> Result<Runs, NotUnderstood> {
        let mut r = runs(&words(argv))?;
        for _ in 0..8 {
            match r {
                Runs::Wrapped(w) => r = runs(&w)?,
                r => return Ok(r),
            }
        }
        Ok(r)
    }

    #[test]
    fn code_run_under_names_no_rule_knows_is_not_understood() {
        for argv in [
            &["builtin", "eval", "rm -rf /"][..],
            &["command", "eval", "rm -rf /"],
            &["builtin", "command", "eval", "x"],
            &["source", "./f"],
            &[".", "./f"],
            &["builtin", "source", "./f"],
            &["command", ".", "./f"],
            &["hash", "-p", "/bin/rm", "ls"],
            &["enable", "-f", "./x.so", "x"],
            &["compgen", "-C", "rm -rf /", "x"],
            &["complete", "-C", "rm -rf /", "x"],
            &["mapfile", "-C", "rm -rf /", "-c", "1", "a"],
            &["readarray", "-tC", "rm -rf /", "a"],
            &["fc", "-e", "rm -rf /"],
            &["/proc/self/exe", "-c", "rm -rf /"],
            &["/proc/1/exe", "-rf", "/"],
            &["/proc/self/root/bin/rm", "-rf", "/"],
            &["//proc/./self/exe", "-rf", "/"],
            &["/usr/../proc/self/exe", "-rf", "/"],
            &["/dev/fd/3", "-rf", "/"],
            &["/dev/stdin", "-rf", "/"],
            &["env", "/proc/self/exe", "-c", "rm -rf /"],
            // Variables a shell takes code from when it starts or traces.
            &["env", "BASH_ENV=./f", "bash", "-c", ":"],
            &["env", "ENV=./f", "sh", "-i", "-c", ":"],
            &["env", "BASH_FUNC_ls%%=() { rm -rf /; }", "bash", "-c", "ls"],
            &[
                "env",
                "SHELLOPTS=xtrace",
                "PS4=$(rm -rf /)",
                "bash",
                "-c",
                ":",
            ],
            &["export", "PS4=$(rm -rf /)"],
            &["read", "BASH_ENV"],
            &["printf", "-v", "PS4", "x"],
        ] {
            let e = runs_through(argv).expect_err(&format!("{argv:?}"));
            assert!(!e.0.is_empty(), "{argv:?}");
        }
        not_understood(&[
            "PS4='$(rm -rf /)'; set -x; true",
            "BASH_ENV=./f bash -c :",
            "export BASH_ENV=./f; bash -c :",
        ]);
        // Still looked through: the shell or command they run is judged.
        let script = |argv: &[&str]| match runs_through(argv) {
            Ok(Runs::Script { shell, commands }) => (shell, commands),
            other => panic!("{argv:?}: {other:?}"),
        };
        let rm = vec![words(&["rm", "-rf", "/"])];
        for (argv, shell) in [
            (&["rbash", "-c", "rm -rf /"][..], "rbash"),
            (&["posh", "-c", "rm -rf /"], "posh"),
            (&["yash", "-c", "rm -rf /"], "yash"),
            (&["lksh", "-c", "rm -rf /"], "lksh"),
            (&["busybox", "sh", "-c", "rm -rf /"], "sh"),
            (&["builtin", "exec", "sh", "-c", "rm -rf /"], "sh"),
        ] {
            assert_eq!(script(argv), (shell.to_string(), rm.clone()), "{argv:?}");
        }
        assert_eq!(
            runs_through(&["busybox", "rm", "-rf", "/"]).unwrap(),
            Runs::Itself
        );
        assert_eq!(
            runs(&words(&["busybox", "rm", "-rf", "/"])).unwrap(),
            Runs::Wrapped(words(&["rm", "-rf", "/"]))
        );
        assert_eq!(runs(&words(&["hash", "-r"])).unwrap(), Runs::Itself);
        assert_eq!(runs(&words(&["/usr/bin/ls"])).unwrap(), Runs::Itself);
    }

    /// GNU env takes every word with a `=` (before the command) as an
    /// assignment, whatever comes before the `=`, and stops at the first
    /// other word, even one starting with `-`.
    #[test]
    fn env_assigns_every_word_with_an_equals_sign() {
        for (argv, wrapped) in [
            (
                &["env", "A B=1", "rm", "-rf", "/"][..],
                &["rm", "-rf", "/"][..],
            ),
            (&["env", "1=x", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["env", "a.b=c", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["env", "-i", "=", "A-B=", "rm"], &["rm"]),
            (&["env", "A=1", "--", "rm"], &["--", "rm"]),
            (&["env", "A=1", "-i", "rm"], &["-i", "rm"]),
            (&["env", "-u", "X", "A=1", "rm"], &["rm"]),
            // `--` ends the options, not the assignments.
            (&["env", "--", "A=1", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["env", "-i", "--", "A=1", "-u=x", "rm"], &["rm"]),
            (&["env", "--", "rm"], &["rm"]),
            (&["env", "--", "A=1", "--", "rm"], &["--", "rm"]),
        ] {
            assert_eq!(
                runs(&words(argv)).unwrap(),
                Runs::Wrapped(words(wrapped)),
                "{argv:?}"
            );
        }
        assert!(runs(&words(&["env", "--", "BASH_ENV=./f", "bash", "-c", ":"])).is_err());
    }

    fn commands(script: &str) -> Option<Vec<Vec<String>>> {
        parse(script).ok().map(|cs| {
            cs.into_iter()
                .map(|c| c.into_iter().map(|w| w.text).collect())
                .collect()
        })
    }

    /// Bash drops a backslash-newline before it reads anything else, except
    /// in single quotes, `$'...'` and comments.
    #[test]
    fn backslash_newline_is_dropped_before_anything_else() {
        let rm = || Some(vec![vec!["rm".to_string(), "-rf".into(), "/".into()]]);
        let cases: &[(&str, Option<Vec<Vec<String>>>)] = &[
            (
                "apt-get install -y \\\n  curl \\\n  git",
                Some(vec![vec![
                    "apt-get".into(),
                    "install".into(),
                    "-y".into(),
                    "curl".into(),
                    "git".into(),
                ]]),
            ),
            ("A\\\n=1 rm -rf /", rm()),
            ("r\\\nm -rf /", rm()),
            ("ls # x \\\nrm -rf /", {
                let mut v = vec![vec!["ls".to_string()]];
                v.extend(rm().unwrap());
                Some(v)
            }),
            (
                "echo 'a\\\nb'",
                Some(vec![vec!["echo".into(), "a\\\nb".into()]]),
            ),
            (
                "echo a\\\\\nb",
                Some(vec![vec!["echo".into(), "a\\".into()], vec!["b".into()]]),
            ),
            ("i\\\nf true; t\\\nhen rm -rf /; f\\\ni", None),
            ("echo $(\\\n(x))", None),
            ("(\\\n(x))", None),
            ("echo \"$\\\n{x@P}\"", None),
            ("echo $\\\n{x@P}", None),
            ("echo ${x\\\n@P}", None),
        ];
        for (script, want) in cases {
            assert_eq!(&commands(script), want, "{script:?}");
        }
        // The substitution is found, wherever the line breaks.
        for script in [
            "echo \"$\\\n(rm -rf /)\"",
            "echo $\\\n(rm -rf /)",
            "echo `r\\\nm -rf /`",
            "echo \"`rm -rf \\\n/`\"",
        ] {
            let cs = commands(script).unwrap_or_else(|| panic!("{script:?}"));
            assert!(cs.contains(&rm().unwrap()[0]), "{script:?}: {cs:?}");
        }
    }

    /// In double quotes, bash also unescapes `\"` in backquoted text.
    #[test]
    fn backquotes_in_double_quotes_unescape_quotes() {
        let rm = vec!["rm".to_string(), "-rf".into(), "/".into()];
        for script in [
            "echo \"`echo \"a\\\" ; rm -rf / ; \\\"b\"`\"",
            "echo \"`echo \\\"a\\\" ; rm -rf / ; \\\"b\\\"`\"",
        ] {
            let cs = commands(script).unwrap_or_else(|| panic!("{script:?}"));
            assert!(cs.contains(&rm), "{script:?}: {cs:?}");
        }
        // Outside double quotes `\"` stays escaped.
        assert_eq!(
            commands("echo `echo \\\"a ; b\\\"`"),
            Some(vec![
                vec!["echo".to_string(), "\"a".into()],
                vec!["b\"".into()],
                vec!["echo".into(), "`echo \\\"a ; b\\\"`".into()],
            ])
        );
    }

    /// Assigning `OPTIND`, `RANDOM`, `SRANDOM` or `HISTCMD` evaluates the
    /// value as arithmetic, where `a[$(rm -rf /)]` runs rm: not understood
    /// however the name is assigned.
    #[test]
    fn variables_assigned_by_arithmetic() {
        not_understood(&[
            "OPTIND='a[$(rm -rf /)]'",
            "OPTIND=\"$x\"",
            "OPTIND=$x",
            "export OPTIND=\"$x\"",
            "OPTIND+=a",
            "RANDOM=x rm",
            "export SRANDOM=1a",
            "declare HISTCMD=x",
            "read OPTIND",
            "printf -v RANDOM x",
            "getopts a OPTIND",
            "getopts -- a OPTIND",
            "getopts a 'x[$(rm -rf /)]'",
            "getopts $o x",
            "mapfile -t OPTIND",
            "readarray -d , -t 'a[x]'",
            ": ${OPTIND=a}",
            ": \"${RANDOM:=a}\"",
            ": ${PS4:=$y}",
            ": ${BASH_ENV=./f}",
        ]);
        assert!(runs(&words(&["env", "OPTIND=x", "bash", "-c", ":"])).is_err());
        understood(&[
            "getopts ab opt",
            "while_not_used=1; getopts \"$spec\" opt \"$@\"",
            ": ${X:=y} ${OPTIND-1} ${RANDOM:-2}",
            "echo $OPTIND $RANDOM; unset OPTIND",
            "mapfile -t lines; readarray -n 2 -O 1 arr",
            // A number is only a number.
            "OPTIND=1; RANDOM=42 x; export SRANDOM=7 OPTIND; local OPTIND",
        ]);
    }

    /// `BASH_CMDS` is the command hash (`hash -p`), `BASH_ALIASES` the
    /// aliases; `getopts` assigns the name it is given.
    #[test]
    fn hash_alias_and_startup_variables_set_other_ways() {
        not_understood(&[
            "BASH_CMDS=/bin/rm; 0 -rf /",
            "BASH_CMDS[ls]=/bin/rm; ls -rf /",
            "export BASH_ALIASES=x",
            "declare -A BASH_CMDS",
            "shopt -s expand_aliases; BASH_ALIASES[x]='rm -rf /'",
            "shopt -s expand_aliases",
            "shopt -s $o",
            "getopts a BASH_ENV",
            "LESSOPEN='|touch x %s' less f",
            "LESS=--lesskey-src=k less f",
            "LESSKEYIN=k less f",
            "less --lesskey-src=k f",
            "less -k k f",
            "less $opt f",
            "set -k; git log GIT_PAGER=x",
            "set -o keyword",
            "set -euk",
            "set -o $o",
            "SHELL=./x script",
            "script",
            "set -a; : ${BASH_ENV:=./f}",
            ": ${BASH_CMDS=/bin/rm}",
            // Git's and interpreters' own: code the command line hides.
            "GIT_PAGER=\"$x\" git log",
            "PAGER+=x git log",
            "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.fsmonitor git status",
            "export NODE_OPTIONS=--require=./x.js; node y.js",
            "LD_PRELOAD=./x.so ls",
        ]);
        assert!(runs(&words(&["env", "BASH_ALIASES=x", "bash", "-c", ":"])).is_err());
        runs_all("shopt -s nullglob globstar; shopt -u dotglob").unwrap();
    }

    /// Bash's `time [-p] [--]` is a keyword: the next word is in command
    /// position, where `!` and reserved words are what they are.
    #[test]
    fn time_keyword_leaves_command_position() {
        let rm = || vec![vec!["rm".to_string(), "-rf".into(), "/".into()]];
        let cases: &[(&str, Option<Vec<Vec<String>>>)] = &[
            ("time ! rm -rf /", Some(rm())),
            ("time -p ! rm -rf /", Some(rm())),
            ("time -p -- rm -rf /", Some(rm())),
            ("time -- rm -rf /", Some(rm())),
            ("! time rm -rf /", Some(rm())),
            (
                "time rm -rf / | time -p rm -rf /",
                Some([rm(), rm()].concat()),
            ),
            ("time [[ -f x ]]", None),
            ("time if true; then rm -rf /; fi", None),
            ("time -p { rm -rf /; }", Some(rm())),
            ("time time rm", None),
            // Another option: bash's keyword would run `-p` itself.
            ("time -p -p x", None),
            // Not in command position, or quoted: the program.
            (
                "A=1 time ls",
                Some(vec![vec!["time".to_string(), "ls".into()]]),
            ),
            (
                "'time' ls",
                Some(vec![vec!["time".to_string(), "ls".into()]]),
            ),
        ];
        for (script, want) in cases {
            assert_eq!(&commands(script), want, "{script:?}");
        }
    }

    /// A shell reads startup files from `--rcfile`/`--init-file`, and
    /// from `$HOME` or `$ZDOTDIR` (login, interactive, any zsh).
    #[test]
    fn startup_files_a_script_chooses() {
        for argv in [
            &["bash", "--rcfile", "./f", "-ic", ":"][..],
            &["bash", "--init-file", "./f", "-ic", ":"],
            &["bash", "--rcfile=./f", "-ic", ":"],
            &["env", "HOME=/tmp/x", "bash", "-lc", ":"],
            &["env", "ZDOTDIR=.", "zsh", "-c", ":"],
            &["env", "-i", "HOME=.", "nice", "bash", "-ic", ":"],
        ] {
            assert!(runs_through(argv).is_err(), "{argv:?}");
        }
        not_understood(&[
            "HOME=/tmp/x bash -lc :",
            "export HOME=/tmp/x; bash -ic :",
            "ZDOTDIR=. zsh -c :",
            "export ZDOTDIR=.; exec zsh -l",
            "read HOME; bash -l",
            ": ${ZDOTDIR:=.}; export ZDOTDIR; zsh -ic :",
            "HOME=/x; env bash -lc :",
            "echo $(export HOME=/x; bash -lc :)",
            "echo `HOME=/x`; /bin/bash -lc :",
        ]);
        understood(&[
            "bash -lc 'echo $HOME'",
            "cd \"$HOME\" && bash -lc make",
            "printenv HOME; bash -lc :",
            "bash -lc :; export HOME=/x",
        ]);
        assert_eq!(
            runs(&words(&["env", "HOME=/x", "ls"])).unwrap(),
            Runs::Wrapped(words(&["ls"]))
        );
    }

    /// Programs that run another command: looked through where their
    /// options are simple, else not understood when they would run one.
    #[test]
    fn programs_that_run_commands() {
        for (argv, wrapped) in [
            (
                &["stdbuf", "-oL", "rm", "-rf", "/"][..],
                &["rm", "-rf", "/"][..],
            ),
            (&["stdbuf", "-i", "0", "--output=L", "rm"], &["rm"]),
            (&["ionice", "-c", "3", "rm"], &["rm"]),
            (&["ionice", "-c2", "-n7", "-t", "rm"], &["rm"]),
            (&["chrt", "-f", "10", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["chrt", "5", "rm"], &["rm"]),
            (&["taskset", "0x3", "rm"], &["rm"]),
            (&["taskset", "-c", "0,1", "rm"], &["rm"]),
            (&["flock", "/tmp/l", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["flock", "-w", "5", "-n", "/tmp/l", "make"], &["make"]),
            (&["noglob", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["nocorrect", "rm"], &["rm"]),
            (&["-", "rm"], &["rm"]),
            (&["repeat", "3", "rm"], &["rm"]),
        ] {
            assert_eq!(
                runs(&words(argv)).unwrap(),
                Runs::Wrapped(words(wrapped)),
                "{argv:?}"
            );
        }
        for argv in [
            &["xargs", "rm"][..],
            &["xargs"],
            &["find", ".", "-exec", "rm", "{}", "+"],
            &["find", ".", "-name", "x", "-execdir", "rm", "{}", ";"],
            &["find", ".", "-ok", "rm", "{}", ";"],
            &["find", ".", "-okdir", "rm", "{}", ";"],
            &["chrt", "-o", "rm", "-rf", "/"],
            &["chrt", "-p", "1"],
            &["taskset", "-p", "1"],
            &["flock", "/tmp/l", "-c", "rm -rf /"],
            &["flock", "/tmp/l", "--command", "rm -rf /"],
            &["sudo", "rm", "-rf", "/"],
            &["doas", "rm"],
            &["su", "-c", "rm -rf /"],
            &["runuser", "-u", "x", "rm"],
            &["setpriv", "--reuid", "1", "rm"],
            &["nsenter", "-t", "1", "rm"],
            &["unshare", "-r", "rm"],
            &["chroot", "/", "rm"],
            &["script", "-c", "rm -rf /", "/dev/null"],
            &["watch", "rm", "-rf", "/"],
            &["parallel", "rm", ":::", "/"],
            &["strace", "rm"],
            &["ltrace", "rm"],
            &["valgrind", "rm"],
            &["git", "-c", "core.pager=rm -rf /", "log"],
            &["git", "-c", "alias.x=!rm -rf /", "x"],
            &["git", "-C", "x", "-c", "a.b=c", "status"],
            &["git", "--config-env=core.pager=P", "log"],
            &["git", "--exec-path=.", "x"],
            &["git", "bisect", "run", "rm", "-rf", "/"],
            &["git", "rebase", "-x", "rm -rf /", "HEAD~1"],
            &["git", "rebase", "--exec=rm -rf /", "HEAD~1"],
            &["git", "-C", "x", "submodule", "foreach", "rm -rf /"],
            &["git", "difftool", "--extcmd=rm -rf /"],
            &["git", "filter-branch", "--tree-filter", "rm -rf /"],
            &["emulate", "sh", "-c", "rm -rf /"],
            &["repeat", "x", "rm"],
            &["tcsh", "-c", "rm -rf /"],
            &["csh", "-fc", "rm -rf /"],
            &["fish", "-c", "rm -rf /"],
            &["fish", "--command=rm -rf /"],
            &["busybox", "hush", "-c", "rm -rf /"],
        ] {
            assert!(runs_through(argv).is_err(), "{argv:?}");
        }
        for argv in [
            &["find", ".", "-name", "*.rs", "-print"][..],
            &["git", "status"],
            &["git", "-C", "sub", "--no-pager", "log", "-c"],
            &["git", "commit", "-c", "HEAD"],
            &["git", "rebase", "-i", "--autosquash", "main"],
            &["git", "bisect", "good"],
            &["fish", "script.fish"],
            &["emulate", "zsh"],
            &["sudo", "--version"],
            &["flock", "9"],
        ] {
            assert_eq!(runs_through(argv).unwrap(), Runs::Itself, "{argv:?}");
        }
        runs_all("ls | sort | uniq -c").unwrap();
        assert!(runs_all("ls | xargs rm").is_err());
        assert!(runs(&[
            Word::literal("find"),
            Word::literal("."),
            parse("x $o").unwrap()[0][1].clone()
        ])
        .is_err());
    }

    /// Reading is linear: a long run of one character (a descriptor's
    /// digits, `(`, `$`, line continuations, quotes) is parsed in time
    /// proportional to it. A guard against quadratic rescans, not a benchmark.
    #[test]
    fn long_runs_parse_in_linear_time() {
        // Quadratic reading would take minutes at this size.
        let size = 256 << 10;
        for unit in ["1", "(", "$", "\\\n", "'", "1 ", "a\\\n", "\"$"] {
            let script = unit.repeat(size / unit.len());
            for script in [
                script.clone(),
                format!("{script}>x"),
                format!("echo {script}"),
            ] {
                let start = std::time::Instant::now();
                let _ = parse(&script);
                let took = start.elapsed();
                assert!(
                    took < std::time::Duration::from_secs(5),
                    "{unit:?} x {}: {took:?}",
                    script.len()
                );
            }
        }
    }

    /// Bash takes its long options with one dash too, and only before the
    /// short ones; a letter the parser does not know is not guessed at.
    #[test]
    fn shell_options_as_each_shell_reads_them() {
        let rm = parse("rm -rf ~").unwrap();
        for argv in [
            &["bash", "-posix", "-c", "rm -rf ~"][..],
            &["bash", "-login", "-noprofile", "-c", "rm -rf ~"],
            &["bash", "--norc", "-verbose", "-ec", "rm -rf ~"],
            &["rbash", "-restricted", "-c", "rm -rf ~"],
            &["bash", "-e", "-posix", "errexit", "-c", "rm -rf ~"],
            &["bash", "-O", "extglob", "-o", "pipefail", "-c", "rm -rf ~"],
            &["bash", "-oO", "pipefail", "extglob", "-c", "rm -rf ~"],
            &["sh", "--posix", "-c", "rm -rf ~"],
            &["dash", "-eux", "-c", "rm -rf ~"],
            &["zsh", "--emulate", "sh", "-c", "rm -rf ~"],
        ] {
            match runs(&words(argv)) {
                Ok(Runs::Script { commands, .. }) => assert_eq!(commands, rm, "{argv:?}"),
                other => panic!("{argv:?}: {other:?}"),
            }
        }
        for argv in [
            &["bash", "-rcfile", "/dev/null", "-c", "rm -rf ~"][..],
            &["bash", "-init-file", "/dev/null", "-c", "rm -rf ~"],
            &["bash", "--rcfile", "/dev/null", "-c", "rm -rf ~"],
            &["sh", "-posix", "-c", "rm -rf ~"],
            &["bash", "-e", "--bogus", "-c", "rm -rf ~"],
            &["dash", "-y", "x", "-c", "rm -rf ~"],
            &["ksh", "-R", "x", "-c", "rm -rf ~"],
            &["mksh", "-T", "x", "-c", "rm -rf ~"],
            &["dash", "--posix", "-c", "rm -rf ~"],
            &["yash", "--rcfile=x", "-c", "rm -rf ~"],
        ] {
            assert!(runs(&words(argv)).is_err(), "{argv:?}");
        }
        assert_eq!(
            runs(&words(&["bash", "-posix", "x.sh"])).unwrap(),
            Runs::Itself
        );
    }

    /// In dash, after a pipe or after a redirection, `time` is the program
    /// /usr/bin/time: its options are looked through, not taken for the command.
    #[test]
    fn time_program_options() {
        for script in [
            "time -f %e rm -rf /",
            "true | time -f %e rm -rf /",
            ">/dev/null time -f %e rm -rf /",
            "time -p -p rm -rf /",
            "time -o /tmp/t -a rm -rf /",
            "time --format=%e -- rm -rf /",
            "time '-f' %e rm -rf /",
        ] {
            // Bash may run the option word itself: not understood there.
            assert!(parse(script).is_err(), "{script:?}");
            for c in parse_as(script, true).unwrap() {
                let mut argv = c;
                for _ in 0..4 {
                    assert_ne!(argv[0].text, "-p", "{script:?}");
                    assert_ne!(argv[0].text, "-f", "{script:?}");
                    match runs(&argv).unwrap_or_else(|e| panic!("{script:?}: {e}")) {
                        Runs::Wrapped(w) => argv = w,
                        _ => break,
                    }
                }
                if script.contains("rm") && argv[0].text != "true" {
                    assert_eq!(argv, words(&["rm", "-rf", "/"]), "{script:?}");
                }
            }
        }
        // For dash the program's options are looked through; `sh` may be
        // bash, which may run `-f`: not understood.
        assert!(runs(&words(&["sh", "-c", "time -f %e rm -rf /"])).is_err());
        let dash = runs(&words(&["dash", "-c", "time -f %e rm -rf /"])).unwrap();
        let Runs::Script { commands, .. } = dash else {
            panic!("{dash:?}")
        };
        assert_eq!(
            runs(&commands[0]).unwrap(),
            Runs::Wrapped(words(&["rm", "-rf", "/"]))
        );
        assert!(runs_all("time -x rm -rf /").is_err());
    }

    /// Dash has no `$'...'` and no `&>`: a script for `sh` (dash or bash)
    /// runs the commands of both readings; one for dash, dash's.
    #[test]
    fn dash_reads_some_bash_syntax_otherwise() {
        let rm = words(&["rm", "x"]);
        // Read both ways: `$'a\' ; rm x ; echo '` and ` \'` to bash.
        let ansi = "echo $'a\\' ; rm x ; echo ' \\'";
        for (shell, script) in [
            ("sh", ansi),
            ("dash", ansi),
            ("ash", ansi),
            ("sh", "echo &>/dev/null rm x"),
            ("dash", "echo &>/dev/null rm x"),
            ("sh", "echo $\"a\" ; rm x"),
        ] {
            match runs(&words(&[shell, "-c", script])) {
                Ok(Runs::Script { commands, .. }) => {
                    assert!(commands.contains(&rm), "{shell} {script:?}: {commands:?}")
                }
                other => panic!("{shell} {script:?}: {other:?}"),
            }
        }
        match runs(&words(&["bash", "-c", ansi])) {
            Ok(Runs::Script { commands, .. }) => assert!(!commands.contains(&rm)),
            other => panic!("{other:?}"),
        }
        // The same commands either way: reported once.
        for shell in ["sh", "dash", "bash"] {
            assert_eq!(
                runs(&words(&[shell, "-c", "ls &>/dev/null; ls"])).unwrap(),
                Runs::Script {
                    shell: shell.into(),
                    commands: vec![words(&["ls"]), words(&["ls"])],
                },
                "{shell}"
            );
        }
        // Dash runs the first line before it finds the second unterminated.
        for shell in ["sh", "dash"] {
            let argv = words(&[shell, "-c", "echo $'\\' ; rm x\necho ' y"]);
            match runs(&argv) {
                Ok(Runs::Script { commands, .. }) => assert!(commands.contains(&rm)),
                other => assert!(other.is_err(), "{other:?}"),
            }
        }
        assert!(runs(&words(&["dash", "-c", "cat <<<x"])).is_err());
        assert!(runs(&words(&["sh", "-c", "cat <<<x"])).is_err());
        assert!(runs(&words(&["bash", "-c", "cat <<<x"])).is_ok());
    }

    /// Git subcommands that take a command as an option, and configuration
    /// that names one; variables naming a command others run.
    #[test]
    fn git_options_and_settings_that_run_commands() {
        for argv in [
            &["git", "grep", "-Ovim", "x"][..],
            &["git", "grep", "-iO", "x"],
            &["git", "grep", "--open-files-in-pager=rm", "x"],
            &["git", "grep", "--open", "x"],
            &["git", "fetch", "--upload-pack=rm -rf /", "origin"],
            &["git", "ls-remote", "--upload-pack", "rm -rf /", "origin"],
            &["git", "pull", "--upload=rm -rf /"],
            &["git", "clone", "-u", "rm -rf /", "x:y", "d"],
            &["git", "clone", "--upload-pack=rm -rf /", "x:y"],
            &["git", "clone", "-c", "core.sshCommand=rm -rf /", "x:y"],
            &["git", "clone", "--template=./t", "x:y"],
            &["git", "push", "--receive-pack=rm -rf /", "origin"],
            &["git", "push", "--exec=rm -rf /", "origin"],
            &["git", "archive", "--remote=x:y", "--exec=rm -rf /", "HEAD"],
            &["git", "rebase", "--ex=rm -rf /", "main"],
            &["git", "config", "alias.x", "!rm -rf /"],
            &["git", "config", "--global", "core.pager", "rm -rf /"],
            &["git", "config", "--file", "user.name", "core.pager", "rm"],
            &["git", "config", "set", "credential.helper", "!rm -rf /"],
            &["git", "config", "--add", "diff.x.command", "rm"],
            &["git", "config", "--edit"],
            // A top-level option that takes the next word hides the subcommand.
            &[
                "git",
                "--attr-source",
                "grep",
                "ls-remote",
                "--upload-pack=rm",
                ".",
            ],
            &["git", "--shallow-file", "x", "fetch", "--upload-pack=rm"],
            &["git", "--unknown-option", "status"],
        ] {
            assert!(runs_through(argv).is_err(), "{argv:?}");
        }
        for argv in [
            &["git", "grep", "-n", "-i", "foo"][..],
            &["git", "-C", "d", "--no-pager", "log", "--oneline"],
            &["git", "--git-dir=x", "status"],
            &["git", "fetch", "--prune", "origin"],
            &["git", "clone", "--depth", "1", "https://x/y", "d"],
            &["git", "push", "-u", "origin", "main"],
            &["git", "config", "user.name", "A B"],
            &["git", "config", "--global", "User.Email", "a@b"],
            &["git", "config", "core.pager"],
            &["git", "config", "--get", "alias.x", "y"],
            &["git", "config", "--unset", "core.pager"],
            &["git", "config", "--list"],
        ] {
            assert_eq!(runs_through(argv).unwrap(), Runs::Itself, "{argv:?}");
        }
        // Set before the command, a literal command line is judged itself.
        for (script, runs) in [
            ("EDITOR='rm -rf /' git commit", "rm"),
            ("PAGER=./x git log", "./x"),
            ("GIT_SEQUENCE_EDITOR=./x git rebase -i main", "./x"),
        ] {
            let commands = parse(script).unwrap();
            assert_eq!(commands[0][0].text, runs, "{script:?}");
        }
        not_understood(&[
            "export VISUAL=./x; git commit",
            "GIT_PROXY_COMMAND=./x git fetch",
            "SSH_ASKPASS=./x ssh h",
            "JAVA_TOOL_OPTIONS=-javaagent:x.jar java -jar y.jar",
            "env EDITOR=./x git commit",
            ": ${PAGER:=./x}",
        ]);
        // Only where a script or `env` sets them, not in the environment.
        assert!(!runs_code("EDITOR") && !runs_code("PAGER"));
        assert!(runs_code("GIT_SEQUENCE_EDITOR") && runs_code("GIT_TEMPLATE_DIR"));
    }

    /// Programs that choose what to run by argv[0], or run a command.
    #[test]
    fn argv0_loaders_and_more_runners() {
        for argv in [
            &["exec", "-a", "ls", "sh", "-c", "rm -rf /"][..],
            &["exec", "-a", "rm", "busybox", "-rf", "/"],
            &["exec", "-la", "rm", "busybox", "-rf", "/"],
            &[
                "/lib64/ld-linux-x86-64.so.2",
                "--preload",
                "./x.so",
                "/bin/ls",
            ],
            &["ld.so", "--argv0", "rm", "/bin/busybox", "-rf", "/"],
            &["ld.so", "--library-path", ".", "/bin/ls"],
            &["perf", "record", "rm", "-rf", "/"],
            &["perf", "stat", "--", "rm"],
            &["tmux", "new-session", "rm -rf /"],
            &["screen", "-dm", "rm", "-rf", "/"],
            &["hyperfine", "rm -rf /"],
            &["entr", "-s", "rm -rf /"],
        ] {
            let r = runs_through(argv);
            assert!(r.is_err(), "{argv:?}: {r:?}");
        }
        for (argv, wrapped) in [
            (
                &["/lib64/ld-linux-x86-64.so.2", "/bin/rm", "-rf", "/"][..],
                &["/bin/rm", "-rf", "/"][..],
            ),
            (&["ld-musl-x86_64.so.1", "--inhibit-cache", "rm"], &["rm"]),
            (&["eatmydata", "rm", "-rf", "/"], &["rm", "-rf", "/"]),
            (&["sshpass", "-p", "pw", "ssh", "h"], &["ssh", "h"]),
            (&["sshpass", "-ppw", "-e", "rm"], &["rm"]),
            (&["systemd-inhibit", "--why=x", "rm"], &["rm"]),
            (&["entr", "-r", "rm", "x"], &["rm", "x"]),
            (&["exec", "-c", "rm"], &["rm"]),
        ] {
            assert_eq!(
                runs(&words(argv)).unwrap(),
                Runs::Wrapped(words(wrapped)),
                "{argv:?}"
            );
        }
        assert_eq!(runs(&words(&["perf", "report"])).unwrap(), Runs::Itself);
        assert!(runs(&words(&["perf", "report", "--objdump=./x"])).is_err());
        assert!(runs(&words(&["perf", "annotate", "--addr2line", "./x"])).is_err());
        for script in ["=rm -rf /x", "echo $=x", "x=${~y}"] {
            assert!(runs(&words(&["zsh", "-c", script])).is_err(), "{script:?}");
        }
        assert!(runs(&words(&["zsh", "-c", "ls -l; echo a=b"])).is_ok());
        assert!(runs(&words(&["zsh", "-c", "[ \"$x\" = y ] && make"])).is_ok());
        // Alone, tmux starts `$SHELL`, which the script may have chosen.
        assert!(runs(&words(&["tmux"])).is_err());
        assert_eq!(runs(&words(&["tmux", "--version"])).unwrap(), Runs::Itself);
    }

    /// An expansion that cannot make a command run is understood where
    /// it is one word: find's starting point, a path after `git submodule
    /// update`; after `HOME` changed, only a shell run as the command counts.
    #[test]
    fn expansions_that_run_nothing() {
        understood(&[
            "find \"$dir\" -name '*.rs'",
            "find . -newer \"$f\" -print",
            "git submodule update --init \"$p\"",
            "git bisect start \"$bad\" \"$good\"",
            "export HOME=/tmp/x; pip install sh",
            "HOME=/x; echo bash",
            "HOME=/x; env A=1 make",
        ]);
        not_understood(&[
            "find \"$dir\" -name x \\;",
            "find \"$a\" \"$b\"",
            "find $dir -name x",
            "find . -name *.rs",
            "find \"$@\"",
            "find \"$x\" rm {} +",
            "git submodule \"$s\" x",
            "git bisect \"$s\" x",
            "git rebase \"$base\"",
            "HOME=/x; nice bash -lc :",
            "HOME=/x; env A=1 /bin/sh -l",
            "HOME=/x; fish",
        ]);
        assert!(runs(&words(&["env", "HOME=/x", "pip", "install", "sh"])).is_ok());
        assert!(runs(&words(&["env", "HOME=/x", "nice", "sh", "-l"])).is_err());
        assert!(runs(&words(&["env", "HOME=/x", "env", "HOME=/y", "sh", "-l"])).is_err());
        // A long chain of them is checked in linear time, not exponential.
        let mut chain = "env HOME=/x ".repeat(2000);
        chain.push_str("ls");
        let start = std::time::Instant::now();
        let _ = runs_all(&chain);
        let argv: Vec<&str> = chain.split(' ').collect();
        let _ = runs_through(&argv);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
