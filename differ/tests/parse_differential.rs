#![allow(clippy::unwrap_used)]
//! The hand-written JSON parser (`Node::parse`) against serde_json, the reference it replaced:
//! the same accept/reject decision and the same tree, on JSON texts written every way the
//! grammar allows (escapes, surrogate pairs, whitespace, numbers at every edge of i64, u64 and
//! f64, nesting around the 128 limit) and on near-JSON: those texts with bytes deleted,
//! inserted, replaced, cut or repeated.
//!
//! serde_json is a dev-dependency with `float_roundtrip` (correctly rounded floats, as the
//! parser rounds them), so floats must agree to the bit.
//!
//! More cases: `PROPTEST_CASES=100000 cargo test -p shadowdiff-differ --release --test
//! parse_differential`.

use proptest::prelude::*;
use serde_json::Value;
use shadowdiff_differ::{Arena, Node, Num};

/// Equal trees, floats compared by their bits (so `-0` is not `0`).
fn same(a: &Node<'_>, b: &Node<'_>) -> bool {
    a.same_bits(b)
}

/// Asserts that `Node::parse` and serde_json agree on `bytes`.
fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let serde = serde_json::from_slice::<Value>(bytes);
    let arena = Arena::new();
    let node = Node::parse(bytes, &arena);
    match (&serde, &node) {
        (Ok(v), Ok(n)) => {
            let expected = Node::from_value(v, &arena);
            prop_assert!(
                same(&expected, n),
                "trees differ on {:?}:\nserde_json {:?}\nNode       {:?}",
                String::from_utf8_lossy(bytes),
                expected,
                n
            );
        }
        (Err(_), Err(e)) => {
            // The message is readable and says where.
            let text = e.to_string();
            prop_assert!(text.contains(" at line "), "{}", text);
        }
        _ => prop_assert!(
            false,
            "serde_json {:?} but Node {:?} on {:?}",
            serde.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            node.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            String::from_utf8_lossy(bytes)
        ),
    }
    Ok(())
}

/// Asserts that `Node::parse_pair` (the second body taking the first's subtrees where the bytes
/// are the same) returns exactly what two `Node::parse` calls return.
fn pair_agrees(first: &[u8], second: &[u8]) -> Result<(), TestCaseError> {
    match shadowdiff_differ::fuzzing::pair_disagreement(first, second) {
        None => Ok(()),
        Some(why) => Err(TestCaseError::fail(why)),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON text, written every way the grammar allows (and a few it does not)
// ---------------------------------------------------------------------------------------------

/// Whitespace between tokens: mostly JSON's four, sometimes a byte that is not whitespace.
/// Asserts that diffing the one value two bodies differ in (when they differ in one) finds
/// exactly what diffing their whole trees finds.
fn window_agrees(first: &[u8], second: &[u8]) -> Result<(), TestCaseError> {
    match shadowdiff_differ::fuzzing::window_disagreement(first, second) {
        None => Ok(()),
        Some(why) => Err(TestCaseError::fail(why)),
    }
}

fn arb_ws() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        3 => prop::collection::vec(prop::sample::select(vec![" ", "\n", "\t", "\r"]), 1..4)
            .prop_map(|v| v.concat()),
        1 => prop::sample::select(vec!["\u{c}", "\u{a0}", "\u{feff}", "\u{b}", "\u{0}"])
            .prop_map(String::from),
    ]
}

/// The text of a number: valid forms at the edges of the integer types and of f64, and
/// malformed ones.
fn arb_number() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<i64>().prop_map(|i| i.to_string()),
        2 => any::<u64>().prop_map(|u| u.to_string()),
        2 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:E}")),
        // Integers beyond u64 and below i64 (floats), and around the boundaries.
        2 => ("-?", "[1-9][0-9]{17,40}").prop_map(|(s, d)| format!("{}{d}", if s.is_empty() { "" } else { "-" })),
        2 => prop::sample::select(vec![
            "0", "-0", "0.0", "-0.0", "0e0", "-0e-0", "0E+0", "1E400", "-1e400", "1e-400",
            "-1e-400", "0e99999999999", "1e2147483647", "1e2147483648", "1e-2147483648",
            "1e-99999999999999999999", "0.0000000000000000000000000001e99999999999",
            "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "-9223372036854775809", "18446744073709551615", "18446744073709551616",
            "-18446744073709551615", "-18446744073709551616", "4.9e-324", "2.4703282292062327e-324",
            "2.4703282292062328e-324", "1.7976931348623157e308", "1.7976931348623158e308",
            "1.7976931348623159e308", "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.9999999999999999999999999999999999999999999999999999999999999999999999",
            "9007199254740993", "9007199254740993.0", "0.1", "0.30000000000000004",
            "123456789012345678901234567890e-10", "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000011102230246251565404236316680908203124",
            "1.00000000000000011102230246251565404236316680908203126",
            // Malformed.
            "01", "-01", "00", "1.", ".1", "-", "+1", "1e", "1e+", "1.e1", "0x10", "1_000",
            "NaN", "Infinity", "-Infinity", "1.5e", "--1", "1..2", "1e1.5", "٣",
        ]).prop_map(String::from),
        // Random digit soup in number shape (mostly valid, some leading zeros and empties).
        3 => "-?[0-9]{0,22}(\\.[0-9]{0,24})?([eE][+-]?[0-9]{0,6})?",
    ]
}

