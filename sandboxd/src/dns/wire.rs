//! Just enough of the DNS wire format (RFC 1035) for the filter and the
//! forwarder, without allocating: the one question of a query, replies built
//! from it, and a walk over a response's records (their TTLs and addresses).

use std::net::IpAddr;

/// Size of the fixed header.
pub const HEADER: usize = 12;
/// Largest UDP reply to a client that did not say otherwise (EDNS).
pub const PLAIN_UDP: usize = 512;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_HTTPS: u16 = 65;
pub const CLASS_IN: u16 = 1;

/// Response codes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
/// Authentic data: the server validated DNSSEC; nothing here says so.
const FLAG_AD: u16 = 0x0020;
const OPCODE_MASK: u16 = 0x7800;

/// Longest name on the wire, root label included.
const MAX_WIRE_NAME: usize = 255;

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

fn u32_at(m: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(m.get(at..at + 4)?.try_into().ok()?))
}

fn put_u16(m: &mut [u8], at: usize, v: u16) {
    m[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The message's id (0 when too short to have one).
pub fn id(m: &[u8]) -> u16 {
    u16_at(m, 0).unwrap_or(0)
}

/// Sets the id of a message of at least [`HEADER`] bytes.
pub fn set_id(m: &mut [u8], id: u16) {
    put_u16(m, 0, id);
}

/// The response code in the header (the low 4 bits).
pub fn rcode(m: &[u8]) -> u8 {
    m.get(3).map_or(0, |b| b & 0x0f)
}

/// Whether the TC (truncated) flag is set.
pub fn truncated(m: &[u8]) -> bool {
    u16_at(m, 2).is_some_and(|f| f & FLAG_TC != 0)
}

/// One question, with its name lower-cased both on the wire (the cache key)
/// and as text (for the policy). Lives on the stack.
#[derive(Clone)]
pub struct Question {
    /// Lower-cased wire name, then qtype and qclass.
    key: [u8; MAX_WIRE_NAME + 4],
    key_len: usize,
    /// Dotted text form without the trailing dot; empty for the root.
    text: [u8; MAX_WIRE_NAME],
    text_len: usize,
    /// Every label is letters, digits, '-' or '_'.
    host_name: bool,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question in its message.
    pub end: usize,
}

impl Question {
    /// The question starting at `at` in `m`; `None` when malformed
    /// (compression pointers are refused: nothing precedes the first question).
    pub fn parse(m: &[u8], at: usize) -> Option<Question> {
        let mut q = Question {
            key: [0; MAX_WIRE_NAME + 4],
            key_len: 0,
            text: [0; MAX_WIRE_NAME],
            text_len: 0,
            host_name: true,
            qtype: 0,
            qclass: 0,
            end: 0,
        };
        let mut pos = at;
        loop {
            let len = *m.get(pos)? as usize;
            if len == 0 {
                break;
            }
            if len > 63 || q.key_len + 1 + len + 1 > MAX_WIRE_NAME {
                return None;
            }
            let label = m.get(pos + 1..pos + 1 + len)?;
            q.key[q.key_len] = len as u8;
            q.key_len += 1;
            if q.text_len > 0 {
                q.text[q.text_len] = b'.';
                q.text_len += 1;
            }
            for &b in label {
                let b = b.to_ascii_lowercase();
                q.host_name &= b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
                q.key[q.key_len] = b;
                q.key_len += 1;
                q.text[q.text_len] = b;
                q.text_len += 1;
            }
            pos += 1 + len;
        }
        q.key[q.key_len] = 0;
        q.key_len += 1;
        q.qtype = u16_at(m, pos + 1)?;
        q.qclass = u16_at(m, pos + 3)?;
        q.key[q.key_len..q.key_len + 4].copy_from_slice(m.get(pos + 1..pos + 5)?);
        q.key_len += 4;
        q.end = pos + 5;
        Some(q)
    }

    /// The question of `name` (lower-case text, no trailing dot) and `qtype`,
    /// class IN, for [`build_query`]; its `end` is not an offset in any message.
    pub fn for_name(name: &str, qtype: u16) -> Option<Question> {
        let mut wire = [0u8; MAX_WIRE_NAME + 4];
        let mut len = 0;
        for label in name.split('.').filter(|l| !l.is_empty()) {
            if label.len() > 63 || len + 1 + label.len() + 1 > MAX_WIRE_NAME {
                return None;
            }
            wire[len] = label.len() as u8;
            wire[len + 1..len + 1 + label.len()].copy_from_slice(label.as_bytes());
            len += 1 + label.len();
        }
        wire[len] = 0;
        wire[len + 1..len + 3].copy_from_slice(&qtype.to_be_bytes());
        wire[len + 3..len + 5].copy_from_slice(&CLASS_IN.to_be_bytes());
        Question::parse(&wire[..len + 5], 0)
    }

    /// Lower-cased name, type and class as on the wire.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// The name as lower-case text, without the trailing dot.
    pub fn name(&self) -> &str {
        // Labels that are not letters, digits, '-' or '_' are refused before
        // this matters; other bytes still make valid (if odd) text.
        std::str::from_utf8(&self.text[..self.text_len]).unwrap_or("")
    }

    /// The name for records and messages: as [`name`](Self::name), with
    /// every byte other than a letter, digit, '-' or '_' written `\DDD`
    /// (so a dot inside a label reads apart from one between labels).
    pub fn shown(&self) -> String {
        let wire = &self.key[..self.key_len.saturating_sub(5)];
        let mut out = String::with_capacity(wire.len());
        let mut pos = 0;
        while let Some(&len) = wire.get(pos) {
            let label = wire
                .get(pos + 1..pos + 1 + len as usize)
                .unwrap_or_default();
            if pos > 0 {
                out.push('.');
            }
            for &b in label {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("\\{b:03}"));
                }
            }
            pos += 1 + len as usize;
        }
        out
    }

    /// Whether every label is made of letters, digits, '-' and '_' (what a
    /// host or service name can be; anything else is not resolved).
    pub fn is_host_name(&self) -> bool {
        self.host_name
    }

    /// The type's mnemonic, for the audit log.
    pub fn type_name(&self) -> String {
        match self.qtype {
            TYPE_A => "A".into(),
            2 => "NS".into(),
            TYPE_CNAME => "CNAME".into(),
            TYPE_SOA => "SOA".into(),
            12 => "PTR".into(),
            15 => "MX".into(),
            16 => "TXT".into(),
            TYPE_AAAA => "AAAA".into(),
            33 => "SRV".into(),
            64 => "SVCB".into(),
            TYPE_HTTPS => "HTTPS".into(),
            255 => "ANY".into(),
            t => format!("TYPE{t}"),
        }
    }
}

