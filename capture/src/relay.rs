//! The tap's HTTP/1.1 relay: the hot path of [`crate::TeeProxy`] on the serving threads.
//!
//! It does what nginx's proxy module does and nothing more: parse the request head
//! (`httparse`), write the forwarded head and relay the body to a kept-alive connection to the
//! control, parse the response head, relay its body back. hyper, which builds a typed request
//! and response, a body channel and a dispatch task per connection on both sides, cost twice
//! nginx's user time per request; this path does not allocate for a request it does not copy.
//!
//! **The relay decides every message's framing and writes it itself.** No framing field it
//! received is forwarded: it writes its own `Content-Length`, or `Transfer-Encoding: chunked`
//! with a clean encoding of the data it decoded (no extensions, no trailers), so the receiver
//! can only find the body's end where the relay found it. `Connection` cannot remove a field
//! the relay relies on. Anything RFC 9112 lets a recipient reject is rejected (400 to the
//! client, 502 for a control's response): bare CR or LF in a head, more than one
//! `Transfer-Encoding`, `Content-Length` or `Host` field, a coding other than exactly
//! `chunked`, both framings at once, malformed chunk lines or trailers. See docs/security.md.
//!
//! Anything unusual at a request boundary (HTTP/2 prior knowledge, HTTP/1.0, a target that is
//! not a path) hands the connection, with the bytes already read, to the hyper path.

