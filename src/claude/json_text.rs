//! Edits of a JSON file's text that keep every other byte.
//!
//! Claude's files hold much more than servers (history, settings, other
//! tools' keys) and the user may have formatted them by hand. So instead
//! of parsing into a value and writing it back, an object's members are
//! read as borrowed [`RawValue`]s in file order ([`members`]), located as
//! byte spans in the text by pointer arithmetic ([`span_of`]), and only
//! those spans are replaced or new members inserted
//! ([`replace_spans`], [`insert_members`]), indented like their
//! surroundings. What is written is a [`Node`]: objects and arrays in their
//! given order, every scalar as its exact source text.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::files::strip_bom;

/// Why a text edit could not be made (the text is not what its caller
/// checked it to be: an internal error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("a JSON value outside its text")]
    OutsideText,
    #[error("no top-level object")]
    NoTopObject,
    #[error("{0} not an object")]
    NotAnObject(String),
    #[error("the edited text would not be JSON")]
    NotJson,
}

/// An object's members in file order, each value borrowed from the text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Collect;
        impl<'de> Visitor<'de> for Collect {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Collect)
    }
}

/// The members of the object `text`, in file order, each value borrowed.
///
/// # Errors
/// `text` is not JSON, or not an object ([`serde_json::Error::is_data`]).
pub fn members(text: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    serde_json::from_str::<Members<'_>>(text).map(|m| m.0)
}

/// The last member named `key` (JSON.parse keeps the last of duplicates).
pub fn get<'a>(members: &[(String, &'a RawValue)], key: &str) -> Option<&'a RawValue> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
}

