//! `shadowdiff run`: every stage in one process, joined by bounded in-memory queues.

use crate::admin::{start_admin, ReadyCheck};
use crate::components::start_sandbox;
use crate::config::RunSettings;
use crate::stages::{
    exchange_bytes, run_replay_stage, spawn_on_own_thread, until_true, BatchPolicy, DiffWorkers,
    Pacer, PipelineStats,
};
use crate::transport::{ByteBudget, Envelope, ExchangeQueue, MemoryInput, MemoryOutput};
use shadowdiff_capture::redact::RedactingSink;
use shadowdiff_capture::{ExchangeSink, OfferError};
use shadowdiff_model::Exchange;
use shadowdiff_store::RecordSink;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Notify};

pub use crate::components::PipelineError;

/// Counts what the tap offers, so the run summary and tests see drops per pipeline; refuses
/// exchanges beyond the byte budget (`capture.queue_max_bytes`) in flight between the tap and
/// the differ: each exchange takes a permit that travels with it and is returned when the
/// differ is done with it. With several replay threads, exchanges go to their queues in turn
/// (the next one with room when one is full).
struct CountingSink {
    shards: Vec<ExchangeQueue>,
    next: AtomicUsize,
    stats: Arc<PipelineStats>,
    budget: Arc<ByteBudget>,
}

impl CountingSink {
    fn new(shards: Vec<ExchangeQueue>, stats: Arc<PipelineStats>, budget: Arc<ByteBudget>) -> Self {
        Self {
            shards,
            next: AtomicUsize::new(0),
            stats,
            budget,
        }
    }

    fn offer_to_a_shard(&self, mut envelope: Envelope<Exchange, ()>) -> Result<(), OfferError> {
        let n = self.shards.len();
        let first = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        for k in 0..n {
            match self.shards[(first + k) % n].try_send(envelope) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => envelope = back,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(OfferError::Closed),
            }
        }
        Err(OfferError::Full)
    }
}

impl ExchangeSink for CountingSink {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        let result = match self.budget.try_take(exchange_bytes(&exchange)) {
            // A refused envelope drops its permit: the bytes go back at once.
            Some(bytes) => self.offer_to_a_shard(Envelope {
                item: exchange,
                ack: (),
                bytes,
            }),
            None => Err(OfferError::Full),
        };
        self.stats.count_offer(&result);
        result
    }
}

