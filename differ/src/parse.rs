//! A strict JSON parser that builds [`Node`] trees straight into the arena.
//!
//! It accepts exactly what `serde_json` accepts (RFC 8259 as `serde_json` reads it: no trailing
//! commas, no leading zeros, no NaN or infinities, no control characters in strings, `\u`
//! surrogates only in pairs, no byte order mark, nesting below 128 levels, only whitespace after
//! the value) and builds the tree `Node::from_value` builds from `serde_json`'s value, with one
//! deliberate exception: floats are correctly rounded (std's `str::parse::<f64>`), as
//! `serde_json` rounds them only with its `float_roundtrip` feature.
//!
//! Bodies are hostile input: the parser never panics, never recurses deeper than the nesting
//! limit, and reads the body once for UTF-8 (SIMD, simdutf8) and once for JSON. Strings without
//! escapes borrow from the body; escaped ones are unescaped into the arena.

use crate::node::{Arena, Node, Num};
// The bytes that end plain string content, eight at a time (shared with the record encoder).
use shadowdiff_model::json_string_specials as specials;
use std::cell::Cell;

/// Containers nested this deep are refused, as `serde_json` refuses them (its recursion limit:
/// 127 levels are accepted, the 128th opening bracket is an error).
pub(crate) const MAX_DEPTH: u32 = 128;

/// Why a body is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The body is not UTF-8.
    InvalidUtf8,
    /// The body ended inside a value.
    EofWhileParsingValue,
    /// The body ended inside a string.
    EofWhileParsingString,
    /// The body ended inside an array.
    EofWhileParsingList,
    /// The body ended inside an object.
    EofWhileParsingObject,
    /// A byte that starts no JSON value.
    ExpectedValue,
    /// Not `true`, `false` or `null`.
    ExpectedIdent,
    /// Neither `,` nor `]` after an array element.
    ExpectedListCommaOrEnd,
    /// Neither `,` nor `}` after an object member.
    ExpectedObjectCommaOrEnd,
    /// No `:` after an object key.
    ExpectedColon,
    /// An object key that is not a string.
    KeyMustBeAString,
    /// A `,` right before `]` or `}`.
    TrailingComma,
    /// Something other than whitespace after the value.
    TrailingCharacters,
    /// A malformed number (leading zero, no digit after `.` or `e`, a lone `-`).
    InvalidNumber,
    /// A number beyond the range of `f64`.
    NumberOutOfRange,
    /// An unknown escape after `\`.
    InvalidEscape,
    /// A `\u` escape without four hex digits.
    InvalidHexEscape,
    /// A `\u` surrogate without its pair.
    LoneSurrogate,
    /// A byte below 0x20 inside a string.
    ControlCharacterInString,
    /// Arrays and objects nested [`MAX_DEPTH`] deep.
    RecursionLimitExceeded,
}

impl ParseErrorKind {
    /// The message, worded as `serde_json` words it where it has one.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::EofWhileParsingValue => "EOF while parsing a value",
            Self::EofWhileParsingString => "EOF while parsing a string",
            Self::EofWhileParsingList => "EOF while parsing a list",
            Self::EofWhileParsingObject => "EOF while parsing an object",
            Self::ExpectedValue => "expected value",
            Self::ExpectedIdent => "expected ident",
            Self::ExpectedListCommaOrEnd => "expected `,` or `]`",
            Self::ExpectedObjectCommaOrEnd => "expected `,` or `}`",
            Self::ExpectedColon => "expected `:`",
            Self::KeyMustBeAString => "key must be a string",
            Self::TrailingComma => "trailing comma",
            Self::TrailingCharacters => "trailing characters",
            Self::InvalidNumber => "invalid number",
            Self::NumberOutOfRange => "number out of range",
            Self::InvalidEscape => "invalid escape",
            Self::InvalidHexEscape => "invalid \\u escape (expected four hex digits)",
            Self::LoneSurrogate => "lone surrogate in \\u escape",
            Self::ControlCharacterInString => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            Self::RecursionLimitExceeded => "recursion limit exceeded",
        }
    }
}

/// A body that is not JSON: why, and where (1-based line and byte column, as `serde_json`
/// counts them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} at line {line} column {column}", kind.message())]
pub struct ParseError {
    kind: ParseErrorKind,
    offset: usize,
    line: usize,
    column: usize,
}

impl ParseError {
    fn at(bytes: &[u8], kind: ParseErrorKind, offset: usize) -> Self {
        let offset = offset.min(bytes.len());
        let before = &bytes[..offset];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Self {
            kind,
            offset,
            line,
            column: offset - line_start + 1,
        }
    }

    /// Why the body is not JSON.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The byte offset of the offending byte (the body's length when it ended too soon).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// 1-based line of the offending byte.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based byte column of the offending byte in its line.
    pub fn column(&self) -> usize {
        self.column
    }
}

/// An error inside the parser; its kind and byte offset are in [`Parser::error`] (a
/// zero-sized error keeps every `Result` the parser returns small, in registers).
#[derive(Debug, Clone, Copy)]
struct Stop;

type Result<T> = std::result::Result<T, Stop>;

/// Parses `bytes` into `arena`. See the module documentation for what is accepted.
pub(crate) fn parse<'a>(
    bytes: &'a [u8],
    arena: &'a Arena,
) -> std::result::Result<Node<'a>, ParseError> {
    run(bytes, arena, Mode::Plain).0
}

/// A body parsed by [`parse_reference`]: where each of its (non-empty) arrays and objects, and
/// each string with an escape, lies in its bytes, so that [`parse_like`] can take them whole
/// into a body that has the same bytes there.
pub(crate) struct Reference<'a> {
    text: &'a str,
    /// In the order they open (so by `start`); the thread's stack, given back on drop.
    spans: Vec<Span<'a>>,
}

impl Drop for Reference<'_> {
    fn drop(&mut self) {
        let spans = std::mem::take(&mut self.spans);
        if spans.capacity() <= KEEP_STACK {
            // (Dropped instead if the thread's locals are gone.)
            let _ = STACKS.try_with(|cell| {
                let mut stacks = cell.take();
                stacks.spans = reuse(spans);
                cell.set(stacks);
            });
        }
    }
}

/// One array or object, or escaped string, of a reference body.
#[derive(Clone, Copy)]
struct Span<'a> {
    /// Its opening bracket or quote.
    start: usize,
    /// Just after its closing bracket or quote.
    end: usize,
    /// The nesting level of a container, and the deepest level of any container inside it
    /// (itself included): the same bytes at another level must stay within [`MAX_DEPTH`].
    /// Zero for a string.
    depth: u32,
    deepest: u32,
    /// An object that had a key more than once (its tree keeps the last of them).
    duplicates: bool,
    node: Node<'a>,
}

/// [`parse`], also recording the spans [`parse_like`] needs.
pub(crate) fn parse_reference<'a>(
    bytes: &'a [u8],
    arena: &'a Arena,
) -> std::result::Result<(Node<'a>, Reference<'a>), ParseError> {
    let text = validated(bytes)?;
    let parsed = run_text(text, arena, Mode::Reference, Entry::Document);
    parsed.result.map(|node| {
        let spans = parsed.spans;
        (node, Reference { text, spans })
    })
}

