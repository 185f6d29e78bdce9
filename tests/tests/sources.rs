//! Issue 6, capture inputs: mirror receiver + control replica, redaction and sampling at the
//! tap, and Envoy tap / GoReplay imports through the offline runner. Loopback servers only.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use shadowdiff_capture::redact::{RedactingSink, RedactionConfig, Redactor};
use shadowdiff_capture::sample::{SampleConfig, SampleKey, Sampler};
use shadowdiff_capture::{TeeConfig, TeeProxy};
use shadowdiff_model::Exchange;
use shadowdiff_pipeline::config::{CandidateConfig, CaptureMode, Config, Needs};
use shadowdiff_tests::*;
use std::sync::Arc;
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
        let resp = c.request(req).await.unwrap();
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

/// A tap whose sink is a channel the test reads, with redaction and sampling.
async fn tap(
    control: &TestServer,
    sampler: Sampler,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<Exchange>,
    Arc<Redactor>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Exchange>(100);
    let redactor = Arc::new(
        Redactor::new(&RedactionConfig {
            key: b"test-key".to_vec(),
            headers: vec!["x-api-key".into()],
            body_paths: vec!["password".into(), "cards.*.number".into()],
            ..RedactionConfig::default()
        })
        .unwrap(),
    );
    let proxy = TeeProxy::new(
        TeeConfig {
            control: control.url().parse().unwrap(),
            body_limit: 64 * 1024,
            experiment: "t".into(),
            preserve_host: false,
            control_timeout: Duration::from_secs(5),
            limits: shadowdiff_capture::TapLimits::default(),
            shadow_markers: shadowdiff_capture::default_shadow_markers(),
        },
        Arc::new(RedactingSink::new(redactor.clone(), Arc::new(tx))),
    )
    .unwrap()
    .with_sampler(sampler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(shadowdiff_capture::server::serve(
        listener,
        proxy,
        std::future::pending::<()>(),
        Duration::from_millis(100),
    ));
    (addr, rx, redactor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_before_leaving_the_tap_and_still_compare_equal() {
    let control = TestServer::start(|s| Reply {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("set-cookie".into(), "session=s3cr3t".into()),
        ],
        ..Reply::text(200, &String::from_utf8_lossy(&s.body))
    })
    .await;
    let (addr, mut rx, redactor) =
        tap(&control, Sampler::new(&SampleConfig::default()).unwrap()).await;
    let c = client();
    let body = br#"{"user":"ann","password":"hunter2","cards":[{"number":"4111111111111111"}]}"#;
    for _ in 0..2 {
        let req = http::Request::post(format!("http://{addr}/login"))
            .header("authorization", "Bearer top-secret")
            .header("x-api-key", "k-123")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let echoed = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        // The client is untouched: redaction applies to the copy only.
        assert_eq!(&echoed.to_bytes()[..], &body[..]);
    }
    let a = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let text = serde_json::to_string(&a).unwrap();
    for secret in [
        "top-secret",
        "k-123",
        "hunter2",
        "4111111111111111",
        "s3cr3t",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(
        a.request_header("authorization"),
        Some(redactor.hash(b"Bearer top-secret").as_str())
    );
    // Equal secrets, equal hashes.
    assert_eq!(a.request, b.request);
    for name in [
        "request.headers.authorization",
        "request.headers.x-api-key",
        "request.body.password",
        "request.body.cards.0.number",
        "response.headers.set-cookie",
        "response.body.password",
    ] {
        assert!(
            a.redactions.iter().any(|r| r == name),
            "{name} not in {:?}",
            a.redactions
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_consistent_per_user_and_filters_before_copying() {
    let control = TestServer::start(|s| Reply::text(200, &s.path)).await;
    let sampler = Sampler::new(&SampleConfig {
        percent: 50.0,
        key: Some(SampleKey::Header("x-user".into())),
        methods: vec!["GET".into()],
        paths: vec!["/api/".into()],
        ..SampleConfig::default()
    })
    .unwrap();
    let expected: Vec<bool> = (0..40)
        .map(|u| {
            let mut h = http::HeaderMap::new();
            h.insert("x-user", format!("user-{u}").parse().unwrap());
            sampler.keep(&http::Method::GET, &"/api/x".parse().unwrap(), &h)
        })
        .collect();
    let (addr, mut rx, _) = tap(&control, sampler).await;
    let c = client();
    for round in 0..2 {
        for u in 0..40 {
            let req = http::Request::get(format!("http://{addr}/api/x?r={round}"))
                .header("x-user", format!("user-{u}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(c.request(req).await.unwrap().status(), 200);
        }
    }
    // Filtered out by path and by method, but still proxied.
    assert_eq!(
        send(&c, "GET", &format!("http://{addr}/other"), b"")
            .await
            .status,
        200
    );
    assert_eq!(
        send(&c, "POST", &format!("http://{addr}/api/x"), b"x")
            .await
            .status,
        200
    );
    let mut users = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        assert!(e.request.uri.starts_with("/api/x"), "{}", e.request.uri);
        assert_eq!(e.sample_rate, 0.5);
        users.push(e.request_header("x-user").unwrap().to_string());
    }
    let kept = expected.iter().filter(|k| **k).count();
    assert!(kept > 5 && kept < 35, "{kept}");
    assert_eq!(users.len(), kept * 2, "same users in both rounds");
    for (u, keep) in expected.iter().enumerate() {
        let n = users.iter().filter(|x| **x == format!("user-{u}")).count();
        assert_eq!(n, if *keep { 2 } else { 0 }, "user-{u}");
    }
}

fn import_settings(
    candidate: &str,
    control: Option<&str>,
    data: &std::path::Path,
) -> shadowdiff_pipeline::config::Settings {
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
    config
        .validate_for(Needs {
            control: false,
            candidates: true,
        })
        .unwrap()
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
    let files = shadowdiff_capture::import::collect_files(&[traces], &["json"]).unwrap();
    assert_eq!(files.len(), 2);
    let imported = shadowdiff_capture::import::envoy::import_files(&files, "import").unwrap();
    assert_eq!(imported.exchanges.len(), 2);

    let data = tempfile::tempdir().unwrap();
    let settings = import_settings(&candidate.url(), None, data.path());
    let store = shadowdiff_store::EmbeddedStore::open(data.path()).unwrap();
    let mut last = 0;
    let stats = shadowdiff_pipeline::offline::replay_offline(
        &settings,
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
    let imported = shadowdiff_capture::import::goreplay::import_file(&file, "import").unwrap();
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
    assert_eq!(imported.exchanges.len(), 151);

    let data = tempfile::tempdir().unwrap();
    let mut settings = import_settings(&candidate.url(), Some(&replica.url()), data.path());
    settings.replay_concurrency = 4;
    let store = shadowdiff_store::EmbeddedStore::open(data.path()).unwrap();
    let stats = shadowdiff_pipeline::offline::replay_offline(
        &settings,
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
    assert_eq!(settings.credentials.len(), 1);
    assert!(settings.sandbox_url.is_some());
}
