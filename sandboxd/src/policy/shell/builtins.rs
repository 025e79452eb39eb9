//! Shell builtins that run text as code (`eval`, `source`, `hash -p`, ...),
//! and those that take variable names or arithmetic, in which bash
//! evaluates a subscript (`printf -v 'a[$(rm -rf /)]' x` runs rm).

use super::parser::is_name;
use super::variables::{assignment_runs_code, chooses_code, code_variable};
use super::{nu, NotUnderstood, Word};

/// Builtins that run a string or a file the parser cannot see into.
pub(super) const OPAQUE: &[&str] = &["eval", "trap", "alias", "source", ".", "fc"];

/// Builtins that, given one of these options, run a string as code, load
/// code, or give a command another program (`hash -p /bin/rm ls`).
pub(super) const OPAQUE_WITH: &[(&str, &str)] = &[
    ("hash", "p"),
    ("enable", "f"),
    ("compgen", "CF"),
    ("complete", "CF"),
    ("mapfile", "C"),
    ("readarray", "C"),
];

/// Checks the bash builtins that take variable names or arithmetic. Bash
/// evaluates a subscript in a name (`printf -v 'a[$(rm -rf /)]' x` runs
/// rm) and, in arithmetic, the value of every name it meets, which may hold
/// such a subscript. Understood only where each name is a plain one, known
/// before the shell runs, and no arithmetic names a variable; integer
/// (`-i`) and reference (`-n`) variables are not understood, as assigning
/// or expanding them does the same.
pub(super) fn names_and_arithmetic(name: &str, args: &[Word]) -> Result<(), NotUnderstood> {
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

/// Arithmetic of numbers only: no name whose value would be evaluated.
fn is_constant(t: &str) -> bool {
    t.chars()
        .all(|c| c.is_ascii_digit() || " \t\n+-*/%<>=!&|^~?:,()".contains(c))
}

/// An expansion that stays one word: all in double quotes (without `$@`),
/// or a special parameter that expands to a number.
pub(super) fn is_one_field(w: &Word) -> bool {
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
