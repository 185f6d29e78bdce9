//! Replaying recorded exchanges (Envoy tap traces, GoReplay files) through the same stages as
//! `shadowdiff run`: replayer → differ pool → store, fed from an iterator with backpressure
//! (the feeder waits for room; nothing is dropped).

use crate::components::{start_sandbox, PipelineError};
use crate::config::{DiffSettings, ReplaySettings};
use crate::stages::{run_replay_stage, BatchPolicy, DiffWorkers, Pacer, PipelineStats};
use crate::transport::{BytePermit, Envelope, MemoryInput, MemoryOutput};
use shadowdiff_model::Exchange;
use shadowdiff_store::RecordSink;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// Replays `exchanges` (redacted first, like the tap does) and stores the diffs. Returns when
/// every exchange has been replayed, diffed and written. `progress` is called with the number
/// of exchanges handed to the replayer so far.
pub async fn replay_offline<I>(
    replay: &ReplaySettings,
    diff: &DiffSettings,
    grace: std::time::Duration,
    exchanges: I,
    sink: Box<dyn RecordSink>,
    mut progress: impl FnMut(u64) + Send,
) -> Result<Arc<PipelineStats>, PipelineError>
where
    I: IntoIterator<Item = Exchange>,
{
    crate::telemetry::describe();
    let stats = Arc::new(PipelineStats::default());
    let (sandbox_stop, sandbox_stop_rx) = tokio::sync::watch::channel(false);
    let sandbox = start_sandbox(replay, grace, crate::stages::until_true(sandbox_stop_rx)).await?;
    let replayer = Arc::new(replay.build(sandbox.as_ref().map(|s| &s.log))?);
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
    let capacity = replay.queue_capacity.min(replay.concurrency * 4).max(1);
    // The feeder waits for room in a bounded queue: no byte budget needed.
    let (tx, rx) = mpsc::channel::<Envelope<Exchange, ()>>(capacity);
    let replaying = tokio::spawn(run_replay_stage(
        MemoryInput::new(rx, Arc::new(Notify::new()), "capture"),
        replayer,
        replay.concurrency,
        Pacer::new(replay.pacing, replay.max_rate),
        MemoryOutput::new(results_tx),
        stats.clone(),
    ));
    let mut fed = 0u64;
    for mut exchange in exchanges {
        replay.redactor.redact(&mut exchange);
        // Waits while the replayer is busy: backpressure, never a drop.
        let envelope = Envelope {
            item: exchange,
            ack: (),
            bytes: BytePermit::none(),
        };
        if tx.send(envelope).await.is_err() {
            break;
        }
        stats.captured.fetch_add(1, Ordering::Relaxed);
        fed += 1;
        progress(fed);
    }
    drop(tx);
    let _ = replaying.await;
    let _ = sandbox_stop.send(true);
    if let Some(s) = sandbox {
        let _ = s.task.await;
    }
    workers.join().await;
    Ok(stats)
}
