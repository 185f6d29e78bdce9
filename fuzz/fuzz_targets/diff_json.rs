//! Two byte strings (split at the first NUL), parsed when they are JSON, diffed under the
//! default rules and a few others. A value never differs from itself, under any of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shadowdiff_differ::{diff_json, ArrayRuleConfig, Rules, RulesConfig, Tolerance};

fn rules() -> Vec<(Rules, bool)> {
    let array = |path: &str, mode: &str, key: Option<&str>| ArrayRuleConfig {
        path: path.into(),
        mode: mode.into(),
        key: key.map(Into::into),
    };
    let configs = [
        (RulesConfig::default(), true),
        (
            RulesConfig {
                ignore: vec!["body.a.**".into(), "body[*].b".into()],
                null_equals_missing: true,
                case_insensitive: vec!["body.**".into()],
                tolerance: Tolerance {
                    absolute: 0.5,
                    relative: 0.01,
                },
                max_differences: 3,
                ..RulesConfig::default()
            },
            true,
        ),
        (
            RulesConfig {
                arrays: vec![array("body", "set", None), array("body.**", "set", None)],
                ..RulesConfig::default()
            },
            true,
        ),
        (
            RulesConfig {
                arrays: vec![array("body.**", "key", Some("id"))],
                ..RulesConfig::default()
            },
            true,
        ),
    ];
    configs
        .into_iter()
        .filter_map(|(c, self_diff_empty)| Some((Rules::compile(&c).ok()?, self_diff_empty)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (left, right) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<Value>(left),
        serde_json::from_slice::<Value>(right),
    ) else {
        return;
    };
    for (rules, self_diff_empty) in rules() {
        let d = diff_json(&a, &b, &rules, "body");
        assert!(d.len() <= 100);
        let _ = diff_json(&b, &a, &rules, "body");
        if self_diff_empty {
            let same = diff_json(&a, &a, &rules, "body");
            assert!(same.is_empty(), "{a} differs from itself: {same:?}");
        }
    }
});
