//! The stages as reusable runners: the embedded pipeline wires them with in-memory queues; the
//! distributed commands wire the same runners to Kafka and ClickHouse.

use crate::telemetry;
pub use crate::telemetry::PipelineStats;
pub use crate::transport::{send_async, until_true};
use crate::transport::{
    Acknowledge, Envelope, Input, InputError, Output, PolledReceiver, DIFF_POLL,
};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use shadowdiff_differ::Differ;
use shadowdiff_model::{DiffRecord, Exchange, ReplayResult};
use shadowdiff_net::Backoff;
use shadowdiff_replayer::Replayer;
use shadowdiff_store::RecordSink;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// What an exchange holds on the heap, roughly: bodies, headers, URI.
pub fn exchange_bytes(exchange: &Exchange) -> u64 {
    let headers = |h: &shadowdiff_model::Headers| -> usize {
        h.iter().map(|(n, v)| n.len() + v.len() + 48).sum()
    };
    let request = &exchange.request;
    let mut bytes = 512 + request.uri.len() + request.body.bytes.len() + headers(&request.headers);
    if let Some(control) = &exchange.control {
        bytes += control.body.bytes.len() + headers(&control.headers);
    }
    bytes as u64
}

/// What the targets' responses of a replay result hold, roughly.
fn outcome_bytes(result: &ReplayResult) -> u64 {
    result
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(r) => {
                256 + r.body.bytes.len()
                    + r.headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 48)
                        .sum::<usize>()
            }
            Err(e) => 256 + e.message.len(),
        })
        .sum::<usize>() as u64
}

/// What a replay result holds on the heap, roughly: its exchange and the targets' answers.
pub fn result_bytes(result: &ReplayResult) -> u64 {
    exchange_bytes(&result.exchange) + outcome_bytes(result)
}

/// When the replay stage sends each exchange (`replay.pacing`, `replay.max_rate`).
///
/// With captured pacing an exchange is due at the first exchange's replay time plus the gap
/// between their capture times, so a backlog (Kafka after an outage, a recording) reaches the
/// targets at the rate production sent it instead of all at once, and latencies compare like
/// with like. A pause in capture longer than [`Pacer::MAX_GAP`] is replayed as that long. Live
/// traffic is never held back: it arrives after it was captured.
#[derive(Debug)]
pub struct Pacer {
    pacing: crate::config::Pacing,
    /// The least time between two exchanges, from `max_rate`.
    min_gap: Option<Duration>,
    /// The schedule's origin: a replay time and the capture time it stands for.
    anchor: Option<(tokio::time::Instant, u64)>,
    /// The last exchange scheduled: when it was due by the schedule, and its capture time.
    last: Option<(tokio::time::Instant, u64)>,
    /// The earliest time the next exchange may go, under `max_rate`.
    next_slot: Option<tokio::time::Instant>,
}

impl Pacer {
    /// A pause in capture longer than this is replayed as this long.
    pub const MAX_GAP: Duration = Duration::from_millis(250);
    /// Waits shorter than this are not taken: a timer cannot sleep less than about a millisecond,
    /// and capture jitter must not slow live traffic; a backlog's gaps add up past it.
    const MIN_SLEEP: Duration = Duration::from_millis(5);

    /// A pacer for `pacing` and at most `max_rate` exchanges a second (0 = no cap).
    pub fn new(pacing: crate::config::Pacing, max_rate: u32) -> Self {
        Self {
            pacing,
            min_gap: (max_rate > 0).then(|| Duration::from_secs(1) / max_rate),
            anchor: None,
            last: None,
            next_slot: None,
        }
    }

    /// Sends every exchange as soon as a slot is free.
    pub fn asap() -> Self {
        Self::new(crate::config::Pacing::Asap, 0)
    }