/// [`parse`] of a body that is likely much like `reference` (a candidate's answer and the
/// control's): an array, object or escaped string whose bytes lie wholly in the bytes both
/// bodies begin with, or wholly in those they end with, is the reference's node, not read
/// again. Same bytes make the same node, so the tree (and any error) is exactly the one
/// [`parse`] returns; only where the nodes live differs, and equal subtrees then share their
/// slices (the diff skips them).
pub(crate) fn parse_like<'a>(
    bytes: &'a [u8],
    arena: &'a Arena,
    reference: &Reference<'a>,
) -> std::result::Result<Node<'a>, ParseError> {
    run(bytes, arena, Mode::Like(guide(reference, bytes))).0
}

/// What a guided parse of `bytes` knows of `reference`: the bytes both begin and end with.
fn guide<'g, 'a>(reference: &'g Reference<'a>, bytes: &[u8]) -> Guide<'g, 'a> {
    let theirs = reference.text.as_bytes();
    let prefix = common_prefix(theirs, bytes);
    // The shared end may not reach into the shared beginning of either body.
    let room = theirs.len().min(bytes.len()) - prefix;
    let suffix = common_suffix(theirs, bytes).min(room);
    Guide {
        spans: &reference.spans,
        prefix,
        suffix_in_reference: theirs.len() - suffix,
        suffix_here: bytes.len() - suffix,
        next_in_prefix: 0,
        next_in_suffix: 0,
        origin: 0,
    }
}

/// Two bodies that differ inside one value: the trees of that value in each, and its path.
/// Outside it both bodies are the same bytes, so two full parses and a walk of the trees
/// would find nothing else (see [`window`]).
pub(crate) struct Window<'a> {
    /// From the root to the value: member keys and element indexes.
    pub(crate) steps: Vec<Step<'a>>,
    pub(crate) control: Node<'a>,
    pub(crate) candidate: Node<'a>,
}

/// One step of a path (a [`Window`]'s, and the diff's `PathStack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// When `bytes` differs from the (parsed, valid) reference `root` only inside one value below
/// the root, that value in both bodies and its path; `None` otherwise, and then the caller
/// parses `bytes` whole ([`parse_like`]).
///
/// A body is the bytes before a value, the value, and the bytes after it. When both bodies
/// begin with the same bytes up to a value (the same bytes make the same path to it) and end
/// with the same bytes after it, they are the same document but for that value: the diff of
/// the two documents is the diff of the two values at that path, and the second body is valid
/// exactly when its value is (parsed here at the same nesting level, so the depth limit holds
/// as in a full parse). Everything the cheap scan below suggests is checked against the
/// reference's tree and spans before it is used:
///
/// - each object on the path had every key once (else the tree kept a later member);
/// - each container on the path is the reference's node at that place (same slice);
/// - the second body's value ends where the shared end begins.
///
/// `through_arrays` false: no window inside an array (rules that match array elements by key
/// or as a set look at the array as a whole). Without a window, the second body's whole tree
/// ([`parse_like`]; the bytes both bodies share are counted once for both).
pub(crate) fn window<'a>(
    bytes: &'a [u8],
    arena: &'a Arena,
    reference: &Reference<'a>,
    root: &Node<'a>,
    through_arrays: bool,
) -> Second<'a> {
    let guide = guide(reference, bytes);
    let (prefix, shared_end) = (guide.prefix, guide.suffix_in_reference);
    let found = enclosing_value(
        reference.text.as_bytes(),
        &reference.spans,
        prefix,
        shared_end,
    )
    .into_iter()
    .flatten()
    .find_map(|scan| window_at(&scan, bytes, arena, reference, root, through_arrays, guide));
    match found {
        Some(window) => Second::Window(window),
        None => Second::Tree(run(bytes, arena, Mode::Like(guide)).0),
    }
}

/// The second of two bodies parsed for a diff: the one value it differs in, or its tree.
pub(crate) enum Second<'a> {
    Window(Window<'a>),
    Tree(std::result::Result<Node<'a>, ParseError>),
}

/// [`window`] at one guess of [`enclosing_value`].
fn window_at<'a>(
    scan: &Enclosing,
    bytes: &'a [u8],
    arena: &'a Arena,
    reference: &Reference<'a>,
    root: &Node<'a>,
    through_arrays: bool,
    guide: Guide<'_, 'a>,
) -> Option<Window<'a>> {
    let theirs = reference.text.as_bytes();
    let shared_end = guide.suffix_in_reference;
    let mut steps = Vec::with_capacity(scan.path.len());
    let mut node = *root;
    for (level, step) in scan.path.iter().enumerate() {
        let span = reference.container_at(step.container)?;
        if !same_slice(&node, &span.node) || span.depth as usize != level + 1 || span.duplicates {
            return None;
        }
        node = match (node, step.inside) {
            (Node::Object(members), RawStep::Member { key_start, key_end }) => {
                let key = reference.text.get(key_start..key_end)?;
                let at = members.binary_search_by(|(k, _)| (*k).cmp(key)).ok()?;
                let (key, value) = members.get(at)?;
                steps.push(Step::Key(key));
                *value
            }
            (Node::Array(items), RawStep::Element(i)) if through_arrays => {
                steps.push(Step::Index(i));
                *items.get(i)?
            }
            _ => return None,
        };
    }
    let depth = u32::try_from(scan.path.len()).ok()?;
    let start = scan.start;
    // The reference's value there and where it ends.
    let end_there = match reference.container_at(start) {
        Some(span) if same_slice(&node, &span.node) && span.depth == depth + 1 => span.end,
        Some(_) => return None,
        None => {
            // A scalar (or an empty container): read again, it is short.
            let entry = Entry::ValueAt { start, depth };
            let again = run_text(reference.text, arena, Mode::Plain, entry);
            match again.result {
                Ok(value) if value.same_bits(&node) => again.end,
                _ => return None,
            }
        }
    };
    if end_there < shared_end {
        return None;
    }
    // Where the shared end begins here: the value must end exactly there. Only its bytes (and
    // the one after, which stops a number as it would in the whole body: the reference's byte
    // after its value, ASCII) are checked for UTF-8 and read.
    let end_here = (end_there + bytes.len()).checked_sub(theirs.len())?;
    let text = validated(bytes.get(start..bytes.len().min(end_here + 1))?).ok()?;
    let guide = Guide {
        origin: start,
        ..guide
    };
    let entry = Entry::ValueAt { start: 0, depth };
    let here = run_text(text, arena, Mode::Like(guide), entry);
    let candidate = here.result.ok()?;
    (start + here.end == end_here).then_some(Window {
        steps,
        control: node,
        candidate,
    })
}

