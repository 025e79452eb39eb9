//! The first bytes of a tunnel: is it a TLS ClientHello, which server name
//! (SNI) does it ask for, and does it hide another one (Encrypted Client
//! Hello)? Enough of RFC 8446 to read that, no more.

/// The most bytes read before the ClientHello must be complete.
pub const MAX_HELLO: usize = 64 * 1024;

/// What the first bytes of a tunnel are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not a TLS handshake record.
    NotTls,
    /// The start of a TLS handshake; more bytes are needed.
    Incomplete,
    /// A complete ClientHello, with its host name when it sends one,
    /// whether it carries an encrypted inner ClientHello (ECH, or the
    /// earlier encrypted SNI draft), whose server name cannot be read here,
    /// and the length of the records that carry it (what follows is not
    /// part of it: the hello ends where its last record does).
    ClientHello {
        sni: Option<String>,
        ech: bool,
        len: usize,
    },
    /// A TLS handshake record that is no well-formed ClientHello.
    Malformed(&'static str),
}

/// TLS record types.
pub(crate) const HANDSHAKE: u8 = 0x16;
pub(crate) const CHANGE_CIPHER_SPEC: u8 = 0x14;
pub(crate) const ALERT: u8 = 0x15;
pub(crate) const APPLICATION_DATA: u8 = 0x17;
const CLIENT_HELLO: u8 = 1;

/// The length of the payload of the TLS record starting `data`, once its
/// five-byte header is there.
pub(crate) fn record_len(data: &[u8]) -> Option<usize> {
    data.get(3..5)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
}
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// `encrypted_client_hello`, from TLS Encrypted Client Hello.
const EXT_ECH: u16 = 0xfe0d;
/// `encrypted_server_name`, from the drafts before ECH.
const EXT_ESNI: u16 = 0xffce;

/// Reads `data`, the bytes the client sent so far.
pub fn parse(data: &[u8]) -> Hello {
    let Some(&first) = data.first() else {
        return Hello::Incomplete;
    };
    if first != HANDSHAKE {
        return Hello::NotTls;
    }
    // A handshake message may be split over several records: join their payloads.
    let mut msg = Vec::new();
    let mut rest = data;
    loop {
        if rest.len() < 5 {
            return Hello::Incomplete;
        }
        if rest[0] != HANDSHAKE {
            return Hello::Malformed("a record of another type inside the ClientHello");
        }
        if rest[1] != 3 {
            return Hello::Malformed("record version is not 3.x");
        }
        let len = record_len(rest).unwrap_or_default();
        if len == 0 || len > 16384 + 2048 {
            return Hello::Malformed("record length out of range");
        }
        if rest.len() < 5 + len {
            return Hello::Incomplete;
        }
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if msg.len() >= 4 {
            if msg[0] != CLIENT_HELLO {
                return Hello::Malformed("first handshake message is not a ClientHello");
            }
            let body_len =
                usize::from(msg[1]) << 16 | usize::from(msg[2]) << 8 | usize::from(msg[3]);
            if 4 + body_len > MAX_HELLO {
                return Hello::Malformed("ClientHello too long");
            }
            if msg.len() > 4 + body_len {
                // Whatever it is, it would reach the server unread.
                return Hello::Malformed("bytes after the ClientHello in its record");
            }
            if msg.len() == 4 + body_len {
                return match client_hello(&msg[4..]) {
                    Ok((sni, ech)) => Hello::ClientHello {
                        sni,
                        ech,
                        len: data.len() - rest.len(),
                    },
                    Err(e) => Hello::Malformed(e),
                };
            }
        }
    }
}