    /// When an exchange captured at `captured_at_ms` may go, given that it is `now`.
    fn due(&mut self, captured_at_ms: u64, now: tokio::time::Instant) -> tokio::time::Instant {
        let mut due = now;
        if self.pacing == crate::config::Pacing::Captured {
            match (self.anchor, self.last) {
                (Some((start, first)), Some((last_due, last_captured)))
                    if captured_at_ms >= last_captured =>
                {
                    let (mut start, mut first) = (start, first);
                    if Duration::from_millis(captured_at_ms - last_captured) > Self::MAX_GAP {
                        // Capture paused: go MAX_GAP after the last one, and pace from here.
                        (start, first) = (last_due + Self::MAX_GAP, captured_at_ms);
                        self.anchor = Some((start, first));
                    }
                    let at = start + Duration::from_millis(captured_at_ms - first);
                    self.last = Some((at, captured_at_ms));
                    due = at.max(now);
                }
                // Captured before the last one (another partition, a late copy): due now.
                (Some(_), Some(_)) => {}
                _ => {
                    self.anchor = Some((now, captured_at_ms));
                    self.last = Some((now, captured_at_ms));
                }
            }
        }
        if let Some(gap) = self.min_gap {
            due = due.max(self.next_slot.unwrap_or(now));
            self.next_slot = Some(due + gap);
        }
        due
    }

    /// Waits until an exchange captured at `captured_at_ms` is due; true when it had to wait
    /// (it came early, so it was not held back by busy replay slots).
    pub async fn wait(&mut self, captured_at_ms: u64) -> bool {
        let now = tokio::time::Instant::now();
        let due = self.due(captured_at_ms, now);
        if due >= now + Self::MIN_SLEEP {
            tokio::time::sleep_until(due).await;
            return true;
        }
        false
    }
}

/// An input that hands over its next exchange within this was holding it already.
const SATURATION_READY: Duration = Duration::from_millis(1);

/// How often the busy probe wakes up, and how late a wake-up must be to say the replay's own
/// runtime is short of CPU (tokio's timer has 1 ms steps, so a wake-up up to ~1 ms late is
/// normal).
const BUSY_PROBE_PERIOD: Duration = Duration::from_millis(5);
const BUSY_LAG: Duration = Duration::from_millis(2);

/// Stops a task when dropped (a replay stage that is itself dropped stops its probe too).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches how late the replaying runtime wakes up. A replay's latency is the time from its
/// send to its whole answer as this process saw it: when the process waits for a CPU (a busy
/// host, a noisy neighbour), that wait is in the figure and the candidate looks slower than the
/// control, whose latency the tap measured on its own serving threads. Replays in flight while a
/// wake-up was late are therefore marked [`ReplayResult::host_busy`] and their latencies unused.
struct BusyProbe {
    origin: Instant,
    /// Wake-ups that came late, so far.
    late: std::sync::atomic::AtomicU64,
    /// When the next wake-up is due, in µs since `origin`.
    due_us: std::sync::atomic::AtomicU64,
}

