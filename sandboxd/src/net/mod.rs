//! Network policy for sandboxes in mode `allowlist`: what a name, port,
//! method and path may do ([`decide`], pure), which addresses may be dialled
//! ([`addr`], the SSRF guard), how names are resolved by the daemon itself
//! ([`resolve`]) and the per-exec [`session`] the proxy and the resolver serve,
//! on the [`listen`]ers bound inside the sandbox.

pub mod addr;
pub mod decide;
pub mod listen;
pub mod resolve;
pub mod secrets;
pub mod session;

pub use decide::{normalize_host, Block, Host, NetDecision, NetPolicy};
pub use resolve::Resolver;
pub use secrets::SecretStore;
pub use session::{NetQuery, NetRecord, Phase, Session};

/// Port of the HTTP proxy on 127.0.0.1 inside each allowlist sandbox.
pub const HTTP_PROXY_PORT: u16 = 3128;
/// Port of the SOCKS5 proxy on 127.0.0.1 inside each allowlist sandbox.
pub const SOCKS_PORT: u16 = 1080;
/// Port of the DNS server (UDP and TCP) on 127.0.0.1 inside each allowlist sandbox.
pub const DNS_PORT: u16 = 53;

/// What the network side of every exec shares: made once at start.
#[derive(Debug, Clone)]
pub struct Services {
    pub resolver: std::sync::Arc<Resolver>,
    /// The inspection CA, or why there is none (inspecting execs are then refused).
    pub inspector: Result<std::sync::Arc<crate::tls::Inspector>, String>,
    pub secrets: std::sync::Arc<SecretStore>,
}
