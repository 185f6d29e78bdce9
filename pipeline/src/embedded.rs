//! `shadowdiff run`: every stage in one process, joined by bounded in-memory queues.

use crate::admin::{start_admin, ReadyCheck};
use crate::config::Settings;
use crate::stages::{
    exchange_bytes, run_replay_stage, spawn_on_own_thread, until_true, DiffWorkers, PipelineStats,
    Tap,
};
use shadowdiff_capture::redact::RedactingSink;
use shadowdiff_capture::{ExchangeSink, OfferError};
use shadowdiff_differ::Differ;
use shadowdiff_model::Exchange;
use shadowdiff_store::RecordSink;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Notify};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// Counts what the tap offers, so the run summary and tests see drops per pipeline; refuses
/// exchanges beyond `max_bytes` in flight between the tap and the differ.
struct CountingSink {
    tx: mpsc::Sender<Exchange>,
    stats: Arc<PipelineStats>,
    max_bytes: u64,
}

impl ExchangeSink for CountingSink {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        let size = exchange_bytes(&exchange);
        let before = self.stats.inflight_bytes.fetch_add(size, Ordering::Relaxed);
        let result = if before.saturating_add(size) > self.max_bytes {
            Err(OfferError::Full)
        } else {
            self.tx.offer(exchange)
        };
        if result.is_err() {
            self.stats.inflight_bytes.fetch_sub(size, Ordering::Relaxed);
        }
        self.stats.count_offer(&result);
        result
    }
}

/// A running embedded pipeline.
pub struct EmbeddedPipeline {
    /// Where the tap listens.
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// Where the in-process egress sandbox listens (`[sandbox] listen`).
    pub sandbox_addr: Option<SocketAddr>,
    pub stats: Arc<PipelineStats>,
    shutdown: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl EmbeddedPipeline {
    /// Binds the tap (and admin) addresses and starts every stage.
    pub async fn start(
        settings: Settings,
        sink: Box<dyn RecordSink>,
    ) -> Result<Self, PipelineError> {
        crate::telemetry::describe();
        let stats = Arc::new(PipelineStats::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (listener, addr) = shadowdiff_capture::server::bind(settings.listen)
            .await
            .map_err(|source| PipelineError::Bind {
                addr: settings.listen,
                source,
            })?;

        let admin_addr = match settings.admin {
            Some(admin) => {
                let control = settings
                    .control
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let checks = vec![ReadyCheck::tcp("control", control)];
                let (bound, _task) = start_admin(admin, checks, until_true(shutdown_rx.clone()))
                    .await
                    .map_err(|source| PipelineError::Bind {
                        addr: admin,
                        source,
                    })?;
                Some(bound)
            }
            None => None,
        };

        let (exchange_tx, exchange_rx) = mpsc::channel::<Exchange>(settings.queue_capacity);
        // Secrets are redacted before an exchange leaves the tap.
        let tap_sink: Arc<dyn ExchangeSink> = Arc::new(RedactingSink::new(
            Arc::new(settings.redactor.clone()),
            Arc::new(CountingSink {
                tx: exchange_tx,
                stats: stats.clone(),
                max_bytes: settings.queue_max_bytes,
            }),
        ));
        let tap =
            Tap::new(&settings, tap_sink).map_err(|e| PipelineError::Config(e.to_string()))?;
        // The sandbox outlives the replays: candidates call it while they answer.
        let (sandbox_stop, sandbox_stop_rx) = watch::channel(false);
        let sandbox = crate::offline::start_sandbox(&settings, until_true(sandbox_stop_rx)).await?;
        let sandbox_addr = sandbox.as_ref().map(|s| s.addr);
        let replayer = Arc::new(crate::offline::build_replayer(
            &settings,
            sandbox.as_ref().map(|s| &s.log),
        )?);
        let differ = Arc::new(Differ::new(settings.rules.clone(), settings.routes.clone()));

        let (results_tx, workers) = DiffWorkers::start(
            differ,
            settings.diff_workers,
            settings.result_queue,
            sink,
            stats.clone(),
        )
        .map_err(PipelineError::Thread)?;
        let close_queue = Arc::new(Notify::new());
        let replay = spawn_on_own_thread(
            "shadowdiff-replay",
            run_replay_stage(
                exchange_rx,
                close_queue.clone(),
                replayer,
                settings.replay_concurrency,
                results_tx,
                stats.clone(),
            ),
        )
        .map_err(PipelineError::Thread)?;
        let grace = settings.shutdown_grace;
        let threads = settings.tap_threads;
        let serve = tokio::spawn(async move {
            if let Err(error) = tap
                .serve(listener, threads, until_true(shutdown_rx), grace)
                .await
            {
                tracing::error!(%error, "The tap could not start its serving threads.");
            }
        });
        tracing::info!(%addr, control = %settings.control, mode = ?settings.mode, "Tap listening.");

        // Drain in data-flow order: tap, queue, replays, differs, writer.
        let done = tokio::spawn(async move {
            let _ = serve.await;
            close_queue.notify_one();
            let _ = replay.await;
            let _ = sandbox_stop.send(true);
            if let Some(s) = sandbox {
                let _ = s.task.await;
            }
            workers.join().await;
        });

        Ok(Self {
            addr,
            admin_addr,
            sandbox_addr,
            stats,
            shutdown,
            done,
        })
    }

    /// Stops accepting, finishes in-flight work, writes every result, then returns.
    pub async fn shutdown(self) -> Arc<PipelineStats> {
        let _ = self.shutdown.send(true);
        let _ = self.done.await;
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{Body, HttpRequest, HttpResponse, SCHEMA_VERSION};

    fn exchange(body_len: usize) -> Exchange {
        Exchange {
            schema_version: SCHEMA_VERSION,
            id: "id".into(),
            captured_at_ms: 0,
            source: "tee".into(),
            experiment: "e".into(),
            request: HttpRequest {
                method: "GET".into(),
                uri: "/".into(),
                headers: Vec::new(),
                body: Body::complete(Vec::new()),
            },
            control: Some(HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: Body::complete(vec![b'x'; body_len]),
                latency_us: 0,
            }),
            redactions: Vec::new(),
            sample_rate: 1.0,
        }
    }

    #[test]
    fn the_byte_bound_drops_and_counts_beyond_queue_max_bytes() {
        let (tx, mut rx) = mpsc::channel(100);
        let stats = Arc::new(PipelineStats::default());
        let sink = CountingSink {
            tx,
            stats: stats.clone(),
            max_bytes: 10_000,
        };
        assert_eq!(sink.offer(exchange(4_000)), Ok(()));
        assert_eq!(sink.offer(exchange(4_000)), Ok(()));
        // A third would pass the count bound (100) but not the byte bound.
        assert_eq!(sink.offer(exchange(4_000)), Err(OfferError::Full));
        assert_eq!(PipelineStats::get(&stats.captured), 2);
        assert_eq!(PipelineStats::get(&stats.dropped_queue_full), 1);
        let held = PipelineStats::get(&stats.inflight_bytes);
        assert_eq!(held, 2 * exchange_bytes(&exchange(4_000)));
        // The differ gives the bytes back; room again.
        let first = rx.try_recv().ok();
        assert!(first.is_some());
        stats
            .inflight_bytes
            .fetch_sub(held / 2, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(sink.offer(exchange(4_000)), Ok(()));
    }
}
