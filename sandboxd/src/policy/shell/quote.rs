//! Words shown back as one command line: quoted only where a POSIX shell
//! would read them otherwise, with characters that would not show
//! escaped, so that the line a person reads is the command that runs.

use super::parser::{is_assignment, RESERVED};
use super::Word;

/// Words as one command line a person can read back unambiguously: `rm "a b"`
/// is not shown as `rm a b`, nor `sh -c 'ls; rm x'` as `sh -c ls; rm x`.
pub fn command_line(words: &[String]) -> String {
    line(words.iter().map(|w| (w.as_str(), true)))
}

/// [`command_line`] of parsed words: a known value quoted where needed, one
/// still to be expanded as written.
pub fn words_line(words: &[Word]) -> String {
    line(words.iter().map(|w| (w.text.as_str(), w.literal)))
}

fn line<'a>(words: impl Iterator<Item = (&'a str, bool)>) -> String {
    words
        .enumerate()
        .map(|(i, (text, literal))| match (literal, i) {
            (false, _) => std::borrow::Cow::Borrowed(text),
            // In command position `A=b` would read as an assignment and
            // `if` as a keyword, not as the program they name.
            (true, 0) if is_assignment(text) || RESERVED.contains(&text) || text == "time" => {
                std::borrow::Cow::Owned(single_quoted(text))
            }
            (true, _) => quote(text),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` for a POSIX shell: as is when every character in it is plain
/// (letters, digits and `_@%+=:,./-`), else single-quoted, or in `$'...'`
/// with escapes when it holds characters that would not show (a newline, a
/// bidirectional override: see [`sandbox_proto::is_hidden`]).
pub fn quote(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        std::borrow::Cow::Borrowed(word)
    } else if word.chars().any(sandbox_proto::is_hidden) {
        std::borrow::Cow::Owned(escaped(word))
    } else {
        std::borrow::Cow::Owned(single_quoted(word))
    }
}

fn single_quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `$'...'` with every hidden character, backslash and quote escaped.
fn escaped(word: &str) -> String {
    let mut out = String::from("$'");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if sandbox_proto::is_hidden(c) => {
                let n = c as u32;
                out.push_str(&match n {
                    0..=0x7f => format!("\\x{n:02x}"),
                    0x80..=0xffff => format!("\\u{n:04x}"),
                    _ => format!("\\U{n:08x}"),
                });
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn words_are_quoted_only_where_a_shell_would_read_them_otherwise() {
        for (word, shown) in [
            ("ls", "ls"),
            ("/usr/bin/git", "/usr/bin/git"),
            ("--color=auto", "--color=auto"),
            ("", "''"),
            ("a b", "'a b'"),
            ("ls; rm x", "'ls; rm x'"),
            ("it's", r"'it'\''s'"),
            ("$HOME", "'$HOME'"),
            ("*", "'*'"),
            ("résumé", "'résumé'"),
            ("a\nb", r"$'a\nb'"),
            ("x\ty", r"$'x\ty'"),
            ("it's\u{202e}", r"$'it\'s\u202e'"),
            ("zero\u{200b}width", r"$'zero\u200bwidth'"),
            ("\u{1b}[2J", r"$'\x1b[2J'"),
        ] {
            assert_eq!(quote(word), shown, "{word:?}");
        }
        let line =
            |argv: &[&str]| command_line(&argv.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(
            line(&["sh", "-c", "ls && rm -rf ~"]),
            "sh -c 'ls && rm -rf ~'"
        );
        // A program named like an assignment or a keyword is not shown as one.
        assert_eq!(line(&["TZ=./UTC", "date"]), "'TZ=./UTC' date");
        assert_eq!(line(&["env", "A=b", "ls"]), "env A=b ls");
        for argv in [
            &["sh", "-c", "ls && rm -rf ~"][..],
            &["TZ=./UTC", "date"],
            &["if", "x"],
            &["time", "x"],
            &["env", "A=b", "ls"],
        ] {
            // Parsed back, the line gives the same words, the first still the command.
            let back = parse(&line(argv)).expect("parses");
            let back: Vec<&str> = back[0].iter().map(|w| w.text.as_str()).collect();
            assert_eq!(back, argv, "{}", line(argv));
        }
    }
}
