//! The reader of script text: lists, pipelines, groups, words, quotes and
//! redirections, down to the simple commands a script runs. Whatever
//! leaves the understood subset is refused with the reason. What a word
//! expands (`$...`, backquotes, double quotes) is read in `expansions`.

mod expansions;

use super::variables::{
    assignment_runs_code, chooses_code, code_variable, sets_startup_dir, startup_dir_why,
    COMMAND_VALUED,
};
use super::wrappers::runs_a_shell;
use super::{basename, nu, NotUnderstood, Word, MAX_NESTING};

/// [`parse`](super::parse) as bash reads the script, or (`posix`) as dash and posh do:
/// `$'...'` and `$"..."` are `$` and a quoted string, `&>` is `&` then `>`,
/// and `<<<` starts a here-document.
pub(super) fn parse_as(script: &str, posix: bool) -> Result<Vec<Vec<Word>>, NotUnderstood> {
    let mut p = Parser::new(script, 0, false);
    p.posix = posix;
    p.list(None)?;
    Ok(p.out)
}

/// `script` as bash reads it and as POSIX shells do, the commands of either
/// (bash's reading first), for text a shell that may be either will run.
pub(super) fn both_readings(
    script: &str,
    nesting: usize,
    startup_dir: bool,
) -> Result<Vec<Vec<Word>>, NotUnderstood> {
    let read = |posix| {
        let mut p = Parser::new(script, nesting, startup_dir);
        p.posix = posix;
        p.list(None).map(|()| p.out)
    };
    let mut commands = read(false)?;
    let seen: std::collections::HashSet<Vec<Word>> = commands.iter().cloned().collect();
    let posix = read(true)?;
    commands.extend(posix.into_iter().filter(|c| !seen.contains(c)));
    Ok(commands)
}

/// Words that open compound commands or belong to them.
pub(super) const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "select", "function", "in", "[[", "]]", "coproc",
];

/// A valid shell variable name.
pub(super) fn is_name(t: &str) -> bool {
    let mut chars = t.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `NAME=...` or `NAME+=...` with a valid variable name.
pub(super) fn is_assignment(t: &str) -> bool {
    let Some((name, _)) = t.split_once('=') else {
        return false;
    };
    is_name(name.strip_suffix('+').unwrap_or(name))
}

/// A word as read, with what the caller needs to classify it.
struct Raw {
    word: Word,
    /// No quoting or escapes: may be a reserved word or `{`/`}`.
    plain: bool,
    /// `NAME=value` with the name unquoted.
    assignment: bool,
}

struct Parser {
    chars: Vec<char>,
    /// For each position, the first one at or after it that is not the
    /// start of a backslash-newline: computed once, so that skipping a run
    /// of continuations never rescans it (reading stays linear).
    skip: Vec<usize>,
    pos: usize,
    nesting: usize,
    out: Vec<Vec<Word>>,
    /// `HOME` or `ZDOTDIR` was assigned earlier (or in this command): a
    /// shell run from here on may read startup files the script wrote.
    startup_dir: bool,
    /// Read as dash does, not as bash (see [`parse_as`]).
    posix: bool,
}

/// Characters that end an unquoted word.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
    )
}

impl Parser {
    fn new(script: &str, nesting: usize, startup_dir: bool) -> Parser {
        let chars: Vec<char> = script.chars().collect();
        let mut skip = vec![chars.len(); chars.len() + 1];
        for i in (0..chars.len()).rev() {
            skip[i] = if chars[i] == '\\' && chars.get(i + 1) == Some(&'\n') {
                skip[i + 2]
            } else {
                i
            };
        }
        Parser {
            chars,
            skip,
            pos: 0,
            nesting,
            out: Vec::new(),
            startup_dir,
            posix: false,
        }
    }

