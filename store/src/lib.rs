//! Where diff records go, and how reports are computed from them.
//!
//! - [`RecordSink`]: the differ's output seam. [`EmbeddedStore`] writes JSON lines under a data
//!   directory (no server); the ClickHouse store implements the same trait.
//! - [`report`]: the report contract (docs/contracts.md#report), built from records by one pure
//!   function so that every store reports the same numbers.

mod embedded;
pub mod gate;
pub mod html;
pub mod report;
pub mod stats;
pub mod text;
pub mod verdicts;

pub use embedded::{EmbeddedStore, ReadStats};
pub use report::{build_report, redelivery_order, Report, ReportQuery};

use shadowdiff_model::DiffRecord;

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the embedded store's data directory failed.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory or segment file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A remote store (ClickHouse) could not take the batch; the caller retries.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Receives diff records in batches. A batch is durable once `write_batch` returned `Ok`.
pub trait RecordSink: Send {
    /// Stores `records`; `Ok` only once all of them are durable.
    fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError>;
}
