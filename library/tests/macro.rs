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
