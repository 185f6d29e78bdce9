//! Differ throughput on realistic API responses built from the repository's JSON corpus
//! (`corpus/json`, see `corpus/README.md`; `SHADOWDIFF_CORPUS` names another directory).
//!
//! `cargo bench -p shadowdiff-differ --bench differ`
//!
//! Pairs are 2–4 KB JSON documents (tweets from twitter.json without their retweet; two
//! performances from citm_catalog.json) and a copy with one realistic mutation each: a changed
//! number, a renamed key, a number turned string, a removed key, a reordered array.

mod common;

use common::pairs;
use criterion::{Criterion, Throughput};
use serde_json::Value;
use shadowdiff_differ::{compare_responses, Rules};
use shadowdiff_model::{Body, HttpResponse};
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let rules = Rules::default();
    let mutated = pairs();
    let sizes: Vec<usize> = mutated.iter().map(|(a, _)| a.body.bytes.len()).collect();
    eprintln!(
        "{} mutated pairs, control bodies {}..{} bytes",
        mutated.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );
    let text_fallbacks = mutated
        .iter()
        .filter(|(a, x)| {
            compare_responses(a, x, &rules)
                .differences
                .iter()
                .any(|d| d.kind == shadowdiff_model::DiffKind::Text)
        })
        .count();
    eprintln!("pairs that fell back to a text diff: {text_fallbacks}");
    let mut group = c.benchmark_group("differ");
    group.throughput(Throughput::Elements(mutated.len() as u64));
    group.bench_function("json_pairs_mutated", |b| {
        b.iter(|| {
            let mut found = 0;
            for (a, x) in &mutated {
                found += compare_responses(a, x, &rules).differences.len();
            }
            assert!(found >= mutated.len());
        })
    });
    group.bench_function("json_parse_only_both_sides", |b| {
        let mut arena = shadowdiff_differ::Arena::new();
        b.iter(|| {
            for (a, x) in &mutated {
                arena.reset();
                let pa = shadowdiff_differ::Node::parse(&a.body.bytes, &arena).expect("json");
                let px = shadowdiff_differ::Node::parse(&x.body.bytes, &arena).expect("json");
                criterion::black_box((pa, px));
            }
        })
    });
    // The pair as `compare_responses` parses it: the mutated copy takes the control's subtrees.
    group.bench_function("json_parse_pair", |b| {
        let mut arena = shadowdiff_differ::Arena::new();
        b.iter(|| {
            for (a, x) in &mutated {
                arena.reset();
                let (pa, px) =
                    shadowdiff_differ::Node::parse_pair(&a.body.bytes, &x.body.bytes, &arena);
                criterion::black_box((pa.expect("json"), px.expect("json")));
            }
        })
    });
    let identical: Vec<(HttpResponse, HttpResponse)> = mutated
        .iter()
        .map(|(a, _)| (a.clone(), a.clone()))
        .collect();
    group.bench_function("json_pairs_identical", |b| {
        b.iter(|| {
            for (a, x) in &identical {
                assert!(compare_responses(a, x, &rules).differences.is_empty());
            }
        })
    });
    // The same values written another way (pretty): nothing shared, so the pair parse reads
    // both bodies whole (its worst case), and the walk goes through both.
    let reordered: Vec<(HttpResponse, HttpResponse)> = mutated
        .iter()
        .map(|(a, _)| {
            let v: Value = serde_json::from_slice(&a.body.bytes).expect("json");
            let mut pretty = a.clone();
            pretty.body = Body::complete(serde_json::to_vec_pretty(&v).expect("json"));
            (a.clone(), pretty)
        })
        .collect();
    group.bench_function("json_pairs_equal_after_parse", |b| {
        b.iter(|| {
            for (a, x) in &reordered {
                assert!(compare_responses(a, x, &rules).differences.is_empty());
            }
        })
    });
    group.finish();

    // Text diff deadline: the worst pair we know (long, every line different) must stay under 5 ms.
    let text = |seed: u64| -> HttpResponse {
        let body: String = (0..20_000)
            .map(|i| format!("row {}\n", (i * 7919 + seed) % 100_003))
            .collect();
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Body::complete(body.into_bytes()),
            latency_us: 0,
        }
    };
    let (ta, tb) = (text(1), text(2));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let _ = compare_responses(&ta, &tb, &rules);
        worst = worst.max(t.elapsed());
    }
    eprintln!("text diff of two 200 KB bodies, worst of 20: {worst:?} (deadline target 5 ms)");
    c.bench_function("differ/text_200kb_all_lines_differ", |b| {
        b.iter(|| compare_responses(&ta, &tb, &rules))
    });
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the macro's `pub fn`
// would need a doc comment it cannot carry.
fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench(&mut c);
    Criterion::default().configure_from_args().final_summary();
}
