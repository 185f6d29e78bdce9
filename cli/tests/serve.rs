//! `shadowdiff serve`: the gate and the report over HTTP, in every state a canary analysis
//! meets (pass, fail, undecided, unknown experiment, bad parameter, store unreachable), and the
//! JSON fields the Argo Rollouts and Flagger manifests under deploy/ read.
#![allow(clippy::unwrap_used)]

use shadowdiff_testkit::ports;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Served(Child, u16);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `shadowdiff serve` on a free port (another one when it turns out taken), listening.
fn serve(store: &[&str]) -> Served {
    let (port, child) = ports::start_on_free_port("shadowdiff serve", |port| {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--min-compared",
                "10",
            ])
            .args(store)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        ports::wait_listening(&mut child, &[port], Duration::from_secs(30), || {
            std::fs::read_to_string(log.path()).unwrap_or_default()
        })?;
        Ok(child)
    });
    Served(child, port)
}

/// One HTTP/1.1 request with a timeout; the status and the JSON body.
fn request(port: u16, method: &str, target: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = if method == "POST" {
        r#"{"name":"app","namespace":"prod","phase":"Progressing"}"#
    } else {
        ""
    };
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status: u16 = raw[9..12].parse().unwrap();
    let json = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b.trim()).unwrap_or(serde_json::Value::Null))
        .unwrap_or_default();
    (status, json)
}

#[test]
fn the_gate_and_the_report_answer_every_state_with_the_fields_the_manifests_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["demo", "--requests", "300", "--format", "json", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let demo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let experiment = demo["experiment"].as_str().unwrap().to_string();
    let data = dir.path().to_str().unwrap().to_string();
    let s = serve(&["--data", &data]);
    let port = s.1;
    let q = |extra: &str| format!("/gate?experiment={experiment}{extra}");

    // Fail: the demo's candidate regresses /users/{id}.
    let (status, fail) = request(port, "GET", &q(""));
    assert_eq!(status, 200);
    assert_eq!(fail["outcome"], "fail");
    assert_eq!(fail["passed"], false);
    assert!(
        fail["reasons"][0].as_str().unwrap().contains("/users/{id}"),
        "{fail}"
    );
    // Pass: an endpoint that is clean.
    let (status, pass) = request(port, "GET", &q("&endpoint=GET%20/health"));
    assert_eq!(
        (status, &pass["outcome"]),
        (200, &serde_json::json!("pass")),
        "{pass}"
    );
    // Undecided: more exchanges needed than there are.
    let (status, undecided) = request(port, "GET", &q("&min_compared=100000"));
    assert_eq!(
        (status, &undecided["outcome"]),
        (200, &serde_json::json!("undecided"))
    );
    // Flagger's webhook: 200 only on pass.
    assert_eq!(
        request(
            port,
            "POST",
            &format!("/gate/webhook?experiment={experiment}&endpoint=GET%20/health")
        )
        .0,
        200
    );
    assert_eq!(
        request(
            port,
            "POST",
            &format!("/gate/webhook?experiment={experiment}")
        )
        .0,
        412
    );
    assert_eq!(
        request(
            port,
            "GET",
            &format!("/gate/webhook?experiment={experiment}&min_compared=100000")
        )
        .0,
        412
    );

    // Errors: never an empty success.
    let (status, unknown) = request(port, "GET", "/gate?experiment=nope");
    assert_eq!(status, 404);
    assert_eq!(unknown["known_experiments"][0], experiment.as_str());
    for bad in [
        "&max_mismatch_rate=2",
        "&min_compared=many",
        "&since=yesterday",
        "&colour=red",
        "&candidate=a&candidate=b",
    ] {
        let (status, body) = request(port, "GET", &q(bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {body}"
        );
    }
    assert_eq!(request(port, "DELETE", &q("")).0, 405);

    // The report: the same numbers as the CLI's.
    let (status, report) = request(port, "GET", &format!("/report?experiment={experiment}"));
    assert_eq!(status, 200);
    assert_eq!(report["totals"], demo["totals"]);
    assert_eq!(request(port, "GET", "/healthz").0, 200);
    assert_eq!(request(port, "GET", "/readyz").0, 200);
    assert_eq!(request(port, "GET", "/metrics").0, 200);
}

#[test]
fn an_unreachable_store_is_503_not_a_decision() {
    let s = serve(&["--clickhouse", "http://127.0.0.1:1"]);
    let (status, body) = request(s.1, "GET", "/gate?experiment=e");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("127.0.0.1:1"),
        "{body}"
    );
    assert_eq!(request(s.1, "POST", "/gate/webhook").0, 503);
    assert_eq!(request(s.1, "GET", "/readyz").0, 503);
    let missing = tempfile::tempdir().unwrap().path().join("missing");
    let s = serve(&["--data", missing.to_str().unwrap()]);
    assert_eq!(request(s.1, "GET", "/gate").0, 503);
}

/// The manifests under deploy/ reference only what exists: the gate JSON fields their
/// conditions read, the routes and query parameters their URLs use, the flags their jobs pass.
#[test]
fn the_canary_manifests_reference_fields_routes_and_flags_that_exist() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let read = |p: &str| std::fs::read_to_string(deploy.join(p)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["demo", "--requests", "60", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = serve(&["--data", dir.path().to_str().unwrap()]);

    // Every URL: its path and parameters are served (placeholders filled in), never a 400.
    let mut urls = Vec::new();
    for file in [
        "argo-rollouts/analysis-template-web.yaml",
        "flagger/canary.yaml",
    ] {
        for line in read(file).lines() {
            if let Some(url) = line.trim().strip_prefix("url: ") {
                urls.push(url.trim_matches('"').to_string());
            }
        }
    }
    assert_eq!(urls.len(), 2);
    for url in &urls {
        let target = url
            .split_once(":9400")
            .unwrap()
            .1
            .replace("{{args.experiment}}", "nope")
            .replace("{{args.candidate}}", "v2")
            .replace("{{args.max-mismatch-rate}}", "0.01")
            .replace("{{args.max-latency-ratio}}", "1.5");
        let (status, body) = request(s.1, "GET", &target);
        // An unknown experiment is a 404 with the known ones: the route and every parameter
        // were understood.
        assert_eq!(status, 404, "{url}: {body}");
    }

    // The web template's conditions read fields the gate JSON has.
    let web = read("argo-rollouts/analysis-template-web.yaml");
    let (status, gate) = request(s.1, "GET", "/gate");
    assert_eq!(status, 200, "{gate}");
    assert_eq!(
        request(s.1, "GET", "/gate?experiment=").0,
        400,
        "an empty value is an error"
    );
    let fields: Vec<&str> = web
        .split("result.")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap()
        })
        .collect();
    assert!(fields.contains(&"outcome"), "{fields:?}");
    for field in fields {
        assert!(
            gate.get(field).is_some(),
            "`result.{field}` is not in the gate JSON: {gate}"
        );
    }

    // The job template passes only flags `shadowdiff gate` has.
    let help = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["gate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let job = read("argo-rollouts/analysis-template-job.yaml");
    let flags: Vec<&str> = job
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .collect();
    assert!(flags.len() >= 5);
    for flag in flags {
        assert!(
            help.contains(&format!("--{flag}")),
            "`shadowdiff gate` has no --{flag}"
        );
    }
    assert!(job.contains("- gate"));
}
