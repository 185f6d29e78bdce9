//! The replayer's reader of candidates' answers (`shadowdiff_net::h1::ResponseReader`) on
//! arbitrary bytes. The first byte chooses the request (HEAD or not) and the body limit, the
//! second where the rest is split; the rest is the answer, fed whole and in two pieces (as
//! `ConnectionPool` feeds it: an `advance` before the first read and after each, `eof` once
//! all is in):
//! - no panic, and never `Ok(None)` at `eof`;
//! - both feeds give the same result (the same error, or the same status, fields, body and
//!   length, and the same bytes left after the answer);
//! - the body kept is at most the limit, and `body_len` counts at least what was kept;
//! - bytes left after the answer make the connection not reusable.
//!
//! Its differential counterpart, against hyper's client, is the proptest
//! `net/tests/h1_differential.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_net::h1::fuzzing::read_pieces as read;

/// Body limits, the first byte's bits 1-3 choose one.
const LIMITS: [usize; 8] = [0, 1, 5, 16, 100, 4096, 256 * 1024, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let [choice, split, input @ ..] = data else {
        return;
    };
    let request_is_head = choice & 1 == 1;
    let limit = LIMITS[usize::from((choice >> 1) & 7)];
    let at = input.len() * usize::from(*split) / 255;

    let whole = read(&[input], request_is_head, limit);
    let split_feed = read(&[&input[..at], &input[at..]], request_is_head, limit);
    match (&whole.result, &split_feed.result) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.status, &a.headers, &a.body, a.body_len),
                (b.status, &b.headers, &b.body, b.body_len),
                "a split at {at} changed the answer"
            );
            assert_eq!(
                whole.leftover, split_feed.leftover,
                "a split at {at} changed what follows the answer"
            );
            if !split_feed.ended_at_split {
                assert_eq!(a.reusable, b.reusable, "a split at {at} changed reusable");
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "a split at {at} changed the error"),
        (a, b) => panic!("whole {a:?} but split at {at} {b:?}"),
    }
    for reading in [&whole, &split_feed] {
        if let Ok(response) = &reading.result {
            assert!(response.body.len() <= limit, "more body than the limit");
            assert!(
                response.body_len >= response.body.len() as u64,
                "body_len below the body kept"
            );
            assert!(
                (200..=599).contains(&response.status),
                "status {}",
                response.status
            );
            if !reading.leftover.is_empty() && !reading.ended_at_split {
                assert!(!response.reusable, "reusable with bytes after the answer");
            }
        }
    }
});
