use crate::store::ClickHouseStore;
use crate::Error;
use shadowdiff_model::DiffRecord;
use shadowdiff_store::{RecordSink, StoreError};
use tokio::runtime::{Handle, Runtime};

enum Exec {
    Handle(Handle),
    Own(Runtime),
}

/// [`RecordSink`] over a [`ClickHouseStore`]: `write_batch` blocks until the rows are committed
/// and fails with [`StoreError::Unavailable`] otherwise; the caller retries and stores no Kafka
/// offsets meanwhile.
///
/// `write_batch` blocks the calling thread, so call it outside async code (a dedicated thread or
/// `spawn_blocking`); blocking inside a runtime panics.
pub struct ClickHouseSink {
    store: ClickHouseStore,
    exec: Exec,
}

impl ClickHouseSink {
    /// A sink that runs its requests on an existing runtime.
    pub fn new(store: ClickHouseStore, handle: Handle) -> Self {
        Self {
            store,
            exec: Exec::Handle(handle),
        }
    }

    /// A sink with its own single-threaded runtime, for callers without one.
    pub fn with_own_runtime(store: ClickHouseStore) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Self {
            store,
            exec: Exec::Own(runtime),
        })
    }

    /// The store the sink writes to.
    pub fn store(&self) -> &ClickHouseStore {
        &self.store
    }
}

impl RecordSink for ClickHouseSink {
    fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError> {
        let fut = self.store.insert_batch(records);
        let result = match &self.exec {
            Exec::Handle(h) => h.block_on(fut),
            Exec::Own(rt) => rt.block_on(fut),
        };
        result.map_err(|e| {
            tracing::warn!(error = %e, rows = records.len(), "ClickHouse insert failed.");
            StoreError::from(e)
        })
    }
}