impl BusyProbe {
    /// A probe ticking on the current runtime until the returned guard is dropped.
    fn start() -> (Arc<Self>, AbortOnDrop) {
        let probe = Arc::new(Self {
            origin: Instant::now(),
            late: Default::default(),
            due_us: Default::default(),
        });
        let ticking = probe.clone();
        let task = tokio::spawn(async move {
            loop {
                let due = Instant::now() + BUSY_PROBE_PERIOD;
                ticking.due_us.store(ticking.micros(due), Ordering::Relaxed);
                tokio::time::sleep_until(due.into()).await;
                if due.elapsed() > BUSY_LAG {
                    ticking.late.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        (probe, AbortOnDrop(task))
    }

    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_micros() as u64
    }

    /// A mark to pass to [`busy_since`](Self::busy_since) when the replay is done.
    fn mark(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// True when a wake-up came late since `mark`, or the one due now is late already.
    fn busy_since(&self, mark: u64) -> bool {
        let overdue = self
            .micros(Instant::now())
            .saturating_sub(self.due_us.load(Ordering::Relaxed));
        self.late.load(Ordering::Relaxed) != mark || overdue > BUSY_LAG.as_micros() as u64
    }
}

/// Replays what `input` yields with at most `concurrency` in flight and hands each result to
/// `output`, on either transport. Returns once the input has ended and every replay has handed
/// its result on.
pub async fn run_replay_stage<I, O>(
    mut input: I,
    replayer: Arc<Replayer>,
    concurrency: usize,
    mut pacer: Pacer,
    output: O,
    stats: Arc<PipelineStats>,
) -> Result<(), InputError>
where
    I: Input<Exchange>,
    O: Output<ReplayResult, I::Ack>,
{
    let concurrency = concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let (probe, _probe_task) = BusyProbe::start();
    let mut ended = Ok(());
    loop {
        // A replay slot first: an item is taken from its input only when it can start.
        let all_busy = permits.available_permits() == 0;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let asked = tokio::time::Instant::now();
        let envelope = match input.next().await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => break,
            Err(error) => {
                ended = Err(error);
                break;
            }
        };
        // Saturated: every slot was busy and the exchange was already waiting for one (its
        // input answered at once, and the schedule did not hold it back).
        let was_waiting = asked.elapsed() < SATURATION_READY;
        let early = pacer.wait(envelope.item.captured_at_ms).await;
        let saturated = all_busy && was_waiting && !early;
        if saturated {
            stats.saturated.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::REPLAY_SATURATED).increment(1);
        }
        let (replayer, output, stats) = (replayer.clone(), output.clone(), stats.clone());
        let probe = probe.clone();
        // Debug level: an info span per exchange cost 2-3% of the process's CPU (the fmt
        // layer formats its fields eagerly); with RUST_LOG=debug lines still carry the id.
        let span = tracing::debug_span!("exchange", id = %envelope.item.id);
        // Boxed: the replay's future is kilobytes, and tokio moves an unboxed one by value
        // several times per task (spawn, each stage change): about 9 copies per exchange,
        // 14% of the replay thread's instructions (callgrind, bench/instructions.sh).
        tokio::spawn(Box::pin(tracing::Instrument::instrument(
            async move {
                let Envelope {
                    item: exchange,
                    ack,
                    mut bytes,
                } = envelope;
                let mark = probe.mark();
                let mut result = replayer.replay(exchange).await;
                result.saturated = saturated;
                result.host_busy = probe.busy_since(mark);
                if result.host_busy {
                    stats.host_busy.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::telemetry::REPLAY_HOST_BUSY).increment(1);
                }
                // The targets' answers are held until the differ is done too.
                bytes.grow(outcome_bytes(&result));
                let counter = if result.blocked.is_some() {
                    &stats.blocked
                } else {
                    &stats.replayed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                output
                    .deliver(Envelope {
                        item: result,
                        ack,
                        bytes,
                    })
                    .await;
                drop(permit);
            },
            span,
        )));
    }
    // Every permit back means every spawned replay has handed its result on.
    let _ = permits.acquire_many(concurrency as u32).await;
    ended
}

/// Runs `task` on a thread of its own with a single-threaded runtime, like the tap's serving
/// threads: everything the task spawns, and every connection it opens, stays on that thread, so
/// handing work from one task to the next never wakes another worker (on a multi-threaded
/// runtime each replay woke a sibling worker through an eventfd write or a futex). The receiver
/// resolves with the task's output, or fails if the thread could not finish it.
pub fn spawn_on_own_thread<F>(
    name: &str,
    task: F,
) -> std::io::Result<tokio::sync::oneshot::Receiver<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, output) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = done.send(runtime.block_on(task));
        })?;
    Ok(output)
}

/// Diff records of one replay result, with the acknowledgement of the item they came from.
type Diffed<A> = (Vec<DiffRecord>, A);