/// A query as the server sees it.
pub struct Query {
    pub question: Question,
    /// Largest UDP reply the client takes (512 without EDNS).
    pub udp_size: usize,
}

/// What to do with a message that is not a usable query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Not worth an answer (too short to carry an id, or itself a response).
    Drop,
    /// Answer with this code and no question.
    Reply(Rcode),
}

/// Parses a query with exactly one question.
pub fn parse_query(m: &[u8]) -> Result<Query, Unusable> {
    let flags = u16_at(m, 2).ok_or(Unusable::Drop)?;
    if m.len() < HEADER || flags & FLAG_QR != 0 {
        return Err(Unusable::Drop);
    }
    if flags & OPCODE_MASK != 0 {
        return Err(Unusable::Reply(Rcode::NotImp));
    }
    let counts = (u16_at(m, 4), u16_at(m, 6), u16_at(m, 8), u16_at(m, 10));
    if counts.0 != Some(1) {
        return Err(Unusable::Reply(Rcode::FormErr));
    }
    let question = Question::parse(m, HEADER).ok_or(Unusable::Reply(Rcode::FormErr))?;
    // An OPT record right after the question (no answer or authority in a
    // query) carries the client's UDP size in its class field.
    let mut udp_size = PLAIN_UDP;
    if counts.1 == Some(0) && counts.2 == Some(0) && counts.3.unwrap_or(0) >= 1 {
        let at = question.end;
        if m.get(at) == Some(&0) && u16_at(m, at + 1) == Some(TYPE_OPT) {
            udp_size = usize::from(u16_at(m, at + 3).unwrap_or(0)).max(PLAIN_UDP);
        }
    }
    Ok(Query { question, udp_size })
}

