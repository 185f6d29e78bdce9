//! Turning two arm results into a verdict with path-level differences.

use crate::result::CandidateOutcome;
use serde::Serialize;
use shadowdiff_differ::{diff_json, excerpt, Rules};
use shadowdiff_model::{DiffKind, Difference};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::OnceLock;

/// Root of every path the library reports, as `body` is for HTTP.
pub const ROOT: &str = "result";

/// Differences between two successful values (`vec![]` means equal).
pub(crate) type DiffFn<R> = fn(&R, &R, &Rules) -> Vec<Difference>;

/// A boxed check over the control's and a candidate's result.
pub(crate) type Check<'a, R> = Box<dyn Fn(&R, &R) -> bool + Send + Sync + 'a>;

/// A `compare` on the `Ok` values of a `Result` experiment.
pub(crate) fn on_ok<'a, V, E>(
    f: impl Fn(&V, &V) -> bool + Send + Sync + 'a,
) -> Check<'a, Result<V, E>> {
    Box::new(move |a: &Result<V, E>, b: &Result<V, E>| matches!((a, b), (Ok(a), Ok(b)) if f(a, b)))
}

/// A `compare_errors` on the `Err` values of a `Result` experiment.
pub(crate) fn on_err<'a, V, E>(
    f: impl Fn(&E, &E) -> bool + Send + Sync + 'a,
) -> Check<'a, Result<V, E>> {
    Box::new(
        move |a: &Result<V, E>, b: &Result<V, E>| matches!((a, b), (Err(a), Err(b)) if f(a, b)),
    )
}

/// A result `run` can diff: anything `serde::Serialize` (derive it). Results that are not can
/// still be compared with `PartialEq`: `run_eq()`, or `eq` in the attribute.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be diffed: it does not implement `serde::Serialize`",
    label = "`run` serializes results to diff them",
    note = "derive `serde::Serialize` for `{Self}`, or compare with `PartialEq` instead: `.run_eq()` (or `eq` in `#[shadowdiff::experiment(..)]`)"
)]
pub trait Diffable: Serialize {}

impl<T: Serialize + ?Sized> Diffable for T {}

/// How an experiment's results split into values and errors.
pub trait ArmKind<R>: sealed::Sealed {
    /// `Some(message)` when the result is an error.
    fn error_text(result: &R) -> Option<String>;
}

/// Arms return plain values; only panics are failures.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

/// Arms return `Result<V, E>`; `Err` is an error, and values are compared on `V`.
#[derive(Debug, Clone, Copy)]
pub struct Fallible;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Plain {}
    impl Sealed for super::Fallible {}
}

impl<R> ArmKind<R> for Plain {
    #[inline]
    fn error_text(_: &R) -> Option<String> {
        None
    }
}

impl<V, E: Debug> ArmKind<Result<V, E>> for Fallible {
    fn error_text(result: &Result<V, E>) -> Option<String> {
        result.as_ref().err().map(|e| format!("{e:?}"))
    }
}

pub(crate) fn default_rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(Rules::default)
}

fn whole(kind: DiffKind, control: String, candidate: String) -> Vec<Difference> {
    vec![Difference {
        path: ROOT.to_string(),
        kind,
        control: Some(control),
        candidate: Some(candidate),
    }]
}

/// The differ's engine on the serialized values: same paths, kinds and rules as HTTP bodies.
pub(crate) fn serde_diff<R: Serialize>(a: &R, b: &R, rules: &Rules) -> Vec<Difference> {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        // Rules only ever relax a comparison: equal values need no walk.
        (Ok(a), Ok(b)) if a == b => Vec::new(),
        (Ok(a), Ok(b)) => diff_json(&a, &b, rules, ROOT),
        (a, b) => {
            let show = |v: Result<serde_json::Value, serde_json::Error>| match v {
                Ok(v) => excerpt(&v),
                Err(e) => format!("<not serializable: {e}>"),
            };
            let (a, b) = (show(a), show(b));
            if a == b {
                Vec::new()
            } else {
                whole(DiffKind::Value, a, b)
            }
        }
    }
}

/// `PartialEq` fallback: one difference at the root, rendered with `Debug`.
pub(crate) fn eq_diff<R: PartialEq + Debug>(a: &R, b: &R, _: &Rules) -> Vec<Difference> {
    if a == b {
        Vec::new()
    } else {
        whole(DiffKind::Value, short_debug(a), short_debug(b))
    }
}

