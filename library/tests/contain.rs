//! Candidates stay out of the caller's way: their panics never reach the panic hook (nothing
//! printed, no backtrace taken on the caller's path), blocking candidates are reported as the
//! timeouts they are, and a mismatch can be made to fail a test with a readable message.
//! One binary of its own: the panic hook is process-wide.
use shadowdiff::{
    CandidateOutcome, Experiment, MemoryPublisher, RaiseOnMismatches, Rules, RulesConfig, Value,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

thread_local! {
    /// Panics the hook saw on this thread (other tests panic on theirs).
    static HOOK_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn hook_calls() -> usize {
    HOOK_CALLS.with(|c| c.get())
}

/// The application's own hook, set before any experiment ran (every test calls this first): it
/// sees every panic but the candidates'. A hook set after the first experiment would replace the
/// library's, as documented.
fn install_recording_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            HOOK_CALLS.with(|c| c.set(c.get() + 1));
            default(info);
        }));
    });
}

#[test]
fn candidate_panics_are_silent_and_counted_and_other_panics_still_reach_the_hook() {
    install_recording_hook();
    let mem = MemoryPublisher::new();
    let before = (hook_calls(), shadowdiff::silenced_candidate_panics());
    for _ in 0..5 {
        let got = Experiment::new("silent-panic")
            .control(|| 1)
            .candidate("v2", || -> i32 { panic!("candidate blew up") })
            .publisher(mem.clone())
            .run();
        assert_eq!(got, 1);
    }
    let runs = mem.runs();
    assert_eq!(runs.len(), 5);
    assert!(runs
        .iter()
        .all(|r| r.candidates[0].outcome == CandidateOutcome::Panic));
    assert_eq!(
        hook_calls(),
        before.0,
        "no candidate panic reached the hook"
    );
    assert!(shadowdiff::silenced_candidate_panics() >= before.1 + 5);

    // The control's panic is the caller's: it reaches the hook and propagates.
    let r = catch_unwind(|| {
        Experiment::new("silent-panic-control")
            .control(|| -> i32 { panic!("control panics") })
            .candidate("v2", || 1)
            .publisher(mem.clone())
            .run()
    });
    assert!(r.is_err());
    assert_eq!(hook_calls(), before.0 + 1);

    // An async candidate's panic, in a poll, is silent too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(
        Experiment::new("silent-panic-async")
            .control_async(async { 2 })
            .candidate("v2", || async { panic!("async candidate blew up") })
            .publisher(mem.clone())
            .run(),
    );
    assert_eq!(got, 2);
    assert_eq!(hook_calls(), before.0 + 1);

    // So is a panic in the closure that builds an async candidate's future (it runs at the
    // candidate's first poll, inside the same containment), with or without a runtime's timer.
    let built = rt.block_on(
        Experiment::new("silent-panic-async-build")
            .control_async(async { 3 })
            .candidate("v2", || -> std::future::Ready<i32> {
                panic!("building the candidate blew up")
            })
            .publisher(mem.clone())
            .run(),
    );
    assert_eq!(built, 3);
    assert_eq!(hook_calls(), before.0 + 1);
    let run = mem
        .runs()
        .into_iter()
        .find(|r| r.experiment == "silent-panic-async-build")
        .expect("the run was published");
    assert_eq!(run.candidates[0].outcome, CandidateOutcome::Panic);
    assert!(
        run.candidates[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("building the candidate blew up")),
        "{:?}",
        run.candidates[0].detail
    );
}

#[tokio::test]
async fn a_candidate_that_blocks_past_the_timeout_is_a_timeout_not_a_match() {
    install_recording_hook();
    let mem = MemoryPublisher::new();
    let got = Experiment::new("blocking-inline")
        .control_async(async { 7 })
        .candidate("v2", || async {
            std::thread::sleep(Duration::from_millis(200));
            7
        })
        .timeout(Duration::from_millis(20))
        .publisher(mem.clone())
        .run()
        .await;
    assert_eq!(got, 7);
    assert_eq!(
        mem.runs()[0].candidates[0].outcome,
        CandidateOutcome::Timeout
    );
}

#[tokio::test]
async fn candidate_blocking_keeps_the_timeout_and_does_not_hold_the_caller() {
    install_recording_hook();
    let mem = MemoryPublisher::new();
    let t = Instant::now();
    let got = Experiment::new("blocking-pool")
        .control_async(async { 7 })
        .candidate_blocking("v2", || {
            std::thread::sleep(Duration::from_secs(2));
            7
        })
        .candidate_blocking("v3", || 7)
        .timeout(Duration::from_millis(50))
        .publisher(mem.clone())
        .run()
        .await;
    assert_eq!(got, 7);
    // The 2 s of blocking work is not the caller's: it returns after about the timeout.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let run = &mem.runs()[0];
    assert_eq!(
        run.candidate("v2").unwrap().outcome,
        CandidateOutcome::Timeout
    );
    assert_eq!(
        run.candidate("v3").unwrap().outcome,
        CandidateOutcome::Matched
    );
}

#[test]
fn raise_on_mismatches_fails_the_test_with_the_context_and_the_differences() {
    install_recording_hook();
    let _raise = RaiseOnMismatches::on();
    let mem = MemoryPublisher::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        Experiment::new("raise-me")
            .control(|| serde_json::json!({"total": 10, "currency": "EUR"}))
            .candidate("v2", || serde_json::json!({"total": 11, "currency": "EUR"}))
            .context("order", 42)
            .publisher(mem.clone())
            .run()
    }));
    let message = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("experiment `raise-me` mismatched"),
        "{message}"
    );
    assert!(message.contains("order=42"), "{message}");
    assert!(
        message.contains("result.total [value]: control 10 / candidate 11"),
        "{message}"
    );
    assert_eq!(mem.runs().len(), 1, "published before raising");

    // A match does not raise; nor does a mismatch once the guard says off.
    let same = Experiment::new("raise-me")
        .control(|| 1)
        .candidate("v2", || 1)
        .run();
    assert_eq!(same, 1);
    let _off = RaiseOnMismatches::off();
    assert_eq!(
        Experiment::new("raise-me")
            .control(|| 1)
            .candidate("v2", || 2)
            .run(),
        1
    );
}

#[test]
fn one_experiment_can_raise_on_its_own() {
    install_recording_hook();
    let mem = MemoryPublisher::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        Experiment::new("raise-this")
            .control(|| 1)
            .candidate("v2", || 2)
            .raise_on_mismatches(true)
            .publisher(mem.clone())
            .run()
    }));
    assert!(r.is_err());
    // Others keep the default: no raising.
    assert_eq!(
        Experiment::new("raise-not")
            .control(|| 1)
            .candidate("v2", || 2)
            .publisher(mem)
            .run(),
        1
    );
}

#[test]
fn rules_and_clean_need_no_other_crate() {
    install_recording_hook();
    let rules = Rules::compile(&RulesConfig {
        ignore: vec!["result.generated_at".into()],
        ..RulesConfig::default()
    })
    .unwrap();
    let mem = MemoryPublisher::new();
    Experiment::new("reexports")
        .control(|| serde_json::json!({"id": 1, "generated_at": 1}))
        .candidate("v2", || serde_json::json!({"id": 1, "generated_at": 2}))
        .rules(Arc::new(rules))
        .clean(|v| -> Value { v.clone() })
        .publisher(mem.clone())
        .run();
    assert_eq!(
        mem.runs()[0].candidates[0].outcome,
        CandidateOutcome::Matched
    );
}
