//! Side by side with the Rust peers (issue 5): the same trivial experiment — control `x*31+7`, a
//! candidate computing the same value differently, nothing published — run by shadowdiff,
//! `scientisto` (sync) and `thesis` (async).
//!
//! - Group `peers` (sync): direct call, shadowdiff enabled (`run`, serde + diff engine, and
//!   `run_eq`, `PartialEq`), shadowdiff disabled (kill switch), scientisto enabled (its publish
//!   closure calls `is_matching()` so the comparison is not skipped) and scientisto disabled
//!   (`run_if(|| false)`).
//! - Group `peers_async`: the same on one current-thread tokio runtime through criterion's
//!   `to_async`, which enters the runtime once per sample and awaits every iteration inside it,
//!   so no per-iteration `block_on` cost is charged to either side. thesis with
//!   `UseExperimentalAndCompare` (both arms joined, compared with `!=`, default mismatch handler)
//!   against shadowdiff's `control_async(..).candidate(..).run().await`; thesis `UseControl`
//!   against shadowdiff disabled. No metrics recorder or tracing subscriber is installed, so
//!   thesis's `counter!`/`histogram!`/`info_span!` hit the no-op defaults, like shadowdiff's
//!   `NoopPublisher`.
//!
//! Disabled runs set no publisher (as in `benches/experiment.rs`): cloning an `Arc` publisher at
//! a call site costs two atomic operations whether or not the run is sampled in.
//!
//! After criterion, one line per peer: peer time / shadowdiff time, read from criterion's
//! `estimates.json` (the figure criterion prints: slope, else mean) of this run.

use criterion::{black_box, Criterion};
use shadowdiff::{Experiment, NoopPublisher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

#[inline(never)]
fn control(x: u64) -> u64 {
    x.wrapping_mul(31).wrapping_add(7)
}

#[inline(never)]
fn candidate(x: u64) -> u64 {
    x.wrapping_add(7).wrapping_add(x.wrapping_mul(30))
}

fn sync_group(c: &mut Criterion) {
    let noop: Arc<dyn shadowdiff::Publisher> = Arc::new(NoopPublisher);
    shadowdiff::settings("peers-disabled").set_enabled(false);
    let mut g = c.benchmark_group("peers");
    g.bench_function("direct", |b| b.iter(|| control(black_box(3))));
    g.bench_function("shadowdiff_enabled", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("peers-enabled"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .publisher(noop.clone())
                .run()
        })
    });
    g.bench_function("shadowdiff_enabled_eq", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("peers-enabled-eq"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .publisher(noop.clone())
                .run_eq()
        })
    });
    g.bench_function("shadowdiff_disabled", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("peers-disabled"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .run()
        })
    });
    g.bench_function("scientisto_enabled", |b| {
        b.iter(|| {
            let x = black_box(3);
            scientisto::Experiment::new("peers")
                .control(move || control(x))
                .experiment(move || candidate(x))
                .publish(|o: &scientisto::Observation<u64, u64>| {
                    black_box(o.is_matching());
                })
                .run()
        })
    });
    g.bench_function("scientisto_disabled", |b| {
        b.iter(|| {
            let x = black_box(3);
            scientisto::Experiment::new("peers")
                .control(move || control(x))
                .experiment(move || candidate(x))
                .publish(|o: &scientisto::Observation<u64, u64>| {
                    black_box(o.is_matching());
                })
                .run_if(|| false)
        })
    });
    g.finish();
}

fn async_group(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let noop: Arc<dyn shadowdiff::Publisher> = Arc::new(NoopPublisher);
    shadowdiff::settings("peers-async-disabled").set_enabled(false);
    let mut g = c.benchmark_group("peers_async");
    g.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| async { control(black_box(3)) })
    });
    g.bench_function("shadowdiff_enabled", |b| {
        b.to_async(&rt).iter(|| {
            let noop = noop.clone();
            async move {
                let x = black_box(3);
                Experiment::with_settings(shadowdiff::settings!("peers-async-enabled"))
                    .control_async(async move { control(x) })
                    .candidate("v2", move || async move { candidate(x) })
                    .publisher(noop)
                    .run()
                    .await
            }
        })
    });
    g.bench_function("shadowdiff_disabled", |b| {
        b.to_async(&rt).iter(|| async {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("peers-async-disabled"))
                .control_async(async move { control(x) })
                .candidate("v2", move || async move { candidate(x) })
                .run()
                .await
        })
    });
    g.bench_function("thesis_compare", |b| {
        b.to_async(&rt).iter(|| async {
            let x = black_box(3);
            thesis::Experiment::new("peers")
                .control(async move { control(x) })
                .experimental(async move { candidate(x) })
                .rollout_strategy(thesis::RolloutDecision::UseExperimentalAndCompare)
                .run()
                .await
        })
    });
    g.bench_function("thesis_control", |b| {
        b.to_async(&rt).iter(|| async {
            let x = black_box(3);
            thesis::Experiment::new("peers")
                .control(async move { control(x) })
                .experimental(async move { candidate(x) })
                .rollout_strategy(thesis::RolloutDecision::UseControl)
                .run()
                .await
        })
    });
    g.finish();
}

/// Where criterion writes (same order as criterion 0.5): `$CRITERION_HOME`,
/// `$CARGO_TARGET_DIR/criterion`, else the target dir holding this binary (`<target>/release/deps/`).
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return h.into();
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Criterion's typical time (slope, else mean) in ns, if this run measured it.
fn estimate(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|k| json.get(k)?.get("point_estimate")?.as_f64())
}

fn print_ratios(since: SystemTime) {
    let rows = [
        ("peers", "scientisto_enabled", "shadowdiff_enabled"),
        ("peers", "scientisto_enabled", "shadowdiff_enabled_eq"),
        ("peers", "scientisto_disabled", "shadowdiff_disabled"),
        ("peers_async", "thesis_compare", "shadowdiff_enabled"),
        ("peers_async", "thesis_control", "shadowdiff_disabled"),
    ];
    println!(
        "\npeer / shadowdiff (criterion typical time of this run; >1 means shadowdiff is faster):"
    );
    for &(group, peer, ours) in &rows {
        match (estimate(group, peer, since), estimate(group, ours, since)) {
            (Some(p), Some(o)) => println!(
                "  {group}/{peer:<20} {p:>10.1} ns  vs  {ours:<22} {o:>10.1} ns  ratio {:.2}",
                p / o
            ),
            _ => println!("  {group}/{peer:<20} vs {ours}: not measured in this run"),
        }
    }
    for group in ["peers", "peers_async"] {
        if let Some(o) = estimate(group, "shadowdiff_enabled", since) {
            println!("PEERS_NS {group}/shadowdiff_enabled {o:.1}");
        }
    }
}

fn main() {
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    sync_group(&mut c);
    async_group(&mut c);
    c.final_summary();
    print_ratios(since);
}