/// One character of a string, written raw or as any escape that means it.
fn arb_string_piece() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => "[a-zA-Z0-9 _-]",
        2 => "\\PC",
        1 => prop::sample::select(vec![
            "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1f}", "\u{7f}", "é", "€", "😀",
            "\u{2028}", "\u{fffd}", "\u{ffff}", "\u{10ffff}", "\u{8}", "\u{c}",
        ])
        .prop_map(String::from),
    ];
    (ch, 0..4u8, any::<bool>()).prop_map(|(c, how, upper)| {
        let c = c.chars().next().unwrap_or('a');
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let hex = |u: u16| {
            if upper {
                format!("\\u{u:04X}")
            } else {
                format!("\\u{u:04x}")
            }
        };
        let unicode = || {
            let mut buf = [0u16; 2];
            c.encode_utf16(&mut buf)
                .iter()
                .map(|&u| hex(u))
                .collect::<String>()
        };
        match (how, short) {
            // Raw, as is (a raw quote, backslash or control character makes it invalid).
            (0, _) => c.to_string(),
            (1, Some(s)) => s.to_string(),
            (1 | 2, _) => unicode(),
            // Raw when allowed, else the short escape.
            _ => match short {
                Some(s) => s.to_string(),
                None if (c as u32) < 0x20 => unicode(),
                None => c.to_string(),
            },
        }
    })
}

/// A string's text, quotes included: characters written every way, and sometimes a broken
/// escape (lone or reversed surrogates, bad hex, unknown escapes).
fn arb_string_text() -> impl Strategy<Value = String> {
    let broken = prop::sample::select(vec![
        "\\ud800",
        "\\udc00",
        "\\uDBFF\\uDFFF",
        "\\ud83d\\ude00",
        "\\ude00\\ud83d",
        "\\ud800\\u0041",
        "\\ud800\\ud800",
        "\\ud800x",
        "\\ud800\\n",
        "\\u12",
        "\\u12g4",
        "\\uZZZZ",
        "\\x41",
        "\\'",
        "\\a",
        "\\U0041",
        "\\",
        "\\u",
        "\\u0000",
        "\\uFFFF",
        "\\uD7FF",
        "\\uE000",
    ]);
    prop::collection::vec(
        prop_oneof![12 => arb_string_piece(), 1 => broken.prop_map(String::from)],
        0..12,
    )
    .prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// A JSON text (mostly valid) with whitespace and escapes chosen at random.
fn arb_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        1 => prop::sample::select(vec!["null", "true", "false", "nul", "True", "nulll", "t"])
            .prop_map(String::from),
        3 => arb_number(),
        3 => arb_string_text(),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            (prop::collection::vec((inner.clone(), arb_ws(), arb_ws()), 0..8), any::<bool>())
                .prop_map(|(items, trailing_comma)| {
                    let body: Vec<String> =
                        items.into_iter().map(|(v, a, b)| format!("{a}{v}{b}")).collect();
                    let comma = if trailing_comma && !body.is_empty() && body.len().is_multiple_of(3) { "," } else { "" };
                    format!("[{}{comma}]", body.join(","))
                }),
            (
                prop::collection::vec(
                    (
                        prop_oneof![
                            4 => prop::sample::select(vec!["a", "b", "id", "ids", "items", "a"])
                                .prop_map(|k| format!("\"{k}\"")),
                            2 => arb_string_text(),
                            1 => prop::sample::select(vec!["a", "1", "null", "'a'"]).prop_map(String::from),
                        ],
                        inner,
                        arb_ws(),
                        arb_ws(),
                    ),
                    0..8
                ),
                any::<bool>(),
            )
                .prop_map(|(members, trailing_comma)| {
                    let body: Vec<String> = members
                        .into_iter()
                        .map(|(k, v, a, b)| format!("{a}{k}{b}:{a}{v}{b}"))
                        .collect();
                    let comma = if trailing_comma && !body.is_empty() && body.len().is_multiple_of(3) { "," } else { "" };
                    format!("{{{}{comma}}}", body.join(","))
                }),
        ]
    })
}