/// A running embedded pipeline.
pub struct EmbeddedPipeline {
    /// Where the tap listens.
    pub addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Where the in-process egress sandbox listens (`[sandbox] listen`).
    pub sandbox_addr: Option<SocketAddr>,
    /// The pipeline's counters.
    pub stats: Arc<PipelineStats>,
    shutdown: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl EmbeddedPipeline {
    /// Binds the tap (and admin) addresses and starts every stage.
    pub async fn start(
        settings: RunSettings,
        sink: Box<dyn RecordSink>,
    ) -> Result<Self, PipelineError> {
        let RunSettings {
            common,
            tap: tap_settings,
            replay,
            diff,
        } = settings;
        crate::telemetry::describe();
        let stats = Arc::new(PipelineStats::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (listener, addr) = shadowdiff_net::server::bind(tap_settings.listen)
            .await
            .map_err(|source| PipelineError::Bind {
                addr: tap_settings.listen,
                source,
            })?;

        let admin_addr = match common.admin {
            Some(admin) => {
                let control = tap_settings.control_addr();
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
        let replay_threads = replay.threads.max(1);
        let shard_capacity = tap_settings.queue_capacity.div_ceil(replay_threads).max(1);
        let (exchange_txs, exchange_rxs): (Vec<_>, Vec<_>) = (0..replay_threads)
            .map(|_| mpsc::channel::<Envelope<Exchange, ()>>(shard_capacity))
            .unzip();
        // Secrets are redacted before an exchange leaves the tap.
        let tap_sink: Arc<dyn ExchangeSink> = Arc::new(RedactingSink::new(
            Arc::new(tap_settings.redactor.clone()),
            Arc::new(CountingSink::new(
                exchange_txs,
                stats.clone(),
                ByteBudget::new(tap_settings.queue_max_bytes),
            )),
        ));
        let tap = tap_settings.build(tap_sink)?;
        // The sandbox outlives the replays: candidates call it while they answer.
        let (sandbox_stop, sandbox_stop_rx) = watch::channel(false);
        let sandbox =
            start_sandbox(&replay, common.shutdown_grace, until_true(sandbox_stop_rx)).await?;
        let sandbox_addr = sandbox.as_ref().map(|s| s.addr);
        // Each replay thread has its own replayer, so its connections to the targets stay on
        // the thread that opened them.
        let replayers = (0..replay_threads)
            .map(|_| replay.build(sandbox.as_ref().map(|s| &s.log)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let differ = Arc::new(diff.build());

        let (results_tx, workers) = DiffWorkers::start::<()>(
            differ,
            diff.workers,
            diff.result_queue,
            sink,
            BatchPolicy::default(),
            None,
            stats.clone(),
        )
        .map_err(PipelineError::Thread)?;
        let concurrency_each = (replay.concurrency / replay_threads).max(1);
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
                        MemoryInput::new(rx, close, "capture"),
                        replayer,
                        concurrency_each,
                        // Live traffic is paced by its arrival: only the rate cap applies (the
                        // stage's, shared out over the replay threads).
                        Pacer::new(
                            crate::config::Pacing::Asap,
                            replay.max_rate.div_ceil(replay_threads as u32),
                        ),
                        MemoryOutput::new(results_tx.clone()),
                        stats.clone(),
                    ),
                )
                .map_err(PipelineError::Thread)?,
            );
        }
        // The differs end when every replay thread has dropped its sender.
        drop(results_tx);
        let grace = common.shutdown_grace;
        let threads = tap_settings.threads;
        let serve = tokio::spawn(async move {
            if let Err(error) = tap
                .serve(listener, threads, until_true(shutdown_rx), grace)
                .await
            {
                tracing::error!(%error, "The tap could not start its serving threads.");
            }
        });
        tracing::info!(%addr, control = %tap_settings.control, mode = ?tap_settings.mode, "Tap listening.");

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
        let sink = CountingSink::new(txs, stats.clone(), ByteBudget::unbounded());
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
        let lens = |rxs: &Vec<mpsc::Receiver<Envelope<Exchange, ()>>>| {
            rxs.iter().map(|rx| rx.len()).collect::<Vec<_>>()
        };
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
    fn the_byte_bound_drops_and_counts_beyond_queue_max_bytes_and_a_diffed_exchange_frees_it() {
        let (tx, mut rx) = mpsc::channel(100);
        let stats = Arc::new(PipelineStats::default());
        let budget = ByteBudget::new(10_000);
        let sink = CountingSink::new(vec![tx], stats.clone(), budget.clone());
        assert_eq!(sink.offer(exchange(4_000)), Ok(()));
        assert_eq!(sink.offer(exchange(4_000)), Ok(()));
        // A third would pass the count bound (100) but not the byte bound.
        assert_eq!(sink.offer(exchange(4_000)), Err(OfferError::Full));
        assert_eq!(PipelineStats::get(&stats.captured), 2);
        assert_eq!(PipelineStats::get(&stats.dropped_queue_full), 1);
        assert_eq!(budget.used(), 2 * exchange_bytes(&exchange(4_000)));
        // The refused exchange holds nothing; the queued ones hold their permits until the
        // envelope is dropped (by the differ, after the diff).
        let first = rx.try_recv().expect("queued");
        assert_eq!(first.bytes.bytes(), exchange_bytes(&exchange(4_000)));
        drop(first);
        assert_eq!(budget.used(), exchange_bytes(&exchange(4_000)));
        assert_eq!(sink.offer(exchange(4_000)), Ok(()));
        // A closed queue drops the envelope, and with it the bytes.
        rx.close();
        let held = budget.used();
        assert_eq!(sink.offer(exchange(100)), Err(OfferError::Closed));
        assert_eq!(budget.used(), held);
    }
}
