//! sandboxd: a root daemon that runs commands confined, as their caller.
//!
//! Rooms: [`policy`] decides (pure), [`backend`] enforces (kernel), [`supervisor`]
//! watches one running sandbox, [`api`] serves the gRPC API, [`identity`] says who
//! is calling, [`registry`] tracks what runs, [`plan`] turns a policy into a sandbox,
//! [`programs`] finds what a bare command name runs there, [`gitwatch`]
//! what it left for git on the host, [`audit`] keeps the
//! tamper-evident record of it all. For network mode `allowlist`, [`net`]
//! decides and resolves, [`proxy`] and [`dns`] serve inside each sandbox,
//! [`tls`] inspects HTTPS. [`quota`] keeps one user from
//! taking the descriptors every user's connections share; [`outstanding`]
//! counts the work the daemon waits for at exit.

pub mod api;
pub mod audit;
pub mod backend;
pub mod config;
pub mod dns;
pub mod fair;
pub mod gitwatch;
pub mod identity;
pub mod net;
pub mod outstanding;
pub mod plan;
pub mod policy;
pub mod programs;
pub mod proxy;
pub mod quota;
pub mod registry;
pub mod supervisor;
pub mod tls;