impl<'a> Reference<'a> {
    /// The recorded array or object that opens at `start`.
    fn container_at(&self, start: usize) -> Option<Span<'a>> {
        let i = self.spans.binary_search_by(|s| s.start.cmp(&start)).ok()?;
        self.spans.get(i).filter(|s| s.depth > 0).copied()
    }
}

/// The same array or object, not only an equal one.
fn same_slice(a: &Node<'_>, b: &Node<'_>) -> bool {
    match (a, b) {
        (Node::Array(x), Node::Array(y)) => std::ptr::eq(*x, *y),
        (Node::Object(x), Node::Object(y)) => std::ptr::eq(*x, *y),
        _ => false,
    }
}

/// What [`enclosing_value`] found: the innermost value around the bytes that differ.
struct Enclosing {
    /// Where the value begins.
    start: usize,
    /// The containers around it, outermost first.
    path: Vec<PathStep>,
}

/// One container around the value, and which of its members or elements holds the value.
#[derive(Clone, Copy)]
struct PathStep {
    container: usize,
    inside: RawStep,
}

#[derive(Clone, Copy)]
enum RawStep {
    /// The member whose key (without escapes) is `bytes[key_start..key_end]`.
    Member {
        key_start: usize,
        key_end: usize,
    },
    Element(usize),
    /// A key with an escape, or no key or element yet: no usable step.
    Unknown,
}

/// A container open during [`enclosing_value`]'s scan.
#[derive(Clone, Copy)]
struct Open {
    start: usize,
    object: bool,
    /// In an object, the next string is a key.
    expect_key: bool,
    step: RawStep,
}

/// The innermost values of `bytes` that begin at or before `first_change`, reach it, and end
/// at or after `shared_end` (where the bytes the two bodies end with begin), with the
/// containers around them: a scalar (which may only touch the change: `1` becoming `100`) and
/// a container; `None` for either when there is none below the root, or the scan meets
/// something it does not follow. A scan, not a parse (strings, brackets, commas, scalars): its
/// answers are guesses [`window`] checks against the parsed tree. It stops at `shared_end`, or
/// as soon as only the root is left around the change; it steps over the containers `spans`
/// (the parsed body's) say close before the change or open after it.
fn enclosing_value(
    bytes: &[u8],
    spans: &[Span<'_>],
    first_change: usize,
    shared_end: usize,
) -> [Option<Enclosing>; 2] {
    let limit = shared_end.max(first_change + 1).min(bytes.len());
    let mut stack: Vec<Open> = Vec::with_capacity(16);
    // The containers open just after `first_change`, and the fewest of them open since.
    let mut at_change: Option<(Vec<Open>, usize)> = None;
    // A scalar that covers `first_change`: its start, end and the stack around it.
    let mut scalar: Option<(usize, usize, Option<Vec<PathStep>>)> = None;
    // The first span that may open at or after the scan's position.
    let mut next_span = 0;
    let mut i = 0;
    while i < limit {
        let b = bytes[i];
        // (A container that closes at the change itself may still hold the whole change.)
        if at_change.is_none()
            && (i > first_change || (i == first_change && matches!(b, b'}' | b']')))
        {
            at_change = Some((stack.clone(), stack.len()));
        }
        // Only the root (or nothing) left around the change, and no scalar holds it: no window
        // below the root, so stop here rather than scan to the shared end (bodies that differ
        // near both ends, or everywhere, as a pretty-printed copy does).
        if at_change.as_ref().is_some_and(|(_, fewest)| *fewest <= 1)
            && scalar.as_ref().is_none_or(|(_, end, _)| *end < shared_end)
        {
            return [None, None];
        }
        let token_start = i;
        match b {
            b' ' | b'\n' | b'\r' | b'\t' | b':' => {
                i += 1;
                continue;
            }
            b'"' => {
                let mut j = i + 1;
                let mut escaped = false;
                loop {
                    j = find_special(bytes, j);
                    match bytes.get(j) {
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            j += 2;
                        }
                        Some(_) => j += 1,
                        None => return [None, None],
                    }
                }
                let end = j + 1;
                let top = stack.last_mut();
                match top {
                    Some(open) if open.object && open.expect_key => {
                        open.expect_key = false;
                        open.step = if escaped {
                            RawStep::Unknown
                        } else {
                            RawStep::Member {
                                key_start: i + 1,
                                key_end: j,
                            }
                        };
                    }
                    _ => {
                        if token_start <= first_change && first_change <= end {
                            scalar = Some((token_start, end, path_of(&stack)));
                        }
                    }
                }
                i = end;
                continue;
            }
            b'{' | b'[' => {
                // A container that closes before the change is stepped over whole, and so is
                // any that opens after it (only the containers around the change count).
                while spans.get(next_span).is_some_and(|s| s.start < i) {
                    next_span += 1;
                }
                let after_change = at_change.is_some();
                if let Some(span) = spans.get(next_span).filter(|s| {
                    s.start == i && s.depth > 0 && (after_change || s.end <= first_change)
                }) {
                    i = span.end;
                    continue;
                }
                if stack.len() >= MAX_DEPTH as usize {
                    return [None, None];
                }
                let object = b == b'{';
                stack.push(Open {
                    start: i,
                    object,
                    expect_key: object,
                    step: if object {
                        RawStep::Unknown
                    } else {
                        RawStep::Element(0)
                    },
                });
            }
            b'}' | b']' => {
                if stack.pop().is_none() {
                    return [None, None];
                }
                // Closed before the shared end: it does not hold the whole change.
                if let Some((_, fewest)) = at_change.as_mut().filter(|_| i + 1 < shared_end) {
                    *fewest = (*fewest).min(stack.len());
                }
            }
            b',' => match stack.last_mut() {
                Some(open) if open.object => {
                    open.expect_key = true;
                    open.step = RawStep::Unknown;
                }
                Some(open) => {
                    open.step = match open.step {
                        RawStep::Element(n) => RawStep::Element(n + 1),
                        _ => RawStep::Unknown,
                    };
                }
                None => return [None, None],
            },
            _ => {
                let mut end = i + 1;
                while bytes
                    .get(end)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                {
                    end += 1;
                }
                if token_start <= first_change && first_change <= end {
                    scalar = Some((token_start, end, path_of(&stack)));
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    let (open, fewest) = match at_change {
        Some(found) => found,
        // Every token up to the limit began at or before the change.
        None => (stack.clone(), stack.len()),
    };
    let scalar = scalar.and_then(|(start, end, path)| {
        let path = path?;
        (end >= shared_end && !path.is_empty()).then_some(Enclosing { start, path })
    });
    // The innermost container still open at the shared end.
    let container =
        open.get(..fewest)
            .and_then(<[Open]>::split_last)
            .and_then(|(inner, outside)| {
                let path = path_of(outside)?;
                (!path.is_empty()).then_some(Enclosing {
                    start: inner.start,
                    path,
                })
            });
    [scalar, container]
}

/// The steps into the containers `open`, if each is known.
fn path_of(open: &[Open]) -> Option<Vec<PathStep>> {
    open.iter()
        .map(|o| match o.step {
            RawStep::Unknown => None,
            inside => Some(PathStep {
                container: o.start,
                inside,
            }),
        })
        .collect()
}

/// Bytes compared by one slice comparison (`memcmp`, vectorized) before the search narrows.
const BLOCK: usize = 256;

/// How many bytes `a` and `b` begin with alike: equal blocks first, then sixteen at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut blocks = 0;
    while let (Some(x), Some(y)) = (a.get(blocks..blocks + BLOCK), b.get(blocks..blocks + BLOCK)) {
        if x != y {
            break;
        }
        blocks += BLOCK;
    }
    let (a, b) = (
        a.get(blocks..).unwrap_or_default(),
        b.get(blocks..).unwrap_or_default(),
    );
    let mut chunks = 0;
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        let differ = chunk(x, u128::from_le_bytes) ^ chunk(y, u128::from_le_bytes);
        if differ != 0 {
            return blocks + chunks + (differ.trailing_zeros() / 8) as usize;
        }
        chunks += 16;
    }
    let (a, b) = (
        a.get(chunks..).unwrap_or_default(),
        b.get(chunks..).unwrap_or_default(),
    );
    blocks + chunks + a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many bytes `a` and `b` end with alike (as [`common_prefix`], from the ends).
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let mut blocks = 0;
    while let (Some(x), Some(y)) = (block_before(a, blocks), block_before(b, blocks)) {
        if x != y {
            break;
        }
        blocks += BLOCK;
    }
    let a = a.get(..a.len() - blocks).unwrap_or_default();
    let b = b.get(..b.len() - blocks).unwrap_or_default();
    let mut chunks = 0;
    for (x, y) in a.rchunks_exact(16).zip(b.rchunks_exact(16)) {
        // Big-endian: the last byte is the lowest, so trailing zeros count from the end.
        let differ = chunk(x, u128::from_be_bytes) ^ chunk(y, u128::from_be_bytes);
        if differ != 0 {
            return blocks + chunks + (differ.trailing_zeros() / 8) as usize;
        }
        chunks += 16;
    }
    let a = a.get(..a.len() - chunks).unwrap_or_default();
    let b = b.get(..b.len() - chunks).unwrap_or_default();
    let rest = a.iter().rev().zip(b.iter().rev());
    blocks + chunks + rest.take_while(|(x, y)| x == y).count()
}

/// The `BLOCK` bytes of `s` that end `n` bytes before its end.
fn block_before(s: &[u8], n: usize) -> Option<&[u8]> {
    let at = s.len().checked_sub(n + BLOCK)?;
    s.get(at..at + BLOCK)
}

/// A sixteen-byte chunk (from `chunks_exact`) as a number.
#[inline]
fn chunk(bytes: &[u8], read: fn([u8; 16]) -> u128) -> u128 {
    bytes.first_chunk::<16>().map_or(0, |c| read(*c))
}

/// What a guided parse ([`parse_like`]) knows of its reference.
#[derive(Clone, Copy)]
struct Guide<'g, 'a> {
    spans: &'g [Span<'a>],
    /// Bytes `[0, prefix)` are the same in both bodies.
    prefix: usize,
    /// The reference's bytes from `suffix_in_reference` on are this body's from `suffix_here`.
    suffix_in_reference: usize,
    suffix_here: usize,
    /// Where the search for the next container starts, in each region (the parse meets
    /// containers in the order of their positions, so each cursor only moves forward).
    next_in_prefix: usize,
    next_in_suffix: usize,
    /// Where the parsed text begins in the body (a guided parse of one value reads only its
    /// bytes: see [`window`]); positions the parser asks about are relative to it.
    origin: usize,
}

impl<'a> Guide<'_, 'a> {
    /// The reference's container or escaped string whose bytes are this body's at `at`, if
    /// there is one.
    fn find(&mut self, at: usize) -> Option<Span<'a>> {
        let at = at + self.origin;
        let (cursor, want, region_ends) = if at < self.prefix {
            (&mut self.next_in_prefix, at, self.prefix)
        } else if at >= self.suffix_here {
            let want = at - self.suffix_here + self.suffix_in_reference;
            (&mut self.next_in_suffix, want, usize::MAX)
        } else {
            return None;
        };
        while self.spans.get(*cursor).is_some_and(|s| s.start < want) {
            *cursor += 1;
        }
        let span = self.spans.get(*cursor)?;
        (span.start == want && span.end > span.start && span.end <= region_ends).then_some(*span)
    }
}

