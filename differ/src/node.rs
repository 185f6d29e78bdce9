//! A borrowed JSON tree: strings and keys point into the input when they have no escapes, and
//! objects are one sorted `Vec`. Parsing a response body into it allocates a fraction of what a
//! `serde_json::Value` does, which is most of the differ's time.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Self::I(i) => i as f64,
            Self::U(u) => u as f64,
            Self::F(f) => f,
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, Self::F(_))
    }

    /// The integer value, when it is one (including floats with no fraction in exact range).
    pub fn as_i128(self) -> Option<i128> {
        match self {
            Self::I(i) => Some(i128::from(i)),
            Self::U(u) => Some(i128::from(u)),
            // Every finite float without a fraction is an exact integer; i128 holds it exactly
            // up to ~1.7e38, so hashing and equality agree on `1e16` vs `10000000000000000`.
            Self::F(f) if f.fract() == 0.0 && f.abs() < 1.0e38 => Some(f as i128),
            Self::F(_) => None,
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::I(i) => write!(f, "{i}"),
            Self::U(u) => write!(f, "{u}"),
            // serde_json's own float formatting, so excerpts read like the body did.
            Self::F(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "null"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Num),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key; a repeated key keeps its last value (as serde_json does).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
    /// A subtree of a `serde_json::Value` nested too deep to convert, kept as its hash.
    Deep(u64),
}

/// Values nested deeper than this are not converted (see [`Node::Deep`]).
const MAX_CONVERTED_DEPTH: usize = 200;

impl<'a> Node<'a> {
    /// Parses JSON, borrowing from `bytes` where it can.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        // One (vectorised) UTF-8 check of the whole body lets serde_json skip its check of every
        // string; invalid UTF-8 goes the slow way so that the error says where.
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// A view of a `serde_json::Value` (strings borrowed).
    pub fn from_value(v: &'a serde_json::Value) -> Self {
        Self::from_value_at(v, 0)
    }

    fn from_value_at(v: &'a serde_json::Value, depth: usize) -> Self {
        if depth >= MAX_CONVERTED_DEPTH
            && matches!(
                v,
                serde_json::Value::Array(_) | serde_json::Value::Object(_)
            )
        {
            return Node::Deep(hash_serde_value(v));
        }
        match v {
            serde_json::Value::Null => Node::Null,
            serde_json::Value::Bool(b) => Node::Bool(*b),
            serde_json::Value::Number(n) => Node::Number(if let Some(i) = n.as_i64() {
                Num::I(i)
            } else if let Some(u) = n.as_u64() {
                Num::U(u)
            } else {
                Num::F(n.as_f64().unwrap_or(f64::NAN))
            }),
            serde_json::Value::String(s) => Node::String(Cow::Borrowed(s)),
            serde_json::Value::Array(items) => Node::Array(
                items
                    .iter()
                    .map(|x| Node::from_value_at(x, depth + 1))
                    .collect(),
            ),
            // serde_json's default map is already sorted by key.
            serde_json::Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value_at(v, depth + 1)))
                    .collect(),
            ),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// Value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|i| &entries[i].1),
            _ => None,
        }
    }
}

/// A hash of a `serde_json::Value` without recursion.
fn hash_serde_value(v: &serde_json::Value) -> u64 {
    let mut text = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => {
                text.extend_from_slice(format!("[{}", items.len()).as_bytes());
                stack.extend(items.iter().rev());
            }
            serde_json::Value::Object(map) => {
                text.extend_from_slice(format!("{{{}", map.len()).as_bytes());
                for k in map.keys() {
                    text.extend_from_slice(k.as_bytes());
                    text.push(0);
                }
                stack.extend(map.values().rev());
            }
            scalar => text.extend_from_slice(scalar.to_string().as_bytes()),
        }
        text.push(0x1f);
    }
    shadowdiff_model::fnv1a64(&text)
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(Num::I(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(if let Ok(i) = i64::try_from(v) {
            Num::I(i)
        } else {
            Num::U(v)
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Number(Num::F(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Node<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0));
        let mut sorted = true;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value = map.next_value()?;
            if let Some((last, _)) = entries.last() {
                sorted &= last.as_ref() < key.0.as_ref();
            }
            entries.push((key.0, value));
        }
        if !sorted {
            // Stable sort keeps the order of repeated keys; the last of each run wins.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut deduped: Vec<(Cow<'de, str>, Node<'de>)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match deduped.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            entries = deduped;
        }
        Ok(Node::Object(entries))
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_borrowing_and_sorts_keys() {
        let text = br#"{"b": [1, -2, 3.5, 18446744073709551615], "a": "x\"y", "b": true}"#;
        let n = Node::parse(text).unwrap();
        let Node::Object(entries) = &n else { panic!() };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "a");
        assert!(matches!(&entries[0].1, Node::String(Cow::Owned(s)) if s == "x\"y"));
        assert_eq!(n.get("b"), Some(&Node::Bool(true)));
        let v: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(Node::from_value(&v), n);
    }

    #[test]
    fn large_integral_floats_equal_their_integers() {
        assert_eq!(
            Num::F(1e16).as_i128(),
            Num::I(10_000_000_000_000_000).as_i128()
        );
    }

    #[test]
    fn rejects_invalid_and_too_deep_json() {
        assert!(Node::parse(b"{\"a\": ").is_err());
        let deep = "[".repeat(100_000);
        assert!(Node::parse(deep.as_bytes()).is_err());
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;

    #[test]
    fn parses_every_corpus_document_like_serde_json() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/json");
        for name in ["twitter.json", "citm_catalog.json", "canada.json"] {
            let Ok(bytes) = std::fs::read(dir.join(name)) else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let node = Node::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(Node::from_value(&value), node, "{name}");
        }
    }
}
