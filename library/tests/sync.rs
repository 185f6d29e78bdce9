//! Sync experiments: the control's result, error or panic always reaches the caller; candidate
//! failures are isolated and reported; sampling, switches and comparison options.
use serde::Serialize;
use shadowdiff::{
    settings, CandidateOutcome, ControlOutcome, DiffKind, Experiment, MemoryPublisher,
    PublishError, Publisher, RunResult,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize)]
struct User {
    id: u32,
    name: String,
    tags: Vec<&'static str>,
}

fn user(name: &str) -> User {
    User {
        id: 7,
        name: name.to_string(),
        tags: vec!["a", "b"],
    }
}

fn only_run(mem: &MemoryPublisher) -> RunResult {
    let mut runs = mem.take();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.remove(0)
}

#[test]
fn returns_control_value_and_reports_path_level_differences() {
    let mem = MemoryPublisher::new();
    let got = Experiment::new("sync-paths")
        .control(|| user("ada"))
        .candidate("v2", || user("Ada"))
        .candidate("same", || user("ada"))
        .publisher(mem.clone())
        .context("user", 7)
        .cpu_time(true)
        .run();
    assert_eq!(got, user("ada"));
    let run = only_run(&mem);
    assert_eq!(run.experiment, "sync-paths");
    assert_eq!(run.context, vec![("user", "7".to_string())]);
    assert_eq!(run.control.outcome, ControlOutcome::Value);
    assert!(
        run.control.cpu.is_some(),
        "sync arms measure CPU time when asked"
    );
    assert!(run.candidate("v2").and_then(|c| c.cpu).is_some());
    let v2 = run.candidate("v2").expect("v2 ran");
    assert_eq!(v2.outcome, CandidateOutcome::Mismatched);
    assert_eq!(v2.differences.len(), 1);
    assert_eq!(v2.differences[0].path, "result.name");
    assert_eq!(v2.differences[0].kind, DiffKind::Value);
    assert_eq!(
        run.candidate("same").expect("ran").outcome,
        CandidateOutcome::Matched
    );
}

#[test]
fn partial_eq_fallback_for_non_serialize_results() {
    #[derive(Debug, PartialEq)]
    struct Opaque(u8);
    let mem = MemoryPublisher::new();
    let got = Experiment::new("sync-eq")
        .control(|| Opaque(1))
        .candidate("v2", || Opaque(2))
        .publisher(mem.clone())
        .run_eq();
    assert_eq!(got, Opaque(1));
    let run = only_run(&mem);
    let d = &run.candidates[0].differences[0];
    assert_eq!(d.path, "result");
    assert_eq!(d.control.as_deref(), Some("Opaque(1)"));
}

#[test]
fn control_error_propagates_unchanged() {
    #[derive(Debug, PartialEq)]
    struct MyErr(&'static str);
    let mem = MemoryPublisher::new();
    let got: Result<u32, MyErr> = Experiment::new("sync-control-err")
        .try_control(|| Err(MyErr("boom")))
        .candidate("v2", || Ok(1))
        .publisher(mem.clone())
        .run();
    assert_eq!(got, Err(MyErr("boom")));
    let run = only_run(&mem);
    assert_eq!(run.control.outcome, ControlOutcome::Error);
    assert_eq!(run.candidates[0].outcome, CandidateOutcome::Mismatched);
}

#[test]
fn control_panic_resumes_with_the_original_payload() {
    #[derive(Debug, PartialEq)]
    struct Payload(u64);
    let mem = MemoryPublisher::new();
    let err = catch_unwind(AssertUnwindSafe(|| {
        Experiment::new("sync-control-panic")
            .control(|| -> u32 { std::panic::panic_any(Payload(42)) })
            .candidate("v2", || 1)
            .publisher(mem.clone())
            .run()
    }))
    .expect_err("control panic propagates");
    assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(42)));
    assert_eq!(only_run(&mem).control.outcome, ControlOutcome::Panic);
}

