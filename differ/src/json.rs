//! Structural JSON diff with typed differences at dotted paths.

use crate::html::{HtmlTree, Sources};
use crate::node::{with_arena, Node, Num};
use crate::parse::{Step, Window};
use crate::rules::{ArrayMode, Rules};
use serde_json::Value;
use shadowdiff_model::{collapse_indexes, DiffKind, Difference};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Nodes nested deeper than this are compared by hash, so that no input can exhaust the stack.
const MAX_DEPTH: usize = 128;
/// Longest rendering of a value kept in a difference.
const EXCERPT_CHARS: usize = 120;
/// Arrays longer than this that differ in length are compared as a whole, not aligned.
const MAX_ALIGNED_ARRAY: usize = 10_000;

/// Collects differences, stopping at the rules' limit.
pub(crate) struct Collector<'r> {
    pub(crate) rules: &'r Rules,
    pub(crate) out: Vec<Difference>,
    /// Differences beyond `max_differences` that were counted but not kept.
    pub(crate) dropped: usize,
}

impl<'r> Collector<'r> {
    pub(crate) fn new(rules: &'r Rules) -> Self {
        Self {
            rules,
            out: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn push(
        &mut self,
        path: &str,
        kind: DiffKind,
        control: Option<String>,
        candidate: Option<String>,
    ) {
        if !self.rules.ignore.is_empty() && self.rules.is_ignored(&collapse_indexes(path)) {
            return;
        }
        if self.out.len() >= self.rules.max_differences {
            self.dropped += 1;
            return;
        }
        self.out.push(Difference {
            path: path.to_string(),
            kind,
            control,
            candidate,
        });
    }
}

/// Differences between two JSON values, with paths rooted at `root` (e.g. `body`).
pub fn diff_json(control: &Value, candidate: &Value, rules: &Rules, root: &str) -> Vec<Difference> {
    let mut c = Collector::new(rules);
    with_arena(|arena| {
        diff_json_into(
            &Node::from_value(control, arena),
            &Node::from_value(candidate, arena),
            root,
            &mut c,
        )
    });
    c.out
}

pub(crate) fn diff_json_into<'t>(
    control: &'t Node<'_>,
    candidate: &'t Node<'_>,
    root: &'t str,
    c: &mut Collector<'_>,
) {
    let mut path = PathStack::new(root);
    diff_value(control, candidate, &mut path, 0, c);
}

/// [`diff_json_into`] of two documents that are the same but for one value
/// (`parse::window`): the walk of the two whole trees would find nothing outside it,
/// so only the value is compared, at its path and nesting level.
pub(crate) fn diff_window_into<'t>(window: &'t Window<'_>, root: &'t str, c: &mut Collector<'_>) {
    let mut path = PathStack::new(root);
    path.segs.extend_from_slice(&window.steps);
    let depth = path.len();
    diff_value(&window.control, &window.candidate, &mut path, depth, c);
}

/// [`diff_json_into`] for the trees of HTML documents (`crate::html`): keys are written into
/// paths as the tree builder made them (`.tag`, `.tag[id=x]`, `@attr`, `""` for the element's
/// own text), and an element that is alone on one side and repeated on the other is compared as
/// an array of one.
///
/// Elements whose source text is the same on both sides are equal without a walk.
pub(crate) fn diff_markup_into<'t>(
    control: &'t HtmlTree<'_>,
    candidate: &'t HtmlTree<'_>,
    root: &'t str,
    c: &mut Collector<'_>,
) {
    let mut path = PathStack::new(root);
    path.markup = Some((&control.sources, &candidate.sources));
    diff_value(&control.root, &candidate.root, &mut path, 0, c);
}

type Entries<'n, 'a> = &'n [(&'a str, Node<'a>)];

