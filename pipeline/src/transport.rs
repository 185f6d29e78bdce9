//! What carries items between stages: the seam that makes `run` and the distributed commands
//! one pipeline.
//!
//! A stage reads [`Envelope`]s from an [`Input`] and hands what it made to an [`Output`]. An
//! envelope carries the item, the acknowledgement of the transport it came from, and the
//! [`BytePermit`] for the memory it holds. Two transports exist:
//!
//! - **memory** ([`MemoryInput`], [`MemoryOutput`]): bounded in-process queues; the
//!   acknowledgement is `()` (nothing to confirm: a crash loses the queue either way), the
//!   permit is taken by the tap and returned when the differ is done with the exchange.
//! - **Kafka** ([`KafkaInput`], [`KafkaResultOutput`]): the acknowledgement is the consumed
//!   record's [`Delivery`]; it is acknowledged only once the next stage holds the item durably
//!   (the broker acknowledged the replay result, or ClickHouse committed the rows), so a crash in
//!   between delivers the record again (at least once).
//!
//! The stage runners ([`crate::stages::run_replay_stage`], [`crate::stages::DiffWorkers`]) are
//! generic over these traits and do not know which transport they run on.

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use shadowdiff_kafka::{Delivery, RecordConsumer, ResultProducer};
use shadowdiff_model::{Exchange, ReplayResult};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

/// Sends to a crossbeam channel from async code without blocking the runtime's thread.
pub async fn send_async<T>(tx: &Sender<T>, mut item: T) -> Result<(), T> {
    let mut wait = Duration::from_micros(200);
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(20));
            }
            Err(TrySendError::Disconnected(back)) => return Err(back),
        }
    }
}

/// How often a busy stage looks at its input queue, instead of being woken for every item.
///
/// A consumer blocked in `recv` must be woken by the producer: a futex or eventfd system call
/// on the producer's thread (the tap's serving threads, for the capture queue), a context switch
/// and, for crossbeam, a few `sched_yield`s before it parks again. At a steady 5,000 exchanges/s
/// that was one wake-up per item in every stage, which cost more CPU than the work itself
/// (docs/performance-journal.md, section 8). Looking every few milliseconds while items keep
/// coming lets each wake-up take a batch, and costs the producer nothing. A stage sleeps only
/// when its queue is empty, so the interval bounds how long an item waits, not how many are
/// taken.
///
/// The replay stage looks every 2 ms (the candidate sees a request at most that much later).
pub const REPLAY_POLL: Duration = Duration::from_millis(2);
/// Differ threads look every 5 ms: nothing waits on a diff, and the results queue holds far
/// more than 5 ms of replays.
pub const DIFF_POLL: Duration = Duration::from_millis(5);
/// Empty looks in a row before a stage parks (waits to be woken by the next item).
const IDLE_POLLS: u32 = 5;

/// The polling policy both kinds of queue share: after `IDLE_POLLS` empty looks in a row, park.
#[derive(Default)]
pub(crate) struct EmptyLooks(u32);

impl EmptyLooks {
    pub(crate) fn got_item(&mut self) {
        self.0 = 0;
    }

    /// After an empty look: `true` means park now (the count starts again), `false` look again
    /// after the interval.
    pub(crate) fn park_now(&mut self) -> bool {
        let park = self.0 >= IDLE_POLLS;
        self.0 = if park { 0 } else { self.0 + 1 };
        park
    }
}

/// The receiving end of a crossbeam queue that polls while busy and parks when idle.
pub struct PolledReceiver<T> {
    rx: Receiver<T>,
    interval: Duration,
    empty: EmptyLooks,
}

impl<T> PolledReceiver<T> {
    /// Looks at `rx` every `interval` while items keep coming.
    pub fn new(rx: Receiver<T>, interval: Duration) -> Self {
        Self {
            rx,
            interval,
            empty: EmptyLooks::default(),
        }
    }

    /// The next item; `None` once every sender is gone and the queue is empty.
    pub fn recv(&mut self) -> Option<T> {
        loop {
            match self.rx.try_recv() {
                Ok(item) => {
                    self.empty.got_item();
                    return Some(item);
                }
                Err(TryRecvError::Disconnected) => return None,
                // Idle: park until a sender wakes us; the items after it are polled again.
                Err(TryRecvError::Empty) if self.empty.park_now() => return self.rx.recv().ok(),
                Err(TryRecvError::Empty) => std::thread::sleep(self.interval),
            }
        }
    }

    /// An item already queued, without waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Resolves once `rx` has seen `true` (or its sender is gone): the shutdown signal every stage
/// and server waits on.
pub async fn until_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Confirms that an item's effect is durable in the next stage.
pub trait Acknowledge: Send + 'static {
    /// Confirms it; called once the item's effect is durable downstream.
    fn ack(self);

