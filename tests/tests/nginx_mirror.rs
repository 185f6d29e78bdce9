//! Debian's nginx, configured with deploy/nginx/shadowdiff-mirror.conf, mirrors real traffic to
//! `run --mode mirror`: clients get production's answer, shadowdiff gets the exchanges.
//! Needs the `nginx` binary (Debian: `apt-get install -y nginx-light`, which scripts/test.sh
//! does); fails without it.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_pipeline::config::CaptureMode;
use shadowdiff_tests::nginx::{running, Nginx};
use shadowdiff_tests::*;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// nginx configured with deploy/nginx/shadowdiff-mirror.conf: mirrors `production`'s traffic
/// to `shadowdiff`.
fn start_nginx(production: &str, shadowdiff: &str) -> Nginx {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/shadowdiff-mirror.conf"),
    )
    .unwrap();
    Nginx::start(|listen, _| {
        template
            .replace("__LISTEN__", listen)
            .replace("__PRODUCTION__", production)
            .replace("__SHADOWDIFF__", shadowdiff)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_mirror_feeds_the_mirror_receiver_and_clients_get_production() {
    let production = TestServer::start(|s| {
        Reply::json(
            json!({"from": "production", "path": s.path, "body": String::from_utf8_lossy(&s.body)}),
        )
    })
    .await;
    let replica = TestServer::start(|s| {
        Reply::json(
            json!({"from": "production", "path": s.path, "body": String::from_utf8_lossy(&s.body)}),
        )
    })
    .await;
    let candidate = TestServer::start(|s| {
        let from = if s.path.ends_with("/2") {
            "candidate"
        } else {
            "production"
        };
        Reply::json(json!({"from": from, "path": s.path, "body": String::from_utf8_lossy(&s.body)}))
    })
    .await;
    let h = start_pipeline(&replica.url(), &[("v2", &candidate.url())], |c| {
        c.capture.mode = CaptureMode::Mirror;
    })
    .await;

    // A test that needs a server fails without it: scripts/test.sh installs nginx.
    let nginx = start_nginx(&production.addr.to_string(), &h.pipeline.addr.to_string());
    let port = nginx.port;

    let c = client();
    for id in 1..=3 {
        let got = send(
            &c,
            "GET",
            &format!("http://127.0.0.1:{port}/users/{id}"),
            b"",
        )
        .await;
        assert_eq!(got.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            (v["from"].as_str(), v["path"].as_str()),
            (Some("production"), Some(format!("/users/{id}").as_str()))
        );
    }
    let got = send(
        &c,
        "POST",
        &format!("http://127.0.0.1:{port}/orders"),
        b"{\"n\":1}",
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["body"], "{\"n\":1}", "production got the body");

    // Bounded wait for the mirrored copies to arrive and be replayed.
    for _ in 0..100 {
        if h.pipeline.stats.captured.load(Ordering::Relaxed) >= 4 && candidate.seen().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopping nginx stops its workers too: none is left running (and listening) after it.
    let workers = nginx.workers();
    assert!(!workers.is_empty(), "nginx runs a master and its workers");
    drop(nginx);
    for _ in 0..100 {
        if !workers.iter().any(|w| running(*w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = workers.iter().filter(|w| running(**w)).collect();
    assert!(left.is_empty(), "nginx workers still running: {left:?}");
    let (report, stats, _data) = h.finish().await;
    assert_eq!(stats.captured.load(Ordering::Relaxed), 4);
    let users = endpoint(&report, "GET", "/users/{id}", "v2");
    assert_eq!((users.compared, users.mismatched), (3, 1), "{users:#?}");
    // The mirrored POST arrived with its body and was guarded, not replayed.
    assert_eq!(endpoint(&report, "POST", "/orders", "v2").blocked, 1);
    assert!(candidate.seen().iter().all(|s| s.method == "GET"));
}
