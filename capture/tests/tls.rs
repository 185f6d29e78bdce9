//! The tap in front of an https control: the relay (and the hyper path) speak TLS to it, with
//! the trust configured; an untrusted control is refused (502), never silently accepted.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use shadowdiff_capture::{ExchangeSink, OfferError, TeeConfig, TeeProxy};
use shadowdiff_model::Exchange;
use shadowdiff_net::server::{bind, serve_connections_on_threads};
use shadowdiff_net::testing::{https_server, write, Seen, TestCa};
use shadowdiff_net::tls::{ClientTls, TlsFiles};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);

impl ExchangeSink for Collect {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        self.0.lock().unwrap().push(exchange);
        Ok(())
    }
}

/// Answers with the request body, and the Host it got in `x-host`.
async fn echo(request: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let host = request.headers().get(http::header::HOST).cloned();
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let mut response = http::Response::new(Full::new(body.unwrap_or_default()));
    if let Some(host) = host {
        response.headers_mut().insert("x-host", host);
    }
    Ok(response)
}

async fn https_control(ca: &TestCa) -> (SocketAddr, Arc<Mutex<Seen>>) {
    https_server(ca.server_config(None), hyper::service::service_fn(echo)).await
}

async fn tap(control: SocketAddr, tls: ClientTls) -> (SocketAddr, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let config = TeeConfig {
        control: format!("https://{control}").parse().unwrap(),
        tls,
        body_limit: 1 << 20,
        experiment: "tls".into(),
        preserve_host: false,
        control_timeout: Duration::from_secs(5),
        limits: shadowdiff_capture::TapLimits::default(),
        shadow_markers: shadowdiff_capture::default_shadow_markers(),
    };
    let proxy = TeeProxy::new(config, sink.clone()).unwrap();
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    tokio::spawn(serve_connections_on_threads(
        listener,
        1,
        move || proxy.for_thread(),
        std::future::pending::<()>(),
        Duration::from_secs(1),
    ));
    (addr, sink)
}

fn trusting(ca: &TestCa, dir: &std::path::Path) -> ClientTls {
    ClientTls::load(&TlsFiles {
        ca_file: Some(write(dir, "ca.pem", &ca.cert_pem())),
        ..TlsFiles::default()
    })
    .unwrap()
}

/// Writes `request` and reads one answer (head and Content-Length body).
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> (String, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "answer cut");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (head, body)
}

async fn captured(sink: &Collect, n: usize) -> Vec<Exchange> {
    for _ in 0..200 {
        if sink.0.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink.0.lock().unwrap().clone()
}

#[tokio::test]
async fn the_relay_speaks_tls_to_an_https_control_and_keeps_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("control CA");
    let (control, seen) = https_control(&ca).await;
    let (tap, sink) = tap(control, trusting(&ca, dir.path())).await;
    let mut client = TcpStream::connect(tap).await.unwrap();

    let (head, body) = exchange(&mut client, b"GET /a HTTP/1.1\r\nhost: shop\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.is_empty());
    // The Host the control gets is its own authority, as over http.
    assert!(head.contains(&format!("x-host: {control}")), "{head}");

    // A body larger than the sockets hold, sent while the relay watches for an early answer
    // (what TLS could not send at once goes out on the flush).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nhost: shop\r\ncontent-length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    request.extend_from_slice(&big);
    let (head, body) = exchange(&mut client, &request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, big);

    // Chunked, re-encoded by the relay.
    let (head, body) = exchange(
        &mut client,
        b"POST /c HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"hello world");

    let copies = captured(&sink, 3).await;
    assert_eq!(copies.len(), 3);
    // The copies stop at the body limit (1 MiB) and say how long the bodies were.
    let (request, response) = (
        &copies[1].request.body,
        &copies[1].control.as_ref().unwrap().body,
    );
    for copy in [request, response] {
        assert_eq!(copy.bytes.len(), 1 << 20);
        assert_eq!(copy.full_len, big.len() as u64);
        assert!(copy.truncated);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.connections, 1,
        "one kept-alive TLS connection: {seen:?}"
    );
    // An IP address is no server name: none is sent.
    assert_eq!(seen.server_names, vec![None]);
}

#[tokio::test]
async fn the_hyper_path_speaks_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("control CA");
    let (control, _) = https_control(&ca).await;
    let (tap, sink) = tap(control, trusting(&ca, dir.path())).await;
    let mut client = TcpStream::connect(tap).await.unwrap();
    // HTTP/1.0 is handed to the hyper path, whose pool is the same `Upstream` over TLS.
    let (head, body) = exchange(
        &mut client,
        b"POST /old HTTP/1.0\r\nhost: shop\r\ncontent-length: 3\r\n\r\nabc",
    )
    .await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(body, b"abc");
    assert_eq!(captured(&sink, 1).await.len(), 1);
}

#[tokio::test]
async fn an_untrusted_control_certificate_is_refused() {
    let ca = TestCa::new("unknown CA");
    let (control, seen) = https_control(&ca).await;
    // Only the built-in roots.
    let (tap, sink) = tap(control, ClientTls::default()).await;
    let mut client = TcpStream::connect(tap).await.unwrap();
    let (head, body) = exchange(&mut client, b"GET /a HTTP/1.1\r\nhost: shop\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert_eq!(body, b"control unreachable");
    assert_eq!(seen.lock().unwrap().connections, 0);
    assert!(captured(&sink, 1).await.is_empty());
}
