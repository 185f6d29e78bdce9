//! A change of format inside a volatile value is a regression of its own kind (`format`), not
//! noise: real HTTP servers answer with values that change on every response (times, ids,
//! tokens), the candidate changes the format of one of them, the secondary changes only the
//! values. Each case a different service shape, none of the field names known to shadowdiff.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_tests::{client, endpoint, send, start_pipeline, Reply, TestServer};
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter that differs on every call, shared by every server of a test.
fn tick() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// An ISO time whose seconds and milliseconds change with `n`.
fn iso_millis(n: u64) -> String {
    format!(
        "2026-12-04T10:{:02}:{:02}.{:03}Z",
        (n / 60) % 60,
        n % 60,
        (n * 37) % 1000
    )
}

fn uuid_lower(n: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n * 7919,
        n % 65536,
        n % 4096,
        (n * 3) % 4096,
        n * 104_729
    )
}

fn token(n: u64) -> String {
    // 24 characters, mixed case, letters and digits: what a session or trace token looks like.
    let alphabet = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::from("Ab9");
    while s.len() < 24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
    }
    s
}

/// One service shape: the control's and secondary's body, and the candidate's, by counter.
struct Case {
    route_path: &'static str,
    route: &'static str,
    field: &'static str,
    control: fn(u64) -> serde_json::Value,
    candidate: fn(u64) -> serde_json::Value,
}

async fn run(case: Case) -> shadowdiff_store::report::EndpointReport {
    let (control_body, candidate_body) = (case.control, case.candidate);
    let control = TestServer::start(move |_| Reply::json(control_body(tick()))).await;
    let secondary = TestServer::start(move |_| Reply::json(control_body(tick()))).await;
    let candidate = TestServer::start(move |_| Reply::json(candidate_body(tick()))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.secondary = Some(secondary.url());
    })
    .await;
    let c = client();
    for i in 0..8 {
        send(&c, "GET", &h.url(&format!("{}{i}", case.route_path)), b"").await;
    }
    let (report, _, _dir) = h.finish().await;
    let e = endpoint(&report, "GET", case.route, "v2").clone();
    let field = e
        .fields
        .iter()
        .find(|f| f.path == case.field)
        .unwrap_or_else(|| panic!("no field {} in {:#?}", case.field, e.fields));
    assert_eq!(
        (field.kind.as_str(), field.verdict.as_str(), field.count),
        ("format", "regression", 8),
        "{:#?}",
        e.fields
    );
    assert_eq!(e.verdict, "regression", "{}", e.verdict_reason);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_that_loses_its_milliseconds_is_a_format_regression() {
    run(Case {
        route_path: "/orders/",
        route: "/orders/{id}",
        field: "body.created_at",
        control: |n| json!({"id": 1, "created_at": iso_millis(n)}),
        candidate: |n| json!({"id": 1, "created_at": iso_millis(n)[..19].to_string() + "Z"}),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_seconds_becoming_milliseconds_in_a_nested_array_is_a_format_regression() {
    let e = run(Case {
        route_path: "/feeds/",
        route: "/feeds/{id}",
        field: "body.events[*].ts",
        control: |n| json!({"events": [{"ts": (1_764_000_000 + n).to_string(), "kind": "a"}]}),
        candidate: |n| {
            json!({"events": [{"ts": ((1_764_000_000 + n) * 1000).to_string(), "kind": "a"}]})
        },
    })
    .await;
    // The other fields of the same objects stay clean.
    assert!(e.fields.iter().all(|f| f.path != "body.events[*].kind"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_that_changes_case_is_a_format_regression_while_its_values_are_noise() {
    let e = run(Case {
        route_path: "/sessions/",
        route: "/sessions/{id}",
        field: "body.request_id",
        control: |n| json!({"request_id": uuid_lower(n), "token": token(n)}),
        candidate: |n| json!({"request_id": uuid_lower(n).to_uppercase(), "token": token(n)}),
    })
    .await;
    // The token changes on every response in one format: noise, not a regression.
    let t = e.fields.iter().find(|f| f.path == "body.token").unwrap();
    assert_eq!((t.verdict.as_str(), t.noise_count), ("noise", 8), "{t:?}");
}
