//! What the shell expands in a word: double-quoted text, `$name`, `${...}`,
//! `$((...))`, `$( )` and backquotes. Command substitutions are read as
//! scripts nested in the one being read; an expansion that could run code
//! or assign a variable that chooses it is refused.

use super::Parser;
use crate::policy::shell::variables::{chooses_code, code_variable, sets_startup_dir};
use crate::policy::shell::{nu, NotUnderstood};

impl Parser {
    /// The inside of `"..."` (the cursor is past the opening quote); false
    /// when it holds an expansion.
    pub(super) fn double_quoted(&mut self, text: &mut String) -> Result<bool, NotUnderstood> {
        let mut literal = true;
        loop {
            match self.peek() {
                None => return nu("an unterminated double quote"),
                Some('"') => {
                    self.bump(1);
                    return Ok(literal);
                }
                Some('\\') => {
                    self.bump(1);
                    match self.raw() {
                        Some(e @ ('$' | '`' | '"' | '\\')) => text.push(e),
                        Some(e) => {
                            text.push('\\');
                            text.push(e);
                        }
                        None => return nu("an unterminated double quote"),
                    }
                    self.pos += 1;
                }
                Some('$') => literal &= self.dollar(text, true)?,
                Some('`') => {
                    literal = false;
                    self.backticks(true)?;
                }
                Some(c) => {
                    text.push(c);
                    self.bump(1);
                }
            }
        }
    }

    /// `$...` at the cursor; false when it expands (always, except a lone `$`).
    pub(super) fn dollar(
        &mut self,
        text: &mut String,
        quoted: bool,
    ) -> Result<bool, NotUnderstood> {
        self.bump(1);
        match self.peek() {
            Some('(') if self.peek_at(1) == Some('(') => self.arithmetic()?,
            Some('(') => {
                self.bump(1);
                self.enter()?;
                self.list(Some(')'))?;
                self.nesting -= 1;
            }
            Some('{') => {
                self.enter()?;
                self.braced()?;
                self.nesting -= 1;
            }
            Some('[') => return nu("a `$[ ]` arithmetic expansion"),
            // In dash a `$` before a quote is just a `$`.
            Some('\'' | '"') if self.posix => {
                text.push('$');
                return Ok(true);
            }
            Some('\'') if !quoted => {
                // $'...': escapes are not decoded, so the text stays unknown.
                self.bump(1);
                loop {
                    match self.raw() {
                        None => return nu("an unterminated $'...'"),
                        Some('\\') => self.pos += 2,
                        Some('\'') => break,
                        Some(_) => self.pos += 1,
                    }
                }
                self.pos += 1;
            }
            Some('"') if !quoted => {
                // $"...": a translated string; the translation is unknown.
                self.bump(1);
                self.double_quoted(&mut String::new())?;
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.bump(1);
                }
            }
            Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => self.bump(1),
            _ => {
                text.push('$');
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `$((...))` from its first `(`: understood only when it holds numbers,
    /// blanks, operators and parentheses. Bash evaluates a name's value as
    /// arithmetic too, and a subscript there (`x='a[$(rm -rf /)]'`) runs a
    /// command; and `$((cmd); x)`, not being arithmetic, is a command
    /// substitution.
    fn arithmetic(&mut self) -> Result<(), NotUnderstood> {
        self.bump(2);
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return nu("an unclosed arithmetic `$((`"),
                Some('(') => depth += 1,
                Some(')') if depth > 0 => depth -= 1,
                Some(')') if self.peek_at(1) == Some(')') => {
                    self.bump(2);
                    return Ok(());
                }
                Some(')') => return nu("a `$((` that is not closed as arithmetic"),
                Some(c) if c.is_ascii_digit() || " \t\n+-*/%<>=!&|^~?:,".contains(c) => {}
                Some(c) => {
                    return nu(format!(
                        "`{c}` in arithmetic `$(( ))` (only numbers and operators are understood)"
                    ))
                }
            }
            self.bump(1);
        }
    }

