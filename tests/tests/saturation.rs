//! The report says when a target was saturated: replays that waited because every replay slot
//! was busy (the candidate answers slower than requests arrive) are counted per endpoint and
//! named in the report, so a latency measured under the replay's own load is not taken for the
//! candidate's. Real servers on loopback; the same traffic with room to spare counts none.
#![allow(clippy::unwrap_used)]

use shadowdiff_tests::{client, endpoint, send, start_pipeline, Reply, TestServer};
use std::time::Duration;

/// Sends `n` requests at once through a pipeline with `concurrency` replay slots to a candidate
/// that answers after `candidate_delay`; returns the report.
async fn burst(
    candidate_delay: Duration,
    concurrency: usize,
    n: usize,
) -> shadowdiff_store::Report {
    let control = TestServer::start(|_| Reply::json(serde_json::json!({"ok": true}))).await;
    let candidate = TestServer::start(move |_| Reply {
        delay: candidate_delay,
        ..Reply::json(serde_json::json!({"ok": true}))
    })
    .await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.concurrency = concurrency;
    })
    .await;
    let c = client();
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let (c, url) = (c.clone(), h.url(&format!("/items/{i}")));
            tokio::spawn(async move { send(&c, "GET", &url, b"").await })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    let (report, _, _dir) = h.finish().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_slower_than_the_traffic_is_reported_saturated() {
    // 24 requests at once, one replay slot, 100 ms per answer: all but the first wait.
    let report = burst(Duration::from_millis(100), 1, 24).await;
    let e = endpoint(&report, "GET", "/items/{id}", "v2");
    assert_eq!(e.compared, 24);
    assert!(e.saturated >= 12, "saturated {} of 24", e.saturated);
    let warning = e.saturation_warning().unwrap();
    assert!(
        warning.contains(&format!("{} of 24 replays", e.saturated)),
        "{warning}"
    );
    let text = shadowdiff_store::text::render_text(&report, false);
    assert!(text.contains("replay saturated"), "{text}");
    let html = shadowdiff_store::html::render_html(&report);
    assert!(html.contains("replay saturated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_traffic_with_room_to_spare_is_not_saturated() {
    let report = burst(Duration::ZERO, 64, 24).await;
    let e = endpoint(&report, "GET", "/items/{id}", "v2");
    assert_eq!(e.compared, 24);
    assert_eq!(e.saturated, 0);
    assert_eq!(e.saturation_warning(), None);
}
