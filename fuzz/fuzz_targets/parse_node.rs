//! `Node::parse` accepts exactly what serde_json accepts, and builds the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_differ::{Arena, Node};

fuzz_target!(|data: &[u8]| {
    let serde = serde_json::from_slice::<serde_json::Value>(data);
    let arena = Arena::new();
    let node = Node::parse(data, &arena);
    match (&serde, &node) {
        (Ok(v), Ok(n)) => assert_eq!(
            &Node::from_value(v, &arena),
            n,
            "{:?}",
            String::from_utf8_lossy(data)
        ),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "serde_json ok={} but Node ok={} on {:?}",
            serde.is_ok(),
            node.is_ok(),
            String::from_utf8_lossy(data)
        ),
    }
});
