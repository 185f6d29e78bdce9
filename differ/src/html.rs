//! HTML bodies as trees: tokenized by `html5gum` (a WHATWG tokenizer), built into the differ's
//! arena [`Node`] tree and diffed like JSON, so that paths, ignore rules, the secondary's mask
//! and the detectors work per element, text and attribute.
//!
//! The tree of an element is an object:
//!
//! * `""` (rendered as the element's own path) — its own text: the text nodes directly inside
//!   it, concatenated in document order, runs of ASCII whitespace collapsed to one space and
//!   trimmed (`<script>` and `<style>` content included);
//! * `@name` — one entry per attribute (the first of repeated names, as browsers keep), so the
//!   order of attributes does not matter;
//! * one entry per child *key*: the tag name, or `tag[id=…]` / `tag[name=…]` when the child has
//!   an `id` (else a `name`) attribute. A key that occurs once is the child element itself;
//!   a key repeated among siblings is an array of those children in document order, so the
//!   paths read `body.html.body.ul.li[3].a@href` and an inserted `<li>` is one `extra`.
//!
//! Comments and the doctype are not compared. The tree is built as tag soup with the few
//! implied ends real pages rely on (void elements, `<p>`, `<li>`, `<dt>`/`<dd>`, table rows
//! and cells, `<option>`, headings), not the full WHATWG tree construction: both sides of a
//! pair are built the same way, which is what a diff needs.

use crate::node::{Arena, Node};
use html5gum::{naive_next_state, Emitter, Error as TokenError, State, Tokenizer};

/// HTML bodies longer than this are compared as text.
pub const MAX_HTML_BYTES: usize = 2 << 20;
/// Elements open inside one another beyond this depth make the body compared as text.
pub const MAX_HTML_DEPTH: usize = 128;
/// More elements and attributes than this make the body compared as text.
pub const MAX_HTML_NODES: usize = 200_000;

/// Why an HTML body was not built into a tree (the differ then compares it as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HtmlError {
    /// The body is over [`MAX_HTML_BYTES`].
    #[error("HTML body is over the {limit}-byte limit")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Elements nest deeper than [`MAX_HTML_DEPTH`].
    #[error("HTML elements nest deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_HTML_NODES`] elements and attributes.
    #[error("HTML has more than {limit} elements and attributes")]
    TooManyNodes {
        /// The limit.
        limit: usize,
    },
}

/// Builds the tree of an HTML document (any bytes: invalid UTF-8 is replaced, malformed markup
/// is read as browsers' tokenizers read it) into `arena`.
pub fn parse_html<'a>(bytes: &'a [u8], arena: &'a Arena) -> Result<Node<'a>, HtmlError> {
    parse_tree(bytes, arena).map(|tree| tree.root)
}

/// A document's tree and where each element came from in its source.
pub(crate) struct HtmlTree<'a> {
    pub(crate) root: Node<'a>,
    pub(crate) sources: Sources<'a>,
}

/// Where an element came from in its document's source.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// The address of the element's object entries (its identity in the tree).
    at: usize,
    start: usize,
    end: usize,
    /// Elements and attributes in its subtree, itself included.
    nodes: usize,
    /// Closed by its own end tag (or a void element): `start..end` is exactly the element, and
    /// the tokenizer is back in its data state at `end`.
    whole: bool,
}

/// The source text of each element of a tree, by the address of its object's entries.
pub(crate) struct Sources<'a> {
    text: &'a str,
    /// Sorted by address.
    spans: &'a [Span],
}

