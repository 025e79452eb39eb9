//! A profile back to TOML: what `agent policy show` and `sandboxd check-config`
//! print. The output parses back into the same profile (without `extends`,
//! which is already merged in).

use super::model::{Located, Profile, DEFAULT_PORTS};
use super::values::{format_duration, format_size};
use toml::{Table, Value};

fn strings(v: &[Located<String>]) -> Value {
    Value::Array(v.iter().map(|l| Value::String(l.value.clone())).collect())
}

fn table(pairs: Vec<(&str, Value)>) -> Value {
    Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The effective (merged) profile as TOML, headed by where it came from.
pub fn render(p: &Profile) -> String {
    let mut top = Table::new();
    top.insert("description".into(), Value::String(p.description.clone()));
    top.insert(
        "approval".into(),
        Value::String(p.approval.value.as_str().into()),
    );
    top.insert("allow_root".into(), Value::Boolean(p.allow_root.value));
    top.insert(
        "allow_user_profiles".into(),
        Value::Boolean(p.allow_user_profiles.value),
    );
    top.insert(
        "landlock".into(),
        Value::String(p.landlock.value.as_str().into()),
    );
    let fs = &p.filesystem;
    top.insert(
        "filesystem".into(),
        table(vec![
            ("read", strings(&fs.read)),
            ("write", strings(&fs.write)),
            ("deny_read", strings(&fs.deny_read)),
            ("deny_write", strings(&fs.deny_write)),
        ]),
    );
    let n = &p.network;
    let mut net = vec![
        ("mode", Value::String(n.mode.value.as_str().into())),
        ("allow", strings(&n.allow)),
        ("deny", strings(&n.deny)),
        // Unset, the defaults (an empty list is no valid profile).
        (
            "ports",
            Value::Array(match n.ports.is_empty() {
                true => DEFAULT_PORTS
                    .iter()
                    .map(|&p| Value::Integer(p.into()))
                    .collect(),
                false => n
                    .ports
                    .iter()
                    .map(|l| Value::Integer(l.value.into()))
                    .collect(),
            }),
        ),
        ("allow_cidrs", strings(&n.allow_cidrs)),
        ("inspect", Value::Boolean(n.inspect.value)),
        (
            "allow_non_tls_443",
            Value::Boolean(n.allow_non_tls_443.value),
        ),
        ("allow_ech", Value::Boolean(n.allow_ech.value)),
    ];
    if let Some(m) = &n.methods {
        net.push(("methods", strings(m)));
    }
    if !n.rules.is_empty() {
        let rules = n.rules.iter().map(|r| {
            let r = &r.value;
            let words = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
            let mut t = vec![
                ("host", Value::String(r.host.clone())),
                ("methods", words(&r.methods)),
                ("paths", words(&r.paths)),
            ];
            if let Some(i) = &r.inject {
                t.push((
                    "inject",
                    table(vec![
                        ("header", Value::String(i.header.clone())),
                        ("value", Value::String(i.value.clone())),
                    ]),
                ));
            }
            table(t)
        });
        net.push(("rule", Value::Array(rules.collect())));
    }
    top.insert("network".into(), table(net));
    let e = &p.env;
    let set = e
        .set
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.value.clone())))
        .collect();
    top.insert(
        "env".into(),
        table(vec![
            ("pass", strings(&e.pass)),
            ("deny", strings(&e.deny)),
            ("set", Value::Table(set)),
        ]),
    );
    let l = &p.limits;
    let mut limits = Table::new();
    if let Some(t) = &l.timeout {
        limits.insert("timeout".into(), Value::String(format_duration(t.value)));
    }
    if let Some(m) = &l.memory {
        limits.insert("memory".into(), Value::String(format_size(m.value)));
    }
    if let Some(n) = &l.pids {
        limits.insert(
            "pids".into(),
            Value::Integer(i64::try_from(n.value).unwrap_or(i64::MAX)),
        );
    }
    if let Some(o) = &l.output {
        limits.insert("output".into(), Value::String(format_size(o.value)));
    }
    top.insert("limits".into(), Value::Table(limits));
    let c = &p.commands;
    let prefixes = |v: &[Located<Vec<String>>]| {
        Value::Array(
            v.iter()
                .map(|r| Value::Array(r.value.iter().cloned().map(Value::String).collect()))
                .collect(),
        )
    };
    top.insert(
        "commands".into(),
        table(vec![
            ("allow", prefixes(&c.allow)),
            ("prompt", prefixes(&c.prompt)),
            ("forbidden", prefixes(&c.forbidden)),
        ]),
    );
    let mut head = format!("# profile {} from {}", p.name, p.source);
    if let Some(parent) = &p.extends {
        head.push_str(&format!(" (extends {parent}, merged below)"));
    }
    let body = toml::to_string(&top).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    format!("{head}\n{body}")
}
