//! `Node::parse` (the hand-written parser) accepts exactly what serde_json accepts, and builds
//! the same tree. serde_json here has `float_roundtrip` (fuzz/Cargo.toml): correctly rounded
//! floats, as the parser rounds them, so floats must agree to the bit. `Node::parse_pair` (a
//! body taking another's subtrees where their bytes are the same) must return what two parses
//! return, for the input and a copy of it with one byte changed; and the diff of the one value
//! the two differ in (when they differ in one) must be the diff of their whole trees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_differ::{Arena, Node};

/// Equal trees, floats compared by their bits (so `-0` is not `0`).
fn same(a: &Node<'_>, b: &Node<'_>) -> bool {
    a.same_bits(b)
}

/// `parse_pair(first, second)` is `(parse(first), parse(second))`, to the bit and the error.
fn pair_agrees(first: &[u8], second: &[u8]) {
    if let Some(why) = shadowdiff_differ::fuzzing::pair_disagreement(first, second) {
        panic!("{why}");
    }
}

/// The diff through the window is the diff of the whole trees.
fn window_agrees(first: &[u8], second: &[u8]) {
    if let Some(why) = shadowdiff_differ::fuzzing::window_disagreement(first, second) {
        panic!("{why}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&last, rest)) = data.split_last() {
        // The input and a copy with one byte replaced by its last (a candidate's answer that
        // differs in one place), both ways round.
        let mut changed = rest.to_vec();
        if let Some(b) = changed.get_mut(usize::from(last) * 31 % rest.len().max(1)) {
            *b = last;
        }
        pair_agrees(rest, &changed);
        pair_agrees(&changed, rest);
        window_agrees(rest, &changed);
        window_agrees(&changed, rest);
    }
    let serde = serde_json::from_slice::<serde_json::Value>(data);
    let arena = Arena::new();
    let node = Node::parse(data, &arena);
    match (&serde, &node) {
        (Ok(v), Ok(n)) => {
            let expected = Node::from_value(v, &arena);
            assert!(
                same(&expected, n),
                "trees differ on {:?}:\nserde_json {expected:?}\nNode       {n:?}",
                String::from_utf8_lossy(data)
            );
        }
        (Err(_), Err(e)) => {
            // Refusals say where, like serde_json's.
            assert!(e.to_string().contains(" at line "), "{e}");
        }
        _ => panic!(
            "serde_json {:?} but Node {:?} on {:?}",
            serde.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            node.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            String::from_utf8_lossy(data)
        ),
    }
});
