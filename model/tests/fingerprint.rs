//! `fingerprint` (streamed, no allocation for one difference) against the definition it
//! replaced, kept here as the oracle: FNV-1a over the sorted, de-duplicated
//! `collapse_indexes(path) \x1f kind \x1e` text (and `collapse_indexes` against its own former
//! definition). Fingerprints are stored and compared across
//! builds, so the value must never change.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use shadowdiff_model::{collapse_indexes, fingerprint, fnv1a64, DiffKind, Difference};

/// `collapse_indexes` as it was written before it was shared with the fingerprint.
fn collapse_oracle(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '[' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('*');
        }
    }
    out
}

fn oracle(differences: &[Difference]) -> u64 {
    if differences.is_empty() {
        return 0;
    }
    let mut keys: Vec<(String, DiffKind)> = differences
        .iter()
        .map(|d| (collapse_oracle(&d.path), d.kind))
        .collect();
    keys.sort();
    keys.dedup();
    let mut text = String::new();
    for (path, kind) in &keys {
        text.push_str(path);
        text.push('\u{1f}');
        text.push_str(kind.as_str());
        text.push('\u{1e}');
    }
    fnv1a64(text.as_bytes())
}

fn kind() -> impl Strategy<Value = DiffKind> {
    prop::sample::select(vec![
        DiffKind::Value,
        DiffKind::Type,
        DiffKind::Missing,
        DiffKind::Extra,
        DiffKind::Order,
        DiffKind::Size,
        DiffKind::Status,
        DiffKind::Header,
        DiffKind::Text,
        DiffKind::Format,
    ])
}

fn difference() -> impl Strategy<Value = Difference> {
    // Paths with indexes, brackets without digits, digits without brackets, non-ASCII.
    let path = "(body|status|header)(\\.[a-zé_]{1,4}|\\[[0-9]{0,3}\\]?|\\[id=[0-9]\\]|\\[\"[a.]\"\\]|[0-9]|\\[){0,5}";
    (path, kind()).prop_map(|(path, kind)| Difference {
        path,
        kind,
        control: None,
        candidate: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn fingerprint_is_its_definition(differences in prop::collection::vec(difference(), 0..5)) {
        prop_assert_eq!(fingerprint(&differences), oracle(&differences));
        for d in &differences {
            prop_assert_eq!(collapse_indexes(&d.path), collapse_oracle(&d.path));
        }
    }
}

#[test]
fn a_fingerprint_stays_what_earlier_builds_stored() {
    let one = Difference {
        path: "body.items[3].price".into(),
        kind: DiffKind::Value,
        control: None,
        candidate: None,
    };
    assert_eq!(fingerprint(std::slice::from_ref(&one)), oracle(&[one]));
    assert_eq!(
        fingerprint(&[Difference {
            path: "body.retweet_count".into(),
            kind: DiffKind::Value,
            control: Some("0".into()),
            candidate: Some("1".into()),
        }]),
        17305510157678375335
    );
}
