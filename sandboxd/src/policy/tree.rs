//! A TOML document as a tree whose every node remembers file, line and column,
//! so that validation (and `extends` merging across files) can name where a
//! value was written. Shared by profiles and the daemon config.

use super::model::Origin;
use std::collections::BTreeMap;
use toml::de::{DeTable, DeValue};

/// Where a node was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pos {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn origin(&self) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line,
        }
    }
}

/// A value that cannot be used: where, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl TreeError {
    /// An error about the value of `key` at `pos`.
    pub fn at(pos: &Pos, key: &str, message: impl std::fmt::Display) -> Self {
        TreeError {
            file: pos.file.clone(),
            line: pos.line,
            column: pos.column,
            message: format!("key `{key}`: {message}"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(String),
    Int(i128),
    Bool(bool),
    Array(Vec<Node>),
    Table(Table),
    /// Floats and datetimes: no setting takes them; kept to name the type.
    Other(&'static str),
}

/// A table: key -> (where the key was written, value).
pub(crate) type Table = BTreeMap<String, (Pos, Node)>;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
            Value::Other(t) => t,
        }
    }

    pub fn str(&self, key: &str) -> Result<&str, TreeError> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(TreeError::at(
                &self.pos,
                key,
                format!("expected a string, found {}", self.type_name()),
            )),
        }
    }

    pub fn bool(&self, key: &str) -> Result<bool, TreeError> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(TreeError::at(
                &self.pos,
                key,
                format!("expected true or false, found {}", self.type_name()),
            )),
        }
    }

    pub fn int(&self, key: &str) -> Result<i128, TreeError> {
        match &self.value {
            Value::Int(i) => Ok(*i),
            _ => Err(TreeError::at(
                &self.pos,
                key,
                format!("expected an integer, found {}", self.type_name()),
            )),
        }
    }

    pub fn array(&self, key: &str) -> Result<&[Node], TreeError> {
        match &self.value {
            Value::Array(a) => Ok(a),
            _ => Err(TreeError::at(
                &self.pos,
                key,
                format!("expected an array, found {}", self.type_name()),
            )),
        }
    }

    pub fn table(&self, key: &str) -> Result<&Table, TreeError> {
        match &self.value {
            Value::Table(t) => Ok(t),
            _ => Err(TreeError::at(
                &self.pos,
                key,
                format!("expected a table, found {}", self.type_name()),
            )),
        }
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<(&str, &Pos)>, TreeError> {
        self.array(key)?
            .iter()
            .map(|n| Ok((n.str(key)?, &n.pos)))
            .collect()
    }
}

/// Refuses any key of `table` not in `known`, naming it with its `prefix`.
pub(crate) fn known_keys(table: &Table, prefix: &str, known: &[&str]) -> Result<(), TreeError> {
    for (key, (pos, _)) in table {
        if !known.contains(&key.as_str()) {
            let full = join(prefix, key);
            return Err(TreeError::at(
                pos,
                &full,
                format!("unknown key (expected one of: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

/// `prefix.key`, or `key` at the top.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Parses `text` (read from `file`) into a located tree.
pub(crate) fn parse(file: &str, text: &str) -> Result<Table, TreeError> {
    let lines = LineIndex::new(text);
    let doc = DeTable::parse(text).map_err(|e| {
        let (line, column) = lines.locate(e.span().map(|s| s.start).unwrap_or(0));
        TreeError {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let conv = Converter {
        file,
        lines: &lines,
    };
    Ok(conv.table(doc.get_ref()))
}

struct Converter<'a> {
    file: &'a str,
    lines: &'a LineIndex,
}

impl Converter<'_> {
    fn pos(&self, offset: usize) -> Pos {
        let (line, column) = self.lines.locate(offset);
        Pos {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    fn table(&self, t: &DeTable<'_>) -> Table {
        t.iter()
            .map(|(k, v)| {
                (
                    k.get_ref().to_string(),
                    (self.pos(k.span().start), self.node(v)),
                )
            })
            .collect()
    }

    fn node(&self, v: &toml::Spanned<DeValue<'_>>) -> Node {
        let value = match v.get_ref() {
            DeValue::String(s) => Value::Str(s.to_string()),
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Value::Int(n),
                Err(_) => Value::Other("an integer out of range"),
            },
            DeValue::Float(_) => Value::Other("a float"),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(_) => Value::Other("a datetime"),
            DeValue::Array(a) => Value::Array(a.into_iter().map(|n| self.node(n)).collect()),
            DeValue::Table(t) => Value::Table(self.table(t)),
        };
        Node {
            value,
            pos: self.pos(v.span().start),
        }
    }
}

/// Byte offset -> 1-based line and column.
struct LineIndex {
    starts: Vec<usize>,
    text_len: usize,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            text_len: text.len(),
        }
    }

    fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text_len);
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.starts[line - 1] + 1)
    }
}

/// `extends`: `child` over `parent`. Tables merge, arrays append (parent's
/// entries first), anything else in the child overrides.
pub(crate) fn merge(parent: &Table, child: &Table) -> Table {
    let mut out = parent.clone();
    for (key, (kpos, cnode)) in child {
        let merged = match (out.get(key), &cnode.value) {
            (Some((_, pnode)), Value::Table(ct)) => match &pnode.value {
                Value::Table(pt) => Node {
                    value: Value::Table(merge(pt, ct)),
                    pos: cnode.pos.clone(),
                },
                _ => cnode.clone(),
            },
            (Some((_, pnode)), Value::Array(ca)) => match &pnode.value {
                Value::Array(pa) => {
                    let mut all = pa.clone();
                    all.extend(ca.iter().cloned());
                    Node {
                        value: Value::Array(all),
                        pos: cnode.pos.clone(),
                    }
                }
                _ => cnode.clone(),
            },
            _ => cnode.clone(),
        };
        out.insert(key.clone(), (kpos.clone(), merged));
    }
    out
}
