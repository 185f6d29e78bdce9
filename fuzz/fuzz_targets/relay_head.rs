//! The relay's request-head parser against the harness's strict RFC 9112 reader (not the
//! relay's code). Whatever head the relay accepts:
//! - the client's head must read the same way strictly (method, target, body framing), so the
//!   relay never finds a request boundary where a strict peer would not;
//! - the head it forwards must read strictly and canonically as one request with that method,
//!   target and framing, one Host, and no shadow marker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_capture::differential::strict;
use shadowdiff_capture::relay::fuzzing::request_head;

/// A stand-in body with the relay's framing, so the strict reader sees a complete message.
fn body(framing: Option<Option<u64>>) -> Vec<u8> {
    match framing {
        None => Vec::new(),
        Some(Some(n)) => vec![b'x'; n as usize],
        Some(None) => b"1\r\nx\r\n0\r\n\r\n".to_vec(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(Some(head)) = request_head(input) else {
        return;
    };
    // Bodies the stand-in would make too large say nothing more about heads.
    if matches!(head.body, Some(Some(n)) if n > 4096) {
        return;
    }
    let stand_in = body(head.body);
    let expected_body: &[u8] = if head.body == Some(None) { b"x" } else { &stand_in };

    let mut client = input[..head.head_len].to_vec();
    client.extend_from_slice(&stand_in);
    let read = strict::request(&client, false);
    let Ok(Some((client_request, used))) = read else {
        panic!(
            "the relay accepted a head the strict reader does not: {:?}\n{:?}",
            read.err(),
            String::from_utf8_lossy(&input[..head.head_len])
        );
    };
    assert_eq!(used, client.len(), "the strict reader found another body end");
    assert_eq!(client_request.body, expected_body);

    let mut forwarded = head.forward.clone();
    forwarded.extend_from_slice(&stand_in);
    let read = strict::request(&forwarded, true);
    let Ok(Some((request, used))) = read else {
        panic!(
            "the forwarded head does not read strictly: {:?}\n{:?}",
            read.err(),
            String::from_utf8_lossy(&head.forward)
        );
    };
    assert_eq!(used, forwarded.len(), "the forwarded head frames another body");
    assert_eq!(request.method, client_request.method);
    assert_eq!(request.target, client_request.target);
    assert_eq!(request.body, expected_body);
    let hosts = request.fields.iter().filter(|f| f.name == "host").count();
    assert_eq!(hosts, 1, "one Host");
    assert!(
        !request
            .fields
            .iter()
            .any(|f| f.name == "x-shadow" || f.name == "x-shadow-exchange-id"),
        "no shadow marker reaches the control"
    );
});
