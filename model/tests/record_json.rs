//! The hand-written record encoder against `serde_json` (the derived `Serialize`, the
//! independent implementation): the same bytes for any record, strings full of what JSON
//! escapes included; and what it writes decodes to the record again.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use shadowdiff_model::{
    decode, encode_record_into, DiffKind, DiffRecord, Difference, NoiseDifference, Outcome,
    TargetRole, SCHEMA_VERSION,
};

/// Strings weighted towards what an escaper can get wrong: quotes, backslashes, every control
/// character, DEL, multi-byte characters, runs longer than a word and empty strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/._{}\\[\\]*-]{0,20}",
        "(\"|\\\\|[\\x00-\\x1f]|\\x7f|[a-zA-Z0-9 ]{1,9}|é|✓|𝄞|\\PC){0,24}",
        any::<String>(),
    ]
}

fn kind() -> impl Strategy<Value = DiffKind> {
    prop_oneof![
        Just(DiffKind::Value),
        Just(DiffKind::Type),
        Just(DiffKind::Missing),
        Just(DiffKind::Extra),
        Just(DiffKind::Order),
        Just(DiffKind::Size),
        Just(DiffKind::Status),
        Just(DiffKind::Header),
        Just(DiffKind::Text),
        Just(DiffKind::Format),
    ]
}

fn difference() -> impl Strategy<Value = Difference> {
    (
        text(),
        kind(),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(path, kind, control, candidate)| Difference {
            path,
            kind,
            control,
            candidate,
        })
}

fn record() -> impl Strategy<Value = DiffRecord> {
    let role = prop_oneof![
        Just(TargetRole::Candidate),
        Just(TargetRole::Secondary),
        Just(TargetRole::Control),
        Just(TargetRole::Repeat),
    ];
    let outcome = prop_oneof![
        Just(Outcome::Match),
        Just(Outcome::Mismatch),
        Just(Outcome::Error),
        Just(Outcome::Blocked),
        Just(Outcome::Skipped),
    ];
    let names = (
        text(),
        any::<u64>(),
        text(),
        text(),
        text(),
        text(),
        role,
        outcome,
    );
    let numbers = (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
    );
    let lists = (
        proptest::collection::vec(difference(), 0..4),
        proptest::collection::vec((difference(), text()), 0..3),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..3),
        proptest::collection::vec(text(), 0..3),
    );
    (names, numbers, lists).prop_map(
        |(
            (exchange_id, captured_at_ms, experiment, method, route, target, role, outcome),
            (control_status, target_status, control_latency_us, target_latency_us, fingerprint),
            (differences, noise, detail, notes, side_effects),
        )| DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id,
            captured_at_ms,
            experiment,
            method,
            route,
            target,
            role,
            outcome,
            control_status,
            target_status,
            control_latency_us,
            target_latency_us,
            differences,
            noise: noise
                .into_iter()
                .map(|(difference, reason)| NoiseDifference { difference, reason })
                .collect(),
            fingerprint,
            detail,
            notes,
            side_effects,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn record_json_is_serde_jsons(record in record(), before in "[a-z\\n]{0,5}") {
        let expected = serde_json::to_vec(&record).unwrap();
        // Appended after whatever the batch's buffer already holds.
        let mut out = before.clone().into_bytes();
        encode_record_into(&mut out, &record);
        prop_assert_eq!(&out[..before.len()], before.as_bytes());
        let written = &out[before.len()..];
        prop_assert_eq!(
            written,
            &expected[..],
            "\nhand:  {}\nserde: {}",
            String::from_utf8_lossy(written),
            String::from_utf8_lossy(&expected)
        );
        prop_assert_eq!(decode::<DiffRecord>(written).unwrap(), record);
    }
}
