//! Overhead of an experiment around a trivial control: direct call vs disabled vs sampled out vs
//! enabled (sync, trivial arms, no-op publisher).

use criterion::{black_box, Criterion};
use shadowdiff::{Experiment, NoopPublisher};
use std::sync::Arc;

#[inline(never)]
fn control(x: u64) -> u64 {
    x.wrapping_mul(31).wrapping_add(7)
}

#[inline(never)]
fn candidate(x: u64) -> u64 {
    x.wrapping_add(7).wrapping_add(x.wrapping_mul(30))
}

fn bench(c: &mut Criterion) {
    let noop: Arc<dyn shadowdiff::Publisher> = Arc::new(NoopPublisher);
    shadowdiff::settings("bench-disabled").set_enabled(false);
    shadowdiff::settings("bench-sampled-out").set_percent(0.0);
    let mut g = c.benchmark_group("experiment");
    g.bench_function("direct", |b| b.iter(|| control(black_box(3))));
    g.bench_function("disabled", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("bench-disabled"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .run()
        })
    });
    g.bench_function("sampled_out", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("bench-sampled-out"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .run()
        })
    });
    g.bench_function("enabled", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("bench-enabled"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .publisher(noop.clone())
                .run()
        })
    });
    g.bench_function("enabled_with_cpu_time", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("bench-enabled-cpu"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .publisher(noop.clone())
                .cpu_time(true)
                .run()
        })
    });
    g.bench_function("enabled_eq", |b| {
        b.iter(|| {
            let x = black_box(3);
            Experiment::with_settings(shadowdiff::settings!("bench-enabled-eq"))
                .control(|| control(x))
                .candidate("v2", || candidate(x))
                .publisher(noop.clone())
                .run_eq()
        })
    });
    g.finish();
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the macro's `pub fn`
// would need a doc comment it cannot carry.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    Criterion::default().configure_from_args().final_summary();
}