fn diff_value<'t>(
    a: &'t Node<'_>,
    b: &'t Node<'_>,
    path: &mut PathStack<'t>,
    depth: usize,
    c: &mut Collector<'_>,
) {
    if depth > MAX_DEPTH {
        if hash_node(a) != hash_node(b) {
            c.push(
                &path.render(),
                DiffKind::Value,
                Some(excerpt_node(a)),
                Some(excerpt_node(b)),
            );
        }
        return;
    }
    match (a, b) {
        (Node::Object(x), Node::Object(y)) => {
            // One subtree taken whole into both trees (`Node::parse_pair`, `parse_tree_like`).
            if std::ptr::eq(*x, *y) {
                return;
            }
            if let Some((sa, sb)) = path.markup {
                // Two elements of the same source.
                if let (Some(p), Some(q)) = (sa.of(x), sb.of(y)) {
                    if p == q {
                        return;
                    }
                }
            }
            diff_objects(x, y, path, depth, c)
        }
        (Node::Array(x), Node::Array(y)) => {
            if !std::ptr::eq(*x, *y) {
                diff_arrays(x, y, path, depth, c)
            }
        }
        (Node::Number(x), Node::Number(y)) => {
            if !numbers_equal(*x, *y, c.rules) {
                c.push(
                    &path.render(),
                    DiffKind::Value,
                    Some(x.to_string()),
                    Some(y.to_string()),
                );
            }
        }
        (Node::String(x), Node::String(y)) => {
            if x != y && !strings_equal(x, y, path, c.rules) {
                c.push(
                    &path.render(),
                    DiffKind::Value,
                    Some(excerpt_node(a)),
                    Some(excerpt_node(b)),
                );
            }
        }
        (Node::Bool(x), Node::Bool(y)) => {
            if x != y {
                c.push(
                    &path.render(),
                    DiffKind::Value,
                    Some(x.to_string()),
                    Some(y.to_string()),
                );
            }
        }
        (Node::Null, Node::Null) => {}
        (Node::Deep(x), Node::Deep(y)) => {
            if x != y {
                c.push(
                    &path.render(),
                    DiffKind::Value,
                    Some(excerpt_node(a)),
                    Some(excerpt_node(b)),
                );
            }
        }
        // One `<li>` against several: the one is an array of one.
        (Node::Object(_), Node::Array(y)) if path.markup.is_some() => {
            diff_arrays(std::slice::from_ref(a), y, path, depth, c)
        }
        (Node::Array(x), Node::Object(_)) if path.markup.is_some() => {
            diff_arrays(x, std::slice::from_ref(b), path, depth, c)
        }
        _ => c.push(
            &path.render(),
            DiffKind::Type,
            Some(excerpt_node(a)),
            Some(excerpt_node(b)),
        ),
    }
}

fn diff_objects<'t>(
    a: Entries<'t, '_>,
    b: Entries<'t, '_>,
    path: &mut PathStack<'t>,
    depth: usize,
    c: &mut Collector<'_>,
) {
    use std::cmp::Ordering;
    let base = path.len();
    // Both sides are sorted by key: one merge pass, one comparison per key. Extras are reported
    // after the rest, so a renamed key reads "missing, then extra".
    let mut extras: Vec<usize> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let (key, av) = (&a[i].0, &a[i].1);
        let order = match b.get(j) {
            Some((kb, _)) => key.cmp(kb),
            None => Ordering::Less,
        };
        match order {
            Ordering::Greater => {
                extras.push(j);
                j += 1;
            }
            Ordering::Equal => {
                push_key(path, key);
                diff_value(av, &b[j].1, path, depth + 1, c);
                path.truncate(base);
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                if !(c.rules.null_equals_missing && av.is_null()) {
                    push_key(path, key);
                    push_one_sided(c, path, DiffKind::Missing, av);
                    path.truncate(base);
                }
                i += 1;
            }
        }
    }
    extras.extend(j..b.len());
    for j in extras {
        let (key, bv) = (&b[j].0, &b[j].1);
        if c.rules.null_equals_missing && bv.is_null() {
            continue;
        }
        push_key(path, key);
        push_one_sided(c, path, DiffKind::Extra, bv);
        path.truncate(base);
    }
}