/// Starts `workers` differ threads. They end when every sender of `results` is dropped. The
/// byte permit of a result is returned as soon as it is diffed; its acknowledgement goes on to
/// the store writer.
fn spawn_differ_pool<A: Acknowledge>(
    differ: Arc<Differ>,
    workers: usize,
    results: Receiver<Envelope<ReplayResult, A>>,
    records: Sender<Diffed<A>>,
    stats: Arc<PipelineStats>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..workers.max(1))
        .filter_map(|i| {
            let (differ, results, records, stats) = (
                differ.clone(),
                results.clone(),
                records.clone(),
                stats.clone(),
            );
            std::thread::Builder::new()
                .name(format!("shadowdiff-differ-{i}"))
                // Deeply nested bodies recurse; give the differ room.
                .stack_size(16 * 1024 * 1024)
                .spawn(move || {
                    let results_depth = telemetry::queue_depth("results");
                    let metrics = telemetry::DiffMetrics::new();
                    let mut results = PolledReceiver::new(results, DIFF_POLL);
                    while let Some(Envelope { item, ack, bytes }) = results.recv() {
                        let _span =
                            tracing::debug_span!("exchange", id = %item.exchange.id).entered();
                        let started = Instant::now();
                        let out = differ.diff_tracked(&item);
                        let elapsed = started.elapsed().as_secs_f64();
                        // The exchange and its answers are freed here: their bytes go back.
                        drop(item);
                        drop(bytes);
                        metrics.diffed(&out, elapsed, &stats);
                        results_depth.set(results.len() as f64);
                        if records.send((out, ack)).is_err() {
                            tracing::error!("Store writer is gone; diff records were lost.");
                            return;
                        }
                    }
                })
                .map_err(|e| tracing::error!(error = %e, "Could not start a differ thread."))
                .ok()
        })
        .collect()
}

/// When the store writer writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// A batch is written once it holds this many rows…
    pub rows: usize,
    /// …or this long after its first row arrived, whichever comes first.
    pub linger: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            rows: 1024,
            linger: Duration::from_millis(100),
        }
    }
}

/// Batches records into the sink and acknowledges their items once a batch is written. Failed
/// writes are retried with backoff so nothing accepted is lost while the store is briefly away;
/// once `stop` is true and a write still fails, the batch's items are left unacknowledged (a
/// transport that redelivers brings them back). Ends when every sender of `records` is
/// dropped.
fn spawn_writer<A: Acknowledge>(
    mut sink: Box<dyn RecordSink>,
    records: Receiver<Diffed<A>>,
    policy: BatchPolicy,
    stop: Option<watch::Receiver<bool>>,
    stats: Arc<PipelineStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    const WRITER_POLL: Duration = Duration::from_millis(10);
    let (max_rows, linger) = (policy.rows.max(1), policy.linger);
    std::thread::Builder::new()
        .name("shadowdiff-writer".to_string())
        .spawn(move || {
            let mut batch: Vec<DiffRecord> = Vec::with_capacity(max_rows.min(4096));
            let mut acks: Vec<A> = Vec::new();
            let records_depth = telemetry::queue_depth("records");
            let mut records = PolledReceiver::new(records, WRITER_POLL);
            // A batch starts with the first record after a write and is written when it is
            // full, `linger` after it started, or when the differs are gone. In between the
            // writer sleeps instead of being woken for every record.
            while let Some((first, ack)) = records.recv() {
                batch.extend(first);
                acks.push(ack);
                let started = Instant::now();
                let mut open = true;
                while open && batch.len() < max_rows && started.elapsed() < linger {
                    match records.try_recv() {
                        Ok((more, ack)) => {
                            batch.extend(more);
                            acks.push(ack);
                        }
                        Err(TryRecvError::Empty) => std::thread::sleep(WRITER_POLL),
                        Err(TryRecvError::Disconnected) => open = false,
                    }
                }
                records_depth.set(records.len() as f64);
                if write_with_retry(sink.as_mut(), &batch, stop.as_ref(), &stats) {
                    // Rows are durable: only now may their items be acknowledged.
                    A::ack_all(std::mem::take(&mut acks));
                } else {
                    tracing::warn!(
                        items = acks.len(),
                        "Stopping with rows not stored; their items are not acknowledged."
                    );
                    acks.clear();
                }
                batch.clear();
            }
        })
}

/// Writes `batch`, retrying with backoff. Returns false only when `stop` is true and the write
/// still fails.
fn write_with_retry(
    sink: &mut dyn RecordSink,
    batch: &[DiffRecord],
    stop: Option<&watch::Receiver<bool>>,
    stats: &PipelineStats,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let stopping = || stop.is_some_and(|s| *s.borrow());
    loop {
        match sink.write_batch(batch) {
            Ok(()) => {
                telemetry::stored(batch.len(), stats);
                return true;
            }
            Err(error) => {
                telemetry::store_failed(stats);
                if stopping() {
                    return false;
                }
                let delay = backoff.next_delay();
                tracing::warn!(%error, rows = batch.len(), retry_in_ms = delay.as_millis() as u64, "Store write failed; retrying, nothing acknowledged meanwhile.");
                // Sleep in slices so a stop is noticed within one.
                let until = Instant::now() + delay;
                while Instant::now() < until && !stopping() {
                    std::thread::sleep(Duration::from_millis(20).min(delay));
                }
            }
        }
    }
}

