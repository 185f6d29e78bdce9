//! Comparing two HTTP responses: status, headers, body.

use crate::decode::{body_format, decode_content, form_to_json, BodyFormat};
use crate::html::{parse_tree, parse_tree_like};
use crate::json::{diff_json_into, diff_markup_into, diff_window_into, Collector};
use crate::node::{with_arena, Node, PairParse};
use crate::parse::ParseError;
use crate::rules::Rules;
use crate::text::diff_text;
use shadowdiff_model::{DiffKind, Difference, Headers, HttpResponse};
use std::borrow::Cow;

/// The result of comparing a control response with another response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// What differs, after ignore rules, at most `max_differences` of them; not yet classified
    /// as noise.
    pub differences: Vec<Difference>,
    /// What the differ did that a reader should know (fallbacks, skipped bodies, limits).
    pub notes: Vec<String>,
    /// True when a body was not compared because it was truncated at capture.
    pub body_skipped_truncated: bool,
}

/// Compares status, headers and body of two responses under `rules`.
pub fn compare_responses(
    control: &HttpResponse,
    other: &HttpResponse,
    rules: &Rules,
) -> Comparison {
    let mut c = Collector::new(rules);
    let mut result = Comparison::default();

    if control.status != other.status {
        c.push(
            "status",
            DiffKind::Status,
            Some(control.status.to_string()),
            Some(other.status.to_string()),
        );
    }
    diff_headers(&control.headers, &other.headers, &mut c);

    if control.body.truncated || other.body.truncated {
        result.body_skipped_truncated = true;
        result
            .notes
            .push("body truncated at capture; body not compared".to_string());
    } else if control.status != other.status {
        // A 500 page against a JSON document is one finding (the status), not fifty.
        if control.body.bytes != other.body.bytes {
            result
                .notes
                .push("status differs; bodies not compared".to_string());
        }
    } else if control.body.bytes != other.body.bytes {
        diff_bodies(control, other, &mut c, &mut result.notes);
    }

    if c.dropped > 0 {
        result.notes.push(format!(
            "{} more differences not kept (max_differences = {})",
            c.dropped, rules.max_differences
        ));
    }
    result.differences = c.out;
    result
}

fn diff_bodies(
    control: &HttpResponse,
    other: &HttpResponse,
    c: &mut Collector<'_>,
    notes: &mut Vec<String>,
) {
    let rules = c.rules;
    let decoded_control = decode_content(&control.headers, &control.body.bytes, rules);
    let decoded_other = decode_content(&other.headers, &other.body.bytes, rules);
    let (a, b) = match (&decoded_control, &decoded_other) {
        (Ok(a), Ok(b)) => (&a[..], &b[..]),
        (Err(e), _) | (_, Err(e)) => {
            notes.push(format!("{e}; compared raw bytes"));
            (&control.body.bytes[..], &other.body.bytes[..])
        }
    };
    if a == b {
        return;
    }
    let format = body_format(&control.headers, a);
    match format {
        BodyFormat::Json => with_arena(|arena| {
            // Array rules look at arrays whole: no window inside one then.
            let through_arrays = rules.arrays.is_empty();
            let (x, y) = match Node::parse_pair_for_diff(a, b, arena, through_arrays) {
                PairParse::Window(window) => return diff_window_into(&window, "body", c),
                PairParse::Trees(x, y) => (x, y),
            };
            json_trees(x, y, a, b, c, notes)
        }),
        BodyFormat::Form => {
            let (x, y) = (form_to_json(a), form_to_json(b));
            with_arena(|arena| {
                diff_json_into(
                    &Node::from_value(&x, arena),
                    &Node::from_value(&y, arena),
                    "body",
                    c,
                )
            })
        }
        BodyFormat::Html => with_arena(|arena| {
            let x = parse_tree(a, arena);
            // The other page is mostly the control's: equal elements are taken whole.
            let y = parse_tree_like(b, arena, x.as_ref().ok());
            match (x, y) {
                (Ok(x), Ok(y)) => diff_markup_into(&x, &y, "body", c),
                (Err(e), _) | (_, Err(e)) => {
                    notes.push(format!("{e}; compared as text"));
                    text_or_binary(a, b, c);
                }
            }
        }),
        BodyFormat::Text | BodyFormat::Binary => text_or_binary(a, b, c),
    }
}