/// Edits that make near-JSON of a text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, u8),
    Replace(usize, u8),
    Truncate(usize),
    Repeat(usize, usize),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"{}[],:\"\\ \n0123456789-+.eEtrufalsnu".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        3 => any::<usize>().prop_map(Edit::Delete),
        3 => (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        3 => (any::<usize>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), 1..16usize).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let n = bytes.len();
        match *edit {
            Edit::Delete(i) if n > 0 => {
                bytes.remove(i % n);
            }
            Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Edit::Replace(i, b) if n > 0 => bytes[i % n] = b,
            Edit::Truncate(i) => bytes.truncate(i % (n + 1)),
            Edit::Repeat(i, len) if n > 0 => {
                let start = i % n;
                let end = (start + len).min(n);
                let span = bytes[start..end].to_vec();
                bytes.splice(start..start, span);
            }
            _ => {}
        }
    }
    bytes
}

/// Nesting around the limit: `depth` containers (arrays, or objects under key "a"), a leaf,
/// and the closing brackets.
fn nested(depth: usize, objects: &[bool], leaf: &str) -> String {
    let object = |i: usize| {
        objects
            .get(i % objects.len().max(1))
            .copied()
            .unwrap_or(false)
    };
    let mut s = String::new();
    for i in 0..depth {
        s.push_str(if object(i) { "{\"a\":" } else { "[" });
    }
    s.push_str(leaf);
    for i in (0..depth).rev() {
        s.push(if object(i) { '}' } else { ']' });
    }
    s
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn json_texts_parse_like_serde_json(text in arb_text(), before in arb_ws(), after in arb_ws()) {
        agree(format!("{before}{text}{after}").as_bytes())?;
    }

    #[test]
    fn serialized_values_parse_like_serde_json(text in arb_text(), pretty in any::<bool>()) {
        // What serde_json itself writes (escapes, shortest floats), when the text was valid.
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let out = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
            agree(&out)?;
        }
    }

    #[test]
    fn near_json_parses_like_serde_json(
        text in arb_text(),
        edits in prop::collection::vec(arb_edit(), 1..4),
    ) {
        agree(&apply(text.into_bytes(), &edits))?;
    }

    #[test]
    fn strings_parse_like_serde_json(s in arb_string_text(), edits in prop::collection::vec(arb_edit(), 0..2)) {
        agree(&apply(s.into_bytes(), &edits))?;
    }

    #[test]
    fn numbers_parse_like_serde_json(n in arb_number(), in_array in any::<bool>()) {
        let text = if in_array { format!("[{n},{n}]") } else { n };
        agree(text.as_bytes())?;
    }

    #[test]
    fn nesting_around_the_limit_parses_like_serde_json(
        depth in 120usize..=132,
        objects in prop::collection::vec(any::<bool>(), 1..4),
        leaf in prop::sample::select(vec!["1", "[]", "{}", "\"x\"", "", "[1,]"]),
        edits in prop::collection::vec(arb_edit(), 0..2),
    ) {
        agree(&apply(nested(depth, &objects, leaf).into_bytes(), &edits))?;
    }

    #[test]
    fn arbitrary_bytes_parse_like_serde_json(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        agree(&bytes)?;
    }

    #[test]
    fn a_near_copy_parses_in_a_pair_as_alone(
        text in arb_text(),
        edits in prop::collection::vec(arb_edit(), 0..3),
        reversed in any::<bool>(),
    ) {
        // A control and a candidate's answer: the same text with a few bytes changed.
        let edited = apply(text.clone().into_bytes(), &edits);
        if reversed {
            pair_agrees(&edited, text.as_bytes())?;
            window_agrees(&edited, text.as_bytes())?;
        } else {
            pair_agrees(text.as_bytes(), &edited)?;
            window_agrees(text.as_bytes(), &edited)?;
        }
    }

    #[test]
    fn values_in_a_pair_parse_as_alone(
        members in prop::collection::vec((0u8..6, arb_text()), 1..6),
        changed in any::<prop::sample::Index>(),
        replacement in arb_text(),
        wrap in 0usize..3,
    ) {
        // An object whose members are whole texts (so whole arrays and objects lie before and
        // after the change); one member's value replaced, sometimes nested deeper.
        let body = |members: &[(u8, String)]| {
            let inner = members
                .iter()
                .map(|(k, v)| format!("\"k{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",");
            format!("{}{{{inner}}}{}", "[".repeat(wrap), "]".repeat(wrap))
        };
        let first = body(&members);
        let mut edited = members.clone();
        let i = changed.index(edited.len());
        edited[i].1 = replacement;
        pair_agrees(first.as_bytes(), body(&edited).as_bytes())?;
        pair_agrees(body(&edited).as_bytes(), first.as_bytes())?;
        window_agrees(first.as_bytes(), body(&edited).as_bytes())?;
        window_agrees(body(&edited).as_bytes(), first.as_bytes())?;
    }

    #[test]
    fn nestings_in_a_pair_parse_as_alone(
        depths in (100usize..=132, 100usize..=132),
        objects in prop::collection::vec(any::<bool>(), 1..4),
        leaf in prop::sample::select(vec!["[[[1]]]", "{\"b\":[{}]}", "[1,[2,[3]]]", "1", "[1,]"]),
        edits in prop::collection::vec(arb_edit(), 0..2),
    ) {
        let first = nested(depths.0, &objects, leaf);
        let second = apply(nested(depths.1, &objects, leaf).into_bytes(), &edits);
        pair_agrees(first.as_bytes(), &second)?;
        pair_agrees(&second, first.as_bytes())?;
        window_agrees(first.as_bytes(), &second)?;
        window_agrees(&second, first.as_bytes())?;
    }

    #[test]
    fn one_value_changed_deep_inside_diffs_as_the_whole(
        keys in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "a\\u0062", "\\u0061"]), 1..6),
        arrays in prop::collection::vec(any::<bool>(), 1..6),
        index in 0usize..3,
        leaves in (arb_text(), arb_text()),
        repeat_key in 0u8..3,
        tail in arb_text(),
    ) {
        // A path of objects (keys repeated, escaped, some members repeated after the change)
        // and arrays (the changed element among others) down to one value, changed.
        let body = |leaf: &str| {
            let mut open = String::new();
            let mut close = String::new();
            for (level, key) in keys.iter().enumerate() {
                if arrays[level % arrays.len()] {
                    open.push('[');
                    open.push_str(&"0,".repeat(index));
                    close.insert_str(0, &format!(",{tail}]"));
                } else {
                    open.push_str(&format!("{{\"x\":1,\"{key}\":"));
                    // The key again after the change: with another value, or the first leaf.
                    let again = match repeat_key {
                        0 => String::new(),
                        1 => format!(",\"{key}\":{tail}"),
                        _ => format!(",\"{key}\":{}", leaves.0),
                    };
                    close.insert_str(0, &format!("{again},\"z\":{tail}}}"));
                }
            }
            format!("{open}{leaf}{close}")
        };
        let (first, second) = (body(&leaves.0), body(&leaves.1));
        pair_agrees(first.as_bytes(), second.as_bytes())?;
        window_agrees(first.as_bytes(), second.as_bytes())?;
        window_agrees(second.as_bytes(), first.as_bytes())?;
    }
}

