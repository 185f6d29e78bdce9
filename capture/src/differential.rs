//! Differential framing harness for the HTTP/1.1 relay (feature `differential`; used by
//! `tests/differential.rs` and the `relay_differential` fuzz target, not by the tap itself).
//!
//! Raw byte streams go through a real [`TeeProxy`] (one serving thread) on loopback, and what
//! crossed each hop is parsed again by parsers that share no code with the relay:
//!
//! * [`strict`]: a strict HTTP/1.1 message parser written from RFC 9112 here (CRLF only, no
//!   obs-fold, no whitespace before a colon, one unambiguous framing, RFC chunk-ext grammar);
//! * hyper's HTTP/1.1 server as the control of the request direction.
//!
//! [`check_requests`] asserts that the requests the control parsed are exactly the requests the
//! relay accepted (its sink's copies), that those are what a strict parser reads in the
//! client's bytes, that the bytes on the control's connections are clean, and that every client
//! (including two well-formed "victims") gets the answers to its own requests and nothing else.
//! [`check_response`] does the same for a generated control response: the client gets exactly
//! the response the control meant, or a 502/504, or a closed connection; never bytes of one
//! response inside another, never an answer it did not ask for.

use crate::{ExchangeSink, OfferError, TeeConfig, TeeProxy};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use shadowdiff_model::Exchange;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Longest a client waits for the tap to close its connection: longer is a hang.
const CLIENT_DEADLINE: Duration = Duration::from_secs(3);
/// Time left for the control to process what it already received before the logs are read.
const SETTLE: Duration = Duration::from_millis(15);
/// Header the control puts on each of its answers.
const ID_HEADER: &str = "x-control-id";

// ---------------------------------------------------------------------------------------------
// The strict reference parser.

/// A strict HTTP/1.1 parser written from RFC 9112, independent of the relay's code.
pub mod strict {
    /// Longest head accepted (the relay's limit is the same order of magnitude).
    const MAX_HEAD: usize = 64 * 1024;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Field {
        /// Lower case.
        pub name: String,
        /// Without leading and trailing whitespace.
        pub value: Vec<u8>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub method: Vec<u8>,
        pub target: Vec<u8>,
        /// 0 for HTTP/1.0, 1 for HTTP/1.1.
        pub minor: u8,
        pub fields: Vec<Field>,
        /// The data of the body (de-chunked).
        pub body: Vec<u8>,
        /// The connection ends after this request.
        pub close: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        pub status: u16,
        pub fields: Vec<Field>,
        pub body: Vec<u8>,
        /// The body was delimited by the end of the connection.
        pub until_close: bool,
    }

    impl Response {
        pub fn field(&self, name: &str) -> Option<&[u8]> {
            self.fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.value.as_slice())
        }

