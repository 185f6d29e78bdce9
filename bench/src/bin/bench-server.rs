//! A minimal HTTP/1.1 server for shadowdiff's benchmarks.
//!
//! Answers every request with a fixed 2–4 KB JSON body (a Twitter status from the JSON corpus
//! when one is given, else a generated document), optionally after a delay. `--variant
//! candidate` changes one field of every body, so a differ behind a tap has a real difference
//! to find. `bench-server free-port` prints a free loopback port and exits.
//!
//! ```text
//! bench-server [--listen 127.0.0.1:0] [--addr-file PATH] [--delay-ms N] [--threads N]
//!              [--corpus twitter.json] [--variant control|candidate] [--body-kib N]
//! bench-server free-port
//! ```

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: bench-server [--listen ADDR] [--addr-file PATH] [--delay-ms N] \
[--threads N] [--corpus twitter.json] [--variant control|candidate] [--body-kib N]\n       bench-server free-port";

struct Args {
    listen: SocketAddr,
    addr_file: Option<PathBuf>,
    delay: Duration,
    threads: usize,
    corpus: Option<PathBuf>,
    candidate: bool,
    /// Pad every body with a string field up to this many KiB (0: no padding).
    body_kib: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        addr_file: None,
        delay: Duration::ZERO,
        threads: 1,
        corpus: None,
        candidate: false,
        body_kib: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "free-port" {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            println!("{port}");
            return Ok(None);
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return Ok(None);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |what: &str| format!("{flag} `{value}`: {what}\n{USAGE}");
        match flag.as_str() {
            "--listen" => args.listen = value.parse().map_err(|_| bad("not an address"))?,
            "--addr-file" => args.addr_file = Some(PathBuf::from(&value)),
            "--delay-ms" => {
                args.delay = Duration::from_millis(value.parse().map_err(|_| bad("not a number"))?)
            }
            "--threads" => {
                args.threads = value.parse().map_err(|_| bad("not a number"))?;
                if args.threads == 0 {
                    return Err(bad("must be at least 1"));
                }
            }
            "--body-kib" => args.body_kib = value.parse().map_err(|_| bad("not a number"))?,
            "--corpus" => args.corpus = Some(PathBuf::from(&value)),
            "--variant" => {
                args.candidate = match value.as_str() {
                    "control" => false,
                    "candidate" => true,
                    _ => return Err(bad("control or candidate")),
                }
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {}: benchmarks bind loopback only",
            args.listen
        ));
    }
    Ok(Some(args))
}

/// Twitter statuses without `retweeted_status` (2–4 KB each), or one generated document.
fn bodies(
    corpus: Option<&PathBuf>,
    candidate: bool,
    body_kib: usize,
) -> Result<Vec<Bytes>, String> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    if let Some(path) = corpus {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(statuses) = value.get("statuses").and_then(|s| s.as_array()) {
            docs.extend(
                statuses
                    .iter()
                    .filter(|s| s.get("retweeted_status").is_none())
                    .cloned(),
            );
        }
    }
    if docs.is_empty() {
        let items: Vec<serde_json::Value> = (0..24)
            .map(|i| {
                serde_json::json!({
                    "id": i, "name": format!("item {i}"), "price": 9.99 + i as f64,
                    "tags": ["a", "b", "c"], "in_stock": i % 3 != 0,
                    "description": "a reasonably long description of the item in the catalog",
                })
            })
            .collect();
        docs.push(serde_json::json!({"id": 1, "retweet_count": 0, "items": items}));
    }
    docs.iter_mut()
        .map(|doc| {
            if candidate {
                if let Some(obj) = doc.as_object_mut() {
                    let n = obj
                        .get("retweet_count")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0);
                    obj.insert("retweet_count".into(), (n + 1).into());
                }
            }
            if body_kib > 0 {
                let have = serde_json::to_vec(doc).map_or(0, |v| v.len());
                let pad = (body_kib * 1024).saturating_sub(have + 16);
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("padding".into(), "x".repeat(pad).into());
                }
            }
            serde_json::to_vec(doc)
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        })
        .collect()
}

struct State {
    bodies: Vec<Bytes>,
    delay: Duration,
}

/// `/…/N` picks body N (mod the count); anything else gets the first body.
async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let index = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let body = state.bodies[index % state.bodies.len()].clone();
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-server: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-server: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let state = Arc::new(State {
        bodies: bodies(args.corpus.as_ref(), args.candidate, args.body_kib)?,
        delay: args.delay,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("bind {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if let Some(path) = &args.addr_file {
            std::fs::write(path, addr.to_string())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        eprintln!(
            "bench-server: {addr}, {} bodies of {}..{} bytes, delay {} ms",
            state.bodies.len(),
            state.bodies.iter().map(Bytes::len).min().unwrap_or(0),
            state.bodies.iter().map(Bytes::len).max().unwrap_or(0),
            state.delay.as_millis()
        );
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