enum Mode<'g, 'a> {
    Plain,
    Reference,
    Like(Guide<'g, 'a>),
}

/// The parse, and the spans a reference parse recorded (empty otherwise, or on an error).
fn run<'a>(
    bytes: &'a [u8],
    arena: &'a Arena,
    mode: Mode<'_, 'a>,
) -> (std::result::Result<Node<'a>, ParseError>, Vec<Span<'a>>) {
    match validated(bytes) {
        Ok(text) => {
            let parsed = run_text(text, arena, mode, Entry::Document);
            (parsed.result, parsed.spans)
        }
        Err(e) => (Err(e), Vec::new()),
    }
}

/// One SIMD UTF-8 check of the whole body; afterwards every slice between ASCII delimiters is
/// a valid `str`.
fn validated(bytes: &[u8]) -> std::result::Result<&str, ParseError> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| {
        // std's check, only now, says where.
        let at = std::str::from_utf8(bytes)
            .err()
            .map_or(0, |e| e.valid_up_to());
        ParseError::at(bytes, ParseErrorKind::InvalidUtf8, at)
    })
}

/// Where a parse starts.
#[derive(Clone, Copy)]
enum Entry {
    /// The whole body: one value, whitespace around it.
    Document,
    /// The one value at `start`, inside `depth` open arrays and objects (see [`window`]).
    ValueAt { start: usize, depth: u32 },
}

/// What [`run_text`] returns.
struct Parsed<'a> {
    result: std::result::Result<Node<'a>, ParseError>,
    /// A reference parse's spans (empty otherwise, or on an error).
    spans: Vec<Span<'a>>,
    /// Where the parse stopped: just after the value, for [`Entry::ValueAt`].
    end: usize,
}

