//! Issue 6, side effects: synthetic credentials, no retries, and the egress sandbox's blocked
//! writes showing up per endpoint in the report. Real servers on loopback only.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use shadowdiff_tests::*;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw HTTP/1 request to `proxy` (as an HTTP_PROXY client does) and returns the
/// whole response text.
async fn via_proxy(proxy: SocketAddr, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A candidate that, for each request, calls out through the sandbox the way a real service
/// would (forwarding `x-shadow-exchange-id`): one write, one canned read.
#[derive(Clone)]
struct CallingCandidate {
    proxy: Arc<std::sync::Mutex<Option<SocketAddr>>>,
}

impl hyper::service::Service<Request<Incoming>> for CallingCandidate {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let proxy = *self.proxy.lock().unwrap();
        Box::pin(async move {
            let id = req
                .headers()
                .get("x-shadow-exchange-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let proxy = proxy.expect("sandbox address set");
            let write = via_proxy(
                proxy,
                &format!(
                    "POST http://payments.internal/charges?amount=5 HTTP/1.1\r\nHost: payments.internal\r\nx-shadow-exchange-id: {id}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                ),
            )
            .await;
            let read = via_proxy(
                proxy,
                &format!(
                    "GET http://rates.internal/eur HTTP/1.1\r\nHost: rates.internal\r\nx-shadow-exchange-id: {id}\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
            let body = json!({
                "write_status": write.split_whitespace().nth(1).unwrap_or(""),
                "rate": read.rsplit("\r\n\r\n").next().unwrap_or(""),
            });
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        })
    }
}

async fn start_calling_candidate() -> (SocketAddr, Arc<std::sync::Mutex<Option<SocketAddr>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Arc::new(std::sync::Mutex::new(None));
    tokio::spawn(shadowdiff_net::server::serve(
        listener,
        CallingCandidate {
            proxy: proxy.clone(),
        },
        std::future::pending::<()>(),
        Duration::from_millis(100),
    ));
    (addr, proxy)
}

fn canned_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("canned.toml");
    std::fs::write(
        &path,
        "[[response]]\nmethod = \"GET\"\nhost = \"rates.internal\"\npath = \"/eur\"\nbody = \"1.08\"\n",
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_blocks_writes_and_the_report_shows_them_per_endpoint() {
    let control =
        TestServer::start(|_| Reply::json(json!({"write_status": "403", "rate": "1.08"}))).await;
    let (candidate, proxy_slot) = start_calling_candidate().await;
    let files = tempfile::tempdir().unwrap();
    let canned = canned_file(files.path());
    let h = start_pipeline(
        &control.url(),
        &[("v2", &format!("http://{candidate}"))],
        |c| {
            c.sandbox.listen = "127.0.0.1:0".into();
            c.sandbox.canned = Some(canned);
        },
    )
    .await;
    let sandbox = h.pipeline.sandbox_addr.expect("sandbox started");
    *proxy_slot.lock().unwrap() = Some(sandbox);

    let c = client();
    for _ in 0..3 {
        let got = send(&c, "GET", &h.url("/checkout/7"), b"").await;
        assert_eq!(got.status, 200);
    }
    // A read to a host that is not allowlisted is refused, not recorded.
    let refused = via_proxy(
        sandbox,
        "GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\nx-shadow-exchange-id: z\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    // CONNECT to a host off the allowlist is refused.
    let connect = via_proxy(
        sandbox,
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(connect.starts_with("HTTP/1.1 403"), "{connect}");

    let (report, _stats, _dir) = h.finish().await;
    let row = endpoint(&report, "GET", "/checkout/{id}", "v2");
    assert_eq!(row.compared, 3, "{row:#?}");
    // The candidate's write was blocked (403, like the control's recorded answer) and the read
    // was canned: no mismatch, but the attempted write is on the report.
    assert_eq!(row.mismatched, 0, "{row:#?}");
    assert_eq!(row.side_effects.len(), 1, "{row:#?}");
    assert_eq!(row.side_effects[0].name, "POST payments.internal/charges");
    assert_eq!(row.side_effects[0].count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_sandbox_is_asked_over_http_and_connect_tunnels_to_allowed_hosts() {
    // Pipeline A only provides a sandbox; pipeline B replays and asks it via replay.sandbox_url.
    let upstream =
        TestServer::start(|s| Reply::text(200, &format!("upstream saw {}", s.path))).await;
    let dummy = TestServer::start(|_| Reply::text(200, "x")).await;
    let a = start_pipeline(&dummy.url(), &[("v2", &dummy.url())], |c| {
        c.sandbox.listen = "127.0.0.1:0".into();
        c.sandbox.allow = vec![upstream.addr.to_string()];
        c.sandbox.allow_tunnel = vec![upstream.addr.to_string()];
    })
    .await;
    let sandbox = a.pipeline.sandbox_addr.unwrap();

    // Allowed reads pass through; CONNECT to a host declared write-safe tunnels bytes both ways.
    let read = via_proxy(
        sandbox,
        &format!(
            "GET http://{0}/r HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
            upstream.addr
        ),
    )
    .await;
    assert!(read.ends_with("upstream saw /r"), "{read}");
    let mut s = tokio::net::TcpStream::connect(sandbox).await.unwrap();
    s.write_all(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", upstream.addr).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"GET /tunneled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out).ends_with("upstream saw /tunneled"));

    let (candidate, proxy_slot) = start_calling_candidate().await;
    *proxy_slot.lock().unwrap() = Some(sandbox);
    let control =
        TestServer::start(|_| Reply::json(json!({"write_status": "403", "rate": ""}))).await;
    let b = start_pipeline(
        &control.url(),
        &[("v2", &format!("http://{candidate}"))],
        |c| {
            c.replay.sandbox_url = Some(format!("http://{sandbox}"));
        },
    )
    .await;
    let c = client();
    send(&c, "GET", &b.url("/pay"), b"").await;
    send(&c, "GET", &b.url("/pay"), b"").await;
    let (report, _, _dir) = b.finish().await;
    let row = endpoint(&report, "GET", "/pay", "v2");
    assert_eq!(
        row.side_effects
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect::<Vec<_>>(),
        vec![("POST payments.internal/charges", 2)],
        "{row:#?}"
    );
    a.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_credentials_replace_stripped_ones() {
    let control = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let candidate = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.credentials = BTreeMap::from([
            ("authorization".to_string(), "Bearer synthetic".to_string()),
            ("x-tenant".to_string(), "shadow-tenant".to_string()),
        ]);
    })
    .await;
    let c = client();
    send(&c, "GET", &h.url("/me"), b"").await;
    let (report, _, _dir) = h.finish().await;
    assert_eq!(endpoint(&report, "GET", "/me", "v2").compared, 1);
    let seen = candidate.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["authorization"], "Bearer synthetic");
    assert_eq!(seen[0].headers["x-tenant"], "shadow-tenant");
    assert_eq!(seen[0].headers["x-shadow"], "1");
    assert!(seen[0].headers.contains_key("x-shadow-exchange-id"));
    // Production still got the client's own credentials.
    assert_eq!(control.seen()[0].headers["authorization"], "Bearer secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_drops_the_connection_gets_exactly_one_request() {
    // Reads each request head, then closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dropper = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let accept = tokio::spawn(async move {
        for _ in 0..50 {
            let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
            else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        counted.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                drop(s);
            });
        }
    });
    let control = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let h = start_pipeline(
        &control.url(),
        &[("v2", &format!("http://{dropper}"))],
        |c| {
            c.replay.allow =
                vec![
                    serde_json::from_value(json!({"method": "POST", "route": "/orders"})).unwrap(),
                ];
        },
    )
    .await;
    let c = client();
    send(&c, "GET", &h.url("/orders"), b"").await;
    send(&c, "POST", &h.url("/orders"), b"{\"n\":1}").await;
    send(&c, "GET", &h.url("/orders"), b"").await;
    let (report, _, _dir) = h.finish().await;
    let get = endpoint(&report, "GET", "/orders", "v2");
    let post = endpoint(&report, "POST", "/orders", "v2");
    assert_eq!((get.errors, post.errors), (2, 1), "{report:#?}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "one request per exchange, never a retry"
    );
    accept.abort();
}