/// The path of the node being compared. Most nodes are equal, so the dotted string is built
/// only for differences (and for rules that match on paths).
pub(crate) struct PathStack<'t> {
    root: &'t str,
    /// Borrowed from the trees being compared, rendered only when needed.
    segs: Vec<Step<'t>>,
    /// For HTML trees, the two documents' element sources: keys are written as they are and
    /// equal sources are equal elements (see [`diff_markup_into`]).
    markup: Option<(&'t Sources<'t>, &'t Sources<'t>)>,
}

impl<'t> PathStack<'t> {
    fn new(root: &'t str) -> Self {
        Self {
            root,
            segs: Vec::with_capacity(16),
            markup: None,
        }
    }

    fn len(&self) -> usize {
        self.segs.len()
    }

    fn truncate(&mut self, len: usize) {
        self.segs.truncate(len);
    }

    /// The exact dotted path, e.g. `body.items[3].price`.
    fn render(&self) -> String {
        let mut out = String::with_capacity(self.root.len() + 8 * self.segs.len());
        out.push_str(self.root);
        for seg in &self.segs {
            match seg {
                Step::Key(k) if self.markup.is_some() => write_markup_key(&mut out, k),
                Step::Key(k) => write_key(&mut out, k),
                Step::Index(i) => write_index(&mut out, *i),
            }
        }
        out
    }
}

fn push_key<'t>(path: &mut PathStack<'t>, key: &'t str) {
    path.segs.push(Step::Key(key));
}

fn push_index(path: &mut PathStack<'_>, i: usize) {
    path.segs.push(Step::Index(i));
}

/// Appends `.key`, quoting keys that would make the path ambiguous.
pub(crate) fn write_key(path: &mut String, key: &str) {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$' || b == b'@')
    {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str("[\"");
        for ch in key.chars() {
            if ch == '"' || ch == '\\' {
                path.push('\\');
            }
            path.push(ch);
        }
        path.push_str("\"]");
    }
}

/// Appends an HTML tree key: `.tag` or `.tag[id=x]` for a child, `@name` for an attribute,
/// nothing for the element's own text (the tree builder quotes what needs quoting).
pub(crate) fn write_markup_key(path: &mut String, key: &str) {
    if !key.is_empty() && !key.starts_with('@') {
        path.push('.');
    }
    path.push_str(key);
}

fn write_index(path: &mut String, i: usize) {
    let _ = write!(path, "[{i}]");
}

fn diff_arrays<'t>(
    a: &'t [Node<'_>],
    b: &'t [Node<'_>],
    path: &mut PathStack<'t>,
    depth: usize,
    c: &mut Collector<'_>,
) {
    let mode = if c.rules.arrays.is_empty() {
        &ArrayMode::Ordered
    } else {
        c.rules.array_mode(&collapse_indexes(&path.render()))
    };
    match mode {
        ArrayMode::Ordered => diff_ordered(a, b, path, depth, c),
        ArrayMode::Set => diff_as_set(a, b, path, c),
        ArrayMode::Key(key) => diff_by_key(a, b, key, path, depth, c),
    }
}

