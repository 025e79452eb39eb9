//! Network policy for sandboxes in mode `allowlist`: what a name, port,
//! method and path may do ([`decide`], pure), which addresses may be dialled
//! ([`addr`], the SSRF guard), how names are resolved by the daemon itself
//! ([`resolve`]) and the per-exec [`session`] the proxy and the resolver serve.

pub mod addr;
pub mod decide;
pub mod resolve;
pub mod session;

pub use decide::{normalize_host, Block, Host, NetDecision, NetPolicy};
pub use resolve::Resolver;
pub use session::{NetQuery, NetRecord, Phase, Session};

/// Port of the HTTP proxy on 127.0.0.1 inside each allowlist sandbox.
pub const HTTP_PROXY_PORT: u16 = 3128;
/// Port of the SOCKS5 proxy on 127.0.0.1 inside each allowlist sandbox.
pub const SOCKS_PORT: u16 = 1080;
/// Port of the DNS server (UDP and TCP) on 127.0.0.1 inside each allowlist sandbox.
pub const DNS_PORT: u16 = 53;
