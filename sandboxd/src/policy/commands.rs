//! `[commands]` rules: how an argv is judged, through the shells and
//! wrappers it runs, to the command parts an approval is asked about, and
//! which rule decides each.

use super::model::{ApprovalMode, Profile};
use super::narrow::rule;
use super::shell::{self, Runs, Word};
use super::{Decision, Verdict};

/// Shells and wrappers nested deeper than this are not looked into.
const MAX_COMMAND_DEPTH: usize = 8;

/// `[commands]` prefix rules: forbidden > prompt > allow; no match falls back
/// on the approval mode (prompt under `untrusted`, allow otherwise). In a
/// forbidden or prompt rule the command name also matches by its basename
/// (`/bin/rm` is `rm`); an allow rule's only as written (`./git` or
/// `/home/u/bin/ls`, which the sandbox may have made, is not `git` or `ls`),
/// and not where `lookup` says the bare name may find such a program (a
/// PATH through the workspace), nor behind words that may set PATH.
/// A shell's
/// `-c` script is judged on each of its simple commands, a wrapper (`env`,
/// `nohup`, `timeout`, ...) on the command it runs as well as on its own
/// argv's rules, and the strictest decision wins. What cannot be understood
/// counts as prompt, unless no command at all could need more than allow.
pub fn check_command(profile: &Profile, argv: &[String], lookup: Lookup) -> Decision {
    command_parts(profile, argv, lookup)
        .into_iter()
        .map(|p| p.decision)
        .reduce(stricter)
        .unwrap_or_else(|| fallback(profile, &shell::command_line(argv)))
}

/// One command an argv runs, judged on its own: the argv itself when a rule
/// names it, the command behind a wrapper, or one simple command of a `-c`
/// script. An approval is asked, remembered and amended per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPart {
    /// The words as written (an unexpanded one as in the script).
    pub words: Vec<String>,
    /// The words as one command line for people (quoted where needed).
    pub shown: String,
    /// Every word is known before the shell runs (nothing left to expand).
    pub literal: bool,
    pub decision: Decision,
}

/// Why a bare command name may run a program a sandbox could have made
/// (where the exec's PATH finds it), or `None`: an allow rule is not
/// applied to such a name. [`NO_LOOKUP`] where nothing is known of PATH.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Judges command names on the rules alone.
pub const NO_LOOKUP: Lookup<'static> = &|_| None;

/// The parts [`check_command`] judges `argv` on; never empty. Its decision
/// is the strictest of theirs (the first on a tie).
pub fn command_parts(profile: &Profile, argv: &[String], lookup: Lookup) -> Vec<CommandPart> {
    let words: Vec<Word> = argv.iter().map(|a| Word::literal(a)).collect();
    let mut parts = Vec::new();
    let size: usize = argv.iter().map(String::len).sum();
    let mut budget = (COMMAND_READING_FACTOR * size).max(MIN_COMMAND_READING);
    judge(profile, &words, lookup, 0, &mut budget, &mut parts);
    parts
}

/// Bytes of words the judging of one argv may read, as a multiple of the
/// argv's own (at least [`MIN_COMMAND_READING`]): scripts nested in scripts,
/// each read more than one way, would otherwise multiply the work.
const COMMAND_READING_FACTOR: usize = 4;
const MIN_COMMAND_READING: usize = 64 << 10;

