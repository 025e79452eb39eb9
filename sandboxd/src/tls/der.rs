//! Just enough DER reading to get a stored CA certificate's subject common
//! name and public key back (rcgen writes certificates but reads none without
//! a parser this project does not otherwise need).

/// The fields of a certificate needed to sign leaves under it again.
pub(super) struct CertFields<'a> {
    /// The subject's common name (UTF8String or PrintableString), if any.
    pub common_name: Option<String>,
    /// The whole SubjectPublicKeyInfo element, tag and length included.
    pub spki: &'a [u8],
}

/// One element: its tag, its contents, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
}

/// Splits the first element off `input`; None on malformed input
/// (multi-byte tags and indefinite lengths are not DER for these fields).
fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        contents: &rest[..len],
        whole: &input[..header + len],
    };
    Some((tlv, &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// Reads the subject common name and public key of an X.509 certificate.
pub(super) fn subject_and_key(cert: &[u8]) -> Option<CertFields<'_>> {
    let (certificate, _) = next(cert)?;
    if certificate.tag != SEQUENCE {
        return None;
    }
    let (tbs, _) = next(certificate.contents)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs.contents;
    let (first, after) = next(rest)?;
    if first.tag == 0xa0 {
        rest = after; // explicit version
    }
    // serialNumber, signature, issuer, validity
    for _ in 0..4 {
        rest = next(rest)?.1;
    }
    let (subject, rest) = next(rest)?;
    let (spki, _) = next(rest)?;
    if subject.tag != SEQUENCE || spki.tag != SEQUENCE {
        return None;
    }
    Some(CertFields {
        common_name: common_name(subject.contents)?,
        spki: spki.whole,
    })
}

/// The common name in a Name's RDN sequence; Some(None) when it has none,
/// None when the Name is malformed.
fn common_name(mut rdns: &[u8]) -> Option<Option<String>> {
    while !rdns.is_empty() {
        let (set, rest) = next(rdns)?;
        rdns = rest;
        if set.tag != SET {
            return None;
        }
        let mut atvs = set.contents;
        while !atvs.is_empty() {
            let (atv, rest) = next(atvs)?;
            atvs = rest;
            let (oid, value) = next(atv.contents)?;
            let (value, _) = next(value)?;
            if oid.tag == 0x06 && oid.contents == OID_COMMON_NAME {
                // UTF8String or PrintableString
                if value.tag != 0x0c && value.tag != 0x13 {
                    return None;
                }
                return Some(Some(String::from_utf8(value.contents.to_vec()).ok()?));
            }
        }
    }
    Some(None)
}
