//! Issue 2's guarantees, against real HTTP servers on loopback.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_tests::*;
use std::time::{Duration, Instant};

fn big_text(n: usize) -> String {
    (0..n)
        .map(|i| format!("line {i} of a large plain body\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gets_the_control_response_byte_for_byte() {
    let large = big_text(40_000); // ~1.3 MB, above the capture limit
    let large_for_control = large.clone();
    let control = TestServer::start(move |seen| match seen.path.as_str() {
        "/json" => Reply::json(json!({"a": [1, 2, 3], "b": "ü"})),
        "/large" => Reply::text(200, &large_for_control),
        "/chunked" => Reply {
            chunks: 7,
            ..Reply::text(200, "chunk-chunk-chunk-chunk-chunk-chunk-chunk")
        },
        "/binary" => Reply {
            status: 203,
            headers: vec![
                ("content-type".into(), "application/octet-stream".into()),
                ("x-custom".into(), "1".into()),
            ],
            body: (0..=255u8).collect(),
            chunks: 3,
            delay: Duration::ZERO,
        },
        "/echo" => Reply::text(201, &String::from_utf8_lossy(&seen.body)),
        _ => Reply::text(404, "nope"),
    })
    .await;
    let candidate = TestServer::start(|_| Reply::text(200, "whatever")).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let c = client();
    for path in ["/json", "/large", "/chunked", "/binary", "/missing"] {
        let direct = send(&c, "GET", &format!("{}{path}", control.url()), b"").await;
        let tapped = send(&c, "GET", &h.url(path), b"").await;
        assert_eq!(direct, tapped, "{path} differs through the tap");
    }
    assert_eq!(
        send(&c, "GET", &h.url("/large"), b"").await.body.len(),
        large.len()
    );
    let echoed = send(&c, "POST", &h.url("/echo"), b"payload \x00\xff").await;
    assert_eq!(
        (echoed.status, &echoed.body[..]),
        (201, "payload \u{0}\u{fffd}".as_bytes())
    );
    let (report, stats, _dir) = h.finish().await;
    // Five GETs, a second /large and the POST went through the tap.
    assert_eq!(stats.captured.load(std::sync::atomic::Ordering::Relaxed), 7);
    // The large body was captured truncated, so it was not reported as a diff.
    let large_row = endpoint(&report, "GET", "/large", "v2");
    assert_eq!(
        (large_row.skipped, large_row.mismatched),
        (2, 0),
        "{large_row:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_or_slow_candidates_do_not_slow_clients() {
    let control = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let slow = TestServer::start(|_| Reply {
        delay: Duration::from_secs(10),
        ..Reply::json(json!({"ok": true}))
    })
    .await;
    let dead = dead_address().await;
    let c = client();

    // Baseline: direct to the control.
    let started = Instant::now();
    for i in 0..40 {
        send(&c, "GET", &format!("{}/items/{i}", control.url()), b"").await;
    }
    let direct = started.elapsed();

    let h = start_pipeline(
        &control.url(),
        &[("slow", &slow.url()), ("dead", &dead)],
        |c| {
            c.replay.timeout_ms = 1_000;
            c.replay.concurrency = 4;
        },
    )
    .await;
    let started = Instant::now();
    for i in 0..40 {
        let got = send(&c, "GET", &h.url(&format!("/items/{i}")), b"").await;
        assert_eq!(got.status, 200);
    }
    let tapped = started.elapsed();
    assert!(
        tapped < Duration::from_secs(2) && tapped < direct * 5 + Duration::from_millis(500),
        "40 requests took {tapped:?} through the tap vs {direct:?} direct"
    );
    let (report, _, _dir) = h.finish().await;
    for candidate in ["slow", "dead"] {
        let e = endpoint(&report, "GET", "/items/{id}", candidate);
        assert_eq!(e.errors, 40, "{e:#?}");
        assert_eq!((e.compared, e.mismatched), (0, 0));
        assert!(e.fields.is_empty());
    }
    let slow_row = endpoint(&report, "GET", "/items/{id}", "slow");
    assert_eq!(slow_row.error_kinds[0].name, "timeout");
    let dead_row = endpoint(&report, "GET", "/items/{id}", "dead");
    assert_eq!(dead_row.error_kinds[0].name, "connect");
}

fn user(id: u64, email_key: &str) -> serde_json::Value {
    let mut v = json!({"id": id, "name": format!("u{id}"), "plan": {"seats": 3}});
    v[email_key] = json!(format!("u{id}@x.test"));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regressions_are_found_and_identical_candidates_are_clean() {
    let id_of = |path: &str| {
        path.rsplit('/')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let control = TestServer::start(move |s| Reply::json(user(id_of(&s.path), "email"))).await;
    let same = TestServer::start(move |s| Reply::json(user(id_of(&s.path), "email"))).await;
    let broken = TestServer::start(move |s| {
        let id = id_of(&s.path);
        let mut v = user(id, "email");
        if id % 2 == 0 {
            v["plan"]["seats"] = json!("3");
        }
        Reply::json(v)
    })
    .await;
    let h = start_pipeline(
        &control.url(),
        &[("same", &same.url()), ("broken", &broken.url())],
        |_| {},
    )
    .await;
    let c = client();
    // Each user is asked for twice: without a secondary, the control answering the repeated
    // requests the same way is what shows the field stable (see tests/tests/repeats.rs).
    for _round in 0..2 {
        for i in 0..20 {
            send(&c, "GET", &h.url(&format!("/users/{i}")), b"").await;
        }
    }
    let (report, _, _dir) = h.finish().await;
    let same_row = endpoint(&report, "GET", "/users/{id}", "same");
    assert_eq!((same_row.compared, same_row.mismatched), (40, 0));
    assert_eq!(same_row.verdict, "clean");
    let broken_row = endpoint(&report, "GET", "/users/{id}", "broken");
    assert_eq!((broken_row.compared, broken_row.mismatched), (40, 20));
    assert_eq!(broken_row.verdict, "regression");
    let field = &broken_row.fields[0];
    assert_eq!(
        (field.path.as_str(), field.kind.as_str(), field.count),
        ("body.plan.seats", "type", 20)
    );
    assert_eq!(field.verdict, "regression");
    assert_eq!(field.evidence, "repeated_requests");
    assert!(
        broken_row.samples[0]
            .diff
            .contains("body.plan.seats [type]: 3 → \"3\""),
        "{:?}",
        broken_row.samples
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_blocked_never_sent_and_credentials_stripped() {
    let control = TestServer::start(|_| Reply::json(json!({"ok": 1}))).await;
    let candidate = TestServer::start(|_| Reply::json(json!({"ok": 1}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let c = client();
    for method in ["POST", "PUT", "PATCH", "DELETE", "GET"] {
        // A GET with a body would be blocked as a possible write (tests/tests/secrets.rs).
        let body: &[u8] = if method == "GET" { b"" } else { b"{}" };
        let got = send(&c, method, &h.url("/orders/7"), body).await;
        assert_eq!(got.status, 200, "{method} must still reach the control");
    }
    let (report, _, _dir) = h.finish().await;
    let seen = candidate.seen();
    assert_eq!(
        seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(),
        vec!["GET"]
    );
    assert!(
        seen[0].headers.get("authorization").is_none(),
        "credentials must be stripped"
    );
    assert_eq!(
        seen[0].headers.get("x-shadow").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(seen[0].headers.get("x-shadow-exchange-id").is_some());
    assert_eq!(control.seen().len(), 5);
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let e = endpoint(&report, method, "/orders/{id}", "v2");
        assert_eq!((e.blocked, e.compared), (1, 0), "{method}");
        assert!(e.blocked_reasons[0].name.contains(method));
    }
    assert_eq!(report.totals.blocked, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_drops_and_counts_without_blocking() {
    let control = TestServer::start(|_| Reply::json(json!({"ok": 1}))).await;
    // A candidate that holds every replay for 2 s, so the queue behind the tap fills.
    let stuck = TestServer::start(|_| Reply {
        delay: Duration::from_secs(2),
        ..Reply::json(json!({"ok": 1}))
    })
    .await;
    let h = start_pipeline(&control.url(), &[("v2", &stuck.url())], |c| {
        c.capture.queue_capacity = 2;
        c.replay.concurrency = 1;
        c.replay.timeout_ms = 3_000;
    })
    .await;
    let c = client();
    let started = Instant::now();
    for i in 0..30 {
        assert_eq!(
            send(&c, "GET", &h.url(&format!("/q/{i}")), b"")
                .await
                .status,
            200
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "clients waited: {:?}",
        started.elapsed()
    );
    let stats = h.pipeline.stats.clone();
    let dropped = stats
        .dropped_queue_full
        .load(std::sync::atomic::Ordering::Relaxed);
    let captured = stats.captured.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(captured + dropped, 30);
    assert!(dropped >= 20, "only {dropped} dropped");
    let (report, _, _dir) = h.finish().await;
    // Everything accepted into the queue was replayed and stored before shutdown finished.
    assert_eq!(report.totals.exchanges, captured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_falls_back_to_text_diff() {
    let control = TestServer::start(|_| Reply {
        body: b"{\"a\": 1, broken".to_vec(),
        ..Reply::json(json!({}))
    })
    .await;
    let candidate = TestServer::start(|_| Reply {
        body: b"{\"a\": 2, broken".to_vec(),
        ..Reply::json(json!({}))
    })
    .await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    send(&client(), "GET", &h.url("/x"), b"").await;
    let (report, _, _dir) = h.finish().await;
    let e = endpoint(&report, "GET", "/x", "v2");
    assert_eq!(e.fields[0].kind, "text");
    assert!(
        e.samples[0]
            .diff
            .contains("not valid JSON; compared as text"),
        "{}",
        e.samples[0].diff
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_masks_per_request_noise() {
    let control = TestServer::start(|_| Reply::json(json!({"v": 1, "nonce": rand_word()}))).await;
    let secondary = TestServer::start(|_| Reply::json(json!({"v": 1, "nonce": rand_word()}))).await;
    let candidate = TestServer::start(|_| Reply::json(json!({"v": 2, "nonce": rand_word()}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.secondary = Some(secondary.url());
        c.diff.detectors = false;
    })
    .await;
    for _ in 0..5 {
        send(&client(), "GET", &h.url("/n"), b"").await;
    }
    let (report, _, _dir) = h.finish().await;
    let e = endpoint(&report, "GET", "/n", "v2");
    let nonce = e
        .fields
        .iter()
        .find(|f| f.path == "body.nonce")
        .expect("nonce field");
    assert_eq!((nonce.verdict.as_str(), nonce.noise_count), ("noise", 5));
    let v = e
        .fields
        .iter()
        .find(|f| f.path == "body.v")
        .expect("v field");
    assert_eq!(v.verdict, "regression");
}

/// A word that differs on every call (never repeats, whatever order the servers are asked in)
/// and matches no detector.
fn rand_word() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    let n = N.fetch_add(1, Ordering::Relaxed) as usize;
    format!(
        "{}-{}",
        words[n % words.len()],
        words[(n / words.len()) % words.len()]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_replay_threads_replay_and_store_every_exchange_once() {
    let control = TestServer::start(|s| Reply::json(json!({"path": s.path, "v": 1}))).await;
    let candidate = TestServer::start(|s| Reply::json(json!({"path": s.path, "v": 2}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.threads = 3;
    })
    .await;
    let c = client();
    for i in 0..60 {
        send(&c, "GET", &h.url(&format!("/items/{i}")), b"").await;
    }
    let (report, stats, _dir) = h.finish().await;
    use shadowdiff_pipeline::stages::PipelineStats;
    assert_eq!(PipelineStats::get(&stats.captured), 60);
    assert_eq!(PipelineStats::get(&stats.replayed), 60);
    let row = endpoint(&report, "GET", "/items/{id}", "v2");
    assert_eq!((row.compared, row.mismatched), (60, 60));
    // Each exchange went to the candidate exactly once, whichever thread replayed it.
    let mut paths: Vec<String> = candidate.seen().into_iter().map(|s| s.path).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 60);
    assert_eq!(candidate.seen().len(), 60);
}