/// Where `part`, which borrows from `text`, lies in it.
///
/// # Errors
/// [`EditError::OutsideText`]: `part` is not a slice of `text`.
pub fn span_of(text: &str, part: &str) -> Result<Range<usize>, EditError> {
    (part.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .map(|start| start..start + part.len())
        .filter(|span| span.end <= text.len())
        .ok_or(EditError::OutsideText)
}

/// The whitespace that starts the line holding byte `at`.
pub fn line_indent(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The file's indentation unit: the leading whitespace of its first
/// indented line ("  " when there is none).
pub fn indent_step(text: &str) -> String {
    text.lines()
        .map(|line| {
            let rest = line.trim_start_matches([' ', '\t']);
            (&line[..line.len() - rest.len()], rest)
        })
        .find(|(indent, rest)| !indent.is_empty() && !rest.is_empty())
        .map_or_else(|| "  ".to_owned(), |(indent, _)| indent.to_owned())
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// `text` with each span replaced (spans must not overlap), checked to be
/// JSON still.
///
/// # Errors
/// [`EditError::NotJson`]: the result would not parse.
pub fn replace_spans(
    text: &str,
    mut edits: Vec<(Range<usize>, String)>,
) -> Result<String, EditError> {
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut out = text.to_owned();
    for (span, replacement) in edits {
        out.replace_range(span, &replacement);
    }
    serde_json::from_str::<serde::de::IgnoredAny>(strip_bom(&out))
        .map_err(|_| EditError::NotJson)?;
    Ok(out)
}

/// `text` (a JSON object; `None`: no file yet) with `new` added to its
/// object member `key`, which is created if missing. Every other byte
/// stays; new members are indented like the object's first member (on one
/// line if it is), `step` deeper per level.
///
/// # Errors
/// An [`EditError`]: the text has no top-level object, or `key` is not an
/// object.
pub fn insert_members(
    text: Option<&str>,
    key: &str,
    new: &[(String, Node<'_>)],
    step: &str,
) -> Result<String, EditError> {
    let object = Node::Object(
        new.iter()
            .map(|(name, node)| (name.clone(), node.clone()))
            .collect(),
    );
    let Some(text) = text else {
        let mut out = String::new();
        Node::Object(vec![(key.to_owned(), object)]).pretty("", step, &mut out);
        out.push('\n');
        return Ok(out);
    };
    let body = strip_bom(text);
    let top = members(body).map_err(|_| EditError::NoTopObject)?;
    let (target, members_to_add) = match get(&top, key) {
        Some(raw) => (raw, new.to_vec()),
        None => {
            let raw: &RawValue = serde_json::from_str(body).map_err(|_| EditError::NoTopObject)?;
            (raw, vec![(key.to_owned(), object)])
        }
    };
    let span = span_of(text, target.get())?;
    let existing = members(target.get()).map_err(|_| EditError::NotAnObject(key.to_owned()))?;
    let mut out = text.to_owned();
    match existing.last() {
        None => {
            let mut rendered = String::new();
            Node::Object(members_to_add).pretty(line_indent(text, span.start), step, &mut rendered);
            out.replace_range(span, &rendered);
        }
        Some((_, last)) => {
            let end = span_of(text, last.get())?.end;
            let inner = &text[span.start + 1..];
            let lead = &inner[..inner.len() - inner.trim_start().len()];
            let mut insert = String::new();
            for (name, node) in &members_to_add {
                insert.push(',');
                match lead.rfind('\n') {
                    Some(cut) => {
                        let indent = &lead[cut + 1..];
                        insert.push('\n');
                        insert.push_str(indent);
                        insert.push_str(&json_string(name));
                        insert.push_str(": ");
                        node.pretty(indent, step, &mut insert);
                    }
                    None => {
                        insert.push(' ');
                        insert.push_str(&json_string(name));
                        insert.push_str(": ");
                        node.inline(&mut insert);
                    }
                }
            }
            out.insert_str(end, &insert);
        }
    }
    Ok(out)
}

/// A JSON value to write: objects and arrays in their given order, every
/// scalar as its exact source text.
#[derive(Debug, Clone)]
pub enum Node<'a> {
    Object(Vec<(String, Node<'a>)>),
    Array(Vec<Node<'a>>),
    /// A scalar (or anything else) as JSON text.
    Text(Cow<'a, str>),
}

impl<'a> Node<'a> {
    /// A JSON string.
    pub fn string(text: &str) -> Node<'a> {
        Node::Text(Cow::Owned(json_string(text)))
    }

    /// An array of JSON strings.
    pub fn strings<S: AsRef<str>>(items: &[S]) -> Node<'a> {
        Node::Array(items.iter().map(|s| Node::string(s.as_ref())).collect())
    }

    /// The value `raw`, its objects and arrays opened up (so they can be
    /// re-indented), its scalars as written.
    pub fn from_raw(raw: &'a RawValue) -> Node<'a> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => match members(text) {
                Ok(m) => Node::Object(m.into_iter().map(|(k, v)| (k, Node::from_raw(v))).collect()),
                Err(_) => Node::Text(Cow::Borrowed(text)),
            },
            Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => Node::Array(items.into_iter().map(Node::from_raw).collect()),
                Err(_) => Node::Text(Cow::Borrowed(text)),
            },
            _ => Node::Text(Cow::Borrowed(text)),
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value this text stands for.
    ///
    /// # Errors
    /// A scalar's text is not JSON.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let mut text = String::new();
        self.inline(&mut text);
        serde_json::from_str(&text)
    }

    /// Multi-line, members at `indent` + `step`, closing at `indent`.
    pub fn pretty(&self, indent: &str, step: &str, out: &mut String) {
        let inner = format!("{indent}{step}");
        match self {
            Node::Text(text) => out.push_str(text),
            Node::Object(members) if members.is_empty() => out.push_str("{}"),
            Node::Array(items) if items.is_empty() => out.push_str("[]"),
            Node::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&inner);
                    out.push_str(&json_string(key));
                    out.push_str(": ");
                    value.pretty(&inner, step, out);
                }
                out.push('\n');
                out.push_str(indent);
                out.push('}');
            }
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&inner);
                    item.pretty(&inner, step, out);
                }
                out.push('\n');
                out.push_str(indent);
                out.push(']');
            }
        }
    }

    /// On one line: `{"a": 1, "b": [2, 3]}`.
    pub fn inline(&self, out: &mut String) {
        match self {
            Node::Text(text) => out.push_str(text),
            Node::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&json_string(key));
                    out.push_str(": ");
                    value.inline(out);
                }
                out.push('}');
            }
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.inline(out);
                }
                out.push(']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Node<'static> {
        Node::Object(vec![("command".to_owned(), Node::string("p"))])
    }

    /// New members go after the last one, indented like the first; every
    /// other byte stays.
    #[test]
    fn members_are_inserted_keeping_every_other_byte() {
        let text = "{\n    \"a\": 1,\n    \"mcpServers\": {\n        \"x\": {}\n    },\n    \"z\": [ 1,2 ]\n}\n";
        let out = insert_members(Some(text), "mcpServers", &[("y".into(), entry())], "    ")
            .expect("inserted");
        assert_eq!(
            out,
            "{\n    \"a\": 1,\n    \"mcpServers\": {\n        \"x\": {},\n        \"y\": {\n            \"command\": \"p\"\n        }\n    },\n    \"z\": [ 1,2 ]\n}\n"
        );
    }

    /// A one-line object gets one-line members; a missing key is created;
    /// no file gives a new document.
    #[test]
    fn the_object_is_created_and_one_line_objects_stay_on_one_line() {
        let one_line = "{\"mcpServers\": {\"x\": 1}}";
        let out = insert_members(Some(one_line), "mcpServers", &[("y".into(), entry())], "  ")
            .expect("inserted");
        assert_eq!(
            out,
            "{\"mcpServers\": {\"x\": 1, \"y\": {\"command\": \"p\"}}}"
        );
        let out = insert_members(
            Some("{\"k\": true}"),
            "mcpServers",
            &[("y".into(), entry())],
            "  ",
        )
        .expect("inserted");
        let value: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(value["k"], true);
        assert_eq!(value["mcpServers"]["y"]["command"], "p");
        let out =
            insert_members(None, "mcpServers", &[("y".into(), entry())], "  ").expect("inserted");
        assert_eq!(
            out,
            "{\n  \"mcpServers\": {\n    \"y\": {\n      \"command\": \"p\"\n    }\n  }\n}\n"
        );
        assert_eq!(
            insert_members(Some("[1]"), "mcpServers", &[], "  "),
            Err(EditError::NoTopObject)
        );
        assert_eq!(
            insert_members(Some("{\"mcpServers\": 3}"), "mcpServers", &[], "  "),
            Err(EditError::NotAnObject("mcpServers".into()))
        );
    }

    /// Spans are found in the text and replaced; a result that is not JSON
    /// is refused.
    #[test]
    fn spans_are_replaced() {
        let text = "{\"a\":  {\"b\": 1} , \"c\": 2}";
        let top = members(text).expect("members");
        let span = span_of(text, get(&top, "a").expect("a").get()).expect("span");
        assert_eq!(&text[span.clone()], "{\"b\": 1}");
        assert_eq!(
            replace_spans(text, vec![(span.clone(), "null".into())]).expect("edited"),
            "{\"a\":  null , \"c\": 2}"
        );
        assert_eq!(
            replace_spans(text, vec![(span, "{".into())]),
            Err(EditError::NotJson)
        );
        let elsewhere = String::from("elsewhere");
        assert_eq!(span_of(text, &elsewhere), Err(EditError::OutsideText));
        assert_eq!(indent_step("{\n\t\"a\": 1\n}"), "\t");
        assert_eq!(line_indent("{\n    \"a\": 1", 8), "    ");
    }
}