#[test]
fn candidate_panic_and_error_are_isolated() {
    let mem = MemoryPublisher::new();
    let got: Result<u32, String> = Experiment::new("sync-candidate-panic")
        .try_control(|| Ok(5))
        .candidate("panics", || panic!("candidate exploded"))
        .candidate("errs", || Err("nope".to_string()))
        .publisher(mem.clone())
        .run();
    assert_eq!(got, Ok(5));
    let run = only_run(&mem);
    let p = run.candidate("panics").expect("ran");
    assert_eq!(p.outcome, CandidateOutcome::Panic);
    assert_eq!(p.detail.as_deref(), Some("candidate exploded"));
    assert_eq!(
        run.candidate("errs").expect("ran").outcome,
        CandidateOutcome::Error
    );
}

#[test]
fn arms_run_in_random_order() {
    let mut control_first = 0;
    for _ in 0..200 {
        let order = std::sync::Mutex::new(Vec::new());
        Experiment::new("sync-order")
            .control(|| order.lock().expect("lock").push("control"))
            .candidate("v2", || order.lock().expect("lock").push("v2"))
            .publisher(Arc::new(shadowdiff::NoopPublisher))
            .run();
        if order.lock().expect("lock")[0] == "control" {
            control_first += 1;
        }
    }
    assert!((40..160).contains(&control_first), "{control_first}");
}

#[test]
fn options_before_candidates_and_several_candidates() {
    // The first candidate shares the extras' allocation: options given before it, several
    // candidates and none must all behave as when the candidate comes first.
    let mem = MemoryPublisher::new();
    let mut first_positions = [0usize; 4];
    for _ in 0..400 {
        let order = std::sync::Mutex::new(Vec::new());
        let got = Experiment::new("sync-options-first")
            .control(|| {
                order.lock().expect("lock").push("control");
                1
            })
            .context("k", "v")
            .publisher(mem.clone())
            .candidate("a", || {
                order.lock().expect("lock").push("a");
                1
            })
            .candidate("b", || {
                order.lock().expect("lock").push("b");
                2
            })
            .candidate("c", || -> i32 { panic!("c") })
            .run();
        assert_eq!(got, 1);
        let order = order.into_inner().expect("lock");
        assert_eq!(order.len(), 3, "{order:?}");
        let at = order.iter().position(|s| *s == "a").expect("a ran");
        first_positions[at] += 1;
        let run = only_run(&mem);
        assert_eq!(run.context, vec![("k", "v".to_string())]);
        assert_eq!(run.candidates.len(), 3);
        assert_eq!(
            run.candidate("a").expect("a").outcome,
            CandidateOutcome::Matched
        );
        assert_eq!(
            run.candidate("b").expect("b").outcome,
            CandidateOutcome::Mismatched
        );
        assert_eq!(
            run.candidate("c").expect("c").outcome,
            CandidateOutcome::Panic
        );
    }
    // The first candidate takes every place among the arms that run (the panicking one
    // records nothing, so "a" is at 0, 1 or 2 of the three recorded).
    assert!(
        first_positions[..3].iter().all(|&n| n > 40),
        "{first_positions:?}"
    );

    let got = Experiment::new("sync-no-candidate")
        .control(|| 5)
        .context("k", 1)
        .publisher(mem.clone())
        .run();
    assert_eq!(got, 5);
    let run = only_run(&mem);
    assert!(run.candidates.is_empty());
    assert_eq!(run.context, vec![("k", "1".to_string())]);

    let got = Experiment::new("sync-nothing-given")
        .control(|| 6)
        .run_observed();
    assert_eq!(got.0, 6);
    assert!(got.1.expect("sampled in").candidates.is_empty());
}

#[test]
fn a_run_after_another_on_the_same_thread_observes_only_its_own_candidates() {
    // `run` keeps its observations vector for the thread's next run: it must come back empty.
    for (a, b) in [(3, 1), (1, 2), (5, 1), (1, 1)] {
        for i in 0..a {
            let exp = Experiment::new("sync-spare-a").control(|| 1);
            let exp = (0..i + 1).fold(exp, |e, _| e.candidate("x", || 2));
            exp.publisher(Arc::new(shadowdiff::NoopPublisher)).run();
        }
        let exp = Experiment::new("sync-spare-b").control(|| 1);
        let exp = (0..b).fold(exp, |e, _| e.candidate("y", || 1));
        let (v, run) = exp
            .publisher(Arc::new(shadowdiff::NoopPublisher))
            .run_observed();
        assert_eq!(v, 1);
        let run = run.expect("sampled in");
        assert_eq!(run.candidates.len(), b);
        assert!(run
            .candidates
            .iter()
            .all(|c| c.name == "y" && c.outcome == CandidateOutcome::Matched));
    }
}

