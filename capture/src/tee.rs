//! A body wrapper that passes every frame through untouched and keeps a bounded copy.

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a tee saw of a body.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The first `limit` bytes.
    pub bytes: Bytes,
    /// Bytes that crossed, in total.
    pub full_len: u64,
    /// True when the body ended normally (not cut by an error or a dropped connection).
    pub complete: bool,
}

impl Captured {
    /// Whether `bytes` is less than the whole body: cut at the limit, or the body never ended.
    pub fn truncated(&self) -> bool {
        (self.bytes.len() as u64) < self.full_len || !self.complete
    }
}

type OnEnd = Box<dyn FnOnce(Captured) + Send + 'static>;

/// Single-frame bodies up to this size are copied out of the connection's read buffer.
const COPY_BELOW: usize = 64 * 1024;

/// Bounded copy of a stream of frames. Frames are reference-counted `Bytes`, so keeping them
/// costs no copy; the one copy happens when the body ends, and only if it came in pieces.
struct Tap {
    chunks: Vec<Bytes>,
    kept: usize,
    seen: u64,
    limit: usize,
    on_end: Option<OnEnd>,
}

impl Tap {
    fn observe(&mut self, data: &Bytes) {
        self.seen += data.len() as u64;
        let room = self.limit - self.kept;
        if room > 0 && !data.is_empty() {
            let piece = if data.len() <= room {
                data.clone()
            } else {
                data.slice(..room)
            };
            self.kept += piece.len();
            self.chunks.push(piece);
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(on_end) = self.on_end.take() {
            let chunks = std::mem::take(&mut self.chunks);
            let bytes = match chunks.len() {
                0 => Bytes::new(),
                // A frame is a slice of the connection's read buffer and would keep all of it
                // alive while the exchange waits in the queue; copy small bodies (cheap) so a
                // queued exchange holds only its own bytes.
                1 if self.kept <= COPY_BELOW => Bytes::copy_from_slice(&chunks[0]),
                1 => chunks.into_iter().next().unwrap_or_default(),
                _ => {
                    let mut buf = BytesMut::with_capacity(self.kept);
                    for c in chunks {
                        buf.extend_from_slice(&c);
                    }
                    buf.freeze()
                }
            };
            on_end(Captured {
                bytes,
                full_len: self.seen,
                complete,
            });
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropped before the end: the client went away or the body failed.
        self.finish(false);
    }
}

pin_project! {
    /// Wraps a body; calls `on_end` once with the capture when the body ends or is dropped.
    pub struct TeeBody<B> {
        #[pin]
        inner: B,
        tap: Tap,
    }
}

impl<B: Body> TeeBody<B> {
    /// Wraps `inner`, keeping up to `limit` bytes for `on_end`.
    pub fn new(inner: B, limit: usize, on_end: impl FnOnce(Captured) + Send + 'static) -> Self {
        let mut tap = Tap {
            chunks: Vec::new(),
            kept: 0,
            seen: 0,
            limit,
            on_end: Some(Box::new(on_end)),
        };
        // Servers never poll a body that is known to be empty; it is complete already.
        if inner.is_end_stream() {
            tap.finish(true);
        }
        Self { inner, tap }
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.tap.observe(data);
                }
                // Hyper stops polling once a body says it has ended; don't wait for `None`.
                if this.inner.is_end_stream() {
                    this.tap.finish(true);
                }
            }
            Poll::Ready(None) => this.tap.finish(true),
            Poll::Ready(Some(Err(_))) => this.tap.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn passes_everything_and_keeps_a_bounded_copy() {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
        ];
        let seen = Arc::new(Mutex::new(None));
        let slot = seen.clone();
        let body = TeeBody::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            8,
            move |c| {
                *slot.lock().unwrap() = Some(c);
            },
        );
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"hello world");
        let c = seen.lock().unwrap().clone().unwrap();
        assert_eq!(&c.bytes[..], b"hello wo");
        assert_eq!(c.full_len, 11);
        assert!(c.complete && c.truncated());
    }
}
