//! Where the replayer learns which side effects the egress sandbox blocked for an exchange.
//!
//! The sandbox records each blocked outbound call (`METHOD host/path`) under the exchange id the
//! replayer sent in `x-shadow-exchange-id` (the candidate forwards it). Right after every target
//! answered, the replayer asks a [`SideEffectSource`] for that id and attaches the list to
//! `ReplayResult.side_effects`. In one process the source is the sandbox's in-memory log; across
//! processes it is [`HttpSideEffects`], which asks `GET /side-effects/{id}` on the sandbox.

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future returned by [`SideEffectSource::take`].
pub type SideEffectsFuture<'a> = Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>>;

/// Blocked side effects by exchange id. Lookups must be bounded in time; on failure, an empty
/// list (and a log line) rather than an error: a missing list must not lose the diff.
pub trait SideEffectSource: Send + Sync + 'static {
    /// The side effects recorded for `exchange_id`, removing them where the source can.
    fn take<'a>(&'a self, exchange_id: &'a str) -> SideEffectsFuture<'a>;
}

/// Asks a standalone sandbox over HTTP: `GET {base}/side-effects/{id}` → JSON array of strings.
pub struct HttpSideEffects {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
    timeout: Duration,
}

impl HttpSideEffects {
    /// `base` is the sandbox's URL, e.g. `http://127.0.0.1:3128`.
    pub fn new(base: &Uri, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.to_string().trim_end_matches('/').to_string(),
            timeout,
        }
    }

    async fn fetch(&self, exchange_id: &str) -> Result<Vec<String>, String> {
        let uri: Uri = format!("{}/side-effects/{exchange_id}", self.base)
            .parse()
            .map_err(|e| format!("bad lookup URL: {e}"))?;
        let response = self
            .client
            .get(uri)
            .await
            .map_err(|e| format!("sandbox unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("sandbox answered {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("sandbox answer cut: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("sandbox answer is not a JSON list: {e}"))
    }
}

impl SideEffectSource for HttpSideEffects {
    fn take<'a>(&'a self, exchange_id: &'a str) -> SideEffectsFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.fetch(exchange_id)).await {
                Ok(Ok(list)) => list,
                Ok(Err(error)) => {
                    tracing::warn!(exchange_id, error, "Side-effect lookup failed.");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(exchange_id, "Side-effect lookup timed out.");
                    Vec::new()
                }
            }
        })
    }
}