/// The differ threads and the store writer behind the results queue, on either transport:
/// items carry their transport's acknowledgement `A`, acknowledged once their rows are written.
pub struct DiffWorkers {
    differs: Vec<std::thread::JoinHandle<()>>,
    writer: std::thread::JoinHandle<()>,
}

impl DiffWorkers {
    /// Starts `workers` differ threads and the writer into `sink`; returns the results queue's
    /// sender. The workers end when every clone of that sender is dropped. With `stop`, a
    /// batch the store still refuses after it is true is given up unacknowledged.
    pub fn start<A: Acknowledge>(
        differ: Arc<Differ>,
        workers: usize,
        queue: usize,
        sink: Box<dyn RecordSink>,
        policy: BatchPolicy,
        stop: Option<watch::Receiver<bool>>,
        stats: Arc<PipelineStats>,
    ) -> std::io::Result<(Sender<Envelope<ReplayResult, A>>, Self)> {
        let (results_tx, results_rx) = crossbeam_channel::bounded(queue.max(1));
        let (records_tx, records_rx) = crossbeam_channel::bounded(queue.max(1));
        let writer = spawn_writer(sink, records_rx, policy, stop, stats.clone())?;
        let differs = spawn_differ_pool(differ, workers, results_rx, records_tx, stats);
        Ok((results_tx, Self { differs, writer }))
    }

    /// Feeds the differ threads from `input` until it ends; returns the input (to commit what
    /// was acknowledged) and how it ended. The sender is dropped on return, so the workers end
    /// once they have written what they hold.
    pub async fn feed<I: Input<ReplayResult>>(
        mut input: I,
        results: Sender<Envelope<ReplayResult, I::Ack>>,
    ) -> (I, Result<(), InputError>) {
        loop {
            match input.next().await {
                Ok(Some(envelope)) => {
                    if send_async(&results, envelope).await.is_err() {
                        tracing::error!("The differ threads are gone; stopping the input.");
                        return (input, Ok(()));
                    }
                }
                Ok(None) => return (input, Ok(())),
                Err(error) => return (input, Err(error)),
            }
        }
    }

    /// Waits, off the async runtime, for the differ threads and then the writer to finish.
    pub async fn join(self) {
        let Self { differs, writer } = self;
        let _ = tokio::task::spawn_blocking(move || {
            for d in differs {
                let _ = d.join();
            }
            let _ = writer.join();
        })
        .await;
    }
}

/// The tap in either mode: a tee proxy in front of the control, or a mirror receiver.
pub enum Tap {
    /// A proxy in front of the control.
    Tee(shadowdiff_capture::TeeProxy),
    /// A receiver of mirrored requests.
    Mirror(shadowdiff_capture::mirror::MirrorReceiver),
}

impl crate::config::TapSettings {
    /// The tap of these settings (tee proxy or mirror receiver), handing its copies to `sink`.
    pub fn build(
        &self,
        sink: Arc<dyn shadowdiff_capture::ExchangeSink>,
    ) -> Result<Tap, shadowdiff_capture::CaptureError> {
        Tap::new(self, sink)
    }
}

impl Tap {
    /// The tap `settings.mode` asks for, handing its copies to `sink`.
    pub fn new(
        settings: &crate::config::TapSettings,
        sink: Arc<dyn shadowdiff_capture::ExchangeSink>,
    ) -> Result<Self, shadowdiff_capture::CaptureError> {
        Ok(match settings.mode {
            crate::config::CaptureMode::Tee => Self::Tee(
                shadowdiff_capture::TeeProxy::new(settings.tee_config(), sink)?
                    .with_sampler(settings.sampler.clone()),
            ),
            crate::config::CaptureMode::Mirror => {
                Self::Mirror(shadowdiff_capture::mirror::MirrorReceiver::with_sampler(
                    settings.mirror_config(),
                    sink,
                    settings.sampler.clone(),
                ))
            }
        })
    }

