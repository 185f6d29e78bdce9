//! `--secondary self`: the control asked a second time for safe requests is the A/A baseline.
//! Every request here is another one (nothing repeats), so only the second answer of the
//! control can tell its volatile fields from a regression; a write is never sent to the
//! control twice, and the rate cap holds.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_tests::{client, endpoint, send, start_pipeline, Reply, TestServer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x1234_5678_9abc_def1);
    let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

fn id_of(path: &str) -> u64 {
    path.split(['/', '?'])
        .find_map(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

/// An inventory service: a worker name, a jittering load figure, warehouses in random order,
/// a random request tag header; `reserved` is stable unless `regress`.
fn inventory(path: &str, method: &str, regress: bool) -> Reply {
    let id = id_of(path);
    if method == "POST" {
        return Reply::json(json!({"note": id, "saved": true}));
    }
    let mut warehouses = vec!["ams", "fra", "lhr"];
    let k = (random() % 3) as usize;
    warehouses.rotate_left(k);
    let mut reply = Reply::json(json!({
        "sku": format!("SKU-{id}"),
        "reserved": if regress { id + 1 } else { id },
        "worker": format!("w{}", random() % 500),
        "load": (random() % 10_000) as f64 / 3_000.0,
        "warehouses": warehouses,
    }));
    reply
        .headers
        .push(("x-req-tag".into(), format!("t{}", random() % 100_000)));
    reply
}

async fn run(regress: bool, max_rate: u32) -> (shadowdiff_store::Report, TestServer, f64) {
    let control = TestServer::start(|s| inventory(&s.path, &s.method, false)).await;
    let candidate = TestServer::start(move |s| inventory(&s.path, &s.method, regress)).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.secondary = Some("self".into());
        c.replay.secondary_self_max_rate = max_rate;
        // Candidates may see this write; the control must never see it twice.
        c.replay.allow =
            vec![
                serde_json::from_value(json!({"method": "POST", "route": "/stock/{id}/notes"}))
                    .unwrap(),
            ];
    })
    .await;
    let c = client();
    let started = Instant::now();
    for id in 1..=40 {
        send(&c, "GET", &h.url(&format!("/stock/{id}")), b"").await;
        if id % 4 == 0 {
            send(
                &c,
                "POST",
                &h.url(&format!("/stock/{id}/notes")),
                b"{\"n\":1}",
            )
            .await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (report, _, _dir) = h.finish().await;
    (report, control, elapsed)
}

/// Requests the control got from the replayer (they carry the shadow marker).
fn replayed(control: &TestServer, method: &str) -> usize {
    control
        .seen()
        .iter()
        .filter(|s| s.method == method && s.headers.contains_key("x-shadow"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_asked_again_masks_its_noise_finds_the_regression_and_never_gets_a_write_twice()
{
    let (report, control, _) = run(true, 0).await;
    let e = endpoint(&report, "GET", "/stock/{id}", "v2");
    assert_eq!(e.compared, 40);
    let field = |p: &str| e.fields.iter().find(|f| f.path == p);
    let reserved = field("body.reserved").unwrap();
    assert_eq!(
        (
            reserved.verdict.as_str(),
            reserved.evidence.as_str(),
            reserved.count
        ),
        ("regression", "secondary", 40),
        "{:#?}",
        e.fields
    );
    for f in &e.fields {
        if f.path != "body.reserved" {
            assert_eq!(
                (f.verdict.as_str(), f.evidence.as_str()),
                ("noise", "secondary"),
                "{f:#?}"
            );
        }
    }
    assert!(field("body.worker").is_some() && field("headers.x-req-tag").is_some());
    assert_eq!(e.verdict, "regression", "{}", e.verdict_reason);
    // Every GET was asked of the control a second time; no POST ever was.
    assert_eq!(replayed(&control, "GET"), 40);
    assert_eq!(replayed(&control, "POST"), 0);
    let posts = control.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(
        posts, 10,
        "each client POST reached the control once, through the tap"
    );
    let notes = endpoint(&report, "POST", "/stock/{id}/notes", "v2");
    assert_eq!(notes.compared, 10, "the candidate got the allowed writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_regression_the_control_asked_again_makes_it_noisy_not_a_regression() {
    let (report, _, _) = run(false, 0).await;
    let e = endpoint(&report, "GET", "/stock/{id}", "v2");
    assert_eq!(e.verdict, "noisy", "{} {:#?}", e.verdict_reason, e.fields);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_is_asked_again_at_most_at_the_rate_cap() {
    let (_, control, elapsed) = run(false, 5).await;
    let again = replayed(&control, "GET");
    let cap = 1 + (elapsed * 5.0).ceil() as usize;
    assert!(
        again >= 1 && again <= cap,
        "{again} asked again in {elapsed:.2} s (cap {cap})"
    );
    assert_eq!(replayed(&control, "POST"), 0);
}
