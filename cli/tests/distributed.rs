//! The distributed deployment as real processes: capture → Kafka → replay → Kafka → diff →
//! ClickHouse, then `report --clickhouse` and `gate`. Needs the servers of
//! `scripts/services.sh start` (SHADOWDIFF_TEST_KAFKA, SHADOWDIFF_TEST_CLICKHOUSE); fails
//! without them.
#![allow(clippy::unwrap_used)]

use shadowdiff_pipeline::demo::{Build, DemoServer};
use shadowdiff_testkit::ports;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The redaction key every process of a test deployment shares.
const REDACTION_KEY: &str = "distributed-test-key";

fn server_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test servers with `scripts/services.sh start && source .services/env` (scripts/test.sh does it)")
    })
}

/// A `shadowdiff` process of the deployment, and its log (stderr), printed if the test fails
/// while it runs.
struct Proc(Child, &'static str, tempfile::NamedTempFile);

impl Proc {
    fn start(name: &'static str, args: &[String]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(args)
            .env("RUST_LOG", "warn")
            // Every capture and replay process must share one redaction key.
            .env("SHADOWDIFF_REDACTION_KEY", REDACTION_KEY)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Proc(child, name, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.2.path()).unwrap_or_default()
    }

    /// Starts `capture` with `args` and `--listen` on a free port (another one when the tap
    /// finds its port taken), and waits until the tap listens there.
    fn start_capture(args: &[String]) -> (u16, Self) {
        ports::start_on_free_port("capture", |port| {
            let mut all = args.to_vec();
            all.extend([s("--listen"), format!("127.0.0.1:{port}")]);
            let mut capture = Proc::start("capture", &all);
            let log = capture.2.path().to_path_buf();
            ports::wait_listening(&mut capture.0, &[port], Duration::from_secs(60), || {
                std::fs::read_to_string(&log).unwrap_or_default()
            })?;
            Ok(capture)
        })
    }

    /// SIGTERM, then the exit code within 30 s.
    fn stop(mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop after SIGTERM",
                self.1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.1, self.log());
        }
    }
}

