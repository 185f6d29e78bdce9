//! shadowdiff's HTTP plumbing, shared by the tap, the replayer, the sandbox and the admin and
//! demo servers:
//!
//! - [`server`]: accept loops (one runtime, or one single-threaded runtime per serving
//!   thread, nginx-style) with graceful shutdown.
//! - [`pool`]: kept-alive connections to one HTTP/1.1 server, plain or TLS ([`pool::Upstream`]
//!   for hyper; [`pool::Endpoint`] and the shared pool limits for the tap's own relay).
//! - [`h1`]: strict HTTP/1.1 framing shared by the tap's relay and the replayer, and the
//!   replayer's own client ([`h1::ConnectionPool`]); [`chunked`]: the strict chunked decoder.
//! - [`tls`]: the outbound TLS settings (roots, a custom CA, a client certificate for mTLS).
//! - [`backoff`]: the one exponential backoff for retry loops.

pub mod backoff;
pub mod chunked;
pub mod h1;
pub mod pool;
pub mod server;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod tls;

pub use backoff::Backoff;
