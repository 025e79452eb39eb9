//! Just enough shell syntax to apply `[commands]` rules to what a command
//! really runs: the simple commands of a `sh -c` script (across pipelines,
//! lists, subshells, brace groups and command substitutions), and the command
//! behind a wrapper such as `env` or `nohup`.
//!
//! The parser understands a small, safe subset and says so when a script
//! leaves it (loops, functions, here-documents, `eval`, ...): a caller must
//! then not pretend to know what the script runs.
//!
//! In parts: `quote` shows words back as one command line; `parser` reads
//! script text into simple commands; `wrappers` says what one command runs,
//! drawing on what `shells`, `builtins`, `variables` and `runners` know.

mod builtins;
mod parser;
mod quote;
mod runners;
mod shells;
#[cfg(test)]
mod tests;
mod variables;
mod wrappers;

pub use quote::{command_line, quote, words_line};
pub use variables::runs_code;

use parser::parse_as;
use wrappers::runs_checking;

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

/// Why a script (or a wrapper's arguments) is outside what this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotUnderstood(pub String);

fn nu<T>(why: impl Into<String>) -> Result<T, NotUnderstood> {
    Err(NotUnderstood(why.into()))
}

/// Deepest nesting of `( )`, `$( )` and backticks a script may use.
const MAX_NESTING: usize = 16;

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