    /// Confirms a batch at once (the store writer's); transports that can do it cheaper than
    /// one by one override it.
    fn ack_all(items: Vec<Self>)
    where
        Self: Sized,
    {
        items.into_iter().for_each(Self::ack);
    }
}

/// The memory transport has nothing to confirm.
impl Acknowledge for () {
    fn ack(self) {}
}

/// Kafka: let the consumed record's offset be committed.
impl Acknowledge for Delivery {
    fn ack(self) {
        Delivery::ack(self);
    }

    fn ack_all(items: Vec<Self>) {
        Delivery::ack_all(items);
    }
}

/// An item on its way through the pipeline.
pub struct Envelope<T, A> {
    /// What travels: an exchange, a replay result.
    pub item: T,
    /// Acknowledged once the item's effect is durable downstream; dropped unacknowledged, the
    /// transport delivers the item again (Kafka) or it is gone with the process (memory).
    pub ack: A,
    /// The bytes the item holds of its stage's budget; returned when dropped.
    pub bytes: BytePermit,
}

impl<T, A> Envelope<T, A> {
    /// The same envelope around another item (the replay result of an exchange).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Envelope<U, A> {
        Envelope {
            item: f(self.item),
            ack: self.ack,
            bytes: self.bytes,
        }
    }
}

/// A bound on the bytes of items in flight between a stage's input and the differ.
#[derive(Debug)]
pub struct ByteBudget {
    max: u64,
    used: AtomicU64,
}

impl ByteBudget {
    /// A budget of `max` bytes, none held.
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicU64::new(0),
        })
    }

    /// A budget that never refuses (tests, inputs bounded elsewhere).
    pub fn unbounded() -> Arc<Self> {
        Self::new(u64::MAX)
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// `bytes` of the budget, or `None` when they would pass its bound (the tap drops then).
    pub fn try_take(self: &Arc<Self>, bytes: u64) -> Option<BytePermit> {
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.max).then_some(after)
            })
            .is_ok();
        taken.then(|| BytePermit {
            budget: Some(self.clone()),
            bytes,
        })
    }

    /// `bytes` of the budget, waiting while it is spent (consumers, which may wait). One item
    /// larger than the whole budget is let through alone once nothing else is held, so it
    /// cannot stall its input forever.
    pub async fn take(self: &Arc<Self>, bytes: u64) -> BytePermit {
        let mut wait = Duration::from_micros(200);
        loop {
            if let Some(permit) = self.try_take(bytes) {
                return permit;
            }
            if bytes > self.max && self.used() == 0 {
                self.used.fetch_add(bytes, Ordering::Relaxed);
                return BytePermit {
                    budget: Some(self.clone()),
                    bytes,
                };
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(20));
        }
    }
}

/// Bytes held of a [`ByteBudget`]; given back when dropped, so no path can forget to.
#[derive(Debug)]
pub struct BytePermit {
    budget: Option<Arc<ByteBudget>>,
    bytes: u64,
}

impl BytePermit {
    /// A permit of no budget (items fed by something bounded elsewhere).
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: 0,
        }
    }

    /// Adds what the item gained on its way (the targets' responses): the budget may pass
    /// its bound here, which holds later offers back until the item is done.
    pub fn grow(&mut self, bytes: u64) {
        if let Some(budget) = &self.budget {
            budget.used.fetch_add(bytes, Ordering::Relaxed);
            self.bytes += bytes;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BytePermit {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// Why an input stopped for good (a fatal broker error); a closed input is `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The Kafka consumer failed (transient errors are retried before it gets here).
    #[error("Kafka consumer: {0}")]
    Kafka(#[from] shadowdiff_kafka::Error),
}

/// Where a stage's items come from.
pub trait Input<T>: Send + 'static {
    /// How an item of this input is confirmed.
    type Ack: Acknowledge;
    /// The next item; `Ok(None)` once the input is closed (shutdown) and what it still owes is
    /// handed out.
    fn next(
        &mut self,
    ) -> impl Future<Output = Result<Option<Envelope<T, Self::Ack>>, InputError>> + Send;
}

/// Where a stage's results go.
pub trait Output<T, A: Acknowledge>: Clone + Send + Sync + 'static {
    /// Hands `envelope` on. The output acknowledges it (or passes the acknowledgement along)
    /// once the next stage holds it; an item it cannot hand on is dropped unacknowledged.
    fn deliver(&self, envelope: Envelope<T, A>) -> impl Future<Output = ()> + Send;
}

/// The memory transport's queue between the tap and a replay thread.
pub type ExchangeQueue = mpsc::Sender<Envelope<Exchange, ()>>;

/// Reads a bounded in-process queue, looking at it every [`REPLAY_POLL`] while items keep
/// coming instead of being woken for each one (a receiver waiting in `recv` makes every
/// `try_send` on a serving thread wake this runtime). After `close` is notified, hands out what
/// is queued, then ends.
pub struct MemoryInput<T> {
    rx: mpsc::Receiver<Envelope<T, ()>>,
    close: Arc<Notify>,
    closing: bool,
    empty: EmptyLooks,
    depth: metrics::Gauge,
}

impl<T: Send + 'static> MemoryInput<T> {
    /// Reads `rx` until `close` is notified; `queue` labels its depth gauge.
    pub fn new(
        rx: mpsc::Receiver<Envelope<T, ()>>,
        close: Arc<Notify>,
        queue: &'static str,
    ) -> Self {
        Self {
            rx,
            close,
            closing: false,
            empty: EmptyLooks::default(),
            depth: crate::telemetry::queue_depth(queue),
        }
    }
}

