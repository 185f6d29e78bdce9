//! Rules for serialized results (ignore a volatile field, tolerate float noise) and
//! `compare_errors` for `Result`-returning code paths; every type needed comes from `shadowdiff`.
use shadowdiff::{Experiment, MemoryPublisher, Rules, RulesConfig, Tolerance};
use std::sync::Arc;

#[derive(serde::Serialize)]
struct Quote {
    price: f64,
    computed_at: u64,
}

#[derive(Debug)]
enum QuoteError {
    NotFound(String),
}

fn main() {
    let rules = Rules::compile(&RulesConfig {
        ignore: vec!["result.computed_at".into()],
        tolerance: Tolerance {
            absolute: 1e-6,
            ..Tolerance::default()
        },
        ..RulesConfig::default()
    })
    .expect("valid rules");
    let rules = Arc::new(rules);
    let mem = MemoryPublisher::new();

    Experiment::new("quote")
        .control(|| Quote {
            price: 0.3,
            computed_at: 1,
        })
        .candidate("v2", || Quote {
            price: 0.1 + 0.2,
            computed_at: 2,
        })
        .rules(rules.clone())
        .publisher(mem.clone())
        .run();

    let missing = Experiment::new("quote-missing")
        .try_control(|| -> Result<Quote, QuoteError> { Err(QuoteError::NotFound("sku 1".into())) })
        .candidate("v2", || Err(QuoteError::NotFound("SKU-1".into())))
        // Both "not found": the same error, whatever the wording.
        .compare_errors(|a, b| matches!((a, b), (QuoteError::NotFound(_), QuoteError::NotFound(_))))
        .publisher(mem.clone())
        .run();

    if let Err(QuoteError::NotFound(what)) = &missing {
        println!("the control's error came back unchanged: not found: {what}");
    }
    for run in mem.runs() {
        println!("{}: {}", run.experiment, run.candidates[0].outcome.as_str());
    }
}
