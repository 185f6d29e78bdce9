//! Helpers shared by the Kafka integration tests.
#![allow(dead_code)]

use shadowdiff_model::{Body, Exchange, HttpRequest, HttpResponse, ReplayResult, SCHEMA_VERSION};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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

/// A tansu broker this test owns: sqlite storage in its own directory, a fixed port, and
/// `kill -9` / restart on the same port and database.
pub(crate) struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    pub(crate) fn start() -> Self {
        let mut b = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            child: None,
        };
        b.spawn();
        b
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("log file");
        let child = Command::new(tansu_binary())
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
            .unwrap_or_else(|e| {
                panic!("cannot run tansu ({e}); install it with scripts/services.sh deps")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 tansu");
            child.wait().expect("reap tansu");
        }
    }

    pub(crate) fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
