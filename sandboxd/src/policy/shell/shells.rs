//! The shells: those whose `-c` scripts are read and those whose are not,
//! the options each takes before its script, and how each reads it (as
//! bash, as POSIX shells do, or both ways).

use super::parser::{both_readings, parse_as};
use super::{nu, NotUnderstood, Runs, Word};

/// Shells whose `-c SCRIPT` is parsed (by the basename of `argv[0]`).
pub(super) const SHELLS: &[&str] = &[
    "sh", "bash", "rbash", "dash", "zsh", "ksh", "ksh93", "mksh", "lksh", "oksh", "pdksh", "ash",
    "posh", "yash",
];

/// Shells whose scripts are not parsed: given an option (`-c`, fish's
/// `--command`, `-C`), not understood.
pub(super) const OTHER_SHELLS: &[&str] = &[
    "csh", "tcsh", "fish", "hush", "rc", "es", "xonsh", "elvish", "nu", "ion",
];

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
pub(super) fn shell_script(name: &str, argv: &[Word]) -> Result<Runs, NotUnderstood> {
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
