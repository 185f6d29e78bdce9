//! `#[shadowdiff::experiment]` on sync, `Result` and async functions, and its compile errors
//! (trybuild cases under `tests/ui`).
use shadowdiff::{experiment, CandidateOutcome, MemoryPublisher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

fn memory() -> Arc<MemoryPublisher> {
    static MEM: OnceLock<Arc<MemoryPublisher>> = OnceLock::new();
    MEM.get_or_init(|| {
        let m = MemoryPublisher::new();
        shadowdiff::set_default_publisher(m.clone());
        m
    })
    .clone()
}

fn runs_of(name: &str) -> Vec<shadowdiff::RunResult> {
    memory()
        .runs()
        .into_iter()
        .filter(|r| r.experiment == name)
        .collect()
}

fn new_total(items: Vec<u32>, tax: u32) -> u32 {
    items.iter().sum::<u32>() + tax + 1
}

#[experiment(candidate = new_total)]
fn total(items: Vec<u32>, tax: u32) -> u32 {
    items.iter().sum::<u32>() + tax
}

#[test]
fn sync_fn_body_is_the_control() {
    memory();
    assert_eq!(total(vec![1, 2], 3), 6);
    let runs = runs_of("total");
    assert_eq!(runs[0].candidates[0].name, "new_total");
    assert_eq!(runs[0].candidates[0].outcome, CandidateOutcome::Mismatched);
}

fn parse_v2(s: String) -> Result<i64, std::num::ParseIntError> {
    s.trim().parse()
}

#[experiment(candidate = parse_v2, name = "parse-number")]
fn parse(s: String) -> Result<i64, std::num::ParseIntError> {
    let n: i64 = s.parse()?;
    Ok(n)
}

#[test]
fn result_fn_propagates_errors_and_allows_question_mark() {
    memory();
    assert!(parse(" 7".into()).is_err());
    assert_eq!(parse("7".into()), Ok(7));
    let runs = runs_of("parse-number");
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .any(|r| r.candidates[0].outcome == CandidateOutcome::Mismatched));
}

async fn fetch_v2(id: u64) -> Result<String, String> {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    Ok(format!("user-{id}"))
}

#[experiment(candidate = fetch_v2, timeout_ms = 500)]
async fn fetch(id: u64) -> Result<String, String> {
    if id == 0 {
        return Err("no id".to_string());
    }
    Ok(format!("user-{id}"))
}

#[tokio::test]
async fn async_fn_runs_candidate_with_same_arguments() {
    memory();
    assert_eq!(fetch(3).await, Ok("user-3".to_string()));
    assert_eq!(fetch(0).await, Err("no id".to_string()));
    let runs = runs_of("fetch");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].candidates[0].outcome, CandidateOutcome::Matched);
    assert_eq!(runs[1].candidates[0].outcome, CandidateOutcome::Mismatched);
}

static CLONES: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, PartialEq)]
struct Counted(u32);
impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0)
    }
}

fn double_v2(x: Counted) -> u32 {
    x.0 * 2
}

#[experiment(candidate = double_v2, percent = 0.0)]
fn double(x: Counted) -> u32 {
    x.0 * 2
}

#[experiment(candidate = double_v2, name = "double-eq", eq)]
fn double_eq(x: Counted) -> u32 {
    x.0 + x.0
}

#[test]
fn arguments_are_cloned_only_when_sampled_in() {
    memory();
    for i in 0..100 {
        assert_eq!(double(Counted(i)), i * 2);
    }
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);
    assert_eq!(double_eq(Counted(2)), 4);
    assert_eq!(CLONES.load(Ordering::SeqCst), 1);
    shadowdiff::settings("double").set_percent(100.0);
    double(Counted(1));
    assert_eq!(CLONES.load(Ordering::SeqCst), 2);
}

#[test]
fn trybuild_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

// Per-call settings of the attribute: publisher, compare, compare_errors, context, strict.

fn local_publisher() -> Arc<MemoryPublisher> {
    static MEM: OnceLock<Arc<MemoryPublisher>> = OnceLock::new();
    MEM.get_or_init(MemoryPublisher::new).clone()
}

fn local_runs(name: &str) -> Vec<shadowdiff::RunResult> {
    local_publisher()
        .runs()
        .into_iter()
        .filter(|r| r.experiment == name)
        .collect()
}

fn price_v2(cents: u64, user: String) -> f64 {
    let _ = user;
    cents as f64 / 100.0 + 0.001
}

/// Prices within a tenth of a cent are the same price.
fn same_price(a: &f64, b: &f64) -> bool {
    (a - b).abs() < 0.005
}

#[experiment(
    candidate = price_v2,
    name = "price-attr",
    publisher = local_publisher,
    compare = same_price,
    context(user = user, cents = cents * 2)
)]
fn price(cents: u64, user: String) -> f64 {
    let _ = user;
    cents as f64 / 100.0
}

#[test]
fn the_attribute_takes_a_publisher_a_compare_and_context() {
    assert_eq!(price(1250, "ada".into()), 12.5);
    let runs = local_runs("price-attr");
    assert_eq!(runs.len(), 1, "published to the given publisher");
    let run = &runs[0];
    assert_eq!(
        run.candidates[0].outcome,
        CandidateOutcome::Matched,
        "compare decides"
    );
    assert_eq!(
        run.context,
        vec![("user", "ada".to_string()), ("cents", "2500".to_string())]
    );
    assert!(memory().runs().iter().all(|r| r.experiment != "price-attr"));
}

#[derive(Debug)]
struct LookupError(#[allow(dead_code)] &'static str);

fn lookup_v2(id: u32) -> Result<u32, LookupError> {
    if id == 0 {
        Err(LookupError("no such user (v2 wording)"))
    } else {
        Ok(id)
    }
}

/// Both "not found" errors are the same error, whatever the wording.
fn both_not_found(_: &LookupError, _: &LookupError) -> bool {
    true
}

#[experiment(
    candidate = lookup_v2,
    name = "lookup-attr",
    publisher = local_publisher,
    compare_errors = both_not_found,
    eq
)]
fn lookup(id: u32) -> Result<u32, LookupError> {
    if id == 0 {
        Err(LookupError("user not found"))
    } else {
        Ok(id)
    }
}

#[test]
fn the_attribute_takes_compare_errors_for_result_functions() {
    assert!(lookup(0).is_err());
    let runs = local_runs("lookup-attr");
    assert_eq!(runs[0].candidates[0].outcome, CandidateOutcome::Matched);
}

fn score_v2(x: u32) -> u32 {
    x + 1
}

#[experiment(candidate = score_v2, name = "score-strict", publisher = local_publisher, strict)]
fn score(x: u32) -> u32 {
    x
}

#[test]
fn strict_makes_a_mismatch_fail_the_caller_with_the_differences() {
    let r = std::panic::catch_unwind(|| score(3));
    let message = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("experiment `score-strict` mismatched"),
        "{message}"
    );
    assert!(message.contains("control 3 / candidate 4"), "{message}");
    assert_eq!(local_runs("score-strict").len(), 1, "published first");
}