        pub fn is_interim(&self) -> bool {
            (100..200).contains(&self.status)
        }
    }

    /// How a parse of a whole stream ended.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum End {
        /// Every byte belonged to a complete message.
        Clean,
        /// The input ended inside a message.
        Incomplete,
        /// The message starting at byte `at` is invalid or ambiguous.
        Error { at: usize, why: String },
    }

    fn is_tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }

    fn is_field_vchar(b: u8) -> bool {
        b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
    }

    fn trim(mut v: &[u8]) -> &[u8] {
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = v {
            v = rest;
        }
        v
    }

    /// The line starting at `from`, ended by CRLF: `Ok(None)` when incomplete. A CR or LF
    /// that is not part of a CRLF is an error.
    fn line(input: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, String> {
        let rest = &input[from.min(input.len())..];
        for (i, &b) in rest.iter().enumerate() {
            match b {
                b'\r' => {
                    return match rest.get(i + 1) {
                        None => Ok(None),
                        Some(b'\n') => Ok(Some((&rest[..i], from + i + 2))),
                        Some(_) => Err(format!("bare CR at byte {}", from + i)),
                    }
                }
                b'\n' => return Err(format!("bare LF at byte {}", from + i)),
                _ => {}
            }
        }
        Ok(None)
    }

    fn field_line(line: &[u8]) -> Result<Field, String> {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err("obs-fold (a field line starting with whitespace)".into());
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("field line without a colon: {:?}", line.escape_ascii()))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(format!(
                "bad field name {:?}",
                name.escape_ascii().to_string()
            ));
        }
        let value = trim(&line[colon + 1..]);
        if !value.iter().all(|&b| is_field_vchar(b)) {
            return Err(format!(
                "control character in field {:?}",
                name.escape_ascii().to_string()
            ));
        }
        Ok(Field {
            name: String::from_utf8_lossy(name).to_ascii_lowercase(),
            value: value.to_vec(),
        })
    }

    /// A start line, the fields, and the head's length (with the empty line).
    type Head<'a> = (&'a [u8], Vec<Field>, usize);

    /// A head at the start of `input`; `Ok(None)` when incomplete.
    fn head(input: &[u8]) -> Result<Option<Head<'_>>, String> {
        let Some((start, mut at)) = line(input, 0)? else {
            return if input.len() > MAX_HEAD {
                Err("head too large".into())
            } else {
                Ok(None)
            };
        };
        let mut fields = Vec::new();
        loop {
            let Some((l, next)) = line(input, at)? else {
                return if input.len() > MAX_HEAD {
                    Err("head too large".into())
                } else {
                    Ok(None)
                };
            };
            at = next;
            if l.is_empty() {
                return Ok(Some((start, fields, at)));
            }
            fields.push(field_line(l)?);
        }
    }

    fn version(v: &[u8]) -> Result<u8, String> {
        match v {
            b"HTTP/1.1" => Ok(1),
            b"HTTP/1.0" => Ok(0),
            _ => Err(format!("bad version {:?}", v.escape_ascii().to_string())),
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Framing {
        Empty,
        Length(u64),
        Chunked,
        UntilClose,
    }

    fn elements(fields: &[Field], name: &str) -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.value.split(|&b| b == b',').map(|e| trim(e).to_vec()))
            .filter(|e| !e.is_empty())
            .collect()
    }

    /// RFC 9112 §6. `canonical`: the message must be framed the one way a relay that frames
    /// messages itself writes them (one Content-Length field or one Transfer-Encoding field).
    fn framing(
        fields: &[Field],
        request: bool,
        minor: u8,
        canonical: bool,
    ) -> Result<Framing, String> {
        let te_fields = fields
            .iter()
            .filter(|f| f.name == "transfer-encoding")
            .count();
        let cl_fields: Vec<&Field> = fields
            .iter()
            .filter(|f| f.name == "content-length")
            .collect();
        if te_fields > 0 {
            if canonical && te_fields > 1 {
                return Err("several Transfer-Encoding fields".into());
            }
            if minor == 0 {
                return Err("Transfer-Encoding in an HTTP/1.0 message".into());
            }
            let codings: Vec<String> = elements(fields, "transfer-encoding")
                .iter()
                .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
                .collect();
            let chunked = codings.iter().filter(|c| *c == "chunked").count();
            if chunked != 1 || codings.last().map(String::as_str) != Some("chunked") {
                return Err(format!(
                    "Transfer-Encoding {codings:?} does not end in one chunked"
                ));
            }
            if !cl_fields.is_empty() && (request || canonical) {
                return Err("Transfer-Encoding and Content-Length".into());
            }
            return Ok(Framing::Chunked);
        }
        if !cl_fields.is_empty() {
            if canonical && cl_fields.len() > 1 {
                return Err("several Content-Length fields".into());
            }
            let values = elements(fields, "content-length");
            if canonical && values.len() != 1 {
                return Err("a Content-Length list".into());
            }
            let mut length = None;
            for v in &values {
                if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                    return Err(format!(
                        "bad Content-Length {:?}",
                        v.escape_ascii().to_string()
                    ));
                }
                let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values".into());
                }
                length = Some(n);
            }
            return match length {
                None => Err("empty Content-Length".into()),
                Some(0) => Ok(Framing::Empty),
                Some(n) => Ok(Framing::Length(n)),
            };
        }
        Ok(if request {
            Framing::Empty
        } else {
            Framing::UntilClose
        })
    }

    /// chunk-ext after the size digits (RFC 9112 §7.1.1); whitespace before the CRLF is
    /// tolerated.
    fn chunk_ext(mut ext: &[u8]) -> Result<(), String> {
        let bad = |what: &str| Err(format!("bad chunk extension ({what})"));
        let skip_ws = |e: &mut &[u8]| {
            while let [b' ' | b'\t', rest @ ..] = *e {
                *e = rest;
            }
        };
        let token = |e: &mut &[u8]| -> usize {
            let n = e.iter().take_while(|&&b| is_tchar(b)).count();
            *e = &e[n..];
            n
        };
        loop {
            skip_ws(&mut ext);
            let Some((&first, rest)) = ext.split_first() else {
                return Ok(());
            };
            if first != b';' {
                return bad("no ';'");
            }
            ext = rest;
            skip_ws(&mut ext);
            if token(&mut ext) == 0 {
                return bad("no name");
            }
            skip_ws(&mut ext);
            if let [b'=', rest @ ..] = ext {
                ext = rest;
                skip_ws(&mut ext);
                if let [b'"', rest @ ..] = ext {
                    ext = rest;
                    loop {
                        match ext {
                            [b'"', rest @ ..] => {
                                ext = rest;
                                break;
                            }
                            [b'\\', q, rest @ ..] if is_field_vchar(*q) => ext = rest,
                            [b, rest @ ..]
                                if *b == b'\t'
                                    || *b == b' '
                                    || *b == 0x21
                                    || (0x23..=0x5b).contains(b)
                                    || (0x5d..=0x7e).contains(b)
                                    || *b >= 0x80 =>
                            {
                                ext = rest
                            }
                            _ => return bad("quoted-string"),
                        }
                    }
                } else if token(&mut ext) == 0 {
                    return bad("no value");
                }
            }
        }
    }

    /// A chunked body at the start of `input`: its data and length; `Ok(None)` when
    /// incomplete.
    pub fn chunked(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
        let mut data = Vec::new();
        let mut at = 0;
        loop {
            let Some((l, next)) = line(input, at)? else {
                return Ok(None);
            };
            let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if digits == 0 || digits > 16 {
                return Err(format!(
                    "bad chunk size line {:?}",
                    l.escape_ascii().to_string()
                ));
            }
            chunk_ext(&l[digits..])?;
            let size = u64::from_str_radix(std::str::from_utf8(&l[..digits]).unwrap_or("x"), 16)
                .map_err(|e| e.to_string())?;
            at = next;
            if size == 0 {
                loop {
                    let Some((l, next)) = line(input, at)? else {
                        return Ok(None);
                    };
                    at = next;
                    if l.is_empty() {
                        return Ok(Some((data, at)));
                    }
                    field_line(l).map_err(|e| format!("bad trailer: {e}"))?;
                }
            }
            let size = usize::try_from(size).map_err(|e| e.to_string())?;
            if input.len() - at < size.saturating_add(2) {
                return Ok(None);
            }
            data.extend_from_slice(&input[at..at + size]);
            at += size;
            if &input[at..at + 2] != b"\r\n" {
                return Err("chunk data not followed by CRLF".into());
            }
            at += 2;
        }
    }

    fn connection_has(fields: &[Field], token: &str) -> bool {
        elements(fields, "connection")
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// One request at the start of `input` (after any empty lines, RFC 9112 §2.2); `Ok(None)`
    /// when incomplete. Returns the request and the bytes it used.
    pub fn request(input: &[u8], canonical: bool) -> Result<Option<(Request, usize)>, String> {
        let mut skip = 0;
        while input[skip..].starts_with(b"\r\n") {
            skip += 2;
        }
        let Some((start, fields, head_len)) = head(&input[skip..])? else {
            return Ok(None);
        };
        let mut parts = start.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(v), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "bad request line {:?}",
                start.escape_ascii().to_string()
            ));
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err("bad method".into());
        }
        if target.is_empty() || !target.iter().all(|&b| b > 0x20 && b != 0x7f) {
            return Err("bad request target".into());
        }
        let minor = version(v)?;
        let at = skip + head_len;
        let (body, used) = match framing(&fields, true, minor, canonical)? {
            Framing::Empty | Framing::UntilClose => (Vec::new(), at),
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|e| e.to_string())?;
                if input.len() - at < n {
                    return Ok(None);
                }
                (input[at..at + n].to_vec(), at + n)
            }
            Framing::Chunked => match chunked(&input[at..])? {
                None => return Ok(None),
                Some((data, n)) => (data, at + n),
            },
        };
        let close = connection_has(&fields, "close")
            || (minor == 0 && !connection_has(&fields, "keep-alive"));
        Ok(Some((
            Request {
                method: method.to_vec(),
                target: target.to_vec(),
                minor,
                fields,
                body,
                close,
            },
            used,
        )))
    }

    /// Every request of a stream, up to the first invalid one.
    pub fn requests(input: &[u8], canonical: bool) -> (Vec<Request>, End) {
        let (all, end, _) = requests_and_rest(input, canonical);
        (all, end)
    }

    /// [`requests`], and where the bytes that are not a complete request begin.
    pub fn requests_and_rest(input: &[u8], canonical: bool) -> (Vec<Request>, End, usize) {
        let mut all = Vec::new();
        let mut at = 0;
        loop {
            if at == input.len() {
                return (all, End::Clean, at);
            }
            match request(&input[at..], canonical) {
                Ok(Some((r, used))) => {
                    all.push(r);
                    at += used;
                }
                Ok(None) => return (all, End::Incomplete, at),
                Err(why) => return (all, End::Error { at, why }, at),
            }
        }
    }

    /// One response (interim or final) at the start of `input`; `eof`: `input` is all the
    /// sender will send, so a body delimited by the close ends with it.
    pub fn response(
        input: &[u8],
        to_head: bool,
        canonical: bool,
        eof: bool,
    ) -> Result<Option<(Response, usize)>, String> {
        let Some((start, fields, at)) = head(input)? else {
            return Ok(None);
        };
        let mut parts = start.splitn(3, |&b| b == b' ');
        let (Some(v), Some(code)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "bad status line {:?}",
                start.escape_ascii().to_string()
            ));
        };
        let minor = version(v)?;
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err("bad status code".into());
        }
        if let Some(reason) = parts.next() {
            if !reason.iter().all(|&b| is_field_vchar(b)) {
                return Err("control character in the reason phrase".into());
            }
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if status < 100 {
            return Err("status below 100".into());
        }
        if status == 101 {
            return Err("101 Switching Protocols without an Upgrade request".into());
        }
        let framing = framing(&fields, false, minor, canonical)?;
        let response = |body: Vec<u8>, until_close: bool, fields: Vec<Field>| Response {
            status,
            fields,
            body,
            until_close,
        };
        if (100..200).contains(&status) || to_head || status == 204 || status == 304 {
            return Ok(Some((response(Vec::new(), false, fields), at)));
        }
        Ok(match framing {
            Framing::Empty => Some((response(Vec::new(), false, fields), at)),
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|e| e.to_string())?;
                (input.len() - at >= n)
                    .then(|| (response(input[at..at + n].to_vec(), false, fields), at + n))
            }
            Framing::Chunked => {
                chunked(&input[at..])?.map(|(data, n)| (response(data, false, fields), at + n))
            }
            Framing::UntilClose => {
                eof.then(|| (response(input[at..].to_vec(), true, fields), input.len()))
            }
        })
    }

    /// The final response at the start of `input`, after any interim ones.
    pub fn final_response(
        input: &[u8],
        to_head: bool,
        canonical: bool,
        eof: bool,
    ) -> Result<Option<(Response, usize)>, String> {
        let mut at = 0;
        loop {
            match response(&input[at..], to_head, canonical, eof)? {
                None => return Ok(None),
                Some((r, used)) if r.is_interim() => at += used,
                Some((r, used)) => return Ok(Some((r, at + used))),
            }
        }
    }

    /// Every final response of a stream that ended (the sender closed after it);
    /// `to_head(i)`: the i-th response answers a HEAD request.
    pub fn responses(
        input: &[u8],
        to_head: impl Fn(usize) -> bool,
        canonical: bool,
    ) -> (Vec<Response>, End) {
        let mut all = Vec::new();
        let mut at = 0;
        loop {
            if at == input.len() {
                return (all, End::Clean);
            }
            match final_response(&input[at..], to_head(all.len()), canonical, true) {
                Ok(Some((r, used))) => {
                    all.push(r);
                    at += used;
                }
                Ok(None) => return (all, End::Incomplete),
                Err(why) => return (all, End::Error { at, why }),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// An invariant the relay broke, with the bytes that show it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VIOLATION: {}\n{}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Bytes as an escaped string, shortened in the middle past 3000 bytes.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 3000;
    if bytes.len() <= MAX {
        format!("b\"{}\"", bytes.escape_ascii())
    } else {
        format!(
            "b\"{}\" …({} bytes)… b\"{}\"",
            bytes[..MAX / 2].escape_ascii(),
            bytes.len() - MAX,
            bytes[bytes.len() - MAX / 2..].escape_ascii()
        )
    }
}

/// What happened to a request-direction case, for statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestOutcome {
    /// Requests of the generated connections that reached the control (and were answered).
    pub relayed: usize,
    /// Generated connections that got a refusal (a final response of 400 or more not from the
    /// control).
    pub refused: usize,
}

/// What the client got in a response-direction case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Exactly the response the control meant.
    Exact,
    /// A 502 or 504 of the tap's own.
    Refused,
    /// No complete response: the tap closed the connection.
    Closed,
}

