//! Strict HTTP/1.1 framing, shared by the tap's relay and the replayer's client.
//!
//! - [`scan_fields`] and [`check_line_ends`]: the reading of a head's framing fields that
//!   refuses every ambiguity RFC 9112 lets a recipient refuse (the relay's rules, see
//!   docs/security.md).
//! - [`ResponseReader`]: a response read from bytes as they arrive (no I/O of its own, so it
//!   is fuzzed and checked against hyper byte by byte): status, headers, and the body up to a
//!   limit, its full length counted.
//! - [`ConnectionPool`]: kept-alive connections (plain or TLS) to one server, each with its
//!   read buffer, on which [`ConnectionPool::exchange`] writes a request the caller framed and
//!   reads its answer. It is the replayer's client: hyper's client connection is a task, a
//!   request channel and a typed header map per replay, about a third of a replay thread's
//!   user time.

use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::pool::{ConnectError, Endpoint, IdleStack, Stream};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest request or response head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;
/// Free room kept in a read buffer before each read.
const READ_ROOM: usize = 8 * 1024;
/// A body this small goes out in the same write as its head.
const SMALL_BODY: usize = 16 * 1024;

/// How a message's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Connection-level facts from a head's fields.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// A `Transfer-Encoding: chunked` field (the only one accepted).
    pub chunked: bool,
    /// The one `Content-Length` field's value.
    pub content_length: Option<u64>,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// A `Host` field.
    pub has_host: bool,
    /// Further hop-by-hop fields named in `Connection`.
    pub named: Vec<&'a str>,
}

/// Reads the fields that decide framing and the connection, refusing every ambiguity a
/// recipient may refuse (RFC 9112 §6.1, §6.3, §3.2): one framing, stated once, plainly.
pub fn scan_fields<'a>(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, &'static str> {
    let mut fields = Fields::default();
    let mut transfer_encoding = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(header.value).map_err(|_| "bad Connection")?;
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    fields.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    fields.keep_alive = true;
                } else if !token.is_empty() {
                    fields.named.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding {
                return Err("more than one Transfer-Encoding field");
            }
            transfer_encoding = true;
            // Any other coding (or list of them) is refused: the relay would have to pass a
            // coding on that it does not understand, and the receiver might frame it otherwise.
            if !header.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err("transfer coding other than chunked");
            }
            fields.chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            if fields.content_length.is_some() {
                return Err("more than one Content-Length field");
            }
            let value = header.value;
            if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
                return Err("bad Content-Length");
            }
            let length = value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            fields.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("expect") {
            fields.expect_continue = header.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("host") {
            if fields.has_host {
                return Err("more than one Host field");
            }
            fields.has_host = true;
        }
    }
    // Both framings at once is how requests are smuggled past proxies.
    if fields.chunked && fields.content_length.is_some() {
        return Err("both Transfer-Encoding and Content-Length");
    }
    Ok(fields)
}

/// How a final response's body ends (RFC 9112 §6.3), from its version (`0` for HTTP/1.0),
/// status and fields: none for a HEAD request, 204 or 304; else chunked, a length, or the
/// close. An HTTP/1.0 response with Transfer-Encoding is refused (RFC 9112 §6.1: its framing
/// is faulty, likely forwarded by something that did not decode it; reading it as chunked would
/// let its bytes frame the next answer).
pub fn response_framing(
    version: u8,
    status: u16,
    request_is_head: bool,
    fields: &Fields<'_>,
) -> Result<Framing, &'static str> {
    if version == 0 && fields.chunked {
        return Err("Transfer-Encoding in an HTTP/1.0 response");
    }
    Ok(if request_is_head || status == 204 || status == 304 {
        Framing::Empty
    } else if fields.chunked {
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    })
}