impl<'a> Sources<'a> {
    /// The source of the element whose object is `entries`: at least every byte that its
    /// subtree was built from, so two elements at one path whose sources are equal have equal
    /// subtrees.
    pub(crate) fn of(&self, entries: &[(&str, Node<'_>)]) -> Option<&'a str> {
        let span = self.span(entries)?;
        self.text.get(span.start..span.end)
    }

    fn span(&self, entries: &[(&str, Node<'_>)]) -> Option<Span> {
        let at = entries.as_ptr() as usize;
        let i = self.spans.binary_search_by_key(&at, |s| s.at).ok()?;
        self.spans.get(i).copied()
    }
}

pub(crate) fn parse_tree<'a>(bytes: &'a [u8], arena: &'a Arena) -> Result<HtmlTree<'a>, HtmlError> {
    parse_tree_like(bytes, arena, None)
}

/// [`parse_tree`], taking whole elements from `reference` (another document's tree in the same
/// arena) where this document has the same bytes at the same path: the tokenizer does not read
/// them again. The tree is the one [`parse_tree`] builds.
pub(crate) fn parse_tree_like<'a>(
    bytes: &'a [u8],
    arena: &'a Arena,
    reference: Option<&HtmlTree<'a>>,
) -> Result<HtmlTree<'a>, HtmlError> {
    if bytes.len() > MAX_HTML_BYTES {
        return Err(HtmlError::TooLarge {
            limit: MAX_HTML_BYTES,
        });
    }
    let text: &'a str = match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => arena.alloc_str(&String::from_utf8_lossy(bytes)),
    };
    let mut builder = Builder::new(arena, text, reference);
    let mut scratch = Scratch::default();
    let mut from = 0;
    while let Some(rest) = text.get(from..) {
        builder.pos = from;
        let emitter = TreeEmitter {
            b: &mut builder,
            s: &mut scratch,
            kind: TagKind::Other,
            self_closing: false,
            in_attr: false,
        };
        // The emitter builds as it goes; its only token says: stop (a limit was hit, or an
        // element was taken from the reference and reading goes on after it).
        for token in Tokenizer::new_with_emitter(rest, emitter) {
            if token.is_ok() {
                break;
            }
        }
        match builder.resume.take() {
            Some(next) if builder.failed.is_none() && next > from => from = next,
            _ => break,
        }
    }
    if let Some(e) = builder.failed {
        return Err(e);
    }
    builder.pos = text.len();
    builder.finish();
    if let Some(e) = builder.failed {
        return Err(e);
    }
    let root = builder.root.unwrap_or(Node::Object(&[]));
    let mut spans = builder.spans;
    spans.sort_unstable_by_key(|s| s.at);
    Ok(HtmlTree {
        root,
        sources: Sources {
            text,
            spans: spans.into_bump_slice(),
        },
    })
}

/// The emitter's buffers, kept across the tokenizers of one parse.
#[derive(Default)]
struct Scratch {
    tag: Vec<u8>,
    last_start_tag: Vec<u8>,
    /// Names and values of the current tag's attributes, as ranges of `attr_bytes`.
    attr_bytes: Vec<u8>,
    /// `[name end, value start, value end, where the value is in the source]`; the last is
    /// `NOT_IN_SOURCE` unless the value came as one piece of the source (then it is borrowed,
    /// not copied).
    attrs: Vec<[usize; 4]>,
}

/// What the tree builder needs to know about a tag, worked out once per start tag.
#[derive(Clone, Copy, Default)]
struct Class {
    flags: u16,
    /// The group of elements a start tag of this one implicitly ends (0: none).
    group: u8,
}

const VOID: u16 = 1;
const CLOSES_P: u16 = 1 << 1;
const PHRASING: u16 = 1 << 2;
const HEADING: u16 = 1 << 3;
const IS_P: u16 = 1 << 4;
/// Bounds of the search for an open element a start tag implicitly ends.
const LIST_BOUND: u16 = 1 << 5;
const DL_BOUND: u16 = 1 << 6;
const ROWS_BOUND: u16 = 1 << 7;
const CELLS_BOUND: u16 = 1 << 8;
const TABLE_BOUND: u16 = 1 << 9;
const OPTIONS_BOUND: u16 = 1 << 10;
const OPTGROUP_BOUND: u16 = 1 << 11;

const LI: u8 = 1;
const DT_DD: u8 = 2;
const TR: u8 = 3;
const CELL: u8 = 4;
const SECTION: u8 = 5;
const OPTION: u8 = 6;
const OPTGROUP: u8 = 7;

fn class(tag: &[u8]) -> Class {
    let c = |flags: u16, group: u8| Class { flags, group };
    match tag {
        // HTML's void elements: never any content.
        b"area" | b"base" | b"br" | b"col" | b"embed" | b"img" | b"input" | b"link" | b"meta"
        | b"source" | b"track" | b"wbr" | b"param" | b"keygen" | b"frame" => c(VOID, 0),
        b"hr" => c(VOID | CLOSES_P, 0),
        b"p" => c(CLOSES_P | IS_P, 0),
        b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => c(CLOSES_P | HEADING, 0),
        b"ul" | b"ol" | b"menu" => c(CLOSES_P | LIST_BOUND, 0),
        b"div" => c(CLOSES_P | LIST_BOUND | DL_BOUND, 0),
        b"dl" => c(CLOSES_P | DL_BOUND, 0),
        b"table" => c(
            CLOSES_P | LIST_BOUND | ROWS_BOUND | CELLS_BOUND | TABLE_BOUND,
            0,
        ),
        b"address" | b"article" | b"aside" | b"blockquote" | b"details" | b"dialog"
        | b"fieldset" | b"figcaption" | b"figure" | b"footer" | b"form" | b"header" | b"hgroup"
        | b"main" | b"nav" | b"pre" | b"section" => c(CLOSES_P, 0),
        b"li" => c(0, LI),
        b"dt" | b"dd" => c(0, DT_DD),
        b"tr" => c(CELLS_BOUND, TR),
        b"td" | b"th" => c(0, CELL),
        b"thead" | b"tbody" | b"tfoot" => c(ROWS_BOUND, SECTION),
        b"option" => c(0, OPTION),
        b"optgroup" => c(OPTIONS_BOUND, OPTGROUP),
        b"select" => c(OPTIONS_BOUND | OPTGROUP_BOUND, 0),
        b"datalist" => c(OPTIONS_BOUND, 0),
        b"a" | b"abbr" | b"b" | b"bdi" | b"bdo" | b"cite" | b"code" | b"data" | b"dfn" | b"em"
        | b"font" | b"i" | b"kbd" | b"mark" | b"q" | b"s" | b"samp" | b"small" | b"span"
        | b"strong" | b"sub" | b"sup" | b"time" | b"u" | b"var" => c(PHRASING, 0),
        _ => Class::default(),
    }
}

/// For a start tag of `group`: the open elements that bound the search for one it ends (a
/// `<li>` ends an open `<li>`, but not one outside the current list).
fn bound_of(group: u8) -> u16 {
    match group {
        LI => LIST_BOUND,
        DT_DD => DL_BOUND,
        TR => ROWS_BOUND,
        CELL => CELLS_BOUND,
        SECTION => TABLE_BOUND,
        OPTION => OPTIONS_BOUND,
        _ => OPTGROUP_BOUND,
    }
}

/// Elements whose content the tokenizer reads as text (a `/>` on them is ignored, as in HTML).
fn is_text_only(tag: &[u8]) -> bool {
    naive_next_state(tag).is_some()
}

type Entries<'a> = &'a [(&'a str, Node<'a>)];

/// An element still open: where its members and its text start on the builder's stacks.
struct Frame<'a> {
    tag: &'a str,
    class: Class,
    key: &'a str,
    /// Where its start tag began in the source.
    start: usize,
    members_open: usize,
    text_open: usize,
    nodes_open: usize,
    /// Whitespace was seen after the text so far (written as one space before more text).
    pending_space: bool,
    /// The element at the same path in the reference document, if any.
    reference: Option<Entries<'a>>,
    /// The key of its last child and how many children before it had that key.
    last_key: &'a str,
    last_index: usize,
}

impl<'a> Frame<'a> {
    fn root(reference: Option<Entries<'a>>) -> Self {
        Frame {
            tag: "",
            class: Class::default(),
            key: "",
            start: 0,
            members_open: 0,
            text_open: 0,
            nodes_open: 0,
            pending_space: false,
            reference,
            last_key: "",
            last_index: 0,
        }
    }
}

/// No place in the source (see [`Scratch::attrs`]).
const NOT_IN_SOURCE: usize = usize::MAX;

/// Siblings scanned at most to number a child whose key is not its previous sibling's (beyond,
/// nothing is taken from the reference).
const MAX_SIBLING_SCAN: usize = 256;

struct Builder<'a> {
    arena: &'a Arena,
    /// This document's source.
    source: &'a str,
    /// The reference document's source and element spans.
    reference: Option<(&'a str, &'a [Span])>,
    frames: Vec<Frame<'a>>,
    /// Attributes and finished children of the open elements, each element's after its
    /// parent's.
    members: Vec<(&'a str, Node<'a>)>,
    /// The normalised text of the open elements, each element's after its parent's.
    text: Vec<u8>,
    nodes: usize,
    failed: Option<HtmlError>,
    root: Option<Node<'a>>,
    /// Scratch for building one key.
    key: String,
    /// How far the tokenizer has read, and where the tag being read began.
    pos: usize,
    tag_start: usize,
    spans: bumpalo::collections::Vec<'a, Span>,
    /// Set when an element was taken from the reference: tokenize again from here.
    resume: Option<usize>,
}

