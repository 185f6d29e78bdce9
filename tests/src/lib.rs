//! Test harness: scriptable HTTP servers on loopback and a pipeline wired to them.

pub mod nginx;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use shadowdiff_pipeline::config::{CandidateConfig, Config};
use shadowdiff_pipeline::embedded::EmbeddedPipeline;
use shadowdiff_store::{build_report, EmbeddedStore, Report, ReportQuery};
use shadowdiff_testkit::ports::{self, StartFailure};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A request as a test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

/// What a test server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code (200 when it is not a valid one).
    pub status: u16,
    /// Response headers; invalid ones are left out.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
    /// Send the body in this many chunks without a Content-Length (chunked encoding).
    pub chunks: usize,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// A 200 with `value` as its `application/json` body.
    pub fn json(value: serde_json::Value) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
            chunks: 0,
            delay: Duration::ZERO,
        }
    }

    /// A `text/plain` answer.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            chunks: 0,
            delay: Duration::ZERO,
        }
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Scripted {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl hyper::service::Service<Request<Incoming>> for Scripted {
    type Response = Response<BoxBody<Bytes, Infallible>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
            };
            let reply = (this.handler)(&seen);
            // Record even after a panic elsewhere poisoned the lock: nothing seen is lost.
            this.seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(seen);
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let body: BoxBody<Bytes, Infallible> = if reply.chunks > 1 {
                let size = reply.body.len().div_ceil(reply.chunks).max(1);
                let frames: Vec<Result<Frame<Bytes>, Infallible>> = reply
                    .body
                    .chunks(size)
                    .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                    .collect();
                BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
            } else {
                BodyExt::boxed(Full::new(Bytes::from(reply.body)))
            };
            let mut resp = Response::new(body);
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            for (k, v) in reply.headers {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            Ok(resp)
        })
    }
}

/// A scriptable HTTP server on 127.0.0.1.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: watch::Sender<bool>,
}

impl TestServer {
    /// Serves on a free port, answering every request with `handler`'s reply.
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut rx) = watch::channel(false);
        tokio::spawn(shadowdiff_net::server::serve(
            listener,
            Scripted {
                handler: Arc::new(handler),
                seen: seen.clone(),
            },
            async move {
                let _ = rx.changed().await;
            },
            Duration::from_millis(200),
        ));
        Self { addr, seen, stop }
    }

    /// `http://` and the address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests served so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        // A poisoned lock means a handler panicked: fail the test instead of reading "nothing
        // seen", which would let `seen().is_empty()` assertions pass vacuously.
        self.seen
            .lock()
            .expect("the test server's record was poisoned by a panicking handler")
            .clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// An address nothing listens on.
pub async fn dead_address() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// A pipeline with a fresh data directory.
pub struct Harness {
    /// The running pipeline.
    pub pipeline: EmbeddedPipeline,
    /// Its data directory, removed when dropped.
    pub data: tempfile::TempDir,
}

/// Starts the embedded pipeline in front of `control` with the given candidates.
pub async fn start_pipeline(
    control: &str,
    candidates: &[(&str, &str)],
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        experiment: "test".into(),
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    config.capture.listen = "127.0.0.1:0".into();
    config.capture.control = Some(control.to_string());
    config.replay.candidates = candidates
        .iter()
        .map(|(n, u)| CandidateConfig {
            name: n.to_string(),
            url: u.to_string(),
        })
        .collect();
    config.admin.listen = String::new();
    config.pipeline.shutdown_grace_ms = 2_000;
    tweak(&mut config);
    let settings = config.validate().expect("valid test config");
    let store = EmbeddedStore::open(data.path()).expect("open store");
    let pipeline = EmbeddedPipeline::start(settings, Box::new(store))
        .await
        .expect("pipeline starts");
    Harness { pipeline, data }
}

impl Harness {
    /// The URL of `path` on the tap.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.pipeline.addr, path)
    }

    /// Drains the pipeline and reports what it stored.
    pub async fn finish(
        self,
    ) -> (
        Report,
        Arc<shadowdiff_pipeline::stages::PipelineStats>,
        tempfile::TempDir,
    ) {
        let stats = self.pipeline.shutdown().await;
        let report = read_report(self.data.path());
        (report, stats, self.data)
    }
}

