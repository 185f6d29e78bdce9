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
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// exchanges beyond `max_bytes` in flight between the tap and the differ. With several replay
/// threads, exchanges go to their queues in turn (the next one with room when one is full).
struct CountingSink {
    shards: Vec<mpsc::Sender<Exchange>>,
    next: AtomicUsize,
    stats: Arc<PipelineStats>,
    max_bytes: u64,
}

impl CountingSink {
    fn new(shards: Vec<mpsc::Sender<Exchange>>, stats: Arc<PipelineStats>, max_bytes: u64) -> Self {
        Self {
            shards,
            next: AtomicUsize::new(0),
            stats,
            max_bytes,
        }
    }

    fn offer_to_a_shard(&self, mut exchange: Exchange) -> Result<(), OfferError> {
        let n = self.shards.len();
        if n == 1 {
            return self.shards[0].offer(exchange);
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            match self.shards[(first + k) % n].try_send(exchange) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => exchange = back,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(OfferError::Closed),
            }
        }
        Err(OfferError::Full)
    }
}

impl ExchangeSink for CountingSink {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        let size = exchange_bytes(&exchange);
        let before = self.stats.inflight_bytes.fetch_add(size, Ordering::Relaxed);
        let result = if before.saturating_add(size) > self.max_bytes {
            Err(OfferError::Full)
        } else {
            self.offer_to_a_shard(exchange)
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

        // One capture queue per replay thread; together they hold `capture.queue_capacity`.
        let replay_threads = settings.replay_threads.max(1);
        let shard_capacity = settings.queue_capacity.div_ceil(replay_threads).max(1);
        let (exchange_txs, exchange_rxs): (Vec<_>, Vec<_>) = (0..replay_threads)
            .map(|_| mpsc::channel::<Exchange>(shard_capacity))
            .unzip();
        // Secrets are redacted before an exchange leaves the tap.
        let tap_sink: Arc<dyn ExchangeSink> = Arc::new(RedactingSink::new(
            Arc::new(settings.redactor.clone()),
            Arc::new(CountingSink::new(
                exchange_txs,
                stats.clone(),
                settings.queue_max_bytes,
            )),
        ));
        let tap =
            Tap::new(&settings, tap_sink).map_err(|e| PipelineError::Config(e.to_string()))?;
        // The sandbox outlives the replays: candidates call it while they answer.
        let (sandbox_stop, sandbox_stop_rx) = watch::channel(false);
        let sandbox = crate::offline::start_sandbox(&settings, until_true(sandbox_stop_rx)).await?;
        let sandbox_addr = sandbox.as_ref().map(|s| s.addr);
        // Each replay thread has its own replayer, so its connections to the targets stay on
        // the thread that opened them.
        let replayers = (0..replay_threads)
            .map(|_| {
                crate::offline::build_replayer(&settings, sandbox.as_ref().map(|s| &s.log))
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let differ = Arc::new(Differ::new(settings.rules.clone(), settings.routes.clone()));

        let (results_tx, workers) = DiffWorkers::start(
            differ,
            settings.diff_workers,
            settings.result_queue,
            sink,
            stats.clone(),
        )
        .map_err(PipelineError::Thread)?;
        let concurrency_each = (settings.replay_concurrency / replay_threads).max(1);
        let mut close_queues = Vec::with_capacity(replay_threads);
        let mut replays = Vec::with_capacity(replay_threads);
        for (i, (rx, replayer)) in exchange_rxs.into_iter().zip(replayers).enumerate() {
            let close = Arc::new(Notify::new());
            close_queues.push(close.clone());
            let name = if replay_threads == 1 {
                "shadowdiff-replay".to_string()
            } else {
                format!("shadowdiff-replay-{i}")
            };
            replays.push(
                spawn_on_own_thread(
                    &name,
                    run_replay_stage(
                        rx,
                        close,
                        replayer,
                        concurrency_each,
                        results_tx.clone(),
                        stats.clone(),
                    ),
                )
                .map_err(PipelineError::Thread)?,
            );
        }
        // The differs end when every replay thread has dropped its sender.
        drop(results_tx);
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
            for close in &close_queues {
                close.notify_one();
            }
            for replay in replays {
                let _ = replay.await;
            }
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
    fn exchanges_go_to_the_replay_queues_in_turn_and_to_one_with_room() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel(2)).unzip();
        let stats = Arc::new(PipelineStats::default());
        let sink = CountingSink::new(txs, stats.clone(), u64::MAX);
        for _ in 0..3 {
            assert_eq!(sink.offer(exchange(10)), Ok(()));
        }
        // In turn: one each.
        assert!(rxs.iter().all(|rx| rx.len() == 1));
        // Queue 0 drained: four more fill every queue.
        assert!(rxs[0].try_recv().is_ok());
        for _ in 0..4 {
            assert_eq!(sink.offer(exchange(10)), Ok(()));
        }
        let lens =
            |rxs: &Vec<mpsc::Receiver<Exchange>>| rxs.iter().map(|rx| rx.len()).collect::<Vec<_>>();
        assert_eq!(lens(&rxs), vec![2, 2, 2]);
        // The next turn is queue 1, which is full; the one with room (2) takes it.
        assert!(rxs[2].try_recv().is_ok());
        assert_eq!(sink.offer(exchange(10)), Ok(()));
        assert_eq!(lens(&rxs), vec![2, 2, 2]);
        // All full: dropped and counted, never blocking.
        assert_eq!(sink.offer(exchange(10)), Err(OfferError::Full));
        assert_eq!(PipelineStats::get(&stats.captured), 8);
        assert_eq!(PipelineStats::get(&stats.dropped_queue_full), 1);
        // A closed queue is reported as closed.
        for rx in &mut rxs {
            rx.close();
        }
        assert_eq!(sink.offer(exchange(10)), Err(OfferError::Closed));
    }

    #[test]
    fn the_byte_bound_drops_and_counts_beyond_queue_max_bytes() {
        let (tx, mut rx) = mpsc::channel(100);
        let stats = Arc::new(PipelineStats::default());
        let sink = CountingSink::new(vec![tx], stats.clone(), 10_000);
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