    /// Serves on `threads` serving threads (`capture.threads`) until `shutdown`, then drains.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        threads: usize,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> std::io::Result<()> {
        use shadowdiff_net::server::{serve_connections_on_threads, serve_on_threads};
        match self {
            // Each thread gets its own connections to the control; HTTP/1.1 goes through the
            // tap's relay, anything else through hyper.
            Self::Tee(proxy) => {
                serve_connections_on_threads(
                    listener,
                    threads,
                    move || proxy.for_thread(),
                    shutdown,
                    grace,
                )
                .await
            }
            Self::Mirror(receiver) => {
                serve_on_threads(listener, threads, move || receiver.clone(), shutdown, grace).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{Outcome, TargetRole, SCHEMA_VERSION};
    use shadowdiff_store::StoreError;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    #[test]
    fn captured_pacing_keeps_the_gaps_caps_pauses_and_never_holds_back_the_late() {
        use crate::config::Pacing;
        let t0 = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(Pacing::Captured, 0);
        let base = 1_000_000u64;
        // The first one anchors and goes now.
        assert_eq!(p.due(base, t0), t0);
        // 100 ms later in capture: 100 ms after the anchor, even if asked at once.
        assert_eq!(p.due(base + 100, t0), t0 + ms(100));
        // Asked late (the stage was busy): due now, not in the past.
        assert_eq!(p.due(base + 150, t0 + ms(400)), t0 + ms(400));
        // Captured before the anchor (another partition): now.
        assert_eq!(p.due(base - 50, t0 + ms(10)), t0 + ms(10));
        // A 10 s pause in capture is replayed as MAX_GAP after the last exchange's time (base
        // + 150 → t0 + 150), and pacing goes on from there.
        assert_eq!(p.due(base + 10_000, t0 + ms(200)), t0 + ms(400));
        assert_eq!(p.due(base + 10_040, t0 + ms(200)), t0 + ms(440));
        // As soon as possible ignores capture times.
        let mut asap = Pacer::asap();
        assert_eq!(asap.due(base, t0), t0);
        assert_eq!(asap.due(base + 5_000, t0), t0);
    }

    #[test]
    fn max_rate_spaces_exchanges_whatever_their_capture_times() {
        use crate::config::Pacing;
        let t0 = tokio::time::Instant::now();
        let mut p = Pacer::new(Pacing::Asap, 10);
        let dues: Vec<Duration> = (0..4).map(|_| p.due(0, t0) - t0).collect();
        assert_eq!(dues, [0, 100, 200, 300].map(Duration::from_millis).to_vec());
        // With captured pacing the later of the two wins.
        let mut p = Pacer::new(Pacing::Captured, 10);
        assert_eq!(p.due(0, t0), t0);
        assert_eq!(
            p.due(500, t0) - t0,
            Duration::from_millis(250),
            "capped pause"
        );
        assert_eq!(p.due(500, t0) - t0, Duration::from_millis(350), "rate cap");
    }

    struct SharedSink(Arc<Mutex<Vec<usize>>>);

    impl RecordSink for SharedSink {
        fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(records.len());
            Ok(())
        }
    }

    fn record(i: usize) -> DiffRecord {
        DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: format!("x{i}"),
            captured_at_ms: 0,
            experiment: "e".into(),
            method: "GET".into(),
            route: "/".into(),
            target: "v2".into(),
            role: TargetRole::Candidate,
            outcome: Outcome::Match,
            control_status: Some(200),
            target_status: Some(200),
            control_latency_us: None,
            target_latency_us: None,
            differences: Vec::new(),
            noise: Vec::new(),
            fingerprint: 0,
            detail: None,
            notes: Vec::new(),
            side_effects: Vec::new(),
        }
    }

