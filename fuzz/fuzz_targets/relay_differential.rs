//! The relay's differential framing check (`shadowdiff_capture::differential`) on arbitrary
//! bytes. The first byte selects the direction and the write pattern: bit 0 clear, the rest is
//! a client's raw request stream; set, it is the control's raw response to a GET (bit 1: the
//! control keeps the connection open). Bits 2-7: how many pieces the stream is written in.
//! A violated invariant panics with the bytes that show it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_capture::differential::{check_requests, check_response, ResponseCase};

/// Longest stream tried: framing bugs show on short inputs, and each case is a real exchange.
const MAX_STREAM: usize = 8 * 1024;

fn pieces(stream: &[u8], count: usize) -> Vec<Vec<u8>> {
    let size = stream.len().div_ceil(count.max(1)).max(1);
    stream.chunks(size).map(<[u8]>::to_vec).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    if stream.is_empty() || stream.len() > MAX_STREAM {
        return;
    }
    let pieces = pieces(stream, usize::from(selector >> 2) % 8 + 1);
    let checked = if selector & 1 == 0 {
        check_requests(&[pieces]).map(|_| ())
    } else {
        check_response(&ResponseCase {
            pieces,
            keep_open: selector & 2 != 0,
        })
        .map(|_| ())
    };
    if let Err(violation) = checked {
        panic!("{violation}");
    }
});