fn judge(
    profile: &Profile,
    words: &[Word],
    lookup: Lookup,
    depth: usize,
    budget: &mut usize,
    parts: &mut Vec<CommandPart>,
) {
    let shown = shell::words_line(words);
    let part = |decision| CommandPart {
        words: words.iter().map(|w| w.text.clone()).collect(),
        shown: shown.clone(),
        literal: words.iter().all(|w| w.literal),
        decision,
    };
    match words.first() {
        None => return parts.push(part(fallback(profile, &shown))),
        Some(w) if !w.literal => {
            let why = format!("script not understood: `{}` in command position", w.text);
            return parts.push(part(not_understood(profile, &why, &shown)));
        }
        Some(_) => {}
    }
    let before = parts.len();
    // A rule naming the command itself applies however deep it is.
    let own = rule_match(profile, words, &shown, lookup);
    let ruled = own.is_some();
    if let Some(own) = own {
        parts.push(part(own));
    }
    if depth > MAX_COMMAND_DEPTH {
        let why = format!(
            "script not understood: shells and wrappers nested deeper than {MAX_COMMAND_DEPTH}"
        );
        return parts.push(part(not_understood(profile, &why, &shown)));
    }
    let size: usize = words.iter().map(|w| w.text.len()).sum();
    match budget.checked_sub(size) {
        Some(left) => *budget = left,
        None => {
            let why = "script not understood: more to read than the command line holds, nested";
            return parts.push(part(not_understood(profile, why, &shown)));
        }
    }
    // What this command runs finds bare names through a PATH it may set.
    let sets_path = words[1..].iter().find(|w| may_set_path(&w.text));
    let unknown_path = |name: &str| {
        sets_path.map(|w| format!("`{name}` is looked up in a PATH that `{}` may set", w.text))
    };
    let inner: Lookup = if sets_path.is_some() {
        &unknown_path
    } else {
        lookup
    };
    let runs = shell::runs(words);
    if !ruled && matches!(runs, Ok(Runs::Wrapped(_) | Runs::Script { .. })) {
        if let Some(d) = doubted_runner(profile, words, &shown, lookup) {
            parts.push(part(d));
        }
    }
    match runs {
        Err(e) => parts.push(part(not_understood(profile, &e.0, &shown))),
        Ok(Runs::Itself) => {}
        Ok(Runs::Wrapped(w)) => judge(profile, &w, inner, depth + 1, budget, parts),
        Ok(Runs::Script { shell, commands }) => {
            for c in &commands {
                let from = parts.len();
                judge(profile, c, inner, depth + 1, budget, parts);
                for p in &mut parts[from..] {
                    p.decision
                        .rule
                        .push_str(&format!(" (in {shell} -c script)"));
                }
            }
        }
    }
    if parts.len() == before {
        parts.push(part(fallback(profile, &shown)));
    }
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Prompt => 1,
        Verdict::Deny => 2,
    }
}

/// The stricter of two decisions; the first on a tie.
fn stricter(a: Decision, b: Decision) -> Decision {
    if rank(b.verdict) > rank(a.verdict) {
        b
    } else {
        a
    }
}

/// How a rule's tokens meet a command's words.
enum Prefix {
    Yes,
    No,
    /// Undecided: the word at this index is not known until the shell expands it.
    Unknown(usize),
}

/// Whether `words` start with `rule`; `by_basename`: a command name given as
/// a path matches a rule naming it bare.
fn prefix(rule: &[String], words: &[Word], by_basename: bool) -> Prefix {
    for (i, r) in rule.iter().enumerate() {
        let Some(w) = words.get(i) else {
            return Prefix::No;
        };
        if !w.literal {
            return Prefix::Unknown(i);
        }
        let hit = w.text == *r
            || (by_basename && i == 0 && !r.contains('/') && shell::basename(&w.text) == r);
        if !hit {
            return Prefix::No;
        }
    }
    Prefix::Yes
}

/// Whether a word may assign PATH (`PATH=...`, `export PATH`, a script
/// doing either, `${PATH:=...}`, `printf -v P''ATH`): only `$PATH` and
/// `${PATH}` surely read it. Quotes and backslashes are taken out first,
/// and a `$'...'` string may spell anything. Errs towards yes (`echo PATH`
/// counts).
fn may_set_path(word: &str) -> bool {
    if word.contains("$'") {
        return true;
    }
    let word: String = word
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    let b = word.as_bytes();
    let ident = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    word.match_indices("PATH").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 4);
        if before.as_ref().is_some_and(ident) || after.is_some_and(ident) {
            return false;
        }
        let read = before == Some(b'$')
            || (before == Some(b'{') && i >= 2 && b[i - 2] == b'$' && after == Some(&b'}'));
        !read
    })
}