use crate::tee::Captured;
use crate::telemetry::Refusal;
use crate::{offer_exchange, ExchangeStart, TeeProxy};
use bytes::{Buf, Bytes, BytesMut};
use shadowdiff_model::{is_hop_by_hop, Headers};
use shadowdiff_net::chunked::{encode_chunk, ChunkError, ChunkedDecoder, LAST_CHUNK};
use shadowdiff_net::h1::{
    check_line_ends, push_field, push_length, response_framing, scan_fields, Fields, Framing,
};
pub use shadowdiff_net::h1::{MAX_HEADERS, MAX_HEAD_BYTES};
use shadowdiff_net::pool::{Endpoint, IdleStack, Stream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Free room kept in a read buffer before each read.
const READ_ROOM: usize = 8 * 1024;
/// A whole request this small is written without watching the control for an early answer.
const SMALL_WRITE: usize = 16 * 1024;
/// After answering a request whose body was not read to its end, the rest of the body is read
/// and thrown away for this long before closing, so the client reads the answer instead of a
/// reset (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);
/// At most this much of such a body is read and thrown away.
const LINGER_BYTES: usize = 1024 * 1024;

/// A request head that cannot be relayed.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// Answered 400 and the connection closed.
    Malformed(Refusal, &'static str),
    /// Answered 431 and the connection closed.
    TooLarge,
    /// Served by the hyper path instead.
    Fallback,
}

/// What the relay needs of a parsed request head; the forwarded head is written aside.
struct RequestHead {
    head_len: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    /// HEAD requests get responses without a body, whatever their framing headers say.
    is_head: bool,
    /// Safe to send twice (RFC 9110 §9.2.2) when a kept-alive connection turns out closed.
    idempotent: bool,
    exchange: Option<ExchangeStart>,
}

/// Framing fields are the relay's own to write; `Host` is chosen by the relay.
fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// Not forwarded: framing and hop-by-hop fields, and those `Connection` names (but never
/// `Host`, which `Connection` cannot take away).
fn skip_field(name: &str, fields: &Fields<'_>) -> bool {
    is_framing(name)
        || is_hop_by_hop(name)
        || (fields.named.iter().any(|n| n.eq_ignore_ascii_case(name))
            && !name.eq_ignore_ascii_case("host"))
}

/// The copy's header list: names lower case (as `http::HeaderName` has them), values as text,
/// non-UTF-8 bytes replaced. Sized up front; valid UTF-8 (nearly every value) is copied after
/// one validation pass instead of going through the lossy decoder.
fn captured_fields(headers: &[httparse::Header<'_>], keep: impl Fn(&str) -> bool) -> Headers {
    let mut fields = Headers::with_capacity(headers.len());
    for header in headers.iter().filter(|h| keep(h.name)) {
        let value = match std::str::from_utf8(header.value) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(header.value).into_owned(),
        };
        fields.push((header.name.to_ascii_lowercase(), value));
    }
    fields
}

impl TeeProxy {
    /// Parses a request head at the start of `input`, writing the head to forward to the
    /// control into `forward`. `Ok(None)`: the head is not complete yet.
    fn parse_request(
        &self,
        input: &[u8],
        forward: &mut Vec<u8>,
    ) -> Result<Option<RequestHead>, HeadError> {
        let inner = &self.inner;
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        let head_len = match request.parse(input) {
            // A head can arrive whole in one read past the limit the partial check enforces.
            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            // HTTP/2 with prior knowledge.
            Err(_) if input.starts_with(b"PRI * HTTP/2.0") => return Err(HeadError::Fallback),
            Err(_) => {
                return Err(HeadError::Malformed(
                    Refusal::MalformedHead,
                    "malformed request head",
                ))
            }
        };
        check_line_ends(&input[..head_len])
            .map_err(|why| HeadError::Malformed(Refusal::MalformedHead, why))?;
        let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version)
        else {
            return Err(HeadError::Fallback);
        };
        // Absolute-form, `*` and CONNECT's authority-form take the general path. So does a
        // target with a fragment (`#`, which no request-target may carry): the control's parser
        // (hyper's, like most) drops it and serves the path before it, so the relay would copy
        // one request while the control answered another; the general path reads the target as
        // such servers do. Found by the relay_differential fuzz target.
        if !path.starts_with('/') || path.contains('#') {
            return Err(HeadError::Fallback);
        }
        let headers = &*request.headers;
        let fields =
            scan_fields(headers).map_err(|why| HeadError::Malformed(Refusal::Framing, why))?;
        // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host.
        if !fields.has_host {
            return Err(HeadError::Malformed(
                Refusal::MalformedHead,
                "no Host field",
            ));
        }
        let framing = match (fields.chunked, fields.content_length) {
            (true, _) => Framing::Chunked,
            (false, Some(0) | None) => Framing::Empty,
            (false, Some(n)) => Framing::Length(n),
        };

        let copy = match &inner.sampler {
            Some(sampler) => {
                let (method, uri, map) = http_head(method, path, headers)?;
                sampler.keep(&method, &uri, &map)
            }
            None => true,
        };
        let exchange =
            copy.then(|| inner.start_exchange(method, path, captured_fields(headers, |_| true)));

        forward.clear();
        forward.extend_from_slice(method.as_bytes());
        forward.push(b' ');
        forward.extend_from_slice(path.as_bytes());
        forward.extend_from_slice(b" HTTP/1.1\r\n");
        let preserve_host = inner.config.preserve_host;
        for header in headers {
            let name = header.name;
            if skip_field(name, &fields)
                || (!preserve_host && name.eq_ignore_ascii_case("host"))
                // Answered here with 100 Continue; the control gets the body straight away.
                || (fields.expect_continue && name.eq_ignore_ascii_case("expect"))
                // Shadow markers are the replayer's to set: a client's would make production
                // treat a real request as shadow traffic.
                || inner.is_shadow_marker(name)
            {
                continue;
            }
            push_field(forward, name.as_bytes(), header.value);
        }
        if !preserve_host {
            push_field(forward, b"host", inner.host_header.as_bytes());
        }
        match framing {
            Framing::Length(n) => push_length(forward, n),
            Framing::Chunked => forward.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            // A request that said `Content-Length: 0` still says so (some servers want 411
            // without it on POST).
            Framing::Empty if fields.content_length.is_some() => push_length(forward, 0),
            Framing::Empty | Framing::UntilClose => {}
        }
        forward.extend_from_slice(b"\r\n");

        Ok(Some(RequestHead {
            head_len,
            framing,
            keep_alive: !fields.close,
            expect_continue: fields.expect_continue,
            is_head: method == "HEAD",
            idempotent: matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
            exchange,
        }))
    }

    /// Serves one client connection on this serving thread until it closes, or until `stop`
    /// turns true between requests. A client that sends nothing within the head timeout (the
    /// keep-alive timeout between requests), or whose head does not arrive whole within the
    /// head timeout, is closed.
    pub async fn serve_connection(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        let limits = self.inner.config.limits.clone();
        let mut client = Peer::new(stream);
        let mut forward = Vec::with_capacity(1024);
        let mut back = Vec::with_capacity(1024);
        // One timer per connection, re-armed per wait: cheaper than a new one each time.
        let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
        let mut first = true;
        loop {
            // Once the head has begun, the whole head must arrive within the head timeout.
            let mut head_started = false;
            let head = loop {
                if !client.buf.is_empty() {
                    match self.parse_request(&client.buf, &mut forward) {
                        Ok(Some(head)) => break head,
                        Ok(None) if client.buf.len() >= MAX_HEAD_BYTES => {
                            return self
                                .refuse(&mut client, 431, Refusal::HeadTooLarge, "head too large")
                                .await;
                        }
                        Ok(None) => {}
                        Err(HeadError::Fallback) => return self.fall_back(client, stop).await,
                        Err(HeadError::TooLarge) => {
                            return self
                                .refuse(&mut client, 431, Refusal::HeadTooLarge, "head too large")
                                .await;
                        }
                        Err(HeadError::Malformed(reason, why)) => {
                            return self.refuse(&mut client, 400, reason, why).await
                        }
                    }
                }
                let read = if client.buf.is_empty() {
                    // Idle between requests: the moment to stop on shutdown.
                    let wait = if first {
                        limits.head_timeout
                    } else {
                        limits.keep_alive_timeout
                    };
                    timer.as_mut().reset(tokio::time::Instant::now() + wait);
                    tokio::select! {
                        biased;
                        read = client.read() => read,
                        _ = shadowdiff_net::server::stopped(&mut stop) => return,
                        // Nothing more was asked for: close quietly, as nginx does.
                        _ = timer.as_mut() => return,
                    }
                } else {
                    if !head_started {
                        head_started = true;
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + limits.head_timeout);
                    }
                    tokio::select! {
                        biased;
                        read = client.read() => read,
                        _ = timer.as_mut() => {
                            return self
                                .refuse(&mut client, 408, Refusal::HeadTimeout, "request head not received in time")
                                .await;
                        }
                    }
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            first = false;
            client.buf.advance(head.head_len);
            let keep_alive = head.keep_alive;
            match self
                .relay_exchange(&mut client, head, &forward, &mut back, timer.as_mut())
                .await
            {
                Next::Continue if keep_alive => {}
                Next::Continue | Next::Close => return,
                Next::Linger => return linger(client).await,
            }
        }
    }

    /// Answers a request that cannot be relayed, counts and logs why, and closes.
    async fn refuse(&self, client: &mut Peer, status: u16, reason: Refusal, why: &str) {
        self.metrics.refused(reason, why);
        client.refuse(status).await;
    }

    /// One request and its response. Errors on the control's side are answered (502, 504);
    /// errors on the client's side end the connection.
    async fn relay_exchange(
        &self,
        client: &mut Peer,
        head: RequestHead,
        forward: &[u8],
        back: &mut Vec<u8>,
        mut timer: Pin<&mut tokio::time::Sleep>,
    ) -> Next {
        let inner = &self.inner;
        let copying = head.exchange.is_some();
        let limit = if copying { inner.config.body_limit } else { 0 };
        let mut request_copy = BodyCopy::new(limit, head.framing);
        // The client waits for this before sending its body; the control never sees Expect.
        let wants_continue =
            head.expect_continue && head.framing != Framing::Empty && client.buf.is_empty();
        if wants_continue
            && client
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return Next::Close;
        }

        // The control's whole exchange (request, response head and body) runs on this clock.
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + inner.config.control_timeout);
        let sent = tokio::select! {
            biased;
            sent = self.send_request(client, &head, forward, &mut request_copy, back) => Ok(sent),
            _ = timer.as_mut() => Err(()),
        };
        let (mut control, response) = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(SendError::Client)) => return Next::Close,
            Ok(Err(SendError::ClientBody(reason, status, why))) => {
                self.refuse(client, status, reason, why).await;
                return Next::Close;
            }
            Ok(Err(SendError::BadResponse(why))) => {
                self.metrics.control_error();
                self.metrics.refused(Refusal::ControlResponse, why);
                return client
                    .answer_error(502, "bad response from control", &head)
                    .await;
            }
            Ok(Err(SendError::Control(error))) => {
                self.metrics.control_error();
                tracing::warn!(%error, "Control request failed.");
                return client.answer_error(502, "control unreachable", &head).await;
            }
            Err(_) => {
                self.metrics.control_error();
                tracing::warn!("Control did not answer in time.");
                return client.answer_error(504, "control timed out", &head).await;
            }
        };

        let mut response_copy = BodyCopy::new(limit, response.framing);
        let relayed = tokio::select! {
            biased;
            relayed = relay_body(
                &mut control,
                &mut client.stream,
                back,
                response.framing,
                &mut response_copy,
            ) => Some(relayed),
            _ = timer.as_mut() => None,
        };
        let next = match relayed {
            Some(Ok(())) => {
                if response.control_keeps_alive && control.buf.is_empty() {
                    self.relay_upstream.give_back(control);
                }
                if !response.request_finished {
                    Next::Linger
                } else if response.client_must_close {
                    Next::Close
                } else {
                    Next::Continue
                }
            }
            Some(Err(RelayError::Chunk(error))) => {
                // The client has the head and part of the body; all it can learn is the cut.
                self.metrics.control_error();
                self.metrics
                    .refused(Refusal::ControlResponse, chunk_error_text(&error));
                self.metrics.dropped(crate::DropReason::Incomplete);
                return Next::Close;
            }
            Some(Err(error)) => {
                // The control failed mid-body (the client sees a cut response) or the client
                // went away; either way the connection cannot carry another exchange.
                tracing::debug!(?error, "Response body relay ended early.");
                self.metrics.dropped(crate::DropReason::Incomplete);
                return Next::Close;
            }
            None => {
                self.metrics.control_error();
                tracing::warn!("Control did not finish its response in time.");
                self.metrics.dropped(crate::DropReason::Incomplete);
                return Next::Close;
            }
        };
        if let Some(start) = head.exchange {
            offer_exchange(
                start,
                request_copy.finish(),
                response.status,
                response.headers,
                response_copy.finish(),
                inner.sink.as_ref(),
                &self.metrics,
            );
        }
        next
    }

    /// Sends the request head and body to the control and reads the response head, on a
    /// kept-alive connection when one is idle. A request without a body that is safe to repeat
    /// is sent again on a fresh connection when a reused one turns out closed. A control that
    /// answers before it read the whole body gets no more of it; its answer is relayed.
    async fn send_request(
        &self,
        client: &mut Peer,
        head: &RequestHead,
        forward: &[u8],
        request_copy: &mut BodyCopy,
        back: &mut Vec<u8>,
    ) -> Result<(Peer<Stream>, ResponseHead), SendError> {
        let body_timeout = self.inner.config.limits.body_timeout;
        loop {
            let (mut control, reused) = match self.relay_upstream.take_idle() {
                Some(peer) => (peer, true),
                None => (
                    self.relay_upstream
                        .connect()
                        .await
                        .map_err(SendError::Control)?,
                    false,
                ),
            };
            let mut pending = Vec::from(forward);
            let sent = send_body(
                client,
                &mut control,
                &mut pending,
                head.framing,
                request_copy,
                body_timeout,
            )
            .await;
            let retry = reused && head.framing == Framing::Empty && head.idempotent;
            let request_finished = match sent {
                Ok(BodySent::Whole) => true,
                Ok(BodySent::Answered) => false,
                Err(RelayError::Sink(_)) if retry => continue,
                // The control may have answered and closed before taking the whole body: its
                // answer is in the socket's buffer ahead of the reset.
                Err(RelayError::Sink(error)) => {
                    return match read_response_head(
                        &mut control,
                        head.is_head,
                        head.exchange.is_some(),
                        false,
                        back,
                    )
                    .await
                    {
                        Ok(response) => Ok((control, response)),
                        Err(_) => Err(SendError::Control(error)),
                    };
                }
                Err(RelayError::Source(error)) => {
                    tracing::debug!(%error, "Client went away during its request body.");
                    return Err(SendError::Client);
                }
                Err(RelayError::Idle) => {
                    return Err(SendError::ClientBody(
                        Refusal::BodyTimeout,
                        408,
                        "request body not received in time",
                    ))
                }
                Err(RelayError::Chunk(error)) => {
                    return Err(SendError::ClientBody(
                        Refusal::Chunked,
                        400,
                        chunk_error_text(&error),
                    ))
                }
            };
            match read_response_head(
                &mut control,
                head.is_head,
                head.exchange.is_some(),
                request_finished,
                back,
            )
            .await
            {
                Ok(response) => return Ok((control, response)),
                Err(ResponseError::ClosedBeforeAnswer) if retry => continue,
                Err(ResponseError::Malformed(why)) => return Err(SendError::BadResponse(why)),
                Err(error) => return Err(SendError::Control(error.into_io())),
            }
        }
    }

    /// Hands the connection, with the bytes read so far, to the hyper path. An HTTP/1
    /// connection ends after that one request: the relay's strict framing rules hold for every
    /// request it reads, and a kept-alive hyper connection would read the next ones by hyper's.
    async fn fall_back(self, client: Peer, stop: watch::Receiver<bool>) {
        let io = Rewind {
            prefix: client.buf.freeze(),
            inner: client.stream,
        };
        shadowdiff_net::server::serve_hyper_connection(io, self, stop, true).await;
    }
}

