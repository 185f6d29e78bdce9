//! The replayer's own HTTP/1.1 client against scripted raw-TCP candidates: what exactly goes on
//! the wire (one framing, the replayer's own; nothing a captured or forged field could smuggle),
//! when a request is sent a second time (only a safe one, only when a kept-alive connection
//! closed before answering), and that replay threads never share a connection.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use shadowdiff_model::{Body, Exchange, HttpRequest, TargetErrorKind, TargetRole, SCHEMA_VERSION};
use shadowdiff_net::tls::ClientTls;
use shadowdiff_replayer::{AllowRule, Policy, ReplayConfig, Replayer, Target};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const EXCHANGE_ID: &str = "0190a000-0000-7000-8000-000000000001";

fn config(targets: Vec<Target>, timeout: Duration) -> ReplayConfig {
    ReplayConfig {
        timeout,
        body_limit: 1 << 20,
        // The writes these tests send may go: they are about the client, not the guard.
        policy: Policy::new(&[AllowRule {
            method: "POST".into(),
            route: "/orders".into(),
            bodies: false,
        }])
        .unwrap(),
        ..ReplayConfig::new(targets)
    }
}

fn target(url: &str) -> Target {
    Target::new("v2", TargetRole::Candidate, url, &ClientTls::default()).unwrap()
}

fn exchange(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: EXCHANGE_ID.into(),
        captured_at_ms: 0,
        source: "tee".into(),
        experiment: "client".into(),
        request: HttpRequest {
            method: method.into(),
            uri: uri.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Body::complete(Bytes::copy_from_slice(body)),
        },
        control: None,
        redactions: Vec::new(),
        sample_rate: 1.0,
    }
}

