//! Comparing two HTTP responses: status, headers, body.

use crate::decode::{body_format, decode_content, form_to_json, BodyFormat};
use crate::html::{parse_tree, parse_tree_like};
use crate::json::{diff_json_into, diff_markup_into, Collector};
use crate::node::{with_arena, Node};
use crate::rules::Rules;
use crate::text::diff_text;
use shadowdiff_model::{DiffKind, Difference, Headers, HttpResponse};
use std::collections::BTreeMap;

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
        BodyFormat::Json => {
            with_arena(
                |arena| match (Node::parse(a, arena), Node::parse(b, arena)) {
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
                },
            )
        }
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

fn diff_headers(control: &Headers, other: &Headers, c: &mut Collector<'_>) {
    let rules = c.rules;
    fn group<'h>(headers: &'h Headers, rules: &Rules) -> BTreeMap<String, Vec<&'h str>> {
        let mut map: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if rules.ignored_headers.contains(&name) {
                continue;
            }
            map.entry(name).or_default().push(value.as_str());
        }
        map
    }
    let (a, b) = (group(control, rules), group(other, rules));
    let mut path = String::new();
    for (name, av) in &a {
        path.clear();
        path.push_str("headers.");
        path.push_str(name);
        let presence_only = rules.presence_only_headers.iter().any(|h| h == name);
        match b.get(name) {
            None => c.push(&path, DiffKind::Header, Some(av.join(", ")), None),
            Some(bv) if !presence_only && av != bv => c.push(
                &path,
                DiffKind::Header,
                Some(av.join(", ")),
                Some(bv.join(", ")),
            ),
            Some(_) => {}
        }
    }
    for (name, bv) in &b {
        if !a.contains_key(name) {
            path.clear();
            path.push_str("headers.");
            path.push_str(name);
            c.push(&path, DiffKind::Header, None, Some(bv.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::Body;

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
