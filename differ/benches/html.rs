//! HTML pairs: parse both pages into trees and diff them, on one thread.
//!
//! `cargo bench -p shadowdiff-differ --bench html`
//!
//! Pages are about 20 KB, in three shapes (a shop's product table, a blog's article list, a
//! dashboard of cards with data attributes), each with a head of meta/link/script/style, a nav,
//! a form with a CSRF hidden input and a footer with the render time. A pair is a page and the
//! same page rendered again: another nonce, CSRF token and render time, and one small change
//! (a price, a headline, a badge). Prints pairs/s (of wall time and of the thread's own CPU
//! time, for a shared machine), then criterion's figures: `pairs_20kb_parse_and_diff` is what
//! the differ does (`compare_responses`: the candidate's page built with the control's tree at
//! hand, see `differ/src/html.rs`); `pages_20kb_parse_only_both_sides` parses each page on its
//! own, for comparison.

use criterion::{black_box, Criterion, Throughput};
use shadowdiff_differ::{compare_responses, parse_html, Arena, Rules};
use shadowdiff_model::{Body, HttpResponse};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// A pseudo-random token of `len` characters from `seed`.
fn token(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// One rendering of page `shape` with volatile values from `render` and, when `changed`, one
/// small content change.
fn page(shape: usize, render: u64, changed: bool) -> String {
    let nonce = token(render, 22);
    let csrf = token(render + 1_000, 32);
    let mut s = String::with_capacity(22_000);
    let title = [
        "Shop – all products",
        "The Engineering Blog",
        "Fleet dashboard",
    ][shape % 3];
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="description" content="{title} – everything in one place">
  <meta property="og:title" content="{title}">
  <meta property="og:type" content="website">
  <title>{title}</title>
  <link rel="icon" href="/favicon.ico">
  <link rel="stylesheet" href="/assets/app.3f9a1c.css">
  <link rel="preload" href="/assets/font.woff2" as="font" crossorigin>
  <style nonce="{nonce}">.hidden {{ display: none }} body {{ margin: 0 }}</style>
  <script nonce="{nonce}">window.__CONFIG__ = {{"env": "prod", "region": "eu-west-1"}};</script>
  <script src="/assets/app.8d2e4b.js" defer></script>
</head>
<body class="layout-{shape}">
  <header class="top">
    <nav aria-label="Main">
      <ul class="menu">
"#
    );
    for (i, item) in [
        "Home", "Products", "Blog", "Pricing", "Docs", "Support", "About",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            s,
            r#"        <li class="menu-item{}"><a href="/{}">{item}</a></li>"#,
            if i == 1 { " active" } else { "" },
            item.to_lowercase()
        );
    }
    s.push_str("      </ul>\n    </nav>\n  </header>\n  <main id=\"content\">\n");
    let mut i = 0;
    match shape % 3 {
        0 => {
            s.push_str("    <table class=\"products\">\n      <thead><tr><th>Name</th><th>SKU</th><th>Price</th><th></th></tr></thead>\n      <tbody>\n");
            while s.len() < 19_400 {
                let price = if changed && i == 40 {
                    1999 + 100
                } else {
                    1999 + i * 7
                };
                let _ = writeln!(
                    s,
                    r#"        <tr class="row"><td class="name"><a href="/p/{i}">Product {i} &amp; co</a></td><td class="sku">SKU-{:05}</td><td class="price" data-currency="EUR">{}.{:02}</td><td><button type="button" data-id="{i}">Add</button></td></tr>"#,
                    i * 13,
                    price / 100,
                    price % 100
                );
                i += 1;
            }
            s.push_str("      </tbody>\n    </table>\n");
        }
        1 => {
            while s.len() < 19_400 {
                let headline = if changed && i == 5 {
                    format!("Post {i}: what we learned (updated)")
                } else {
                    format!("Post {i}: what we learned")
                };
                let _ = writeln!(
                    s,
                    r#"    <article class="post" id="post-{i}">
      <h2><a href="/blog/{i}">{headline}</a></h2>
      <p class="meta">By <span class="author">Author {}</span> on <time datetime="2026-11-{:02}">November {}</time></p>
      <p>Shadow traffic lets a team compare a new build with the old one on real requests, before any user sees it.</p>
      <ul class="tags"><li>testing</li><li>release</li></ul>
    </article>"#,
                    i % 5,
                    i % 28 + 1,
                    i % 28 + 1
                );
                i += 1;
            }
        }
        _ => {
            s.push_str("    <div class=\"grid\" data-reactroot=\"\">\n");
            while s.len() < 19_400 {
                let status = if changed && i == 12 {
                    "degraded"
                } else {
                    "healthy"
                };
                let _ = writeln!(
                    s,
                    r#"      <div class="card" data-testid="node-{i}"><div class="card-header"><h3>node-{i}.eu-west-1</h3><span class="badge badge-{status}">{status}</span></div><div class="card-body"><dl><dt>CPU</dt><dd>{}%</dd><dt>Memory</dt><dd>{} MiB</dd></dl></div></div>"#,
                    (i * 37) % 100,
                    512 + i * 3
                );
                i += 1;
            }
            s.push_str("    </div>\n");
        }
    }
    let _ = write!(
        s,
        r#"    <form class="newsletter" action="/subscribe" method="post">
      <input type="hidden" name="csrf_token" value="{csrf}">
      <label for="email">Email</label>
      <input type="email" id="email" name="email" placeholder="you@example.com" required>
      <button type="submit">Subscribe</button>
    </form>
  </main>
  <footer>
    <p>&copy; 2026 Example Ltd. All rights reserved.</p>
    <p class="render">Rendered in {} ms at <time>2026-11-22T10:{:02}:{:02}Z</time></p>
  </footer>
</body>
</html>
"#,
        render % 50 + 3,
        render % 60,
        (render * 7) % 60
    );
    s
}