enum Next {
    Continue,
    Close,
    /// The answer went out before the request body was read to its end: read and throw away
    /// what is left of it for a while, then close.
    Linger,
}

/// Reads and throws away what the client still sends, for at most [`LINGER`] and
/// [`LINGER_BYTES`], after telling it the connection ends: a close with unread bytes would reset
/// the connection, and the client could lose the answer it has not read yet.
async fn linger(mut client: Peer) {
    let _ = client.stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut thrown = 0;
        while thrown < LINGER_BYTES {
            client.buf.clear();
            match client.read().await {
                Ok(0) | Err(_) => return,
                Ok(n) => thrown += n,
            }
        }
    })
    .await;
}

#[derive(Debug)]
enum SendError {
    /// The client went away while its request body was being relayed.
    Client,
    /// The client's body was malformed or too slow: refused with this reason and status.
    ClientBody(Refusal, u16, &'static str),
    /// The control's response head was malformed or ambiguous.
    BadResponse(&'static str),
    Control(io::Error),
}

fn chunk_error_text(error: &ChunkError) -> &'static str {
    match error {
        ChunkError::Size => "invalid chunk size",
        ChunkError::LineTooLong => "chunk extension too long",
        ChunkError::Extension => "control character in a chunk extension",
        ChunkError::MissingCrlf => "chunk line not ended by CRLF",
        ChunkError::Trailer => "malformed trailer field",
        ChunkError::TrailersTooLong => "trailer section too long",
    }
}

/// The sampler's view of a head, built only when a sampler is configured.
#[allow(clippy::type_complexity)]
fn http_head(
    method: &str,
    path: &str,
    headers: &[httparse::Header<'_>],
) -> Result<(http::Method, http::Uri, http::HeaderMap), HeadError> {
    let bad = |why| HeadError::Malformed(Refusal::MalformedHead, why);
    let method =
        http::Method::from_bytes(method.as_bytes()).map_err(|_| bad("malformed request head"))?;
    let uri = http::Uri::try_from(path).map_err(|_| bad("malformed path"))?;
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad("malformed header name"))?;
        let value =
            http::HeaderValue::from_bytes(h.value).map_err(|_| bad("malformed header value"))?;
        map.append(name, value);
    }
    Ok((method, uri, map))
}