fn shadowdiff(args: &[String]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(args)
        .env("SHADOWDIFF_REDACTION_KEY", REDACTION_KEY)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn s(v: &str) -> String {
    v.to_string()
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// One request through the tap; the client always gets a 2xx, whatever happens behind it.
async fn send(client: &Client, method: &str, url: String) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let timeout = shadowdiff_tests::REQUEST_TIMEOUT;
    tokio::time::timeout(timeout, async {
        let resp = client.request(req).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
    })
    .await
    .unwrap_or_else(|_| panic!("no answer through the tap within {timeout:?}"));
}

/// The report in ClickHouse, as JSON, when it can be read.
fn clickhouse_report(url: &str, database: &str) -> Option<serde_json::Value> {
    let (code, out) = shadowdiff(&[
        s("report"),
        s("--clickhouse"),
        s(url),
        s("--database"),
        s(database),
        s("--format"),
        s("json"),
    ]);
    if code != 0 {
        return None;
    }
    serde_json::from_str(&out).ok()
}

/// Polls the report until it counts `n` exchanges, and returns it.
async fn wait_for_exchanges(url: &str, database: &str, n: u64, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let report = clickhouse_report(url, database);
        let got = report
            .as_ref()
            .and_then(|r| r["totals"]["exchanges"].as_u64());
        if got == Some(n) {
            return report.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: ClickHouse never reached {n} exchanges (has {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_replay_diff_over_kafka_into_clickhouse() {
    let kafka = server_env("SHADOWDIFF_TEST_KAFKA");
    let clickhouse = server_env("SHADOWDIFF_TEST_CLICKHOUSE");
    // Unique per run (topics, groups, database), however runs overlap.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (exchanges, results, database) = (
        format!("ex-{run}"),
        format!("res-{run}"),
        format!("sd_{run}"),
    );

    let control = DemoServer::start(Build::Control).await.unwrap();
    let candidate = DemoServer::start(Build::Candidate).await.unwrap();
    // Each stage takes only the flags it uses (any other is refused).
    let common = |extra: &[String]| {
        let mut v = vec![s("--kafka"), kafka.clone(), s("--admin"), s("")];
        v.extend_from_slice(extra);
        v
    };
    let mut capture_args = vec![s("capture")];
    capture_args.extend(common(&[
        s("--control"),
        control.url(),
        s("--exchanges-topic"),
        exchanges.clone(),
        s("--experiment"),
        s("dist"),
    ]));
    let mut replay_args = vec![s("replay")];
    replay_args.extend(common(&[
        s("--exchanges-topic"),
        exchanges.clone(),
        s("--results-topic"),
        results.clone(),
        s("--candidate"),
        format!("v2={}", candidate.url()),
        s("--group"),
        format!("r-{run}"),
    ]));
    let mut diff_args = vec![s("diff")];
    diff_args.extend(common(&[
        s("--results-topic"),
        results.clone(),
        s("--clickhouse"),
        clickhouse.clone(),
        s("--database"),
        database.clone(),
        s("--group"),
        format!("d-{run}"),
    ]));
    let diff = Proc::start("diff", &diff_args);
    let replay = Proc::start("replay", &replay_args);
    // The tap listens once this returns; then bounded traffic goes through it.
    let (tap_port, capture) = Proc::start_capture(&capture_args);
    let client = client();
    let mut sent = 0u64;
    for i in 1..=120u64 {
        let (method, path) = match i % 6 {
            0 => ("POST", "/orders".to_string()),
            1 => ("GET", "/health".to_string()),
            // Twenty users, each asked for several times: without a secondary, the control's
            // answers to repeated identical requests are what measure its own noise.
            _ => ("GET", format!("/users/{}", i % 20)),
        };
        send(
            &client,
            method,
            format!("http://127.0.0.1:{tap_port}{path}"),
        )
        .await;
        sent += 1;
    }
    // Every exchange reaches ClickHouse.
    let report = wait_for_exchanges(&clickhouse, &database, sent, "capture to ClickHouse").await;
    assert_eq!(report["totals"]["blocked"], 20);
    let endpoints = report["endpoints"].as_array().unwrap();
    let users = endpoints
        .iter()
        .find(|e| e["route"] == "/users/{id}")
        .unwrap();
    assert_eq!(users["verdict"], "regression");
    assert_eq!(users["compared"], 80);
    let paths: Vec<&str> = users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "regression")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    // Without a secondary, the control's own noise is learned from the repeated requests: the
    // rename is a regression.
    assert!(
        paths.contains(&"body.email") && paths.contains(&"body.email_address"),
        "{paths:?}"
    );
    // The shuffled `tags` array is the control's own noise, measured on the repeats.
    let tags = users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "body.tags")
        .expect("the shuffled tags differ");
    assert_eq!(
        (&tags["verdict"], &tags["evidence"]),
        (
            &serde_json::json!("noise"),
            &serde_json::json!("repeated_requests")
        ),
        "{tags}"
    );

    // The gate reads the same data.
    let gate = |extra: &[&str]| {
        let mut args = vec![
            s("gate"),
            s("--clickhouse"),
            clickhouse.clone(),
            s("--database"),
            database.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        shadowdiff(&args).0
    };
    assert_eq!(
        gate(&["--max-mismatch-rate", "0.01", "--min-compared", "10"]),
        1
    );
    assert_eq!(
        gate(&[
            "--max-mismatch-rate",
            "0.01",
            "--min-compared",
            "10",
            "--endpoint",
            "GET /health"
        ]),
        0
    );
    assert_eq!(
        gate(&["--max-mismatch-rate", "0.01", "--min-compared", "100000"]),
        2
    );
    assert_eq!(
        shadowdiff(&[
            s("gate"),
            s("--clickhouse"),
            s("http://127.0.0.1:1"),
            s("--max-mismatch-rate"),
            s("0.01")
        ])
        .0,
        2,
        "an unreachable store is undecided"
    );

    assert_eq!(capture.stop(), 0);
    assert_eq!(replay.stop(), 0);
    assert_eq!(diff.stop(), 0);
}

/// The three stages' arguments for a test deployment whose candidate is the control itself
/// (every exchange compares clean): topics, groups and database named by `tag` and `run`, and
/// `members` (`--instance-id` values for replay and diff) when static membership is wanted.
/// Capture's `--listen` is added by [`Proc::start_capture`].
struct CleanDeployment {
    capture: Vec<String>,
    replay: Vec<String>,
    diff: Vec<String>,
}

fn clean_deployment(
    kafka: &str,
    clickhouse: &str,
    database: &str,
    control: &str,
    tag: &str,
    run: &str,
    members: Option<(&str, &str)>,
) -> CleanDeployment {
    let (exchanges, results) = (format!("ex{tag}-{run}"), format!("res{tag}-{run}"));
    // Each stage takes only the flags it uses (any other is refused).
    let common = |extra: Vec<String>| {
        let mut v = vec![s("--kafka"), kafka.to_string(), s("--admin"), s("")];
        v.extend(extra);
        v
    };
    let member = |name: Option<&str>| {
        name.map(|n| vec![s("--instance-id"), s(n)])
            .unwrap_or_default()
    };
    let mut capture = vec![s("capture")];
    capture.extend(common(vec![
        s("--control"),
        control.to_string(),
        s("--exchanges-topic"),
        exchanges.clone(),
    ]));
    let mut replay = vec![s("replay")];
    replay.extend(common(
        [
            vec![
                s("--exchanges-topic"),
                exchanges,
                s("--results-topic"),
                results.clone(),
                s("--candidate"),
                format!("same={control}"),
                s("--group"),
                format!("r{tag}-{run}"),
            ],
            member(members.map(|m| m.0)),
        ]
        .concat(),
    ));
    let mut diff = vec![s("diff")];
    diff.extend(common(
        [
            vec![
                s("--results-topic"),
                results,
                s("--clickhouse"),
                clickhouse.to_string(),
                s("--database"),
                database.to_string(),
                s("--group"),
                format!("d{tag}-{run}"),
            ],
            member(members.map(|m| m.1)),
        ]
        .concat(),
    ));
    CleanDeployment {
        capture,
        replay,
        diff,
    }
}

/// Sends `GET /health?n=…` for each n in the range through the tap.
async fn send_range(client: &Client, tap_port: u16, range: std::ops::Range<u64>) {
    for i in range {
        send(
            client,
            "GET",
            format!("http://127.0.0.1:{tap_port}/health?n={i}"),
        )
        .await;
    }
}

/// The `diff` process keeps its results while ClickHouse is away: it retries with backoff,
/// acknowledges nothing meanwhile, and once ClickHouse is back every exchange is there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_process_survives_clickhouse_going_away() {
    let kafka = server_env("SHADOWDIFF_TEST_KAFKA");
    let mut clickhouse = shadowdiff_tests::OwnClickHouse::start();
    // Unique per run (topics, groups, database), however runs overlap.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("sdd_{run}");
    let control = DemoServer::start(Build::Control).await.unwrap();
    let d = clean_deployment(
        &kafka,
        &clickhouse.url(),
        &database,
        &control.url(),
        "d",
        &run,
        None,
    );
    let diff = Proc::start("diff", &d.diff);
    let replay = Proc::start("replay", &d.replay);
    let (tap_port, capture) = Proc::start_capture(&d.capture);
    let client = client();
    send_range(&client, tap_port, 0..20).await;
    wait_for_exchanges(&clickhouse.url(), &database, 20, "before the outage").await;
    clickhouse.kill();
    send_range(&client, tap_port, 20..40).await;
    // The differ now fails its inserts and retries; give it a few rounds of backoff.
    tokio::time::sleep(Duration::from_secs(3)).await;
    clickhouse.spawn();
    let report = wait_for_exchanges(
        &clickhouse.url(),
        &database,
        40,
        "after ClickHouse came back",
    )
    .await;
    assert_eq!(report["totals"]["compared"], 40);
    assert_eq!(report["totals"]["mismatched"], 0);

    assert_eq!(capture.stop(), 0);
    assert_eq!(replay.stop(), 0);
    assert_eq!(diff.stop(), 0);
}

/// Recorded traffic takes the same distributed path: `import goreplay --kafka` publishes the
/// exchanges, and `replay` and `diff` processes store them like captured ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_goreplay_traffic_flows_through_kafka() {
    let kafka = server_env("SHADOWDIFF_TEST_KAFKA");
    let clickhouse = server_env("SHADOWDIFF_TEST_CLICKHOUSE");
    // Unique per run (topics, groups, database), however runs overlap.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (exchanges, results, database) = (
        format!("exi-{run}"),
        format!("resi-{run}"),
        format!("sdi_{run}"),
    );
    let candidate = DemoServer::start(Build::Control).await.unwrap();

    let sep = "\n🐵🙈🙉\n";
    let mut gor = String::new();
    for i in 0..25 {
        gor += &format!(
            "1 r{i} 17000000000{i:08} 0\nGET /health?n={i} HTTP/1.1\r\nHost: a\r\n\r\n{sep}"
        );
        gor += &format!(
            "2 r{i} 17000000000{i:08} 1000\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n{sep}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recorded.gor");
    std::fs::write(&file, gor).unwrap();

    let topics = |extra: &[String]| {
        let mut v = vec![
            s("--kafka"),
            kafka.clone(),
            s("--exchanges-topic"),
            exchanges.clone(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let mut import_args = vec![
        s("import"),
        s("goreplay"),
        file.display().to_string(),
        s("--experiment"),
        s("recorded"),
    ];
    import_args.extend(topics(&[]));
    let (code, out) = shadowdiff(&import_args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("published 25 goreplay exchanges"), "{out}");

    // `replay` reads the exchanges and writes the results; `diff` reads only the results.
    let stage = |name: &str, extra: &[String]| {
        let mut v = vec![s(name)];
        if name == "replay" {
            v.extend(topics(&[]));
        } else {
            v.extend([s("--kafka"), kafka.clone()]);
        }
        v.extend([s("--results-topic"), results.clone(), s("--admin"), s("")]);
        v.extend_from_slice(extra);
        v
    };
    let replay = Proc::start(
        "replay",
        &stage(
            "replay",
            &[
                s("--candidate"),
                format!("v2={}", candidate.url()),
                s("--group"),
                format!("ri-{run}"),
            ],
        ),
    );
    let diff = Proc::start(
        "diff",
        &stage(
            "diff",
            &[
                s("--clickhouse"),
                clickhouse.clone(),
                s("--database"),
                database.clone(),
                s("--group"),
                format!("di-{run}"),
            ],
        ),
    );
    let report = wait_for_exchanges(&clickhouse, &database, 25, "import to ClickHouse").await;
    assert_eq!(report["experiment"], "recorded");
    assert_eq!(report["totals"]["compared"], 25);
    assert_eq!(replay.stop(), 0);
    assert_eq!(diff.stop(), 0);
}

/// Two capture replicas with the shared key hash the same secret the same: what one tap
/// redacted compares equal with what the other did (a random key per process would not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_capture_replicas_redact_a_secret_to_the_same_hash() {
    let kafka = server_env("SHADOWDIFF_TEST_KAFKA");
    let control = DemoServer::start(Build::Control).await.unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("ex-redact-{run}");
    let args = [
        s("capture"),
        s("--kafka"),
        kafka.clone(),
        s("--exchanges-topic"),
        topic.clone(),
        s("--admin"),
        s(""),
        s("--control"),
        control.url(),
    ];
    // Two taps, each on a port of its own.
    let (ports, taps): (Vec<u16>, Vec<Proc>) = (0..2).map(|_| Proc::start_capture(&args)).unzip();
    let client = client();
    for port in ports {
        let req = http::Request::builder()
            .uri(format!("http://127.0.0.1:{port}/health"))
            .header("authorization", "Bearer the-same-secret")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(shadowdiff_tests::REQUEST_TIMEOUT, client.request(req))
            .await
            .expect("the tap answers within the timeout")
            .unwrap();
        assert!(resp.status().is_success());
    }
    for tap in taps {
        assert_eq!(tap.stop(), 0);
    }
    let consumer: shadowdiff_kafka::RecordConsumer<shadowdiff_model::Exchange> =
        shadowdiff_kafka::RecordConsumer::new(&shadowdiff_kafka::ConsumerConfig::new(
            &kafka,
            &topic,
            format!("redact-{run}"),
        ))
        .unwrap();
    let mut hashes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while hashes.len() < 2 && Instant::now() < deadline {
        if let Ok(Ok((exchange, delivery))) =
            tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await
        {
            delivery.ack();
            let value = exchange
                .request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
                .expect("the header is kept, redacted");
            hashes.push(value);
        }
    }
    assert_eq!(hashes.len(), 2, "both taps published their exchange");
    assert!(hashes[0].starts_with("redacted:"), "{hashes:?}");
    assert!(!hashes[0].contains("the-same-secret"), "{hashes:?}");
    assert_eq!(
        hashes[0], hashes[1],
        "one secret, one hash, across processes"
    );
    control.stop().await;
}

/// `diff` pointed at a server that is not ClickHouse stops at once with an error naming the URL
/// (it used to retry forever, POSTing SQL to whatever answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_at_a_server_that_is_not_clickhouse_stops_and_says_so() {
    let kafka = server_env("SHADOWDIFF_TEST_KAFKA");
    let not_clickhouse = DemoServer::start(Build::Control).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["diff", "--kafka", &kafka, "--admin", "", "--clickhouse"])
        .arg(not_clickhouse.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("diff kept retrying against a server that is not ClickHouse");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&not_clickhouse.url()) && err.contains("ClickHouse HTTP endpoint"),
        "{err}"
    );
    not_clickhouse.stop().await;
}

