//! Redaction and sampling at the tap: what leaves it is redacted (and still compares equal),
//! and sampling keeps the same users in every round, deciding before any body is copied.
//! Loopback servers only.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use shadowdiff_capture::redact::RedactingSink;
use shadowdiff_capture::sample::{SampleConfig, SampleKey, Sampler};
use shadowdiff_capture::{TeeConfig, TeeProxy};
use shadowdiff_model::redact::{RedactionConfig, Redactor};
use shadowdiff_model::Exchange;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn send(client: &Client, method: &str, url: &str, body: &[u8]) -> u16 {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

/// A control that answers with the request's body (JSON), and a session cookie.
async fn echo_control() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = hyper::service::service_fn(|request: http::Request<Incoming>| async move {
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .header("set-cookie", "session=s3cr3t")
            .body(Full::new(body.unwrap_or_default()))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    tokio::spawn(shadowdiff_net::server::serve(
        listener,
        service,
        std::future::pending::<()>(),
        Duration::from_millis(100),
    ));
    addr
}

/// A tap whose sink is a channel the test reads, with redaction and sampling.
async fn tap(
    control: SocketAddr,
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
            control: format!("http://{control}").parse().unwrap(),
            tls: Default::default(),
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
    tokio::spawn(shadowdiff_net::server::serve(
        listener,
        proxy,
        std::future::pending::<()>(),
        Duration::from_millis(100),
    ));
    (addr, rx, redactor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_before_leaving_the_tap_and_still_compare_equal() {
    let control = echo_control().await;
    let (addr, mut rx, redactor) =
        tap(control, Sampler::new(&SampleConfig::default()).unwrap()).await;
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
        let echoed = resp.into_body().collect().await.unwrap();
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
    let control = echo_control().await;
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
    let (addr, mut rx, _) = tap(control, sampler).await;
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
        send(&c, "GET", &format!("http://{addr}/other"), b"").await,
        200
    );
    assert_eq!(
        send(&c, "POST", &format!("http://{addr}/api/x"), b"x").await,
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
