//! What a person is asked about and answers: the answer ([`Reply`]), what
//! an approval grants ([`Grant`]), and which asked command parts a grant
//! covers, apart from how questions are asked and answers kept.

use super::sessions::MAX_GRANT_BYTES;
use crate::policy::shell;
use crate::policy::CommandPart;
use std::path::PathBuf;

/// A person's answer, as the client relays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Once,
    /// For the rest of the `agent` session (network: the rest of the exec).
    Session,
    /// Once, and saved as an allow rule where the profile allows user rules.
    Always,
    Deny,
}

impl Reply {
    pub fn parse(word: &str) -> Option<Reply> {
        match word {
            "approve" => Some(Reply::Once),
            "approve-session" => Some(Reply::Session),
            "approve-always" => Some(Reply::Always),
            "deny" => Some(Reply::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reply::Once => "approve",
            Reply::Session => "approve-session",
            Reply::Always => "approve-always",
            Reply::Deny => "deny",
        }
    }
}

/// Something approved: a command prefix, or one part of an escalation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grant {
    /// These words; and commands starting with them, where such a command
    /// runs nothing beyond itself (see [`Grant::covers`]).
    Command(Vec<String>),
    Write(PathBuf),
    Network(String),
    Unsandboxed,
}

impl Grant {
    /// A command grant covers a literal part with the same words, or one
    /// that starts with them and runs only itself. A shell script, a
    /// wrapped command or anything not understood may run what a later
    /// word says (`sh -c 'for c in "$@"; do $c; done' sh true 'rm -rf /'`),
    /// so approving it does not approve more words.
    pub(super) fn covers(&self, asked: &Asked) -> bool {
        let part = &asked.part;
        match self {
            Grant::Command(words) => {
                part.literal
                    && (part.words == *words
                        || (asked.runs_only_itself && part.words.starts_with(words)))
            }
            _ => false,
        }
    }

    /// Bytes the grant takes in memory, about: what bounds a session's.
    pub(super) fn bytes(&self) -> usize {
        let heap = match self {
            Grant::Command(words) => words
                .iter()
                .map(|w| w.len() + std::mem::size_of::<String>())
                .sum(),
            Grant::Write(p) => p.as_os_str().len(),
            Grant::Network(d) => d.len(),
            Grant::Unsandboxed => 0,
        };
        std::mem::size_of::<Grant>() + heap
    }

    /// Whether a session may remember it: see [`MAX_GRANT_BYTES`].
    pub(super) fn rememberable(&self) -> bool {
        self.bytes() <= MAX_GRANT_BYTES
    }

    /// The grant as a person reads it.
    pub fn describe(&self) -> String {
        match self {
            Grant::Command(w) => format!("`{}`", shell::command_line(w)),
            Grant::Write(p) => format!("write access to {}", p.display()),
            Grant::Network(d) => format!("network access to {d}"),
            Grant::Unsandboxed => "an unsandboxed run (the embedded `full` profile's file system \
                and network view; still its own pid namespace, limits and audit)"
                .to_string(),
        }
    }
}

/// Whether literal `words` run nothing beyond themselves, as far as
/// [`shell::runs`] sees: no script, wrapped command or unknown part.
fn runs_only_itself(words: &[String]) -> bool {
    let argv: Vec<shell::Word> = words.iter().map(|w| shell::Word::literal(w)).collect();
    !argv.is_empty() && matches!(shell::runs(&argv), Ok(shell::Runs::Itself))
}

/// A command part to be asked about unless a grant covers it, judged once
/// (and outside any lock) for [`Grant::covers`].
pub(super) struct Asked {
    pub(super) part: CommandPart,
    runs_only_itself: bool,
}

impl Asked {
    pub(super) fn new(part: CommandPart) -> Asked {
        let runs_only_itself = part.literal && runs_only_itself(&part.words);
        Asked {
            part,
            runs_only_itself,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::prefix;
    use super::*;
    use crate::policy::{
        command_parts, Decision, Located, Origin, PolicyStore, Verdict, NO_LOOKUP,
    };

    fn part(words: &[&str], literal: bool) -> Asked {
        Asked::new(CommandPart {
            words: words.iter().map(|w| w.to_string()).collect(),
            shown: words.join(" "),
            literal,
            decision: Decision {
                verdict: Verdict::Prompt,
                rule: String::new(),
                reason: String::new(),
            },
        })
    }

    #[test]
    fn replies() {
        for w in ["approve", "approve-session", "approve-always", "deny"] {
            assert_eq!(Reply::parse(w).map(Reply::as_str), Some(w));
        }
        assert_eq!(Reply::parse("yes"), None);
    }

    #[test]
    fn a_command_grant_covers_literal_commands_it_prefixes() {
        let g = Grant::Command(prefix(&["rm", "x"]));
        assert!(g.covers(&part(&["rm", "x"], true)));
        assert!(g.covers(&part(&["rm", "x", "-v"], true)));
        assert!(!g.covers(&part(&["rm", "y"], true)));
        assert!(!g.covers(&part(&["rm"], true)));
        assert!(!g.covers(&part(&["rm", "x"], false)));
        assert!(!Grant::Unsandboxed.covers(&part(&["rm", "x"], true)));
    }

    /// A grant for words that run more than themselves (a script, a
    /// wrapper, something not understood) covers those words only: a later
    /// argument may be what the script runs.
    #[test]
    fn a_command_grant_for_a_script_covers_only_those_words() {
        let store = PolicyStore::load(None, true).unwrap();
        let mut p = store.get("workspace").unwrap().clone();
        p.commands.forbidden.push(Located {
            value: prefix(&["rm"]),
            origin: Origin {
                file: "test".into(),
                line: 1,
            },
        });
        let asked = |argv: &[&str]| -> Vec<Asked> {
            command_parts(&p, &prefix(argv), NO_LOOKUP)
                .into_iter()
                .filter(|p| p.decision.verdict == Verdict::Prompt)
                .map(Asked::new)
                .collect()
        };
        // The loop is not understood: the whole argv is asked, and approved.
        let script = ["sh", "-c", "for c in \"$@\"; do $c; done", "sh", "true"];
        let approved = asked(&script);
        assert_eq!(approved.len(), 1);
        let g = Grant::Command(approved[0].part.words.clone());
        let with_rm = [&script[..], &["rm -rf /"]].concat();
        for (argv, covered) in [(&script[..], true), (&with_rm[..], false)] {
            let parts = asked(argv);
            assert!(!parts.is_empty(), "{argv:?}");
            assert_eq!(parts.iter().all(|p| g.covers(p)), covered, "{argv:?}");
        }
        for (grant, words, covered) in [
            (
                &["sh"][..],
                &["sh", "-c", "for c in x; do $c; done"][..],
                false,
            ),
            (&["env"], &["env", "rm", "-rf", "/"], false),
            (&["bash", "-c", "make"], &["bash", "-c", "make"], true),
            (&["bash", "-c", "make"], &["bash", "-c", "make", "x"], false),
            (&["sh", "build.sh"], &["sh", "build.sh", "--fast"], true),
            (&["make"], &["make", "all"], true),
        ] {
            assert_eq!(
                Grant::Command(prefix(grant)).covers(&part(words, true)),
                covered,
                "{grant:?} {words:?}"
            );
        }
    }
}