/// Time this thread has run on a CPU (Linux: `/proc/thread-self/schedstat`), if known.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn response(body: String) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: Body::complete(body.into_bytes()),
        latency_us: 0,
    }
}

fn main() {
    let rules = Rules::default();
    let pairs: Vec<(HttpResponse, HttpResponse)> = (0..30u64)
        .map(|n| {
            let shape = n as usize % 3;
            (
                response(page(shape, n * 2, false)),
                response(page(shape, n * 2 + 1, true)),
            )
        })
        .collect();
    let sizes: Vec<usize> = pairs.iter().map(|(a, _)| a.body.bytes.len()).collect();
    eprintln!(
        "{} HTML pairs, pages {}..{} bytes",
        pairs.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );
    for (a, b) in &pairs {
        let cmp = compare_responses(a, b, &rules);
        assert!(cmp.notes.is_empty(), "{:?}", cmp.notes);
        assert!(
            !cmp.differences.is_empty() && cmp.differences.len() <= 8,
            "{:?}",
            cmp.differences
        );
    }
    if let Some((a, b)) = pairs.first() {
        for d in compare_responses(a, b, &rules).differences {
            eprintln!("  e.g. {} {:?}", d.path, d.kind);
        }
    }

    // pairs/s, plainly: 5 rounds of 2 s. The machine may be shared: pairs per second of this
    // thread's own CPU time are printed beside pairs per second of wall time.
    let mut rates = Vec::new();
    for round in 1..=5 {
        let (started, cpu) = (Instant::now(), thread_cpu());
        let mut done = 0usize;
        while started.elapsed() < Duration::from_secs(2) {
            for (a, b) in &pairs {
                black_box(compare_responses(a, b, &rules));
            }
            done += pairs.len();
        }
        let rate = done as f64 / started.elapsed().as_secs_f64();
        let on_cpu = match (cpu, thread_cpu()) {
            (Some(a), Some(b)) if b > a => format!(
                ", {:.0} pairs per CPU-second",
                done as f64 / (b - a).as_secs_f64()
            ),
            _ => String::new(),
        };
        eprintln!("round {round}: {rate:.0} pairs/s{on_cpu} (parse both + diff, one thread)");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    eprintln!(
        "median: {:.0} pairs/s of ~20 KB HTML",
        rates[rates.len() / 2]
    );

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("html");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("pairs_20kb_parse_and_diff", |b| {
        b.iter(|| {
            for (a, x) in &pairs {
                black_box(compare_responses(a, x, &rules));
            }
        })
    });
    group.bench_function("pages_20kb_parse_only_both_sides", |b| {
        let mut arena = Arena::new();
        b.iter(|| {
            for (a, x) in &pairs {
                arena.reset();
                let pa = parse_html(&a.body.bytes, &arena).expect("html");
                let px = parse_html(&x.body.bytes, &arena).expect("html");
                black_box((pa, px));
            }
        })
    });
    group.finish();
    Criterion::default().configure_from_args().final_summary();
}