/// One end of a relay: a connection and the bytes read from it and not yet used. The client's
/// is TCP; the control's ([`Stream`]) TCP or TLS.
struct Peer<S = TcpStream> {
    stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + Unpin> Peer<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_ROOM),
        }
    }

    async fn read(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_ROOM);
        self.stream.read_buf(&mut self.buf).await
    }
}

impl Peer {
    /// Answers a request that cannot be relayed, and closes. The answer has no body: a request
    /// the relay could not read may have been a HEAD, whose answer a client reads without one,
    /// and an empty body reads the same either way. The reason is in the log and the metric.
    async fn refuse(&mut self, status: u16) {
        let answer = match status {
            408 => "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            431 => "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            _ => "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        };
        let _ = self.stream.write_all(answer.as_bytes()).await;
        let _ = self.stream.shutdown().await;
    }

    /// Answers with the tap's own error when the control failed. The connection goes on only
    /// when the request was read whole (the next request starts where it ended).
    async fn answer_error(&mut self, status: u16, message: &str, head: &RequestHead) -> Next {
        let reason = if status == 504 {
            "Gateway Timeout"
        } else {
            "Bad Gateway"
        };
        // The body may be partly unread; only an empty one leaves the connection in step.
        let goes_on = head.framing == Framing::Empty;
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{}",
            message.len(),
            if goes_on { "" } else { "connection: close\r\n" },
            if head.is_head { "" } else { message },
        );
        if self.stream.write_all(answer.as_bytes()).await.is_err() {
            return Next::Close;
        }
        if goes_on {
            Next::Continue
        } else {
            Next::Linger
        }
    }
}

/// The response head as the client gets it, and what it says about both connections.
struct ResponseHead {
    status: u16,
    framing: Framing,
    control_keeps_alive: bool,
    client_must_close: bool,
    /// False when the control answered before the whole request body was sent to it.
    request_finished: bool,
    headers: Headers,
}