    /// `i`, past any backslash-newlines there: bash drops them as it reads,
    /// before tokens, quotes or expansions are seen (`i\<newline>f` is `if`),
    /// except in single quotes, `$'...'` and comments, which read raw.
    fn past_continuations(&self, i: usize) -> usize {
        self.skip.get(i).copied().unwrap_or(i)
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    /// The `n`th character ahead, line continuations dropped (`n` is small:
    /// a longer look ahead scans forward once itself, as in `io_number`).
    fn peek_at(&self, n: usize) -> Option<char> {
        let mut i = self.past_continuations(self.pos);
        for _ in 0..n {
            i = self.past_continuations(i + 1);
        }
        self.chars.get(i).copied()
    }

    /// Moves past `n` characters as [`Parser::peek_at`] counts them.
    fn bump(&mut self, n: usize) {
        for _ in 0..n {
            self.pos = self.past_continuations(self.pos) + 1;
        }
    }

    /// The character at the cursor as written (after a backslash, or
    /// where continuations are not dropped).
    fn raw(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// The commands of `value`, a command line another program will run,
    /// read as a script nested in this one and added to [`Parser::out`].
    /// The program may run it through `/bin/sh` (dash or bash), so it is
    /// read both ways; one that would not be a plain command line there
    /// (an assignment or a redirection, which a program splitting it into
    /// words would run as a program name) is not understood.
    fn value_commands(&mut self, value: &str) -> Result<(), NotUnderstood> {
        if value.contains(['=', '<', '>']) {
            return nu(format!("a command line {value:?} for another program"));
        }
        self.enter()?;
        let commands = both_readings(value, self.nesting, self.startup_dir);
        self.nesting -= 1;
        let commands = commands?;
        if commands.is_empty() {
            return nu(format!("a command line {value:?} that runs nothing"));
        }
        self.out.extend(commands);
        Ok(())
    }

    fn enter(&mut self) -> Result<(), NotUnderstood> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return nu(format!("nested deeper than {MAX_NESTING} levels"));
        }
        Ok(())
    }

