//! Policy is data: profiles are parsed once into typed structs ([`model`]) by
//! [`load`], and every decision is a pure function returning a [`Decision`] that
//! names the rule that made it. Enforcement lives elsewhere.

mod check;
mod commands;
pub mod domain;
pub mod load;
pub mod model;
pub mod narrow;
mod render;
pub mod shell;
pub(crate) mod tree;
pub mod user;
pub mod values;

pub use check::{check_path, check_url, Access};
pub use commands::{check_command, command_parts, CommandPart, Lookup, NO_LOOKUP};
pub use load::{PolicyError, PolicyStore};
pub use model::*;
pub use narrow::{resolve, ExecContext, Narrowing};

/// What a decision says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Prompt,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Prompt => "prompt",
            Verdict::Deny => "deny",
        }
    }
}

/// A decision and the rule that made it, e.g. `workspace.toml:9 filesystem.deny_read "{home}/.ssh"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: String,
    pub reason: String,
}

/// A request the policy refuses; `rule` names the profile rule it would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (rule: {rule})")]
pub struct Refusal {
    pub message: String,
    pub rule: String,
}