/// Lines of a head end in CRLF and nowhere else. httparse also ends a line at a bare LF, which
/// a receiver that does not would read as part of a field: one head, two readings.
pub fn check_line_ends(head: &[u8]) -> Result<(), &'static str> {
    let mut from = 0;
    while let Some(at) = memchr::memchr2(b'\r', b'\n', &head[from..]) {
        let at = from + at;
        if head[at] == b'\n' || head.get(at + 1) != Some(&b'\n') {
            return Err("bare CR or LF in the head");
        }
        from = at + 2;
    }
    Ok(())
}

/// Writes one field line, `name: value` and CRLF.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `content-length: N` and CRLF.
pub fn push_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `tchar` of RFC 9110 §5.6.2: what a method or a field name is made of.
pub fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A response read by [`ResponseReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 200 to 599 (interim 1xx answers are skipped).
    pub status: u16,
    /// Header fields in the order received, names in lower case, values as text (bytes that
    /// are not UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// The body's first bytes, up to the reader's limit (decoded when chunked).
    pub body: Bytes,
    /// The body's whole length (decoded).
    pub body_len: u64,
    /// Whether the connection can carry another request: the response said so, its end was
    /// found by its framing, and nothing followed it.
    pub reusable: bool,
}

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// The connection closed (or was reset) before a byte of an answer arrived.
    #[error("the connection closed without an answer")]
    ClosedBeforeAnswer,
    /// The head breaks HTTP/1.1 or one of the strict rules of [`scan_fields`].
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The connection closed before the head or body ended.
    #[error("the connection closed before the response ended")]
    Cut,
    /// The chunked body is malformed.
    #[error("malformed chunked body: {0}")]
    Chunk(#[from] ChunkError),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads one response from bytes as they arrive. Feed it the connection's buffer with
/// [`ResponseReader::advance`] after every read; it takes the response's bytes out of the
/// buffer and leaves whatever follows.
#[derive(Debug)]
pub struct ResponseReader {
    request_is_head: bool,
    limit: usize,
    /// A byte of an answer (an interim one included) was read.
    answered: bool,
    body: Option<BodyState>,
}

#[derive(Debug)]
struct BodyState {
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
    reusable: bool,
    /// Bytes of a `Length` body still to come.
    left: u64,
    decoder: ChunkedDecoder,
    kept: BytesMut,
    body_len: u64,
}

/// Counts `data` into the body's length and keeps what fits under `limit`.
fn keep(kept: &mut BytesMut, body_len: &mut u64, data: &[u8], limit: usize) {
    *body_len += data.len() as u64;
    let room = limit.saturating_sub(kept.len());
    kept.extend_from_slice(&data[..data.len().min(room)]);
}

impl BodyState {
    fn finish(self, buf: &BytesMut) -> Response {
        Response {
            status: self.status,
            headers: self.headers,
            body: self.kept.freeze(),
            body_len: self.body_len,
            reusable: self.reusable && buf.is_empty(),
        }
    }
}

impl ResponseReader {
    /// A reader for the answer to a request (`request_is_head`: a HEAD request, whose answer
    /// has no body whatever its fields say) keeping at most `limit` bytes of the body.
    pub fn new(request_is_head: bool, limit: usize) -> Self {
        Self {
            request_is_head,
            limit,
            answered: false,
            body: None,
        }
    }

    /// Whether any byte of an answer was read.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Takes what it can of the response out of `buf`. `eof`: the peer closed the connection
    /// and `buf` holds all that will ever come. `Ok(None)`: more bytes are needed (never when
    /// `eof`).
    pub fn advance(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<Response>, ResponseError> {
        if !self.read_head(buf)? {
            return match eof {
                true if !self.answered => Err(ResponseError::ClosedBeforeAnswer),
                true => Err(ResponseError::Cut),
                false => Ok(None),
            };
        }
        let limit = self.limit;
        let Some(state) = self.body.as_mut() else {
            return Ok(None);
        };
        let done = match state.framing {
            Framing::Empty => true,
            Framing::Length(length) => {
                // The common case, a whole small body in the buffer: no copy.
                if state.body_len == 0 && length <= limit as u64 && buf.len() as u64 >= length {
                    state.kept = buf.split_to(length as usize);
                    state.body_len = length;
                    state.left = 0;
                } else {
                    if state.kept.capacity() == 0 {
                        // What the head announces is the server's word, not bytes: room
                        // for at most a read's worth more than arrived, grown as data comes.
                        let arrived = buf.len() as u64 + READ_ROOM as u64;
                        state
                            .kept
                            .reserve(length.min(limit as u64).min(arrived) as usize);
                    }
                    let take = state.left.min(buf.len() as u64) as usize;
                    keep(&mut state.kept, &mut state.body_len, &buf[..take], limit);
                    buf.advance(take);
                    state.left -= take as u64;
                }
                state.left == 0
            }
            Framing::Chunked => {
                let (kept, body_len) = (&mut state.kept, &mut state.body_len);
                let taken = state
                    .decoder
                    .feed(buf, &mut |data| keep(kept, body_len, data, limit))?;
                buf.advance(taken);
                state.decoder.is_done()
            }
            Framing::UntilClose => {
                keep(&mut state.kept, &mut state.body_len, buf, limit);
                buf.clear();
                eof
            }
        };
        if done {
            let state = self.body.take().ok_or(ResponseError::Cut)?;
            return Ok(Some(state.finish(buf)));
        }
        if eof {
            return Err(ResponseError::Cut);
        }
        Ok(None)
    }

    /// Reads interim answers and the final answer's head out of `buf`, if they are there.
    /// `Ok(true)`: the final head was read (or had been).
    pub fn read_head(&mut self, buf: &mut BytesMut) -> Result<bool, ResponseError> {
        while self.body.is_none() {
            if !buf.is_empty() {
                self.answered = true;
            }
            match self.parse_head(buf)? {
                Head::Final(state) => self.body = Some(state),
                Head::Interim => {}
                Head::Partial => return Ok(false),
            }
        }
        Ok(true)
    }

    fn parse_head(&self, buf: &mut BytesMut) -> Result<Head, ResponseError> {
        let malformed = ResponseError::Malformed;
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let head_len = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => {
                return Err(malformed("response head too large"))
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(malformed("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(Head::Partial),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(malformed("more than 128 header fields"))
            }
            Err(_) => return Err(malformed("malformed response head")),
        };
        check_line_ends(&buf[..head_len]).map_err(malformed)?;
        let (Some(version), Some(status)) = (response.version, response.code) else {
            return Err(malformed("malformed status line"));
        };
        if !(100..=599).contains(&status) {
            return Err(malformed("status code outside 100-599"));
        }
        if status == 101 {
            return Err(malformed(
                "101 Switching Protocols to a request without Upgrade",
            ));
        }
        if status < 200 {
            buf.advance(head_len);
            return Ok(Head::Interim);
        }
        let fields = scan_fields(response.headers).map_err(malformed)?;
        let framing =
            response_framing(version, status, self.request_is_head, &fields).map_err(malformed)?;
        let reusable =
            framing != Framing::UntilClose && !fields.close && (version == 1 || fields.keep_alive);
        let headers = response
            .headers
            .iter()
            .map(|header| {
                let value = match std::str::from_utf8(header.value) {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(header.value).into_owned(),
                };
                (header.name.to_ascii_lowercase(), value)
            })
            .collect();
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        buf.advance(head_len);
        Ok(Head::Final(BodyState {
            status,
            headers,
            framing,
            reusable,
            left,
            decoder: ChunkedDecoder::default(),
            kept: BytesMut::new(),
            body_len: 0,
        }))
    }
}

enum Head {
    Partial,
    Interim,
    Final(BodyState),
}

/// Why [`ConnectionPool::exchange`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No connection could be opened: the request never left.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The request went out (or may have) and no usable answer came back.
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// A kept-alive connection and the bytes read from it that no response used yet.
#[derive(Debug)]
struct Connection {
    stream: Stream,
    buf: BytesMut,
}

impl Connection {
    /// Writes `request` (and `body` after it) and reads the answer.
    async fn exchange(
        &mut self,
        request: &[u8],
        body: &[u8],
        reader: &mut ResponseReader,
    ) -> Result<Response, ResponseError> {
        let written = if body.is_empty() {
            async {
                self.stream.write_all(request).await?;
                // TLS may hold the last record back until flushed; TCP's flush is a no-op.
                self.stream.flush().await?;
                Ok(false)
            }
            .await
        } else {
            // A large body: the server may answer before it has read it all (a 413), and
            // stop reading.
            match self.write_watching(request, reader).await {
                Ok(false) => self.write_watching(body, reader).await,
                other => other,
            }
        };
        // A server may answer (and close) before it has read the whole request, e.g. a 413:
        // its answer, when it sent one, is what the request got; the connection, with part of
        // a request on it, is not used again.
        if let Ok(true) = written {
            let mut response = self.read_response(reader).await?;
            response.reusable = false;
            return Ok(response);
        }
        if let Err(error) = written {
            return match self.read_response(reader).await {
                Ok(mut response) => {
                    response.reusable = false;
                    Ok(response)
                }
                Err(ResponseError::ClosedBeforeAnswer) if is_closed(&error) => {
                    Err(ResponseError::ClosedBeforeAnswer)
                }
                Err(_) => Err(ResponseError::Io(error)),
            };
        }
        self.read_response(reader).await
    }

    /// Writes `data`, and flushes it, unless the server answers first. `Ok(true)`: a final
    /// answer (not an interim 1xx) began to arrive, or the server closed.
    async fn write_watching(
        &mut self,
        mut data: &[u8],
        reader: &mut ResponseReader,
    ) -> io::Result<bool> {
        let mut flushed = false;
        while !flushed {
            // One poll of both directions of the one stream (a TLS stream cannot be split into
            // halves that wait apart); the write goes first.
            let watched = std::future::poll_fn(|cx| {
                let stream = std::pin::Pin::new(&mut self.stream);
                let sent = if data.is_empty() {
                    tokio::io::AsyncWrite::poll_flush(stream, cx).map(|r| r.map(|()| None))
                } else {
                    tokio::io::AsyncWrite::poll_write(stream, cx, data).map(|r| r.map(Some))
                };
                if sent.is_ready() {
                    return sent.map(|r| r.map(Ok));
                }
                self.buf.reserve(READ_ROOM);
                let read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
                std::future::Future::poll(read, cx).map(|read| Ok(Err(read)))
            })
            .await?;
            match watched {
                Ok(Some(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Some(n)) => data = &data[n..],
                Ok(None) => flushed = true,
                // Closed or reset: whatever it sent is in the buffer; the reader decides.
                Err(Ok(0) | Err(_)) => return Ok(true),
                Err(Ok(_)) => match reader.read_head(&mut self.buf) {
                    Ok(false) => {}
                    // A final head, or bytes that are no answer: either way, the write stops.
                    Ok(true) | Err(_) => return Ok(true),
                },
            }
        }
        Ok(false)
    }

    async fn read_response(
        &mut self,
        reader: &mut ResponseReader,
    ) -> Result<Response, ResponseError> {
        loop {
            if let Some(response) = reader.advance(&mut self.buf, false)? {
                return Ok(response);
            }
            self.buf.reserve(READ_ROOM);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return reader
                        .advance(&mut self.buf, true)?
                        .ok_or(ResponseError::Cut)
                }
                Ok(_) => {}
                Err(error) if !reader.answered() && self.buf.is_empty() && is_closed(&error) => {
                    return Err(ResponseError::ClosedBeforeAnswer)
                }
                Err(error) => return Err(ResponseError::Io(error)),
            }
        }
    }
}

fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// Kept-alive HTTP/1.1 connections to one [`Endpoint`], each with its read buffer, in an
/// [`IdleStack`] like every pool of [`crate::pool`].
#[derive(Debug)]
pub struct ConnectionPool {
    endpoint: Endpoint,
    idle: IdleStack<Connection>,
}

impl ConnectionPool {
    /// A pool with no connection yet; they are opened as requests need them.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            idle: IdleStack::default(),
        }
    }

    /// The server this pool connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Writes `request` — a whole HTTP/1.1 request head the caller framed, `Content-Length`
    /// included — and `body` on an idle connection or a new one, and reads the answer with
    /// `reader`. The connection is kept for the next request only when the answer was read to
    /// its end and says it may be.
    ///
    /// A request is sent a second time only when `idempotent` (RFC 9110 §9.2.2) and a
    /// kept-alive connection closed without a byte of answer (the server had closed it while
    /// idle; RFC 9112 §9.3.1 lets a client retry then); it then goes on another connection.
    pub async fn exchange(
        &self,
        request: &mut Vec<u8>,
        body: &[u8],
        idempotent: bool,
        reader: &mut ResponseReader,
    ) -> Result<Response, ExchangeError> {
        let rest = if body.len() <= SMALL_BODY {
            request.extend_from_slice(body);
            &[][..]
        } else {
            body
        };
        loop {
            let (mut connection, reused) = match self.idle.take(|c| c.stream.still_open()) {
                Some(connection) => (connection, true),
                // Boxed: connecting is rare, and its large state would otherwise be part of
                // (and moved with) every request's future.
                None => {
                    let stream = Box::pin(self.endpoint.connect()).await?;
                    let buf = BytesMut::with_capacity(READ_ROOM);
                    (Connection { stream, buf }, false)
                }
            };
            match connection.exchange(request, rest, reader).await {
                Ok(response) => {
                    if response.reusable {
                        self.idle.put(connection);
                    }
                    return Ok(response);
                }
                Err(ResponseError::ClosedBeforeAnswer) if reused && idempotent => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// How the replayer feeds a [`ResponseReader`], for the differential test and the fuzz target
/// (`net/tests/h1_differential.rs`, `fuzz/fuzz_targets/replay_response.rs`): one feeding, so
/// both check the reader the way [`ConnectionPool`] uses it.
#[doc(hidden)]
pub mod fuzzing {
    use super::{Response, ResponseReader};
    use bytes::BytesMut;

    /// What one feeding read.
    #[derive(Debug)]
    pub struct Reading {
        /// The answer, or the error's text.
        pub result: Result<Response, String>,
        /// What the reader did not take: its buffer's rest and the pieces never fed.
        pub leftover: Vec<u8>,
        /// The answer ended exactly where a piece ended, with more pieces to come: the reader
        /// could not know more bytes follow, so it may call the connection reusable.
        pub ended_at_split: bool,
    }

    /// Feeds `pieces` as `ConnectionPool` does: an `advance` before the first read and after
    /// each, `eof` once all is in.
    ///
    /// # Panics
    ///
    /// When the reader answers `Ok(None)` at `eof` (its API says it never does).
    pub fn read_pieces(pieces: &[&[u8]], request_is_head: bool, limit: usize) -> Reading {
        let mut reader = ResponseReader::new(request_is_head, limit);
        let mut buf = BytesMut::new();
        let mut next = 0;
        loop {
            let eof = next == pieces.len();
            match reader.advance(&mut buf, eof) {
                Ok(Some(response)) => {
                    let unfed = pieces[next..].concat();
                    let ended_at_split = buf.is_empty() && !unfed.is_empty();
                    let mut leftover = buf.to_vec();
                    leftover.extend_from_slice(&unfed);
                    return Reading {
                        result: Ok(response),
                        leftover,
                        ended_at_split,
                    };
                }
                Ok(None) => assert!(!eof, "Ok(None) at eof (the API says never)"),
                Err(error) => {
                    return Reading {
                        result: Err(error.to_string()),
                        leftover: Vec::new(),
                        ended_at_split: false,
                    }
                }
            }
            buf.extend_from_slice(pieces[next]);
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], is_head: bool, limit: usize) -> Result<Response, ResponseError> {
        let mut reader = ResponseReader::new(is_head, limit);
        let mut buf = BytesMut::from(input);
        match reader.advance(&mut buf, false)? {
            Some(response) => Ok(response),
            None => reader.advance(&mut buf, true)?.ok_or(ResponseError::Cut),
        }
    }

    /// The same bytes fed one at a time give the same answer as fed at once.
    fn read_bytewise(input: &[u8], is_head: bool, limit: usize) -> Result<Response, ResponseError> {
        let mut reader = ResponseReader::new(is_head, limit);
        let mut buf = BytesMut::new();
        for byte in input {
            buf.extend_from_slice(&[*byte]);
            if let Some(response) = reader.advance(&mut buf, false)? {
                return Ok(response);
            }
        }
        reader.advance(&mut buf, true)?.ok_or(ResponseError::Cut)
    }

    #[test]
    fn bodies_are_framed_by_length_chunks_or_close() {
        for (input, body, reusable) in [
            (&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[..], &b"hello"[..], true),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nt: v\r\n\r\n",
                b"hello",
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nhello", b"hello", false),
            (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", b"", true),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok", true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", b"ok", false),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok", false),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok", b"ok", true),
        ] {
            for read in [read_all, read_bytewise] {
                let response = read(input, false, 1024).expect("a valid response");
                assert_eq!(response.body, body, "{}", String::from_utf8_lossy(input));
                assert_eq!(response.body_len, body.len() as u64);
                assert_eq!(response.reusable, reusable, "{}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn a_head_answer_has_no_body_and_the_limit_keeps_the_start() {
        let response = read_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true, 10)
            .expect("HEAD answer");
        assert_eq!((response.body_len, response.reusable), (0, true));
        let input = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789";
        for read in [read_all, read_bytewise] {
            let response = read(input, false, 4).expect("long body");
            assert_eq!(response.body, &b"0123"[..]);
            assert_eq!(response.body_len, 10);
        }
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n012345\r\n4\r\n6789\r\n0\r\n\r\n";
        let response = read_bytewise(chunked, false, 7).expect("long chunked body");
        assert_eq!(
            (&response.body[..], response.body_len),
            (&b"0123456"[..], 10)
        );
    }

    #[test]
    fn ambiguous_or_cut_answers_are_refused() {
        for input in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\nx: y\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 000 Zero\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nz\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-",
            b"not http at all\r\n\r\n",
        ] {
            for read in [read_all, read_bytewise] {
                assert!(
                    read(input, false, 1024).is_err(),
                    "accepted: {}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        assert!(matches!(
            read_all(b"", false, 10),
            Err(ResponseError::ClosedBeforeAnswer)
        ));
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'x', MAX_HEAD_BYTES));
        assert!(matches!(
            read_all(&huge, false, 10),
            Err(ResponseError::Malformed("response head too large"))
        ));
    }

    #[test]
    fn an_announced_length_reserves_nothing_it_did_not_receive() {
        // A hostile Content-Length with an unlimited body limit: no allocation of its size.
        let input = b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999999999\r\n\r\nx";
        let mut reader = ResponseReader::new(false, usize::MAX);
        let mut buf = BytesMut::from(&input[..]);
        assert!(reader
            .advance(&mut buf, false)
            .expect("valid so far")
            .is_none());
        let state = reader.body.as_ref().expect("in the body");
        assert!(
            state.kept.capacity() <= 1 + READ_ROOM,
            "{}",
            state.kept.capacity()
        );
        assert!(matches!(
            reader.advance(&mut buf, true),
            Err(ResponseError::Cut)
        ));
    }

    #[test]
    fn bytes_after_the_answer_stay_and_make_the_connection_unusable() {
        let mut reader = ResponseReader::new(false, 100);
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"[..]);
        let response = reader
            .advance(&mut buf, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(&response.body[..], b"ok");
        assert!(!response.reusable);
        assert_eq!(&buf[..], b"EXTRA");
    }
}
