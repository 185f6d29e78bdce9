//! Helpers shared by the Kafka integration tests.
#![allow(dead_code)]

use shadowdiff_model::{Body, Exchange, HttpRequest, HttpResponse, ReplayResult, SCHEMA_VERSION};
use shadowdiff_testkit::ports::{self, StartFailure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The broker the tests use; they fail (not skip) without one.
pub(crate) fn brokers() -> String {
    std::env::var("SHADOWDIFF_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "SHADOWDIFF_TEST_KAFKA is not set: start the servers with \
             `scripts/services.sh start && source .services/env`"
        )
    })
}

/// A name no other test run uses.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn exchange(id: &str, body: Vec<u8>) -> Exchange {
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: id.to_string(),
        captured_at_ms: 1_763_805_600_000,
        source: "tee".into(),
        experiment: "it".into(),
        request: HttpRequest {
            method: "GET".into(),
            uri: format!("/users/{id}?x=1"),
            headers: vec![("accept".into(), "application/json".into())],
            body: Body::complete(body),
        },
        control: Some(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::complete(&b"{\"ok\":true}"[..]),
            latency_us: 1_500,
        }),
        redactions: vec![],
        sample_rate: 1.0,
    }
}

pub(crate) fn result(id: &str) -> ReplayResult {
    ReplayResult {
        schema_version: SCHEMA_VERSION,
        exchange: exchange(id, Vec::new()),
        blocked: None,
        outcomes: vec![],
        candidates: vec!["v2".into()],
        side_effects: vec![],
        saturated: false,
        host_busy: false,
    }
}

fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SHADOWDIFF_TANSU") {
        return PathBuf::from(p);
    }
    let home_bin = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|p| p.join("bin").join("tansu"));
    match home_bin {
        Ok(p) if p.exists() => p,
        _ => PathBuf::from("tansu"),
    }
}

/// How long tansu may take to listen after a start.
const BROKER_START: Duration = Duration::from_secs(30);

/// A tansu broker this test owns: sqlite storage in its own directory, a fixed port, and
/// `kill -9` / restart on the same port and database.
pub(crate) struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port and waits until it listens; on a new port (and a new
    /// directory) when tansu finds its port taken.
    pub(crate) fn start() -> Self {
        ports::start_on_free_port("tansu", |port| {
            let mut b = Self {
                dir: tempfile::tempdir().expect("temp dir"),
                port,
                child: None,
            };
            b.spawn().map(|()| b)
        })
        .1
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs tansu on `self.port` and waits until it listens there itself (not something else
    /// on the port), while it runs.
    fn spawn(&mut self) -> Result<(), StartFailure> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.path().join("tansu.log");
        let logged = ports::length(&log_path);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut child = Command::new(tansu_binary())
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // tansu resolves the sqlite path against its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .map_err(|e| {
                StartFailure::Failed(format!(
                    "cannot run tansu ({e}); install it with scripts/services.sh deps"
                ))
            })?;
        ports::wait_listening(&mut child, &[self.port], BROKER_START, || {
            ports::read_from(&log_path, logged)
        })
        .map_err(|failure| failure.noted(format!("(log: {})", log_path.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 tansu");
            child.wait().expect("reap tansu");
        }
    }

    /// kill -9, then tansu again on the same port and database. The port must stay the same
    /// (the clients and the stored metadata name it), so this does not move to another one:
    /// it was ours until the kill, and while it is still held (by a socket of the killed
    /// broker not yet closed, or, unlikely, another process) the start is tried again once it
    /// can be bound, for at most `BROKER_START`.
    pub(crate) fn restart(&mut self) {
        self.kill9();
        let port = self.port;
        ports::restart_on_ports("tansu", &[port], BROKER_START, |_| self.spawn());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
