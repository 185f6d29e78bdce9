//! The benchmark pairs both differ benches use: 2–4 KB JSON documents from the repository's
//! corpus and a copy of each with one realistic mutation.
#![allow(dead_code)]

use serde_json::Value;
use shadowdiff_model::{Body, HttpResponse};
use std::path::PathBuf;

pub(crate) fn corpus_dir() -> PathBuf {
    std::env::var_os("SHADOWDIFF_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/json"))
}

pub(crate) fn load(name: &str) -> Value {
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
pub(crate) fn documents() -> Vec<Value> {
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
pub(crate) fn mutate(doc: &Value, kind: usize, n: usize) -> Value {
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

pub(crate) fn response(v: &Value) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::complete(serde_json::to_vec(v).expect("serialize")),
        latency_us: 0,
    }
}

pub(crate) fn pairs() -> Vec<(HttpResponse, HttpResponse)> {
    documents()
        .iter()
        .enumerate()
        .map(|(i, d)| (response(d), response(&mutate(d, i % 5, i % 7))))
        .filter(|(a, b)| a.body.bytes != b.body.bytes)
        .collect()
}
