//! `Node::parse` (the hand-written parser) accepts exactly what serde_json accepts, and builds
//! the same tree. serde_json here has `float_roundtrip` (fuzz/Cargo.toml): correctly rounded
//! floats, as the parser rounds them, so floats must agree to the bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_differ::{Arena, Node};

/// Equal trees, floats compared by their bits (so `-0` is not `0`).
fn same(a: &Node<'_>, b: &Node<'_>) -> bool {
    a.same_bits(b)
}

fuzz_target!(|data: &[u8]| {
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
