//! `shadowdiff run` as an operator sees it: a real process with /metrics, /healthz, /readyz, a
//! graceful drain on SIGTERM, and an immediate exit on a second signal.
#![allow(clippy::unwrap_used)]

use shadowdiff_testkit::ports::{self, StartFailure};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tiny HTTP/1.1 server on loopback: answers every request with `body` after `delay`.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(body: &'static str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || answer(stream, body, delay));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener closes the port: connections are refused from now on.
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(mut stream: TcpStream, body: &str, delay: Duration) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut request_body = vec![0u8; length];
    if stream.read_exact(&mut request_body).is_err() {
        return;
    }
    std::thread::sleep(delay);
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// One HTTP/1.1 request on a fresh connection; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// 127.0.0.1 and a port no other call handed out (see `shadowdiff_testkit::ports`).
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports::free_port()))
}

/// How long a `shadowdiff` process may take to listen on its ports.
const START: Duration = Duration::from_secs(20);

/// Sum of every sample of `name` (all label sets) in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `shadowdiff run` process; killed if a test fails before it exits.
struct Run {
    child: Child,
    tap: SocketAddr,
    admin: SocketAddr,
    stderr: tempfile::NamedTempFile,
}

impl Run {
    /// Starts `shadowdiff run` on free tap and admin ports (new ones when either turns out
    /// taken) and waits until it listens on both.
    fn start(data: &Path, control: &str, candidate: &str, extra: &[&str]) -> Self {
        ports::start_on_free_ports("shadowdiff run", 2, |ports| {
            Self::try_start(data, control, candidate, extra, ports)
        })
        .1
    }

