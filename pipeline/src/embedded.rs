//! `shadowdiff run`: every stage in one process, joined by bounded in-memory queues.

use crate::admin::{start_admin, ReadyCheck};
use crate::config::CaptureMode;
use crate::config::Settings;
use crate::stages::{run_replay_stage, spawn_differ_pool, spawn_writer, PipelineStats};
use shadowdiff_capture::mirror::{MirrorConfig, MirrorReceiver};
use shadowdiff_capture::redact::RedactingSink;
use shadowdiff_capture::{ExchangeSink, OfferError, TeeConfig, TeeProxy};
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

/// Counts what the tap offers, so the run summary and tests see drops per pipeline.
struct CountingSink {
    tx: mpsc::Sender<Exchange>,
    stats: Arc<PipelineStats>,
}

impl ExchangeSink for CountingSink {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        let result = self.tx.offer(exchange);
        let counter = match &result {
            Ok(()) => &self.stats.captured,
            Err(OfferError::Full) => &self.stats.dropped_queue_full,
            Err(_) => &self.stats.dropped_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| PipelineError::Bind {
                addr: settings.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
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
                let (bound, _task) = start_admin(admin, checks, wait_for(shutdown_rx.clone()))
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
            }),
        ));
        let tee = match settings.mode {
            CaptureMode::Tee => Some(
                TeeProxy::new(
                    TeeConfig {
                        control: settings.control.clone(),
                        body_limit: settings.body_limit,
                        experiment: settings.experiment.clone(),
                        preserve_host: settings.preserve_host,
                        control_timeout: settings.control_timeout,
                    },
                    tap_sink.clone(),
                )
                .map_err(|e| PipelineError::Config(e.to_string()))?
                .with_sampler(settings.sampler.clone()),
            ),
            CaptureMode::Mirror => None,
        };
        // The sandbox outlives the replays: candidates call it while they answer.
        let (sandbox_stop, sandbox_stop_rx) = watch::channel(false);
        let sandbox = crate::offline::start_sandbox(&settings, wait_for(sandbox_stop_rx)).await?;
        let sandbox_addr = sandbox.as_ref().map(|s| s.addr);
        let replayer = Arc::new(crate::offline::build_replayer(
            &settings,
            sandbox.as_ref().map(|s| &s.log),
        )?);
        let differ = Arc::new(Differ::new(settings.rules.clone(), settings.routes.clone()));

        let (results_tx, results_rx) = crossbeam_channel::bounded(settings.result_queue);
        let (records_tx, records_rx) = crossbeam_channel::bounded(settings.result_queue);
        let writer =
            spawn_writer(sink, records_rx, stats.clone()).map_err(PipelineError::Thread)?;
        let differs = spawn_differ_pool(
            differ,
            settings.diff_workers,
            results_rx,
            records_tx,
            stats.clone(),
        );
        let close_queue = Arc::new(Notify::new());
        let replay = tokio::spawn(run_replay_stage(
            exchange_rx,
            close_queue.clone(),
            replayer,
            settings.replay_concurrency,
            results_tx,
            stats.clone(),
        ));
        let grace = settings.shutdown_grace;
        let serve = match tee {
            Some(proxy) => tokio::spawn(shadowdiff_capture::server::serve(
                listener,
                proxy,
                wait_for(shutdown_rx),
                grace,
            )),
            None => tokio::spawn(shadowdiff_capture::server::serve(
                listener,
                MirrorReceiver::with_sampler(
                    MirrorConfig {
                        body_limit: settings.body_limit,
                        experiment: settings.experiment.clone(),
                        body_timeout: settings.control_timeout,
                    },
                    tap_sink,
                    settings.sampler.clone(),
                ),
                wait_for(shutdown_rx),
                grace,
            )),
        };
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
            let _ = tokio::task::spawn_blocking(move || {
                for d in differs {
                    let _ = d.join();
                }
                let _ = writer.join();
            })
            .await;
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

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