    /// Spaces, tabs and line continuations.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t') => self.bump(1),
                _ => return,
            }
        }
    }

    /// Commands up to the end of input, or up to and including `closer`
    /// (`)` of a subshell or `$( )`).
    fn list(&mut self, closer: Option<char>) -> Result<(), NotUnderstood> {
        let mut words: Vec<Word> = Vec::new();
        let mut braces: i32 = 0;
        // A `( )` group just ended: only operators and redirections may follow.
        let mut after_group = false;
        // Assignments came first in this command (so `(` would make an array).
        let mut assigned = false;
        // Bash's `time` keyword and its options: 1 after `time`, 2 after
        // `-p`, 3 after `--`.
        let mut timed = 0u8;
        loop {
            self.skip_blanks();
            let Some(c) = self.peek() else {
                if closer.is_some() {
                    return nu("an unclosed `(`");
                }
                break;
            };
            let mut end_command = true;
            match c {
                // A comment reads raw: it ends at a newline even after a backslash.
                '#' => {
                    self.bump(1);
                    while self.raw().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                    end_command = false;
                }
                '\n' => self.bump(1),
                ';' => {
                    if self.peek_at(1) == Some(';') {
                        return nu("`;;` outside a case");
                    }
                    self.bump(1);
                }
                '&' if !self.posix && self.peek_at(1) == Some('>') => {
                    self.bump(1);
                    self.redirection()?;
                    end_command = false;
                }
                '&' | '|' => {
                    self.bump(1);
                    if matches!(self.peek(), Some('&' | '|')) {
                        self.bump(1);
                    }
                }
                ')' => {
                    if closer != Some(')') {
                        return nu("an unmatched `)`");
                    }
                    self.bump(1);
                    self.finish(&mut words)?;
                    break;
                }
                '(' => {
                    if !words.is_empty() || assigned || after_group {
                        return nu("a function definition or array");
                    }
                    if self.peek_at(1) == Some('(') {
                        return nu("an arithmetic command `((`");
                    }
                    self.bump(1);
                    self.enter()?;
                    self.list(Some(')'))?;
                    self.nesting -= 1;
                    after_group = true;
                    continue;
                }
                '<' | '>' => {
                    self.redirection()?;
                    end_command = false;
                }
                d if d.is_ascii_digit() && self.io_number() => {
                    self.redirection()?;
                    end_command = false;
                }
                _ => {
                    if after_group {
                        return nu("words after a `( )` group");
                    }
                    let raw = self.word()?;
                    end_command = false;
                    if words.is_empty() {
                        if raw.assignment {
                            let t = &raw.word.text;
                            let var = t.split(['=', '+']).next().unwrap_or(t);
                            let value = t.split_once('=').map(|(_, v)| v);
                            let literal = value.filter(|_| raw.word.literal && !t.contains("+="));
                            if let (true, Some(v)) = (COMMAND_VALUED.contains(&var), literal) {
                                let v = v.to_string();
                                self.value_commands(&v)?;
                                assigned = true;
                                continue;
                            }
                            if assignment_runs_code(var, literal) {
                                return code_variable(var);
                            }
                            self.startup_dir |= sets_startup_dir(var);
                            assigned = true;
                            continue;
                        }
                        // `NAME[KEY]=value` assigns an element of NAME.
                        let t = &raw.word.text;
                        if let Some((var, _)) = t.split_once('[') {
                            if chooses_code(var) && t.contains("]=") {
                                return code_variable(var);
                            }
                        }
                        // Another option after `time`: in dash `time` is the
                        // program /usr/bin/time, kept as its command, whose
                        // options `runs` looks through; bash may read it as
                        // its keyword, which runs the option word itself as
                        // the command (`time -f %e true` runs `-f`), or as
                        // the program (after a pipe or a redirection):
                        // there it is not understood.
                        let t = raw.word.text.as_str();
                        let time_option = (timed == 1 || timed == 2)
                            && raw.word.literal
                            && t.len() > 1
                            && t.starts_with('-')
                            && !(raw.plain && (t == "--" || (t == "-p" && timed == 1)));
                        if time_option && !self.posix {
                            return nu(format!(
                                "`time {t}`: bash's keyword runs `{t}`, /usr/bin/time an option"
                            ));
                        }
                        if time_option {
                            words.push(Word::literal("time"));
                            if timed == 2 {
                                words.push(Word::literal("-p"));
                            }
                            words.push(raw.word);
                            continue;
                        }
                        if raw.plain {
                            match raw.word.text.as_str() {
                                "{" => {
                                    braces += 1;
                                    continue;
                                }
                                "}" => {
                                    braces -= 1;
                                    if braces < 0 {
                                        return nu("an unmatched `}`");
                                    }
                                    continue;
                                }
                                "!" => continue,
                                "time" if !assigned => {
                                    if timed != 0 {
                                        return nu("`time time`");
                                    }
                                    timed = 1;
                                    continue;
                                }
                                "-p" if timed == 1 => {
                                    timed = 2;
                                    continue;
                                }
                                "--" if timed == 1 || timed == 2 => {
                                    timed = 3;
                                    continue;
                                }
                                t if RESERVED.contains(&t) => {
                                    return nu(format!(
                                        "`{t}` (compound commands are not supported)"
                                    ));
                                }
                                _ => {}
                            }
                        }
                    }
                    words.push(raw.word);
                }
            }
            if end_command {
                self.finish(&mut words)?;
                after_group = false;
                assigned = false;
                timed = 0;
            }
        }
        if braces != 0 {
            return nu("an unclosed `{`");
        }
        self.finish(&mut words)?;
        Ok(())
    }

    /// Ends a simple command; not understood when it may start a shell
    /// after `HOME` or `ZDOTDIR` changed (here, as `export HOME=x`, or earlier).
    fn finish(&mut self, words: &mut Vec<Word>) -> Result<(), NotUnderstood> {
        if words.is_empty() {
            return Ok(());
        }
        // `NAME=value` for env, export, ...; a bare name for builtins that
        // assign or export one.
        let by_name = matches!(
            basename(&words[0].text),
            "export"
                | "declare"
                | "typeset"
                | "local"
                | "readonly"
                | "read"
                | "printf"
                | "getopts"
                | "mapfile"
                | "readarray"
        );
        self.startup_dir |= words[1..]
            .iter()
            .any(|w| w.literal && sets_startup_dir(&w.text) && (by_name || w.text.contains('=')));
        if self.startup_dir && runs_a_shell(words) {
            return nu(startup_dir_why());
        }
        self.out.push(std::mem::take(words));
        Ok(())
    }

    /// Digits right before `<` or `>` (as in `2>&1`) are a descriptor, not a word.
    /// One forward scan: `peek_at(n)` for each `n` would be quadratic.
    fn io_number(&mut self) -> bool {
        let mut i = self.past_continuations(self.pos);
        while self.chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i = self.past_continuations(i + 1);
        }
        if matches!(self.chars.get(i), Some('<' | '>')) {
            self.pos = i;
            true
        } else {
            false
        }
    }

    /// A redirection operator at the cursor (or after `&` of `&>`) and its
    /// target word, which is dropped (its substitutions are still collected).
    fn redirection(&mut self) -> Result<(), NotUnderstood> {
        let c = self.peek();
        let next = self.peek_at(1);
        match (c, next) {
            (Some('<'), Some('<')) if !self.posix && self.peek_at(2) == Some('<') => self.bump(3),
            (Some('<'), Some('<')) => return nu("a here-document"),
            (Some('<' | '>'), Some('(')) => return nu("a process substitution"),
            (Some('<'), Some('&' | '>')) | (Some('>'), Some('&' | '>' | '|')) => self.bump(2),
            _ => self.bump(1),
        }
        self.skip_blanks();
        match self.peek() {
            Some(c) if !is_meta(c) => self.word().map(drop),
            _ => nu("a redirection without a target"),
        }
    }

    /// One word: quotes and escapes resolved, expansions noted (and command
    /// substitutions parsed into `out`).
    fn word(&mut self) -> Result<Raw, NotUnderstood> {
        let start = self.past_continuations(self.pos);
        let mut text = String::new();
        let mut literal = true;
        let mut plain = true;
        let mut assignment = false;
        let mut seen_eq = false;
        let mut bracket = false;
        let mut brace = false;
        while let Some(c) = self.peek() {
            if is_meta(c) {
                break;
            }
            match c {
                // Not before a newline (peek dropped that pair): it quotes
                // the next character as written.
                '\\' => {
                    plain = false;
                    self.bump(1);
                    match self.raw() {
                        Some(e) => {
                            text.push(e);
                            self.pos += 1;
                        }
                        None => text.push('\\'),
                    }
                }
                '\'' => {
                    plain = false;
                    self.bump(1);
                    loop {
                        match self.raw() {
                            None => return nu("an unterminated single quote"),
                            Some('\'') => break,
                            Some(q) => text.push(q),
                        }
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                '"' => {
                    plain = false;
                    self.bump(1);
                    literal &= self.double_quoted(&mut text)?;
                }
                '$' => {
                    plain = false;
                    literal &= self.dollar(&mut text, false)?;
                }
                '`' => {
                    plain = false;
                    literal = false;
                    self.backticks(false)?;
                }
                _ => {
                    match c {
                        '*' | '?' => literal = false,
                        '[' => bracket = true,
                        '{' | '}' => brace = true,
                        '~' if self.past_continuations(self.pos) == start => literal = false,
                        '=' if !seen_eq => {
                            seen_eq = true;
                            assignment = plain && is_assignment(&format!("{text}="));
                        }
                        _ => {}
                    }
                    text.push(c);
                    self.bump(1);
                }
            }
        }
        // `[` alone is the test command; `{`/`}` alone are grouping words.
        if (bracket && text != "[") || (brace && text != "{" && text != "}") {
            literal = false;
        }
        if !literal {
            // Its value is unknown: keep it as written, to name it.
            text = self.chars[start..self.pos].iter().collect();
        }
        Ok(Raw {
            word: Word { text, literal },
            plain,
            assignment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    fn texts(script: &str) -> Vec<Vec<String>> {
        parse(script)
            .unwrap_or_else(|e| panic!("{script:?}: {e}"))
            .into_iter()
            .map(|c| c.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn splits_lists_pipelines_and_groups() {
        let cases: &[(&str, &[&[&str]])] = &[
            ("ls && curl x | sh", &[&["ls"], &["curl", "x"], &["sh"]]),
            (
                "git status; rm -rf /",
                &[&["git", "status"], &["rm", "-rf", "/"]],
            ),
            ("a || b & c\nd", &[&["a"], &["b"], &["c"], &["d"]]),
            (
                "(cd x && make) ; { ls; }",
                &[&["cd", "x"], &["make"], &["ls"]],
            ),
            ("echo $(curl x)", &[&["curl", "x"], &["echo", "$(curl x)"]]),
            (
                "echo \"a $(id -u) b\"",
                &[&["id", "-u"], &["echo", "\"a $(id -u) b\""]],
            ),
            ("echo `whoami`", &[&["whoami"], &["echo", "`whoami`"]]),
            ("X=1 Y=\"2 3\" env", &[&["env"]]),
            ("X=$(curl x)", &[&["curl", "x"]]),
            (
                "echo x > /etc/f 2>&1; cat </dev/null >>log",
                &[&["echo", "x"], &["cat"]],
            ),
            ("ls -l # rm -rf /", &[&["ls", "-l"]]),
            ("'r''m' \"-rf\" \\/", &[&["rm", "-rf", "/"]]),
            ("echo a\\\nb", &[&["echo", "ab"]]),
            ("! grep x f |& tee y", &[&["grep", "x", "f"], &["tee", "y"]]),
            ("[ -f x ] && ls", &[&["[", "-f", "x", "]"], &["ls"]]),
            ("cmd &>/dev/null", &[&["cmd"]]),
            ("cat <<< \"$(curl x)\"", &[&["curl", "x"], &["cat"]]),
        ];
        for (script, want) in cases {
            let want: Vec<Vec<String>> = want
                .iter()
                .map(|c| c.iter().map(|s| s.to_string()).collect())
                .collect();
            assert_eq!(texts(script), want, "{script:?}");
        }
    }

    #[test]
    fn expansions_are_not_literal() {
        for (script, index, literal) in [
            ("$CMD x", 0, false),
            ("ls *.rs", 1, false),
            ("ls '*.rs'", 1, true),
            ("ls ~/x", 1, false),
            ("ls a~", 1, true),
            ("echo ${X:-y}", 1, false),
            ("echo $((1+2))", 1, false),
            ("echo a{b,c}", 1, false),
            ("echo '$X'", 1, true),
            ("echo \"$X\"", 1, false),
            ("echo \\$X", 1, true),
            ("echo $", 1, true),
        ] {
            let cmds = parse(script).unwrap();
            let w = &cmds.last().unwrap()[index];
            assert_eq!(w.literal, literal, "{script:?}: {w:?}");
        }
    }

    #[test]
    fn what_is_not_understood_says_why() {
        for (script, why) in [
            ("for i in 1 2; do rm $i; done", "`for`"),
            ("if true; then ls; fi", "`if`"),
            ("f() { ls; }; f", "function"),
            ("cat <<EOF\nx\nEOF", "here-document"),
            ("diff <(ls) x", "process substitution"),
            ("echo 'abc", "single quote"),
            ("echo \"abc", "double quote"),
            ("echo $(ls", "unclosed"),
            ("ls )", "unmatched `)`"),
            ("{ ls", "unclosed `{`"),
            ("a=(1 2)", "array"),
            ("((x++))", "arithmetic"),
            ("echo ${X:-$(curl x)}", "inside `${ }`"),
            ("echo ${X:-`curl x`}", "inside `${ }`"),
            // Bash ends `${` at the first `}`: the rest is a script.
            ("echo ${X:-{}; rm -rf /; : }", "`${ }`"),
            ("echo ${X:-'}'}", "`${ }`"),
            ("echo ${X@P}", "`${ }`"),
            ("echo ${a[0]} ${#a[@]}", "`${ }`"),
            ("echo ${x:1:2}", "`${ }`"),
            ("echo ${x: -1}", "`${ }`"),
            ("echo ${!x}", "`${ }`"),
            ("echo ${X/a/b}", "`${ }`"),
            ("echo ${#x:-y}", "`${ }`"),
            // Not arithmetic: bash runs it as a command substitution.
            ("echo $((rm -rf /); true)", "arithmetic"),
            // A name's value is evaluated too, and `a[$(rm -rf /)]` runs rm.
            ("x='a[$(rm -rf /)]'; echo $((x))", "arithmetic"),
            ("echo $((1) + (2))", "arithmetic"),
            ("echo $[x]", "arithmetic"),
            ("[[ -f x ]]", "`[[`"),
            ("[[ $x -eq 0 ]]", "`[[`"),
            ("ls >", "without a target"),
        ] {
            let e = parse(script).expect_err(script);
            assert!(e.0.contains(why), "{script:?}: {e}");
        }
        let deep = "$(".repeat(40) + &")".repeat(40);
        assert!(parse(&deep).unwrap_err().0.contains("nested"));
    }

    #[test]
    fn plain_expansions_are_understood() {
        for (script, want) in [
            ("echo ${HOME}", &["echo", "${HOME}"][..]),
            ("echo ${X:-default}", &["echo", "${X:-default}"]),
            (
                "echo ${#x} ${#} ${10} ${!} ${@}",
                &["echo", "${#x}", "${#}", "${10}", "${!}", "${@}"],
            ),
            (
                "echo ${X%/*} ${X##*/} ${X:=y}",
                &["echo", "${X%/*}", "${X##*/}", "${X:=y}"],
            ),
            ("echo \"${X:+a b}\"", &["echo", "\"${X:+a b}\""]),
            (
                "echo ${X:-$HOME} ${X:-${Y:-z}}",
                &["echo", "${X:-$HOME}", "${X:-${Y:-z}}"],
            ),
            ("echo ${X:-a}}", &["echo", "${X:-a}}"]),
            (
                "echo $((1 + 2*3)) $(( (1<<2) % 3 ))",
                &["echo", "$((1 + 2*3))", "$(( (1<<2) % 3 ))"],
            ),
        ] {
            assert_eq!(texts(script), [want], "{script:?}");
        }
        assert_eq!(
            texts("cd \"$d\" && make; echo $(date)"),
            [
                &["cd", "\"$d\""][..],
                &["make"],
                &["date"],
                &["echo", "$(date)"]
            ]
        );
    }

    /// A command line set for another program to run (`PAGER=cat git log`)
    /// is judged as the commands it runs.
    #[test]
    fn command_valued_variables_are_judged_by_their_value() {
        let texts = |script: &str| -> Vec<Vec<String>> {
            parse(script)
                .unwrap()
                .into_iter()
                .map(|c| c.into_iter().map(|w| w.text).collect())
                .collect()
        };
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            texts("PAGER=cat git log"),
            [w(&["cat"]), w(&["git", "log"])]
        );
        assert_eq!(
            texts("GIT_EDITOR='rm -rf /;' git commit"),
            [w(&["rm", "-rf", "/"]), w(&["git", "commit"])]
        );
        assert_eq!(
            texts("EDITOR=true GIT_PAGER='less -R' git rebase --continue"),
            [
                w(&["true"]),
                w(&["less", "-R"]),
                w(&["git", "rebase", "--continue"])
            ]
        );
        // Read as /bin/sh may read it too (dash: `&` then `>`), and not
        // understood where a program splitting it into words would run
        // another name (`A=./x`, `>./x`).
        for script in [
            "GIT_PAGER='true &>/dev/null rm -rf /' git log",
            "PAGER='A=./x' git log",
            "PAGER='>./x' git log",
            "MANPAGER=./x man ls",
        ] {
            assert!(parse(script).is_err(), "{script:?}");
        }
    }

    fn commands(script: &str) -> Option<Vec<Vec<String>>> {
        parse(script).ok().map(|cs| {
            cs.into_iter()
                .map(|c| c.into_iter().map(|w| w.text).collect())
                .collect()
        })
    }

    /// Bash drops a backslash-newline before it reads anything else, except
    /// in single quotes, `$'...'` and comments.
    #[test]
    fn backslash_newline_is_dropped_before_anything_else() {
        let rm = || Some(vec![vec!["rm".to_string(), "-rf".into(), "/".into()]]);
        let cases: &[(&str, Option<Vec<Vec<String>>>)] = &[
            (
                "apt-get install -y \\\n  curl \\\n  git",
                Some(vec![vec![
                    "apt-get".into(),
                    "install".into(),
                    "-y".into(),
                    "curl".into(),
                    "git".into(),
                ]]),
            ),
            ("A\\\n=1 rm -rf /", rm()),
            ("r\\\nm -rf /", rm()),
            ("ls # x \\\nrm -rf /", {
                let mut v = vec![vec!["ls".to_string()]];
                v.extend(rm().unwrap());
                Some(v)
            }),
            (
                "echo 'a\\\nb'",
                Some(vec![vec!["echo".into(), "a\\\nb".into()]]),
            ),
            (
                "echo a\\\\\nb",
                Some(vec![vec!["echo".into(), "a\\".into()], vec!["b".into()]]),
            ),
            ("i\\\nf true; t\\\nhen rm -rf /; f\\\ni", None),
            ("echo $(\\\n(x))", None),
            ("(\\\n(x))", None),
            ("echo \"$\\\n{x@P}\"", None),
            ("echo $\\\n{x@P}", None),
            ("echo ${x\\\n@P}", None),
        ];
        for (script, want) in cases {
            assert_eq!(&commands(script), want, "{script:?}");
        }
        // The substitution is found, wherever the line breaks.
        for script in [
            "echo \"$\\\n(rm -rf /)\"",
            "echo $\\\n(rm -rf /)",
            "echo `r\\\nm -rf /`",
            "echo \"`rm -rf \\\n/`\"",
        ] {
            let cs = commands(script).unwrap_or_else(|| panic!("{script:?}"));
            assert!(cs.contains(&rm().unwrap()[0]), "{script:?}: {cs:?}");
        }
    }

    /// In double quotes, bash also unescapes `\"` in backquoted text.
    #[test]
    fn backquotes_in_double_quotes_unescape_quotes() {
        let rm = vec!["rm".to_string(), "-rf".into(), "/".into()];
        for script in [
            "echo \"`echo \"a\\\" ; rm -rf / ; \\\"b\"`\"",
            "echo \"`echo \\\"a\\\" ; rm -rf / ; \\\"b\\\"`\"",
        ] {
            let cs = commands(script).unwrap_or_else(|| panic!("{script:?}"));
            assert!(cs.contains(&rm), "{script:?}: {cs:?}");
        }
        // Outside double quotes `\"` stays escaped.
        assert_eq!(
            commands("echo `echo \\\"a ; b\\\"`"),
            Some(vec![
                vec!["echo".to_string(), "\"a".into()],
                vec!["b\"".into()],
                vec!["echo".into(), "`echo \\\"a ; b\\\"`".into()],
            ])
        );
    }

    /// Bash's `time [-p] [--]` is a keyword: the next word is in command
    /// position, where `!` and reserved words are what they are.
    #[test]
    fn time_keyword_leaves_command_position() {
        let rm = || vec![vec!["rm".to_string(), "-rf".into(), "/".into()]];
        let cases: &[(&str, Option<Vec<Vec<String>>>)] = &[
            ("time ! rm -rf /", Some(rm())),
            ("time -p ! rm -rf /", Some(rm())),
            ("time -p -- rm -rf /", Some(rm())),
            ("time -- rm -rf /", Some(rm())),
            ("! time rm -rf /", Some(rm())),
            (
                "time rm -rf / | time -p rm -rf /",
                Some([rm(), rm()].concat()),
            ),
            ("time [[ -f x ]]", None),
            ("time if true; then rm -rf /; fi", None),
            ("time -p { rm -rf /; }", Some(rm())),
            ("time time rm", None),
            // Another option: bash's keyword would run `-p` itself.
            ("time -p -p x", None),
            // Not in command position, or quoted: the program.
            (
                "A=1 time ls",
                Some(vec![vec!["time".to_string(), "ls".into()]]),
            ),
            (
                "'time' ls",
                Some(vec![vec!["time".to_string(), "ls".into()]]),
            ),
        ];
        for (script, want) in cases {
            assert_eq!(&commands(script), want, "{script:?}");
        }
    }

    /// Reading is linear: a long run of one character (a descriptor's
    /// digits, `(`, `$`, line continuations, quotes) is parsed in time
    /// proportional to it. A guard against quadratic rescans, not a benchmark.
    #[test]
    fn long_runs_parse_in_linear_time() {
        // Quadratic reading would take minutes at this size.
        let size = 256 << 10;
        for unit in ["1", "(", "$", "\\\n", "'", "1 ", "a\\\n", "\"$"] {
            let script = unit.repeat(size / unit.len());
            for script in [
                script.clone(),
                format!("{script}>x"),
                format!("echo {script}"),
            ] {
                let start = std::time::Instant::now();
                let _ = parse(&script);
                let took = start.elapsed();
                assert!(
                    took < std::time::Duration::from_secs(5),
                    "{unit:?} x {}: {took:?}",
                    script.len()
                );
            }
        }
    }
}
