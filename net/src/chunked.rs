//! An incremental, strict decoder for HTTP/1.1 chunked bodies (RFC 9112 §7.1), shared by the
//! tap's relay and the replayer's client ([`crate::h1`]). The relay
//! never forwards chunked framing as it came: it decodes the body here and writes a clean
//! encoding of its own, so a receiver that reads framing more leniently than this decoder can
//! never find a different end of the body. Everything RFC 9112 allows a recipient to reject is
//! rejected: a size line that is not hex digits, optional whitespace and `;` extensions ended
//! by CRLF; a bare CR or LF or any other control character in an extension or a trailer; a
//! trailer line that is not `name: value`.

/// Longest chunk-size line (digits and extensions) and trailer section accepted.
const MAX_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size that is not 1 to 16 hex digits.
    #[error("invalid chunk size")]
    Size,
    /// A size line (digits and extensions) longer than 4 KiB.
    #[error("chunk size line or extension too long")]
    LineTooLong,
    /// A chunk extension that is not `;name[=token|quoted-string]`.
    #[error("control character or bare CR/LF in a chunk extension")]
    Extension,
    /// A size line or chunk data not followed by CRLF.
    #[error("chunk size line or data not ended by CRLF")]
    MissingCrlf,
    /// A trailer line that is not `name: value`.
    #[error("malformed trailer field")]
    Trailer,
    /// A trailer section longer than 16 KiB.
    #[error("trailer section too long")]
    TrailersTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Size,
    /// Whitespace after the size or an extension: only more, `;` or CR may follow.
    ExtSpace,
    /// After `;`: whitespace, then an extension name.
    ExtNameStart,
    ExtName,
    /// Whitespace after a name: `=`, `;` or CR may follow.
    ExtAfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtValueStart,
    ExtValueToken,
    ExtQuoted,
    ExtQuotedEscape,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

use crate::h1::is_token;

/// Field content and extension text: visible characters, space, tab and obs-text; no other
/// control character (CR and LF in particular) can appear inside a line.
fn is_line_text(byte: u8) -> bool {
    byte == b'\t' || (byte >= 0x20 && byte != 0x7f)
}

/// One byte of `chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`
/// (RFC 9112 §7.1.1), whitespace before the CRLF tolerated.
fn extension_step(state: State, byte: u8) -> Result<State, ChunkError> {
    let space = byte == b' ' || byte == b'\t';
    Ok(match (state, byte) {
        (State::ExtQuoted, b'"') => State::ExtSpace,
        (State::ExtQuoted, b'\\') => State::ExtQuotedEscape,
        (State::ExtQuoted, b) if is_line_text(b) => State::ExtQuoted,
        (State::ExtQuotedEscape, b) if is_line_text(b) => State::ExtQuoted,
        (State::ExtQuoted | State::ExtQuotedEscape, _) => return Err(ChunkError::Extension),
        (State::ExtValueStart, b'"') => State::ExtQuoted,
        (State::ExtNameStart | State::ExtValueStart, _) if space => state,
        (State::ExtNameStart | State::ExtName, b) if is_token(b) => State::ExtName,
        (State::ExtValueStart | State::ExtValueToken, b) if is_token(b) => State::ExtValueToken,
        (State::ExtName | State::ExtAfterName, _) if space => State::ExtAfterName,
        (State::ExtName | State::ExtAfterName, b'=') => State::ExtValueStart,
        (State::ExtSpace | State::ExtValueToken, _) if space => State::ExtSpace,
        (State::ExtSpace | State::ExtName | State::ExtAfterName | State::ExtValueToken, b';') => {
            State::ExtNameStart
        }
        (State::ExtSpace | State::ExtName | State::ExtAfterName | State::ExtValueToken, b'\r') => {
            State::SizeLf
        }
        _ => return Err(ChunkError::Extension),
    })
}

/// Decodes one chunked body fed in pieces of any size.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read, then what is left of its data.
    size: u64,
    digits: usize,
    line: usize,
    trailers: usize,
}