pub(crate) fn serde_diff_ok<V: Serialize, E>(
    a: &Result<V, E>,
    b: &Result<V, E>,
    rules: &Rules,
) -> Vec<Difference> {
    match (a, b) {
        (Ok(a), Ok(b)) => serde_diff(a, b, rules),
        _ => Vec::new(),
    }
}

pub(crate) fn eq_diff_ok<V: PartialEq + Debug, E>(
    a: &Result<V, E>,
    b: &Result<V, E>,
    rules: &Rules,
) -> Vec<Difference> {
    match (a, b) {
        (Ok(a), Ok(b)) => eq_diff(a, b, rules),
        _ => Vec::new(),
    }
}

fn short_debug<T: Debug>(v: &T) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// What a candidate did, before judging.
pub(crate) enum Ran<R> {
    Value(R),
    Panic(String),
    Timeout,
}

/// The comparison settings of one experiment. The arm kind is a type parameter, not a function
/// pointer, so that a plain experiment's error checks (always `None`) compile away.
pub(crate) struct Judge<'j, 'a, R, K> {
    pub(crate) diff: DiffFn<R>,
    pub(crate) rules: &'j Rules,
    pub(crate) compare: Option<&'j Check<'a, R>>,
    pub(crate) compare_errors: Option<&'j Check<'a, R>>,
    pub(crate) ignore: &'j [Check<'a, R>],
    pub(crate) kind: PhantomData<K>,
}

impl<R, K: ArmKind<R>> Judge<'_, '_, R, K> {
    /// Verdict, differences and detail for one candidate against the control.
    pub(crate) fn judge(
        &self,
        control: Result<&R, &str>,
        candidate: &Ran<R>,
    ) -> (CandidateOutcome, Vec<Difference>, Option<String>) {
        let cand = match candidate {
            Ran::Value(v) => v,
            Ran::Panic(msg) => return (CandidateOutcome::Panic, Vec::new(), Some(msg.clone())),
            Ran::Timeout => {
                return (
                    CandidateOutcome::Timeout,
                    Vec::new(),
                    Some("timed out; cancelled".to_string()),
                )
            }
        };
        let cand_err = K::error_text(cand);
        let control = match control {
            Ok(c) => c,
            Err(panic) => {
                let d = whole(
                    DiffKind::Type,
                    format!("panic: {panic}"),
                    cand_err.clone().unwrap_or_else(|| "value".to_string()),
                );
                return (CandidateOutcome::Mismatched, d, cand_err);
            }
        };
        let control_err = K::error_text(control);
        let (outcome, differences, detail) = match (&control_err, cand_err) {
            (Some(a), Some(b)) => {
                let same = match self.compare_errors {
                    Some(f) => f(control, cand),
                    None => *a == b,
                };
                if same {
                    (CandidateOutcome::Matched, Vec::new(), None)
                } else {
                    let d = vec![Difference {
                        path: "error".to_string(),
                        kind: DiffKind::Value,
                        control: Some(a.clone()),
                        candidate: Some(b.clone()),
                    }];
                    (CandidateOutcome::Mismatched, d, Some(b))
                }
            }
            (Some(a), None) => (
                CandidateOutcome::Mismatched,
                whole(DiffKind::Type, format!("error: {a}"), "value".to_string()),
                None,
            ),
            (None, Some(b)) => (
                CandidateOutcome::Error,
                whole(DiffKind::Type, "value".to_string(), format!("error: {b}")),
                Some(b),
            ),
            (None, None) => match self.compare {
                Some(f) => {
                    if f(control, cand) {
                        (CandidateOutcome::Matched, Vec::new(), None)
                    } else {
                        let mut d = (self.diff)(control, cand, self.rules);
                        if d.is_empty() {
                            d = whole(
                                DiffKind::Value,
                                "<custom compare>".to_string(),
                                "<custom compare: not equal>".to_string(),
                            );
                        }
                        (CandidateOutcome::Mismatched, d, None)
                    }
                }
                None => {
                    let d = (self.diff)(control, cand, self.rules);
                    if d.is_empty() {
                        (CandidateOutcome::Matched, d, None)
                    } else {
                        (CandidateOutcome::Mismatched, d, None)
                    }
                }
            },
        };
        if matches!(
            outcome,
            CandidateOutcome::Mismatched | CandidateOutcome::Error
        ) && self.ignore.iter().any(|f| f(control, cand))
        {
            return (CandidateOutcome::Ignored, differences, detail);
        }
        (outcome, differences, detail)
    }
}

/// Text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