fn diff_ordered<'t>(
    a: &'t [Node<'_>],
    b: &'t [Node<'_>],
    path: &mut PathStack<'t>,
    depth: usize,
    c: &mut Collector<'_>,
) {
    let base = path.len();
    if a.len() == b.len() {
        // Element by element, but a pure permutation is one `order` difference, not N values.
        let mut inner = Collector::new(c.rules);
        let mut differing_positions = 0;
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let before = inner.out.len() + inner.dropped;
            push_index(path, i);
            diff_value(x, y, path, depth + 1, &mut inner);
            path.truncate(base);
            if inner.out.len() + inner.dropped > before {
                differing_positions += 1;
            }
        }
        if differing_positions == 0 {
            return;
        }
        // A permutation moves at least two elements; one changed element is just a change.
        if differing_positions >= 2 && same_multiset(a, b) {
            c.push(
                &path.render(),
                DiffKind::Order,
                Some(excerpt_slice(a)),
                Some(excerpt_slice(b)),
            );
            return;
        }
        for d in inner.out {
            c.push(&d.path, d.kind, d.control, d.candidate);
        }
        c.dropped += inner.dropped;
        return;
    }

    c.push(
        &path.render(),
        DiffKind::Size,
        Some(a.len().to_string()),
        Some(b.len().to_string()),
    );
    if a.len() > MAX_ALIGNED_ARRAY || b.len() > MAX_ALIGNED_ARRAY {
        return;
    }
    // Align by element hash so that one insertion is one `extra`, not a cascade of values.
    let ha: Vec<u64> = a.iter().map(hash_node).collect();
    let hb: Vec<u64> = b.iter().map(hash_node).collect();
    // Align in one orientation (shorter side first), so that diff(a, b) mirrors diff(b, a).
    let swapped = ha.len() > hb.len();
    let ops = if swapped {
        similar::capture_diff_slices(similar::Algorithm::Myers, &hb, &ha)
    } else {
        similar::capture_diff_slices(similar::Algorithm::Myers, &ha, &hb)
    };
    for op in ops {
        if op.tag() == similar::DiffTag::Equal {
            continue;
        }
        let (ra, rb) = if swapped {
            (op.new_range(), op.old_range())
        } else {
            (op.old_range(), op.new_range())
        };
        let paired = ra.len().min(rb.len());
        for (k, (x, y)) in a[ra.clone()].iter().zip(&b[rb.clone()]).enumerate() {
            push_index(path, ra.start + k);
            diff_value(x, y, path, depth + 1, c);
            path.truncate(base);
        }
        push_run(a, ra.start + paired..ra.end, DiffKind::Missing, path, c);
        push_run(b, rb.start + paired..rb.end, DiffKind::Extra, path, c);
    }
}

/// A value on one side only: `Missing` (the control has it) or `Extra` (the candidate has it).
fn push_one_sided(c: &mut Collector<'_>, path: &PathStack<'_>, kind: DiffKind, v: &Node<'_>) {
    // An HTML element is shown as its source.
    let source = match (path.markup, v) {
        (Some((sa, sb)), Node::Object(entries)) => {
            if kind == DiffKind::Missing {
                sa.of(entries)
            } else {
                sb.of(entries)
            }
        }
        _ => None,
    };
    let shown = Some(match source {
        Some(s) => truncate_chars(
            s.split_ascii_whitespace().collect::<Vec<_>>().join(" "),
            EXCERPT_CHARS,
        ),
        None => excerpt_node(v),
    });
    let (control, candidate) = if kind == DiffKind::Missing {
        (shown, None)
    } else {
        (None, shown)
    };
    c.push(&path.render(), kind, control, candidate);
}

/// Reports each of `items[range]` as one-sided (`Missing` or `Extra`) at its own index.
fn push_run(
    items: &[Node<'_>],
    range: std::ops::Range<usize>,
    kind: DiffKind,
    path: &mut PathStack<'_>,
    c: &mut Collector<'_>,
) {
    let base = path.len();
    for (i, v) in items.iter().enumerate().take(range.end).skip(range.start) {
        push_index(path, i);
        push_one_sided(c, path, kind, v);
        path.truncate(base);
    }
}

fn same_multiset(a: &[Node<'_>], b: &[Node<'_>]) -> bool {
    let mut ha: Vec<u64> = a.iter().map(hash_node).collect();
    let mut hb: Vec<u64> = b.iter().map(hash_node).collect();
    ha.sort_unstable();
    hb.sort_unstable();
    ha == hb
}

fn diff_as_set<'t>(
    a: &'t [Node<'_>],
    b: &'t [Node<'_>],
    path: &mut PathStack<'t>,
    c: &mut Collector<'_>,
) {
    let base = path.len();
    let mut counts: HashMap<u64, isize> = HashMap::with_capacity(a.len());
    for v in a {
        *counts.entry(hash_node(v)).or_default() += 1;
    }
    for v in b {
        *counts.entry(hash_node(v)).or_default() -= 1;
    }
    // Report each surplus element at its own index, in order, once per surplus count.
    for (i, v) in a.iter().enumerate() {
        if let Some(n) = counts.get_mut(&hash_node(v)) {
            if *n > 0 {
                *n -= 1;
                push_index(path, i);
                push_one_sided(c, path, DiffKind::Missing, v);
                path.truncate(base);
            }
        }
    }
    for (j, v) in b.iter().enumerate() {
        if let Some(n) = counts.get_mut(&hash_node(v)) {
            if *n < 0 {
                *n += 1;
                push_index(path, j);
                push_one_sided(c, path, DiffKind::Extra, v);
                path.truncate(base);
            }
        }
    }
}