impl<T: Send + 'static> Input<T> for MemoryInput<T> {
    type Ack = ();

    async fn next(&mut self) -> Result<Option<Envelope<T, ()>>, InputError> {
        loop {
            match self.rx.try_recv() {
                Ok(envelope) => {
                    self.empty.got_item();
                    self.depth.set(self.rx.len() as f64);
                    return Ok(Some(envelope));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(None),
                Err(mpsc::error::TryRecvError::Empty) => {
                    let idle = self.empty.park_now();
                    tokio::select! {
                        biased;
                        _ = self.close.notified(), if !self.closing => {
                            // Later offers fail as `closed`; what is queued is still handed out.
                            self.rx.close();
                            self.closing = true;
                        }
                        _ = tokio::time::sleep(REPLAY_POLL), if !idle => {}
                        next = self.rx.recv(), if idle => {
                            if next.is_some() {
                                self.empty.got_item();
                            }
                            return Ok(next);
                        }
                    }
                }
            }
        }
    }
}

/// Hands items to the differ pool's bounded queue, waiting (without blocking the runtime) while
/// it is full. The acknowledgement travels with the item: the store writer acknowledges it once
/// its rows are written.
pub struct MemoryOutput<T, A> {
    tx: Sender<Envelope<T, A>>,
}

impl<T, A> Clone for MemoryOutput<T, A> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T, A> MemoryOutput<T, A> {
    /// Hands items to `tx`.
    pub fn new(tx: Sender<Envelope<T, A>>) -> Self {
        Self { tx }
    }
}

impl<T: Send + 'static, A: Acknowledge> Output<T, A> for MemoryOutput<T, A> {
    async fn deliver(&self, envelope: Envelope<T, A>) {
        if send_async(&self.tx, envelope).await.is_err() {
            tracing::error!("The differ stage is gone; an item was lost.");
        }
    }
}

/// Reads a Kafka topic. Each record takes its bytes of `budget` before it is handed out, so a
/// backlog is read no faster than the stage behind it frees memory. Ends at `shutdown`.
pub struct KafkaInput<T> {
    consumer: Arc<RecordConsumer<T>>,
    budget: Arc<ByteBudget>,
    size: fn(&T) -> u64,
    shutdown: watch::Receiver<bool>,
}

impl<T> KafkaInput<T> {
    /// Reads `consumer`; `size` is what a record takes of `budget`.
    pub fn new(
        consumer: RecordConsumer<T>,
        budget: Arc<ByteBudget>,
        size: fn(&T) -> u64,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            consumer: Arc::new(consumer),
            budget,
            size,
            shutdown,
        }
    }

    /// The consumer, to commit stored offsets once every stage behind it is done.
    pub fn consumer(&self) -> Arc<RecordConsumer<T>> {
        self.consumer.clone()
    }
}

impl<T> Input<T> for KafkaInput<T>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    type Ack = Delivery;

    async fn next(&mut self) -> Result<Option<Envelope<T, Delivery>>, InputError> {
        let (item, ack) = tokio::select! {
            biased;
            _ = until_true(self.shutdown.clone()) => return Ok(None),
            next = self.consumer.recv() => next?,
        };
        let bytes = self.budget.take((self.size)(&item)).await;
        Ok(Some(Envelope { item, ack, bytes }))
    }
}

/// Publishes replay results to the results topic and acknowledges the exchange once the broker
/// acknowledged its result. A failed send is retried with backoff; only when shutting down (and
/// still failing after [`GIVE_UP_AFTER_STOP`]) is the exchange left unacknowledged, to be
/// replayed again by whoever consumes its partition next. A result too large for the topic even
/// without its bodies is dropped, counted and acknowledged: no retry could deliver it.
pub struct KafkaResultOutput {
    producer: Arc<ResultProducer>,
    shutdown: watch::Receiver<bool>,
}

/// How long a result is still retried after shutdown was asked for.
pub const GIVE_UP_AFTER_STOP: Duration = Duration::from_secs(5);

