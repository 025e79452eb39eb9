//! Variables that decide what runs: those a shell, the loader, git or an
//! interpreter takes code from, those whose value is a command line
//! another program runs, and `HOME` and `ZDOTDIR`, where a shell finds
//! its startup files.

use super::{nu, NotUnderstood};

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
pub(super) const COMMAND_VALUED: &[&str] = &[
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
pub(super) fn assignment_runs_code(var: &str, value: Option<&str>) -> bool {
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
pub(super) fn chooses_code(var: &str) -> bool {
    runs_code(var) || CHOSEN_COMMANDS.contains(&var)
}

pub(super) fn code_variable<T>(var: &str) -> Result<T, NotUnderstood> {
    nu(format!(
        "an assignment to `{var}`, from which a shell takes code to run"
    ))
}

/// `HOME=...` or `ZDOTDIR=...` (as `NAME=`, `NAME+=` or the bare name, as
/// `export`, `read` and such take it): where shells find startup files
/// (`~/.bashrc`, `~/.profile`, zsh's `$ZDOTDIR/.zshenv`).
pub(super) fn sets_startup_dir(t: &str) -> bool {
    let var = t.split(['=', '+']).next().unwrap_or(t);
    matches!(var, "HOME" | "ZDOTDIR")
}

pub(super) fn startup_dir_why() -> String {
    "a shell started after `HOME` or `ZDOTDIR` changed, which may read startup files from there"
        .to_string()
}