impl<'a> Builder<'a> {
    fn new(arena: &'a Arena, source: &'a str, reference: Option<&HtmlTree<'a>>) -> Self {
        let root_reference = match reference.map(|r| r.root) {
            Some(Node::Object(entries)) => Some(entries),
            _ => None,
        };
        let mut b = Self {
            arena,
            source,
            reference: reference.map(|r| (r.sources.text, r.sources.spans)),
            frames: Vec::with_capacity(32),
            members: Vec::with_capacity(256),
            text: Vec::with_capacity(1024),
            nodes: 0,
            failed: None,
            root: None,
            key: String::with_capacity(64),
            pos: 0,
            tag_start: 0,
            spans: bumpalo::collections::Vec::with_capacity_in(512, arena),
            resume: None,
        };
        b.frames.push(Frame::root(root_reference));
        b
    }

    fn fail(&mut self, e: HtmlError) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }

    /// Appends text to the innermost open element, collapsing whitespace as it goes.
    fn push_text(&mut self, s: &[u8]) {
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        let mut rest = s;
        while !rest.is_empty() {
            let ws = rest.iter().take_while(|b| is_space(**b)).count();
            if ws > 0 {
                frame.pending_space = self.text.len() > frame.text_open;
                rest = &rest[ws..];
                continue;
            }
            let run = rest.iter().take_while(|b| !is_space(**b)).count();
            if frame.pending_space {
                self.text.push(b' ');
                frame.pending_space = false;
            }
            self.text.extend_from_slice(&rest[..run]);
            rest = &rest[run..];
        }
    }

    fn count(&mut self, n: usize) -> bool {
        self.nodes += n;
        if self.nodes > MAX_HTML_NODES {
            self.fail(HtmlError::TooManyNodes {
                limit: MAX_HTML_NODES,
            });
            return false;
        }
        true
    }

    fn start_tag(
        &mut self,
        tag: &[u8],
        attr_bytes: &[u8],
        attrs: &[[usize; 4]],
        self_closing: bool,
    ) {
        if self.failed.is_some() || !self.count(1 + attrs.len()) {
            return;
        }
        let class = class(tag);
        self.close_implied(class);
        let tag_str = self.str_of(tag);
        let attr = |i: usize| -> (&[u8], &[u8]) {
            let start = if i == 0 { 0 } else { attrs[i - 1][2] };
            let [name_end, value_start, value_end, _] = attrs[i];
            (
                attr_bytes.get(start..name_end).unwrap_or_default(),
                attr_bytes.get(value_start..value_end).unwrap_or_default(),
            )
        };
        let key = self.child_key(tag_str, (0..attrs.len()).map(attr));
        let start = self.tag_start.saturating_sub(1);
        let reference = self.reference_child(key);
        if let Some(entries) = reference {
            if class.flags & VOID == 0 && self.take_from_reference(key, entries, start, attrs.len())
            {
                return;
            }
        }
        let members_open = self.members.len();
        for (i, &[.., in_source]) in attrs.iter().enumerate() {
            let (name, value) = attr(i);
            // The first of repeated names counts (WHATWG drops the others).
            if i > 0 && (0..i).any(|j| attr(j).0 == name) {
                continue;
            }
            self.key.clear();
            self.key.push('@');
            match std::str::from_utf8(name) {
                Ok(name) => push_name(&mut self.key, name),
                Err(_) => push_name(&mut self.key, &String::from_utf8_lossy(name)),
            }
            let key = self.arena.alloc_str(&self.key);
            let value = match self
                .source
                .get(in_source..in_source.saturating_add(value.len()))
            {
                Some(borrowed) if in_source != NOT_IN_SOURCE => borrowed,
                _ => self.str_of(value),
            };
            self.members.push((key, Node::String(value)));
        }
        if class.flags & VOID != 0 || (self_closing && !is_text_only(tag)) {
            // A leaf: its object now, no frame.
            let node = self.object(members_open, "");
            self.span(node, start, 1 + attrs.len(), true);
            self.members.truncate(members_open);
            self.push_child(key, node);
            return;
        }
        if self.frames.len() > MAX_HTML_DEPTH {
            self.fail(HtmlError::TooDeep {
                limit: MAX_HTML_DEPTH,
            });
            return;
        }
        self.frames.push(Frame {
            tag: tag_str,
            class,
            key,
            start,
            members_open,
            text_open: self.text.len(),
            nodes_open: self.nodes - 1 - attrs.len(),
            pending_space: false,
            reference,
            last_key: "",
            last_index: 0,
        });
    }

    /// The reference document's element at the path a child `key` of the innermost open
    /// element would have.
    fn reference_child(&self, key: &str) -> Option<Entries<'a>> {
        let frame = self.frames.last()?;
        let parent = frame.reference?;
        let index = if frame.last_key == key {
            frame.last_index + 1
        } else {
            let members = self.members.get(frame.members_open..)?;
            if members.len() > MAX_SIBLING_SCAN {
                return None;
            }
            members.iter().filter(|(k, _)| *k == key).count()
        };
        let index = index.min(usize::MAX / 2);
        let i = parent.binary_search_by(|(k, _)| (*k).cmp(key)).ok()?;
        match (parent.get(i).map(|e| e.1), index) {
            (Some(Node::Object(entries)), 0) => Some(entries),
            (Some(Node::Array(items)), _) => match items.get(index) {
                Some(Node::Object(entries)) => Some(entries),
                _ => None,
            },
            _ => None,
        }
    }

    /// Takes the reference's element `entries` as the child `key` starting at `start`, if it
    /// is whole and its source is the bytes here: its subtree is the one these bytes build
    /// (same bytes, same open elements above), and tokenizing resumes after it.
    fn take_from_reference(
        &mut self,
        key: &'a str,
        entries: Entries<'a>,
        start: usize,
        attrs: usize,
    ) -> bool {
        let Some((text, spans)) = self.reference else {
            return false;
        };
        let at = entries.as_ptr() as usize;
        let Some(span) = spans
            .binary_search_by_key(&at, |s| s.at)
            .ok()
            .and_then(|i| spans.get(i))
        else {
            return false;
        };
        let len = span.end.saturating_sub(span.start);
        let (Some(theirs), Some(ours)) = (
            text.get(span.start..span.end),
            self.source.get(start..start + len),
        ) else {
            return false;
        };
        if !span.whole || len == 0 || theirs != ours || !ours.starts_with('<') {
            return false;
        }
        // The start tag and its attributes were counted already.
        if !self.count(span.nodes.saturating_sub(1 + attrs)) {
            return true;
        }
        self.spans.push(Span {
            at,
            start,
            end: start + len,
            nodes: span.nodes,
            whole: true,
        });
        self.push_child(key, Node::Object(entries));
        self.resume = Some(start + len);
        true
    }

    /// Adds a finished child to the innermost open element.
    fn push_child(&mut self, key: &'a str, node: Node<'a>) {
        if let Some(frame) = self.frames.last_mut() {
            if frame.last_key == key {
                frame.last_index += 1;
            } else {
                frame.last_key = key;
                frame.last_index = 0;
                // Numbered from the siblings already there (too many to count: never found in
                // the reference).
                frame.last_index = match self.members.get(frame.members_open..) {
                    Some(m) if m.len() <= MAX_SIBLING_SCAN => {
                        m.iter().filter(|(k, _)| *k == key).count()
                    }
                    _ => usize::MAX / 2,
                };
            }
        }
        self.members.push((key, node));
    }

    fn span(&mut self, node: Node<'a>, start: usize, nodes: usize, whole: bool) {
        if let Node::Object(entries) = node {
            self.spans.push(Span {
                at: entries.as_ptr() as usize,
                start,
                end: self.pos.max(start),
                nodes,
                whole,
            });
        }
    }

    fn end_tag(&mut self, tag: &[u8]) {
        if self.failed.is_some() || class(tag).flags & VOID != 0 || tag == b"body" || tag == b"html"
        {
            // `</body>` and `</html>` do not end anything in HTML either: later content stays
            // inside them.
            return;
        }
        let open = self
            .frames
            .iter()
            .skip(1)
            .rposition(|f| f.tag.as_bytes() == tag);
        if let Some(at) = open {
            while self.frames.len() > at + 2 {
                self.close(false);
            }
            self.close(true);
        }
    }

    /// Closes what a start tag implies is over: an open `<p>` before a block, an `<li>` before
    /// the next, a cell before the next, a heading before another.
    fn close_implied(&mut self, class: Class) {
        if class.flags & CLOSES_P != 0 {
            let mut at = self.frames.len();
            while at > 1 && self.frames[at - 1].class.flags & PHRASING != 0 {
                at -= 1;
            }
            if at > 1 && self.frames[at - 1].class.flags & IS_P != 0 {
                while self.frames.len() >= at {
                    self.close(false);
                }
            }
        }
        if class.flags & HEADING != 0 {
            if let Some(top) = self.frames.last() {
                if top.class.flags & HEADING != 0 {
                    self.close(false);
                }
            }
        }
        if class.group != 0 {
            let bound = bound_of(class.group);
            let mut found = None;
            for (i, f) in self.frames.iter().enumerate().skip(1).rev() {
                if f.class.group == class.group {
                    found = Some(i);
                    break;
                }
                if f.class.flags & bound != 0 {
                    break;
                }
            }
            if let Some(at) = found {
                while self.frames.len() > at {
                    self.close(false);
                }
            }
        }
    }

    /// Closes the innermost open element into its parent's members.
    /// `whole`: by its own end tag.
    fn close(&mut self, whole: bool) {
        if self.frames.len() <= 1 {
            return;
        }
        let Some(frame) = self.frames.pop() else {
            return;
        };
        let text = self.str_of_text(frame.text_open);
        let node = self.object(frame.members_open, text);
        self.span(node, frame.start, self.nodes - frame.nodes_open, whole);
        self.members.truncate(frame.members_open);
        self.push_child(frame.key, node);
    }

    fn finish(&mut self) {
        if self.failed.is_some() {
            return;
        }
        while self.frames.len() > 1 {
            self.close(false);
        }
        let text = self.str_of_text(0);
        // The root is not an element: no source of its own.
        self.root = Some(self.object(0, text));
        self.members.clear();
    }

    /// The text collected since `open`, as a string in the arena; the stack drops it.
    fn str_of_text(&mut self, open: usize) -> &'a str {
        let s = self.str_of(self.text.get(open..).unwrap_or_default());
        self.text.truncate(open);
        s
    }

    fn str_of(&self, bytes: &[u8]) -> &'a str {
        if bytes.is_empty() {
            return "";
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => self.arena.alloc_str(s),
            Err(_) => self.arena.alloc_str(&String::from_utf8_lossy(bytes)),
        }
    }

    /// The key of a child in its parent: `tag`, `tag[id=…]` or `tag[name=…]`.
    fn child_key<'x>(
        &mut self,
        tag: &'a str,
        attrs: impl Iterator<Item = (&'x [u8], &'x [u8])>,
    ) -> &'a str {
        let (mut id, mut name) = (None, None);
        for (n, v) in attrs {
            if v.is_empty() {
                continue;
            }
            if n == b"id" && id.is_none() {
                id = Some((n, v));
            } else if n == b"name" && name.is_none() {
                name = Some((n, v));
            }
        }
        let named = id.or(name);
        let simple_tag = is_simple(tag);
        if named.is_none() && simple_tag {
            return tag;
        }
        self.key.clear();
        if simple_tag {
            self.key.push_str(tag);
        } else {
            push_quoted(&mut self.key, tag);
        }
        if let Some((name, value)) = named {
            self.key.push('[');
            self.key.push_str(if name == b"id" { "id" } else { "name" });
            self.key.push('=');
            let value = String::from_utf8_lossy(value);
            if is_simple(&value) {
                self.key.push_str(&value);
            } else {
                push_quoted(&mut self.key, &value);
            }
            self.key.push(']');
        }
        self.arena.alloc_str(&self.key)
    }

    /// The object of an element whose attributes and children are `members[open..]`: sorted by
    /// key, repeated keys grouped into arrays in document order, its text at `""`.
    fn object(&mut self, open: usize, text: &'a str) -> Node<'a> {
        let members = &mut self.members[open..];
        // Stable: repeated keys keep document order.
        members.sort_by(|x, y| x.0.cmp(y.0));
        let mut out: bumpalo::collections::Vec<'a, (&'a str, Node<'a>)> =
            bumpalo::collections::Vec::with_capacity_in(members.len() + 1, self.arena);
        out.push(("", Node::String(text)));
        let mut i = 0;
        while i < members.len() {
            let key = members[i].0;
            let mut j = i + 1;
            while j < members.len() && members[j].0 == key {
                j += 1;
            }
            if key.starts_with('@') {
                // A repeated attribute keeps its first value.
                out.push(members[i]);
            } else if j - i == 1 {
                out.push(members[i]);
            } else {
                let items = self
                    .arena
                    .alloc_slice_fill_iter(members[i..j].iter().map(|(_, n)| *n));
                out.push((key, Node::Array(items)));
            }
            i = j;
        }
        Node::Object(out.into_bump_slice())
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Names and values written in paths without quotes: `[A-Za-z0-9_:-]+`.
fn is_simple(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

fn push_name(out: &mut String, name: &str) {
    if is_simple(name) {
        out.push_str(name);
    } else {
        push_quoted(out, name);
    }
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Start,
    End,
    Other,
}

/// Receives the tokenizer's pieces and hands whole tags and text to the [`Builder`].
struct TreeEmitter<'b, 'a> {
    b: &'b mut Builder<'a>,
    s: &'b mut Scratch,
    kind: TagKind,
    self_closing: bool,
    in_attr: bool,
}

impl TreeEmitter<'_, '_> {
    /// Ends the attribute being read (its value is the bytes since its name ended).
    fn end_attr(&mut self) {
        if self.in_attr {
            if let Some(last) = self.s.attrs.last_mut() {
                last[2] = self.s.attr_bytes.len();
            }
            self.in_attr = false;
        }
    }

    /// The builder is done with this tokenizer (a limit, or an element taken whole).
    fn stopped(&self) -> bool {
        self.b.failed.is_some() || self.b.resume.is_some()
    }
}

impl Emitter for TreeEmitter<'_, '_> {
    type Token = ();

    fn set_last_start_tag(&mut self, last_start_tag: Option<&[u8]>) {
        self.s.last_start_tag.clear();
        self.s
            .last_start_tag
            .extend_from_slice(last_start_tag.unwrap_or_default());
    }

    fn emit_eof(&mut self) {}

    #[inline]
    fn move_position(&mut self, offset: isize) {
        self.b.pos = self.b.pos.saturating_add_signed(offset);
    }

    fn start_open_tag(&mut self) {
        if !self.stopped() {
            self.b.tag_start = self.b.pos;
        }
    }

    fn emit_error(&mut self, _error: TokenError) {}

    #[inline]
    fn should_emit_errors(&mut self) -> bool {
        false
    }

    fn pop_token(&mut self) -> Option<()> {
        self.stopped().then_some(())
    }

    fn emit_string(&mut self, c: &[u8]) {
        if !self.stopped() {
            self.b.push_text(c);
        }
    }

    fn init_start_tag(&mut self) {
        self.kind = TagKind::Start;
        self.s.tag.clear();
        self.self_closing = false;
        self.s.attr_bytes.clear();
        self.s.attrs.clear();
        self.in_attr = false;
    }

    fn init_end_tag(&mut self) {
        self.kind = TagKind::End;
        self.s.tag.clear();
        self.self_closing = false;
        self.s.attr_bytes.clear();
        self.s.attrs.clear();
        self.in_attr = false;
    }

    fn init_comment(&mut self) {
        self.kind = TagKind::Other;
    }

    fn emit_current_tag(&mut self) -> Option<State> {
        self.end_attr();
        if self.stopped() {
            return None;
        }
        match self.kind {
            TagKind::Start => {
                self.b.start_tag(
                    &self.s.tag,
                    &self.s.attr_bytes,
                    &self.s.attrs,
                    self.self_closing,
                );
                self.s.last_start_tag.clear();
                self.s.last_start_tag.extend_from_slice(&self.s.tag);
                self.kind = TagKind::Other;
                naive_next_state(&self.s.tag)
            }
            TagKind::End => {
                self.b.end_tag(&self.s.tag);
                self.s.last_start_tag.clear();
                self.kind = TagKind::Other;
                None
            }
            TagKind::Other => None,
        }
    }

    fn emit_current_comment(&mut self) {}

    fn emit_current_doctype(&mut self) {}

    fn set_self_closing(&mut self) {
        if self.kind == TagKind::Start {
            self.self_closing = true;
        }
    }

    fn set_force_quirks(&mut self) {}

    fn push_tag_name(&mut self, s: &[u8]) {
        self.s.tag.extend_from_slice(s);
    }

    fn push_comment(&mut self, _s: &[u8]) {}

    fn push_doctype_name(&mut self, _s: &[u8]) {}

    fn init_doctype(&mut self) {
        self.kind = TagKind::Other;
    }

    fn init_attribute(&mut self) {
        self.end_attr();
        if self.kind == TagKind::Start {
            let at = self.s.attr_bytes.len();
            self.s.attrs.push([at, at, at, NOT_IN_SOURCE]);
            self.in_attr = true;
        }
    }

    fn push_attribute_name(&mut self, s: &[u8]) {
        if !self.in_attr {
            return;
        }
        self.s.attr_bytes.extend_from_slice(s);
        let end = self.s.attr_bytes.len();
        if let Some(last) = self.s.attrs.last_mut() {
            last[0] = end;
            last[1] = end;
            last[2] = end;
        }
    }

    fn push_attribute_value(&mut self, s: &[u8]) {
        if !self.in_attr {
            return;
        }
        // A value read in one piece straight from the source is borrowed from it.
        let (source, at) = (self.b.source.as_bytes(), s.as_ptr() as usize);
        let offset = at.wrapping_sub(source.as_ptr() as usize);
        let in_source = offset <= source.len() && s.len() <= source.len() - offset;
        self.s.attr_bytes.extend_from_slice(s);
        if let Some(last) = self.s.attrs.last_mut() {
            last[3] = if last[2] == last[1] && in_source {
                offset
            } else {
                NOT_IN_SOURCE
            };
            last[2] = self.s.attr_bytes.len();
        }
    }

    fn set_doctype_public_identifier(&mut self, _value: &[u8]) {}

    fn set_doctype_system_identifier(&mut self, _value: &[u8]) {}

    fn push_doctype_public_identifier(&mut self, _s: &[u8]) {}

    fn push_doctype_system_identifier(&mut self, _s: &[u8]) {}

    fn current_is_appropriate_end_tag_token(&mut self) -> bool {
        self.kind == TagKind::End
            && !self.s.last_start_tag.is_empty()
            && self.s.tag == self.s.last_start_tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare_responses;
    use crate::engine::Differ;
    use crate::rules::{Rules, RulesConfig};
    use shadowdiff_model::{
        Body, DiffKind, Exchange, HttpRequest, HttpResponse, Outcome, ReplayResult, TargetOutcome,
        TargetRole, SCHEMA_VERSION,
    };

    fn page(body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: Body::complete(body.as_bytes().to_vec()),
            latency_us: 1,
        }
    }

    fn diffs(a: &str, b: &str) -> Vec<(String, DiffKind)> {
        let cmp = compare_responses(&page(a), &page(b), &Rules::default());
        assert!(cmp.notes.is_empty(), "{:?}", cmp.notes);
        cmp.differences
            .iter()
            .map(|d| (d.path.clone(), d.kind))
            .collect()
    }

    fn one(path: &str, kind: DiffKind) -> Vec<(String, DiffKind)> {
        vec![(path.to_string(), kind)]
    }

    const DOC: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Orders</title>
  <script nonce="r4nd0m">var x = 1;</script>
</head>
<body>
  <ul class="nav"><li><a href="/a">A</a></li><li><a href="/b">B</a></li></ul>
  <form action="/save" method="post">
    <input type="hidden" name="csrf" value="abc">
    <input name="q" value="">
  </form>
  <div id="main"><p>Hello <b>world</b>, today</p></div>
  <!-- rendered by web-7 -->
</body>
</html>"#;

    #[test]
    fn paths_name_elements_text_and_attributes() {
        assert_eq!(
            diffs(DOC, &DOC.replace("<title>Orders", "<title>Commandes")),
            one("body.html.head.title", DiffKind::Value)
        );
        assert_eq!(
            diffs(DOC, &DOC.replace("value=\"abc\"", "value=\"abd\"")),
            one(
                "body.html.body.form.input[name=csrf]@value",
                DiffKind::Value
            )
        );
        assert_eq!(
            diffs(DOC, &DOC.replace("href=\"/b\"", "href=\"/c\"")),
            one("body.html.body.ul.li[1].a@href", DiffKind::Value)
        );
        assert_eq!(
            diffs(DOC, &DOC.replace("<b>world</b>", "<b>moon</b>")),
            one("body.html.body.div[id=main].p.b", DiffKind::Value)
        );
        assert_eq!(
            diffs(DOC, &DOC.replace("lang=\"en\"", "lang=\"fr\"")),
            one("body.html@lang", DiffKind::Value)
        );
        assert_eq!(
            diffs(DOC, &DOC.replace(" method=\"post\"", "")),
            one("body.html.body.form@method", DiffKind::Missing)
        );
        assert_eq!(
            diffs(DOC, &DOC.replace("var x = 1;", "var x = 2;")),
            one("body.html.head.script", DiffKind::Value)
        );
        // A quoted name, and a third link: the list grew by one.
        assert_eq!(
            diffs(DOC, &DOC.replace("name=\"q\"", "name=\"user[q]\"")),
            vec![
                (
                    "body.html.body.form.input[name=q]".to_string(),
                    DiffKind::Missing
                ),
                (
                    "body.html.body.form.input[name=\"user[q]\"]".to_string(),
                    DiffKind::Extra
                )
            ]
        );
        assert_eq!(
            diffs(
                DOC,
                &DOC.replace("</li></ul>", "</li><li><a href=\"/c\">C</a></li></ul>")
            ),
            vec![
                ("body.html.body.ul.li".to_string(), DiffKind::Size),
                ("body.html.body.ul.li[2]".to_string(), DiffKind::Extra)
            ]
        );
    }

    #[test]
    fn an_element_with_an_id_keeps_its_path_when_a_sibling_is_inserted() {
        let rows = |ids: &[u32]| {
            let mut s = String::from("<table>");
            for id in ids {
                s.push_str(&format!("<tr id=\"r{id}\"><td>{id}</td></tr>"));
            }
            s + "</table>"
        };
        let (a, b) = (
            rows(&[1, 2, 3]),
            rows(&[1, 9, 2, 3]).replace("<td>3<", "<td>4<"),
        );
        let cmp = compare_responses(&page(&a), &page(&b), &Rules::default());
        // A one-sided element is shown as its source.
        assert_eq!(
            cmp.differences[1].candidate.as_deref(),
            Some("<tr id=\"r9\"><td>9</td></tr>")
        );
        let d = diffs(&a, &b);
        assert_eq!(
            d,
            vec![
                ("body.table.tr[id=r3].td".to_string(), DiffKind::Value),
                ("body.table.tr[id=r9]".to_string(), DiffKind::Extra)
            ]
        );
    }

    #[test]
    fn equal_elements_are_taken_whole_from_the_other_page() {
        let other = DOC
            .replace("Orders", "Commandes")
            .replace("value=\"abc\"", "value=\"x\"");
        let arena = Arena::new();
        let control = parse_tree(DOC.as_bytes(), &arena).expect("tree");
        let fresh = parse_tree(other.as_bytes(), &arena).expect("tree");
        let like = parse_tree_like(other.as_bytes(), &arena, Some(&control)).expect("tree");
        assert_eq!(like.root, fresh.root);
        let nav = |t: &HtmlTree<'_>| match t.root.get("html").and_then(|h| h.get("body")) {
            Some(Node::Object(body)) => match body.iter().find(|(k, _)| *k == "ul") {
                Some((_, Node::Object(ul))) => ul.as_ptr() as usize,
                _ => panic!("no ul"),
            },
            _ => panic!("no body"),
        };
        // The unchanged list is the control's own subtree; the fresh parse built its own.
        assert_eq!(nav(&like), nav(&control));
        assert_ne!(nav(&fresh), nav(&control));
        assert_eq!(
            diffs(DOC, &other),
            vec![
                (
                    "body.html.body.form.input[name=csrf]@value".to_string(),
                    DiffKind::Value
                ),
                ("body.html.head.title".to_string(), DiffKind::Value)
            ]
        );
    }

    #[test]
    fn one_element_against_several_is_an_array_of_one() {
        assert_eq!(
            diffs("<ul><li>a</li></ul>", "<ul><li>a</li><li>b</li></ul>"),
            vec![
                ("body.ul.li".to_string(), DiffKind::Size),
                ("body.ul.li[1]".to_string(), DiffKind::Extra)
            ]
        );
    }

    #[test]
    fn attribute_order_whitespace_and_comments_do_not_matter() {
        let a = r#"<div class="x" id="y" data-k="1"><p>Hello
              world</p><!-- one --></div>"#;
        let b = r#"<div  data-k="1"   id="y" class="x" ><!-- two --><p>  Hello world  </p></div>"#;
        assert_eq!(diffs(a, b), vec![]);
        // Whitespace inside a word is not whitespace between words.
        assert_eq!(
            diffs("<p>Hello world</p>", "<p>Helloworld</p>"),
            one("body.p", DiffKind::Value)
        );
        // Line ends in values are normalised by the tokenizer, as in text; NUL is replaced.
        assert_eq!(
            diffs(
                "<p title=\"a\r\nb\rc\">x\r\ny</p>",
                "<p title=\"a\nb\nc\">x\ny</p>"
            ),
            vec![]
        );
        assert_eq!(
            diffs("<p title=\"a\0b\">x</p>", "<p title=\"a\u{fffd}b\">x</p>"),
            vec![]
        );
        // Entities are decoded; a repeated attribute keeps its first value.
        assert_eq!(
            diffs(
                "<p title=\"a&amp;b\">&lt;x&gt;</p>",
                "<p title=\"a&b\" title=\"z\">&#60;x></p>"
            ),
            vec![]
        );
    }

    #[test]
    fn malformed_and_unclosed_html_still_has_a_tree() {
        let a = "<html><body><p>one<p>two<ul><li>a<li>b</ul><div><span>x</div></table></body>";
        let arena = Arena::new();
        let tree = parse_html(a.as_bytes(), &arena).expect("tree");
        let body = tree.get("html").and_then(|h| h.get("body")).expect("body");
        let Some(Node::Array(ps)) = body.get("p") else {
            panic!("two sibling paragraphs: {body:?}")
        };
        assert_eq!(ps.len(), 2);
        assert!(
            matches!(body.get("ul").and_then(|u| u.get("li")), Some(Node::Array(items)) if items.len() == 2)
        );
        assert_eq!(
            diffs(a, &a.replace("<li>b", "<li>c")),
            one("body.html.body.ul.li[1]", DiffKind::Value)
        );
        // Truncated in the middle of a tag, an attribute, a comment.
        for cut in [
            "<div><a href=\"/x",
            "<div><p>text<!-- never",
            "<di",
            "<",
            "</",
            "&am",
        ] {
            let _ = diffs(cut, "<div></div>");
        }
    }

    #[test]
    fn deep_nesting_and_huge_bodies_fall_back_to_text_with_a_note() {
        let deep = "<div>".repeat(100_000);
        let cmp = compare_responses(
            &page(&deep),
            &page(&(deep.clone() + "x")),
            &Rules::default(),
        );
        assert_eq!(cmp.differences.len(), 1);
        assert_eq!(cmp.differences[0].kind, DiffKind::Text);
        assert!(cmp.notes[0].contains("deeper than 128"), "{:?}", cmp.notes);
        // Just under the limit is a tree.
        let ok = "<div>".repeat(MAX_HTML_DEPTH);
        assert_eq!(diffs(&ok, &(ok.clone() + "x")).len(), 1);

        let many = "<br>".repeat(MAX_HTML_NODES + 1);
        let cmp = compare_responses(
            &page(&many),
            &page(&(many.clone() + "x")),
            &Rules::default(),
        );
        assert!(cmp.notes[0].contains("more than"), "{:?}", cmp.notes);

        let big = format!("<p>{}</p>", "a".repeat(MAX_HTML_BYTES));
        let cmp = compare_responses(&page(&big), &page(&(big.clone() + "x")), &Rules::default());
        assert!(cmp.notes[0].contains("byte limit"), "{:?}", cmp.notes);
        assert_eq!(cmp.differences[0].kind, DiffKind::Text);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let arena = Arena::new();
        let tree = parse_html(b"<p>caf\xe9</p><p \xff=\"\xfe\">x</p>", &arena).expect("tree");
        assert!(matches!(tree.get("p"), Some(Node::Array(_))));
    }

    #[test]
    fn ignore_rules_and_detectors_apply_per_node() {
        let rules = Rules::compile(&RulesConfig {
            ignore: vec!["body.**.input[name=csrf]@value".into()],
            ..RulesConfig::default()
        })
        .expect("rules");
        let cmp = compare_responses(
            &page(DOC),
            &page(&DOC.replace("value=\"abc\"", "value=\"zzz\"")),
            &rules,
        );
        assert!(cmp.differences.is_empty(), "{:?}", cmp.differences);
        // A random token in an attribute, a timestamp in a text: noise by detector.
        let differ = Differ::default();
        let (real, noise) = differ.classify(
            compare_responses(
                &page("<input name=\"csrf\" value=\"Zx81Lq0Pm2Vt9Ks3aQ\"><time>2026-11-22T10:00:00Z</time>"),
                &page("<input name=\"csrf\" value=\"r7Hk2LpQ9sXw3Nv0bT\"><time>2026-11-22T10:00:07Z</time>"),
                &Rules::default(),
            )
            .differences,
            None,
        );
        assert!(real.is_empty(), "{real:?}");
        let reasons: Vec<_> = noise.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, vec!["detector:random_id", "detector:timestamp"]);
    }

    fn exchange(control: &str, secondary: &str, candidate: &str) -> ReplayResult {
        ReplayResult {
            schema_version: SCHEMA_VERSION,
            exchange: Exchange {
                schema_version: SCHEMA_VERSION,
                id: "x".into(),
                captured_at_ms: 1,
                source: "test".into(),
                experiment: "e".into(),
                request: HttpRequest {
                    method: "GET".into(),
                    uri: "/orders".into(),
                    headers: vec![],
                    body: Body::default(),
                },
                control: Some(page(control)),
                redactions: vec![],
                sample_rate: 1.0,
            },
            blocked: None,
            outcomes: vec![
                TargetOutcome {
                    target: "secondary".into(),
                    role: TargetRole::Secondary,
                    result: Ok(page(secondary)),
                },
                TargetOutcome {
                    target: "v2".into(),
                    role: TargetRole::Candidate,
                    result: Ok(page(candidate)),
                },
            ],
            candidates: vec!["v2".into()],
            side_effects: vec![],
            saturated: false,
            host_busy: false,
        }
    }

    #[test]
    fn the_secondary_masks_a_nonce_and_a_render_time_but_not_a_changed_title() {
        let render = |nonce: &str, ms: u32, title: &str| {
            DOC.replace("r4nd0m", nonce)
                .replace("<title>Orders", &format!("<title>{title}"))
                .replace(
                    "<!-- rendered by web-7 -->",
                    &format!("<footer><p>Rendered in {ms} ms</p></footer>"),
                )
        };
        let differ = Differ::default();
        let control = render("aaa", 12, "Orders");
        let secondary = render("bbb", 15, "Orders");
        let records = differ.diff(&exchange(&control, &secondary, &render("ccc", 9, "Orders")));
        let candidate = &records[1];
        assert_eq!(candidate.outcome, Outcome::Match, "{candidate:?}");
        let masked: Vec<_> = candidate
            .noise
            .iter()
            .map(|n| (n.difference.path.as_str(), n.reason.as_str()))
            .collect();
        assert_eq!(
            masked,
            vec![
                ("body.html.body.footer.p", "secondary"),
                ("body.html.head.script@nonce", "secondary")
            ]
        );

        let records = differ.diff(&exchange(
            &control,
            &secondary,
            &render("ddd", 11, "Ordres"),
        ));
        let candidate = &records[1];
        assert_eq!(candidate.outcome, Outcome::Mismatch);
        let real: Vec<_> = candidate
            .differences
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(real, vec!["body.html.head.title"]);
        assert_eq!(candidate.noise.len(), 2);
    }

    #[test]
    fn a_page_never_differs_from_itself() {
        for doc in [
            DOC,
            "",
            "<",
            "text only",
            "<p>a<p>b",
            "<svg><path d=\"M0\"/></svg>",
        ] {
            assert_eq!(diffs(doc, &format!("{doc}<!-- -->")), vec![], "{doc}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::json::{diff_markup_into, Collector};
    use crate::rules::Rules;
    use proptest::prelude::*;
    use shadowdiff_model::DiffKind;

    const PAGES: &[&str] = &[
        "<!DOCTYPE html><html><head><title>T</title><script nonce=\"n1\">var a = 1 < 2;</script>\
         </head><body><ul><li>a<li>b</ul><table><tr><td>1<td>2<tr id=\"r\"><td>3</table>\
         <form><input name=\"csrf\" value=\"v\"><select><option>x<option>y</select></form>\
         <p>one<p>two <b>bold</b> tail<div><span>s</div></body></html>",
        "<html>\r\n<body>\r\n<h1>a<h2>b</h2><dl><dt>k<dd>v<dt>k2<dd>v2</dl>\
         <svg><path d=\"M0 0\"/></svg><textarea><b>not a tag</b></textarea><!-- c --></body>",
        "<div id=a><div id=b><p class='x' data-k=1>text &amp; more</p></div><br/><img src=x>",
    ];

    fn diff(a: &HtmlTree<'_>, b: &HtmlTree<'_>) -> Vec<(String, DiffKind)> {
        let rules = Rules::default();
        let mut c = Collector::new(&rules);
        diff_markup_into(a, b, "body", &mut c);
        c.out.into_iter().map(|d| (d.path, d.kind)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Skipping elements whose sources are equal skips nothing that differs: the same
        /// differences as a walk of both whole trees, after any edits.
        #[test]
        fn equal_sources_skip_nothing_that_differs(
            base in prop::sample::select(PAGES),
            edits in prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    0usize..4,
                    prop::sample::select(vec![
                        "", "<", ">", "x", " ", "\"", "</p>", "<li>", "&amp;", "\r\n", "<!--",
                        "-->", "<td>", "</div>", "<p>", "/", "=", "é",
                    ]),
                ),
                1..4,
            ),
        ) {
            let mut edited = base.to_string();
            for (at, delete, insert) in edits {
                let mut i = at.index(edited.len() + 1);
                while !edited.is_char_boundary(i) {
                    i -= 1;
                }
                let mut j = (i + delete).min(edited.len());
                while !edited.is_char_boundary(j) {
                    j += 1;
                }
                edited.replace_range(i..j, insert);
            }
            let arena = Arena::new();
            let (a, b) = (
                parse_tree(base.as_bytes(), &arena).expect("tree"),
                parse_tree(edited.as_bytes(), &arena).expect("tree"),
            );
            let skipping = diff(&a, &b);
            let (mut wa, mut wb) = (
                parse_tree(base.as_bytes(), &arena).expect("tree"),
                parse_tree(edited.as_bytes(), &arena).expect("tree"),
            );
            wa.sources.spans = &[];
            wb.sources.spans = &[];
            prop_assert_eq!(skipping, diff(&wa, &wb), "{}", edited);
            // Taking the equal elements whole from the other document builds the same tree.
            let like = parse_tree_like(edited.as_bytes(), &arena, Some(&a)).expect("tree");
            prop_assert_eq!(like.root, b.root, "{}", edited);
            let back = parse_tree_like(base.as_bytes(), &arena, Some(&b)).expect("tree");
            prop_assert_eq!(back.root, a.root, "{}", base);
            prop_assert_eq!(diff(&a, &like), diff(&wa, &wb), "{}", edited);
        }
    }
}
