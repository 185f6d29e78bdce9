//! The components the stages run, built from the settings: the replayer (with its
//! credentials, side-effect source and response redaction) and the in-process egress sandbox.
//! `run`, `import` and `replay` build them here, the same way.

use crate::config::{ReplaySettings, SandboxSettings};
use shadowdiff_replayer::{HttpSideEffects, ReplayConfig, Replayer, SideEffectSource};
use shadowdiff_sandbox::{Sandbox, SideEffectLog};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A listening address (tap, admin, sandbox) could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The replayer refused its settings.
    #[error("replay settings")]
    Replay(#[from] shadowdiff_replayer::ReplayConfigError),
    /// The in-process sandbox refused its settings.
    #[error("sandbox settings")]
    Sandbox(#[source] shadowdiff_sandbox::SandboxError),
    /// The tap refused its settings.
    #[error("tap settings")]
    Tap(#[from] shadowdiff_capture::CaptureError),
    /// A stage's thread could not be spawned.
    #[error("cannot start a thread")]
    Thread(#[source] std::io::Error),
}

/// Time a lookup of side effects on a standalone sandbox may take.
const SIDE_EFFECT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// An egress sandbox running in this process.
pub struct RunningSandbox {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The side effects it recorded, for the replayer to collect.
    pub log: SideEffectLog,
    /// The serving task; it ends once the shutdown signal came and connections drained.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the `[sandbox]` of the settings, if any, serving until `shutdown` resolves.
pub async fn start_sandbox(
    settings: &ReplaySettings,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<RunningSandbox>, PipelineError> {
    let Some(s): Option<&SandboxSettings> = settings.sandbox.as_ref() else {
        return Ok(None);
    };
    let log = SideEffectLog::new(s.log_ttl, s.log_capacity);
    let sandbox = Sandbox::new(s.config.clone(), log.clone()).map_err(PipelineError::Sandbox)?;
    let (addr, task) = shadowdiff_sandbox::start(s.listen, sandbox, shutdown, grace)
        .await
        .map_err(|source| PipelineError::Bind {
            addr: s.listen,
            source,
        })?;
    Ok(Some(RunningSandbox { addr, log, task }))
}

/// The replayer of the settings, linked to the in-process sandbox's log or, when
/// `replay.sandbox_url` is set, to a standalone sandbox over HTTP.
impl ReplaySettings {
    /// The replayer of these settings; see [`build_replayer`].
    pub fn build(&self, in_process: Option<&SideEffectLog>) -> Result<Replayer, PipelineError> {
        build_replayer(self, in_process)
    }
}

fn build_replayer(
    settings: &ReplaySettings,
    in_process: Option<&SideEffectLog>,
) -> Result<Replayer, PipelineError> {
    let mut replayer = Replayer::new(ReplayConfig {
        targets: settings.targets.clone(),
        timeout: settings.timeout,
        body_limit: settings.body_limit,
        policy: settings.policy.clone(),
        shadow_header: settings.shadow_header.clone(),
        exchange_id_header: settings.exchange_id_header.clone(),
        strip_headers: settings.strip_headers.clone(),
        strip_query: settings.strip_query.clone(),
        routes: settings.routes.clone(),
    })?
    .with_credentials(&settings.credentials)?
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
