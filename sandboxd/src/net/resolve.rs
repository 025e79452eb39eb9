//! The daemon's own resolver: `[dns] hosts` first, then (upstream "system")
//! /etc/hosts and the nameservers of /etc/resolv.conf, or the configured
//! upstream servers. The proxy dials only addresses it got from here and
//! vetted; the sandbox's DNS server forwards allowed queries through it.

use crate::config::DnsConfig;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{name}: no such name")]
    NotFound { name: String },
    #[error("{name}: {message}")]
    Failed { name: String, message: String },
    #[error("DNS configuration: {0}")]
    Config(String),
}

/// Shared by every sandbox of the daemon.
#[derive(Debug)]
pub struct Resolver {
    hosts: std::collections::BTreeMap<String, Vec<IpAddr>>,
}

impl Resolver {
    pub fn new(config: &DnsConfig) -> Result<Resolver, ResolveError> {
        Ok(Resolver { hosts: config.hosts.clone() })
    }

    /// A and AAAA addresses of `name` (already normalised).
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.hosts.get(name).cloned().ok_or(ResolveError::NotFound { name: name.into() })
    }

    /// Forwards one DNS query message (wire format, a single question whose
    /// type is A, AAAA, CNAME or HTTPS, already decided allowed) upstream, or
    /// answers it from `[dns] hosts`; returns the response message (wire format).
    pub async fn forward(&self, query: &[u8]) -> Result<Vec<u8>, ResolveError> {
        let _ = query;
        todo!()
    }
}