/// The report (no filters) of everything the embedded store in `dir` holds.
pub fn read_report(dir: &std::path::Path) -> Report {
    let (records, _) = EmbeddedStore::open(dir)
        .expect("open")
        .read_all()
        .expect("read");
    build_report(&records, &ReportQuery::default())
}

/// A response as the client got it.
#[derive(Debug, PartialEq)]
pub struct Got {
    /// The status code.
    pub status: u16,
    /// Headers sorted, without `date`, `transfer-encoding` and `connection`.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

/// A plain-HTTP client with a connection pool.
pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A new [`Client`].
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Sends one request (with an `authorization` header, which replay must strip) and reads the
/// whole answer.
pub async fn send(client: &Client, method: &str, url: &str, body: &[u8]) -> Got {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", "Bearer secret")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    // A hung tap or server fails the test with a message instead of stalling the suite.
    tokio::time::timeout(REQUEST_TIMEOUT, async move {
        let resp = client.request(req).await.expect("response");
        let status = resp.status().as_u16();
        let mut headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "date" | "transfer-encoding" | "connection"))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        headers.sort();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Got {
            status,
            headers,
            body,
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {url}: no complete answer within {REQUEST_TIMEOUT:?}"))
}

/// How long a test client waits for a whole answer before it fails the test.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The report's endpoint row for `METHOD route` and candidate.
pub fn endpoint<'a>(
    report: &'a Report,
    method: &str,
    route: &str,
    candidate: &str,
) -> &'a shadowdiff_store::report::EndpointReport {
    report
        .endpoints
        .iter()
        .find(|e| e.method == method && e.route == route && e.candidate == candidate)
        .unwrap_or_else(|| panic!("no endpoint {method} {route} for {candidate} in {report:#?}"))
}

/// How long a server process may take to listen on its ports after a start.
const SERVER_START: Duration = Duration::from_secs(60);

/// A server process a test starts, kills with SIGKILL and starts again: the child of the
/// current start, if any. Killed when dropped.
#[derive(Default)]
struct ServerChild(Option<std::process::Child>);

impl ServerChild {
    /// Waits until `child` itself listens on every one of `ports` (within [`SERVER_START`],
    /// while it runs) and holds it; when it exits first or does not listen, the failure says
    /// why (a port taken, recognised in `log`, is retried by the caller), and the child is
    /// gone.
    fn started(
        &mut self,
        mut child: std::process::Child,
        ports: &[u16],
        log: impl Fn() -> String,
    ) -> Result<(), StartFailure> {
        ports::wait_listening(&mut child, ports, SERVER_START, log)?;
        self.0 = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A ClickHouse server of a test's own (Debian's `clickhouse-server`), on free loopback ports
/// with its own data directory, that the test can kill and start again.
pub struct OwnClickHouse {
    dir: tempfile::TempDir,
    http: u16,
    tcp: u16,
    inter: u16,
    child: ServerChild,
}

impl OwnClickHouse {
    /// Starts a server on free ports and waits until it listens on them; on new ports (and a
    /// new data directory) when one was taken.
    pub fn start() -> Self {
        ports::start_on_free_ports("ClickHouse", 3, |ports| {
            let mut ch = Self {
                dir: tempfile::tempdir().expect("temp dir"),
                http: ports[0],
                tcp: ports[1],
                inter: ports[2],
                child: ServerChild::default(),
            };
            ch.try_spawn().map(|()| ch)
        })
        .1
    }

    /// Its HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Starts the server again on the same ports and data and waits until it listens; while
    /// a port is still held (the killed server's), waits for it and tries again, for at most
    /// [`SERVER_START`].
    pub fn spawn(&mut self) {
        let ports = [self.http, self.tcp, self.inter];
        ports::restart_on_ports("ClickHouse", &ports, SERVER_START, |_| self.try_spawn());
    }