    #[test]
    fn the_writer_writes_a_partial_batch_within_its_linger_and_everything_on_close() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(PipelineStats::default());
        let (tx, rx) = crossbeam_channel::bounded(64);
        let writer = spawn_writer(
            Box::new(SharedSink(batches.clone())),
            rx,
            BatchPolicy::default(),
            None,
            stats.clone(),
        )
        .unwrap();
        tx.send((vec![record(0), record(1), record(2)], ()))
            .unwrap();
        // Senders still alive: the three records must not wait for a full batch.
        let deadline = Instant::now() + Duration::from_secs(5);
        while batches.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*batches.lock().unwrap(), vec![3]);
        for i in 0..2000 {
            tx.send((vec![record(i)], ())).unwrap();
        }
        drop(tx);
        writer.join().unwrap();
        let batches = batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 2003);
        assert!(batches.iter().all(|&n| n <= 1024), "{batches:?}");
        assert_eq!(PipelineStats::get(&stats.records_written), 2003);
    }

    /// An acknowledgement that counts itself, and says so if it is acknowledged twice.
    struct CountingAck(Arc<AtomicU64>);

    impl Acknowledge for CountingAck {
        fn ack(self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Fails its first `failures` writes, then stores.
    struct FlakySink {
        failures: u32,
        written: Arc<AtomicU64>,
    }

    impl RecordSink for FlakySink {
        fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError> {
            if self.failures > 0 {
                self.failures -= 1;
                return Err(StoreError::Unavailable("down for the test".into()));
            }
            self.written
                .fetch_add(records.len() as u64, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn items_are_acknowledged_only_after_their_rows_are_written() {
        let (acked, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (tx, rx) = crossbeam_channel::bounded(64);
        let writer = spawn_writer(
            Box::new(FlakySink {
                failures: 3,
                written: written.clone(),
            }),
            rx,
            BatchPolicy {
                rows: 4,
                linger: Duration::from_millis(20),
            },
            None,
            Arc::new(PipelineStats::default()),
        )
        .unwrap();
        for i in 0..10 {
            tx.send((vec![record(i)], CountingAck(acked.clone())))
                .unwrap();
        }
        // The store fails three times (backoff 50 + 100 + 200 ms): nothing may be acked yet.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(acked.load(Ordering::SeqCst), 0);
        assert_eq!(written.load(Ordering::SeqCst), 0);
        drop(tx);
        writer.join().unwrap();
        // Each item acknowledged exactly once, all written.
        assert_eq!(written.load(Ordering::SeqCst), 10);
        assert_eq!(acked.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn a_batch_still_refused_at_stop_is_left_unacknowledged() {
        let (acked, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, rx) = crossbeam_channel::bounded(64);
        let writer = spawn_writer(
            Box::new(FlakySink {
                failures: u32::MAX,
                written: written.clone(),
            }),
            rx,
            BatchPolicy::default(),
            Some(stop_rx),
            Arc::new(PipelineStats::default()),
        )
        .unwrap();
        for i in 0..5 {
            tx.send((vec![record(i)], CountingAck(acked.clone())))
                .unwrap();
        }
        drop(tx);
        std::thread::sleep(Duration::from_millis(200));
        stop_tx.send(true).unwrap();
        // Gives up within a retry slice of the stop instead of retrying forever.
        writer.join().unwrap();
        assert_eq!(acked.load(Ordering::SeqCst), 0);
        assert_eq!(written.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_busy_probe_sees_a_runtime_that_could_not_run() {
        let (probe, task) = BusyProbe::start();
        // Let it tick once so that a wake-up is due.
        tokio::time::sleep(Duration::from_millis(12)).await;
        let mark = probe.mark();
        // Block the only thread, as a host short of CPU would: the probe's wake-up comes late.
        std::thread::sleep(Duration::from_millis(30));
        assert!(probe.busy_since(mark), "a 30 ms stall went unseen");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(probe.busy_since(mark), "the late wake-up was not counted");
        // An idle runtime is not busy: on a loaded test host a quiet 20 ms is not guaranteed, so
        // one of twenty tries suffices (a probe that always said busy fails all of them).
        let mut quiet = false;
        for _ in 0..20 {
            let mark = probe.mark();
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !probe.busy_since(mark) {
                quiet = true;
                break;
            }
        }
        assert!(quiet, "an idle runtime was always called busy");
        drop(task);
    }
}