#[test]
fn zero_percent_never_builds_or_calls_the_candidate() {
    let built = AtomicUsize::new(0);
    let called = AtomicUsize::new(0);
    let mem = MemoryPublisher::new();
    for _ in 0..1000 {
        let mut exp = Experiment::new("sync-zero").percent(0.0);
        let input = if exp.sampled() {
            built.fetch_add(1, Ordering::Relaxed);
            Some(3)
        } else {
            None
        };
        let out = exp
            .control(|| 3)
            .candidate("v2", || {
                called.fetch_add(1, Ordering::Relaxed);
                input.unwrap_or_default()
            })
            .publisher(mem.clone())
            .run();
        assert_eq!(out, 3);
    }
    assert_eq!(built.load(Ordering::Relaxed), 0);
    assert_eq!(called.load(Ordering::Relaxed), 0);
    assert!(mem.runs().is_empty());
}

#[test]
fn kill_switch_and_runtime_percent() {
    let s = settings("sync-kill");
    let called = AtomicUsize::new(0);
    let run = || {
        Experiment::new("sync-kill")
            .percent(0.0)
            .control(|| 1)
            .candidate("v2", || {
                called.fetch_add(1, Ordering::Relaxed);
                1
            })
            .publisher(Arc::new(shadowdiff::NoopPublisher))
            .run()
    };
    run();
    assert_eq!(called.load(Ordering::Relaxed), 0, "code percent 0");
    s.set_percent(100.0);
    run();
    assert_eq!(
        called.load(Ordering::Relaxed),
        1,
        "runtime percent overrides code"
    );
    s.set_enabled(false);
    run();
    assert_eq!(called.load(Ordering::Relaxed), 1, "kill switch");
    s.set_enabled(true);
    run();
    assert_eq!(called.load(Ordering::Relaxed), 2);
    assert_eq!(s.runs(), 2);
}

#[test]
fn enabled_and_run_if() {
    let called = AtomicUsize::new(0);
    let cond_called = AtomicUsize::new(0);
    let exp = |enabled: bool, cond: bool| {
        Experiment::new("sync-run-if")
            .enabled(enabled)
            .run_if(|| {
                cond_called.fetch_add(1, Ordering::Relaxed);
                cond
            })
            .control(|| 1)
            .candidate("v2", || {
                called.fetch_add(1, Ordering::Relaxed);
                1
            })
            .publisher(Arc::new(shadowdiff::NoopPublisher))
            .run()
    };
    exp(false, true);
    assert_eq!(
        cond_called.load(Ordering::Relaxed),
        0,
        "run_if skipped when disabled"
    );
    exp(true, false);
    assert_eq!(called.load(Ordering::Relaxed), 0);
    exp(true, true);
    assert_eq!(called.load(Ordering::Relaxed), 1);
}

#[test]
fn ignore_turns_a_mismatch_into_ignored() {
    let mem = MemoryPublisher::new();
    Experiment::new("sync-ignore")
        .control(|| user("ada"))
        .candidate("v2", || user("Ada"))
        .ignore(|a, b| a.name.eq_ignore_ascii_case(&b.name))
        .publisher(mem.clone())
        .run();
    let run = only_run(&mem);
    assert_eq!(run.candidates[0].outcome, CandidateOutcome::Ignored);
    assert!(!run.has_failures());
}

#[test]
fn compare_errors_changes_the_verdict() {
    let go = |same: bool| {
        let mem = MemoryPublisher::new();
        let exp = Experiment::new("sync-compare-errors")
            .try_control(|| Err::<u8, String>("timeout after 3ms".into()))
            .candidate("v2", || Err("timeout after 5ms".into()))
            .publisher(mem.clone());
        let exp = if same {
            exp.compare_errors(|a, b| a.starts_with("timeout") && b.starts_with("timeout"))
        } else {
            exp
        };
        assert!(exp.run().is_err());
        only_run(&mem).candidates[0].outcome
    };
    assert_eq!(go(false), CandidateOutcome::Mismatched);
    assert_eq!(go(true), CandidateOutcome::Matched);
}