fn run_text<'a>(text: &'a str, arena: &'a Arena, mode: Mode<'_, 'a>, entry: Entry) -> Parsed<'a> {
    let bytes = text.as_bytes();
    // (A thread whose locals are gone, in its destructors, parses with fresh stacks.)
    let stacks = STACKS.try_with(Cell::take).unwrap_or_default();
    let mut spans_kept: Vec<Span<'a>> = reuse(stacks.spans);
    let (spans, guide) = match mode {
        Mode::Plain => (None, None),
        Mode::Reference => (Some(std::mem::take(&mut spans_kept)), None),
        Mode::Like(guide) => (None, Some(guide)),
    };
    let (pos, depth) = match entry {
        Entry::Document => (0, 0),
        Entry::ValueAt { start, depth } => (start, depth),
    };
    let mut p = Parser {
        text,
        bytes,
        pos,
        error: (ParseErrorKind::EofWhileParsingValue, 0),
        depth,
        deepest: depth,
        arena,
        items: reuse(stacks.items),
        entries: reuse(stacks.entries),
        scratch: stacks.scratch,
        spans,
        guide,
    };
    let outcome = match entry {
        Entry::Document => p.document(),
        Entry::ValueAt { .. } => p.value(),
    };
    let result = match outcome {
        Ok(node) => Ok(node),
        Err(Stop) => Err(ParseError::at(bytes, p.error.0, p.error.1)),
    };
    // A reference's spans go with it (and come back to the stacks when it is dropped).
    let spans = match p.spans.take() {
        Some(recorded) if result.is_ok() => recorded,
        Some(recorded) => {
            spans_kept = recorded;
            Vec::new()
        }
        None => Vec::new(),
    };
    if p.items.capacity() <= KEEP_STACK
        && p.entries.capacity() <= KEEP_STACK
        && spans_kept.capacity() <= KEEP_STACK
    {
        p.scratch.clear();
        p.scratch.shrink_to(KEEP_STACK);
        let stacks = Stacks {
            items: reuse(p.items),
            entries: reuse(p.entries),
            scratch: p.scratch,
            spans: reuse(spans_kept),
        };
        // Kept for the thread's next parse (dropped if the thread's locals are gone).
        let _ = STACKS.try_with(|cell| cell.set(stacks));
    }
    Parsed {
        result,
        spans,
        end: p.pos,
    }
}

/// The parser's stacks, kept between parses on a thread (two allocations less per body).
#[derive(Default)]
struct Stacks {
    items: Vec<Node<'static>>,
    entries: Vec<(&'static str, Node<'static>)>,
    scratch: String,
    spans: Vec<Span<'static>>,
}

/// Stacks that grew beyond this many members are not kept.
const KEEP_STACK: usize = 4096;

thread_local! {
    static STACKS: Cell<Stacks> = Cell::new(Stacks {
        items: Vec::with_capacity(64),
        entries: Vec::with_capacity(64),
        scratch: String::new(),
        spans: Vec::new(),
    });
}

/// The allocation of an emptied vector, for elements of another lifetime (an in-place
/// `collect` of an empty iterator: the same layout, so std reuses the buffer, without unsafe).
fn reuse<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

struct Parser<'a, 'g> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Why and where the parse stopped, once a function returned [`Stop`].
    error: (ParseErrorKind, usize),
    /// Arrays and objects open around the current position.
    depth: u32,
    /// The deepest `depth` reached (within the innermost recorded container, when recording).
    deepest: u32,
    arena: &'a Arena,
    /// The elements of the arrays still open, innermost last.
    items: Vec<Node<'a>>,
    /// The members of the objects still open, innermost last.
    entries: Vec<(&'a str, Node<'a>)>,
    /// Where an escaped string is unescaped before it is copied into the arena.
    scratch: String,
    /// A reference parse's spans (see [`parse_reference`]).
    spans: Option<Vec<Span<'a>>>,
    /// A guided parse's reference (see [`parse_like`]).
    guide: Option<Guide<'g, 'a>>,
}

