//! Differ throughput on realistic API responses built from the repository's JSON corpus
//! (`corpus/json`, see `corpus/README.md`; `SHADOWDIFF_CORPUS` names another directory).
//!
//! `cargo bench -p shadowdiff-differ --bench differ`
//!
//! Pairs are 2–4 KB JSON documents (tweets from twitter.json without their retweet; two
//! performances from citm_catalog.json) and a copy with one realistic mutation each: a changed
//! number, a renamed key, a number turned string, a removed key, a reordered array.

use criterion::{Criterion, Throughput};
use serde_json::Value;
use shadowdiff_differ::{compare_responses, Rules};
use shadowdiff_model::{Body, HttpResponse};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn corpus_dir() -> PathBuf {
    std::env::var_os("SHADOWDIFF_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/json"))
}

fn load(name: &str) -> Value {
    let path = corpus_dir().join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (the corpus is corpus/json in the repository; SHADOWDIFF_CORPUS \
             names another directory)",
            path.display()
        )
    });
    serde_json::from_slice(&text).expect("corpus file is JSON")
}

/// Documents between 2 and 4 KB.
fn documents() -> Vec<Value> {
    let mut docs = Vec::new();
    let twitter = load("twitter.json");
    for status in twitter["statuses"].as_array().into_iter().flatten() {
        let mut s = status.clone();
        if let Some(o) = s.as_object_mut() {
            o.remove("retweeted_status");
        }
        docs.push(s);
    }
    let citm = load("citm_catalog.json");
    let performances = citm["performances"].as_array().cloned().unwrap_or_default();
    for (i, pair) in performances.chunks(2).enumerate() {
        docs.push(serde_json::json!({"page": i, "items": pair}));
    }
    docs.retain(|d| (2048..=4096).contains(&serde_json::to_vec(d).map(|v| v.len()).unwrap_or(0)));
    docs
}

/// Applies mutation `kind` to the `n`-th suitable node.
fn mutate(doc: &Value, kind: usize, n: usize) -> Value {
    let mut out = doc.clone();
    let mut seen = 0;
    fn walk(v: &mut Value, kind: usize, n: usize, seen: &mut usize) -> bool {
        match v {
            Value::Object(map) => {
                if kind == 1 || kind == 3 {
                    if *seen == n {
                        if let Some(key) = map.keys().next().cloned() {
                            let old = map.remove(&key);
                            if kind == 1 {
                                map.insert(format!("{key}_v2"), old.unwrap_or(Value::Null));
                            }
                            return true;
                        }
                    }
                    *seen += 1;
                }
                map.values_mut().any(|c| walk(c, kind, n, seen))
            }
            Value::Array(items) => {
                if kind == 4 && items.len() > 1 {
                    if *seen == n {
                        items.reverse();
                        return true;
                    }
                    *seen += 1;
                }
                items.iter_mut().any(|c| walk(c, kind, n, seen))
            }
            Value::Number(num) if kind == 0 || kind == 2 => {
                if *seen == n {
                    *v = if kind == 0 {
                        serde_json::json!(num.as_f64().unwrap_or(0.0) + 1.0)
                    } else {
                        Value::String(num.to_string())
                    };
                    return true;
                }
                *seen += 1;
                false
            }
            _ => false,
        }
    }
    if !walk(&mut out, kind, n, &mut seen) {
        // Fewer nodes than `n`: take the first one.
        walk(&mut out, kind, 0, &mut 0);
    }
    out
}

fn response(v: &Value) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::complete(serde_json::to_vec(v).expect("serialize")),
        latency_us: 0,
    }
}

fn pairs() -> Vec<(HttpResponse, HttpResponse)> {
    documents()
        .iter()
        .enumerate()
        .map(|(i, d)| (response(d), response(&mutate(d, i % 5, i % 7))))
        .filter(|(a, b)| a.body.bytes != b.body.bytes)
        .collect()
}

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
    // Same bytes but different body objects with key order changed: parse and walk both.
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
