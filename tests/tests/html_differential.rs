//! The differ's HTML tree (`shadowdiff_differ::parse_html`: html5gum's tokenizer and a tag-soup
//! builder) against an independent HTML5 parser (html5ever's tree builder, through `scraper`) on
//! generated well-formed pages: the same elements under the same keys, the same attributes
//! (first of repeated names), the same own text (entities decoded, whitespace collapsed). On
//! malformed markup the two build different trees by design (no foster parenting, no adoption
//! agency); what a diff needs is that both sides of a pair are read alike, which the differ's
//! own property tests check on any bytes.

use proptest::prelude::*;
use shadowdiff_differ::{parse_html, Arena, Node};
use std::collections::BTreeMap;

/// An element as both trees are compared: own text, attributes, children grouped by key in
/// document order.
#[derive(Debug, Default, PartialEq)]
struct Canon {
    text: String,
    attrs: BTreeMap<String, String>,
    children: BTreeMap<String, Vec<Canon>>,
}

fn collapse(text: &str) -> String {
    text.split(|c: char| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn from_ours(node: &Node<'_>) -> Canon {
    let mut canon = Canon::default();
    let Node::Object(entries) = node else {
        panic!("an element is an object: {node:?}");
    };
    for (key, value) in entries.iter() {
        let string = |v: &Node<'_>| match v {
            Node::String(s) => s.to_string(),
            other => panic!("{key}: a string expected, not {other:?}"),
        };
        if key.is_empty() {
            canon.text = string(value);
        } else if let Some(name) = key.strip_prefix('@') {
            canon.attrs.insert(name.to_string(), string(value));
        } else {
            let children = match value {
                Node::Array(items) => items.iter().map(from_ours).collect(),
                one => vec![from_ours(one)],
            };
            canon.children.insert(key.to_string(), children);
        }
    }
    canon
}

fn from_html5ever(node: ego_tree::NodeRef<'_, scraper::Node>) -> Canon {
    let mut canon = Canon::default();
    if let scraper::Node::Element(e) = node.value() {
        for (name, value) in e.attrs() {
            canon
                .attrs
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    let mut text = String::new();
    for child in node.children() {
        match child.value() {
            scraper::Node::Text(t) => text.push_str(t),
            scraper::Node::Element(e) => {
                let name = e.name().to_string();
                let key = match (e.attr("id"), e.attr("name")) {
                    (Some(id), _) => format!("{name}[id={id}]"),
                    (None, Some(n)) => format!("{name}[name={n}]"),
                    (None, None) => name,
                };
                canon
                    .children
                    .entry(key)
                    .or_default()
                    .push(from_html5ever(child));
            }
            _ => {}
        }
    }
    canon.text = collapse(&text);
    canon
}

/// A generated element: tag, attributes, and content (text and children interleaved).
#[derive(Debug, Clone)]
struct Gen {
    tag: &'static str,
    attrs: Vec<(&'static str, String)>,
    content: Vec<Content>,
}

#[derive(Debug, Clone)]
enum Content {
    Text(String),
    Child(Gen),
}

const TEXT: &[&str] = &[
    "a", "b c", " ", "\n\t ", "&amp;", "&lt;", "&gt;", "&#65;", "&#x263A;", "&copy;", "é", "日本",
    "x &y", "1 < 2", "q\"uote", "it's",
];
const ID: &[&str] = &["a", "b1", "main", "x-y", "Z"];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TEXT), 0..4).prop_map(|t| t.concat())
}

fn attrs() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let value = prop_oneof![
        prop::sample::select(ID).prop_map(str::to_string),
        prop::collection::vec(
            prop::sample::select(&["v", " ", "&amp;", "&quot;", "<", ">", "é", "a b"][..]),
            0..3
        )
        .prop_map(|t| t.concat()),
    ];
    let name = prop::sample::select(&["id", "name", "class", "title", "data-k", "href"][..]);
    prop::collection::vec((name, value), 0..3).prop_map(|mut attrs| {
        // Keys use an id or a name as written: keep those to the safe alphabet.
        for (name, value) in &mut attrs {
            if matches!(*name, "id" | "name") && !ID.contains(&value.as_str()) {
                *value = "a".to_string();
            }
        }
        attrs
    })
}

