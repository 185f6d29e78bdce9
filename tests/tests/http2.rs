//! HTTP/2 through the tap, end to end into the report: prior-knowledge HTTP/2 clients are
//! answered (the control is asked over HTTP/1.1) and their exchanges are replayed and diffed
//! like any other; an `Upgrade: h2c` request is served as plain HTTP/1.1, never switched, and
//! the upgrade fields never reach the control.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_tests::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn user(id: &str, email: &str) -> Reply {
    Reply::json(json!({"id": id, "name": "Ada", "email": email}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_requests_are_answered_replayed_and_reported() {
    let control = TestServer::start(|seen| {
        let id = seen.path.rsplit('/').next().unwrap_or("").to_string();
        user(&id, "ada@example.com")
    })
    .await;
    // The candidate changed one field on every user.
    let candidate = TestServer::start(|seen| {
        let id = seen.path.rsplit('/').next().unwrap_or("").to_string();
        user(&id, "ADA@example.com")
    })
    .await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let stream = tokio::net::TcpStream::connect(h.pipeline.addr)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for i in 0..12 {
        let request = http::Request::get(format!("http://shop.example/users/{i}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("answered in time")
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            got,
            json!({"id": i.to_string(), "name": "Ada", "email": "ada@example.com"})
        );
    }
    drop(sender);
    let (report, _, _dir) = h.finish().await;
    assert_eq!(report.totals.exchanges, 12);
    let users = report
        .endpoints
        .iter()
        .find(|e| e.route == "/users/{id}" && e.method == "GET")
        .unwrap_or_else(|| panic!("no GET /users/{{id}} in {:?}", report.endpoints));
    assert_eq!(users.compared, 12);
    assert_eq!(users.mismatched, 12);
    assert!(
        users.fields.iter().any(|f| f.path == "body.email"),
        "{:?}",
        users.fields
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_served_as_http1_and_never_forwarded() {
    let control = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let candidate = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(h.pipeline.addr)
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("answered in time")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("upgrade: h2c"), "switched protocols: {head}");
    drop(stream);
    let seen = control.seen();
    assert_eq!(seen.len(), 1);
    for field in ["upgrade", "http2-settings"] {
        assert!(
            !seen[0].headers.contains_key(field),
            "{field} reached the control: {:?}",
            seen[0].headers
        );
    }
    let (report, _, _dir) = h.finish().await;
    assert_eq!(report.totals.exchanges, 1);
    assert_eq!(report.totals.compared, 1);
}
