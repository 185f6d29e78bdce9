//! Issue 6, capture inputs: mirror receiver + control replica, and Envoy tap / GoReplay imports
//! through the offline runner. Loopback servers only. (Redaction and sampling at the tap are
//! tested beside the tap, in capture/tests/tap_sources.rs.)
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use shadowdiff_pipeline::config::{
    CandidateConfig, CaptureMode, Config, DiffSettings, ReplaySettings,
};
use shadowdiff_tests::*;
use std::time::{Duration, Instant};

fn user(id: &str, name: &str) -> Reply {
    Reply::json(json!({"id": id, "name": name}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_mode_answers_202_at_once_and_diffs_against_a_control_replica() {
    let replica = TestServer::start(|s| user(s.path.rsplit('/').next().unwrap(), "ann")).await;
    let candidate = TestServer::start(|s| {
        let id = s.path.rsplit('/').next().unwrap();
        user(id, if id == "2" { "ANN" } else { "ann" })
    })
    .await;
    let h = start_pipeline(&replica.url(), &[("v2", &candidate.url())], |c| {
        c.capture.mode = CaptureMode::Mirror;
    })
    .await;
    let c = client();
    for id in 1..=3 {
        // As Istio/Envoy send it: the Host carries a `-shadow` suffix.
        let req = http::Request::get(h.url(&format!("/users/{id}")))
            .header("host", "api.prod-shadow:8080")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let started = Instant::now();
        let resp = tokio::time::timeout(shadowdiff_tests::REQUEST_TIMEOUT, c.request(req))
            .await
            .expect("the mirror receiver answers within the timeout")
            .unwrap();
        assert_eq!(resp.status(), 202);
        assert!(started.elapsed() < Duration::from_secs(1));
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        assert!(body.to_bytes().is_empty());
    }
    // Bounded wait for the background replays to reach both targets.
    for _ in 0..100 {
        if replica.seen().len() == 3 && candidate.seen().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (report, stats, _dir) = h.finish().await;
    assert_eq!(stats.captured.load(std::sync::atomic::Ordering::Relaxed), 3);
    let row = endpoint(&report, "GET", "/users/{id}", "v2");
    assert_eq!((row.compared, row.mismatched), (3, 1), "{row:#?}");
    assert_eq!(row.fields[0].path, "body.name");
    // The control replica was asked as shadow traffic, with the production host restored.
    let seen = replica.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].headers["x-shadow"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_receiver_never_waits_for_a_slow_replica() {
    let slow = TestServer::start(|_| Reply {
        delay: Duration::from_secs(3),
        ..Reply::json(json!({}))
    })
    .await;
    let candidate = TestServer::start(|_| Reply::json(json!({}))).await;
    let h = start_pipeline(&slow.url(), &[("v2", &candidate.url())], |c| {
        c.capture.mode = CaptureMode::Mirror;
        c.replay.timeout_ms = 500;
    })
    .await;
    let c = client();
    let started = Instant::now();
    for i in 0..20 {
        let got = send(&c, "POST", &h.url(&format!("/events/{i}")), b"{\"e\":1}").await;
        assert_eq!(got.status, 202);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (report, _, _dir) = h.finish().await;
    // Writes are still guarded: mirrored POSTs are counted as blocked, never replayed.
    assert_eq!(endpoint(&report, "POST", "/events/{id}", "v2").blocked, 20);
    assert!(candidate.seen().is_empty());
}

fn import_settings(
    candidate: &str,
    control: Option<&str>,
    data: &std::path::Path,
) -> (ReplaySettings, DiffSettings) {
    let mut config = Config {
        experiment: "import".into(),
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    config.replay.candidates = vec![CandidateConfig {
        name: "v2".into(),
        url: candidate.into(),
    }];
    if let Some(c) = control {
        config.capture.control = Some(c.into());
        config.capture.mode = CaptureMode::Mirror;
    }
    config.capture.listen = "127.0.0.1:0".into();
    config.admin.listen = String::new();
    // What `import` checks: the replay and diff stages, not the tap.
    let common = config.common().unwrap();
    (
        config.replay(&common).unwrap(),
        config.diff(&common).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_tap_traces_replay_through_the_offline_runner() {
    let candidate = TestServer::start(|s| match s.path.as_str() {
        "/items/1" => Reply::json(json!({"id": 1, "price": 10})),
        _ => Reply::json(json!({"id": 2, "price": 99})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces");
    std::fs::create_dir_all(traces.join("sub")).unwrap();
    let trace = |path: &str, body: &str, wrap: bool| {
        let t = json!({
            "request": {"headers": [
                {"key": ":method", "value": "GET"}, {"key": ":path", "value": path},
                {"key": ":authority", "value": "shop"}, {"key": "authorization", "value": "Bearer x"}]},
            "response": {"headers": [
                {"key": ":status", "value": "200"}, {"key": "content-type", "value": "application/json"}],
                "body": {"as_string": body}}
        });
        if wrap {
            json!({"http_buffered_trace": t})
        } else {
            t
        }
        .to_string()
    };
    std::fs::write(
        traces.join("a.json"),
        trace("/items/1", r#"{"id":1,"price":10}"#, true),
    )
    .unwrap();
    std::fs::write(
        traces.join("sub/b.json"),
        trace("/items/2", r#"{"id":2,"price":20}"#, false),
    )
    .unwrap();
    std::fs::write(traces.join("ignored.pb"), "binary").unwrap();
    let files = shadowdiff_sources::collect_files(&[traces], &["json"]).unwrap();
    assert_eq!(files.len(), 2);
    let imported = shadowdiff_sources::envoy::import_files(&files, "import").unwrap();
    assert_eq!(imported.exchanges.len(), 2);

    let data = tempfile::tempdir().unwrap();
    let settings = import_settings(&candidate.url(), None, data.path());
    let store = shadowdiff_store::EmbeddedStore::open(data.path()).unwrap();
    let mut last = 0;
    let stats = shadowdiff_pipeline::offline::replay_offline(
        &settings.0,
        &settings.1,
        std::time::Duration::from_secs(10),
        imported.exchanges,
        Box::new(store),
        |n| last = n,
    )
    .await
    .unwrap();
    assert_eq!(last, 2);
    assert_eq!(
        stats
            .records_written
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let report = read_report(data.path());
    let row = endpoint(&report, "GET", "/items/{id}", "v2");
    assert_eq!((row.compared, row.mismatched), (2, 1), "{row:#?}");
    assert_eq!(row.fields[0].path, "body.price");
    // Credentials are stripped on replay, as for live traffic.
    assert!(candidate
        .seen()
        .iter()
        .all(|s| s.headers.get("authorization").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goreplay_files_replay_with_backpressure_and_a_control_replica_for_lone_requests() {
    let candidate = TestServer::start(|s| Reply::text(200, &format!("hello {}", s.path))).await;
    let replica = TestServer::start(|s| Reply::text(200, &format!("hello {}", s.path))).await;
    let sep = "\n🐵🙈🙉\n";
    let mut gor = String::new();
    // 150 paired exchanges (more than the runner's queue) and one request without a response.
    for i in 0..150 {
        gor +=
            &format!("1 r{i} 17000000000{i:08} 0\nGET /greet/{i} HTTP/1.1\r\nHost: a\r\n\r\n{sep}");
        gor += &format!(
            "2 r{i} 17000000000{i:08} 1000\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\nhello /greet/{i}{sep}",
            format!("hello /greet/{i}").len()
        );
    }
    gor +=
        &format!("1 lone 1700000001000000000 0\nGET /greet/lone HTTP/1.1\r\nHost: a\r\n\r\n{sep}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.gor");
    std::fs::write(&file, gor).unwrap();
    let imported = shadowdiff_sources::goreplay::import_file(&file, "import").unwrap();
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
    assert_eq!(imported.exchanges.len(), 151);

    let data = tempfile::tempdir().unwrap();
    let mut settings = import_settings(&candidate.url(), Some(&replica.url()), data.path());
    settings.0.concurrency = 4;
    let store = shadowdiff_store::EmbeddedStore::open(data.path()).unwrap();
    let stats = shadowdiff_pipeline::offline::replay_offline(
        &settings.0,
        &settings.1,
        std::time::Duration::from_secs(10),
        imported.exchanges,
        Box::new(store),
        |_| {},
    )
    .await
    .unwrap();
    let g = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((g(&stats.captured), g(&stats.records_written)), (151, 151));
    let report = read_report(data.path());
    let row = endpoint(&report, "GET", "/greet/{id}", "v2");
    assert_eq!((row.compared, row.mismatched), (150, 0), "{row:#?}");
    // Only the request without a recorded response went to the control replica.
    let asked: Vec<String> = replica.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(asked, vec!["/greet/lone".to_string()]);
}

#[test]
fn the_kubernetes_config_map_holds_a_valid_config() {
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/kubernetes/configmap.yaml"),
    )
    .unwrap();
    let toml: String = yaml
        .lines()
        .skip_while(|l| !l.contains("shadowdiff.toml: |"))
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l).to_string() + "\n")
        .collect();
    let config = Config::from_toml(&toml, "configmap.yaml").unwrap();
    assert_eq!(config.capture.mode, CaptureMode::Mirror);
    let settings = config.validate().unwrap();
    assert_eq!(settings.replay.credentials.len(), 1);
    assert!(settings.replay.sandbox_url.is_some());
}