    fn try_spawn(&mut self) -> Result<(), StartFailure> {
        let d = self.dir.path().display().to_string();
        let errors = self.dir.path().join("ch.err");
        let logged = ports::length(&errors);
        let child = std::process::Command::new("clickhouse-server")
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg(format!("--path={d}/"))
            .arg(format!("--tmp_path={d}/tmp/"))
            .arg(format!("--user_files_path={d}/user_files/"))
            .arg(format!("--format_schema_path={d}/fs/"))
            .arg(format!("--logger.log={d}/ch.log"))
            .arg(format!("--logger.errorlog={d}/ch.err"))
            .arg(format!("--http_port={}", self.http))
            .arg(format!("--tcp_port={}", self.tcp))
            .arg(format!("--interserver_http_port={}", self.inter))
            .arg("--listen_host=127.0.0.1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                StartFailure::Failed(format!(
                    "clickhouse-server does not run ({e}); scripts/services.sh deps installs it"
                ))
            })?;
        self.child
            .started(child, &[self.http, self.tcp, self.inter], || {
                ports::read_from(&errors, logged)
            })
    }

    /// kill -9.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Whether the server was started and has exited since.
    pub fn exited(&mut self) -> bool {
        self.child.exited()
    }
}

/// A Kafka-protocol broker of a test's own (tansu, durable sqlite storage in its own directory),
/// on a free loopback port, that the test can kill and start again on the same port and data.
pub struct OwnBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: ServerChild,
    /// Panics in the log from starts that failed (tansu panics when its port is taken), which
    /// [`OwnBroker::panics`] does not count.
    failed_start_panics: usize,
}

/// Where `scripts/services.sh deps` installs tansu (`cargo install`), or `tansu` on the PATH.
fn tansu_binary() -> std::path::PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")));
    match cargo_home.map(|h| h.join("bin/tansu")) {
        Some(path) if path.exists() => path,
        _ => std::path::PathBuf::from("tansu"),
    }
}

impl OwnBroker {
    /// Starts a broker on a free port and waits until it listens; on a new port (and a new
    /// data directory) when the port was taken.
    pub fn start() -> Self {
        ports::start_on_free_port("tansu", |port| {
            let mut broker = Self {
                dir: tempfile::tempdir().expect("temp dir"),
                port,
                child: ServerChild::default(),
                failed_start_panics: 0,
            };
            broker.try_spawn().map(|()| broker)
        })
        .1
    }

    /// `127.0.0.1:port`, for `--kafka`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again on the same port and data and waits until it listens; while
    /// the port is still held (the killed broker's), waits for it and tries again, for at
    /// most [`SERVER_START`].
    pub fn spawn(&mut self) {
        let port = self.port;
        ports::restart_on_ports("tansu", &[port], SERVER_START, |_| self.try_spawn());
    }

    fn try_spawn(&mut self) -> Result<(), StartFailure> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.log_path();
        let logged = ports::length(&log_path);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("broker log");
        let child = std::process::Command::new(tansu_binary())
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                StartFailure::Failed(format!(
                    "tansu does not run ({e}); scripts/services.sh deps installs it"
                ))
            })?;
        let this_start = || ports::read_from(&log_path, logged);
        let started = self.child.started(child, &[self.port], this_start);
        if started.is_err() {
            self.failed_start_panics += this_start().matches("panicked at").count();
        }
        started.map_err(|failure| failure.noted(format!("(log: {})", log_path.display())))
    }

    /// kill -9.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Whether the broker was started and has exited since.
    pub fn exited(&mut self) -> bool {
        self.child.exited()
    }

    /// How many panics the broker's log holds (over all its starts, but for starts that
    /// failed). tansu keeps running after a panic in its storage task, but answers produce
    /// requests with errors.
    pub fn panics(&self) -> usize {
        std::fs::read_to_string(self.log_path())
            .map(|log| log.matches("panicked at").count())
            .unwrap_or(0)
            .saturating_sub(self.failed_start_panics)
    }

    /// The broker's log file.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("tansu.log")
    }
}
