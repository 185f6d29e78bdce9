//! Without a secondary, the control's own noise is learned from identical requests repeated
//! over time: real HTTP services whose answers carry a random trace header, a field naming the
//! serving instance, a set-like array in random order and float jitter are asked the same
//! requests again and again. A candidate with one injected regression in a stable field is
//! reported with exactly that regression, the volatile fields as noise standing on
//! `repeated_requests`; the same candidate without the regression is not a regression. Two
//! service shapes, none of their field or header names known to shadowdiff.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use shadowdiff_store::report::EndpointReport;
use shadowdiff_tests::{client, endpoint, send, start_pipeline, Reply, TestServer};
use std::sync::atomic::{AtomicU64, Ordering};

/// A different pseudo-random number on every call, shared by every server of a test binary.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);
    let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `items` in a random order.
fn shuffled(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    for i in (1..v.len()).rev() {
        v.swap(i, (random() % (i as u64 + 1)) as usize);
    }
    v
}

/// The number at the end of the first path segment that is all digits.
fn id_of(path: &str) -> u64 {
    path.split(['/', '?'])
        .find_map(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

/// A JSON answer with one more header.
fn with_header(body: Value, name: &str, value: String) -> Reply {
    let mut reply = Reply::json(body);
    reply.headers.push((name.to_string(), value));
    reply
}

/// A catalogue service: instance name, float jitter, shuffled tags, a random span header.
fn catalogue(id: u64, instance_prefix: &str, stock_as_text: bool) -> Reply {
    let stock = id * 3;
    with_header(
        json!({
            "id": id,
            "name": format!("Product {id}"),
            "price": {"amount": 10 + id, "currency": "EUR"},
            "stock": if stock_as_text { json!(stock.to_string()) } else { json!(stock) },
            "served_by": format!("{instance_prefix}-{}", random() % 200),
            "score": 4.0 + (random() % 10_000) as f64 / 100_000.0,
            "tags": shuffled(&["new", "sale", "eco", "gift"]),
        }),
        "x-span",
        format!("{:08x}", random() as u32),
    )
}

/// An accounts service of another shape: nested objects, an array of objects with jittering
/// balances, a pod name, shuffled roles, a random hop header.
fn accounts(id: u64, pod_prefix: &str, daily_limit: u64) -> Reply {
    let jitter = || (random() % 1_000) as f64 / 7_000.0;
    with_header(
        json!({
            "account": {"number": format!("AC-{id:05}"), "owner": {"display": format!("Owner {id}")}},
            "balances": [
                {"ccy": "USD", "value": 100.0 + id as f64 + jitter()},
                {"ccy": "EUR", "value": 90.0 + id as f64 + jitter()},
            ],
            "node": format!("{pod_prefix}-{:x}", random() % 4096),
            "roles": shuffled(&["reader", "writer", "auditor"]),
            "limits": {"daily": daily_limit, "monthly": 20_000},
        }),
        "x-hop",
        format!("h{}", random() % 1_000_000),
    )
}

/// Sends `rounds` rounds of the same `distinct` requests through a pipeline without a
/// secondary, and returns the candidate's endpoint row.
async fn run(
    control: impl Fn(u64) -> Reply + Send + Sync + 'static,
    candidate: impl Fn(u64) -> Reply + Send + Sync + 'static,
    path: impl Fn(u64) -> String,
    route: &str,
) -> EndpointReport {
    let control = TestServer::start(move |s| control(id_of(&s.path))).await;
    let candidate = TestServer::start(move |s| candidate(id_of(&s.path))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let c = client();
    for _round in 0..6 {
        for id in 1..=10 {
            send(&c, "GET", &h.url(&path(id)), b"").await;
        }
    }
    let (report, _, _dir) = h.finish().await;
    endpoint(&report, "GET", route, "v2").clone()
}

fn field<'a>(e: &'a EndpointReport, path: &str) -> &'a shadowdiff_store::report::FieldReport {
    e.fields
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no field {path} in {:#?}", e.fields))
}

/// Every volatile field is noise learned from repeats, and no other field but `regressed`.
fn assert_noise_learned(
    e: &EndpointReport,
    volatile: &[(&str, &str)],
    regressed: Option<(&str, &str)>,
) {
    for (path, kind) in volatile {
        let f = field(e, path);
        assert_eq!(
            (f.kind.as_str(), f.verdict.as_str(), f.evidence.as_str()),
            (*kind, "noise", "repeated_requests"),
            "{f:#?}"
        );
        assert!(f.noise_count > 0, "{f:#?}");
    }
    let regressions: Vec<(&str, &str, &str)> = e
        .fields
        .iter()
        .filter(|f| f.verdict != "noise")
        .map(|f| (f.path.as_str(), f.kind.as_str(), f.verdict.as_str()))
        .collect();
    match regressed {
        Some((path, kind)) => {
            assert_eq!(
                regressions,
                vec![(path, kind, "regression")],
                "{:#?}",
                e.fields
            );
            let f = field(e, path);
            assert_eq!(f.evidence, "repeated_requests", "{f:#?}");
            assert!(f.reason.contains("never changed it"), "{}", f.reason);
            assert_eq!(e.verdict, "regression", "{}", e.verdict_reason);
        }
        None => {
            assert!(regressions.is_empty(), "{:#?}", e.fields);
            assert_eq!(e.verdict, "noisy", "{}", e.verdict_reason);
        }
    }
}

const CATALOGUE_NOISE: &[(&str, &str)] = &[
    ("body.served_by", "value"),
    ("body.score", "value"),
    ("body.tags", "order"),
    ("headers.x-span", "header"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secondary_a_catalogue_regression_is_found_and_its_noise_learned_from_repeats() {
    let e = run(
        |id| catalogue(id, "web", false),
        |id| catalogue(id, "canary", true),
        |id| format!("/products/{id}?lang=de"),
        "/products/{id}",
    )
    .await;
    assert_eq!(e.compared, 60);
    assert_noise_learned(&e, CATALOGUE_NOISE, Some(("body.stock", "type")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secondary_the_same_catalogue_without_the_regression_is_not_a_regression() {
    let e = run(
        |id| catalogue(id, "web", false),
        |id| catalogue(id, "canary", false),
        |id| format!("/products/{id}?lang=de"),
        "/products/{id}",
    )
    .await;
    assert_noise_learned(&e, CATALOGUE_NOISE, None);
}

const ACCOUNTS_NOISE: &[(&str, &str)] = &[
    ("body.balances[*].value", "value"),
    ("body.node", "value"),
    ("body.roles", "order"),
    ("headers.x-hop", "header"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secondary_an_accounts_regression_is_found_and_its_noise_learned_from_repeats() {
    let e = run(
        |id| accounts(id, "pod", 500),
        |id| accounts(id, "pod-next", 5_000),
        |id| format!("/v1/accounts/{id}/summary"),
        "/v1/accounts/{id}/summary",
    )
    .await;
    assert_noise_learned(&e, ACCOUNTS_NOISE, Some(("body.limits.daily", "value")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secondary_the_same_accounts_without_the_regression_is_not_a_regression() {
    let e = run(
        |id| accounts(id, "pod", 500),
        |id| accounts(id, "pod-next", 500),
        |id| format!("/v1/accounts/{id}/summary"),
        "/v1/accounts/{id}/summary",
    )
    .await;
    assert_noise_learned(&e, ACCOUNTS_NOISE, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secondary_and_without_repeats_a_difference_is_inconclusive() {
    let control = TestServer::start(|s| catalogue(id_of(&s.path), "web", false)).await;
    let candidate = TestServer::start(|s| catalogue(id_of(&s.path), "canary", true)).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let c = client();
    // Every request another product: nothing ever repeats.
    for id in 1..=30 {
        send(&c, "GET", &h.url(&format!("/products/{id}")), b"").await;
    }
    let (report, _, _dir) = h.finish().await;
    let e = endpoint(&report, "GET", "/products/{id}", "v2");
    assert_eq!(e.verdict, "inconclusive", "{}", e.verdict_reason);
    for path in [
        "body.stock",
        "body.served_by",
        "body.tags",
        "headers.x-span",
    ] {
        let f = field(e, path);
        assert_eq!(
            (f.verdict.as_str(), f.evidence.as_str()),
            ("inconclusive", "none"),
            "{f:#?}"
        );
    }
    // The gate cannot pass it: undecided, not pass.
    let gate = shadowdiff_store::gate::gate(
        &report,
        &shadowdiff_store::gate::GateConfig {
            min_compared: 10,
            ..shadowdiff_store::gate::GateConfig::new(0.01)
        },
    );
    assert!(
        matches!(gate, shadowdiff_store::gate::GateOutcome::Undecided(_)),
        "{gate:?}"
    );
}