impl ChunkedDecoder {
    /// True once the last chunk and the trailer section were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads as much of `input` as belongs to the body, calling `on_data` with each piece of
    /// chunk data. Returns how many bytes of `input` were part of the body; fewer than
    /// `input.len()` only when the body ended (the rest is the next message).
    pub fn feed(
        &mut self,
        input: &[u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            let byte = input[at];
            match self.state {
                State::Done => return Ok(at),
                State::Size => {
                    let digit = match byte {
                        b'0'..=b'9' => byte - b'0',
                        b'a'..=b'f' => byte - b'a' + 10,
                        b'A'..=b'F' => byte - b'A' + 10,
                        b' ' | b'\t' if self.digits > 0 => {
                            self.state = State::ExtSpace;
                            at += 1;
                            continue;
                        }
                        b';' if self.digits > 0 => {
                            self.state = State::ExtNameStart;
                            at += 1;
                            continue;
                        }
                        b'\r' if self.digits > 0 => {
                            self.state = State::SizeLf;
                            at += 1;
                            continue;
                        }
                        _ => return Err(ChunkError::Size),
                    };
                    // 16 hex digits fill a u64.
                    if self.digits >= 16 {
                        return Err(ChunkError::Size);
                    }
                    self.size = (self.size << 4) | u64::from(digit);
                    self.digits += 1;
                    at += 1;
                }
                State::ExtSpace
                | State::ExtNameStart
                | State::ExtName
                | State::ExtAfterName
                | State::ExtValueStart
                | State::ExtValueToken
                | State::ExtQuoted
                | State::ExtQuotedEscape => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    self.state = extension_step(self.state, byte)?;
                    at += 1;
                }
                State::SizeLf => {
                    if byte != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.digits = 0;
                    self.line = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                    at += 1;
                }
                State::Data => {
                    let available = (input.len() - at) as u64;
                    let take = self.size.min(available) as usize;
                    on_data(&input[at..at + take]);
                    self.size -= take as u64;
                    at += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if byte != b'\r' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::DataLf;
                    at += 1;
                }
                State::DataLf => {
                    if byte != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::Size;
                    at += 1;
                }
                State::TrailerStart | State::TrailerName | State::TrailerValue => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(ChunkError::TrailersTooLong);
                    }
                    self.state = match (self.state, byte) {
                        (State::TrailerStart, b'\r') => State::FinalLf,
                        // A field name is one token or more, then the colon.
                        (State::TrailerStart | State::TrailerName, b) if is_token(b) => {
                            State::TrailerName
                        }
                        (State::TrailerName, b':') => State::TrailerValue,
                        (State::TrailerValue, b'\r') => State::TrailerLf,
                        (State::TrailerValue, b) if is_line_text(b) => State::TrailerValue,
                        _ => return Err(ChunkError::Trailer),
                    };
                    at += 1;
                }
                State::TrailerLf => {
                    if byte != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::TrailerStart;
                    at += 1;
                }
                State::FinalLf => {
                    if byte != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::Done;
                    at += 1;
                }
            }
        }
        Ok(at)
    }
}

