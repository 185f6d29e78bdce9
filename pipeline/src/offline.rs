//! Replaying recorded exchanges (Envoy tap traces, GoReplay files) through the same stages as
//! `shadowdiff run`: replayer → differ pool → store, fed from an iterator with backpressure
//! (the feeder waits for room; nothing is dropped). Also the pieces `run` and `import` share:
//! building the replayer and starting the in-process egress sandbox.

use crate::config::Settings;
use crate::embedded::PipelineError;
use crate::stages::{run_replay_stage, DiffWorkers, PipelineStats};
use shadowdiff_differ::Differ;
use shadowdiff_model::Exchange;
use shadowdiff_replayer::{HttpSideEffects, ReplayConfig, Replayer, SideEffectSource};
use shadowdiff_sandbox::{Sandbox, SideEffectLog};
use shadowdiff_store::RecordSink;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Time a lookup of side effects on a standalone sandbox may take.
const SIDE_EFFECT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// An egress sandbox running in this process.
pub struct RunningSandbox {
    pub addr: SocketAddr,
    pub log: SideEffectLog,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the `[sandbox]` of the settings, if any, serving until `shutdown` resolves.
pub async fn start_sandbox(
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<RunningSandbox>, PipelineError> {
    let Some(s) = &settings.sandbox else {
        return Ok(None);
    };
    let log = SideEffectLog::new(s.log_ttl, s.log_capacity);
    let sandbox = Sandbox::new(s.config.clone(), log.clone())
        .map_err(|e| PipelineError::Config(format!("sandbox: {e}")))?;
    let (addr, task) =
        shadowdiff_sandbox::start(s.listen, sandbox, shutdown, settings.shutdown_grace)
            .await
            .map_err(|source| PipelineError::Bind {
                addr: s.listen,
                source,
            })?;
    Ok(Some(RunningSandbox { addr, log, task }))
}

/// The replayer of the settings, linked to the in-process sandbox's log or, when
/// `replay.sandbox_url` is set, to a standalone sandbox over HTTP.
pub fn build_replayer(
    settings: &Settings,
    in_process: Option<&SideEffectLog>,
) -> Result<Replayer, PipelineError> {
    let config_error =
        |e: shadowdiff_replayer::ReplayConfigError| PipelineError::Config(e.to_string());
    let mut replayer = Replayer::new(ReplayConfig {
        targets: settings.targets.clone(),
        timeout: settings.replay_timeout,
        body_limit: settings.body_limit,
        policy: settings.policy.clone(),
        shadow_header: settings.shadow_header.clone(),
        exchange_id_header: settings.exchange_id_header.clone(),
        strip_headers: settings.strip_headers.clone(),
        strip_query: settings.strip_query.clone(),
        routes: settings.routes.clone(),
    })
    .map_err(config_error)?
    .with_credentials(&settings.credentials)
    .map_err(config_error)?
    .with_query_credentials(&settings.query_credentials);
    let source: Option<Arc<dyn SideEffectSource>> = match (in_process, &settings.sandbox_url) {
        (Some(log), _) => Some(Arc::new(log.clone())),
        (None, Some(url)) => Some(Arc::new(HttpSideEffects::new(
            url,
            SIDE_EFFECT_LOOKUP_TIMEOUT,
        ))),
        (None, None) => None,
    };
    if let Some(source) = source {
        replayer = replayer.with_side_effects(source);
    }
    let redactor = settings.redactor.clone();
    Ok(replayer.with_response_filter(Arc::new(move |r| redactor.redact_response(r))))
}

/// Replays `exchanges` (redacted first, like the tap does) and stores the diffs. Returns when
/// every exchange has been replayed, diffed and written. `progress` is called with the number
/// of exchanges handed to the replayer so far.
pub async fn replay_offline<I>(
    settings: &Settings,
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
    let sandbox = start_sandbox(settings, crate::stages::until_true(sandbox_stop_rx)).await?;
    let replayer = Arc::new(build_replayer(settings, sandbox.as_ref().map(|s| &s.log))?);
    let differ = Arc::new(Differ::new(settings.rules.clone(), settings.routes.clone()));
    let (results_tx, workers) = DiffWorkers::start(
        differ,
        settings.diff_workers,
        settings.result_queue,
        sink,
        stats.clone(),
    )
    .map_err(PipelineError::Thread)?;
    let capacity = settings
        .queue_capacity
        .min(settings.replay_concurrency * 4)
        .max(1);
    let (tx, rx) = mpsc::channel::<Exchange>(capacity);
    let replay = tokio::spawn(run_replay_stage(
        rx,
        Arc::new(Notify::new()),
        replayer,
        settings.replay_concurrency,
        results_tx,
        stats.clone(),
    ));
    let mut fed = 0u64;
    for mut exchange in exchanges {
        settings.redactor.redact(&mut exchange);
        // Waits while the replayer is busy: backpressure, never a drop.
        if tx.send(exchange).await.is_err() {
            break;
        }
        stats.captured.fetch_add(1, Ordering::Relaxed);
        fed += 1;
        progress(fed);
    }
    drop(tx);
    let _ = replay.await;
    let _ = sandbox_stop.send(true);
    if let Some(s) = sandbox {
        let _ = s.task.await;
    }
    workers.join().await;
    Ok(stats)
}