/// Two JSON bodies' trees (or why they are not JSON) compared.
fn json_trees(
    x: Result<Node<'_>, ParseError>,
    y: Result<Node<'_>, ParseError>,
    a: &[u8],
    b: &[u8],
    c: &mut Collector<'_>,
    notes: &mut Vec<String>,
) {
    match (x, y) {
        (Ok(x), Ok(y)) => diff_json_into(&x, &y, "body", c),
        (x, y) => {
            let which = match (x.is_err(), y.is_err()) {
                (true, true) => "control and candidate bodies",
                (true, false) => "control body",
                _ => "candidate body",
            };
            notes.push(format!(
                "{which} declared as JSON but not valid JSON; compared as text"
            ));
            text_or_binary(a, b, c);
        }
    }
}

fn text_or_binary(a: &[u8], b: &[u8], c: &mut Collector<'_>) {
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(x), Ok(y)) => diff_text(x, y, "body", c),
        _ => c.push(
            "body",
            DiffKind::Text,
            Some(format!("<{} bytes binary>", a.len())),
            Some(format!("<{} bytes binary>", b.len())),
        ),
    }
}

/// The headers the differ compares, by lower-case name (borrowed when already lower case),
/// sorted by name with the values of a repeated name in the order they came (a stable sort).
/// No map and no allocation per header: this runs for every target of every exchange, and the
/// repeat tracker keys answers by the same grouping.
pub(crate) fn compared_headers<'h>(
    headers: &'h Headers,
    rules: &Rules,
) -> Vec<(Cow<'h, str>, &'h str)> {
    let mut all: Vec<(Cow<'h, str>, &'h str)> = headers
        .iter()
        .map(|(name, value)| {
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(name.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name.as_str())
            };
            (name, value.as_str())
        })
        .filter(|(name, _)| !rules.ignores_header(name))
        .collect();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    all
}

