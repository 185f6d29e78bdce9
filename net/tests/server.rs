//! The server loops: every serving thread answers and all stop on shutdown; a handler's
//! connection limit; graceful shutdown lets a request in flight finish.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use shadowdiff_net::server::{
    bind, serve, serve_connections_on_threads, serve_on_threads, ConnectionHandler,
};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

async fn ok(request: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// One GET on a fresh connection; the whole answer as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn every_serving_thread_answers_and_all_stop_on_shutdown() {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut served = tokio::spawn(serve_on_threads(
        listener,
        3,
        || hyper::service::service_fn(ok),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    ));
    let paths: Vec<String> = (0..12).map(|i| format!("/{i}")).collect();
    let answers = futures_util::future::join_all(paths.iter().map(|p| get(addr, p))).await;
    assert!(answers
        .iter()
        .all(|a| a.starts_with("HTTP/1.1 200 OK") && a.ends_with("ok")));
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), &mut served)
        .await
        .expect("serving threads stop within the grace period");
    result.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// Counts the connections it was handed over its limit, and serves the others with hyper.
#[derive(Clone)]
struct Limited {
    over: Arc<AtomicUsize>,
}

impl ConnectionHandler for Limited {
    fn handle(
        &self,
        stream: TcpStream,
        stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        shadowdiff_net::server::serve_hyper_connection(
            stream,
            hyper::service::service_fn(ok),
            stop,
            false,
        )
    }

    fn max_connections(&self) -> Option<usize> {
        Some(1)
    }

    fn over_limit(&self, stream: TcpStream) {
        self.over.fetch_add(1, Ordering::SeqCst);
        drop(stream);
    }
}

#[tokio::test]
async fn connections_over_the_limit_go_to_the_handler() {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let over = Arc::new(AtomicUsize::new(0));
    let handler = Limited { over: over.clone() };
    tokio::spawn(serve_connections_on_threads(
        listener,
        1,
        move || handler.clone(),
        std::future::pending::<()>(),
        Duration::from_millis(100),
    ));
    // The first connection stays open, holding the only place.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut second = TcpStream::connect(addr).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(over.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn graceful_shutdown_lets_the_request_in_flight_finish() {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve(
        listener,
        hyper::service::service_fn(ok),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    ));
    let slow = tokio::spawn(get(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let answer = slow.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
}