impl Clone for KafkaResultOutput {
    fn clone(&self) -> Self {
        Self {
            producer: self.producer.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

impl KafkaResultOutput {
    /// Publishes with `producer`; `shutdown` starts the give-up countdown of failing sends.
    pub fn new(producer: Arc<ResultProducer>, shutdown: watch::Receiver<bool>) -> Self {
        Self { producer, shutdown }
    }
}

impl<A: Acknowledge> Output<ReplayResult, A> for KafkaResultOutput {
    async fn deliver(&self, envelope: Envelope<ReplayResult, A>) {
        let Envelope { item, ack, bytes } = envelope;
        let mut backoff =
            shadowdiff_net::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut stopping_since: Option<Instant> = None;
        loop {
            match self.producer.send(&item).await {
                Ok(()) => {
                    ack.ack();
                    break;
                }
                Err(error @ shadowdiff_kafka::ProduceError::TooLarge { .. }) => {
                    // No retry can make it fit: acknowledge it as handled (counted by the
                    // producer as dropped, reason too_large) instead of replaying it forever.
                    tracing::error!(%error, exchange_id = %item.exchange.id, "A replay result can never be published; it is dropped.");
                    ack.ack();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, exchange_id = %item.exchange.id, "Publishing a replay result failed; retrying.");
                    if *self.shutdown.borrow() {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > GIVE_UP_AFTER_STOP {
                            tracing::warn!(exchange_id = %item.exchange.id, "Stopping with a result not published; its exchange will be replayed again.");
                            break;
                        }
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        drop(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polled_receiver_yields_every_item_in_order_then_none_when_senders_are_gone() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let sender = std::thread::spawn(move || {
            for i in 0..200u32 {
                tx.send(i).unwrap();
                if i % 50 == 0 {
                    // Long enough for the receiver to stop polling and park.
                    std::thread::sleep(Duration::from_millis(IDLE_POLLS as u64 + 5));
                }
            }
        });
        let mut rx = PolledReceiver::new(rx, Duration::from_millis(1));
        let got: Vec<u32> = std::iter::from_fn(|| rx.recv()).collect();
        sender.join().unwrap();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_parked_polled_receiver_wakes_for_the_next_item() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (got_tx, got_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut rx = PolledReceiver::new(rx, Duration::from_millis(1));
            while let Some(item) = rx.recv() {
                let _ = got_tx.send((item, Instant::now()));
            }
        });
        // Idle well past the polling window: the receiver is parked in `recv` now.
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        tx.send(7u8).unwrap();
        let (item, at) = got_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(item, 7);
        assert!(at.duration_since(sent) < Duration::from_secs(1));
    }

    #[test]
    fn a_permit_returns_its_bytes_when_dropped_however_it_grew() {
        let budget = ByteBudget::new(100);
        let mut a = budget.try_take(60).unwrap();
        assert!(budget.try_take(50).is_none(), "60 + 50 passes the bound");
        let b = budget.try_take(40).unwrap();
        assert_eq!(budget.used(), 100);
        a.grow(30);
        assert_eq!((a.bytes(), budget.used()), (90, 130));
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
        // A permit of no budget holds nothing and frees nothing.
        let mut none = BytePermit::none();
        none.grow(10);
        drop(none);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn take_waits_for_room_and_lets_one_oversized_item_through_alone() {
        let budget = ByteBudget::new(100);
        let held = budget.try_take(80).unwrap();
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(50).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "80 + 50 must wait");
        drop(held);
        let permit = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.used(), 50);
        drop(permit);
        let huge = tokio::time::timeout(Duration::from_secs(5), budget.take(1_000))
            .await
            .unwrap();
        assert_eq!(budget.used(), 1_000);
        drop(huge);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn memory_input_hands_out_what_is_queued_after_close_then_ends() {
        let (tx, rx) = mpsc::channel(8);
        let close = Arc::new(Notify::new());
        let mut input = MemoryInput::new(rx, close.clone(), "test");
        for i in 0..3u32 {
            tx.try_send(Envelope {
                item: i,
                ack: (),
                bytes: BytePermit::none(),
            })
            .unwrap();
        }
        assert_eq!(input.next().await.unwrap().unwrap().item, 0);
        close.notify_one();
        let rest: Vec<u32> = [
            input.next().await.unwrap(),
            input.next().await.unwrap(),
            input.next().await.unwrap(),
        ]
        .into_iter()
        .map(|e| e.map(|e| e.item).unwrap_or(u32::MAX))
        .collect();
        // Both queued items come out; the next call ends the input even with a sender alive.
        assert_eq!(rest, vec![1, 2, u32::MAX]);
        assert!(tx
            .try_send(Envelope {
                item: 9,
                ack: (),
                bytes: BytePermit::none()
            })
            .is_err());
    }
}
