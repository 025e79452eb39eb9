//! Tests of what commands run, through `parse` and `runs` as the policy
//! calls them: shells and their options, wrappers, builtins, variables
//! that choose code, and programs that run commands.

use super::parser::parse_as;
use super::*;

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
