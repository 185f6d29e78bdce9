//! Checks shared by the differ's property tests and its fuzz targets (`differ/tests/`,
//! `fuzz/fuzz_targets/`): one statement of what must hold, so both check the same thing.

use crate::node::{Arena, Node};

/// Why [`Node::parse_pair`] of `first` and `second` is not what two [`Node::parse`] calls
/// return (trees to the bit, errors word for word), or `None` when it is.
pub fn pair_disagreement(first: &[u8], second: &[u8]) -> Option<String> {
    let arena = Arena::new();
    let (a, b) = Node::parse_pair(first, second, &arena);
    let context = || {
        format!(
            "on {:?} after {:?}",
            String::from_utf8_lossy(second),
            String::from_utf8_lossy(first)
        )
    };
    for (bytes, paired) in [(first, a), (second, b)] {
        match (Node::parse(bytes, &arena), paired) {
            (Ok(x), Ok(y)) if x.same_bits(&y) => {}
            (Ok(x), Ok(y)) => {
                return Some(format!(
                    "trees differ {}:\nalone  {x:?}\npaired {y:?}",
                    context()
                ))
            }
            (Err(x), Err(y)) if x.to_string() == y.to_string() => {}
            (x, y) => {
                return Some(format!(
                    "alone {:?} but paired {:?} {}",
                    x.map(|_| ()).map_err(|e| e.to_string()),
                    y.map(|_| ()).map_err(|e| e.to_string()),
                    context()
                ))
            }
        }
    }
    None
}

/// Why the diff of two JSON bodies through `parse::window` (only the one value they
/// differ in, when there is one) is not the diff of their two whole trees, under the default
/// rules and under rules that limit, ignore, equate `null` with missing and match arrays as
/// sets; or `None` when they agree everywhere (differences, their order, the count of dropped
/// ones).
pub fn window_disagreement(first: &[u8], second: &[u8]) -> Option<String> {
    use crate::json::{diff_json_into, diff_window_into, Collector};
    use crate::node::PairParse;
    use crate::rules::{ArrayRuleConfig, Rules, RulesConfig};
    use std::sync::OnceLock;

    // Compiled once: a fuzzer calls this millions of times.
    static RULES: OnceLock<Vec<(RulesConfig, Rules)>> = OnceLock::new();
    let rule_sets = RULES.get_or_init(|| {
        let limited = RulesConfig {
            max_differences: 2,
            null_equals_missing: true,
            ignore: vec!["body.a".into()],
            ..RulesConfig::default()
        };
        let sets = RulesConfig {
            arrays: vec![ArrayRuleConfig {
                path: "body.**".into(),
                mode: "set".into(),
                key: None,
            }],
            ..RulesConfig::default()
        };
        [RulesConfig::default(), limited, sets]
            .into_iter()
            .filter_map(|config| Rules::compile(&config).ok().map(|rules| (config, rules)))
            .collect()
    });
    if rule_sets.len() != 3 {
        return Some("the check's rules do not compile".into());
    }
    for (config, rules) in rule_sets {
        let arena = Arena::new();
        let mut windowed = Collector::new(rules);
        match Node::parse_pair_for_diff(first, second, &arena, rules.arrays.is_empty()) {
            PairParse::Window(window) => diff_window_into(&window, "body", &mut windowed),
            // No window: the same trees as below, nothing to compare.
            PairParse::Trees(..) => continue,
        }
        let mut whole = Collector::new(rules);
        match (Node::parse(first, &arena), Node::parse(second, &arena)) {
            (Ok(x), Ok(y)) => diff_json_into(&x, &y, "body", &mut whole),
            (x, y) => {
                return Some(format!(
                "a window between bodies that do not both parse ({:?}, {:?}) on {:?} after {:?}",
                x.map(|_| ()).map_err(|e| e.to_string()),
                y.map(|_| ()).map_err(|e| e.to_string()),
                String::from_utf8_lossy(second),
                String::from_utf8_lossy(first)
            ))
            }
        }
        if windowed.out != whole.out || windowed.dropped != whole.dropped {
            return Some(format!(
                "under {config:?}\nwindow {:?} (+{} dropped)\nwhole  {:?} (+{} dropped)\non {:?} after {:?}",
                windowed.out,
                windowed.dropped,
                whole.out,
                whole.dropped,
                String::from_utf8_lossy(second),
                String::from_utf8_lossy(first)
            ));
        }
    }
    None
}
