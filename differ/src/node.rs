//! A borrowed JSON tree in an arena: strings and keys point into the input when they have no
//! escapes, and every array and object is one slice in the arena (objects sorted by key).
//! Parsing a response body into it allocates nothing per node and frees nothing afterwards (the
//! arena is reset for the next body); the parse is most of the differ's time.

use crate::parse::{ParseError, Second, Window};
use std::cell::RefCell;
use std::fmt;

/// Where a [`Node`] tree lives: a bump arena, reset (not freed) between bodies.
pub type Arena = bumpalo::Bump;

/// A JSON number as parsed, without loss: integers stay integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer that fits `i64`.
    I(i64),
    /// A positive integer above `i64::MAX`.
    U(u64),
    /// Any other number: a fraction, an exponent, or an integer beyond 64 bits.
    F(f64),
}

impl Num {
    /// The value as a float (integers beyond 2^53 lose precision).
    pub fn as_f64(self) -> f64 {
        match self {
            Self::I(i) => i as f64,
            Self::U(u) => u as f64,
            Self::F(f) => f,
        }
    }

    /// True for `I` and `U`: an integer within 64 bits, written without fraction or exponent.
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

/// A JSON value whose strings, arrays and objects borrow from the input or the [`Arena`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Num),
    /// A string, unescaped.
    String(&'a str),
    /// An array, in order.
    Array(&'a [Node<'a>]),
    /// Sorted by key; a repeated key keeps its last value (as serde_json does).
    Object(&'a [(&'a str, Node<'a>)]),
    /// A subtree of a `serde_json::Value` nested too deep to convert, kept as its hash.
    Deep(u64),
}

/// Two bodies parsed for a diff ([`Node::parse_pair_for_diff`]).
pub(crate) enum PairParse<'a> {
    /// Both valid, alike but for one value.
    Window(Window<'a>),
    /// Each body's tree, or why it is not JSON.
    Trees(Result<Node<'a>, ParseError>, Result<Node<'a>, ParseError>),
}

/// Values nested deeper than this are not converted (see [`Node::Deep`]).
const MAX_CONVERTED_DEPTH: usize = 200;

impl<'a> Node<'a> {
    /// Parses JSON into `arena`, borrowing from `bytes` where it can: exactly what serde_json
    /// accepts (nesting below 128 levels), the tree serde_json's value makes, floats correctly
    /// rounded as serde_json's `float_roundtrip` rounds them (see `parse.rs`).
    pub fn parse(bytes: &'a [u8], arena: &'a Arena) -> Result<Self, ParseError> {
        crate::parse::parse(bytes, arena)
    }

    /// [`Node::parse`] of two bodies that are likely alike, as a control's and a candidate's
    /// answers are: where the second has the first's bytes (in the part both begin with, or in
    /// the part both end with), its arrays and objects are the first's, not read again. The
    /// trees and errors are exactly those of two `parse` calls; equal subtrees then share their
    /// slices, which the diff takes as equal without a walk.
    pub fn parse_pair(
        first: &'a [u8],
        second: &'a [u8],
        arena: &'a Arena,
    ) -> (Result<Self, ParseError>, Result<Self, ParseError>) {
        match crate::parse::parse_reference(first, arena) {
            Ok((node, reference)) => (
                Ok(node),
                crate::parse::parse_like(second, arena, &reference),
            ),
            Err(e) => (Err(e), crate::parse::parse(second, arena)),
        }
    }

    /// [`Node::parse_pair`] for a diff: when the second body differs from the first only inside
    /// one value below the root, that value of each and its path (`crate::parse::window`),
    /// without parsing the rest of the second body; else the two trees.
    pub(crate) fn parse_pair_for_diff(
        first: &'a [u8],
        second: &'a [u8],
        arena: &'a Arena,
        through_arrays: bool,
    ) -> PairParse<'a> {
        match crate::parse::parse_reference(first, arena) {
            Ok((node, reference)) => {
                match crate::parse::window(second, arena, &reference, &node, through_arrays) {
                    Second::Window(window) => PairParse::Window(window),
                    Second::Tree(tree) => PairParse::Trees(Ok(node), tree),
                }
            }
            Err(e) => PairParse::Trees(Err(e), crate::parse::parse(second, arena)),
        }
    }

    /// A view of a `serde_json::Value` (strings borrowed, arrays and objects in `arena`).
    pub fn from_value(v: &'a serde_json::Value, arena: &'a Arena) -> Self {
        Self::from_value_at(v, arena, 0)
    }

