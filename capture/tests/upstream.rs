//! The tap's own connections to the control, against a raw TCP control that counts
//! connections. (The serving threads themselves are tested in net/tests/server.rs.)
#![allow(clippy::unwrap_used)]

use shadowdiff_capture::{ExchangeSink, OfferError, TeeConfig, TeeProxy};
use shadowdiff_model::Exchange;
use shadowdiff_net::server::{bind, serve_connections_on_threads};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);

impl ExchangeSink for Collect {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        self.0.lock().unwrap().push(exchange);
        Ok(())
    }
}

/// A control that answers every GET with `ok`; with `close_after_each` it closes the
/// connection after each answer, without saying so first (as a server does whose keep-alive
/// timeout ran out).
async fn control(close_after_each: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while read_head(&mut stream).await.is_some() {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() || close_after_each {
                        break;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// Reads one request or response head (no body); `None` at end of stream.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Sends a GET on `stream` and returns the status line and the 2-byte body.
async fn get(stream: &mut TcpStream, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: tap\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(stream).await.expect("an answer from the tap");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, String::from_utf8(body).unwrap())
}

struct Tap {
    addr: SocketAddr,
    sink: Arc<Collect>,
    /// Held for the tap's lifetime: dropping it stops the tap.
    _stop: oneshot::Sender<()>,
}

async fn tap(control: SocketAddr, threads: usize) -> Tap {
    let sink = Arc::new(Collect::default());
    let config = TeeConfig {
        control: format!("http://{control}").parse().unwrap(),
        tls: Default::default(),
        body_limit: 1024,
        experiment: "upstream".into(),
        preserve_host: false,
        control_timeout: Duration::from_secs(5),
        limits: shadowdiff_capture::TapLimits::default(),
        shadow_markers: shadowdiff_capture::default_shadow_markers(),
    };
    let proxy = TeeProxy::new(config, sink.clone()).unwrap();
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_connections_on_threads(
        listener,
        threads,
        move || proxy.for_thread(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    ));
    Tap {
        addr,
        sink,
        _stop: stop,
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection_to_the_control() {
    let (control_addr, connections) = control(false).await;
    let tap = tap(control_addr, 1).await;
    let mut client = TcpStream::connect(tap.addr).await.unwrap();
    for i in 0..5 {
        let (status, body) = get(&mut client, &format!("/items/{i}")).await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the tap reuses its connection"
    );
    // The copy is handed over when the body has gone to the client; give it a moment.
    for _ in 0..100 {
        if tap.sink.0.lock().unwrap().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let uris: Vec<String> = tap
        .sink
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.request.uri.clone())
        .collect();
    assert_eq!(
        uris,
        ["/items/0", "/items/1", "/items/2", "/items/3", "/items/4"]
    );
}

#[tokio::test]
async fn a_connection_the_control_closed_while_idle_is_not_reused() {
    let (control_addr, connections) = control(true).await;
    let tap = tap(control_addr, 1).await;
    let mut client = TcpStream::connect(tap.addr).await.unwrap();
    for i in 0..3 {
        let (status, body) = get(&mut client, &format!("/items/{i}")).await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "ok"),
            "request {i}"
        );
        // Let the tap see the close before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_http2_client_is_answered_over_http1_to_the_control() {
    let (control_addr, connections) = control(false).await;
    let tap = tap(control_addr, 1).await;
    let stream = TcpStream::connect(tap.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for i in 0..3 {
        let request = http::Request::get(format!("http://tap.example/h2/{i}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