// ---------------------------------------------------------------------------------------------
// The shared runtime.

struct Harness {
    runtime: tokio::runtime::Runtime,
    /// Cases run one at a time: each owns the tap's serving thread while it runs.
    one_at_a_time: Mutex<()>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a tokio runtime for the differential harness: {e}")),
        one_at_a_time: Mutex::new(()),
    })
}

fn run<T>(case: impl std::future::Future<Output = T>) -> T {
    let h = harness();
    let _turn = h.one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
    h.runtime.block_on(case)
}

// ---------------------------------------------------------------------------------------------
// The tap.

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);

impl ExchangeSink for Collect {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        if let Ok(mut all) = self.0.lock() {
            all.push(exchange);
        }
        Ok(())
    }
}

struct Tap {
    addr: SocketAddr,
    sink: Arc<Collect>,
    /// Dropping it stops the serving thread (after a short grace).
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_tap(control: SocketAddr) -> io::Result<Tap> {
    let sink = Arc::new(Collect::default());
    let control_uri = format!("http://{control}")
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
    let proxy = TeeProxy::new(
        TeeConfig {
            control: control_uri,
            tls: Default::default(),
            body_limit: 4 << 20,
            experiment: "differential".into(),
            preserve_host: false,
            control_timeout: Duration::from_secs(2),
            // Short enough that a stream the relay is still waiting on ends within a case.
            limits: crate::TapLimits {
                head_timeout: Duration::from_secs(1),
                keep_alive_timeout: Duration::from_secs(1),
                body_timeout: Duration::from_secs(1),
                ..crate::TapLimits::default()
            },
            shadow_markers: crate::default_shadow_markers(),
        },
        sink.clone(),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let (listener, addr) =
        shadowdiff_net::server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(shadowdiff_net::server::serve_connections_on_threads(
        listener,
        1,
        move || proxy.for_thread(),
        async {
            let _ = stopped.await;
        },
        Duration::from_millis(50),
    ));
    Ok(Tap {
        addr,
        sink,
        _stop: stop,
    })
}

// ---------------------------------------------------------------------------------------------
// Clients.

struct ClientResult {
    received: Vec<u8>,
    timed_out: bool,
}

/// Writes `pieces` (one write each), half-closes, and reads until the tap closes.
async fn client(addr: SocketAddr, pieces: &[Vec<u8>]) -> ClientResult {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let Ok(Ok(stream)) = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await else {
        return ClientResult {
            received: Vec::new(),
            timed_out: true,
        };
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        for piece in pieces {
            if writer.write_all(piece).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut received = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
                Err(_) => return (received, true),
                // A reset is a close too (the tap may close with unread bytes).
                Ok(Ok(0)) | Ok(Err(_)) => return (received, false),
                Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ((), (received, timed_out)) = tokio::join!(write, read);
    ClientResult {
        received,
        timed_out,
    }
}

// ---------------------------------------------------------------------------------------------
// The request direction: hyper's HTTP/1.1 server as the control.

/// A request as the control's hyper server parsed it.
#[derive(Debug, Clone)]
struct Seen {
    id: u64,
    conn: usize,
    method: Vec<u8>,
    target: Vec<u8>,
    body: Vec<u8>,
}

#[derive(Default)]
struct ControlConn {
    /// Every byte the control read on this connection.
    raw: Vec<u8>,
    /// hyper's error for the connection, and whether it is a head-parse error that has
    /// nothing to do with framing (a URI or header hyper is stricter about than the relay).
    error: Option<ConnError>,
}

/// hyper's error text, and whether it is tolerated.
type ConnError = (String, bool);

#[derive(Default)]
struct ControlLog {
    next_id: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    conns: Mutex<Vec<Arc<Mutex<ControlConn>>>>,
}

/// A TCP stream that keeps a copy of what it reads.
struct Recorded {
    inner: TcpStream,
    conn: Arc<Mutex<ControlConn>>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if let Ok(mut conn) = self.conn.lock() {
                conn.raw.extend_from_slice(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type ControlResponse = hyper::Response<Full<Bytes>>;

async fn control_answer(
    log: Arc<ControlLog>,
    conn: usize,
    request: hyper::Request<Incoming>,
) -> Result<ControlResponse, Infallible> {
    let method = request.method().as_str().as_bytes().to_vec();
    let target = request.uri().to_string().into_bytes();
    match request.into_body().collect().await {
        Ok(collected) => {
            let body = collected.to_bytes().to_vec();
            let id = log.next_id.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut seen) = log.seen.lock() {
                seen.push(Seen {
                    id,
                    conn,
                    method,
                    target,
                    body,
                });
            }
            let mut response = hyper::Response::new(Full::new(Bytes::from(format!("echo {id}"))));
            response
                .headers_mut()
                .insert(ID_HEADER, http::HeaderValue::from(id));
            Ok(response)
        }
        Err(error) => {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"bad body")));
            *response.status_mut() = http::StatusCode::BAD_REQUEST;
            let _ = error;
            Ok(response)
        }
    }
}

/// A hyper error that only says hyper is stricter than the relay about something other than
/// framing.
fn non_framing_parse_error(error: &hyper::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    (error.is_parse() || error.is_parse_too_large())
        && !text.contains("content-length")
        && !text.contains("transfer-encoding")
        && !text.contains("chunk")
}

async fn hyper_control(listener: TcpListener, log: Arc<ControlLog>) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let record = Arc::new(Mutex::new(ControlConn::default()));
        let conn = match log.conns.lock() {
            Ok(mut conns) => {
                conns.push(record.clone());
                conns.len() - 1
            }
            Err(_) => return,
        };
        let log = log.clone();
        connections.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(Recorded {
                inner: stream,
                conn: record.clone(),
            });
            let service = hyper::service::service_fn(move |request| {
                control_answer(log.clone(), conn, request)
            });
            let served = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service)
                .await;
            if let Err(error) = served {
                let tolerated = non_framing_parse_error(&error);
                if let Ok(mut record) = record.lock() {
                    record.error = Some((format!("{error:?}"), tolerated));
                }
            }
        });
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
    }
}