    /// `${...}` from its `{`. Understood: a name, a positional or special
    /// parameter, `#` and one of those (length), or one of those, an
    /// operator (`-`, `=`, `+`, `?`, each also after `:`; `#`, `##`, `%`,
    /// `%%`) and a word of plain characters, `$NAME` and such `${...}`.
    /// Bash ends that word at its first `}` (a `{` does not nest). Anything
    /// else (subscripts, `@` transformations, substrings, which are
    /// arithmetic, `!` indirection, quotes) is not understood.
    fn braced(&mut self) -> Result<(), NotUnderstood> {
        let inside = |c: char| {
            nu(format!(
                "`{c}` inside `${{ }}` (only plain parameter expansions are understood)"
            ))
        };
        self.bump(1);
        let length = self.peek() == Some('#') && self.peek_at(1).is_some_and(|c| c != '}');
        if length {
            self.bump(1);
        }
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                    self.bump(1);
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump(1);
                }
            }
            Some(c) if "@*#?-$!".contains(c) => self.bump(1),
            Some(c) => return inside(c),
            None => return nu("an unclosed `${`"),
        }
        let operator = match (self.peek(), self.peek_at(1)) {
            (Some('}'), _) => {
                self.bump(1);
                return Ok(());
            }
            (Some(c), _) if length => return inside(c),
            (Some(':'), Some('-' | '=' | '+' | '?'))
            | (Some('#'), Some('#'))
            | (Some('%'), Some('%')) => 2,
            (Some('-' | '=' | '+' | '?' | '#' | '%'), _) => 1,
            (Some(c), _) => return inside(c),
            (None, _) => return nu("an unclosed `${`"),
        };
        // `${V=x}` and `${V:=x}` assign V.
        let assigns = matches!(
            (self.peek(), self.peek_at(1)),
            (Some('='), _) | (Some(':'), Some('='))
        );
        if assigns && chooses_code(&name) {
            return code_variable(&name);
        }
        self.startup_dir |= assigns && sets_startup_dir(&name);
        self.bump(operator);
        loop {
            match self.peek() {
                None => return nu("an unclosed `${`"),
                Some('}') => {
                    self.bump(1);
                    return Ok(());
                }
                Some('$') => match self.peek_at(1) {
                    Some('(') => return nu("a command substitution inside `${ }`"),
                    Some('{') => {
                        self.bump(1);
                        self.enter()?;
                        self.braced()?;
                        self.nesting -= 1;
                    }
                    Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                        self.bump(1);
                        while self
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            self.bump(1);
                        }
                    }
                    Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => self.bump(2),
                    _ => return inside('$'),
                },
                Some('`') => return nu("a command substitution inside `${ }`"),
                Some(c @ ('{' | '(' | '\'' | '"' | '\\')) => return inside(c),
                Some(_) => self.bump(1),
            }
        }
    }

    /// `` `...` ``: the inside is unescaped and parsed as a script of its own;
    /// within double quotes (`quoted`) `\"` is unescaped too.
    pub(super) fn backticks(&mut self, quoted: bool) -> Result<(), NotUnderstood> {
        self.bump(1);
        let mut inner = String::new();
        loop {
            match self.peek() {
                None => return nu("an unterminated backquote"),
                Some('`') => break,
                Some('\\') => {
                    self.bump(1);
                    match self.raw() {
                        Some(e @ ('`' | '\\' | '$')) => inner.push(e),
                        Some('"') if quoted => inner.push('"'),
                        Some(e) => {
                            inner.push('\\');
                            inner.push(e);
                        }
                        None => return nu("an unterminated backquote"),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    inner.push(c);
                    self.bump(1);
                }
            }
        }
        self.bump(1);
        self.enter()?;
        let mut sub = Parser::new(&inner, self.nesting, self.startup_dir);
        sub.posix = self.posix;
        sub.list(None)?;
        self.nesting -= 1;
        self.startup_dir |= sub.startup_dir;
        self.out.append(&mut sub.out);
        Ok(())
    }
}