#[derive(Debug)]
enum ResponseError {
    /// Closed without a byte of answer: a kept-alive connection the control had closed.
    ClosedBeforeAnswer,
    Io(io::Error),
    Malformed(&'static str),
}

impl ResponseError {
    fn into_io(self) -> io::Error {
        match self {
            Self::ClosedBeforeAnswer => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "control closed the connection without answering",
            ),
            Self::Io(error) => error,
            Self::Malformed(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        }
    }
}

/// Reads the control's response head (skipping interim 1xx answers) and writes the head the
/// client gets into `back`.
async fn read_response_head(
    control: &mut Peer<Stream>,
    request_is_head: bool,
    copying: bool,
    request_finished: bool,
    back: &mut Vec<u8>,
) -> Result<ResponseHead, ResponseError> {
    let mut answered = false;
    loop {
        if !control.buf.is_empty() {
            answered = true;
            match parse_response(
                &control.buf,
                request_is_head,
                copying,
                request_finished,
                back,
            )? {
                Some((head_len, Some(head))) => {
                    control.buf.advance(head_len);
                    return Ok(head);
                }
                // An interim answer (100 Continue, 103 Early Hints): the real one follows.
                Some((head_len, None)) => {
                    control.buf.advance(head_len);
                    continue;
                }
                None if control.buf.len() >= MAX_HEAD_BYTES => {
                    return Err(ResponseError::Malformed("response head too large"));
                }
                None => {}
            }
        }
        match control.read().await {
            Ok(0) if !answered => return Err(ResponseError::ClosedBeforeAnswer),
            Ok(0) => {
                return Err(ResponseError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "control closed the connection mid-head",
                )))
            }
            Ok(_) => {}
            Err(error)
                if !answered
                    && matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
            {
                return Err(ResponseError::ClosedBeforeAnswer)
            }
            Err(error) => return Err(ResponseError::Io(error)),
        }
    }
}

/// `Ok(None)`: incomplete. `Ok(Some((len, None)))`: an interim 1xx head of `len` bytes.
fn parse_response(
    input: &[u8],
    request_is_head: bool,
    copying: bool,
    request_finished: bool,
    back: &mut Vec<u8>,
) -> Result<Option<(usize, Option<ResponseHead>)>, ResponseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let head_len = match response.parse(input) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => {
            return Err(ResponseError::Malformed("response head too large"))
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ResponseError::Malformed("malformed response head")),
    };
    check_line_ends(&input[..head_len]).map_err(ResponseError::Malformed)?;
    let (Some(version), Some(status)) = (response.version, response.code) else {
        return Err(ResponseError::Malformed("malformed status line"));
    };
    // RFC 9110 §15: three digits, 100 to 599 (httparse reads `000` as 0, which the relay would
    // write on as `0`; found by the relay_differential fuzz target).
    if !(100..=599).contains(&status) {
        return Err(ResponseError::Malformed("status code outside 100-599"));
    }
    if status == 101 {
        return Err(ResponseError::Malformed(
            "101 Switching Protocols to a request without Upgrade",
        ));
    }
    if (100..200).contains(&status) {
        return Ok(Some((head_len, None)));
    }
    let headers = &*response.headers;
    let fields = scan_fields(headers).map_err(ResponseError::Malformed)?;
    // RFC 9112 §6.1 and §6.3; an HTTP/1.0 response with Transfer-Encoding (found by the
    // relay_differential fuzz target) is refused.
    let framing = response_framing(version, status, request_is_head, &fields)
        .map_err(ResponseError::Malformed)?;
    let control_keeps_alive = request_finished
        && framing != Framing::UntilClose
        && !fields.close
        && (version == 1 || fields.keep_alive);
    let client_must_close = framing == Framing::UntilClose || !request_finished;

    back.clear();
    back.extend_from_slice(b"HTTP/1.1 ");
    back.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    back.push(b' ');
    back.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    back.extend_from_slice(b"\r\n");
    let forwarded = |name: &str| !skip_field(name, &fields);
    for header in headers {
        if forwarded(header.name) {
            push_field(back, header.name.as_bytes(), header.value);
        }
    }
    match framing {
        Framing::Length(n) => push_length(back, n),
        Framing::Chunked => back.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // No body follows, but a HEAD or 304 answer states the size the body would have;
        // a 204 has no size to state (RFC 9110 §8.6).
        Framing::Empty if status != 204 => {
            if let Some(n) = fields.content_length {
                push_length(back, n);
            } else if fields.chunked {
                back.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
        }
        Framing::Empty | Framing::UntilClose => {}
    }
    if client_must_close {
        back.extend_from_slice(b"connection: close\r\n");
    }
    back.extend_from_slice(b"\r\n");

    let headers = if copying {
        captured_fields(headers, forwarded)
    } else {
        Headers::new()
    };
    Ok(Some((
        head_len,
        Some(ResponseHead {
            status,
            framing,
            control_keeps_alive,
            client_must_close,
            request_finished,
            headers,
        }),
    )))
}

#[derive(Debug)]
enum RelayError {
    /// Reading from the sending side failed, or it closed before the body ended.
    Source(io::Error),
    /// The sending side sent nothing for the body timeout.
    Idle,
    /// Writing to the receiving side failed.
    Sink(io::Error),
    Chunk(ChunkError),
}