fn diff_by_key<'t>(
    a: &'t [Node<'_>],
    b: &'t [Node<'_>],
    key: &str,
    path: &mut PathStack<'t>,
    depth: usize,
    c: &mut Collector<'_>,
) {
    use std::collections::VecDeque;
    let base = path.len();
    let key_of = |v: &Node<'_>| v.get(key).map(hash_node);
    // Candidate elements by key (repeated keys match in order), and those without the key by
    // their whole value.
    let mut by_key: HashMap<u64, VecDeque<usize>> = HashMap::with_capacity(b.len());
    let mut unkeyed: HashMap<u64, VecDeque<usize>> = HashMap::new();
    for (j, v) in b.iter().enumerate() {
        match key_of(v) {
            Some(k) => by_key.entry(k).or_default().push_back(j),
            None => unkeyed.entry(hash_node(v)).or_default().push_back(j),
        }
    }
    let mut matched = vec![false; b.len()];
    for (i, v) in a.iter().enumerate() {
        push_index(path, i);
        let partner = match key_of(v) {
            Some(k) => by_key.get_mut(&k).and_then(VecDeque::pop_front),
            None => unkeyed.get_mut(&hash_node(v)).and_then(VecDeque::pop_front),
        };
        match partner {
            Some(j) => {
                matched[j] = true;
                diff_value(v, &b[j], path, depth + 1, c);
            }
            None => push_one_sided(c, path, DiffKind::Missing, v),
        }
        path.truncate(base);
    }
    for (j, v) in b.iter().enumerate() {
        if !matched[j] {
            push_index(path, j);
            push_one_sided(c, path, DiffKind::Extra, v);
            path.truncate(base);
        }
    }
}

/// `1` equals `1.0`; tolerance applies to everything else.
fn numbers_equal(x: Num, y: Num, rules: &Rules) -> bool {
    if x == y {
        return true;
    }
    if let (Some(a), Some(b)) = (x.as_i128(), y.as_i128()) {
        if a == b {
            return true;
        }
        // Large integers that round to the same f64 are still different.
        if x.is_integer()
            && y.is_integer()
            && rules.tolerance.absolute == 0.0
            && rules.tolerance.relative == 0.0
        {
            return false;
        }
    }
    let (a, b) = (x.as_f64(), y.as_f64());
    if a == b {
        return !(x.is_integer() && y.is_integer());
    }
    let t = rules.tolerance;
    let delta = (a - b).abs();
    (t.absolute > 0.0 && delta <= t.absolute)
        || (t.relative > 0.0 && delta <= t.relative * a.abs().max(b.abs()))
}

fn strings_equal(x: &str, y: &str, path: &PathStack<'_>, rules: &Rules) -> bool {
    if rules.scrub.is_empty() && rules.case_insensitive.is_empty() {
        return false;
    }
    let aggregate = collapse_indexes(&path.render());
    let (mut x, mut y) = (Cow::Borrowed(x), Cow::Borrowed(y));
    for (re, replacement, paths) in &rules.scrub {
        if paths.is_empty() || paths.iter().any(|g| g.matches(&aggregate)) {
            x = Cow::Owned(re.replace_all(&x, replacement.as_str()).into_owned());
            y = Cow::Owned(re.replace_all(&y, replacement.as_str()).into_owned());
        }
    }
    if rules.case_insensitive.iter().any(|g| g.matches(&aggregate)) {
        return x.to_lowercase() == y.to_lowercase();
    }
    x == y
}