/// Reads one request (head, then a `content-length` body) off `stream`; `None` at a close.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return Some(buf.drain(..end + 4 + length).collect());
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A candidate that records every request's raw bytes. `answer(connection, request on it)`
/// says what to write back; `None` closes the connection without answering.
struct Candidate {
    url: String,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Candidate {
    async fn start(answer: fn(usize, usize) -> Option<&'static [u8]>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let this = connection;
                connection += 1;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut n = 0;
                    while let Some(request) = read_request(&mut stream, &mut buf).await {
                        seen.lock().unwrap().push(request);
                        let Some(reply) = answer(this, n) else { return };
                        n += 1;
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn the_candidate_gets_the_replayers_framing_and_no_smuggled_field() {
    let candidate = Candidate::start(|_, _| Some(OK)).await;
    let replayer =
        Replayer::new(config(vec![target(&candidate.url)], Duration::from_secs(5))).unwrap();
    let forged = exchange(
        "POST",
        "/orders?x=1#fragment",
        &[
            ("Host", "api.prod"),
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("X-Kept", "yes"),
            // A record from Kafka is hostile: a value with a line break would be a second
            // field (or a second request) on the candidate's connection.
            ("x-split", "a\r\nx-injected: 1"),
            ("bad name", "v"),
            ("x-shadow-exchange-id", "forged"),
            ("x-shadow", "0"),
            ("authorization", "Bearer production-secret"),
        ],
        b"hello",
    );
    let result = replayer.replay(forged).await;
    let outcome = result.outcomes[0].result.as_ref().unwrap();
    assert_eq!((outcome.status, &outcome.body.bytes[..]), (200, &b"ok"[..]));

    let requests = candidate.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "hello");
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("POST /orders?x=1 HTTP/1.1"));
    let fields: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    let values = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let authority = candidate.url.trim_start_matches("http://");
    assert_eq!(values("host"), [authority]);
    assert_eq!(values("content-length"), ["5"]);
    assert_eq!(values("x-kept"), ["yes"]);
    assert_eq!(values("x-shadow"), ["1"]);
    assert_eq!(values("x-shadow-exchange-id"), [EXCHANGE_ID]);
    for gone in [
        "transfer-encoding",
        "connection",
        "x-split",
        "x-injected",
        "bad name",
        "authorization",
    ] {
        assert!(
            values(gone).is_empty(),
            "{gone} reached the candidate: {head}"
        );
    }
}

#[tokio::test]
async fn a_target_that_could_split_the_request_line_is_never_sent() {
    let candidate = Candidate::start(|_, _| Some(OK)).await;
    let replayer =
        Replayer::new(config(vec![target(&candidate.url)], Duration::from_secs(5))).unwrap();
    for (method, uri) in [
        ("GET", "/a b"),
        ("GET", "/a\r\nGET /b"),
        ("GET", "/a\u{7f}"),
        ("GET", "/a\tb"),
    ] {
        let result = replayer.replay(exchange(method, uri, &[], b"")).await;
        let error = result.outcomes[0].result.as_ref().unwrap_err();
        assert_eq!(error.kind, TargetErrorKind::Protocol, "{method} {uri:?}");
    }
    assert!(candidate.requests().is_empty());
}

/// The candidate's first connection answers one request, then reads the next and closes
/// without answering (as a server closing an idle connection at the moment a request arrives).
fn close_after_one(connection: usize, request: usize) -> Option<&'static [u8]> {
    (connection > 0 || request == 0).then_some(OK)
}

#[tokio::test]
async fn only_a_safe_request_goes_again_after_a_kept_alive_connection_closed() {
    let candidate = Candidate::start(close_after_one).await;
    let replayer =
        Replayer::new(config(vec![target(&candidate.url)], Duration::from_secs(5))).unwrap();
    let first = replayer.replay(exchange("GET", "/1", &[], b"")).await;
    assert!(first.outcomes[0].result.is_ok());
    let again = replayer.replay(exchange("GET", "/2", &[], b"")).await;
    assert_eq!(again.outcomes[0].result.as_ref().unwrap().status, 200);
    let paths: Vec<String> = candidate
        .requests()
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/1", "/2", "/2"]);

    let candidate = Candidate::start(close_after_one).await;
    let replayer =
        Replayer::new(config(vec![target(&candidate.url)], Duration::from_secs(5))).unwrap();
    replayer.replay(exchange("GET", "/1", &[], b"")).await;
    let write = replayer
        .replay(exchange("POST", "/orders", &[], b"x"))
        .await;
    let error = write.outcomes[0].result.as_ref().unwrap_err();
    assert_eq!(error.kind, TargetErrorKind::Protocol);
    assert_eq!(candidate.requests().len(), 2, "a POST was sent twice");
}

/// A connection belongs to the runtime that opened it: with one pool shared by the replay
/// threads, a thread would wait on a connection whose runtime is busy elsewhere (here: blocked)
/// and time out.
#[test]
fn replay_threads_never_share_a_connection() {
    let server = tokio::runtime::Runtime::new().unwrap();
    let candidate = server.block_on(Candidate::start(|_, _| Some(OK)));
    let configured = target(&candidate.url);
    let timeout = Duration::from_secs(1);
    let first = Replayer::new(config(vec![configured.clone()], timeout)).unwrap();
    let second = Replayer::new(config(vec![configured.clone()], timeout)).unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (replayed, go_on) = std::sync::mpsc::channel();
    let busy = std::thread::spawn(move || {
        let rt = runtime();
        let result = rt.block_on(first.replay(exchange("GET", "/1", &[], b"")));
        assert!(result.outcomes[0].result.is_ok());
        replayed.send(()).unwrap();
        // This runtime now does blocking work and drives none of its connections.
        std::thread::sleep(Duration::from_secs(2));
    });
    go_on.recv().unwrap();
    let result = runtime().block_on(second.replay(exchange("GET", "/2", &[], b"")));
    assert_eq!(result.outcomes[0].result.as_ref().unwrap().status, 200);
    busy.join().unwrap();
    assert_eq!(candidate.requests().len(), 2);
}

/// A candidate that refuses a large upload after its head (413) and stops reading, keeping the
/// connection open: the replayer takes that answer instead of blocking on the write until the
/// timeout.
#[tokio::test]
async fn an_answer_before_the_whole_body_was_read_is_the_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let refusal = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big!";
        stream.write_all(refusal).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let replayer = Replayer::new(config(vec![target(&url)], Duration::from_secs(3))).unwrap();
    let upload = vec![b'x'; 64 << 20];
    let started = std::time::Instant::now();
    let result = replayer
        .replay(exchange("POST", "/orders", &[], &upload))
        .await;
    let answer = result.outcomes[0].result.as_ref().unwrap();
    assert_eq!(
        (answer.status, &answer.body.bytes[..]),
        (413, &b"too big!"[..])
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