fn element() -> impl Strategy<Value = Gen> {
    let leaf_tags = prop::sample::select(
        &[
            "div", "span", "section", "article", "em", "strong", "code", "small", "nav",
        ][..],
    );
    let leaf = (leaf_tags.clone(), attrs(), text()).prop_map(|(tag, attrs, t)| Gen {
        tag,
        attrs,
        content: vec![Content::Text(t)],
    });
    leaf.prop_recursive(4, 40, 4, move |inner| {
        let content = prop::collection::vec(
            prop_oneof![
                text().prop_map(Content::Text),
                inner.clone().prop_map(Content::Child)
            ],
            0..5,
        );
        prop_oneof![
            (leaf_tags.clone(), attrs(), content).prop_map(|(tag, attrs, content)| Gen {
                tag,
                attrs,
                content
            }),
            // A list: only items directly inside it (an item never closes a list).
            (
                attrs(),
                prop::collection::vec((attrs(), text(), inner), 0..4)
            )
                .prop_map(|(attrs, items)| Gen {
                    tag: "ul",
                    attrs,
                    content: items
                        .into_iter()
                        .map(|(attrs, t, child)| {
                            Content::Child(Gen {
                                tag: "li",
                                attrs,
                                content: vec![Content::Text(t), Content::Child(child)],
                            })
                        })
                        .collect(),
                }),
        ]
    })
}

fn write(e: &Gen, out: &mut String) {
    out.push('<');
    out.push_str(e.tag);
    for (name, value) in &e.attrs {
        out.push_str(&format!(" {name}=\"{}\"", value.replace('"', "&quot;")));
    }
    out.push('>');
    for c in &e.content {
        match c {
            Content::Text(t) => out.push_str(&t.replace('<', "&lt;")),
            Content::Child(child) => write(child, out),
        }
    }
    out.push_str(&format!("</{}>", e.tag));
}

fn page(title: &str, style: &str, body: &[Gen]) -> String {
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><title>{}</title><style>{style}</style></head><body>",
        title.replace('<', "&lt;")
    );
    for e in body {
        write(e, &mut out);
    }
    out.push_str("</body></html>");
    out
}

fn assert_same_tree(html: &str) {
    let arena = Arena::new();
    let ours = from_ours(&parse_html(html.as_bytes(), &arena).expect("a small page builds"));
    let document = scraper::Html::parse_document(html);
    let theirs = from_html5ever(document.tree.root());
    assert_eq!(ours, theirs, "{html}");
}

proptest! {
    // 2,000 pages by default; PROPTEST_CASES=100000 for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_well_formed_page_builds_the_tree_html5ever_builds(
        title in text(),
        // Raw text: no entity decoding, `<` and `&` kept as written (never `</style`).
        style in prop::collection::vec(
            prop::sample::select(&["a{b:c}", " ", "x < y", "&amp;", "p > q"][..]),
            0..3
        ).prop_map(|t| t.concat()),
        body in prop::collection::vec(element(), 0..4),
    ) {
        assert_same_tree(&page(&title, &style, &body));
    }
}

#[test]
fn pages_of_common_shapes_build_the_tree_html5ever_builds() {
    for html in [
        "<!DOCTYPE html><html><head><title> Shop &amp; more </title></head><body>\
         <nav id=\"main\"><ul><li><a href=\"/a?x=1&amp;y=2\">A</a></li><li>B</li></ul></nav>\
         <form name=\"login\"><input name=\"csrf\" value=\"t0k\"><input type=\"submit\"></form>\
         <div class=\"c\" class=\"d\">  two\n\n words <br> after </div></body></html>",
        "<html><head><script>if (a < b && c) { x = \"</div>\" }</script></head>\
         <body><img src=\"x.png\" alt=\"\"><hr><span>&#x1F600; &unknown; &lt;tag&gt;</span></body></html>",
    ] {
        assert_same_tree(html);
    }
}
