//! Network policy for sandboxes in mode `allowlist`: what a name, port,
//! method and path may do ([`decide`], pure, on host names normalised in
//! `host`; `path` finds the paths no glob can judge), which addresses may be
//! dialled ([`addr`], the SSRF guard), how names are resolved by the daemon
//! itself ([`resolve`]) and the per-exec [`session`] the proxy and the
//! resolver serve, on the [`listen`]ers bound inside the sandbox; their
//! writes to a peer are [`timed`].

pub mod addr;
pub mod decide;
mod host;
pub mod listen;
mod path;
pub mod rate;
pub mod resolve;
pub mod secrets;
pub mod session;
pub mod timed;

pub use decide::{Block, NetDecision, NetPolicy};
pub use host::{normalize_host, Host};
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
    /// Proxied connections and DNS forwards one user's sandboxes may hold
    /// at once, all together ([`connections_per_user`]).
    pub connections: std::sync::Arc<crate::quota::Quota>,
}

/// Descriptors kept for everything else (API clients, at most
/// [`crate::api::server::MAX_CONNECTIONS`] of them, sandboxes, the audit
/// log) out of the daemon's limit.
const RESERVED_FDS: u64 = 4096;

/// The connections all sandboxes together may hold, and each user's
/// sandboxes: what is left of the daemon's `fd_limit` after
/// [`RESERVED_FDS`], at six descriptors a tunnel (both sockets, a pipe each
/// way), at least 64; and of that, half, at most 4096, so that one user
/// never takes it all.
pub fn connections(fd_limit: u64) -> std::sync::Arc<crate::quota::Quota> {
    let all = usize::try_from(fd_limit.saturating_sub(RESERVED_FDS) / 6)
        .unwrap_or(usize::MAX)
        .max(64);
    crate::quota::Quota::new(all.div_ceil(2).clamp(64, 4096).min(all), all)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_user_may_hold_half_of_what_the_daemon_can_spare() {
        for (limit, user, all) in [
            (1024, 64, 64),
            (20_000, 1325, 2650),
            (1 << 20, 4096, 174_080),
        ] {
            let q = super::connections(limit);
            assert_eq!((q.max(), q.total()), (user, all), "{limit}");
        }
    }
}