/// The strictest rule matching `words`; a forbidden or prompt rule that an
/// unexpanded word might match makes it a prompt. An allow rule matching a
/// bare name that `lookup` doubts leaves the decision to the approval mode.
fn rule_match(profile: &Profile, words: &[Word], shown: &str, lookup: Lookup) -> Option<Decision> {
    let c = &profile.commands;
    let mut unknown = None;
    // An allow rule matched a name that may find a program the sandbox made.
    let mut doubted: Option<(String, String)> = None;
    let mut looked: Option<Option<String>> = None;
    for (verdict, key, rules) in [
        (Verdict::Deny, "commands.forbidden", &c.forbidden),
        (Verdict::Prompt, "commands.prompt", &c.prompt),
        (Verdict::Allow, "commands.allow", &c.allow),
    ] {
        if verdict == Verdict::Allow && unknown.is_some() {
            return unknown;
        }
        for r in rules {
            let named = format!("{} {key} {:?}", r.origin, r.value);
            let hit = |named| Decision {
                verdict,
                rule: named,
                reason: format!("`{shown}` starts with `{}`", shell::command_line(&r.value)),
            };
            match prefix(&r.value, words, verdict != Verdict::Allow) {
                Prefix::Yes if verdict == Verdict::Allow => {
                    match looked.get_or_insert_with(|| lookup(&words[0].text)) {
                        Some(why) => {
                            doubted.get_or_insert((named, why.clone()));
                        }
                        None => return Some(hit(named)),
                    }
                }
                Prefix::Yes => return Some(hit(named)),
                Prefix::Unknown(i) if verdict != Verdict::Allow && unknown.is_none() => {
                    unknown = Some(Decision {
                        verdict: Verdict::Prompt,
                        rule: format!(
                            "commands: script not understood: `{}` may expand to match {named}",
                            words[i].text
                        ),
                        reason: format!(
                            "`{shown}` may start with `{}` once expanded",
                            shell::command_line(&r.value)
                        ),
                    });
                }
                Prefix::Unknown(_) | Prefix::No => {}
            }
        }
    }
    let (named, why) = doubted?;
    Some(
        doubted_decision(
            profile,
            shown,
            &format!("{named} not applied: {why}"),
            &format!("{why}, so {named} is not applied"),
        )
        .unwrap_or_else(|| fallback(profile, shown)),
    )
}

/// The approval mode's decision on `shown`, with why a rule or program was
/// doubted; `None` where that mode allows anyway.
fn doubted_decision(profile: &Profile, shown: &str, note: &str, why: &str) -> Option<Decision> {
    let f = fallback(profile, shown);
    (f.verdict != Verdict::Allow).then(|| Decision {
        rule: format!("{} ({note})", f.rule),
        reason: format!("`{shown}`: {why}"),
        ..f
    })
}

/// A shell or wrapper that `lookup` doubts (`./bash -c ls`, or `env` found
/// in the workspace): it runs instead of what it is asked to, so it is the
/// approval mode's to decide, whatever rules allow the command it wraps.
/// `None` where that mode allows anyway.
fn doubted_runner(
    profile: &Profile,
    words: &[Word],
    shown: &str,
    lookup: Lookup,
) -> Option<Decision> {
    let why = lookup(&words[0].text)?;
    doubted_decision(profile, shown, &why, &why)
}

/// No rule matched: the approval mode decides.
fn fallback(profile: &Profile, shown: &str) -> Decision {
    let a = &profile.approval;
    let verdict = if a.value == ApprovalMode::Untrusted {
        Verdict::Prompt
    } else {
        Verdict::Allow
    };
    Decision {
        verdict,
        rule: rule(&a.origin, "approval", a.value.as_str()),
        reason: format!("no [commands] rule matches `{shown}`"),
    }
}

/// A command whose effect cannot be known counts as prompt, except under a
/// profile where every command is allowed anyway (no forbidden or prompt
/// rule, approval not `untrusted`).
fn not_understood(profile: &Profile, why: &str, shown: &str) -> Decision {
    let c = &profile.commands;
    let a = &profile.approval;
    if c.forbidden.is_empty() && c.prompt.is_empty() && a.value != ApprovalMode::Untrusted {
        return Decision {
            verdict: Verdict::Allow,
            rule: rule(&a.origin, "approval", a.value.as_str()),
            reason: format!("`{shown}`: {why}, but the profile allows every command"),
        };
    }
    Decision {
        verdict: Verdict::Prompt,
        rule: format!("commands: {why}"),
        reason: format!("`{shown}`: {why}"),
    }
}