fn header<'a>(exchange: &'a Exchange, name: &str) -> Option<&'a str> {
    exchange
        .control
        .as_ref()?
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The path and query of a request target, when it has one: what reaches the control of a
/// target in absolute form. `None` for `*` and authority form.
fn origin_form(target: &[u8]) -> Option<Vec<u8>> {
    // A fragment never reaches a server's handler: servers (hyper, as the control here) drop
    // it, so the request a client meant is the target before `#`.
    let target = target
        .iter()
        .position(|&b| b == b'#')
        .map_or(target, |i| &target[..i]);
    if target.starts_with(b"/") {
        return Some(target.to_vec());
    }
    let lower = target.to_ascii_lowercase();
    let rest = if lower.starts_with(b"http://") {
        &target[7..]
    } else if lower.starts_with(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    let path = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(b"/".to_vec(), |i| rest[i..].to_vec());
    Some(if path.starts_with(b"?") {
        [b"/".as_slice(), &path].concat()
    } else {
        path
    })
}

fn same_request(seen: &Seen, sent: &strict::Request) -> bool {
    seen.method == sent.method
        && seen.body == sent.body
        && match origin_form(&sent.target) {
            Some(target) => target == seen.target,
            None => true,
        }
}

fn describe_seen(seen: &Seen) -> String {
    format!(
        "#{} {} {} body {} (control connection {})",
        seen.id,
        String::from_utf8_lossy(&seen.method),
        show(&seen.target),
        show(&seen.body),
        seen.conn
    )
}

fn describe_request(r: &strict::Request) -> String {
    format!(
        "{} {} body {}",
        String::from_utf8_lossy(&r.method),
        show(&r.target),
        show(&r.body)
    )
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Sends each connection's byte stream (as write pieces) through a fresh tap in front of a
/// fresh hyper control, with one well-formed victim connection running alongside and one
/// after, and checks every invariant of the request direction.
pub fn check_requests(connections: &[Vec<Vec<u8>>]) -> Result<RequestOutcome, Violation> {
    run(check_requests_async(connections))
}

async fn check_requests_async(connections: &[Vec<Vec<u8>>]) -> Result<RequestOutcome, Violation> {
    let setup = |e: io::Error| Violation {
        invariant: "harness setup",
        detail: e.to_string(),
    };
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(setup)?;
    let control_addr = listener.local_addr().map_err(setup)?;
    let log = Arc::new(ControlLog::default());
    let control_task = tokio::spawn(hyper_control(listener, log.clone()));
    let tap = start_tap(control_addr).await.map_err(setup)?;

    static NONCE: AtomicUsize = AtomicUsize::new(0);
    let nonce = format!(
        "{:x}{:x}",
        NONCE.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let victim = |n: u8| -> Vec<Vec<u8>> {
        let body = format!("victim {n} {nonce}");
        vec![
            format!(
                "POST /victim-{nonce}-{n} HTTP/1.1\r\nhost: victim\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes(),
            body.into_bytes(),
        ]
    };
    let (first_victim, last_victim) = (victim(1), victim(2));

    // The generated connections and the first victim at once, the second victim after.
    let mut streams: Vec<&[Vec<u8>]> = connections.iter().map(Vec::as_slice).collect();
    streams.push(&first_victim);
    let mut results = futures_join_all(streams.iter().map(|pieces| client(tap.addr, pieces))).await;
    results.push(client(tap.addr, &last_victim).await);
    streams.push(&last_victim);
    tokio::time::sleep(SETTLE).await;
    drop(tap._stop);
    control_task.abort();

    let seen = log.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let conns: Vec<(Vec<u8>, Option<ConnError>)> = log
        .conns
        .lock()
        .map(|c| {
            c.iter()
                .map(|c| {
                    c.lock()
                        .map(|c| (c.raw.clone(), c.error.clone()))
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let exchanges = tap.sink.0.lock().map(|e| e.clone()).unwrap_or_default();

    let evidence = || {
        let mut out = String::new();
        for (i, pieces) in streams.iter().enumerate() {
            let who = if i >= connections.len() {
                "victim"
            } else {
                "generated"
            };
            out += &format!(
                "\n  client {i} ({who}) sent {} in {} pieces\n  client {i} received {}",
                show(&pieces.concat()),
                pieces.len(),
                show(&results[i].received)
            );
        }
        for (i, (raw, error)) in conns.iter().enumerate() {
            out += &format!("\n  control connection {i} read {}", show(raw));
            if let Some((error, _)) = error {
                out += &format!(" and ended with {error}");
            }
        }
        for s in &seen {
            out += &format!("\n  control parsed {}", describe_seen(s));
        }
        for e in &exchanges {
            out += &format!(
                "\n  relay accepted {} {} body {} -> {} {}",
                e.request.method,
                e.request.uri,
                show(&e.request.body.bytes),
                e.control.as_ref().map_or(0, |c| c.status),
                header(e, ID_HEADER).unwrap_or("(no control id)")
            );
        }
        out
    };
    let fail = |invariant: &'static str, what: String| Violation {
        invariant,
        detail: format!("{what}\nEvidence:{}", evidence()),
    };

    let by_id: HashMap<u64, &Seen> = seen.iter().map(|s| (s.id, s)).collect();
    let tolerated = conns
        .iter()
        .filter(|(_, e)| e.as_ref().is_some_and(|(_, t)| *t))
        .count();

    // 1. The control saw exactly the requests the relay accepted.
    let mut accepted_ids = HashSet::new();
    let mut control_refused = 0;
    for e in &exchanges {
        let body = &e.request.body;
        if body.truncated || body.full_len != body.bytes.len() as u64 {
            return Err(fail(
                "harness: the relay's copy of a request body is incomplete",
                format!("{} {}", e.request.method, e.request.uri),
            ));
        }
        let Some(id) = header(e, ID_HEADER).and_then(|v| v.parse::<u64>().ok()) else {
            control_refused += 1;
            continue;
        };
        let Some(s) = by_id.get(&id) else {
            return Err(fail(
                "control == relay: the relay accepted a request with an answer the control never gave",
                format!("control id {id}"),
            ));
        };
        if s.method != e.request.method.as_bytes()
            || s.target != e.request.uri.as_bytes()
            || s.body != body.bytes
        {
            return Err(fail(
                "control == relay: the control parsed a different request than the relay accepted",
                format!(
                    "relay accepted {} {} body {}; control parsed {}",
                    e.request.method,
                    e.request.uri,
                    show(&body.bytes),
                    describe_seen(s)
                ),
            ));
        }
        accepted_ids.insert(id);
    }
    for s in &seen {
        if !accepted_ids.contains(&s.id) {
            return Err(fail(
                "control == relay: the control received a request the relay never accepted (smuggled)",
                describe_seen(s),
            ));
        }
    }
    if control_refused > tolerated {
        return Err(fail(
            "control == relay: the relay accepted a request the control's strict parser refused",
            format!("{control_refused} accepted request(s) answered by hyper's own error"),
        ));
    }

    // 2. The bytes on the control's connections are clean and carry exactly what it parsed.
    for (i, (raw, _)) in conns.iter().enumerate() {
        let (forwarded, end) = strict::requests(raw, true);
        if let strict::End::Error { at, why } = &end {
            return Err(fail(
                "clean forwarding: the relay sent the control bytes a strict parser rejects",
                format!("control connection {i} at byte {at}: {why}"),
            ));
        }
        let parsed: Vec<&Seen> = seen.iter().filter(|s| s.conn == i).collect();
        let agrees = parsed.len() <= forwarded.len()
            && forwarded.len() <= parsed.len() + 1
            && parsed
                .iter()
                .zip(&forwarded)
                .all(|(s, f)| same_request(s, f));
        if !agrees {
            return Err(fail(
                "clean forwarding: a strict parser and hyper read different requests in the bytes sent to the control",
                format!(
                    "control connection {i}: strict parser read [{}]",
                    forwarded
                        .iter()
                        .map(describe_request)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }

    // 3. Each client got, in order, the answers to the requests it sent (as a strict parser
    //    reads its bytes), then at most one refusal, then the close.
    let mut outcome = RequestOutcome::default();
    let mut delivered = HashSet::new();
    for (c, (pieces, result)) in streams.iter().zip(&results).enumerate() {
        let is_victim = c >= connections.len();
        let sent = pieces.concat();
        let (meant, meant_end, rest) = strict::requests_and_rest(&sent, false);
        if result.timed_out {
            return Err(fail(
                "liveness: the tap neither answered nor closed a client connection in time",
                format!("client {c}"),
            ));
        }
        // A stream that opens with the HTTP/2 preface is answered in HTTP/2 frames (hyper's
        // path), which an HTTP/1 reader cannot judge; checks 1 and 2 above still cover what
        // it made the control see.
        if sent.starts_with(HTTP2_PREFACE) {
            continue;
        }
        // A request the client began but never finished (its body never came) may still be
        // answered (a 502 or 400): an answer to a HEAD has no body, complete or not (RFC 9112,
        // 6.3), so that request's method counts too.
        let partial_is_head = matches!(meant_end, strict::End::Incomplete)
            && sent.get(rest..).is_some_and(|r| r.starts_with(b"HEAD "));
        let is_head = |i: usize| match meant.get(i) {
            Some(r) => r.method == b"HEAD",
            None => i == meant.len() && partial_is_head,
        };
        let (answers, end) = strict::responses(&result.received, is_head, true);
        match end {
            strict::End::Error { at, why } => {
                return Err(fail(
                    "clean answers: a client got bytes a strict parser rejects",
                    format!("client {c} at byte {at}: {why}"),
                ))
            }
            strict::End::Incomplete => {
                return Err(fail(
                    "clean answers: a client got a cut response",
                    format!("client {c}"),
                ))
            }
            strict::End::Clean => {}
        }
        let mut echoes = Vec::new();
        let mut refusals = 0;
        for (i, answer) in answers.iter().enumerate() {
            let id = answer
                .field(ID_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
            if refusals > tolerated {
                return Err(fail(
                    "refusal closes: a client got another response after a refusal",
                    format!("client {c}, response {i}"),
                ));
            }
            match id {
                Some(id) => echoes.push(id),
                None if answer.status >= 400 => refusals += 1,
                None => {
                    return Err(fail(
                        "clean answers: a client got a success that is not the control's answer",
                        format!("client {c}, response {i}: status {}", answer.status),
                    ))
                }
            }
        }
        let mut next = 0;
        for (k, id) in echoes.iter().enumerate() {
            let Some(s) = by_id.get(id) else {
                return Err(fail(
                    "own answers: a client got an answer the control never gave",
                    format!("client {c}, answer {k}: control id {id}"),
                ));
            };
            if !delivered.insert(*id) {
                return Err(fail(
                    "own answers: two clients got the same answer",
                    describe_seen(s),
                ));
            }
            // Exactly the k-th request; a tolerated control refusal may skip one.
            let mut matched = meant.get(next).is_some_and(|m| same_request(s, m));
            while !matched && tolerated > 0 && next + 1 < meant.len() {
                next += 1;
                matched = same_request(s, &meant[next]);
            }
            if !matched && next >= meant.len() {
                return Err(fail(
                    "own answers: the relay accepted a request a strict parser rejects (or never finds) in the client's bytes",
                    format!(
                        "client {c}, answer {k}: the control answered {}; a strict parser reads {} valid request(s) there, then {meant_end:?}",
                        describe_seen(s),
                        meant.len()
                    ),
                ));
            }
            if !matched {
                return Err(fail(
                    "own answers: a client got the answer to a request it did not send (or that reached the control altered)",
                    format!(
                        "client {c}, answer {k}: the control answered {}; the client's request {k} was {}",
                        describe_seen(s),
                        meant.get(next).map_or("(none)".into(), describe_request)
                    ),
                ));
            }
            next += 1;
        }
        if is_victim && (echoes.len() != 1 || refusals != 0) {
            return Err(fail(
                "own answers: a well-formed victim request did not get exactly its own answer",
                format!("client {c}: {} answers, {refusals} refusals", echoes.len()),
            ));
        }
        if !is_victim {
            outcome.relayed += echoes.len();
            outcome.refused += usize::from(refusals > 0);
        }
    }
    Ok(outcome)
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    // Not spawned (the futures borrow); polled together instead.
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut futures: Vec<Option<Pin<Box<F>>>> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *output = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------------------
// The response direction: a raw control that writes a generated response.

/// A generated control response to `GET …/a`.
#[derive(Debug, Clone)]
pub struct ResponseCase {
    /// The control's bytes, one write each.
    pub pieces: Vec<Vec<u8>>,
    /// The control keeps the connection open after writing (when the response does not
    /// depend on the close to end).
    pub keep_open: bool,
}

async fn raw_control(
    listener: TcpListener,
    pieces: Arc<Vec<Vec<u8>>>,
    close_after: bool,
    nonce: Arc<String>,
) {
    let mut connections = JoinSet::new();
    while let Ok((mut stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let (pieces, nonce) = (pieces.clone(), nonce.clone());
        connections.spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let (request, used) = match strict::request(&buf, false) {
                    Ok(Some(r)) => r,
                    Ok(None) => match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            continue;
                        }
                    },
                    Err(_) => return,
                };
                buf.drain(..used);
                if request.target.ends_with(b"/a") {
                    for piece in pieces.iter() {
                        if stream.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                    if close_after {
                        return;
                    }
                } else {
                    let tag = if request.target.ends_with(b"/b") {
                        "b"
                    } else if request.target.ends_with(b"/v") {
                        "v"
                    } else {
                        "?"
                    };
                    let body = format!("{tag}-{nonce}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// What the control means by `stream`: its final response to a GET, when the stream holds
/// one that is valid and unambiguous, and whether leftover bytes follow it.
pub fn meant_response(stream: &[u8]) -> Result<(strict::Response, bool), String> {
    match strict::final_response(stream, false, false, true)? {
        Some((response, used)) => Ok((response, used < stream.len())),
        None => Err("incomplete".into()),
    }
}

/// Has the control answer `GET /…/a` with `case`'s bytes through a fresh tap, the client
/// pipelining `GET /…/b` behind it, then a victim asking on a new connection; checks the
/// response direction's invariants.
pub fn check_response(case: &ResponseCase) -> Result<ResponseOutcome, Violation> {
    run(check_response_async(case))
}

async fn check_response_async(case: &ResponseCase) -> Result<ResponseOutcome, Violation> {
    let setup = |e: io::Error| Violation {
        invariant: "harness setup",
        detail: e.to_string(),
    };
    let stream = case.pieces.concat();
    let meant = meant_response(&stream);
    // A body ended by the close, or a stream no parser can end: the control must close.
    let (close_after, pieces) = match &meant {
        Ok((m, _)) if m.until_close => (true, case.pieces.clone()),
        Err(_) => (true, case.pieces.clone()),
        // Unasked-for bytes after the response arrive together with it.
        Ok((_, true)) => (!case.keep_open, vec![stream.clone()]),
        Ok(_) => (!case.keep_open, case.pieces.clone()),
    };
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(setup)?;
    let control_addr = listener.local_addr().map_err(setup)?;
    static NONCE: AtomicUsize = AtomicUsize::new(0);
    let nonce = format!(
        "{:x}{:x}",
        NONCE.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let control_task = tokio::spawn(raw_control(
        listener,
        Arc::new(pieces),
        close_after,
        Arc::new(nonce.clone()),
    ));
    let tap = start_tap(control_addr).await.map_err(setup)?;

    let requests = format!(
        "GET /r-{nonce}/a HTTP/1.1\r\nhost: client\r\n\r\nGET /r-{nonce}/b HTTP/1.1\r\nhost: client\r\n\r\n"
    );
    let first = client(tap.addr, &[requests.clone().into_bytes()]).await;
    let victim_request = format!("GET /r-{nonce}/v HTTP/1.1\r\nhost: victim\r\n\r\n");
    let victim = client(tap.addr, &[victim_request.into_bytes()]).await;
    drop(tap._stop);
    control_task.abort();

    let fail = |invariant: &'static str, what: String| {
        Violation {
        invariant,
        detail: format!(
            "{what}\nEvidence:\n  control wrote {} in {} pieces (then {})\n  strict reading of it: {}\n  client sent {}\n  client received {}\n  victim received {}",
            show(&stream),
            case.pieces.len(),
            if close_after { "closed" } else { "kept the connection open" },
            match &meant {
                Ok((m, leftover)) => format!(
                    "status {} body {}{}{}",
                    m.status,
                    show(&m.body),
                    if m.until_close { " (until close)" } else { "" },
                    if *leftover { " and unasked-for bytes after it" } else { "" }
                ),
                Err(why) => format!("invalid or ambiguous: {why}"),
            },
            show(requests.as_bytes()),
            show(&first.received),
            show(&victim.received),
        ),
    }
    };

    if first.timed_out || victim.timed_out {
        return Err(fail(
            "liveness: the tap neither answered nor closed a client connection in time",
            String::new(),
        ));
    }
    let (answers, end) = strict::responses(&first.received, |_| false, true);
    if let strict::End::Error { at, why } = &end {
        return Err(fail(
            "clean answers: the client got bytes a strict parser rejects",
            format!("at byte {at}: {why}"),
        ));
    }
    if end == strict::End::Incomplete && !answers.is_empty() {
        return Err(fail(
            "clean answers: the second response was cut",
            String::new(),
        ));
    }
    let outcome = match answers.first() {
        None => ResponseOutcome::Closed,
        Some(a) => {
            let exact = meant
                .as_ref()
                .is_ok_and(|(m, _)| m.status == a.status && m.body == a.body);
            if exact {
                ResponseOutcome::Exact
            } else if matches!(a.status, 502 | 504) {
                ResponseOutcome::Refused
            } else {
                return Err(fail(
                    "meant response: the client got a response the control did not mean",
                    format!("status {} body {}", a.status, show(&a.body)),
                ));
            }
        }
    };
    let own = |a: &strict::Response, tag: &str| {
        a.status == 200 && a.body == format!("{tag}-{nonce}").as_bytes()
    };
    let until_close = answers.first().is_some_and(|a| a.until_close);
    match answers.get(1) {
        Some(b) if until_close => {
            return Err(fail(
                "one response each: a response after one delimited by the close",
                format!("status {}", b.status),
            ))
        }
        Some(b) if !own(b, "b") && !matches!(b.status, 502 | 504) => return Err(fail(
            "own answers: the second request on the connection got a response that is not its own",
            format!("status {} body {}", b.status, show(&b.body)),
        )),
        None if outcome == ResponseOutcome::Exact && !until_close => {
            return Err(fail(
                "own answers: the second request on the connection got no response",
                String::new(),
            ))
        }
        _ => {}
    }
    if answers.len() > 2 {
        return Err(fail(
            "one response each: the client got a response it did not ask for",
            format!("{} responses to 2 requests", answers.len()),
        ));
    }
    let (victim_answers, victim_end) = strict::responses(&victim.received, |_| false, true);
    if victim_end != strict::End::Clean
        || victim_answers.len() != 1
        || !own(&victim_answers[0], "v")
    {
        return Err(fail(
            "own answers: another client's request did not get exactly its own response",
            format!("{victim_end:?}"),
        ));
    }
    Ok(outcome)
}
