//! The replayer's own HTTP/1.1 client against Python's `http.server` as the candidate: an
//! HTTP/1.0 server that closes every connection, answering with a length, with no length at all
//! (the body ends at the close), or with HTTP/1.1 keep-alive on request. Every replay must come
//! back whole and exact. Needs `python3` (scripts/test.sh needs it too); fails without it.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use shadowdiff_model::{Body, Exchange, HttpRequest, TargetRole, SCHEMA_VERSION};
use shadowdiff_net::tls::ClientTls;
use shadowdiff_replayer::{ReplayConfig, Replayer, Target};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const SERVER: &str = r#"
import http.server, sys

BODY = ("{\"items\": [" + ", ".join("{\"id\": %d}" % i for i in range(200)) + "]}\n").encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/length":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/until-close":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for i in range(0, len(BODY), 100):
                self.wfile.write(BODY[i:i + 100])
                self.wfile.flush()
        elif self.path == "/keep-alive":
            # HTTP/1.1 with a length: the connection may carry the next request.
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        else:
            self.send_error(404)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The Python server, killed when the test ends (also on panic).
struct Python(Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (Python, u16) {
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is required (scripts/test.sh needs it too)");
    let stdout = child.stdout.take().unwrap();
    let python = Python(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    (python, port)
}

fn body() -> String {
    let items: Vec<String> = (0..200).map(|i| format!("{{\"id\": {i}}}")).collect();
    format!("{{\"items\": [{}]}}\n", items.join(", "))
}

fn exchange(uri: &str) -> Exchange {
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: "0190a000-0000-7000-8000-000000000003".into(),
        captured_at_ms: 0,
        source: "tee".into(),
        experiment: "python".into(),
        request: HttpRequest {
            method: "GET".into(),
            uri: uri.into(),
            headers: vec![("host".into(), "api.prod".into())],
            body: Body::complete(Bytes::new()),
        },
        control: None,
        redactions: Vec::new(),
        sample_rate: 1.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replay_to_an_http_1_0_server_comes_back_whole() {
    let (_python, port) = start();
    let url = format!("http://127.0.0.1:{port}");
    let target = Target::new("python", TargetRole::Candidate, &url, &ClientTls::default());
    let replayer = Replayer::new(ReplayConfig {
        body_limit: 1 << 20,
        ..ReplayConfig::new(vec![target.unwrap()])
    })
    .unwrap();
    let expected = body();
    for round in 0..4 {
        for path in ["/length", "/until-close", "/keep-alive"] {
            let result = replayer.replay(exchange(path)).await;
            let answer = match &result.outcomes[0].result {
                Ok(answer) => answer,
                Err(error) => panic!("round {round} {path}: {error:?}"),
            };
            assert_eq!(answer.status, 200, "{path}");
            assert!(
                answer.body.bytes[..] == *expected.as_bytes(),
                "{path}: body differs"
            );
            assert_eq!(answer.body.full_len, expected.len() as u64, "{path}");
        }
        let missing = replayer.replay(exchange("/missing")).await;
        assert_eq!(missing.outcomes[0].result.as_ref().unwrap().status, 404);
    }
}