#[test]
fn a_pair_shares_what_is_unchanged() {
    let control = br#"{"a":{"x":[1,2,{"y":"z"}]},"b":1,"c":[{"d":true}],"e":{"f":null},"g":"\n"}"#;
    let candidate =
        br#"{"a":{"x":[1,2,{"y":"z"}]},"b":2,"c":[{"d":true}],"e":{"f":null},"g":"\n"}"#;
    let arena = Arena::new();
    let (x, y) = Node::parse_pair(control, candidate, &arena);
    let (x, y) = (x.unwrap(), y.unwrap());
    fn member<'a>(n: &Node<'a>, key: &str) -> Node<'a> {
        match n {
            Node::Object(m) => m.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap(),
            _ => panic!("not an object"),
        }
    }
    let address = |n: Node<'_>| match n {
        Node::Object(m) => m.as_ptr() as usize,
        Node::Array(a) => a.as_ptr() as usize,
        Node::String(s) => s.as_ptr() as usize,
        _ => 0,
    };
    // Before the change and after it: the control's own subtrees (and unescaped string).
    for key in ["a", "c", "e", "g"] {
        assert_eq!(address(member(&x, key)), address(member(&y, key)), "{key}");
    }
    assert_ne!(member(&x, "b"), member(&y, "b"));
    assert!(same(&Node::parse(candidate, &arena).unwrap(), &y));
}