    fn try_start(
        data: &Path,
        control: &str,
        candidate: &str,
        extra: &[&str],
        ports: &[u16],
    ) -> Result<Self, StartFailure> {
        let (tap, admin) = (
            SocketAddr::from(([127, 0, 0, 1], ports[0])),
            SocketAddr::from(([127, 0, 0, 1], ports[1])),
        );
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(["run", "--experiment", "ops"])
            .arg("--listen")
            .arg(tap.to_string())
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--control")
            .arg(control)
            .arg("--candidate")
            .arg(format!("v2={candidate}"))
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut run = Self {
            child,
            tap,
            admin,
            stderr,
        };
        let log = run.stderr.path().to_path_buf();
        ports::wait_listening(&mut run.child, ports, START, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })?;
        Ok(run)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let (status, body) = http(self.admin, "GET", "/metrics");
        assert_eq!(status, 200);
        body
    }

    /// Polls /metrics until `name` reaches `at_least`.
    fn wait_metric(&self, name: &str, at_least: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.metrics();
            if metric(&page, name) >= at_least {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed below {at_least}:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the exit code, at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> (i32, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "shadowdiff run did not exit within {limit:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn report_json(data: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["report", "--format", "json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_move_with_traffic_and_readiness_follows_the_control() {
    let mut control = Server::start(r#"{"name":"Ann","n":1}"#, Duration::ZERO);
    let candidate = Server::start(r#"{"name":"Bob","n":1}"#, Duration::ZERO);
    let data = tempfile::tempdir().unwrap();
    let mut run = Run::start(data.path(), &control.url(), &candidate.url(), &[]);

    assert_eq!(http(run.admin, "GET", "/healthz").0, 200);
    assert_eq!(http(run.admin, "GET", "/readyz").0, 200);
    assert_eq!(http(run.admin, "GET", "/nope").0, 404);

    for i in 0..20 {
        let (status, body) = http(run.tap, "GET", &format!("/users/{i}"));
        assert_eq!((status, body.as_str()), (200, r#"{"name":"Ann","n":1}"#));
    }
    assert_eq!(http(run.tap, "POST", "/orders").0, 200);
    let page = run.wait_metric("shadowdiff_store_rows_total", 21.0);

    assert_eq!(metric(&page, "shadowdiff_capture_exchanges_total"), 21.0);
    assert_eq!(metric(&page, "shadowdiff_replay_exchanges_total"), 20.0);
    assert!(page.contains("shadowdiff_replay_blocked_total{reason=\"method\"} 1"));
    assert_eq!(metric(&page, "shadowdiff_diff_compared_total"), 20.0);
    assert_eq!(metric(&page, "shadowdiff_diff_mismatched_total"), 20.0);
    assert_eq!(metric(&page, "shadowdiff_store_failures_total"), 0.0);
    for histogram in [
        "shadowdiff_capture_control_latency_seconds",
        "shadowdiff_replay_target_latency_seconds",
        "shadowdiff_diff_duration_seconds",
    ] {
        assert!(
            page.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram} is not a histogram:\n{page}"
        );
        assert!(metric(&page, &format!("{histogram}_count")) >= 20.0);
    }
    assert!(page.contains("shadowdiff_queue_depth{queue=\"capture\"}"));
    for described in [
        "shadowdiff_capture_exchanges_total",
        "shadowdiff_replay_exchanges_total",
        "shadowdiff_diff_compared_total",
        "shadowdiff_store_rows_total",
    ] {
        assert!(
            page.contains(&format!("# HELP {described} ")),
            "{described} has no HELP line:\n{page}"
        );
    }

    // Readiness follows the control; liveness does not.
    control.stop();
    let (status, body) = http(run.admin, "GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("control"), "{body}");
    assert_eq!(http(run.admin, "GET", "/healthz").0, 200);

    run.signal("-TERM");
    assert_eq!(run.wait_exit(Duration::from_secs(15)).0, 0, "{}", run.log());
}

#[test]
fn sigterm_drains_every_accepted_exchange_into_the_store() {
    const N: usize = 30;
    let control = Server::start(r#"{"total":10}"#, Duration::ZERO);
    // Slow enough that replays are in flight when the signal arrives.
    let candidate = Server::start(r#"{"total":11}"#, Duration::from_millis(500));
    let data = tempfile::tempdir().unwrap();
    let mut run = Run::start(
        data.path(),
        &control.url(),
        &candidate.url(),
        &["--log-format", "json", "--shutdown-grace-ms", "10000"],
    );
    let tap = run.tap;
    let clients: Vec<_> = (0..N)
        .map(|i| std::thread::spawn(move || http(tap, "GET", &format!("/carts/{i}")).0))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    let page = run.wait_metric("shadowdiff_capture_exchanges_total", N as f64);
    let accepted = metric(&page, "shadowdiff_capture_exchanges_total") as u64;
    assert!(
        metric(&page, "shadowdiff_store_rows_total") < N as f64,
        "work must still be in flight at the signal:\n{page}"
    );

    run.signal("-TERM");
    let (code, took) = run.wait_exit(Duration::from_secs(15));
    let log = run.log();
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(10), "drain took {took:?}");
    assert!(log.contains("Draining."), "{log}");
    let json_lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        !json_lines.is_empty(),
        "--log-format json logs JSON:\n{log}"
    );

    let report = report_json(data.path());
    assert_eq!(report["totals"]["exchanges"], accepted, "{report:#}");
    assert_eq!(report["totals"]["compared"], accepted, "{report:#}");
    assert_eq!(report["totals"]["mismatched"], accepted, "{report:#}");

    // The same data as one self-contained HTML page.
    let page = data.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["report", "--format", "html", "--data"])
        .arg(data.path())
        .arg("--out")
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--out writes nothing to stdout");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("/carts/") && html.contains("body.total"),
        "{html}"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let control = Server::start(r#"{"a":1}"#, Duration::ZERO);
    let candidate = Server::start(r#"{"a":2}"#, Duration::from_secs(30));
    let data = tempfile::tempdir().unwrap();
    let mut run = Run::start(
        data.path(),
        &control.url(),
        &candidate.url(),
        &["--shutdown-grace-ms", "60000", "--timeout-ms", "60000"],
    );
    for i in 0..3 {
        assert_eq!(http(run.tap, "GET", &format!("/slow/{i}")).0, 200);
    }
    run.wait_metric("shadowdiff_capture_exchanges_total", 3.0);

    run.signal("-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the first signal drains; replays are still waiting on the candidate"
    );
    run.signal("-INT");
    let (code, took) = run.wait_exit(Duration::from_secs(5));
    assert_eq!(code, 130, "{}", run.log());
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn capture_waiting_for_an_absent_broker_says_so_serves_health_and_stops_at_once_on_sigterm() {
    let control = Server::start(r#"{"a":1}"#, Duration::ZERO);
    // Nothing listens on the broker's address.
    let broker = free_addr();
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let log = || std::fs::read_to_string(stderr.path()).unwrap_or_default();
    // The admin endpoint on a free port (another one when it turns out taken); the tap on
    // port 0, since the test does not use it.
    let (admin, mut child) = ports::start_on_free_port("capture", |admin| {
        // The log of this attempt only.
        stderr.as_file().set_len(0).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(["capture", "--listen", "127.0.0.1:0"])
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--control")
            .arg(control.url())
            .arg("--kafka")
            .arg(broker.to_string())
            .env("RUST_LOG", "info")
            .env("SHADOWDIFF_REDACTION_KEY", "operability-test-key")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        ports::wait_listening(&mut child, &[admin], START, log)?;
        Ok(child)
    });
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    // Alive, not ready, and the log names the broker it waits for.
    assert_eq!(http(admin, "GET", "/healthz").0, 200);
    let (status, body) = http(admin, "GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("kafka"), "{body}");
    assert!(log().contains(&broker.to_string()), "{}", log());
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!(
                "capture ignored SIGTERM while waiting for the broker:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 0, "{}", log());
}

/// VmRSS of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Memory stays bounded under overload: the control answers 255 KiB bodies as fast as clients
/// ask while the candidate takes a second per answer, so copies pile up until the byte budget
/// (`capture.queue_max_bytes`) drops them. About 20 s; the ceiling is the budget, twice over
/// for what the replay and the differ hold beside it, plus the process's own 64 MiB.
#[test]
fn rss_stays_under_its_ceiling_with_255_kib_bodies_under_overload() {
    const BUDGET_MIB: u64 = 128;
    const CEILING_MIB: u64 = 2 * BUDGET_MIB + 64;
    let body: &'static str =
        Box::leak(format!("\"{}\"", "x".repeat(255 * 1024 - 2)).into_boxed_str());
    let control = Server::start(body, Duration::ZERO);
    let candidate = Server::start(body, Duration::from_secs(1));
    let data = tempfile::tempdir().unwrap();
    let run = Run::start(
        data.path(),
        &control.url(),
        &candidate.url(),
        &[
            "--queue-max-bytes",
            &(BUDGET_MIB * 1024 * 1024).to_string(),
            "--concurrency",
            "4",
            "--timeout-ms",
            "5000",
        ],
    );
    let pid = run.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, tap) = (stop.clone(), run.tap);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(http(tap, "GET", "/big").0, 200);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let started = Instant::now();
    let mut peak_kib = 0;
    while started.elapsed() < Duration::from_secs(20) {
        peak_kib = peak_kib.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let page = run.metrics();
    let dropped = metric(&page, "shadowdiff_capture_dropped_total");
    eprintln!(
        "sent {sent} requests of 255 KiB in 20 s; peak RSS {} MiB (ceiling {CEILING_MIB} MiB); {dropped} copies dropped",
        peak_kib / 1024
    );
    // The overload was real: the budget had to drop copies...
    assert!(
        dropped > 0.0,
        "no copy was dropped; not an overload:\n{page}"
    );
    // ...and memory stayed under the ceiling throughout.
    assert!(peak_kib > 0, "could not read the process's RSS");
    assert!(
        peak_kib / 1024 < CEILING_MIB,
        "peak RSS {} MiB over the {CEILING_MIB} MiB ceiling",
        peak_kib / 1024
    );
}