fn diff_headers(control: &Headers, other: &Headers, c: &mut Collector<'_>) {
    let rules = c.rules;
    let join = |values: &[(Cow<'_, str>, &str)]| {
        values
            .iter()
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (a, b) = (
        compared_headers(control, rules),
        compared_headers(other, rules),
    );
    let (mut ga, mut gb) = (
        a.chunk_by(|x, y| x.0 == y.0).peekable(),
        b.chunk_by(|x, y| x.0 == y.0).peekable(),
    );
    let mut path = String::new();
    // Names only the other side has come after the control's (the order reports have always
    // had).
    let mut theirs_only = Vec::new();
    // Both sides are sorted by name: walk them together.
    loop {
        let order = match (ga.peek(), gb.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x[0].0.cmp(&y[0].0),
        };
        let (av, bv) = match order {
            std::cmp::Ordering::Less => (ga.next(), None),
            std::cmp::Ordering::Greater => (None, gb.next()),
            std::cmp::Ordering::Equal => (ga.next(), gb.next()),
        };
        let Some(name) = av.or(bv).map(|g| g[0].0.as_ref()) else {
            break;
        };
        path.clear();
        path.push_str("headers.");
        path.push_str(name);
        match (av, bv) {
            (Some(av), None) => c.push(&path, DiffKind::Header, Some(join(av)), None),
            (None, Some(bv)) => theirs_only.push(bv),
            (Some(av), Some(bv)) => {
                let presence_only = rules.presence_only_headers.iter().any(|h| h == name);
                let same = av.len() == bv.len() && av.iter().zip(bv).all(|(x, y)| x.1 == y.1);
                if !presence_only && !same {
                    c.push(&path, DiffKind::Header, Some(join(av)), Some(join(bv)));
                }
            }
            (None, None) => {}
        }
    }
    for bv in theirs_only {
        path.clear();
        path.push_str("headers.");
        path.push_str(&bv[0].0);
        c.push(&path, DiffKind::Header, None, Some(join(bv)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shadowdiff_model::Body;
    use std::collections::BTreeMap;

    /// The header comparison as it was first written (a map of lower-case names to values in
    /// order; the control's names in order, then names only the other side has): the reference
    /// the allocation-free walk must agree with.
    fn header_differences_reference(
        control: &Headers,
        other: &Headers,
        rules: &Rules,
    ) -> Vec<(String, Option<String>, Option<String>)> {
        let group = |headers: &Headers| {
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in headers {
                let name = name.to_ascii_lowercase();
                if !rules.ignored_headers.contains(&name) {
                    map.entry(name).or_default().push(value.clone());
                }
            }
            map
        };
        let (a, b) = (group(control), group(other));
        let mut out = Vec::new();
        for (name, av) in &a {
            let presence_only = rules.presence_only_headers.iter().any(|h| h == name);
            match b.get(name) {
                None => out.push((format!("headers.{name}"), Some(av.join(", ")), None)),
                Some(bv) if !presence_only && av != bv => out.push((
                    format!("headers.{name}"),
                    Some(av.join(", ")),
                    Some(bv.join(", ")),
                )),
                Some(_) => {}
            }
        }
        for (name, bv) in &b {
            if !a.contains_key(name) {
                out.push((format!("headers.{name}"), None, Some(bv.join(", "))));
            }
        }
        out
    }

    fn headers() -> impl Strategy<Value = Headers> {
        let name = prop::sample::select(
            &[
                "X-A",
                "x-a",
                "x-b",
                "X-B",
                "Date",
                "server",
                "Set-Cookie",
                "x-c",
                "Accept",
            ][..],
        );
        let value = prop::sample::select(&["one", "two", "three"][..]);
        prop::collection::vec((name, value), 0..8).prop_map(|h| {
            h.into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn headers_differ_as_the_reference_says(a in headers(), b in headers()) {
            let rules = Rules::default();
            let (mut x, mut y) = (resp(200, &[], "{}"), resp(200, &[], "{}"));
            x.headers = a.clone();
            y.headers = b.clone();
            let got: Vec<(String, Option<String>, Option<String>)> = compare_responses(&x, &y, &rules)
                .differences
                .into_iter()
                .filter(|d| d.kind == DiffKind::Header)
                .map(|d| (d.path, d.control, d.candidate))
                .collect();
            prop_assert_eq!(got, header_differences_reference(&a, &b, &rules));
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            body: Body::complete(body.as_bytes().to_vec()),
            latency_us: 1,
        }
    }

    #[test]
    fn volatile_headers_are_ignored_and_others_compared() {
        let a = resp(
            200,
            &[("Date", "x"), ("X-Api", "1"), ("Set-Cookie", "s=1")],
            "",
        );
        let b = resp(
            200,
            &[("date", "y"), ("x-api", "2"), ("set-cookie", "s=2")],
            "",
        );
        let cmp = compare_responses(&a, &b, &Rules::default());
        let paths: Vec<_> = cmp.differences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, vec!["headers.x-api"]);
    }

    #[test]
    fn invalid_json_falls_back_to_text_and_says_so() {
        let h = [("content-type", "application/json")];
        let cmp = compare_responses(
            &resp(200, &h, "{\"a\":1}"),
            &resp(200, &h, "{\"a\":"),
            &Rules::default(),
        );
        assert_eq!(cmp.differences.len(), 1);
        assert_eq!(cmp.differences[0].kind, DiffKind::Text);
        assert!(cmp.notes[0].contains("not valid JSON"), "{:?}", cmp.notes);
    }

    #[test]
    fn truncated_bodies_are_not_diffed() {
        let mut a = resp(200, &[], "aaaa");
        let b = resp(200, &[], "bbbb");
        a.body.truncated = true;
        let cmp = compare_responses(&a, &b, &Rules::default());
        assert!(cmp.differences.is_empty());
        assert!(cmp.body_skipped_truncated);
    }

    #[test]
    fn status_difference_skips_the_body() {
        let cmp = compare_responses(
            &resp(200, &[], "{\"a\":1}"),
            &resp(500, &[], "oops"),
            &Rules::default(),
        );
        assert_eq!(cmp.differences.len(), 1);
        assert_eq!(cmp.differences[0].kind, DiffKind::Status);
    }
}