/// Takes the body's bytes out of `source.buf` into `out`, framed the relay's way, and copies
/// its data into `copy`. Returns whether the body ended.
fn take_body<S>(
    source: &mut Peer<S>,
    out: &mut Vec<u8>,
    framing: Framing,
    left: &mut u64,
    decoder: &mut ChunkedDecoder,
    copy: &mut BodyCopy,
) -> Result<bool, RelayError> {
    match framing {
        Framing::Empty => Ok(true),
        Framing::Length(_) => {
            let take = (*left).min(source.buf.len() as u64) as usize;
            copy.push(&source.buf[..take]);
            out.extend_from_slice(&source.buf[..take]);
            source.buf.advance(take);
            *left -= take as u64;
            Ok(*left == 0)
        }
        Framing::Chunked => {
            let take = decoder
                .feed(&source.buf, &mut |data| {
                    copy.push(data);
                    encode_chunk(out, data);
                })
                .map_err(RelayError::Chunk)?;
            source.buf.advance(take);
            let done = decoder.is_done();
            if done {
                out.extend_from_slice(LAST_CHUNK);
            }
            Ok(done)
        }
        Framing::UntilClose => {
            copy.push(&source.buf);
            out.extend_from_slice(&source.buf);
            source.buf.clear();
            Ok(false)
        }
    }
}

/// Relays one response body from `source` to `sink`, after the head already in `pending`, and
/// copies its data into `copy`. Small bodies go out in the same write as their head.
async fn relay_body(
    source: &mut Peer<Stream>,
    sink: &mut TcpStream,
    pending: &mut Vec<u8>,
    framing: Framing,
    copy: &mut BodyCopy,
) -> Result<(), RelayError> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut decoder = ChunkedDecoder::default();
    loop {
        let done = take_body(source, pending, framing, &mut left, &mut decoder, copy)?;
        // Whatever is gathered goes out before waiting for more, so the other side never
        // waits on the relay.
        if !pending.is_empty() {
            sink.write_all(pending).await.map_err(RelayError::Sink)?;
            pending.clear();
        }
        if done {
            copy.complete = true;
            return Ok(());
        }
        match source.read().await {
            Ok(0) if framing == Framing::UntilClose => {
                copy.complete = true;
                return Ok(());
            }
            Ok(0) => {
                return Err(RelayError::Source(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the body ended",
                )))
            }
            Ok(_) => {}
            Err(error) => return Err(RelayError::Source(error)),
        }
    }
}

/// How a request body's relay ended.
enum BodySent {
    Whole,
    /// The control answered before it had the whole body; it gets no more of it.
    Answered,
}

/// Relays one request body from the client to the control, after the head in `pending`, while
/// watching the control: one that answers early (413 before reading a large body, say) is
/// heard at once instead of being written to until its socket resets. The client has
/// `body_timeout` between reads.
async fn send_body(
    client: &mut Peer,
    control: &mut Peer<Stream>,
    pending: &mut Vec<u8>,
    framing: Framing,
    copy: &mut BodyCopy,
    body_timeout: Duration,
) -> Result<BodySent, RelayError> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut decoder = ChunkedDecoder::default();
    loop {
        let done = take_body(client, pending, framing, &mut left, &mut decoder, copy)?;
        // Whatever is gathered goes out before waiting for more: the head and a small body
        // in one write.
        if !pending.is_empty() {
            // A whole small request fits the socket's buffer: nothing to watch for (the
            // request of nearly every exchange, a GET, is this).
            if done && pending.len() <= SMALL_WRITE {
                control
                    .stream
                    .write_all(pending)
                    .await
                    .map_err(RelayError::Sink)?;
                // TLS may keep the last records buffered when the socket was full; a no-op
                // on plain TCP.
                control.stream.flush().await.map_err(RelayError::Sink)?;
            } else if write_watching(control, pending).await? {
                return Ok(BodySent::Answered);
            }
            pending.clear();
        }
        if done {
            copy.complete = true;
            return Ok(BodySent::Whole);
        }
        let read = tokio::select! {
            biased;
            read = tokio::time::timeout(body_timeout, client.read()) => read,
            answered = answer_arrived(control) => {
                if answered? {
                    return Ok(BodySent::Answered);
                }
                continue;
            }
        };
        match read {
            Err(_) => return Err(RelayError::Idle),
            Ok(Ok(0)) => {
                return Err(RelayError::Source(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the body ended",
                )))
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(RelayError::Source(error)),
        }
    }
}

/// What happened first while writing to the control and listening to it.
enum Watched {
    Wrote(usize),
    Flushed,
    Read(io::Result<usize>),
}