/// Header of a reply to `query` (id, opcode and RD copied; RA set).
fn reply_header(query: &[u8], rcode: Rcode, qdcount: u16, out: &mut Vec<u8>) {
    let flags = u16_at(query, 2).unwrap_or(0);
    let flags = FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode as u16;
    out.clear();
    out.extend_from_slice(&id(query).to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&qdcount.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
}

/// A reply with `rcode` and no question (FORMERR, NOTIMP).
pub fn reply_bare(query: &[u8], rcode: Rcode, out: &mut Vec<u8>) {
    reply_header(query, rcode, 0, out);
}

/// A reply to `query` with its question and no records.
pub fn reply(query: &[u8], q: &Question, rcode: Rcode, out: &mut Vec<u8>) {
    reply_header(query, rcode, 1, out);
    out.extend_from_slice(&query[HEADER..q.end]);
}

/// Marks a reply built by [`reply`] authoritative (a static answer).
pub fn set_authoritative(out: &mut [u8]) {
    out[2] |= (FLAG_AA >> 8) as u8;
}

/// The same reply with TC set and no records: the client retries over TCP.
pub fn reply_truncated(query: &[u8], q: &Question, out: &mut Vec<u8>) {
    reply(query, q, Rcode::NoError, out);
    out[2] |= (FLAG_TC >> 8) as u8;
}

/// Appends an A or AAAA answer for the question's name (a pointer to it) to
/// a reply built by [`reply`].
pub fn push_address(out: &mut Vec<u8>, ip: IpAddr, ttl: u32) {
    out.extend_from_slice(&[0xc0, HEADER as u8]);
    match ip {
        IpAddr::V4(v4) => {
            out.extend_from_slice(&TYPE_A.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.extend_from_slice(&TYPE_AAAA.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&16u16.to_be_bytes());
            out.extend_from_slice(&v6.octets());
        }
    }
    let an = u16_at(out, 6).unwrap_or(0).saturating_add(1);
    put_u16(out, 6, an);
}

/// A query for `q` with id `id`, RD set and an EDNS OPT record offering `udp_size`.
pub fn build_query(q: &Question, id: u16, udp_size: u16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    out.extend_from_slice(q.key());
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&udp_size.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
}

/// Offset just past the (possibly compressed) name at `at`.
fn skip_name(m: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *m.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2).filter(|&e| e <= m.len()),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// One resource record of a response.
pub struct Record<'a> {
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Offset of the TTL field in the message.
    pub ttl_at: usize,
    pub data: &'a [u8],
    /// In the answer section (not authority or additional).
    pub answer: bool,
}

/// Calls `f` for every record of a response whose question is `q`;
/// `None` when the message is malformed.
pub fn for_each_record<'a>(m: &'a [u8], q: &Question, mut f: impl FnMut(Record<'a>)) -> Option<()> {
    let an = u16_at(m, 6)?;
    let total = u32::from(an) + u32::from(u16_at(m, 8)?) + u32::from(u16_at(m, 10)?);
    let mut at = q.end;
    for i in 0..total {
        at = skip_name(m, at)?;
        let rtype = u16_at(m, at)?;
        let class = u16_at(m, at + 2)?;
        let ttl = u32_at(m, at + 4)?;
        let len = usize::from(u16_at(m, at + 8)?);
        let data = m.get(at + 10..at + 10 + len)?;
        f(Record {
            rtype,
            class,
            ttl,
            ttl_at: at + 4,
            data,
            answer: i < u32::from(an),
        });
        at += 10 + len;
    }
    Some(())
}

/// The SvcParamKeys of HTTPS records (RFC 9460) that matter here.
const SVC_MANDATORY: u16 = 0;
const SVC_ECH: u16 = 5;

/// Upstream response `m` rebuilt with only what a client inside is told:
/// the question; answer records of class IN and type A, AAAA, CNAME or
/// HTTPS, the HTTPS ones without their `ech` parameter (an Encrypted Client
/// Hello key, which the proxy refuses unless the profile allows ECH) unless
/// `keep_ech`; and the authority section's SOA records (for negative
/// caching). Names are written out in full (an
/// owner that is the question's name points back to it), and the additional
/// section is left out. `None` when `m` is malformed or the result would not
/// fit in a message.
pub fn sanitize(m: &[u8], keep_ech: bool) -> Option<Vec<u8>> {
    let q = Question::parse(m, HEADER)?;
    let an = u32::from(u16_at(m, 6)?);
    let ns = u32::from(u16_at(m, 8)?);
    let total = an + ns + u32::from(u16_at(m, 10)?);
    let mut out = Vec::with_capacity(m.len());
    out.extend_from_slice(m.get(..q.end)?);
    let (mut kept_an, mut kept_ns) = (0u16, 0u16);
    let mut at = q.end;
    for i in 0..total {
        let owner = at;
        at = skip_name(m, at)?;
        let rtype = u16_at(m, at)?;
        let class = u16_at(m, at + 2)?;
        let len = usize::from(u16_at(m, at + 8)?);
        let data = at + 10;
        let fixed = m.get(at..data)?;
        let end = data + len;
        let rdata = m.get(data..end)?;
        at = end;
        let keep = class == CLASS_IN
            && if i < an {
                matches!(rtype, TYPE_A | TYPE_AAAA | TYPE_CNAME | TYPE_HTTPS)
            } else {
                i < an + ns && rtype == TYPE_SOA
            };
        if !keep {
            continue;
        }
        let start = out.len();
        copy_name(m, owner, &mut out)?;
        if out[start..].eq_ignore_ascii_case(&m[HEADER..q.end - 4]) {
            out.truncate(start);
            out.extend_from_slice(&[0xc0, HEADER as u8]);
        }
        out.extend_from_slice(&fixed[..8]);
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        match rtype {
            TYPE_A if len == 4 => out.extend_from_slice(rdata),
            TYPE_AAAA if len == 16 => out.extend_from_slice(rdata),
            TYPE_CNAME => {
                (copy_name(m, data, &mut out)? == end).then_some(())?;
            }
            TYPE_SOA => {
                let rname = copy_name(m, data, &mut out)?;
                let serial = copy_name(m, rname, &mut out)?;
                (end.checked_sub(serial)? == 20).then_some(())?;
                out.extend_from_slice(m.get(serial..end)?);
            }
            TYPE_HTTPS => https_data(m, data, end, keep_ech, &mut out)?,
            _ => return None,
        }
        let rdlen = u16::try_from(out.len() - len_at - 2).ok()?;
        put_u16(&mut out, len_at, rdlen);
        if i < an {
            kept_an += 1;
        } else {
            kept_ns += 1;
        }
    }
    // (Bytes past the last record are not carried over.)
    u16::try_from(out.len()).ok()?;
    let flags = u16_at(&out, 2)? & !FLAG_AD;
    put_u16(&mut out, 2, flags);
    put_u16(&mut out, 6, kept_an);
    put_u16(&mut out, 8, kept_ns);
    put_u16(&mut out, 10, 0);
    Some(out)
}

/// Appends the name at `at` in `m`, compression pointers followed, to `out`
/// uncompressed; returns the offset just past the name where it starts.
fn copy_name(m: &[u8], mut at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut past = None;
    let mut written = 0;
    // Every pointer must go back, so a loop of them ends.
    let mut limit = at;
    loop {
        let len = *m.get(at)?;
        match len {
            0 => {
                out.push(0);
                return past.or(Some(at + 1));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(u16_at(m, at)? & 0x3fff);
                past.get_or_insert(at + 2);
                if target >= limit {
                    return None;
                }
                limit = target;
                at = target;
            }
            l if l & 0xc0 == 0 => {
                let label = m.get(at..at + 1 + usize::from(l))?;
                written += label.len();
                if written + 1 > MAX_WIRE_NAME {
                    return None;
                }
                out.extend_from_slice(label);
                at += label.len();
            }
            _ => return None,
        }
    }
}

/// Appends the HTTPS record data at `data..end` of `m`, its target name
/// written out and its parameters as they were, in their order, except
/// that unless `keep_ech` its `ech` parameter is left out (and `ech` from
/// among the `mandatory` keys).
fn https_data(m: &[u8], data: usize, end: usize, keep_ech: bool, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(m.get(data..data + 2)?); // SvcPriority
                                                   // The target name (which RFC 9460 says is not compressed).
    let mut at = copy_name(m, data + 2, out)?;
    while at < end {
        let key = u16_at(m, at)?;
        let len = usize::from(u16_at(m, at + 2)?);
        let value = m.get(at + 4..at + 4 + len)?;
        at += 4 + len;
        match key {
            SVC_ECH if !keep_ech => {}
            SVC_MANDATORY if !keep_ech => {
                (len % 2 == 0).then_some(())?;
                let keys: Vec<u8> = value
                    .chunks(2)
                    .filter(|k| *k != SVC_ECH.to_be_bytes())
                    .flatten()
                    .copied()
                    .collect();
                // An empty list is not allowed: then no key is mandatory.
                if !keys.is_empty() {
                    out.extend_from_slice(&key.to_be_bytes());
                    out.extend_from_slice(&u16::try_from(keys.len()).ok()?.to_be_bytes());
                    out.extend_from_slice(&keys);
                }
            }
            _ => out.extend_from_slice(m.get(at - 4 - len..at)?),
        }
    }
    (at == end).then_some(())
}

/// Whether `m` is a response (QR set) with id `id` to the question `key`;
/// then its question.
pub fn answers(m: &[u8], id_: u16, key: &[u8]) -> Option<Question> {
    let flags = u16_at(m, 2)?;
    if id(m) != id_ || flags & FLAG_QR == 0 || u16_at(m, 4)? != 1 {
        return None;
    }
    Question::parse(m, HEADER).filter(|q| q.key() == key)
}

/// Number of records in the answer section.
pub fn answer_count(m: &[u8]) -> u16 {
    u16_at(m, 6).unwrap_or(0)
}

/// Overwrites the TTL at `at` in `m`.
pub fn set_ttl(m: &mut [u8], at: usize, ttl: u32) {
    m[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn question_is_lower_cased_and_dotted() {
        let m = query(b"\x07Allowed\x04TEST\x00", TYPE_AAAA);
        let q = parse_query(&m).ok().unwrap().question;
        assert_eq!(q.name(), "allowed.test");
        assert_eq!(q.qtype, TYPE_AAAA);
        assert!(q.is_host_name());
        assert_eq!(q.end, m.len());
        let same = Question::for_name("allowed.test", TYPE_AAAA).unwrap();
        assert_eq!(same.key(), q.key());
    }

    #[test]
    fn odd_labels_are_not_host_names_and_are_shown_escaped() {
        let m = query(b"\x09a.b\x00c.com\x00", TYPE_A);
        let q = parse_query(&m).ok().unwrap().question;
        assert!(!q.is_host_name());
        // One label of nine bytes.
        assert_eq!(q.shown(), "a\\046b\\000c\\046com");
        let m = query(b"\x02\xffX\x04Test\x00", TYPE_A);
        let q = parse_query(&m).ok().unwrap().question;
        assert_eq!(q.shown(), "\\255x.test");
        let m = query(b"\x07allowed\x04test\x00", TYPE_A);
        assert_eq!(
            parse_query(&m).ok().unwrap().question.shown(),
            "allowed.test"
        );
    }

    #[test]
    fn malformed_queries() {
        assert_eq!(parse_query(&[1, 2, 3]).err(), Some(Unusable::Drop));
        let mut m = query(b"\x01a\x00", TYPE_A);
        m[2] |= 0x80;
        assert_eq!(parse_query(&m).err(), Some(Unusable::Drop));
        let m = query(b"\x05ab\x00", TYPE_A);
        assert_eq!(parse_query(&m).err(), Some(Unusable::Reply(Rcode::FormErr)));
        let m = query(b"\xc0\x0c", TYPE_A);
        assert_eq!(parse_query(&m).err(), Some(Unusable::Reply(Rcode::FormErr)));
        let mut m = query(b"\x01a\x00", TYPE_A);
        m[5] = 2;
        assert_eq!(parse_query(&m).err(), Some(Unusable::Reply(Rcode::FormErr)));
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        let m = query(&long, TYPE_A);
        assert_eq!(parse_query(&m).err(), Some(Unusable::Reply(Rcode::FormErr)));
    }

    #[test]
    fn reply_with_addresses_walks_back() {
        let m = query(b"\x01a\x04test\x00", TYPE_A);
        let q = parse_query(&m).ok().unwrap().question;
        let mut out = Vec::new();
        reply(&m, &q, Rcode::NoError, &mut out);
        push_address(&mut out, "192.0.2.1".parse().unwrap(), 60);
        push_address(&mut out, "2001:db8::1".parse().unwrap(), 30);
        let back = answers(&out, 0x1234, q.key()).unwrap();
        let mut seen = Vec::new();
        for_each_record(&out, &back, |r| {
            seen.push((r.rtype, r.ttl, r.data.len(), r.answer))
        })
        .unwrap();
        assert_eq!(seen, [(TYPE_A, 60, 4, true), (TYPE_AAAA, 30, 16, true)]);
        assert_eq!(answers(&out, 0x1235, q.key()).map(|q| q.end), None);
    }

    /// A response to `a.test` A whose one answer record is `owner` (wire
    /// bytes, maybe a pointer), type A, with `tail` after it.
    fn response(owner: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut m = query(b"\x01a\x04test\x00", TYPE_A);
        m[2] |= 0x80;
        m[7] = 1;
        m.extend_from_slice(owner);
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        m.extend_from_slice(tail);
        m
    }

    #[test]
    fn sanitized_names_are_written_out_and_bad_pointers_refused() {
        // A label, then a pointer to the question's "test": written out.
        let out = sanitize(&response(b"\x01b\xc0\x0e", &[]), false).unwrap();
        assert_eq!(&out[HEADER + 12..HEADER + 22], b"\x01b\x04test\x00\x00\x01");
        // The question's own name (here spelled out, in another case) points back to it.
        let out = sanitize(&response(b"\x01A\x04TEST\x00", &[]), false).unwrap();
        assert_eq!(&out[HEADER + 12..HEADER + 16], &[0xc0, 12, 0, 1]);
        // Bytes after the last record are dropped.
        let out = sanitize(&response(&[0xc0, 12], &[9, 9]), false).unwrap();
        assert_eq!(out.len(), HEADER + 12 + 16);
        // A pointer to itself, into its own labels, forward, or past the end.
        for owner in [
            &[0xc0, 24][..],
            &[1, b'b', 0xc0, 24][..],
            &[0xc0, 40][..],
            &[0xc0, 0xff][..],
        ] {
            assert_eq!(sanitize(&response(owner, &[]), false), None, "{owner:?}");
        }
    }

    #[test]
    fn an_https_record_keeps_its_ech_key_only_where_ech_is_allowed() {
        let rdata = [
            0, 1, 0, // priority 1, target "."
            0, 0, 0, 2, 0, 5, // mandatory = [ech]
            0, 1, 0, 3, 2, b'h', b'2', // alpn = [h2]
            0, 5, 0, 2, 0xab, 0xcd, // ech
        ];
        let mut out = Vec::new();
        https_data(&rdata, 0, rdata.len(), false, &mut out).unwrap();
        assert_eq!(out, [0, 1, 0, 0, 1, 0, 3, 2, b'h', b'2']);
        // Kept whole where ECH is allowed.
        out.clear();
        https_data(&rdata, 0, rdata.len(), true, &mut out).unwrap();
        assert_eq!(out, rdata);
        // A mandatory list of an odd length is malformed.
        let odd = [0, 1, 0, 0, 0, 0, 3, 0, 1, 0];
        assert_eq!(https_data(&odd, 0, odd.len(), false, &mut Vec::new()), None);
    }
}