/// A hash of a value that is equal for equal values (`1` and `1.0` included) and independent of
/// object key order.
pub fn hash_value(v: &Value) -> u64 {
    with_arena(|arena| hash_node(&Node::from_value(v, arena)))
}

/// `hash_value` for the borrowed tree.
pub(crate) fn hash_node(v: &Node<'_>) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    // An explicit stack: values can nest deeper than the thread's stack allows.
    let mut stack: Vec<&Node<'_>> = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Node::Null => h.write(b"n"),
            Node::Deep(x) => {
                h.write(b"D");
                h.write(&x.to_le_bytes());
            }
            Node::Bool(b) => h.write(if *b { b"t" } else { b"f" }),
            Node::Number(n) => {
                h.write(b"#");
                match n.as_i128() {
                    Some(i) => h.write(&i.to_le_bytes()),
                    None => h.write(&n.as_f64().to_bits().to_le_bytes()),
                }
            }
            Node::String(s) => {
                h.write(b"\"");
                h.write(&(s.len() as u64).to_le_bytes());
                h.write(s.as_bytes());
            }
            Node::Array(items) => {
                h.write(b"[");
                h.write(&(items.len() as u64).to_le_bytes());
                stack.extend(items.iter().rev());
            }
            Node::Object(entries) => {
                // Entries are sorted by key, so iteration order is canonical.
                h.write(b"{");
                h.write(&(entries.len() as u64).to_le_bytes());
                for (k, _) in entries.iter() {
                    h.write(&(k.len() as u64).to_le_bytes());
                    h.write(k.as_bytes());
                }
                stack.extend(entries.iter().rev().map(|(_, v)| v));
            }
        }
    }
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A short rendering of a value for reports.
pub fn excerpt(v: &Value) -> String {
    with_arena(|arena| excerpt_node(&Node::from_value(v, arena)))
}

pub(crate) fn excerpt_node(v: &Node<'_>) -> String {
    let text = match v {
        Node::String(s) if s.len() <= EXCERPT_CHARS * 4 => quote(s),
        Node::Array(items) if items.len() > 64 => format!("[… {} items]", items.len()),
        Node::Object(map) if map.len() > 64 => format!("{{… {} keys}}", map.len()),
        other => shallow_json(other),
    };
    truncate_chars(text, EXCERPT_CHARS)
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn excerpt_slice(items: &[Node<'_>]) -> String {
    if items.len() > 64 {
        return format!("[… {} items]", items.len());
    }
    let mut s = String::from("[");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&excerpt_node(v));
        if s.len() > EXCERPT_CHARS * 2 {
            break;
        }
    }
    s.push(']');
    truncate_chars(s, EXCERPT_CHARS)
}

/// JSON text of a value, but never deeper than a few levels (deep values would recurse).
fn shallow_json(v: &Node<'_>) -> String {
    fn go(v: &Node<'_>, out: &mut String, depth: usize) {
        if out.len() > EXCERPT_CHARS * 2 {
            return;
        }
        match v {
            Node::Array(items) if depth < 4 => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go(x, out, depth + 1);
                    if out.len() > EXCERPT_CHARS * 2 {
                        break;
                    }
                }
                out.push(']');
            }
            Node::Object(map) if depth < 4 => {
                out.push('{');
                for (i, (k, x)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&quote(k));
                    out.push(':');
                    go(x, out, depth + 1);
                    if out.len() > EXCERPT_CHARS * 2 {
                        break;
                    }
                }
                out.push('}');
            }
            Node::Array(_) => out.push_str("[…]"),
            Node::Object(_) => out.push_str("{…}"),
            Node::String(s) => {
                let cut: String = s.chars().take(EXCERPT_CHARS).collect();
                out.push_str(&quote(&cut));
            }
            Node::Null => out.push_str("null"),
            Node::Deep(_) => out.push_str("[… nested too deep]"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Number(n) => out.push_str(&n.to_string()),
        }
    }
    let mut out = String::new();
    go(v, &mut out, 0);
    out
}

