//! The tap's redaction step: an [`ExchangeSink`] that redacts every exchange (with
//! [`shadowdiff_model::redact::Redactor`]) before it leaves the tap.

use crate::{ExchangeSink, OfferError};
use shadowdiff_model::redact::Redactor;
use shadowdiff_model::Exchange;
use std::sync::Arc;

/// A sink that redacts every exchange before handing it on.
pub struct RedactingSink {
    redactor: Arc<Redactor>,
    inner: Arc<dyn ExchangeSink>,
}

impl RedactingSink {
    /// Redacts with `redactor`, then offers to `inner`.
    pub fn new(redactor: Arc<Redactor>, inner: Arc<dyn ExchangeSink>) -> Self {
        Self { redactor, inner }
    }
}

impl ExchangeSink for RedactingSink {
    fn offer(&self, mut exchange: Exchange) -> Result<(), OfferError> {
        self.redactor.redact(&mut exchange);
        self.inner.offer(exchange)
    }
}
