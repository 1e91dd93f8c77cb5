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
    insert_members_at(text, &[key], new, step)
}

/// As [`insert_members`], into the object at `path` (keys from the top:
/// `["projects", DIR, "mcpServers"]`); the objects missing on the way are
/// created.
///
/// # Errors
/// An [`EditError`]: the text has no top-level object, or a member on
/// the path is not an object.
pub fn insert_members_at(
    text: Option<&str>,
    path: &[&str],
    new: &[(String, Node<'_>)],
    step: &str,
) -> Result<String, EditError> {
    // What to add where the path stops existing: the rest of the path
    // around `new`.
    let nest = |rest: &[&str]| -> Vec<(String, Node<'static>)> {
        let mut members: Vec<(String, Node<'static>)> = new
            .iter()
            .map(|(name, node)| (name.clone(), node.to_owned_node()))
            .collect();
        for key in rest.iter().rev() {
            members = vec![((*key).to_owned(), Node::Object(members))];
        }
        members
    };
    let Some(text) = text else {
        let mut out = String::new();
        Node::Object(nest(path)).pretty("", step, &mut out);
        out.push('\n');
        return Ok(out);
    };
    let body = strip_bom(text);
    let mut target: &RawValue = serde_json::from_str(body).map_err(|_| EditError::NoTopObject)?;
    members(target.get()).map_err(|_| EditError::NoTopObject)?;
    let mut to_add = None;
    for (depth, key) in path.iter().enumerate() {
        let inside =
            members(target.get()).map_err(|_| EditError::NotAnObject(path[..depth].join(".")))?;
        match get(&inside, key) {
            Some(raw) => target = raw,
            None => {
                // `key` is created, holding the rest of the path.
                let rest = nest(&path[depth + 1..]);
                to_add = Some(vec![((*key).to_owned(), Node::Object(rest))]);
                break;
            }
        }
    }
    let members_to_add = match to_add {
        Some(members) => members,
        None => new.to_vec(),
    };
    let key = path.last().copied().unwrap_or("(the file)");
    insert_into(text, target, &members_to_add, step, key)
}

/// `text` with `members_to_add` added at the end of the object `target`
/// (a slice of `text`), indented like its members.
fn insert_into(
    text: &str,
    target: &RawValue,
    members_to_add: &[(String, Node<'_>)],
    step: &str,
    key: &str,
) -> Result<String, EditError> {
    let span = span_of(text, target.get())?;
    let existing = members(target.get()).map_err(|_| EditError::NotAnObject(key.to_owned()))?;
    let mut out = text.to_owned();
    match existing.last() {
        None => {
            let mut rendered = String::new();
            Node::Object(members_to_add.to_vec()).pretty(
                line_indent(text, span.start),
                step,
                &mut rendered,
            );
            out.replace_range(span, &rendered);
        }
        Some((_, last)) => {
            let end = span_of(text, last.get())?.end;
            let inner = &text[span.start + 1..];
            let lead = &inner[..inner.len() - inner.trim_start().len()];
            let mut insert = String::new();
            for (name, node) in members_to_add {
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

/// The span of the value at `path` (keys from the top), `None` when a key
/// on the way is missing.
///
/// # Errors
/// An [`EditError`]: the text has no top-level object, or a member on the
/// way is not an object.
pub fn find_at(text: &str, path: &[&str]) -> Result<Option<Range<usize>>, EditError> {
    match value_at(text, path)? {
        Some(target) => span_of(text, target.get()).map(Some),
        None => Ok(None),
    }
}

/// The value at `path`, borrowed from `text`; `None` when a key on the way
/// is missing.
fn value_at<'t>(text: &'t str, path: &[&str]) -> Result<Option<&'t RawValue>, EditError> {
    let body = strip_bom(text);
    let mut target: &RawValue = serde_json::from_str(body).map_err(|_| EditError::NoTopObject)?;
    members(target.get()).map_err(|_| EditError::NoTopObject)?;
    for (depth, key) in path.iter().enumerate() {
        let inside =
            members(target.get()).map_err(|_| EditError::NotAnObject(path[..depth].join(".")))?;
        match get(&inside, key) {
            Some(raw) => target = raw,
            None => return Ok(None),
        }
    }
    Ok(Some(target))
}

/// `text` with the value at `path` set to `node`: the existing value's span
/// replaced (on one line if it was, else indented like its line), or, when
/// missing, a new member inserted ([`insert_members_at`], creating the
/// objects on the way). Every other byte stays.
///
/// # Errors
/// An [`EditError`]: no top-level object, a member on the way is not an
/// object, or `path` is empty.
pub fn set_at(text: &str, path: &[&str], node: &Node<'_>, step: &str) -> Result<String, EditError> {
    let Some((name, parent)) = path.split_last() else {
        return Err(EditError::NoTopObject);
    };
    match find_at(text, path)? {
        Some(span) => {
            let mut rendered = String::new();
            if text[span.clone()].contains('\n') {
                node.pretty(line_indent(text, span.start), step, &mut rendered);
            } else {
                node.inline(&mut rendered);
            }
            replace_spans(text, vec![(span, rendered)])
        }
        None => insert_members_at(
            Some(text),
            parent,
            &[((*name).to_owned(), node.clone())],
            step,
        ),
    }
}

/// `text` without the member `name` of the object at `path` (its key, its
/// value and one comma with the whitespace before it; the first member
/// takes the whitespace up to the next key). Every other byte stays.
/// `Ok(None)`: there is no such member.
///
/// # Errors
/// An [`EditError`]: the text has no top-level object, a member on the
/// path is not an object, or the edit would not be JSON.
pub fn remove_member_at(
    text: &str,
    path: &[&str],
    name: &str,
) -> Result<Option<String>, EditError> {
    let Some(target) = value_at(text, path)? else {
        return Ok(None);
    };
    let object = span_of(text, target.get())?;
    let inside = members(target.get()).map_err(|_| EditError::NotAnObject(path.join(".")))?;
    let Some(index) = inside.iter().rposition(|(k, _)| k == name) else {
        return Ok(None);
    };
    let value = span_of(text, inside[index].1.get())?;
    let key_start = key_start(text, value.start).ok_or(EditError::OutsideText)?;
    let cut = if index > 0 {
        // From the end of the member before: its comma and this member.
        span_of(text, inside[index - 1].1.get())?.end..value.end
    } else if let Some((_, next)) = inside.get(1) {
        // The first member: up to the next key.
        let next_value = span_of(text, next.get())?;
        key_start..key_start_of_next(text, value.end, next_value.start)?
    } else {
        // The only member: the object becomes `{}`.
        object.start + 1..object.end - 1
    };
    replace_spans(text, vec![(cut, String::new())]).map(Some)
}

/// Where the key whose value starts at `value_start` starts: back over
/// whitespace, the `:`, whitespace and the string literal.
fn key_start(text: &str, value_start: usize) -> Option<usize> {
    let before = text[..value_start].trim_end();
    let before = before.strip_suffix(':')?.trim_end();
    let bytes = before.as_bytes();
    if bytes.last() != Some(&b'"') {
        return None;
    }
    // The opening quote: the nearest earlier `"` not escaped by an odd
    // number of backslashes.
    let mut at = bytes.len() - 1;
    while at > 0 {
        at -= 1;
        if bytes[at] == b'"' {
            let slashes = bytes[..at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if slashes % 2 == 0 {
                return Some(at);
            }
        }
    }
    None
}

/// The start of the key of the member after the one ending at `end`,
/// whose value starts at `next_value`.
fn key_start_of_next(text: &str, end: usize, next_value: usize) -> Result<usize, EditError> {
    key_start(text, next_value)
        .filter(|&start| start > end)
        .ok_or(EditError::OutsideText)
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
    /// The same value, owning its text.
    pub fn to_owned_node(&self) -> Node<'static> {
        match self {
            Node::Object(members) => Node::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_owned_node()))
                    .collect(),
            ),
            Node::Array(items) => Node::Array(items.iter().map(Node::to_owned_node).collect()),
            Node::Text(text) => Node::Text(Cow::Owned(text.clone().into_owned())),
        }
    }

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

    /// Members go into a nested object, creating what is missing on the
    /// way, indented like the file.
    #[test]
    fn members_are_inserted_at_a_path() {
        let text =
            "{\n  \"projects\": {\n    \"/p\": {\n      \"allowedTools\": []\n    }\n  }\n}\n";
        let out = insert_members_at(
            Some(text),
            &["projects", "/p", "mcpServers"],
            &[("y".into(), entry())],
            "  ",
        )
        .expect("inserted");
        assert_eq!(
            out,
            "{\n  \"projects\": {\n    \"/p\": {\n      \"allowedTools\": [],\n      \"mcpServers\": {\n        \"y\": {\n          \"command\": \"p\"\n        }\n      }\n    }\n  }\n}\n"
        );
        let out = insert_members_at(
            Some("{}"),
            &["projects", "/q", "mcpServers"],
            &[("y".into(), entry())],
            "  ",
        )
        .expect("inserted");
        let value: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(value["projects"]["/q"]["mcpServers"]["y"]["command"], "p");
    }

    /// A member is removed with one comma; every other byte stays; a
    /// missing one is `None`.
    #[test]
    fn members_are_removed_keeping_every_other_byte() {
        let text = "{\n  \"mcpServers\": {\n    \"a\": 1,\n    \"b\\\"\": {\"x\": [1]},\n    \"c\": 3\n  },\n  \"z\": 0\n}\n";
        let path = ["mcpServers"];
        let no_b = remove_member_at(text, &path, "b\"")
            .expect("edit")
            .expect("found");
        assert_eq!(
            no_b,
            "{\n  \"mcpServers\": {\n    \"a\": 1,\n    \"c\": 3\n  },\n  \"z\": 0\n}\n"
        );
        let no_a = remove_member_at(text, &path, "a")
            .expect("edit")
            .expect("found");
        assert_eq!(
            no_a,
            "{\n  \"mcpServers\": {\n    \"b\\\"\": {\"x\": [1]},\n    \"c\": 3\n  },\n  \"z\": 0\n}\n"
        );
        let no_c = remove_member_at(text, &path, "c")
            .expect("edit")
            .expect("found");
        assert_eq!(
            no_c,
            "{\n  \"mcpServers\": {\n    \"a\": 1,\n    \"b\\\"\": {\"x\": [1]}\n  },\n  \"z\": 0\n}\n"
        );
        let only = remove_member_at("{\"mcpServers\": {\"a\": 1}}", &path, "a").expect("edit");
        assert_eq!(only.as_deref(), Some("{\"mcpServers\": {}}"));
        assert_eq!(remove_member_at(text, &path, "nope").expect("edit"), None);
        assert_eq!(
            remove_member_at(text, &["nothing", "here"], "a").expect("edit"),
            None
        );
    }
}
