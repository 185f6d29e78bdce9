//! The relay's chunked decoder against the harness's strict RFC 9112 reader (not the relay's
//! code), fed whole and in two pieces split where the first byte says:
//! - both feeds agree (the decoder's state survives any split);
//! - a body the decoder ends ends at the same byte with the same data for the strict reader;
//! - a body the decoder refuses is never a complete body for the strict reader;
//! - the relay's re-encoding reads strictly as the same data, to its last byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_capture::differential::strict;
use shadowdiff_capture::relay::fuzzing::decode_chunked;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(input.len());
    let whole = decode_chunked(&[input]);
    let split_feed = decode_chunked(&[&input[..at], &input[at..]]);
    assert_eq!(
        whole.as_ref().map(|w| (&w.0, w.1, w.2)),
        split_feed.as_ref().map(|s| (&s.0, s.1, s.2)),
        "a split at {at} changed the result"
    );
    let strict_read = strict::chunked(input);
    match &whole {
        Ok((body, used, true, encoded)) => {
            assert_eq!(
                strict_read,
                Ok(Some((body.clone(), *used))),
                "the strict reader ends the body elsewhere"
            );
            assert_eq!(
                strict::chunked(encoded),
                Ok(Some((body.clone(), encoded.len()))),
                "the re-encoding reads back"
            );
        }
        Ok((_, _, false, _)) | Err(_) => {
            assert!(
                !matches!(strict_read, Ok(Some(_))),
                "the strict reader completes a body the decoder did not: {whole:?}"
            );
        }
    }
});