/// A cursor over a byte slice that fails instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("ClientHello cut short");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The body of a ClientHello: its server name, if any, and whether it
/// carries an encrypted one.
fn client_hello(body: &[u8]) -> Result<(Option<String>, bool), &'static str> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok((None, false)); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    let mut sni = None;
    let mut ech = false;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == EXT_ECH || kind == EXT_ESNI {
            ech = true;
        }
        if kind != EXT_SERVER_NAME {
            continue;
        }
        if sni.is_some() {
            return Err("two server_name extensions");
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type != NAME_TYPE_HOST {
                continue;
            }
            if sni.is_some() {
                return Err("two host names in server_name");
            }
            let name = std::str::from_utf8(name).map_err(|_| "server name is not ASCII")?;
            if name.is_empty() || !name.is_ascii() {
                return Err("server name is empty or not ASCII");
            }
            sni = Some(name.to_string());
        }
    }
    Ok((sni, ech))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with `exts` as its extensions block.
    fn hello(exts: Option<Vec<u8>>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one cipher suite
        body.extend([1, 0]); // null compression
        if let Some(e) = exts {
            body.extend((e.len() as u16).to_be_bytes());
            body.extend(e);
        }
        let mut msg = vec![CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = vec![HANDSHAKE, 3, 1];
        r.extend((payload.len() as u16).to_be_bytes());
        r.extend(payload);
        r
    }

    fn sni_ext(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![NAME_TYPE_HOST];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        let mut ext = EXT_SERVER_NAME.to_be_bytes().to_vec();
        ext.extend((list.len() as u16).to_be_bytes());
        ext.extend(list);
        ext
    }

    /// An unrelated extension (supported_versions) before the server name.
    fn with_other(name: &[u8]) -> Vec<u8> {
        let mut e = vec![0, 43, 0, 3, 2, 3, 4];
        e.extend(sni_ext(name));
        e
    }

    #[test]
    fn reads_the_server_name() {
        let data = record(&hello(Some(with_other(b"Example.COM"))));
        assert_eq!(
            parse(&data),
            Hello::ClientHello {
                sni: Some("Example.COM".into()),
                ech: false,
                len: data.len()
            }
        );
        // What follows the hello's records is not part of it.
        let mut more = data.clone();
        more.extend(record(&hello(Some(with_other(b"other.test")))));
        assert!(matches!(parse(&more), Hello::ClientHello { len, .. } if len == data.len()));
    }

    #[test]
    fn no_extension_or_no_name_is_no_sni() {
        let data = record(&hello(None));
        assert_eq!(
            parse(&data),
            Hello::ClientHello {
                sni: None,
                ech: false,
                len: data.len()
            }
        );
        let data = record(&hello(Some(vec![0, 43, 0, 3, 2, 3, 4])));
        assert_eq!(
            parse(&data),
            Hello::ClientHello {
                sni: None,
                ech: false,
                len: data.len()
            }
        );
    }

    /// An outer ClientHello names one server and may carry another,
    /// encrypted: with either extension, real or GREASE alike.
    #[test]
    fn an_encrypted_client_hello_is_seen() {
        for kind in [EXT_ECH, EXT_ESNI] {
            let mut exts = with_other(b"public.test");
            exts.extend(kind.to_be_bytes());
            exts.extend([0, 4, 0, 0, 1, 0xaa]);
            let data = record(&hello(Some(exts)));
            assert_eq!(
                parse(&data),
                Hello::ClientHello {
                    sni: Some("public.test".into()),
                    ech: true,
                    len: data.len()
                },
                "extension {kind:#x}"
            );
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let data = record(&hello(Some(with_other(b"a.test"))));
        for n in 0..data.len() {
            assert_eq!(parse(&data[..n]), Hello::Incomplete, "prefix {n}");
        }
    }

    #[test]
    fn a_hello_split_over_two_records() {
        let msg = hello(Some(with_other(b"split.test")));
        let (a, b) = msg.split_at(20);
        let mut data = record(a);
        data.extend(record(b));
        assert_eq!(
            parse(&data),
            Hello::ClientHello {
                sni: Some("split.test".into()),
                ech: false,
                len: data.len()
            }
        );
        assert_eq!(parse(&data[..data.len() - 1]), Hello::Incomplete);
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"SSH-2.0-x"), Hello::NotTls);
        assert_eq!(parse(&[0]), Hello::NotTls);
    }

    /// The start of another hello in the last record of the first would
    /// reach the server unread.
    #[test]
    fn bytes_after_the_hello_in_its_record_are_malformed() {
        let mut msg = hello(Some(with_other(b"a.test")));
        msg.extend(&hello(Some(with_other(b"evil.test")))[..30]);
        assert_eq!(
            parse(&record(&msg)),
            Hello::Malformed("bytes after the ClientHello in its record")
        );
    }

    #[test]
    fn broken_hellos_are_malformed() {
        // Handshake record carrying a ServerHello.
        let mut msg = hello(None);
        msg[0] = 2;
        assert!(matches!(parse(&record(&msg)), Hello::Malformed(_)));
        // Extension length running past the end.
        let mut ext = with_other(b"a.test");
        let n = ext.len();
        ext[n - 7] = 0xff;
        assert!(matches!(
            parse(&record(&hello(Some(ext)))),
            Hello::Malformed(_)
        ));
        // Two names.
        let mut two = sni_ext(b"a.test");
        two.extend(sni_ext(b"b.test"));
        assert!(matches!(
            parse(&record(&hello(Some(two)))),
            Hello::Malformed(_)
        ));
        // Record version 2.
        let mut data = record(&hello(None));
        data[1] = 2;
        assert!(matches!(parse(&data), Hello::Malformed(_)));
        // A record of another type after the first fragment.
        let msg = hello(Some(sni_ext(b"a.test")));
        let mut data = record(&msg[..10]);
        let mut alert = record(&msg[10..]);
        alert[0] = 0x15;
        data.extend(alert);
        assert!(matches!(parse(&data), Hello::Malformed(_)));
    }
}
