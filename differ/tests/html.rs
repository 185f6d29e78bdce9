#![allow(clippy::unwrap_used)]
//! Property tests of HTML bodies diffed as trees:
//!
//! * any bytes, as an HTML body on either side, are compared without a panic;
//! * a page never differs from itself written another way: comments added, attributes in
//!   another order, other quotes, other whitespace inside tags;
//! * one change to a generated page is found.
//!
//! Run with more cases: `PROPTEST_CASES=5000 cargo test -p shadowdiff-differ --test html`.

use proptest::prelude::*;
use shadowdiff_differ::{compare_responses, parse_html, Arena, Rules};
use shadowdiff_model::{Body, HttpResponse};

fn page(body: &[u8]) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: Body::complete(body.to_vec()),
        latency_us: 1,
    }
}

/// An element of a generated page: tag, attributes (unique names), text, children.
#[derive(Debug, Clone)]
struct El {
    tag: &'static str,
    attrs: Vec<(&'static str, String)>,
    text: String,
    children: Vec<El>,
}

const TAGS: &[&str] = &[
    "div", "p", "span", "ul", "li", "a", "table", "tr", "td", "form", "input", "br", "img",
    "section", "h1", "b", "select", "option", "script", "title", "style", "svg",
];
const ATTRS: &[&str] = &[
    "id", "name", "class", "href", "value", "data-x", "nonce", "type",
];

fn arb_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "hello",
            "world",
            " ",
            "  ",
            "\n",
            "é",
            "&amp;",
            "&lt;",
            "2026-11-22T10:00:00Z",
            "x",
            "Ünïcode",
            "😀",
            "1.99",
            "\t",
        ]),
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

fn arb_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "1", " ", "-", "_", "&amp;", "é", "[0]", "."]),
        0..4,
    )
    .prop_map(|parts| parts.concat())
}

fn arb_el() -> impl Strategy<Value = El> {
    let leaf = (
        prop::sample::select(TAGS),
        prop::collection::btree_map(prop::sample::select(ATTRS), arb_value(), 0..3),
        arb_text(),
    )
        .prop_map(|(tag, attrs, text)| El {
            tag,
            attrs: attrs.into_iter().collect(),
            text,
            children: vec![],
        });
    leaf.prop_recursive(5, 60, 5, |inner| {
        (
            prop::sample::select(TAGS),
            prop::collection::btree_map(prop::sample::select(ATTRS), arb_value(), 0..3),
            arb_text(),
            prop::collection::vec(inner, 0..5),
        )
            .prop_map(|(tag, attrs, text, children)| El {
                tag,
                attrs: attrs.into_iter().collect(),
                text,
                children,
            })
    })
}

/// How a page is written: the same document either way.
#[derive(Debug, Clone, Copy)]
struct Style {
    comments: bool,
    reverse_attributes: bool,
    single_quotes: bool,
    spaces_in_tags: bool,
}

fn is_raw(tag: &str) -> bool {
    matches!(tag, "script" | "style" | "title")
}

fn is_void(tag: &str) -> bool {
    matches!(tag, "input" | "br" | "img")
}

fn write(el: &El, style: Style, out: &mut String) {
    if style.comments {
        out.push_str("<!-- c -->");
    }
    out.push('<');
    out.push_str(el.tag);
    let mut attrs = el.attrs.clone();
    if style.reverse_attributes {
        attrs.reverse();
    }
    for (name, value) in &attrs {
        out.push_str(if style.spaces_in_tags { "   " } else { " " });
        out.push_str(name);
        let value = value.replace('"', "&quot;").replace('\'', "&#39;");
        if style.single_quotes {
            out.push_str(&format!("='{value}'"));
        } else {
            out.push_str(&format!("=\"{value}\""));
        }
    }
    if style.spaces_in_tags {
        out.push(' ');
    }
    out.push('>');
    if is_void(el.tag) {
        return;
    }
    if is_raw(el.tag) {
        // Raw text: no markup inside, and nothing that could end it.
        out.push_str(&el.text.replace(['<', '&'], "_"));
    } else {
        out.push_str(&el.text);
        for child in &el.children {
            write(child, style, out);
        }
    }
    out.push_str("</");
    out.push_str(el.tag);
    out.push('>');
}

