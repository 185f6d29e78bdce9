//! placeholder
mod async_run;
mod compare;
mod experiment;
mod publish;
mod result;
mod settings;

pub use async_run::{AsyncExperiment, DEFAULT_TIMEOUT};
pub use compare::{ArmKind, Fallible, Plain, ROOT};
pub use experiment::{Experiment, SyncExperiment};
pub use publish::{
    publish_failures, set_default_publisher, FanoutPublisher, MemoryPublisher, MetricsPublisher,
    NoopPublisher, PublishError, Publisher, RecordPublisher, TracingPublisher,
};
pub use result::{
    CandidateObservation, CandidateOutcome, ControlObservation, ControlOutcome, MismatchError,
    RunResult,
};
pub use settings::{experiments, settings, ExperimentSettings, DEFAULT_MAX_IN_FLIGHT, DISABLED_ENV};
pub use shadowdiff_macros::experiment;
pub use shadowdiff_model::{DiffKind, Difference};

#[doc(hidden)]
pub mod __private {
    pub use crate::settings::ExperimentSettings;

    /// Pins an async block's output type so that `?` and `return` in a macro-wrapped body infer.
    pub fn typed_future<R, F: ::std::future::Future<Output = R>>(f: F) -> F {
        f
    }
}
