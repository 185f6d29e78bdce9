//! shadowdiff's differ beside the `json-patch` crate's `diff`, in one process, on the same
//! pairs (2–4 KB JSON documents from the corpus and a copy with one realistic mutation each):
//! parse both bodies and diff them, rounds alternating which goes first. Prints pairs/s of each
//! per round and the median ratio.
//!
//! `cargo bench -p shadowdiff-differ --bench peer_json_patch [-- --rounds N --secs S]`

mod common;

use shadowdiff_differ::{compare_responses, Rules};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} needs a number"))
        })
        .unwrap_or(default)
}

/// Pairs per second `work` handles over about `secs`, cycling through `n` pairs.
fn rate(n: usize, secs: u64, mut work: impl FnMut(usize) -> usize) -> f64 {
    let budget = Duration::from_secs(secs);
    let started = Instant::now();
    let (mut done, mut found) = (0usize, 0usize);
    while started.elapsed() < budget {
        for i in 0..n {
            found += work(i);
        }
        done += n;
    }
    black_box(found);
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rounds = arg("--rounds", 5) as usize;
    let secs = arg("--secs", 2);
    let pairs = common::pairs();
    assert!(!pairs.is_empty(), "no pairs from the corpus");
    let rules = Rules::default();
    let bytes: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .iter()
        .map(|(a, b)| (a.body.bytes.to_vec(), b.body.bytes.to_vec()))
        .collect();
    let ours = || {
        rate(pairs.len(), secs, |i| {
            let (a, b) = &pairs[i];
            compare_responses(a, b, &rules).differences.len()
        })
    };
    let peer = || {
        rate(bytes.len(), secs, |i| {
            let (a, b) = &bytes[i];
            let left: serde_json::Value = serde_json::from_slice(a).expect("json");
            let right: serde_json::Value = serde_json::from_slice(b).expect("json");
            json_patch::diff(&left, &right).0.len()
        })
    };
    // What each finds: pairs with at least one difference (a reversed array of equal items, or
    // a number written another way, is no difference to either).
    let (mut ours_found, mut peer_found) = (0, 0);
    for (i, (a, b)) in pairs.iter().enumerate() {
        ours_found += usize::from(!compare_responses(a, b, &rules).differences.is_empty());
        let (left, right): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&bytes[i].0).expect("json"),
            serde_json::from_slice(&bytes[i].1).expect("json"),
        );
        peer_found += usize::from(!json_patch::diff(&left, &right).0.is_empty());
    }
    assert!(
        ours_found * 10 >= pairs.len() * 9,
        "shadowdiff found {ours_found}"
    );
    println!(
        "pairs with a difference: shadowdiff {ours_found}, json-patch {peer_found} of {}",
        pairs.len()
    );
    println!(
        "{} pairs of 2-4 KB JSON, parse + diff, one thread, {rounds} rounds of {secs} s each side",
        pairs.len()
    );
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (shadowdiff, json_patch) = if round % 2 == 0 {
            let s = ours();
            (s, peer())
        } else {
            let p = peer();
            (ours(), p)
        };
        println!(
            "round {}: shadowdiff {shadowdiff:.0} pairs/s, json-patch {json_patch:.0} pairs/s, ratio {:.2}",
            round + 1,
            shadowdiff / json_patch
        );
        ratios.push(shadowdiff / json_patch);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median shadowdiff / json-patch: {:.2}",
        ratios[ratios.len() / 2]
    );
}