fn document(els: &[El], style: Style) -> String {
    let mut out = String::from("<!DOCTYPE html><html><head><title>t</title></head><body>");
    for el in els {
        write(el, style, &mut out);
    }
    out.push_str("</body></html>");
    out
}

proptest! {
    // No regression file in the shared tree: minimal cases found go into explicit tests.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_are_compared_without_a_panic(
        a in prop::collection::vec(any::<u8>(), 0..400),
        b in prop::collection::vec(any::<u8>(), 0..400),
        tags in prop::collection::vec(prop::sample::select(vec![
            "<", ">", "</", "<!--", "-->", "<div>", "</div>", "<p>", "<li>", "<td>", "<tr>",
            "<table>", "<script>", "</script>", "<title>", "<br/>", "<a href=\"", "\"", "'", "=",
            "&amp", "&#x", ";", "<![CDATA[", "]]>", "<svg/>", "\u{0}", "\r\n", "<!DOCTYPE",
        ]), 0..40),
    ) {
        let soup: Vec<u8> = tags.concat().into_bytes();
        let rules = Rules::default();
        let _ = compare_responses(&page(&a), &page(&b), &rules);
        let _ = compare_responses(&page(&soup), &page(&a), &rules);
        let mut mixed = soup.clone();
        mixed.extend_from_slice(&b);
        let _ = compare_responses(&page(&soup), &page(&mixed), &rules);
        let arena = Arena::new();
        prop_assert!(parse_html(&mixed, &arena).is_ok());
    }

    #[test]
    fn a_page_never_differs_from_itself_written_another_way(
        els in prop::collection::vec(arb_el(), 1..4),
        comments in any::<bool>(),
        reverse_attributes in any::<bool>(),
        single_quotes in any::<bool>(),
        spaces_in_tags in any::<bool>(),
    ) {
        let plain = Style {
            comments: false,
            reverse_attributes: false,
            single_quotes: false,
            spaces_in_tags: false,
        };
        let other = Style { comments, reverse_attributes, single_quotes, spaces_in_tags };
        let (a, b) = (document(&els, plain), document(&els, other));
        let cmp = compare_responses(&page(a.as_bytes()), &page(b.as_bytes()), &Rules::default());
        prop_assert!(cmp.notes.is_empty(), "{:?}", cmp.notes);
        prop_assert!(cmp.differences.is_empty(), "{a}\n{b}\n{:?}", cmp.differences);
    }

    #[test]
    fn a_changed_text_or_attribute_is_found(
        els in prop::collection::vec(arb_el(), 1..4),
        which in any::<prop::sample::Index>(),
        word in "[a-z]{3,8}",
    ) {
        // Change one element's text (or, for a void element, add an attribute).
        // Only what is written: a void or raw-text element's children are not.
        fn written(el: &El) -> bool {
            !is_void(el.tag) && !is_raw(el.tag)
        }
        fn count(el: &El) -> usize {
            1 + if written(el) { el.children.iter().map(count).sum::<usize>() } else { 0 }
        }
        fn nth<'e>(el: &'e mut El, n: &mut usize) -> Option<&'e mut El> {
            if *n == 0 {
                return Some(el);
            }
            *n -= 1;
            if !written(el) {
                return None;
            }
            for c in &mut el.children {
                if let Some(found) = nth(c, n) {
                    return Some(found);
                }
            }
            None
        }
        let mut changed = els.clone();
        let total: usize = changed.iter().map(count).sum();
        let mut n = which.index(total);
        let target = changed.iter_mut().find_map(|el| nth(el, &mut n));
        prop_assume!(target.is_some());
        if let Some(el) = target {
            if is_void(el.tag) {
                el.attrs.retain(|(k, _)| *k != "title");
                el.attrs.push(("title", word.clone()));
            } else {
                el.text = format!("{} {word}", el.text);
            }
        }
        let plain = Style {
            comments: false,
            reverse_attributes: false,
            single_quotes: false,
            spaces_in_tags: false,
        };
        let (a, b) = (document(&els, plain), document(&changed, plain));
        let cmp = compare_responses(&page(a.as_bytes()), &page(b.as_bytes()), &Rules::default());
        prop_assert!(!cmp.differences.is_empty(), "{a}\n{b}");
    }
}