pub(crate) fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{ArrayRuleConfig, RulesConfig, Tolerance};
    use serde_json::json;

    fn kinds(d: &[Difference]) -> Vec<(String, DiffKind)> {
        d.iter().map(|d| (d.path.clone(), d.kind)).collect()
    }

    #[test]
    fn typed_differences_at_dotted_paths() {
        let a = json!({"user": {"id": 1, "name": "a", "email": "x"}, "tags": [1, 2]});
        let b = json!({"user": {"id": "1", "name": "b", "mail": "x"}, "tags": [1, 2, 3]});
        let d = diff_json(&a, &b, &Rules::default(), "body");
        assert_eq!(
            kinds(&d),
            vec![
                ("body.tags".into(), DiffKind::Size),
                ("body.tags[2]".into(), DiffKind::Extra),
                ("body.user.email".into(), DiffKind::Missing),
                ("body.user.id".into(), DiffKind::Type),
                ("body.user.name".into(), DiffKind::Value),
                ("body.user.mail".into(), DiffKind::Extra),
            ]
        );
    }

    #[test]
    fn integers_and_floats_that_are_equal_compare_equal() {
        assert!(diff_json(
            &json!({"a": 1}),
            &json!({"a": 1.0}),
            &Rules::default(),
            "body"
        )
        .is_empty());
        assert_eq!(
            diff_json(
                &json!(9007199254740993u64),
                &json!(9007199254740992u64),
                &Rules::default(),
                "body"
            )
            .len(),
            1
        );
    }

    #[test]
    fn permutation_is_one_order_difference() {
        let d = diff_json(
            &json!([1, 2, 3]),
            &json!([3, 1, 2]),
            &Rules::default(),
            "body",
        );
        assert_eq!(kinds(&d), vec![("body".into(), DiffKind::Order)]);
    }

    #[test]
    fn insertion_is_aligned_not_cascaded() {
        let d = diff_json(
            &json!([1, 2, 3, 4]),
            &json!([1, 9, 2, 3, 4]),
            &Rules::default(),
            "body",
        );
        assert_eq!(
            kinds(&d),
            vec![
                ("body".into(), DiffKind::Size),
                ("body[1]".into(), DiffKind::Extra)
            ]
        );
    }

    #[test]
    fn rules_change_the_outcome() {
        let config = RulesConfig {
            ignore: vec!["body.meta.**".into()],
            null_equals_missing: true,
            tolerance: Tolerance {
                absolute: 0.01,
                relative: 0.0,
            },
            arrays: vec![
                ArrayRuleConfig {
                    path: "body.tags".into(),
                    mode: "set".into(),
                    key: None,
                },
                ArrayRuleConfig {
                    path: "body.items".into(),
                    mode: "key".into(),
                    key: Some("id".into()),
                },
            ],
            case_insensitive: vec!["body.email".into()],
            ..RulesConfig::default()
        };
        let rules = Rules::compile(&config).unwrap();
        let a = json!({"meta": {"t": 1}, "x": null, "p": 1.0, "tags": ["a", "b"],
                       "items": [{"id": 1, "v": 1}, {"id": 2, "v": 2}], "email": "A@B.C"});
        let b = json!({"meta": {"t": 2}, "p": 1.005, "tags": ["b", "a"],
                       "items": [{"id": 2, "v": 2}, {"id": 1, "v": 5}], "email": "a@b.c"});
        let d = diff_json(&a, &b, &rules, "body");
        assert_eq!(kinds(&d), vec![("body.items[0].v".into(), DiffKind::Value)]);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut a = json!(1);
        let mut b = json!(2);
        for _ in 0..2000 {
            a = Value::Array(vec![a]);
            b = Value::Array(vec![b]);
        }
        let d = diff_json(&a, &b, &Rules::default(), "body");
        assert_eq!(d.len(), 1);
        // serde_json drops deep values recursively; leak them to keep the test about the diff.
        let _ = std::mem::ManuallyDrop::new(a);
        let _ = std::mem::ManuallyDrop::new(b);
    }
}
