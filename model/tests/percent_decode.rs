//! The query decoder shared by the tap, the replayer and the differ, against the
//! `form_urlencoded` crate (the `url` crate's decoder, not ours): every query component, in
//! every byte the fuzzer of a client could send, decodes the same way.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use shadowdiff_model::secrets::percent_decode;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decodes_like_form_urlencoded(component in "([%+a-fA-F0-9xyz~. ]|%[0-9a-fA-F]{2}|\\PC){0,24}") {
        // One component: no separators, so the reference yields it as a single key.
        let component = component.replace(['&', '=', ';'], "");
        let reference: String = form_urlencoded::parse(component.as_bytes())
            .next()
            .map(|(key, _)| key.into_owned())
            .unwrap_or_default();
        prop_assert_eq!(percent_decode(&component), reference, "{:?}", component);
    }
}