/// Writes `data` to the control, and flushes it, unless the control answers first.
/// `Ok(true)`: it answered.
async fn write_watching(control: &mut Peer<Stream>, mut data: &[u8]) -> Result<bool, RelayError> {
    // TLS accepts data it could not send yet (the socket was full): it goes out on the flush.
    let mut flushed = false;
    while !flushed {
        // One poll of both directions of the one stream (a TLS stream cannot be split into
        // halves that wait apart); the write goes first.
        let watched = std::future::poll_fn(|cx| {
            let stream = Pin::new(&mut control.stream);
            let sent = if data.is_empty() {
                stream.poll_flush(cx).map(|r| r.map(|()| Watched::Flushed))
            } else {
                stream.poll_write(cx, data).map(|r| r.map(Watched::Wrote))
            };
            if sent.is_ready() {
                return sent;
            }
            control.buf.reserve(READ_ROOM);
            let read = std::pin::pin!(control.stream.read_buf(&mut control.buf));
            std::future::Future::poll(read, cx).map(|read| Ok(Watched::Read(read)))
        })
        .await
        .map_err(RelayError::Sink)?;
        match watched {
            Watched::Wrote(0) => return Err(RelayError::Sink(io::ErrorKind::WriteZero.into())),
            Watched::Wrote(n) => data = &data[n..],
            Watched::Flushed => flushed = true,
            Watched::Read(read) => {
                if answer_read(control, read) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Resolves when the control sent something; `Ok(true)` when that is a final answer (or
/// something that is not an interim one), `Ok(false)` when it was only a 1xx (or TLS records
/// without data).
async fn answer_arrived(control: &mut Peer<Stream>) -> Result<bool, RelayError> {
    let read = control.read().await;
    Ok(answer_read(control, read))
}

/// Takes what the control sent (`read`) while the body was still going to it, and tells
/// whether the control has answered: interim 1xx answers are dropped and the body goes on.
fn answer_read(control: &mut Peer<Stream>, read: io::Result<usize>) -> bool {
    match read {
        Ok(0) => return true,
        Ok(_) => {}
        // Reset: whatever it sent before is in the buffer; the head reader decides.
        Err(_) => return true,
    }
    loop {
        if control.buf.is_empty() {
            return false;
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&control.buf) {
            Ok(httparse::Status::Complete(n))
                if response.code.is_some_and(|c| c < 200 && c != 101) =>
            {
                control.buf.advance(n);
            }
            Ok(httparse::Status::Partial) if control.buf.len() < MAX_HEAD_BYTES => return false,
            _ => return true,
        }
    }
}

/// The bounded copy of a body, made while relaying it.
struct BodyCopy {
    bytes: Vec<u8>,
    limit: usize,
    seen: u64,
    complete: bool,
}

impl BodyCopy {
    /// Room for the whole copy up front when the length is known: growing a vector while a
    /// body arrives in pieces copies it again each time.
    fn new(limit: usize, framing: Framing) -> Self {
        let expected = match framing {
            Framing::Length(n) => n.min(limit as u64) as usize,
            _ => 0,
        };
        Self {
            bytes: Vec::with_capacity(expected),
            limit,
            seen: 0,
            complete: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.seen += data.len() as u64;
        let room = self.limit - self.bytes.len();
        if room > 0 {
            self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn finish(self) -> Captured {
        Captured {
            bytes: Bytes::from(self.bytes),
            full_len: self.seen,
            complete: self.complete,
        }
    }
}

/// A serving thread's kept-alive connections to the control (plain or TLS), in the
/// `IdleStack` every pool of `shadowdiff_net::pool` uses.
pub(crate) struct RelayUpstream {
    endpoint: Endpoint,
    idle: IdleStack<Peer<Stream>>,
}

impl RelayUpstream {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            idle: IdleStack::default(),
        }
    }

    /// The most recently used connection that is still open.
    fn take_idle(&self) -> Option<Peer<Stream>> {
        self.idle.take(|peer| peer.stream.still_open())
    }

    fn give_back(&self, peer: Peer<Stream>) {
        self.idle.put(peer);
    }

    async fn connect(&self) -> io::Result<Peer<Stream>> {
        Ok(Peer::new(self.endpoint.connect().await?))
    }
}

/// A stream that first yields bytes already read from it.
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(raw: &[(&'static str, &'static [u8])]) -> Result<Fields<'static>, &'static str> {
        let headers: Vec<httparse::Header<'static>> = raw
            .iter()
            .map(|(name, value)| httparse::Header { name, value })
            .collect();
        let headers: &'static [httparse::Header<'static>] = Box::leak(headers.into_boxed_slice());
        scan_fields(headers)
    }

    #[test]
    fn framing_fields_are_read_strictly() {
        let f = fields(&[("Transfer-Encoding", b" Chunked ")]).unwrap();
        assert!(f.chunked);
        // Exactly one field, exactly `chunked`, never beside Content-Length.
        assert!(fields(&[("Transfer-Encoding", b"gzip, chunked")]).is_err());
        assert!(fields(&[("transfer-encoding", b"chunked, gzip")]).is_err());
        assert!(fields(&[("transfer-encoding", b"chunked, chunked")]).is_err());
        assert!(fields(&[
            ("transfer-encoding", b"gzip"),
            ("transfer-encoding", b"chunked")
        ])
        .is_err());
        assert!(fields(&[
            ("transfer-encoding", b"chunked"),
            ("transfer-encoding", b"chunked")
        ])
        .is_err());
        assert!(fields(&[("transfer-encoding", b"chunked"), ("content-length", b"3")]).is_err());
        assert!(fields(&[("transfer-encoding", b"xchunked")]).is_err());
        assert_eq!(
            fields(&[("content-length", b"12")]).unwrap().content_length,
            Some(12)
        );
        assert!(fields(&[("content-length", b"1x")]).is_err());
        assert!(fields(&[("content-length", b"")]).is_err());
        assert!(fields(&[("content-length", b"-1")]).is_err());
        assert!(fields(&[("content-length", b"+1")]).is_err());
        assert!(fields(&[("content-length", b"1, 1")]).is_err());
        assert!(fields(&[("content-length", b"5"), ("Content-Length", b"6")]).is_err());
        assert!(fields(&[("content-length", b"5"), ("Content-Length", b"5")]).is_err());
        assert!(fields(&[("host", b"a"), ("Host", b"a")]).is_err());
        let f = fields(&[("Connection", b"close, X-Secret")]).unwrap();
        assert!(f.close);
        assert!(skip_field("x-secret", &f) && skip_field("Keep-Alive", &f));
        assert!(!skip_field("content-type", &f));
        // `Connection` cannot take away the fields the relay relies on; framing fields are
        // never forwarded as received.
        let f = fields(&[("Connection", b"content-length, host, transfer-encoding")]).unwrap();
        assert!(!skip_field("host", &f));
        assert!(
            skip_field("content-length", &f)
                && skip_field("Transfer-Encoding", &fields(&[]).unwrap())
        );
    }

    #[test]
    fn line_ends_are_crlf_only() {
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").is_ok());
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nhost: a\n\r\n").is_err());
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nx: a\rb\r\n\r\n").is_err());
        assert!(check_line_ends(b"GET / HTTP/1.1\nhost: a\r\n\r\n").is_err());
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nhost: a\r\n\n").is_err());
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nhost: a\r\n\r").is_err());
    }

    #[test]
    fn a_response_head_is_rewritten_for_the_client() {
        let mut back = Vec::new();
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n5\r\n";
        let (len, head) = parse_response(raw, false, true, true, &mut back)
            .unwrap()
            .unwrap();
        let head = head.unwrap();
        assert_eq!(len, raw.len() - 3);
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.control_keeps_alive && !head.client_must_close);
        assert_eq!(
            String::from_utf8(back).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            head.headers,
            vec![("content-type".to_string(), "text/plain".to_string())]
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let mut back = Vec::new();
        let framing = |raw: &[u8], is_head: bool| {
            let mut back = Vec::new();
            parse_response(raw, is_head, false, true, &mut back)
                .unwrap()
                .unwrap()
                .1
                .unwrap()
        };
        let close = framing(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(close.framing, Framing::UntilClose);
        assert!(close.client_must_close && !close.control_keeps_alive);
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true).framing,
            Framing::Empty
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false
            )
            .framing,
            Framing::Empty
        );
        let old = framing(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", false);
        assert_eq!(old.framing, Framing::Length(2));
        assert!(!old.control_keeps_alive);
        // Interim answers are skipped, an upgrade nobody asked for is refused.
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 100 Continue\r\n\r\n",
                false,
                false,
                true,
                &mut back
            ),
            Ok(Some((25, None)))
        ));
        assert!(parse_response(
            b"HTTP/1.1 101 Switching\r\n\r\n",
            false,
            false,
            true,
            &mut back
        )
        .is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            false,
            false,
            true,
            &mut back
        )
        .is_err());
    }
}

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/relay_head.rs`, `chunked_decoder.rs`):
/// the relay's head parser and chunked decoder on bytes, without sockets.
#[cfg(feature = "differential")]
#[doc(hidden)]
pub mod fuzzing {
    use super::*;
    use std::sync::{Arc, OnceLock};

    /// What the relay decided about a request head.
    #[derive(Debug)]
    pub struct AcceptedHead {
        pub head_len: usize,
        /// The head the control would get.
        pub forward: Vec<u8>,
        /// `None`: no body; `Some(Some(n))`: `n` bytes; `Some(None)`: chunked.
        pub body: Option<Option<u64>>,
    }

    struct Discard;

    impl crate::ExchangeSink for Discard {
        fn offer(&self, _: shadowdiff_model::Exchange) -> Result<(), crate::OfferError> {
            Ok(())
        }
    }

    fn proxy() -> &'static TeeProxy {
        static PROXY: OnceLock<TeeProxy> = OnceLock::new();
        PROXY.get_or_init(|| {
            let config = crate::TeeConfig {
                control: http::Uri::from_static("http://127.0.0.1:9"),
                tls: Default::default(),
                body_limit: 1024,
                experiment: "fuzz".into(),
                preserve_host: false,
                control_timeout: Duration::from_secs(1),
                limits: crate::TapLimits::default(),
                shadow_markers: crate::default_shadow_markers(),
            };
            match TeeProxy::new(config, Arc::new(Discard)) {
                Ok(proxy) => proxy,
                Err(error) => panic!("a fixed config is valid: {error}"),
            }
        })
    }

    /// `Ok(None)`: incomplete; `Err`: refused (or handed to the hyper path).
    pub fn request_head(input: &[u8]) -> Result<Option<AcceptedHead>, String> {
        let mut forward = Vec::new();
        match proxy().parse_request(input, &mut forward) {
            Ok(None) => Ok(None),
            Ok(Some(head)) => Ok(Some(AcceptedHead {
                head_len: head.head_len,
                forward,
                body: match head.framing {
                    Framing::Empty => None,
                    Framing::Length(n) => Some(Some(n)),
                    Framing::Chunked | Framing::UntilClose => Some(None),
                },
            })),
            Err(error) => Err(format!("{error:?}")),
        }
    }

    /// Decodes a chunked body fed in the given pieces. Returns the data, the bytes that
    /// belonged to the body, whether it ended, and the relay's re-encoding of the data.
    pub fn decode_chunked(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool, Vec<u8>), String> {
        let mut decoder = ChunkedDecoder::default();
        let (mut data, mut encoded, mut used) = (Vec::new(), Vec::new(), 0);
        for piece in pieces {
            let taken = decoder
                .feed(piece, &mut |d| {
                    data.extend_from_slice(d);
                    encode_chunk(&mut encoded, d);
                })
                .map_err(|e| e.to_string())?;
            used += taken;
            if decoder.is_done() {
                encoded.extend_from_slice(LAST_CHUNK);
                return Ok((data, used, true, encoded));
            }
        }
        Ok((data, used, false, encoded))
    }
}
