//! The tap's HTTP/1.1 relay (`relay.rs`) end to end over loopback TCP: a raw-TCP client, a tap
//! serving on one thread, and a raw-TCP control that records every request that reaches it.
//! Every wait is bounded, so a relay that hangs fails the test instead of stalling it.
#![allow(clippy::unwrap_used)]

use shadowdiff_capture::relay::MAX_HEAD_BYTES;
use shadowdiff_capture::{ExchangeSink, OfferError, TeeConfig, TeeProxy};
use shadowdiff_model::{header_value, Exchange};
use shadowdiff_net::server::{bind, serve_connections_on_threads};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Longest any single step may take.
const WAIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

// ---------------------------------------------------------------------------------------------
// Wire: a buffered raw HTTP/1.1 reader for both the client and the control.

/// A start line and its header fields (names lower-cased, in order).
#[derive(Debug, Clone)]
struct Head {
    start: String,
    fields: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default().to_string();
        let fields = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, value) = l.split_once(':').expect("a header field");
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        Self { start, fields }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The status of a response head.
    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", self.start))
    }

    fn chunked(&self) -> bool {
        self.get("transfer-encoding").is_some_and(|te| {
            te.rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
        })
    }

    fn content_length(&self) -> Option<usize> {
        self.get("content-length").map(|v| v.parse().unwrap())
    }
}

/// A message as it crossed the wire: the body bytes as sent, and its data (de-chunked).
#[derive(Debug, Clone)]
struct Message {
    head: Head,
    raw_body: Vec<u8>,
    body: Vec<u8>,
}

struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self::new(stream)
    }

    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        within("writing", self.stream.write_all(bytes))
            .await
            .unwrap();
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn head(&mut self) -> Option<Head> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Some(Head::parse(&raw));
            }
            if self.fill().await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await.ok()? == 0 {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// One line, with its CRLF.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Some(self.buf.drain(..end + 2).collect());
            }
            if self.fill().await.ok()? == 0 {
                return None;
            }
        }
    }

    /// A chunked body: (the bytes as sent, the data they carry).
    async fn chunked(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut raw = Vec::new();
        let mut data = Vec::new();
        loop {
            let line = self.line().await?;
            raw.extend_from_slice(&line);
            let text = std::str::from_utf8(&line).expect("an ASCII chunk-size line");
            let digits = text.trim_end().split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(digits, 16).expect("a hex chunk size");
            if size == 0 {
                loop {
                    let trailer = self.line().await?;
                    raw.extend_from_slice(&trailer);
                    if trailer == b"\r\n" {
                        return Some((raw, data));
                    }
                }
            }
            let chunk = self.take(size + 2).await?;
            if &chunk[size..] != b"\r\n" {
                return None;
            }
            data.extend_from_slice(&chunk[..size]);
            raw.extend_from_slice(&chunk);
        }
    }

    /// Everything until the peer closes.
    async fn until_close(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// A request (head and body) or `None` at the end of the stream.
    async fn request(&mut self) -> Option<Message> {
        let head = self.head().await?;
        let (raw_body, body) = if head.chunked() {
            self.chunked().await?
        } else {
            let body = self.take(head.content_length().unwrap_or(0)).await?;
            (body.clone(), body)
        };
        Some(Message {
            head,
            raw_body,
            body,
        })
    }

    /// A final response (1xx heads are returned as they are); `to_head` when it answers HEAD.
    async fn response(&mut self, to_head: bool) -> Option<Message> {
        let head = self.head().await?;
        let status = head.status();
        let (raw_body, body) = if to_head || (100..200).contains(&status) || status == 204 {
            (Vec::new(), Vec::new())
        } else if head.chunked() {
            self.chunked().await?
        } else if let Some(length) = head.content_length() {
            let body = self.take(length).await?;
            (body.clone(), body)
        } else {
            let body = self.until_close().await.ok()?;
            (body.clone(), body)
        };
        Some(Message {
            head,
            raw_body,
            body,
        })
    }

    /// Bounded wait for the next response.
    async fn answer(&mut self, to_head: bool) -> Message {
        within("an answer from the tap", self.response(to_head))
            .await
            .expect("the tap answered before closing")
    }

    /// Waits for the peer to close the connection; true when it did with nothing more sent.
    async fn closed(&mut self) -> bool {
        let rest = within("the tap closing the connection", self.until_close()).await;
        matches!(rest, Ok(rest) if rest.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// The control: a raw-TCP server that records each request and answers as a test says.

/// What the control does with a request.
enum Reply {
    /// Writes these bytes and waits for the next request.
    Send(Vec<u8>),
    /// Writes these bytes and closes the connection.
    SendAndClose(Vec<u8>),
    /// Writes these pieces with a pause between them and waits for the next request.
    Pieces(Vec<Vec<u8>>),
    /// Never answers; holds the connection until the tap drops it.
    Silent,
}

struct Control {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Message>>>,
}

impl Control {
    fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn control(reply: impl Fn(&Message) -> Reply + Send + Sync + 'static) -> Control {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let (counted, recorded) = (connections.clone(), received.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (recorded, reply) = (recorded.clone(), reply.clone());
            tokio::spawn(async move {
                let mut wire = Wire::new(stream);
                while let Some(request) = wire.request().await {
                    recorded.lock().unwrap().push(request.clone());
                    match reply(&request) {
                        Reply::Send(bytes) => {
                            if wire.stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::SendAndClose(bytes) => {
                            let _ = wire.stream.write_all(&bytes).await;
                            return;
                        }
                        Reply::Pieces(pieces) => {
                            for piece in pieces {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                if wire.stream.write_all(&piece).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Reply::Silent => {
                            let _ = wire.until_close().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Control {
        addr,
        connections,
        received,
    }
}

/// `HTTP/1.1 200 OK` with a Content-Length body.
fn ok(body: &[u8]) -> Reply {
    let mut bytes =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    Reply::Send(bytes)
}

fn path(request: &Message) -> &str {
    request.head.start.split(' ').nth(1).unwrap()
}

/// A control that answers every request with its path.
async fn path_control() -> Control {
    control(|request| ok(path(request).as_bytes())).await
}

/// An address with nothing listening on it.
async fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------------
// The tap and its sink.

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);

impl ExchangeSink for Collect {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        self.0.lock().unwrap().push(exchange);
        Ok(())
    }
}

impl Collect {
    fn all(&self) -> Vec<Exchange> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until at least `n` exchanges arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Exchange> {
        within("captured exchanges", async {
            loop {
                let all = self.all();
                if all.len() >= n {
                    return all;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

struct Tap {
    addr: SocketAddr,
    sink: Arc<Collect>,
    /// Dropping it stops the serving thread.
    _stop: oneshot::Sender<()>,
}

fn config(control: SocketAddr) -> TeeConfig {
    TeeConfig {
        control: format!("http://{control}").parse().unwrap(),
        tls: Default::default(),
        body_limit: 1024 * 1024,
        experiment: "relay".into(),
        preserve_host: false,
        control_timeout: WAIT,
        limits: shadowdiff_capture::TapLimits::default(),
        shadow_markers: shadowdiff_capture::default_shadow_markers(),
    }
}

/// A tap on one serving thread: a connection's exchange is then offered (or not) before the
/// thread serves anything else.
async fn tap(config: TeeConfig) -> Tap {
    install_recorder();
    let sink = Arc::new(Collect::default());
    let proxy = TeeProxy::new(config, sink.clone()).unwrap();
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_connections_on_threads(
        listener,
        1,
        move || proxy.for_thread(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Tap {
        addr,
        sink,
        _stop: stop,
    }
}

// ---------------------------------------------------------------------------------------------
// A metrics recorder that counts exchanges dropped as incomplete.

static INCOMPLETE: AtomicU64 = AtomicU64::new(0);

/// `shadowdiff_capture_refused_total` by reason.
static REFUSED: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

fn refused_count(reason: &str) -> u64 {
    REFUSED
        .lock()
        .unwrap()
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0, |(_, n)| *n)
}

struct RefusedCount(String);

impl metrics::CounterFn for RefusedCount {
    fn increment(&self, value: u64) {
        let mut all = REFUSED.lock().unwrap();
        match all.iter_mut().find(|(r, _)| *r == self.0) {
            Some((_, n)) => *n += value,
            None => all.push((self.0.clone(), value)),
        }
    }

    fn absolute(&self, _: u64) {}
}

struct IncompleteCount;

impl metrics::CounterFn for IncompleteCount {
    fn increment(&self, value: u64) {
        INCOMPLETE.fetch_add(value, Ordering::SeqCst);
    }

    fn absolute(&self, value: u64) {
        INCOMPLETE.fetch_max(value, Ordering::SeqCst);
    }
}

struct Recording;

impl metrics::Recorder for Recording {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let incomplete = key.name() == "shadowdiff_capture_dropped_total"
            && key
                .labels()
                .any(|l| l.key() == "reason" && l.value() == "incomplete");
        let refused = (key.name() == "shadowdiff_capture_refused_total")
            .then(|| key.labels().find(|l| l.key() == "reason"))
            .flatten();
        if incomplete {
            metrics::Counter::from_arc(Arc::new(IncompleteCount))
        } else if let Some(reason) = refused {
            metrics::Counter::from_arc(Arc::new(RefusedCount(reason.value().to_string())))
        } else {
            metrics::Counter::noop()
        }
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

fn install_recorder() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::set_global_recorder(Recording).unwrap();
    });
}

/// Bytes 0..=255 repeated: binary data that shows any reordering, loss or re-encoding.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: tap.example\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// 1. Content-Length bodies.

#[tokio::test]
async fn a_content_length_post_is_relayed_byte_exact_and_captured_whole() {
    let request_body = pattern(50_000);
    let response_body = b"created: 50000 bytes".to_vec();
    let answer = response_body.clone();
    let control = control(move |_| {
        let mut bytes = format!(
            "HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nx-control: yes\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&answer);
        Reply::Send(bytes)
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    let mut request = format!(
        "POST /submit?x=1 HTTP/1.1\r\nhost: tap.example\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        request_body.len()
    )
    .into_bytes();
    request.extend_from_slice(&request_body);
    client.send(&request).await;
    let response = client.answer(false).await;

    assert_eq!(response.head.start, "HTTP/1.1 201 Created");
    assert_eq!(response.head.get("x-control"), Some("yes"));
    assert_eq!(response.body, response_body);

    let received = control.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].head.start, "POST /submit?x=1 HTTP/1.1");
    assert_eq!(received[0].head.get("content-length"), Some("50000"));
    assert!(!received[0].head.has("transfer-encoding"));
    assert!(
        received[0].body == request_body,
        "the control got the request body byte for byte"
    );

    let exchanges = tap.sink.wait_for(1).await;
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    assert_eq!(exchange.source, "tee");
    assert_eq!(exchange.experiment, "relay");
    assert_eq!(exchange.request.method, "POST");
    assert_eq!(exchange.request.uri, "/submit?x=1");
    assert_eq!(
        exchange.request_header("content-type"),
        Some("application/octet-stream")
    );
    assert!(exchange.request.body.bytes[..] == request_body[..]);
    assert_eq!(exchange.request.body.full_len, 50_000);
    assert!(!exchange.request.body.truncated);
    let control_response = exchange.control.as_ref().expect("the control's answer");
    assert_eq!(control_response.status, 201);
    assert_eq!(
        header_value(&control_response.headers, "content-type"),
        Some("text/plain")
    );
    assert_eq!(
        header_value(&control_response.headers, "x-control"),
        Some("yes")
    );
    assert_eq!(control_response.body.bytes[..], response_body[..]);
    assert_eq!(control_response.body.full_len, response_body.len() as u64);
    assert!(!control_response.body.truncated);
}

// ---------------------------------------------------------------------------------------------
// 2. Chunked bodies, both ways.

#[tokio::test]
async fn chunked_bodies_are_re_encoded_cleanly_and_captured_decoded() {
    let chunked_answer =
        b"4\r\nchun\r\n3;ext=1\r\nked\r\n6\r\n answe\r\n1\r\nr\r\n0\r\nx-trailer: t\r\n\r\n"
            .to_vec();
    let answer = chunked_answer.clone();
    let control = control(move |_| {
        let mut bytes =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec();
        bytes.extend_from_slice(&answer);
        Reply::Send(bytes)
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"POST /upload HTTP/1.1\r\nhost: tap.example\r\ntransfer-encoding: chunked\r\n\r\n")
        .await;
    // The body comes in pieces, split inside chunk-size lines and data.
    let pieces: [&[u8]; 5] = [
        b"5\r\nhel",
        b"lo\r\n7;note=x\r",
        b"\n, world\r\n",
        b"1\r\n!\r\n0\r\n",
        b"\r\n",
    ];
    let sent: Vec<u8> = pieces.concat();
    for piece in pieces {
        client.send(piece).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = client.answer(false).await;

    assert_eq!(response.head.status(), 200);
    assert!(response.head.chunked(), "the client gets a chunked answer");
    assert!(!response.head.has("content-length"));
    assert_eq!(response.body, b"chunked answer");
    // The relay writes its own framing: the data in clean chunks, no extension, no trailer.
    assert_eq!(
        response.raw_body,
        b"4\r\nchun\r\n3\r\nked\r\n6\r\n answe\r\n1\r\nr\r\n0\r\n\r\n".to_vec(),
        "the chunked response is re-encoded by the relay"
    );
    assert_ne!(response.raw_body, chunked_answer);

    let received = control.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].head.chunked());
    assert!(!received[0].head.has("content-length"));
    assert_eq!(received[0].body, b"hello, world!");
    assert_ne!(received[0].raw_body, sent);
    let raw = String::from_utf8(received[0].raw_body.clone()).unwrap();
    assert!(
        !raw.contains(';') && raw.ends_with("0\r\n\r\n"),
        "the chunked request is re-encoded without extensions: {raw:?}"
    );

    let exchanges = tap.sink.wait_for(1).await;
    let exchange = &exchanges[0];
    assert_eq!(exchange.request.body.bytes[..], b"hello, world!"[..]);
    assert_eq!(exchange.request.body.full_len, 13);
    assert!(!exchange.request.body.truncated);
    let control_response = exchange.control.as_ref().unwrap();
    assert_eq!(control_response.body.bytes[..], b"chunked answer"[..]);
    assert_eq!(control_response.body.full_len, 14);
    assert!(!control_response.body.truncated);
    assert!(
        header_value(&control_response.headers, "transfer-encoding").is_none(),
        "framing is hop-by-hop and not part of the copy"
    );

    // The connection goes on after a chunked exchange.
    client.send(&get("/after")).await;
    let response = client.answer(false).await;
    assert_eq!(response.body, b"chunked answer");
}

// ---------------------------------------------------------------------------------------------
// 3. Pipelining.

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order_on_one_connection() {
    let control = control(|request| {
        let body = format!(
            "{} {}",
            path(request),
            String::from_utf8_lossy(&request.body)
        );
        ok(body.as_bytes())
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    let mut pipelined = Vec::new();
    pipelined.extend_from_slice(
        b"POST /one HTTP/1.1\r\nhost: tap.example\r\ncontent-length: 3\r\n\r\nabc",
    );
    pipelined.extend_from_slice(
        b"POST /two HTTP/1.1\r\nhost: tap.example\r\ntransfer-encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n",
    );
    pipelined.extend_from_slice(&get("/three"));
    client.send(&pipelined).await;

    let answers = [
        client.answer(false).await,
        client.answer(false).await,
        client.answer(false).await,
    ];
    let bodies: Vec<String> = answers
        .iter()
        .map(|a| String::from_utf8_lossy(&a.body).into_owned())
        .collect();
    assert_eq!(bodies, ["/one abc", "/two de", "/three "]);
    assert!(answers.iter().all(|a| a.head.status() == 200));

    let paths: Vec<String> = control
        .received()
        .iter()
        .map(|r| path(r).to_string())
        .collect();
    assert_eq!(paths, ["/one", "/two", "/three"]);

    let exchanges = tap.sink.wait_for(3).await;
    let captured: Vec<(String, Vec<u8>)> = exchanges
        .iter()
        .map(|e| (e.request.uri.clone(), e.request.body.bytes.to_vec()))
        .collect();
    assert_eq!(
        captured,
        [
            ("/one".to_string(), b"abc".to_vec()),
            ("/two".to_string(), b"de".to_vec()),
            ("/three".to_string(), Vec::new()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Heads the relay refuses.

/// Sends `request` on a fresh connection and returns the status; asserts the tap closed.
async fn refused(tap: &Tap, request: &[u8]) -> u16 {
    let mut client = Wire::connect(tap.addr).await;
    client.send(request).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.get("connection"), Some("close"));
    assert!(client.closed().await, "the tap closes after refusing");
    answer.head.status()
}

#[tokio::test]
async fn malformed_request_heads_are_answered_400_and_never_reach_the_control() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let malformed: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nhost: tap.example\r\nno colon in this line\r\n\r\n",
        b"GET / HTTP/9.9\r\nhost: tap.example\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: tap.example\r\ncontent-length: 12x\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: tap.example\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
    ];
    for request in malformed {
        assert_eq!(
            refused(&tap, request).await,
            400,
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(control.connections(), 0);
    assert!(tap.sink.all().is_empty());
}

#[tokio::test]
async fn a_request_head_over_64_kib_is_answered_431() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let big = format!(
        "GET / HTTP/1.1\r\nhost: tap.example\r\nx-big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES + 4096)
    );
    // All at once.
    assert_eq!(refused(&tap, big.as_bytes()).await, 431);

    // In two writes, the second ending the head: the whole head may then be read before it is
    // parsed, and must be refused all the same.
    for split in [60_000, MAX_HEAD_BYTES - 1] {
        let (first, rest) = big.as_bytes().split_at(split);
        let mut client = Wire::connect(tap.addr).await;
        client.send(first).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send(rest).await;
        let answer = client.answer(false).await;
        assert_eq!(
            answer.head.status(),
            431,
            "split at {split}: {}",
            answer.head.start
        );
        assert!(client.closed().await, "split at {split}");
    }

    // Too many header fields is too large as well.
    let mut many = String::from("GET / HTTP/1.1\r\nhost: tap.example\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-field-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(refused(&tap, many.as_bytes()).await, 431);

    assert_eq!(control.connections(), 0);
    assert!(control.received().is_empty());
    assert!(tap.sink.all().is_empty());
}

#[tokio::test]
async fn a_request_with_both_transfer_encoding_and_content_length_is_refused() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let smuggling: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nhost: tap.example\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: tap.example\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        // A coding list that does not end in chunked cannot be framed.
        b"POST / HTTP/1.1\r\nhost: tap.example\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ];
    for request in smuggling {
        assert_eq!(
            refused(&tap, request).await,
            400,
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(control.connections(), 0);
    assert!(tap.sink.all().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5. The control failing.

#[tokio::test]
async fn an_unreachable_control_is_answered_502_without_a_copy() {
    let tap = tap(config(unused_addr().await)).await;
    let mut client = Wire::connect(tap.addr).await;
    for path in ["/a", "/b"] {
        client.send(&get(path)).await;
        let answer = client.answer(false).await;
        assert_eq!(answer.head.status(), 502, "{path}");
        assert_eq!(answer.body, b"control unreachable");
    }
    // The second answer came on the same connection, after the first exchange was done with.
    assert!(tap.sink.all().is_empty());
}

#[tokio::test]
async fn a_control_that_does_not_answer_in_time_is_answered_504_without_a_copy() {
    let control = control(|request| {
        if path(request) == "/slow" {
            Reply::Silent
        } else {
            ok(b"fine")
        }
    })
    .await;
    let mut config = config(control.addr);
    config.control_timeout = Duration::from_millis(300);
    let tap = tap(config).await;

    let mut client = Wire::connect(tap.addr).await;
    let started = Instant::now();
    client.send(&get("/slow")).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 504);
    assert_eq!(answer.body, b"control timed out");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The same connection carries the next request; only that one is copied.
    client.send(&get("/sentinel")).await;
    let answer = client.answer(false).await;
    assert_eq!(
        (answer.head.status(), answer.body.as_slice()),
        (200, &b"fine"[..])
    );
    let exchanges = tap.sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let uris: Vec<String> = tap
        .sink
        .all()
        .iter()
        .map(|e| e.request.uri.clone())
        .collect();
    assert_eq!(uris, ["/sentinel"], "{exchanges:?}");
}

// ---------------------------------------------------------------------------------------------
// 6. Expect: 100-continue.

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_tap_and_not_forwarded() {
    let control = control(|request| ok(&request.body)).await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"PUT /doc HTTP/1.1\r\nhost: tap.example\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        .await;
    // The body is held back until the tap says go on.
    let interim = within("100 Continue", client.head())
        .await
        .expect("an interim answer");
    assert_eq!(interim.start, "HTTP/1.1 100 Continue");
    client.send(b"hello").await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 200);
    assert_eq!(answer.body, b"hello");

    let received = control.received();
    assert_eq!(received.len(), 1);
    assert!(!received[0].head.has("expect"), "{:?}", received[0].head);
    assert_eq!(received[0].body, b"hello");

    let exchanges = tap.sink.wait_for(1).await;
    assert_eq!(exchanges[0].request.body.bytes[..], b"hello"[..]);
    assert!(!exchanges[0].request.body.truncated);
}

// ---------------------------------------------------------------------------------------------
// 7. The control cutting its answer short.

#[tokio::test]
async fn a_response_cut_short_by_the_control_closes_the_client_and_is_not_copied() {
    let control = control(|request| {
        if path(request) == "/cut" {
            let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec();
            bytes.extend_from_slice(b"0123456789");
            Reply::SendAndClose(bytes)
        } else {
            ok(b"fine")
        }
    })
    .await;
    let tap = tap(config(control.addr)).await;
    let incomplete_before = INCOMPLETE.load(Ordering::SeqCst);

    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/cut")).await;
    let head = within("the response head", client.head()).await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.content_length(), Some(100));
    // The tap closes the connection: the client sees the body end short of 100 bytes.
    let rest = within("the tap closing the connection", client.until_close())
        .await
        .expect("a clean close");
    assert_eq!(rest, b"0123456789");

    // An exchange after it is copied; the cut one is not.
    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/sentinel")).await;
    assert_eq!(client.answer(false).await.body, b"fine");
    tap.sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let uris: Vec<String> = tap
        .sink
        .all()
        .iter()
        .map(|e| e.request.uri.clone())
        .collect();
    assert_eq!(uris, ["/sentinel"]);
    assert!(
        INCOMPLETE.load(Ordering::SeqCst) > incomplete_before,
        "the cut exchange is counted as incomplete"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The capture limit.

#[tokio::test]
async fn bodies_over_the_capture_limit_are_relayed_whole_and_copied_truncated() {
    let request_body = pattern(100);
    let response_body: Vec<u8> = pattern(300).into_iter().skip(7).take(100).collect();
    let answer = response_body.clone();
    let control = control(move |request| {
        if path(request) == "/chunked" {
            // 40 bytes of data in three chunks; the limit falls inside the second.
            let body = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n14\r\nabcdefghijklmnopqrst\r\na\r\nABCDEFGHIJ\r\n0\r\n\r\n";
            Reply::Send(body.to_vec())
        } else {
            ok(&answer)
        }
    })
    .await;
    let mut config = config(control.addr);
    config.body_limit = 16;
    let tap = tap(config).await;

    let mut client = Wire::connect(tap.addr).await;
    let mut request =
        b"POST /big HTTP/1.1\r\nhost: tap.example\r\ncontent-length: 100\r\n\r\n".to_vec();
    request.extend_from_slice(&request_body);
    client.send(&request).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.body, response_body, "the client gets the whole body");
    assert_eq!(control.received()[0].body, request_body);

    client.send(&get("/chunked")).await;
    let chunked = client.answer(false).await;
    assert_eq!(
        chunked.body,
        b"0123456789abcdefghijklmnopqrstABCDEFGHIJ".to_vec()
    );

    let exchanges = tap.sink.wait_for(2).await;
    let request_copy = &exchanges[0].request.body;
    assert_eq!(request_copy.bytes[..], request_body[..16]);
    assert!(request_copy.truncated);
    assert_eq!(request_copy.full_len, 100);
    let response_copy = &exchanges[0].control.as_ref().unwrap().body;
    assert_eq!(response_copy.bytes[..], response_body[..16]);
    assert!(response_copy.truncated);
    assert_eq!(response_copy.full_len, 100);

    let chunked_copy = &exchanges[1].control.as_ref().unwrap().body;
    assert_eq!(chunked_copy.bytes[..], b"0123456789abcdef"[..]);
    assert!(chunked_copy.truncated);
    assert_eq!(
        chunked_copy.full_len, 40,
        "the data length, not the wire length"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Hop-by-hop fields.

#[tokio::test]
async fn hop_by_hop_fields_are_dropped_and_host_is_the_controls() {
    let control = control(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nconnection: x-answer-secret\r\nx-answer-secret: 2\r\nkeep-alive: timeout=5\r\nx-answer: kept\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client
        .send(
            b"GET /hop HTTP/1.1\r\nHost: client.example\r\nConnection: X-Secret, keep-alive\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nx-normal: yes\r\n\r\n",
        )
        .await;
    let answer = client.answer(false).await;
    assert_eq!(answer.body, b"ok");
    assert_eq!(answer.head.get("x-answer"), Some("kept"));
    for name in ["connection", "x-answer-secret", "keep-alive"] {
        assert!(!answer.head.has(name), "{name} reached the client");
    }

    let received = control.received();
    let head = &received[0].head;
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert!(!head.has(name), "{name} reached the control: {head:?}");
    }
    assert_eq!(head.get("x-normal"), Some("yes"));
    let hosts: Vec<&str> = head.all("host").collect();
    assert_eq!(hosts, [control.addr.to_string().as_str()]);

    let exchanges = tap.sink.wait_for(1).await;
    let response_headers = &exchanges[0].control.as_ref().unwrap().headers;
    assert_eq!(header_value(response_headers, "x-answer"), Some("kept"));
    for name in ["connection", "x-answer-secret", "keep-alive"] {
        assert!(
            header_value(response_headers, name).is_none(),
            "{name} was copied"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 10. HTTP/1.0.

#[tokio::test]
async fn an_http_1_0_request_is_served_by_the_hyper_path() {
    let control = control(|request| {
        let body = format!(
            "{} {}",
            path(request),
            String::from_utf8_lossy(&request.body)
        );
        ok(body.as_bytes())
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"POST /old HTTP/1.0\r\nhost: tap.example\r\ncontent-length: 4\r\n\r\nping")
        .await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 200, "{}", answer.head.start);
    assert_eq!(answer.body, b"/old ping");
    assert!(
        client.closed().await,
        "an HTTP/1.0 connection is not kept alive"
    );

    let received = control.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].head.start, "POST /old HTTP/1.1");
    assert_eq!(received[0].body, b"ping");
    let exchanges = tap.sink.wait_for(1).await;
    assert_eq!(exchanges[0].request.uri, "/old");
    assert_eq!(exchanges[0].request.body.bytes[..], b"ping"[..]);
}

/// A client whose body breaks off is at fault, not the control: the hyper path answers 400
/// (it answered 502 and counted a control error) and copies nothing.
#[tokio::test]
async fn an_http_1_0_body_that_breaks_off_is_the_clients_fault() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"POST /cut HTTP/1.0\r\nhost: tap.example\r\ncontent-length: 100\r\n\r\nonly ten b")
        .await;
    // Half-closed: the client sends nothing more and waits for the answer.
    client.stream.shutdown().await.unwrap();
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 400, "{}", answer.head.start);
    assert!(client.closed().await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tap.sink.all().iter().all(|e| e.request.uri != "/cut"),
        "a request whose body broke off was copied"
    );
}

// ---------------------------------------------------------------------------------------------
// 11. HEAD.

#[tokio::test]
async fn a_head_response_with_content_length_has_no_body_and_the_connection_goes_on() {
    let control = control(|request| {
        if request.head.start.starts_with("HEAD ") {
            Reply::Send(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1234\r\n\r\n"
                    .to_vec(),
            )
        } else {
            ok(b"the body")
        }
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"HEAD /thing HTTP/1.1\r\nhost: tap.example\r\n\r\n")
        .await;
    let answer = client.answer(true).await;
    assert_eq!(answer.head.status(), 200);
    assert_eq!(answer.head.content_length(), Some(1234));

    client.send(&get("/thing")).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.body, b"the body");
    assert_eq!(
        control.connections(),
        1,
        "the control connection is reused after HEAD"
    );

    let exchanges = tap.sink.wait_for(2).await;
    assert_eq!(exchanges[0].request.method, "HEAD");
    let head_copy = &exchanges[0].control.as_ref().unwrap().body;
    assert!(head_copy.bytes.is_empty() && !head_copy.truncated);
    assert_eq!(exchanges[1].request.method, "GET");
}

// ---------------------------------------------------------------------------------------------
// 12. A body delimited by the control closing.

#[tokio::test]
async fn a_close_delimited_response_is_relayed_whole_then_the_client_is_closed() {
    let body = pattern(40_000);
    let answer = body.clone();
    let control = control(move |_| {
        let mut bytes =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n".to_vec();
        bytes.extend_from_slice(&answer);
        Reply::SendAndClose(bytes)
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/stream")).await;
    let head = within("the response head", client.head()).await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.get("connection"), Some("close"));
    assert!(!head.has("content-length") && !head.has("transfer-encoding"));
    let got = within("the body until close", client.until_close())
        .await
        .expect("a clean close");
    assert!(got == body, "got {} of {} bytes", got.len(), body.len());

    let exchanges = tap.sink.wait_for(1).await;
    let copy = &exchanges[0].control.as_ref().unwrap().body;
    assert!(copy.bytes[..] == body[..]);
    assert!(!copy.truncated);
    assert_eq!(copy.full_len, 40_000);
}

// ---------------------------------------------------------------------------------------------
// Framing the relay must not pass on as it came.

#[tokio::test]
async fn a_response_head_over_64_kib_is_answered_502_however_it_arrives() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 2\r\n\r\nok",
        "a".repeat(MAX_HEAD_BYTES + 4096)
    )
    .into_bytes();
    let control = control(move |request| match path(request) {
        "/one-write" => Reply::Send(big.clone()),
        "/two-writes" => Reply::Pieces(vec![big[..60_000].to_vec(), big[60_000..].to_vec()]),
        _ => ok(b"fine"),
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    for path in ["/one-write", "/two-writes"] {
        client.send(&get(path)).await;
        let answer = client.answer(false).await;
        assert_eq!(answer.head.status(), 502, "{path}: {}", answer.head.start);
        assert!(!answer.head.has("x-big"));
    }
    client.send(&get("/sentinel")).await;
    assert_eq!(client.answer(false).await.body, b"fine");
    tap.sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let uris: Vec<String> = tap
        .sink
        .all()
        .iter()
        .map(|e| e.request.uri.clone())
        .collect();
    assert_eq!(uris, ["/sentinel"]);
}

#[tokio::test]
async fn a_response_with_both_framings_is_answered_502_and_not_copied() {
    // RFC 9112 §6.3 lets Transfer-Encoding override Content-Length, but a response with both
    // is how responses are desynchronised: refused, as a request with both is.
    let control = control(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let tap = tap(config(control.addr)).await;

    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/both")).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 502);
    assert!(!String::from_utf8_lossy(&answer.body).contains("hello"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tap.sink.all().is_empty(), "nothing is copied");
}

#[tokio::test]
async fn a_status_code_outside_100_to_599_is_answered_502_and_not_copied() {
    // httparse reads `000` as 0; written on, the client got `HTTP/1.1 0 OK` (found by the
    // relay_differential fuzz target).
    for status in ["000", "099", "600", "999"] {
        let line = format!("HTTP/1.1 {status} OK\r\ncontent-length: 5\r\n\r\nhello");
        let control = control(move |_| Reply::Send(line.clone().into_bytes())).await;
        let tap = tap(config(control.addr)).await;
        let mut client = Wire::connect(tap.addr).await;
        client.send(&get("/odd-status")).await;
        let answer = client.answer(false).await;
        assert_eq!(answer.head.status(), 502, "status {status}");
        assert!(!String::from_utf8_lossy(&answer.body).contains("hello"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tap.sink.all().is_empty(), "nothing is copied for {status}");
    }
}

#[tokio::test]
async fn an_http_1_0_response_with_transfer_encoding_is_answered_502_and_not_copied() {
    // RFC 9112 §6.1: its framing is faulty. Read as chunked, a control's `0;d` chunk ended the
    // first answer early and the rest of its bytes sat in front of the next one (found by the
    // relay_differential fuzz target).
    let reply = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let control = control(move |_| Reply::Send(reply.to_vec())).await;
    let tap = tap(config(control.addr)).await;
    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/old-framing")).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 502);
    assert!(!String::from_utf8_lossy(&answer.body).contains("hello"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tap.sink.all().is_empty(), "nothing is copied");
}

#[tokio::test]
async fn a_request_target_without_a_path_is_answered_400_and_never_forwarded() {
    // `GET 9!a` reaches the hyper path, which reads it as authority-form; forwarded as `/` it
    // was a request nobody sent (found by the relay_differential fuzz target).
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = asked.clone();
    let control = control(move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    })
    .await;
    let tap = tap(config(control.addr)).await;
    let mut client = Wire::connect(tap.addr).await;
    client.send(b"GET 9!a HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 400);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the control saw nothing"
    );
    assert!(tap.sink.all().is_empty(), "nothing is copied");
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_answered_400_without_a_copy() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"POST /bad HTTP/1.1\r\nhost: tap.example\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n")
        .await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 400);
    assert!(client.closed().await);

    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/sentinel")).await;
    assert_eq!(client.answer(false).await.body, b"/sentinel");
    tap.sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let uris: Vec<String> = tap
        .sink
        .all()
        .iter()
        .map(|e| e.request.uri.clone())
        .collect();
    assert_eq!(uris, ["/sentinel"]);
    assert!(
        control.received().iter().all(|r| path(r) != "/bad"),
        "no complete /bad request reached the control"
    );
}

/// A coding the relay does not decode (`gzip, chunked`) is refused both ways: passing it on
/// would leave the receiver to frame the body its own way.
#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused_both_ways() {
    let control = control(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nzzz\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let tap = tap(config(control.addr)).await;
    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"POST /z HTTP/1.1\r\nhost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n")
        .await;
    assert_eq!(client.answer(false).await.head.status(), 400);
    assert!(client.closed().await);
    assert!(
        control.received().is_empty(),
        "the request never reached the control"
    );

    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/z")).await;
    let response = client.answer(false).await;
    assert_eq!(response.head.status(), 502);
    assert_eq!(control.received().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Do no harm: one client's bytes never become another request, no client holds the tap open.

/// A tap whose limits are short enough to watch expire.
fn short_limits(control: SocketAddr) -> TeeConfig {
    let mut config = config(control);
    config.limits.head_timeout = Duration::from_millis(300);
    config.limits.keep_alive_timeout = Duration::from_millis(300);
    config.limits.body_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn connection_content_length_cannot_smuggle_a_request_to_the_next_client() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let smuggled = b"GET /smuggled HTTP/1.1\r\nhost: t\r\nx-prefix: ";
    let mut attacker = Wire::connect(tap.addr).await;
    let mut request = format!(
        "POST /a HTTP/1.1\r\nhost: t\r\nconnection: content-length\r\ncontent-length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    request.extend_from_slice(smuggled);
    attacker.send(&request).await;
    assert_eq!(attacker.answer(false).await.body, b"/a");

    // Another client, on another connection: the tap reuses its control connection.
    let mut victim = Wire::connect(tap.addr).await;
    victim
        .send(b"GET /victim HTTP/1.1\r\nhost: t\r\nauthorization: Bearer victim\r\n\r\n")
        .await;
    assert_eq!(victim.answer(false).await.body, b"/victim");

    let received = control.received();
    let paths: Vec<&str> = received.iter().map(path).collect();
    assert_eq!(
        paths,
        ["/a", "/victim"],
        "the control saw only what clients sent"
    );
    assert_eq!(received[0].body, smuggled, "the body stayed the body");
    assert_eq!(
        received[0].head.get("content-length"),
        Some(smuggled.len().to_string().as_str())
    );
}

#[tokio::test]
async fn a_controls_connection_content_length_keeps_the_clients_framing() {
    let control = control(|request| {
        let body = path(request).as_bytes();
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nconnection: content-length\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Reply::Send(bytes)
    })
    .await;
    let tap = tap(config(control.addr)).await;
    let mut client = Wire::connect(tap.addr).await;
    client.send(&get("/one")).await;
    let first = client.answer(false).await;
    assert_eq!(first.head.get("content-length"), Some("4"));
    assert_eq!(first.body, b"/one");
    client.send(&get("/two")).await;
    assert_eq!(client.answer(false).await.body, b"/two");
}

/// Requests the relay must refuse with 400 without a byte reaching the control.
async fn refused_before_the_control(request: &[u8], reason: &str) {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let before = refused_count(reason);
    let mut client = Wire::connect(tap.addr).await;
    client.send(request).await;
    let answer = client.answer(false).await;
    assert_eq!(
        answer.head.status(),
        400,
        "{:?}",
        String::from_utf8_lossy(request)
    );
    assert!(client.closed().await);
    // A later request proves the control connection (if any) is in step.
    let mut sentinel = Wire::connect(tap.addr).await;
    sentinel.send(&get("/sentinel")).await;
    assert_eq!(sentinel.answer(false).await.body, b"/sentinel");
    let paths: Vec<String> = control
        .received()
        .iter()
        .map(|r| path(r).to_string())
        .collect();
    assert_eq!(
        paths,
        ["/sentinel"],
        "nothing of {:?} reached the control",
        String::from_utf8_lossy(request)
    );
    assert!(
        refused_count(reason) > before,
        "the refusal is counted under {reason}"
    );
}

#[tokio::test]
async fn bare_lf_in_chunk_extensions_is_refused() {
    refused_before_the_control(
        b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5;ext=a\nb\r\nhello\r\n0\r\n\r\n",
        "chunked",
    )
    .await;
}

#[tokio::test]
async fn bare_lf_in_trailers_is_refused() {
    refused_before_the_control(
        b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\nx-t: 1\nGET /smuggled HTTP/1.1\r\nhost: t\r\n\r\n\r\n",
        "chunked",
    )
    .await;
}

#[tokio::test]
async fn two_transfer_encoding_fields_are_refused() {
    refused_before_the_control(
        b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
        "framing",
    )
    .await;
}

#[tokio::test]
async fn a_lone_lf_in_a_head_is_refused() {
    refused_before_the_control(
        b"GET /a HTTP/1.1\r\nx-a: 1\n\nGET /smuggled HTTP/1.1\r\nhost: t\r\n\r\n",
        "malformed_head",
    )
    .await;
    refused_before_the_control(
        b"GET /a HTTP/1.1\r\nhost: t\nx-b: 2\r\n\r\n",
        "malformed_head",
    )
    .await;
}

#[tokio::test]
async fn duplicate_framing_and_host_fields_are_refused() {
    for request in [
        &b"POST /c HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nzz"[..],
        b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n0\r\n\r\n",
        b"GET /c HTTP/1.1\r\nhost: t\r\nhost: u\r\n\r\n",
    ] {
        refused_before_the_control(request, "framing").await;
    }
    refused_before_the_control(b"GET /c HTTP/1.1\r\nx: 1\r\n\r\n", "malformed_head").await;
}

#[tokio::test]
async fn client_sent_shadow_markers_never_reach_the_control() {
    let control = path_control().await;
    let tap = tap(config(control.addr)).await;
    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"GET /m HTTP/1.1\r\nhost: t\r\nX-Shadow: 1\r\nx-shadow-exchange-id: forged\r\nx-other: kept\r\n\r\n")
        .await;
    assert_eq!(client.answer(false).await.body, b"/m");
    let received = control.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].head.get("x-shadow"), None);
    assert_eq!(received[0].head.get("x-shadow-exchange-id"), None);
    assert_eq!(received[0].head.get("x-other"), Some("kept"));
}

#[tokio::test]
async fn a_slow_loris_head_is_answered_408_and_closed_within_the_head_timeout() {
    let control = path_control().await;
    let tap = tap(short_limits(control.addr)).await;
    let before = refused_count("head_timeout");
    let mut client = Wire::connect(tap.addr).await;
    let started = Instant::now();
    client.send(b"GET /slow HTTP/1.1\r\nhost: t\r\n").await;
    // One byte of a header every 50 ms: each read would re-arm a per-read timeout.
    let dripping = async {
        for byte in b"x-drip: ".iter().cycle().take(200) {
            if client.stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), dripping).await;
    let answer = within("the 408", client.response(false)).await;
    assert_eq!(answer.map(|a| a.head.status()), Some(408));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(control.received().is_empty());
    assert!(refused_count("head_timeout") > before);
}

#[tokio::test]
async fn a_silent_connection_and_an_idle_keep_alive_are_closed() {
    let control = path_control().await;
    let tap = tap(short_limits(control.addr)).await;
    // Never sends a byte.
    let mut silent = Wire::connect(tap.addr).await;
    assert!(silent.closed().await);
    // Sends one request, then nothing.
    let mut idle = Wire::connect(tap.addr).await;
    idle.send(&get("/once")).await;
    assert_eq!(idle.answer(false).await.body, b"/once");
    assert!(idle.closed().await, "closed after the keep-alive timeout");
}

#[tokio::test]
async fn a_stalled_request_body_is_answered_408_and_never_completes_at_the_control() {
    let control = path_control().await;
    let tap = tap(short_limits(control.addr)).await;
    let before = refused_count("body_timeout");
    let mut client = Wire::connect(tap.addr).await;
    client
        .send(b"POST /stall HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nabc")
        .await;
    let answer = client.answer(false).await;
    assert_eq!(answer.head.status(), 408);
    assert!(client.closed().await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        control.received().is_empty(),
        "no complete request reached the control"
    );
    assert!(tap.sink.all().is_empty());
    assert!(refused_count("body_timeout") > before);
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_the_limit_frees_up() {
    let control = path_control().await;
    let mut config = config(control.addr);
    config.limits.max_connections = 2;
    let tap = tap(config).await;
    let before = refused_count("connection_limit");
    let mut first = Wire::connect(tap.addr).await;
    first.send(&get("/1")).await;
    assert_eq!(first.answer(false).await.body, b"/1");
    let mut second = Wire::connect(tap.addr).await;
    second.send(&get("/2")).await;
    assert_eq!(second.answer(false).await.body, b"/2");

    let mut third = Wire::connect(tap.addr).await;
    let answer = third.answer(false).await;
    assert_eq!(answer.head.status(), 503);
    assert!(refused_count("connection_limit") > before);

    drop(first);
    // The tap notices the close and frees the slot.
    let served = within("a slot to free up", async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut next = Wire::connect(tap.addr).await;
            next.send(&get("/3")).await;
            if let Some(answer) = next.response(false).await {
                if answer.head.status() == 200 {
                    return answer;
                }
            }
        }
    })
    .await;
    assert_eq!(served.body, b"/3");
}

/// A control that answers 413 as soon as it has a request head and closes without reading
/// the body (its unread bytes make the close a reset).
async fn early_answer_control() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_early_answer_from_the_control_reaches_the_client() {
    let control = early_answer_control().await;
    let tap = tap(config(control)).await;
    let body_len = 8 * 1024 * 1024;
    let stream = TcpStream::connect(tap.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let sender = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nhost: t\r\ncontent-length: {body_len}\r\n\r\n");
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let piece = vec![b'x'; 64 * 1024];
        for _ in 0..body_len / piece.len() {
            if write.write_all(&piece).await.is_err() {
                return;
            }
        }
    });
    // Read through the read half while the writer goes on sending.
    let mut read = read;
    let got = within("the early answer", async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(b"too big!") {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        got
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text:?}");
    assert!(text.contains("connection: close\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\ntoo big!"), "{text:?}");
    sender.abort();
}

#[tokio::test]
async fn the_control_timeout_covers_the_response_body() {
    let control =
        control(|_| Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()))
            .await;
    let mut config = config(control.addr);
    config.control_timeout = Duration::from_millis(400);
    let tap = tap(config).await;
    let mut client = Wire::connect(tap.addr).await;
    let started = Instant::now();
    client.send(&get("/stalls")).await;
    let head = within("the response head", client.head()).await;
    assert_eq!(head.map(|h| h.status()), Some(200));
    let rest = within("the tap cutting the response", client.until_close()).await;
    assert!(rest.is_ok_and(|r| r == b"abc"));
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tap.sink.all().is_empty(), "a cut response is not copied");
}
