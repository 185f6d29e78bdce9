//! Async experiments: candidates run concurrently with the control under a timeout, panics
//! and errors stay isolated, detached runs return at once and are shed beyond their bound.
use shadowdiff::{CandidateOutcome, ControlOutcome, Experiment, MemoryPublisher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What candidate `name` of `run` came to (the run must have it).
fn outcome(run: &shadowdiff::RunResult, name: &str) -> CandidateOutcome {
    run.candidate(name).expect("the candidate ran").outcome
}

/// Sets its flag when dropped: proves a timed-out candidate future was cancelled.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn candidates_run_concurrently_with_the_control() {
    let mem = MemoryPublisher::new();
    let t = Instant::now();
    let got = Experiment::new("async-concurrent")
        .control_async(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            vec![1, 2, 3]
        })
        .candidate("v2", || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            vec![1, 3, 2]
        })
        .candidate("v3", || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            vec![1, 2, 3]
        })
        .publisher(mem.clone())
        .run()
        .await;
    assert_eq!(got, vec![1, 2, 3]);
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let run = &mem.runs()[0];
    assert_eq!(outcome(run, "v2"), CandidateOutcome::Mismatched);
    assert_eq!(outcome(run, "v3"), CandidateOutcome::Matched);
    assert_eq!(run.control.cpu, None, "no CPU time for async arms");
}

#[tokio::test]
async fn timeout_cancels_the_candidate() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let mem = MemoryPublisher::new();
    let got = Experiment::new("async-timeout")
        .control_async(async { 1 })
        .candidate("slow", move || async move {
            let _guard = DropFlag(flag);
            tokio::time::sleep(Duration::from_secs(30)).await;
            1
        })
        .timeout(Duration::from_millis(20))
        .publisher(mem.clone())
        .run()
        .await;
    assert_eq!(got, 1);
    assert!(
        dropped.load(Ordering::SeqCst),
        "timed-out future was dropped"
    );
    assert_eq!(
        mem.runs()[0].candidates[0].outcome,
        CandidateOutcome::Timeout
    );
}

#[tokio::test]
async fn async_candidate_panic_is_isolated_and_control_error_propagates() {
    let mem = MemoryPublisher::new();
    let got: Result<u8, String> = Experiment::new("async-errors")
        .try_control_async(async { Err("control failed".to_string()) })
        .candidate("panics", || async { panic!("candidate exploded") })
        .candidate("same-error", || async { Err("control failed".to_string()) })
        .publisher(mem.clone())
        .run()
        .await;
    assert_eq!(got, Err("control failed".to_string()));
    let run = &mem.runs()[0];
    assert_eq!(run.control.outcome, ControlOutcome::Error);
    assert_eq!(outcome(run, "panics"), CandidateOutcome::Panic);
    assert_eq!(outcome(run, "same-error"), CandidateOutcome::Matched);
}

fn boom() -> u8 {
    std::panic::panic_any(7_u32)
}

#[tokio::test]
async fn async_control_panic_propagates() {
    use futures_util::FutureExt;
    let mem = MemoryPublisher::new();
    let err = std::panic::AssertUnwindSafe(
        Experiment::new("async-control-panic")
            .control_async(async { boom() })
            .candidate("v2", || async { 1_u8 })
            .publisher(mem.clone())
            .run(),
    )
    .catch_unwind()
    .await
    .expect_err("propagates");
    assert_eq!(err.downcast_ref::<u32>(), Some(&7));
}

#[tokio::test]
async fn sampled_out_async_never_builds_the_candidate() {
    let built = Arc::new(AtomicUsize::new(0));
    let b = built.clone();
    let got = Experiment::new("async-zero")
        .percent(0.0)
        .control_async(async { 1 })
        .candidate("v2", move || {
            b.fetch_add(1, Ordering::Relaxed);
            async { 2 }
        })
        .run()
        .await;
    assert_eq!(got, 1);
    assert_eq!(built.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn detached_returns_at_once_and_compares_in_the_background() {
    let mem = MemoryPublisher::new();
    let t = Instant::now();
    let got = Experiment::new("async-detached")
        .control_async(async { 5 })
        .candidate("v2", || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            6
        })
        .timeout(Duration::from_secs(5))
        .publisher(mem.clone())
        .run_detached()
        .await;
    assert_eq!(got, 5);
    // Returned before the candidate could have finished (no tighter wall-clock bound: a busy
    // host may pause any thread for tens of milliseconds).
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(mem.runs().is_empty(), "candidate still running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while mem.runs().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let runs = mem.runs();
    assert_eq!(runs[0].candidates[0].outcome, CandidateOutcome::Mismatched);
}

#[tokio::test]
async fn detached_sheds_beyond_the_bound_and_counts() {
    let settings = shadowdiff::settings("async-shed");
    settings.set_max_in_flight(2);
    let mem = MemoryPublisher::new();
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let (r, s) = (release.clone(), started.clone());
        let got = Experiment::new("async-shed")
            .control_async(async { 1 })
            .candidate("v2", move || async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.notified().await;
                1
            })
            .timeout(Duration::from_secs(5))
            .publisher(mem.clone())
            .run_detached()
            .await;
        assert_eq!(got, 1);
    }
    assert_eq!(settings.shed(), 3);
    assert_eq!(mem.shed_count(), 3);
    release.notify_waiters();
    for _ in 0..100 {
        if mem.runs().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        release.notify_waiters();
    }
    assert_eq!(mem.runs().len(), 2);
    assert_eq!(started.load(Ordering::SeqCst), 2);
}

/// Pending at its first poll (waking itself), ready at the next.
struct YieldOnce(bool);
impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Polls `fut` to its end on this thread, outside any tokio runtime.
fn block_on_without_tokio<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1000 {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future did not finish in 1000 polls");
}

#[test]
fn without_a_tokio_runtime_pending_arms_run_to_their_end_without_a_timer() {
    let mem = MemoryPublisher::new();
    let got = block_on_without_tokio(
        Experiment::new("async-no-runtime")
            .control_async(async {
                YieldOnce(false).await;
                5
            })
            .candidate("v2", || async {
                YieldOnce(false).await;
                YieldOnce(false).await;
                5
            })
            .candidate("v3", || async {
                YieldOnce(false).await;
                6
            })
            .publisher(mem.clone())
            .run(),
    );
    assert_eq!(got, 5);
    let runs = mem.runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(outcome(run, "v2"), CandidateOutcome::Matched);
    assert_eq!(outcome(run, "v3"), CandidateOutcome::Mismatched);

    // One candidate takes the path without a vector; same outcome.
    let got = block_on_without_tokio(
        Experiment::new("async-no-runtime-one")
            .control_async(async { 5 })
            .candidate("v2", || async {
                YieldOnce(false).await;
                5
            })
            .publisher(mem.clone())
            .run(),
    );
    assert_eq!(got, 5);
    assert_eq!(outcome(&mem.runs()[1], "v2"), CandidateOutcome::Matched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_future_is_send_and_can_be_spawned_as_it_is() {
    let mem = MemoryPublisher::new();
    // `run()` returns a named future (`RunFuture`): spawned directly, it runs on the pool.
    let run = Experiment::new("async-spawned")
        .control_async(async {
            tokio::task::yield_now().await;
            9
        })
        .candidate("v2", || async { 9 })
        .publisher(mem.clone())
        .run();
    let got = tokio::spawn(run).await.expect("the task finished");
    assert_eq!(got, 9);
    assert_eq!(outcome(&mem.runs()[0], "v2"), CandidateOutcome::Matched);
}
