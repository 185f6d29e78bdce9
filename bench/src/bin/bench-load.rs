//! Open-loop HTTP load at a fixed rate: request `i` is due at `start + i / rate`, and its latency
//! is measured from that due time, so a slow server cannot hide its queueing by slowing the
//! client down (no coordinated omission). Bounded in count and time; loopback targets only.
//!
//! `bench-load --rate 2000 --secs 10 --max-in-flight 256 http://127.0.0.1:PORT/path`
//! prints `p50_ms p99_ms p999_ms success_rate sent`. `--worst N` also prints to stderr when in
//! the run each of the N slowest requests was due, to tell a one-off stall from a periodic one.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// Latency (ms) at quantile `q` of `(latency_ms, due_s)` pairs sorted by latency.
fn percentile(sorted: &[(f64, f64)], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url: http::Uri = args
        .last()
        .ok_or("usage: bench-load --rate N --secs N URL")?
        .parse()?;
    if !matches!(url.host(), Some("127.0.0.1") | Some("localhost")) {
        return Err("bench-load only targets loopback".into());
    }
    let rate = arg(&args, "--rate", 1000).max(1);
    let secs = arg(&args, "--secs", 10).clamp(1, 120);
    let max_in_flight = arg(&args, "--max-in-flight", 256).max(1) as usize;
    let total = rate * secs;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(max_in_flight)
        .build_http::<Empty<Bytes>>();
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<f64>, f64)>();
    let start = Instant::now() + Duration::from_millis(100);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, tx, permits) = (client.clone(), url.clone(), tx.clone(), permits.clone());
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let ok = match tokio::time::timeout(Duration::from_secs(10), client.get(url)).await {
                Ok(Ok(resp)) => {
                    resp.status().is_success() && resp.into_body().collect().await.is_ok()
                }
                _ => false,
            };
            let latency_ms = due.elapsed().as_secs_f64() * 1000.0;
            let _ = tx.send((ok.then_some(latency_ms), i as f64 / rate as f64));
        });
    }
    drop(tx);
    // (latency_ms, due_s) of each request that succeeded.
    let mut latencies: Vec<(f64, f64)> = Vec::with_capacity(total as usize);
    let mut failed = 0u64;
    while let Some((r, due_s)) = rx.recv().await {
        match r {
            Some(ms) => latencies.push((ms, due_s)),
            None => failed += 1,
        }
    }
    latencies.sort_by(|a, b| a.0.total_cmp(&b.0));
    let worst = arg(&args, "--worst", 0) as usize;
    for (ms, due_s) in latencies.iter().rev().take(worst) {
        eprintln!("slow: due at {due_s:.3} s, {ms:.2} ms");
    }
    println!(
        "{:.3} {:.3} {:.3} {:.4} {}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.len() as f64 / (latencies.len() as u64 + failed).max(1) as f64,
        total
    );
    Ok(())
}
