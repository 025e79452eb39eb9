//! Generated types and service stubs of the `sandbox.v1` API.

/// Generated code of package `sandbox.v1`.
// ExecRequest's start message is much larger than a stdin chunk; that is the
// API's shape, not worth boxing in generated code.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("sandbox.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sandbox_descriptor.bin"));

/// Whether `c` changes how text around it is shown without showing itself:
/// control characters, whitespace other than the space, and the invisible
/// format characters (bidirectional overrides, zero-width characters, the
/// soft hyphen). Text from a sandbox or a caller that a person reads to
/// decide (an approval's command, its justification) shows these escaped.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{ad}'
                | '\u{34f}'
                | '\u{61c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

#[cfg(test)]
mod tests {
    use super::is_hidden;

    #[test]
    fn hidden_characters_are_the_ones_that_do_not_show() {
        for c in [
            '\n',
            '\t',
            '\r',
            '\u{1b}',
            '\u{9b}',
            '\u{a0}',
            '\u{2028}',
            '\u{200b}',
            '\u{202e}',
            '\u{2066}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            assert!(is_hidden(c), "{c:?}");
        }
        for c in [' ', 'a', '/', '\'', 'é', 'ß', '中', '\u{1f600}'] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }
}