/// `replay` and `diff` killed with SIGKILL and started again at once under the same
/// `--instance-id` (static membership) take their partitions back and resume within seconds:
/// the new exchanges are in ClickHouse well within twice the session timeout (10 s), instead
/// of the restarted members sitting idle with no partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replay_and_diff_resume_within_seconds() {
    let kafka = server_env("SHADOWDIFF_TEST_KAFKA");
    let clickhouse = server_env("SHADOWDIFF_TEST_CLICKHOUSE");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("sdk_{run}");
    let control = DemoServer::start(Build::Control).await.unwrap();
    let d = clean_deployment(
        &kafka,
        &clickhouse,
        &database,
        &control.url(),
        "k",
        &run,
        Some(("replay-0", "diff-0")),
    );
    let diff = Proc::start("diff", &d.diff);
    let replay = Proc::start("replay", &d.replay);
    let (tap_port, capture) = Proc::start_capture(&d.capture);
    let client = client();
    send_range(&client, tap_port, 0..20).await;
    wait_for_exchanges(&clickhouse, &database, 20, "before the kill").await;

    // SIGKILL (Drop) and an immediate restart under the same names.
    drop(replay);
    drop(diff);
    let diff = Proc::start("diff", &d.diff);
    let replay = Proc::start("replay", &d.replay);
    send_range(&client, tap_port, 20..40).await;
    let sent = Instant::now();
    wait_for_exchanges(&clickhouse, &database, 40, "after the restart").await;
    let resumed = sent.elapsed();
    assert!(
        resumed < Duration::from_secs(20),
        "the restarted stages took {resumed:?} to store what was sent after the restart"
    );

    assert_eq!(capture.stop(), 0);
    assert_eq!(replay.stop(), 0);
    assert_eq!(diff.stop(), 0);
}
