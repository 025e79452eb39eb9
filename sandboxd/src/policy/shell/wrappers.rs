//! What one command runs beyond itself: the checks behind `runs`, the
//! wrappers it looks through (`env`, `nice`, `timeout`, ...) with their
//! options, and command names that hide another program
//! (`/proc/self/exe`, the dynamic loader).

use super::builtins::{names_and_arithmetic, OPAQUE, OPAQUE_WITH};
use super::runners::runs_unseen;
use super::shells::{shell_script, OTHER_SHELLS, SHELLS};
use super::variables::{assignment_runs_code, code_variable, sets_startup_dir, startup_dir_why};
use super::{basename, nu, NotUnderstood, Runs, Word, MAX_NESTING};

/// [`runs`](super::runs); without `startup`, `env HOME=...` is not checked for a shell
/// behind it (as [`runs_a_shell`] does that itself, which would otherwise
/// recurse through a chain of such `env`s again at every step).
pub(super) fn runs_checking(argv: &[Word], startup: bool) -> Result<Runs, NotUnderstood> {
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

/// The command runs a shell, itself or through wrappers [`runs`](super::runs) looks
/// through (`nice bash -l`); not `pip install sh`. A wrapper not looked
/// through is not understood anyway.
pub(super) fn runs_a_shell(words: &[Word]) -> bool {
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
