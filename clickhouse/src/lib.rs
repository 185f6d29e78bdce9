//! ClickHouse store for shadowdiff.
//!
//! - [`ClickHouseStore::migrate`] creates and upgrades the schema (works on Debian's 18.16 and on
//!   current releases, where it uses `LowCardinality` columns).
//! - [`ClickHouseStore::insert_batch`] writes one row per exchange × target; `Ok` means the rows
//!   are committed. [`ClickHouseSink`] adapts it to the store's synchronous [`RecordSink`].
//! - [`ClickHouseStore::report`] computes the report contract in SQL, with the same numbers as
//!   [`shadowdiff_store::build_report`] on the same records.
//!
//! [`RecordSink`]: shadowdiff_store::RecordSink

mod config;
mod migrate;
mod report;
mod retry;
mod row;
mod sink;
mod store;

pub use config::ClickHouseConfig;
pub use migrate::{
    retention_sql, schema_sql, Flavor, Migration, Partition, SchemaOptions, Step, MIGRATIONS,
};
pub use retry::retry_with_backoff;
pub use row::DiffRow;
/// The backoff of [`retry_with_backoff`] (shadowdiff's one backoff type).
pub use shadowdiff_net::Backoff;
pub use shadowdiff_store::gate::{gate, GateConfig, GateOutcome};
pub use sink::ClickHouseSink;
pub use store::ClickHouseStore;

/// Errors of the ClickHouse store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the request.
    #[error("ClickHouse unavailable: {0}")]
    Unavailable(#[source] clickhouse::error::Error),
    /// The server was reached but a query or insert failed.
    #[error("ClickHouse {what} failed: {source}")]
    Query {
        /// What was attempted (`version query`, `insert`, …).
        what: &'static str,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// The configuration is unusable (a database name that cannot go into SQL).
    #[error("invalid ClickHouse configuration: {0}")]
    Config(String),
    /// The SQL runner of [`ClickHouseStore::report_with_sql_runner`] failed, or answered rows
    /// that do not read.
    #[error("ClickHouse {what} failed: {message}")]
    Runner {
        /// The query.
        what: &'static str,
        /// The runner's error, or the row that did not read.
        message: String,
    },
    /// [`ClickHouseSink::with_own_runtime`] could not build its runtime.
    #[error("cannot start the ClickHouse I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    fn query(what: &'static str) -> impl FnOnce(clickhouse::error::Error) -> Self {
        move |source| {
            if is_unavailable(&source) {
                Self::Unavailable(source)
            } else {
                Self::Query { what, source }
            }
        }
    }
}

fn is_unavailable(e: &clickhouse::error::Error) -> bool {
    matches!(
        e,
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
    )
}

impl From<Error> for shadowdiff_store::StoreError {
    fn from(e: Error) -> Self {
        shadowdiff_store::StoreError::Unavailable(Box::new(e))
    }
}
