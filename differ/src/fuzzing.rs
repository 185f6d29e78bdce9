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