    fn from_value_at(v: &'a serde_json::Value, arena: &'a Arena, depth: usize) -> Self {
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
            serde_json::Value::String(s) => Node::String(s),
            serde_json::Value::Array(items) => Node::Array(
                arena.alloc_slice_fill_iter(
                    items
                        .iter()
                        .map(|x| Node::from_value_at(x, arena, depth + 1)),
                ),
            ),
            // serde_json's default map is already sorted by key.
            serde_json::Value::Object(map) => Node::Object(
                arena.alloc_slice_fill_iter(
                    map.iter()
                        .map(|(k, v)| (k.as_str(), Node::from_value_at(v, arena, depth + 1))),
                ),
            ),
        }
    }

    /// Equal trees with floats compared by their bits (`-0.0` is not `0.0`, a NaN equals
    /// itself): what the parser's differential tests and fuzz target demand of two parses.
    pub fn same_bits(&self, other: &Node<'_>) -> bool {
        match (self, other) {
            (Node::Number(Num::F(x)), Node::Number(Num::F(y))) => x.to_bits() == y.to_bits(),
            (Node::Array(x), Node::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| a.same_bits(b))
            }
            (Node::Object(x), Node::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y.iter())
                        .all(|((ka, a), (kb, b))| ka == kb && a.same_bits(b))
            }
            _ => self == other,
        }
    }

    /// True for `null` (`null_equals_missing` treats it like an absent key).
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// Value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .map(|i| &entries[i].1),
            _ => None,
        }
    }
}

/// An arena above this size after a diff is dropped instead of kept for the next one, so a
/// rare huge body does not stay allocated on every differ thread.
const ARENA_KEEP_BYTES: usize = 4 << 20;

thread_local! {
    /// Each thread parses bodies into one arena, reset between uses.
    static ARENA: RefCell<Arena> = RefCell::new(Arena::new());
}

/// Runs `f` with an empty arena: the thread's own (every parse and conversion of the differ
/// goes through here, so a thread reuses one), or a fresh one if that is in use.
pub(crate) fn with_arena<R>(f: impl FnOnce(&Arena) -> R) -> R {
    ARENA.with(|cell| match cell.try_borrow_mut() {
        Ok(mut arena) => {
            arena.reset();
            let out = f(&arena);
            if arena.allocated_bytes() > ARENA_KEEP_BYTES {
                *arena = Arena::new();
            }
            out
        }
        Err(_) => f(&Arena::new()),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_borrowing_and_sorts_keys() {
        let text = br#"{"b": [1, -2, 3.5, 18446744073709551615], "a": "x\"y", "b": true}"#;
        let arena = Arena::new();
        let n = Node::parse(text, &arena).unwrap();
        let Node::Object(entries) = &n else { panic!() };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "a");
        assert!(matches!(&entries[0].1, Node::String(s) if *s == "x\"y"));
        assert_eq!(n.get("b"), Some(&Node::Bool(true)));
        // A key without escapes borrows from the input; the unescaped string was copied.
        assert!(text.as_ptr_range().contains(&entries[1].0.as_ptr()));
        let v: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(Node::from_value(&v, &arena), n);
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
        let arena = Arena::new();
        assert!(Node::parse(b"{\"a\": ", &arena).is_err());
        assert!(
            Node::parse(b"[1] x", &arena).is_err(),
            "trailing characters"
        );
        let deep = "[".repeat(100_000);
        assert!(Node::parse(deep.as_bytes(), &arena).is_err());
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The repository's JSON corpus (`corpus/json`, see `corpus/README.md`), or the directory
    /// `SHADOWDIFF_CORPUS` names.
    fn corpus_dir() -> PathBuf {
        std::env::var_os("SHADOWDIFF_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/json"))
    }

    /// Every `*.json` file in `dir` and in `dir/jsonchecker`, sorted.
    fn documents(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for d in [dir.to_path_buf(), dir.join("jsonchecker")] {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() && path.extension().is_some_and(|e| e == "json") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// `Node::parse` accepts exactly the documents serde_json accepts (the JSON_checker `fail*`
    /// files included) and builds the tree `Node::from_value` builds from serde_json's value.
    #[test]
    fn parses_every_corpus_document_like_serde_json() {
        let dir = corpus_dir();
        assert!(
            dir.is_dir(),
            "the JSON corpus is missing: {} is not a directory. It is part of the repository \
             (corpus/json, see corpus/README.md); SHADOWDIFF_CORPUS may name another copy.",
            dir.display()
        );
        let files = documents(&dir);
        assert!(
            !files.is_empty(),
            "the JSON corpus at {} holds no *.json documents (expected twitter.json, \
             citm_catalog.json, canada.json and jsonchecker/, see corpus/README.md)",
            dir.display()
        );
        let mut disagreements = Vec::new();
        for path in &files {
            let name = path
                .strip_prefix(&dir)
                .unwrap_or(path)
                .display()
                .to_string();
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
            let arena = Arena::new();
            match (
                serde_json::from_slice::<serde_json::Value>(&bytes),
                Node::parse(&bytes, &arena),
            ) {
                (Ok(value), Ok(node)) => {
                    if Node::from_value(&value, &arena) != node {
                        disagreements.push(format!("{name}: trees differ"));
                    }
                }
                (Err(_), Err(_)) => {}
                (Ok(_), Err(e)) => {
                    disagreements.push(format!("{name}: serde_json accepts, Node refuses: {e}"))
                }
                (Err(e), Ok(_)) => {
                    disagreements.push(format!("{name}: serde_json refuses ({e}), Node accepts"))
                }
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} of {} corpus documents:\n{}",
            disagreements.len(),
            files.len(),
            disagreements.join("\n")
        );
    }
}