#[test]
fn a_pair_keeps_the_nesting_limit_where_the_depth_differs() {
    // The candidate's shared end (`0,[[…1…]]]`) opens 120 levels deep, where the control's
    // opened one level deep: the leaf's ten levels would pass 128 there. The candidate alone
    // fails on the limit (before it would fail on its missing brackets); paired, the same.
    let leaf = format!("{}1{}", "[".repeat(10), "]".repeat(10));
    let control = format!("[0,{leaf}]");
    let candidate = format!("{}0,{leaf}]", "[".repeat(120));
    let arena = Arena::new();
    let alone = Node::parse(candidate.as_bytes(), &arena).unwrap_err();
    assert_eq!(
        alone.to_string(),
        "recursion limit exceeded at line 1 column 130"
    );
    let (_, paired) = Node::parse_pair(control.as_bytes(), candidate.as_bytes(), &arena);
    assert_eq!(paired.unwrap_err().to_string(), alone.to_string());
}

#[test]
fn the_nesting_limit_is_serde_jsons() {
    for objects in [vec![false], vec![true], vec![true, false]] {
        for depth in [126, 127, 128, 129] {
            let text = nested(depth, &objects, "1");
            let arena = Arena::new();
            assert_eq!(
                Node::parse(text.as_bytes(), &arena).is_ok(),
                serde_json::from_str::<Value>(&text).is_ok(),
                "depth {depth}"
            );
            assert_eq!(Node::parse(text.as_bytes(), &arena).is_ok(), depth < 128);
        }
    }
    // A limit error comes before anything after it is read.
    let deep = "[".repeat(1_000_000);
    let e = Node::parse(deep.as_bytes(), &Arena::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "recursion limit exceeded at line 1 column 128"
    );
}

#[test]
fn serde_json_edges() {
    let arena = Arena::new();
    let parse = |s: &'static str| Node::parse(s.as_bytes(), &arena);
    // A byte order mark is not whitespace to serde_json.
    assert!(serde_json::from_slice::<Value>(b"\xef\xbb\xbf1").is_err());
    assert!(parse("\u{feff}1").is_err());
    // `-0` is the float -0.0; i64::MIN an integer; one below, a float.
    assert!(matches!(parse("-0"), Ok(Node::Number(Num::F(f))) if f == 0.0 && f.is_sign_negative()));
    assert_eq!(
        parse("-9223372036854775808").unwrap(),
        Node::Number(Num::I(i64::MIN))
    );
    assert_eq!(
        parse("-9223372036854775809").unwrap(),
        Node::Number(Num::F(-9_223_372_036_854_775_809.0))
    );
    assert_eq!(
        parse("18446744073709551615").unwrap(),
        Node::Number(Num::U(u64::MAX))
    );
    let e = parse("1e400").unwrap_err();
    assert_eq!(e.to_string(), "number out of range at line 1 column 1");
    assert_eq!(parse("\"\\ud83d\\ude00\"").unwrap(), Node::String("😀"));
    for lone in [
        "\"\\ud83d\"",
        "\"\\ude00\"",
        "\"\\ud83d\\u0041\"",
        "\"\\ud83dx\"",
    ] {
        assert!(parse(lone).is_err(), "{lone}");
        assert!(serde_json::from_str::<Value>(lone).is_err(), "{lone}");
    }
}

#[test]
fn unescaped_strings_borrow_and_escaped_ones_do_not() {
    let text = br#"{"plain": "abc", "esc\naped": "x\u00e9y"}"#;
    let arena = Arena::new();
    let node = Node::parse(text, &arena).unwrap();
    let Node::Object(members) = node else {
        panic!("{node:?}")
    };
    let input = text.as_ptr_range();
    assert_eq!(members[0].0, "esc\naped");
    assert!(!input.contains(&members[0].0.as_ptr()));
    assert_eq!(members[0].1, Node::String("xéy"));
    assert_eq!(members[1].0, "plain");
    assert!(input.contains(&members[1].0.as_ptr()));
    let Node::String(abc) = members[1].1 else {
        panic!()
    };
    assert!(input.contains(&abc.as_ptr()));
}