/// Writes one chunk of a clean chunked encoding: hex size, CRLF, data, CRLF.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        // A zero-size chunk would end the body.
        return;
    }
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut at = digits.len();
    while n > 0 || at == digits.len() {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section: the received trailers are never forwarded.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (data, bytes consumed, done).
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut data = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step) {
            let used = decoder.feed(piece, &mut |d| data.extend_from_slice(d))?;
            consumed += used;
            if used < piece.len() {
                break;
            }
        }
        Ok((data, consumed, decoder.is_done()))
    }

    #[test]
    fn decodes_in_any_split_and_stops_at_the_end() {
        let body =
            b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let end = body.len() - b"GET / HTTP/1.1\r\n".len();
        for step in 1..body.len() {
            let (data, consumed, done) = decode(body, step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            assert_eq!(consumed, end, "step {step}");
            assert!(done);
        }
    }

    #[test]
    fn encodes_clean_chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"");
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, &[b'x'; 26]);
        out.extend_from_slice(LAST_CHUNK);
        let mut expected = b"5\r\nhello\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 26]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
        let (data, consumed, done) = decode(&out, 7).unwrap();
        assert_eq!(data.len(), 31);
        assert_eq!(consumed, out.len());
        assert!(done);
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (data, consumed, done) = decode(b"a\r\n01234", 3).unwrap();
        assert_eq!(data, b"01234");
        assert_eq!(consumed, 8);
        assert!(!done);
    }

    #[test]
    fn rejects_malformed_framing() {
        assert_eq!(decode(b"x\r\n", 8).unwrap_err(), ChunkError::Size);
        assert_eq!(decode(b"\r\n", 8).unwrap_err(), ChunkError::Size);
        assert_eq!(
            decode(b"11111111111111111\r\n", 32).unwrap_err(),
            ChunkError::Size
        );
        assert_eq!(
            decode(b"3\r\nabcX", 8).unwrap_err(),
            ChunkError::MissingCrlf
        );
        // Line ends inside extensions and trailers must be CRLF, and nothing but text may
        // sit between them: a receiver that ends lines at LF would see another body end.
        assert_eq!(
            decode(b"3;a\nb\r\nabc\r\n0\r\n\r\n", 64).unwrap_err(),
            ChunkError::Extension
        );
        assert_eq!(
            decode(b"3;a\rb\r\nabc\r\n0\r\n\r\n", 64).unwrap_err(),
            ChunkError::MissingCrlf
        );
        assert_eq!(
            decode(b"3;a\x00\r\nabc\r\n0\r\n\r\n", 64).unwrap_err(),
            ChunkError::Extension
        );
        assert_eq!(decode(b"3 x\r\n", 64).unwrap_err(), ChunkError::Extension);
        // The extension grammar: a name after every `;`, a token or quoted string after `=`.
        for bad in [
            &b"3;\r\n"[..],
            b"3;=x\r\n",
            b"3;a=\r\n",
            b"3;\"x\r\n",
            b"3;a=\"x\r\n",
            b"3;a=b c\r\n",
            b"3;a=\"\\\n\"\r\n",
        ] {
            assert_eq!(
                decode(bad, 64).unwrap_err(),
                ChunkError::Extension,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [
            &b"3;a\r\nabc\r\n0\r\n\r\n"[..],
            b"3 ; a = b ; c=\"d\\\"e;\" \r\nabc\r\n0\r\n\r\n",
            b"3;a;b=c\r\nabc\r\n0;x=y\r\n\r\n",
        ] {
            let (data, _, done) = decode(good, 3).unwrap();
            assert_eq!(data, b"abc", "{:?}", String::from_utf8_lossy(good));
            assert!(done);
        }
        assert_eq!(
            decode(b"0\r\nx-t: 1\nGET / HTTP/1.1\r\n\r\n", 64).unwrap_err(),
            ChunkError::Trailer
        );
        assert_eq!(decode(b"0\r\n\nGET", 64).unwrap_err(), ChunkError::Trailer);
        assert_eq!(
            decode(b"0\r\nno colon\r\n\r\n", 64).unwrap_err(),
            ChunkError::Trailer
        );
        assert_eq!(
            decode(b"0\r\n folded: 1\r\n\r\n", 64).unwrap_err(),
            ChunkError::Trailer
        );
        assert_eq!(
            decode(b"0\r\nx-t: 1\r\r\n\r\n", 64).unwrap_err(),
            ChunkError::MissingCrlf
        );
        // Whitespace before an extension and a valid trailer are fine.
        let (data, _, done) = decode(b"3 \t;a=\"b c\"\r\nabc\r\n0\r\nx-t: 1\r\n\r\n", 5).unwrap();
        assert_eq!(data, b"abc");
        assert!(done);
        // A bare LF is not a line end here.
        assert_eq!(decode(b"3\nabc", 8).unwrap_err(), ChunkError::Size);
        let long_extension = [b"1;".as_slice(), &[b'a'; MAX_LINE + 1]].concat();
        assert_eq!(
            decode(&long_extension, 64).unwrap_err(),
            ChunkError::LineTooLong
        );
        let long_trailers = [b"0\r\n".as_slice(), &[b'a'; MAX_TRAILERS + 1]].concat();
        assert_eq!(
            decode(&long_trailers, 64).unwrap_err(),
            ChunkError::TrailersTooLong
        );
    }
}
