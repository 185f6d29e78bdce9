//! Endpoint verdicts beyond the fields, over real HTTP servers: a candidate that is several
//! times slower, or that fails a few percent of requests with 5xx, is a regression even when
//! every body matches; one as fast and as healthy as the control is not.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_tests::{client, endpoint, send, start_pipeline, Reply, TestServer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn answer(delay_ms: u64) -> Reply {
    let mut r = Reply::json(json!({"items": [1, 2, 3], "total": 3}));
    r.delay = Duration::from_millis(delay_ms);
    r
}

async fn traffic(url: impl Fn(u64) -> String, n: u64) {
    let c = client();
    for i in 0..n {
        send(&c, "GET", &url(i), b"").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_many_times_slower_is_a_latency_regression_with_equal_bodies() {
    let control = TestServer::start(|_| answer(2)).await;
    let slow = TestServer::start(|_| answer(12)).await;
    let same = TestServer::start(|_| answer(2)).await;
    // The secondary (the control's build, replayed like the candidates) is the baseline, so
    // the replay host's own delay on a busy machine cancels out.
    let secondary = TestServer::start(|_| answer(2)).await;
    let h = start_pipeline(
        &control.url(),
        &[("slow", &slow.url()), ("same", &same.url())],
        |c| c.replay.secondary = Some(secondary.url()),
    )
    .await;
    traffic(|i| h.url(&format!("/catalog/{i}")), 40).await;
    let (report, _, _dir) = h.finish().await;

    let e = endpoint(&report, "GET", "/catalog/{id}", "slow");
    assert_eq!(e.mismatched, 0, "the bodies match");
    assert_eq!(
        e.latency_verdict.verdict, "regression",
        "{:?}",
        e.latency_verdict
    );
    assert!(e.latency_verdict.p50_ratio > 2.0, "{:?}", e.latency_verdict);
    assert_eq!(e.latency_verdict.baseline, "secondary");
    assert_eq!(e.verdict, "regression", "{}", e.verdict_reason);
    assert!(
        e.verdict_reason.starts_with("latency: slower"),
        "{}",
        e.verdict_reason
    );

    let e = endpoint(&report, "GET", "/catalog/{id}", "same");
    assert_ne!(
        e.latency_verdict.verdict, "regression",
        "{:?}",
        e.latency_verdict
    );
    assert_eq!(e.verdict, "clean", "{}", e.verdict_reason);

    // The text report prints the verdict with its reason.
    let text = shadowdiff_store::text::render_text(&report, false);
    assert!(
        text.contains("latency verdict: regression (slower:"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_a_few_percent_with_5xx_is_an_error_rate_regression() {
    let control = TestServer::start(|_| answer(0)).await;
    // Every 16th request fails (6.25%), in the order the candidate receives them.
    let calls = Arc::new(AtomicU64::new(0));
    let failing = TestServer::start(move |_| {
        if calls.fetch_add(1, Ordering::Relaxed) % 16 == 15 {
            Reply::text(503, "upstream unavailable")
        } else {
            answer(0)
        }
    })
    .await;
    let h = start_pipeline(&control.url(), &[("v2", &failing.url())], |_| {}).await;
    traffic(|i| h.url(&format!("/accounts/{i}")), 160).await;
    let (report, _, _dir) = h.finish().await;
    let e = endpoint(&report, "GET", "/accounts/{id}", "v2");
    let r = &e.error_rate;
    assert_eq!((r.failures, r.requests), (10, 160), "{r:?}");
    assert_eq!(r.verdict, "regression", "{}", r.reason);
    assert_eq!(r.control_rate, 0.0);
    assert!(r.low < r.rate && r.rate < r.high, "{r:?}");
    assert!(
        e.verdict_reason.contains("error rate: fails more"),
        "{}",
        e.verdict_reason
    );
}
