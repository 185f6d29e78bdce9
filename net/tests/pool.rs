//! The connection pool against loopback servers: kept-alive reuse, connections the server
//! closed while idle, and https (trust, server name, mTLS, refusals).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use shadowdiff_net::pool::{Endpoint, Upstream, UpstreamError};
use shadowdiff_net::testing::{https_server, write, TestCa};
use shadowdiff_net::tls::{ClientTls, TlsFiles};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw HTTP/1.1 server that answers every head with `ok`, counting connections; with
/// `close_after_each` it closes each connection after its answer without saying so.
async fn counting_server(close_after_each: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while let Ok(1) = stream.read(&mut byte).await {
                    head.push(byte[0]);
                    if head.ends_with(b"\r\n\r\n") {
                        head.clear();
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() || close_after_each {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, connections)
}

fn get(uri: &str, host: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(uri)
        .header(http::header::HOST, host)
        .body(Empty::new())
        .unwrap()
}

/// Sends a GET for `/path`, reads the body and gives the connection back.
async fn fetch(pool: &Upstream<Empty<Bytes>>, path: &str) -> Result<(u16, Bytes), UpstreamError> {
    let (response, connection) = pool.send(get(path, "service.test")).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    pool.give_back(connection);
    Ok((status, body))
}

fn endpoint(url: &str, tls: &ClientTls) -> Endpoint {
    Endpoint::new(&url.parse().unwrap(), tls).unwrap()
}

#[tokio::test]
async fn sequential_requests_share_one_kept_alive_connection() {
    let (addr, connections) = counting_server(false).await;
    let pool = Upstream::new(endpoint(&format!("http://{addr}"), &ClientTls::default()));
    for i in 0..5 {
        let (status, body) = fetch(&pool, &format!("/items/{i}")).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_reused() {
    let (addr, connections) = counting_server(true).await;
    let pool = Upstream::new(endpoint(&format!("http://{addr}"), &ClientTls::default()));
    for i in 0..3 {
        let (status, _) = fetch(&pool, &format!("/items/{i}")).await.unwrap();
        assert_eq!(status, 200, "request {i}");
        // Let the pool see the close before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = Upstream::new(endpoint(&format!("http://{addr}"), &ClientTls::default()));
    let error = fetch(&pool, "/").await.unwrap_err();
    assert!(error.is_connect(), "{error}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[test]
fn endpoints_take_http_and_https_with_their_default_ports() {
    let tls = ClientTls::default();
    let e = endpoint("http://api.internal", &tls);
    assert_eq!((e.address(), e.is_tls()), ("api.internal:80", false));
    let e = endpoint("https://api.internal/base", &tls);
    assert_eq!((e.address(), e.is_tls()), ("api.internal:443", true));
    let e = endpoint("https://[::1]:8443", &tls);
    assert_eq!((e.address(), e.is_tls()), ("[::1]:8443", true));
    assert!(Endpoint::new(&"ftp://x".parse().unwrap(), &tls).is_err());
    assert!(Endpoint::new(&"/relative".parse().unwrap(), &tls).is_err());
}

/// Answers with the Host header it got, so the test sees what the pool sent.
async fn echo_host(
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .unwrap_or_default();
    Ok(http::Response::new(Full::new(Bytes::from(host))))
}

fn trusting(ca: &TestCa, dir: &std::path::Path) -> ClientTls {
    ClientTls::load(&TlsFiles {
        ca_file: Some(write(dir, "ca.pem", &ca.cert_pem())),
        ..TlsFiles::default()
    })
    .unwrap()
}

#[tokio::test]
async fn https_reuses_one_tls_connection_with_the_url_host_as_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("pool test CA");
    let service = hyper::service::service_fn(echo_host);
    let (addr, seen) = https_server(ca.server_config(None), service).await;
    // The host by name: it is then the TLS server name too (an IP address is sent as none).
    let url = format!("https://localhost:{}", addr.port());
    let pool = Upstream::new(endpoint(&url, &trusting(&ca, dir.path())));
    for i in 0..3 {
        let (status, body) = fetch(&pool, &format!("/items/{i}")).await.unwrap();
        // The Host header is the caller's, whatever the server name.
        assert_eq!((status, &body[..]), (200, &b"service.test"[..]));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.connections, 1, "{seen:?}");
    assert_eq!(seen.server_names, vec![Some("localhost".to_string())]);
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_refused_with_a_clear_error() {
    let ca = TestCa::new("unknown CA");
    let service = hyper::service::service_fn(echo_host);
    let (addr, seen) = https_server(ca.server_config(None), service).await;
    // Only the built-in roots: the test CA is not among them.
    let pool = Upstream::new(endpoint(&format!("https://{addr}"), &ClientTls::default()));
    let error = fetch(&pool, "/").await.unwrap_err();
    assert!(error.is_connect(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("TLS handshake with")
            && text.contains("UnknownIssuer")
            && text.contains("ca_file"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().connections, 0);
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("pool test CA");
    let service = hyper::service::service_fn(echo_host);
    // Trusted CA, but the certificate names localhost only, and the URL says 127.0.0.1.
    let (addr, _) = https_server(ca.server_config_for(&["localhost"], None), service).await;
    let pool = Upstream::new(endpoint(
        &format!("https://{addr}"),
        &trusting(&ca, dir.path()),
    ));
    let error = fetch(&pool, "/").await.unwrap_err();
    assert!(error.is_connect(), "{error}");
    assert!(
        error
            .to_string()
            .contains("not for the host named in the URL"),
        "{error}"
    );
}

#[tokio::test]
async fn mtls_works_with_the_client_certificate_and_fails_clearly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let service = hyper::service::service_fn(echo_host);
    let (addr, seen) = https_server(server_ca.server_config(Some(&client_ca)), service).await;
    let url = format!("https://{addr}");

    let client = client_ca.client();
    let with_cert = ClientTls::load(&TlsFiles {
        ca_file: Some(write(dir.path(), "ca.pem", &server_ca.cert_pem())),
        client_cert: Some(write(dir.path(), "client.pem", &client.cert_pem)),
        client_key: Some(write(dir.path(), "client.key", &client.key_pem)),
    })
    .unwrap();
    assert!(with_cert.has_client_certificate());
    let pool = Upstream::new(endpoint(&url, &with_cert));
    let (status, _) = fetch(&pool, "/").await.unwrap();
    assert_eq!(status, 200);

    let pool = Upstream::new(endpoint(&url, &trusting(&server_ca, dir.path())));
    let error = fetch(&pool, "/").await.unwrap_err();
    // TLS 1.3: the client's handshake ends before the server checks; the refusal arrives as
    // an alert on the first read, and the hint names the fix.
    let chain = error_chain(&error);
    assert!(
        chain.contains("CertificateRequired") || chain.contains("certificate required"),
        "{chain}"
    );
    assert_eq!(
        shadowdiff_net::tls::hint(&error),
        Some("the server refused the client certificate (or got none); set [tls] client_cert and client_key")
    );
    assert_eq!(seen.lock().unwrap().handshake_errors.len(), 1);
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        next = inner.source();
    }
    text
}
