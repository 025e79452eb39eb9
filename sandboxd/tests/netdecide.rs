//! The SSRF guard against real interfaces: a public address given to an
//! interface (in a fresh network namespace, so the host is untouched) is
//! refused as one of this host's own, unless `allow_cidrs` lists it.

use nix::sched::{unshare, CloneFlags};
use sandboxd::net::{addr, Block, Host, NetPolicy};
use sandboxd::policy::{PolicyStore, Verdict};
use std::net::IpAddr;
use std::process::Command;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}: {st}");
}

/// The policy of profile `net` written as `text`.
fn policy(text: &str) -> NetPolicy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.toml"), text).unwrap();
    let store = PolicyStore::load(Some(dir.path()), false).unwrap();
    let p = store.get("net").unwrap();
    NetPolicy::from_profile(p, None, p.approval.value).unwrap()
}

#[test]
fn an_address_of_this_host_is_refused_though_public() {
    let own: IpAddr = "203.0.114.7".parse().unwrap();
    assert!(
        addr::special(own).is_none(),
        "the test address must be public"
    );
    assert!(!addr::host_addresses().contains(&own));
    // A thread's own network namespace: `ip` (its child) works in it too.
    let seen = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare a network namespace (needs root)");
        ip(&["addr", "add", "203.0.114.7/32", "dev", "lo"]);
        ip(&["link", "set", "lo", "up"]);
        addr::host_addresses()
    })
    .join()
    .unwrap();
    assert!(seen.contains(&own), "{seen:?}");

    let listed = "[network]\nmode = \"allowlist\"\nallow = [\"203.0.114.7\"]\n";
    let p = policy(listed);
    assert_eq!(p.decide_host(&Host::Ip(own), 443).verdict, Verdict::Allow);
    let d = p.vet_addr(own, &seen);
    assert_eq!(
        (d.verdict, d.block),
        (Verdict::Deny, Some(Block::PrivateAddress))
    );
    assert_eq!(d.rule, "ssrf: 203.0.114.7 is an address of this host");
    // Elsewhere (another host's view) the same address is public.
    assert_eq!(p.vet_addr(own, &[]).verdict, Verdict::Allow);

    let p = policy(&format!("{listed}allow_cidrs = [\"203.0.114.0/24\"]\n"));
    let d = p.vet_addr(own, &seen);
    assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
    assert!(
        d.rule
            .ends_with("net.toml:4 network.allow_cidrs \"203.0.114.0/24\""),
        "{d:?}"
    );
}
