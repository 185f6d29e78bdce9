//! Replays to https targets: trusted through `[tls] ca_file`, with a client certificate where
//! the target requires mTLS; an untrusted certificate or a missing client certificate is a
//! clear error in the result, never a silent success.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use shadowdiff_model::{
    Body, Exchange, HttpRequest, TargetErrorKind, TargetOutcome, TargetRole, SCHEMA_VERSION,
};
use shadowdiff_net::testing::{https_server, write, TestCa};
use shadowdiff_net::tls::{ClientTls, TlsFiles};
use shadowdiff_replayer::{ReplayConfig, Replayer, Target};
use std::convert::Infallible;
use std::net::SocketAddr;

/// Answers with the Host header and path it got.
async fn echo(request: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = format!("{host} {}", request.uri().path());
    Ok(http::Response::new(Full::new(Bytes::from(text))))
}

fn replayer(url: &str, tls: &ClientTls) -> Replayer {
    let target = Target::new("v2", TargetRole::Candidate, url, tls).unwrap();
    Replayer::new(ReplayConfig::new(vec![target])).unwrap()
}

fn exchange() -> Exchange {
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: "0190a000-0000-7000-8000-000000000001".into(),
        captured_at_ms: 0,
        source: "tee".into(),
        experiment: "tls".into(),
        request: HttpRequest {
            method: "GET".into(),
            uri: "/users/1".into(),
            headers: vec![("host".into(), "api.prod".into())],
            body: Body::complete(Bytes::new()),
        },
        control: None,
        redactions: Vec::new(),
        sample_rate: 1.0,
    }
}

async fn replay_once(url: &str, tls: &ClientTls) -> TargetOutcome {
    let mut result = replayer(url, tls).replay(exchange()).await;
    assert_eq!(result.outcomes.len(), 1);
    result.outcomes.remove(0)
}

fn files(dir: &std::path::Path, ca: &TestCa, client: Option<&TestCa>) -> ClientTls {
    let issued = client.map(TestCa::client);
    ClientTls::load(&TlsFiles {
        ca_file: Some(write(dir, "ca.pem", &ca.cert_pem())),
        client_cert: issued
            .as_ref()
            .map(|i| write(dir, "client.pem", &i.cert_pem)),
        client_key: issued
            .as_ref()
            .map(|i| write(dir, "client.key", &i.key_pem)),
    })
    .unwrap()
}

async fn server(ca: &TestCa, client_ca: Option<&TestCa>) -> SocketAddr {
    https_server(
        ca.server_config(client_ca),
        hyper::service::service_fn(echo),
    )
    .await
    .0
}

#[tokio::test]
async fn a_replay_reaches_an_https_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("candidate CA");
    let addr = server(&ca, None).await;
    let url = format!("https://localhost:{}", addr.port());
    let outcome = replay_once(&url, &files(dir.path(), &ca, None)).await;
    let response = outcome.result.unwrap();
    assert_eq!(response.status, 200);
    // Host is the target's authority, as for http; the server name is the URL's host.
    assert_eq!(
        &response.body.bytes[..],
        format!("localhost:{} /users/1", addr.port()).as_bytes()
    );
}

#[tokio::test]
async fn an_untrusted_candidate_certificate_is_a_connect_error_that_says_so() {
    let ca = TestCa::new("unknown CA");
    let addr = server(&ca, None).await;
    let outcome = replay_once(&format!("https://{addr}"), &ClientTls::default()).await;
    let error = outcome.result.unwrap_err();
    assert_eq!(error.kind, TargetErrorKind::Connect);
    assert!(
        error.message.contains("UnknownIssuer") && error.message.contains("ca_file"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn mtls_candidates_need_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("candidate CA");
    let client_ca = TestCa::new("client CA");
    let addr = server(&ca, Some(&client_ca)).await;
    let url = format!("https://{addr}");

    let outcome = replay_once(&url, &files(dir.path(), &ca, Some(&client_ca))).await;
    assert_eq!(outcome.result.unwrap().status, 200);

    let outcome = replay_once(&url, &files(dir.path(), &ca, None)).await;
    let error = outcome.result.unwrap_err();
    assert!(
        error.message.contains("client_cert and client_key"),
        "{}",
        error.message
    );
}