#[inline]
fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first `"`, `\` or control character at or after `i`, or `bytes.len()`.
#[inline]
fn find_special(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let found = specials(u64::from_le_bytes(*chunk));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if is_special(b) {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// `a < b`, inline and eight bytes at a time: keys are short and often share a prefix
/// (`profile_background_…`), and a call to `memcmp` per member cost more than this.
#[inline]
fn less(a: &[u8], b: &[u8]) -> bool {
    let (mut a, mut b) = (a, b);
    while let (Some((x, ra)), Some((y, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if x != y {
            return u64::from_be_bytes(*x) < u64::from_be_bytes(*y);
        }
        (a, b) = (ra, rb);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// True when the eight bytes of `w` (little-endian) are all ASCII digits.
#[inline]
fn eight_digits(w: u64) -> bool {
    (w & 0xF0F0_F0F0_F0F0_F0F0)
        | (((w.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
        == 0x3333_3333_3333_3333
}

/// The value of eight ASCII digits (little-endian `w`, first digit in the lowest byte).
#[inline]
fn eight_digits_value(w: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let w = w.wrapping_sub(0x3030_3030_3030_3030);
    let w = w.wrapping_mul(10).wrapping_add(w >> 8);
    ((w & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((w >> 16) & MASK).wrapping_mul(MUL2)))
        >> 32
}

fn hex_digit(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

impl<'a> Parser<'a, '_> {
    #[cold]
    fn fail<T>(&mut self, kind: ParseErrorKind, at: usize) -> Result<T> {
        self.error = (kind, at);
        Err(Stop)
    }

    fn document(&mut self) -> Result<Node<'a>> {
        let node = self.value()?;
        if self.skip_whitespace().is_some() {
            return self.fail(ParseErrorKind::TrailingCharacters, self.pos);
        }
        Ok(node)
    }

    /// Skips JSON whitespace; the byte after it, if any.
    #[inline]
    fn skip_whitespace(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                _ => return Some(b),
            }
        }
        None
    }

    /// `&text[start..end]`, where both ends are next to ASCII delimiters (so on char
    /// boundaries of the validated text).
    #[inline]
    fn slice(&mut self, start: usize, end: usize) -> Result<&'a str> {
        match self.text.get(start..end) {
            Some(s) => Ok(s),
            // Unreachable for a validated text cut at ASCII bytes; an error, not a panic.
            None => self.fail(ParseErrorKind::InvalidUtf8, start),
        }
    }

    /// A value after optional whitespace (inlined into its callers, so that the node is built
    /// in registers; arrays and objects are the calls that recurse).
    #[inline(always)]
    fn value(&mut self) -> Result<Node<'a>> {
        let Some(b) = self.skip_whitespace() else {
            return self.fail(ParseErrorKind::EofWhileParsingValue, self.pos);
        };
        match b {
            b'"' => self.string().map(Node::String),
            b'{' => self.object().map(Node::Object),
            b'[' => self.array().map(Node::Array),
            b'-' | b'0'..=b'9' => self.number().map(Node::Number),
            b't' => self.ident(b"true", Node::Bool(true)),
            b'f' => self.ident(b"false", Node::Bool(false)),
            b'n' => self.ident(b"null", Node::Null),
            _ => self.fail(ParseErrorKind::ExpectedValue, self.pos),
        }
    }

    fn ident(&mut self, word: &[u8], node: Node<'a>) -> Result<Node<'a>> {
        let end = self.pos + word.len();
        match self.bytes.get(self.pos..end) {
            Some(w) if w == word => {
                self.pos = end;
                Ok(node)
            }
            _ => {
                // Where the word stops matching (serde_json's EOF or "expected ident").
                let rest = self.bytes.get(self.pos..).unwrap_or_default();
                let same = rest.iter().zip(word).take_while(|(a, b)| a == b).count();
                let kind = if same == rest.len() {
                    ParseErrorKind::EofWhileParsingValue
                } else {
                    ParseErrorKind::ExpectedIdent
                };
                self.fail(kind, self.pos + same)
            }
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        if self.depth >= MAX_DEPTH {
            return self.fail(ParseErrorKind::RecursionLimitExceeded, self.pos);
        }
        Ok(())
    }

    /// In a guided parse, the reference's container with the same bytes at `start` (of the
    /// kind `same_kind` accepts), taken whole when it fits under the nesting limit here as it
    /// did there; `None` leaves the position as it was.
    #[inline]
    fn take_whole(&mut self, start: usize, same_kind: fn(&Node<'a>) -> bool) -> Option<Node<'a>> {
        let span = self.guide.as_mut()?.find(start)?;
        let deepest_here = self.depth + 1 + (span.deepest - span.depth);
        if !same_kind(&span.node) || deepest_here >= MAX_DEPTH {
            return None;
        }
        self.pos = start + (span.end - span.start);
        Some(span.node)
    }

    /// In a reference parse, records a container opening at `start` (after `enter`); its index.
    #[inline]
    fn open_span(&mut self, start: usize) -> Option<usize> {
        let spans = self.spans.as_mut()?;
        spans.push(Span {
            start,
            end: 0,
            depth: self.depth,
            // The deepest level outside it, until it closes.
            deepest: self.deepest,
            duplicates: false,
            node: Node::Null,
        });
        self.deepest = self.depth;
        Some(spans.len() - 1)
    }

    /// Completes the span `open_span` returned, at `self.pos` (after the closing bracket).
    #[inline]
    fn close_span(&mut self, index: Option<usize>, node: Node<'a>, duplicates: bool) {
        let end = self.pos;
        let deepest = self.deepest;
        if let Some(span) = index.and_then(|i| self.spans.as_mut()?.get_mut(i)) {
            let outside = span.deepest;
            span.end = end;
            span.deepest = deepest;
            span.duplicates = duplicates;
            span.node = node;
            self.deepest = outside.max(deepest);
        }
    }

    #[inline(never)]
    fn array(&mut self) -> Result<&'a [Node<'a>]> {
        let start = self.pos;
        if self.guide.is_some() {
            let array = |n: &Node<'a>| matches!(n, Node::Array(_));
            if let Some(Node::Array(items)) = self.take_whole(start, array) {
                return Ok(items);
            }
        }
        self.enter()?;
        self.pos += 1;
        let open = self.items.len();
        match self.skip_whitespace() {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(&[]);
            }
            Some(_) => {}
            None => return self.fail(ParseErrorKind::EofWhileParsingList, self.pos),
        }
        let span = self.open_span(start);
        loop {
            let item = self.value()?;
            self.items.push(item);
            match self.skip_whitespace() {
                Some(b',') => {
                    self.pos += 1;
                    if self.skip_whitespace() == Some(b']') {
                        return self.fail(ParseErrorKind::TrailingComma, self.pos);
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return self.fail(ParseErrorKind::ExpectedListCommaOrEnd, self.pos),
                None => return self.fail(ParseErrorKind::EofWhileParsingList, self.pos),
            }
        }
        let slice = self.arena.alloc_slice_copy(&self.items[open..]);
        self.items.truncate(open);
        self.close_span(span, Node::Array(slice), false);
        self.depth -= 1;
        Ok(slice)
    }

    #[inline(never)]
    fn object(&mut self) -> Result<&'a [(&'a str, Node<'a>)]> {
        let start = self.pos;
        if self.guide.is_some() {
            let object = |n: &Node<'a>| matches!(n, Node::Object(_));
            if let Some(Node::Object(members)) = self.take_whole(start, object) {
                return Ok(members);
            }
        }
        self.enter()?;
        self.pos += 1;
        let open = self.entries.len();
        match self.skip_whitespace() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(&[]);
            }
            Some(_) => {}
            None => return self.fail(ParseErrorKind::EofWhileParsingObject, self.pos),
        }
        let span = self.open_span(start);
        let mut sorted = true;
        loop {
            // At a key (whitespace skipped).
            match self.bytes.get(self.pos) {
                Some(b'"') => {}
                Some(_) => return self.fail(ParseErrorKind::KeyMustBeAString, self.pos),
                None => return self.fail(ParseErrorKind::EofWhileParsingObject, self.pos),
            }
            let key = self.string()?;
            match self.skip_whitespace() {
                Some(b':') => self.pos += 1,
                Some(_) => return self.fail(ParseErrorKind::ExpectedColon, self.pos),
                None => return self.fail(ParseErrorKind::EofWhileParsingObject, self.pos),
            }
            let value = self.value()?;
            if let Some(last) = self.entries.get(open..).and_then(|m| m.last()) {
                sorted &= less(last.0.as_bytes(), key.as_bytes());
            }
            self.entries.push((key, value));
            match self.skip_whitespace() {
                Some(b',') => {
                    self.pos += 1;
                    match self.skip_whitespace() {
                        Some(b'}') => return self.fail(ParseErrorKind::TrailingComma, self.pos),
                        Some(_) => {}
                        None => return self.fail(ParseErrorKind::EofWhileParsingValue, self.pos),
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return self.fail(ParseErrorKind::ExpectedObjectCommaOrEnd, self.pos),
                None => return self.fail(ParseErrorKind::EofWhileParsingObject, self.pos),
            }
        }
        let members = &mut self.entries[open..];
        let written = members.len();
        let slice: &'a [(&'a str, Node<'a>)] = if sorted {
            self.arena.alloc_slice_copy(members)
        } else {
            // Stable sort keeps the order of repeated keys; the last of each run wins.
            members.sort_by(|x, y| x.0.cmp(y.0));
            let mut deduped: bumpalo::collections::Vec<'_, (&'a str, Node<'a>)> =
                bumpalo::collections::Vec::with_capacity_in(members.len(), self.arena);
            for &entry in members.iter() {
                match deduped.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            deduped.into_bump_slice()
        };
        self.entries.truncate(open);
        self.close_span(span, Node::Object(slice), slice.len() < written);
        self.depth -= 1;
        Ok(slice)
    }

    /// A string at `self.pos` (its opening quote): borrowed from the body without escapes,
    /// else unescaped into the arena.
    #[inline(always)]
    fn string(&mut self) -> Result<&'a str> {
        let start = self.pos + 1;
        let end = find_special(self.bytes, start);
        match self.bytes.get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                self.slice(start, end)
            }
            Some(b'\\') => self.escaped_string(start, end),
            Some(_) => self.fail(ParseErrorKind::ControlCharacterInString, end),
            None => self.fail(ParseErrorKind::EofWhileParsingString, end),
        }
    }

    /// The rest of a string from `start` whose first escape is at `escape`.
    #[cold]
    fn escaped_string(&mut self, start: usize, mut escape: usize) -> Result<&'a str> {
        // The opening quote.
        let quote = start - 1;
        if let Some(taken) = self.take_string(quote) {
            return Ok(taken);
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let result = self.unescape(start, &mut escape, &mut out);
        let result = result.map(|()| &*self.arena.alloc_str(&out));
        self.scratch = out;
        if let (Ok(text), Some(spans)) = (result, self.spans.as_mut()) {
            // Worth recording, unlike a string without escapes: taking it saves the unescaping.
            spans.push(Span {
                start: quote,
                end: self.pos,
                depth: 0,
                deepest: 0,
                duplicates: false,
                node: Node::String(text),
            });
        }
        result
    }

    /// In a guided parse, the reference's escaped string with the same bytes at `quote`.
    fn take_string(&mut self, quote: usize) -> Option<&'a str> {
        let span = self.guide.as_mut()?.find(quote)?;
        let Node::String(text) = span.node else {
            return None;
        };
        self.pos = span.end - span.start + quote;
        Some(text)
    }

    fn unescape(&mut self, mut start: usize, escape: &mut usize, out: &mut String) -> Result<()> {
        loop {
            out.push_str(self.slice(start, *escape)?);
            // At a backslash.
            let mut i = *escape + 1;
            let Some(&e) = self.bytes.get(i) else {
                return self.fail(ParseErrorKind::EofWhileParsingString, i);
            };
            i += 1;
            match e {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let (c, next) = self.unicode_escape(i)?;
                    out.push(c);
                    i = next;
                }
                _ => return self.fail(ParseErrorKind::InvalidEscape, i - 1),
            }
            start = i;
            let end = find_special(self.bytes, start);
            match self.bytes.get(end) {
                Some(b'"') => {
                    out.push_str(self.slice(start, end)?);
                    self.pos = end + 1;
                    return Ok(());
                }
                Some(b'\\') => *escape = end,
                Some(_) => return self.fail(ParseErrorKind::ControlCharacterInString, end),
                None => return self.fail(ParseErrorKind::EofWhileParsingString, end),
            }
        }
    }

    /// Four hex digits at `i`.
    fn hex4(&mut self, i: usize) -> Result<u16> {
        let mut n = 0u16;
        for k in 0..4 {
            match self.bytes.get(i + k) {
                Some(&b) => match hex_digit(b) {
                    Some(d) => n = (n << 4) | d,
                    None => return self.fail(ParseErrorKind::InvalidHexEscape, i + k),
                },
                None => return self.fail(ParseErrorKind::EofWhileParsingString, i + k),
            }
        }
        Ok(n)
    }

    /// The character of a `\u` escape whose hex digits start at `i` (a surrogate pair takes a
    /// second escape), and the index after it. Surrogates must come in pairs, as `serde_json`
    /// requires when it reads a string.
    fn unicode_escape(&mut self, i: usize) -> Result<(char, usize)> {
        let n = self.hex4(i)?;
        let after = i + 4;
        if (0xDC00..=0xDFFF).contains(&n) {
            return self.fail(ParseErrorKind::LoneSurrogate, after);
        }
        if !(0xD800..=0xDBFF).contains(&n) {
            return match char::from_u32(u32::from(n)) {
                Some(c) => Ok((c, after)),
                None => self.fail(ParseErrorKind::LoneSurrogate, after),
            };
        }
        match self.bytes.get(after..after + 2) {
            Some(b"\\u") => {}
            Some(_) => return self.fail(ParseErrorKind::LoneSurrogate, after),
            None => return self.fail(ParseErrorKind::EofWhileParsingString, self.bytes.len()),
        }
        let low = self.hex4(after + 2)?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return self.fail(ParseErrorKind::LoneSurrogate, after + 6);
        }
        let c = 0x1_0000 + ((u32::from(n) - 0xD800) << 10 | (u32::from(low) - 0xDC00));
        match char::from_u32(c) {
            Some(c) => Ok((c, after + 6)),
            None => self.fail(ParseErrorKind::LoneSurrogate, after + 6),
        }
    }

    /// A number at `self.pos`: `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<Num> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut i = start;
        let negative = bytes.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let mut value: u64 = 0;
        let mut overflow = false;
        match bytes.get(i) {
            Some(b'0') => {
                i += 1;
                if matches!(bytes.get(i), Some(b'0'..=b'9')) {
                    return self.fail(ParseErrorKind::InvalidNumber, i);
                }
            }
            Some(b'1'..=b'9') => {
                // Eight digits at a time while they cannot overflow (16 digits < 10^16), then
                // one at a time with an overflow check.
                let first = i;
                while i - first <= 8 {
                    match bytes.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
                        Some(chunk) if eight_digits(u64::from_le_bytes(*chunk)) => {
                            value = value * 100_000_000
                                + eight_digits_value(u64::from_le_bytes(*chunk));
                            i += 8;
                        }
                        _ => break,
                    }
                }
                while let Some(&c @ b'0'..=b'9') = bytes.get(i) {
                    match value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(c - b'0')))
                    {
                        Some(v) => value = v,
                        None => overflow = true,
                    }
                    i += 1;
                }
            }
            Some(_) => return self.fail(ParseErrorKind::InvalidNumber, i),
            None => return self.fail(ParseErrorKind::EofWhileParsingValue, i),
        }
        let mut float = overflow;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            i = self.digits(i)?;
            float = true;
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = self.digits(i)?;
            float = true;
        }
        self.pos = i;
        if !float {
            if !negative {
                return Ok(match i64::try_from(value) {
                    Ok(v) => Num::I(v),
                    Err(_) => Num::U(value),
                });
            }
            // serde_json's rule: a negative integer within i64 is one; `-0` and those below
            // i64::MIN are floats.
            let v = (value as i64).wrapping_neg();
            return Ok(if v >= 0 {
                Num::F(-(value as f64))
            } else {
                Num::I(v)
            });
        }
        self.float(start, i)
    }

    /// One or more digits at `i`; the index after them.
    #[inline]
    fn digits(&mut self, mut i: usize) -> Result<usize> {
        match self.bytes.get(i) {
            Some(b'0'..=b'9') => {}
            Some(_) => return self.fail(ParseErrorKind::InvalidNumber, i),
            None => return self.fail(ParseErrorKind::EofWhileParsingValue, i),
        }
        while let Some(b'0'..=b'9') = self.bytes.get(i) {
            i += 1;
        }
        Ok(i)
    }

    /// The number `text[start..end]` (grammar already checked), correctly rounded.
    fn float(&mut self, start: usize, end: usize) -> Result<Num> {
        let text = self.slice(start, end)?;
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Num::F(f)),
            Ok(_) => self.fail(ParseErrorKind::NumberOutOfRange, start),
            Err(_) => self.fail(ParseErrorKind::InvalidNumber, start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window `window` finds between two bodies: its path, rendered, or `None`.
    fn window_path(first: &str, second: &str, through_arrays: bool) -> Option<String> {
        let arena = Arena::new();
        let (root, reference) = parse_reference(first.as_bytes(), &arena).ok()?;
        let Second::Window(w) =
            window(second.as_bytes(), &arena, &reference, &root, through_arrays)
        else {
            return None;
        };
        let steps = w.steps.iter().map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
        });
        Some(steps.collect())
    }

    #[test]
    fn a_window_is_the_innermost_value_around_the_change() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            // A scalar changed in place, longer, shorter, in an array.
            (
                r#"{"a":1,"b":{"c":"x"}}"#,
                r#"{"a":1,"b":{"c":"y"}}"#,
                Some(".b.c"),
            ),
            (r#"{"n":10,"m":2}"#, r#"{"n":11,"m":2}"#, Some(".n")),
            (r#"{"n":1,"m":[2,3]}"#, r#"{"n":100,"m":[2,3]}"#, Some(".n")),
            (r#"{"n":[1,2,3]}"#, r#"{"n":[1,20,3]}"#, Some(".n[1]")),
            // A member or element added or removed: its container.
            (
                r#"{"a":{"b":1},"z":0}"#,
                r#"{"a":{"b":1,"c":2},"z":0}"#,
                Some(".a"),
            ),
            (r#"{"a":[1],"z":0}"#, r#"{"a":[1,2],"z":0}"#, Some(".a")),
            (r#"{"a":[1,2],"z":0}"#, r#"{"a":[1],"z":0}"#, Some(".a")),
            (r#"{"a":{"b":[true]}}"#, r#"{"a":{"b":{}}}"#, Some(".a.b")),
            // Two changes in one member (the containers between them stepped over).
            (
                r#"{"a":{"b":1,"c":[1,[2]],"d":{"e":[]},"f":2},"z":0}"#,
                r#"{"a":{"b":5,"c":[1,[2]],"d":{"e":[]},"f":6},"z":0}"#,
                Some(".a"),
            ),
            // Changes in two members, or in a key: the root, no window.
            (r#"{"a":1,"b":2}"#, r#"{"a":3,"b":4}"#, None),
            (r#"{"a":1,"b":2}"#, r#"{"a":1,"c":2}"#, None),
            // A repeated key after the change keeps its own value: no window.
            (r#"{"a":1,"a":2}"#, r#"{"a":3,"a":2}"#, None),
            (r#"{"a":1,"a":1}"#, r#"{"a":3,"a":1}"#, None),
            (
                r#"{"a":{"b":[1,1]},"a":{"b":[1,1]}}"#,
                r#"{"a":{"b":[1,2]},"a":{"b":[1,1]}}"#,
                None,
            ),
            // A key with an escape on the path: not followed.
            (r#"{"\u0061":{"b":1}}"#, r#"{"\u0061":{"b":2}}"#, None),
            // The second body is not JSON where it differs.
            (r#"{"a":{"b":1},"z":0}"#, r#"{"a":{"b":1,},"z":0}"#, None),
            (r#"{"a":[1],"z":0}"#, r#"{"a":[1]],"z":0}"#, None),
        ];
        for (first, second, expected) in cases {
            assert_eq!(
                window_path(first, second, true).as_deref(),
                *expected,
                "{first} -> {second}"
            );
        }
        // The candidate's value is its own, read at its place: its first element is not the
        // reference's `[9]`, which opens at the element's offset within the value.
        let arena = Arena::new();
        let (first, second) = (b"[[9],[[5],2]]", b"[[9],[[5],2,7]]");
        let (root, reference) = parse_reference(first, &arena).unwrap();
        let Second::Window(w) = window(second, &arena, &reference, &root, true) else {
            panic!("no window");
        };
        assert_eq!(w.steps, [Step::Index(1)]);
        let alone = parse(b"[[5],2,7]", &arena).unwrap();
        assert!(w.candidate.same_bits(&alone), "{:?}", w.candidate);
        // Not through an array when arrays have rules (the array itself is compared whole).
        assert_eq!(
            window_path(r#"{"n":[1,2]}"#, r#"{"n":[1,3]}"#, false).as_deref(),
            Some(".n")
        );
        assert_eq!(
            window_path(r#"{"n":[{"m":1}]}"#, r#"{"n":[{"m":2}]}"#, false),
            None
        );
        assert_eq!(
            window_path(r#"{"n":{"m":1}}"#, r#"{"n":{"m":3}}"#, false).as_deref(),
            Some(".n.m")
        );
    }

    #[test]
    fn specials_finds_the_first_delimiter_exactly() {
        for len in 0..=20usize {
            for pos in 0..len {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    for filler in [b'a', 0x20, 0x21, 0x7f, 0x80, 0xff, b'!'] {
                        let mut bytes = vec![filler; len];
                        bytes[pos] = special;
                        // Noise after the first special byte must not move it.
                        if pos + 1 < len {
                            bytes[pos + 1] = 0x20;
                        }
                        assert_eq!(find_special(&bytes, 0), pos, "{bytes:?}");
                    }
                }
            }
            assert_eq!(find_special(&vec![b'a'; len], 0), len);
        }
    }

    #[test]
    fn common_ends_are_counted_exactly() {
        let naive_prefix = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let naive_suffix = |a: &[u8], b: &[u8]| {
            a.iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count()
        };
        // Every length to past two chunks, a difference at every place (or none); then lengths
        // around whole blocks.
        for len in (0..40).chain([255, 256, 257, 271, 511, 512, 530, 800]) {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 7) as u8).collect();
            for at in 0..=len {
                for extra in [0, 1, 17] {
                    let mut b = a.clone();
                    if let Some(x) = b.get_mut(at) {
                        *x = b'Z';
                    }
                    b.extend(std::iter::repeat_n(b'q', extra));
                    for (x, y) in [(&a, &b), (&b, &a)] {
                        assert_eq!(common_prefix(x, y), naive_prefix(x, y), "{x:?} {y:?}");
                        assert_eq!(common_suffix(x, y), naive_suffix(x, y), "{x:?} {y:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn stacks_are_reused_without_a_new_allocation() {
        let v: Vec<Node<'static>> = Vec::with_capacity(64);
        let ptr = v.as_ptr() as usize;
        let w: Vec<Node<'_>> = reuse(v);
        assert_eq!((w.as_ptr() as usize, w.capacity()), (ptr, 64));
    }

    #[test]
    fn a_references_spans_come_back_to_the_thread() {
        let arena = Arena::new();
        let body = br#"{"a":[1,2],"b":{"c":"\n"}}"#;
        let (_, reference) = parse_reference(body, &arena).unwrap();
        assert_eq!(
            reference.spans.len(),
            4,
            "object, array, object, escaped string"
        );
        let address = reference.spans.as_ptr() as usize;
        drop(reference);
        let (_, again) = parse_reference(body, &arena).unwrap();
        assert_eq!(
            again.spans.as_ptr() as usize,
            address,
            "the same allocation"
        );
    }

    #[test]
    fn errors_say_where() {
        let arena = Arena::new();
        let e = parse(b"{\n  \"a\": tru,\n}", &arena).unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (ParseErrorKind::ExpectedIdent, 2, 11)
        );
        assert_eq!(e.to_string(), "expected ident at line 2 column 11");
        let e = parse(b"[1, 2", &arena).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::EofWhileParsingList);
        let e = parse(b"\"\xff\"", &arena).unwrap_err();
        assert_eq!((e.kind(), e.offset()), (ParseErrorKind::InvalidUtf8, 1));
    }
}