#[test]
fn custom_compare_and_clean() {
    let mem = MemoryPublisher::new();
    Experiment::new("sync-compare")
        .control(|| 1.0_f64)
        .candidate("v2", || 1.0000001)
        .compare(|a, b| (a - b).abs() < 1e-3)
        .clean(|v| serde_json::json!({ "rounded": v.round() }))
        .publisher(mem.clone())
        .run();
    let run = only_run(&mem);
    assert_eq!(run.candidates[0].outcome, CandidateOutcome::Matched);
    assert_eq!(run.control.value, Some(serde_json::json!({"rounded": 1.0})));
}

#[test]
fn differ_rules_apply_to_results() {
    let rules = shadowdiff_differ::Rules::compile(&shadowdiff_differ::RulesConfig {
        ignore: vec!["result.name".into()],
        ..Default::default()
    })
    .expect("valid rules");
    let mem = MemoryPublisher::new();
    Experiment::new("sync-rules")
        .control(|| user("ada"))
        .candidate("v2", || user("Ada"))
        .rules(Arc::new(rules))
        .publisher(mem.clone())
        .run();
    assert_eq!(
        only_run(&mem).candidates[0].outcome,
        CandidateOutcome::Matched
    );
}

#[test]
fn before_and_after_run_only_when_sampled() {
    let before = AtomicUsize::new(0);
    let after = Arc::new(AtomicUsize::new(0));
    for percent in [0.0, 100.0] {
        let a = after.clone();
        Experiment::new("sync-hooks")
            .percent(percent)
            .control(|| 1)
            .candidate("v2", || 2)
            .before_run(|| {
                before.fetch_add(1, Ordering::Relaxed);
            })
            .after_run(move |run| {
                assert_eq!(run.candidates.len(), 1);
                a.fetch_add(1, Ordering::Relaxed);
            })
            .publisher(Arc::new(shadowdiff::NoopPublisher))
            .run();
    }
    assert_eq!(before.load(Ordering::Relaxed), 1);
    assert_eq!(after.load(Ordering::Relaxed), 1);
}

#[test]
fn run_strict_describes_the_mismatch() {
    let err = Experiment::new("sync-strict")
        .control(|| user("ada"))
        .candidate("v2", || user("Ada"))
        .publisher(Arc::new(shadowdiff::NoopPublisher))
        .run_strict()
        .expect_err("mismatch");
    let text = err.to_string();
    assert!(
        text.contains("experiment `sync-strict` mismatched"),
        "{text}"
    );
    assert!(text.contains("candidate `v2`: mismatched"), "{text}");
    assert!(text.contains("result.name [value]"), "{text}");
    assert_eq!(err.control, user("ada"));
    let ok = Experiment::new("sync-strict")
        .control(|| user("ada"))
        .candidate("v2", || user("ada"))
        .publisher(Arc::new(shadowdiff::NoopPublisher))
        .run_strict();
    assert_eq!(ok.expect("match"), user("ada"));
}

struct Failing;
impl Publisher for Failing {
    fn publish(&self, _: &RunResult) -> Result<(), PublishError> {
        Err(PublishError::Full)
    }
}
struct Panicking;
impl Publisher for Panicking {
    fn publish(&self, _: &RunResult) -> Result<(), PublishError> {
        panic!("publisher bug")
    }
}

#[test]
fn publishing_failures_never_reach_the_caller() {
    let before = shadowdiff::publish_failures();
    let a = Experiment::new("sync-publish-fail")
        .control(|| 1)
        .candidate("v2", || 2)
        .publisher(Arc::new(Failing))
        .run();
    let b = Experiment::new("sync-publish-fail")
        .control(|| 1)
        .candidate("v2", || 2)
        .publisher(Arc::new(Panicking))
        .after_run(|_| panic!("after_run bug"))
        .run();
    assert_eq!((a, b), (1, 1));
    assert!(shadowdiff::publish_failures() >= before + 2);
}
