//! The replayer's own HTTP/1.1 client against a server it was not written with: Debian's nginx
//! as the candidate, closing kept-alive connections after a few requests and after a second of
//! idleness, answering with lengths, chunks (a `sub_filter`ed file), HEAD, redirects, 404 and a
//! body over the replayer's limit. Every replay must come back whole and exact.
//! Needs the `nginx` binary (scripts/test.sh installs it); fails without it.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use shadowdiff_model::{Body, Exchange, HttpRequest, TargetRole, SCHEMA_VERSION};
use shadowdiff_net::tls::ClientTls;
use shadowdiff_replayer::{AllowRule, Policy, ReplayConfig, Replayer, Target};
use shadowdiff_tests::nginx::Nginx;
use std::path::Path;
use std::time::Duration;

const LIMIT: usize = 64 * 1024;

fn site(listen: &str, dir: &Path) -> String {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("static.json"), static_json()).unwrap();
    std::fs::write(www.join("chunked.json"), static_json()).unwrap();
    std::fs::write(www.join("big.json"), big_json()).unwrap();
    format!(
        "types {{ application/json json; }}\n\
         server {{\n\
           listen {listen};\n\
           keepalive_requests 5;\n\
           keepalive_timeout 1s;\n\
           root {www};\n\
           location = /chunked.json {{ sub_filter '\"v\": 1' '\"v\": 2'; sub_filter_once off; sub_filter_types application/json; }}\n\
           location = /moved {{ return 301 /static.json; }}\n\
           location = /post {{ return 200 \"posted\\n\"; }}\n\
         }}\n",
        www = www.display()
    )
}

fn static_json() -> String {
    let items: Vec<String> = (0..60)
        .map(|i| format!("{{\"id\": {i}, \"name\": \"item {i}\", \"v\": 1}}"))
        .collect();
    format!("{{\"items\": [{}]}}\n", items.join(", "))
}

fn big_json() -> String {
    format!("{{\"blob\": \"{}\"}}\n", "x".repeat(300 * 1024))
}

fn exchange(method: &str, uri: &str, body: &[u8]) -> Exchange {
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: "0190a000-0000-7000-8000-000000000002".into(),
        captured_at_ms: 0,
        source: "tee".into(),
        experiment: "nginx".into(),
        request: HttpRequest {
            method: method.into(),
            uri: uri.into(),
            headers: vec![
                ("host".into(), "api.prod".into()),
                ("accept".into(), "application/json".into()),
            ],
            body: Body::complete(Bytes::copy_from_slice(body)),
        },
        control: None,
        redactions: Vec::new(),
        sample_rate: 1.0,
    }
}

/// Replays `method uri` and checks the status, the body kept and the body's whole length.
async fn check(replayer: &Replayer, method: &str, uri: &str, status: u16, body: &[u8], len: u64) {
    let payload: &[u8] = if method == "POST" { b"{\"n\": 1}" } else { b"" };
    let result = replayer.replay(exchange(method, uri, payload)).await;
    let answer = match &result.outcomes[0].result {
        Ok(answer) => answer,
        Err(error) => panic!("{method} {uri}: {error:?}"),
    };
    assert_eq!(answer.status, status, "{method} {uri}");
    assert_eq!(answer.body.full_len, len, "{method} {uri}");
    assert!(
        answer.body.bytes[..] == *body,
        "{method} {uri}: body differs"
    );
    assert_eq!(
        answer.body.truncated,
        (body.len() as u64) < len,
        "{method} {uri}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replay_to_nginx_comes_back_whole_through_its_connection_closes() {
    let nginx = Nginx::start(site);
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let target = Target::new("nginx", TargetRole::Candidate, &url, &ClientTls::default());
    let replayer = Replayer::new(ReplayConfig {
        body_limit: LIMIT,
        policy: Policy::new(&[AllowRule {
            method: "POST".into(),
            route: "/post".into(),
            bodies: false,
        }])
        .unwrap(),
        ..ReplayConfig::new(vec![target.unwrap()])
    })
    .unwrap();
    let plain = static_json();
    let changed = plain.replace("\"v\": 1", "\"v\": 2");
    let big = big_json();
    let plain_len = plain.len() as u64;

    // Seven kinds of answer, three times over: nginx closes every fifth request's connection.
    for _ in 0..3 {
        check(
            &replayer,
            "GET",
            "/static.json",
            200,
            plain.as_bytes(),
            plain_len,
        )
        .await;
        check(
            &replayer,
            "GET",
            "/chunked.json",
            200,
            changed.as_bytes(),
            changed.len() as u64,
        )
        .await;
        check(&replayer, "HEAD", "/static.json", 200, b"", 0).await;
        let moved = replayer.replay(exchange("GET", "/moved", b"")).await;
        assert_eq!(moved.outcomes[0].result.as_ref().unwrap().status, 301);
        let missing = replayer.replay(exchange("GET", "/missing.json", b"")).await;
        assert_eq!(missing.outcomes[0].result.as_ref().unwrap().status, 404);
        check(&replayer, "POST", "/post", 200, b"posted\n", 7).await;
        check(
            &replayer,
            "GET",
            "/big.json",
            200,
            &big.as_bytes()[..LIMIT],
            big.len() as u64,
        )
        .await;
    }

    // Many at once: each on a connection of its own, or one given back whole.
    let at_once = futures_util::future::join_all(
        (0..24).map(|_| replayer.replay(exchange("GET", "/chunked.json", b""))),
    )
    .await;
    for result in &at_once {
        let answer = result.outcomes[0].result.as_ref().unwrap();
        assert!(answer.body.bytes[..] == *changed.as_bytes());
        // nginx's sub_filter does not know the length: the answer came in chunks.
        assert!(
            answer
                .headers
                .iter()
                .any(|(n, v)| n == "transfer-encoding" && v == "chunked"),
            "{:?}",
            answer.headers
        );
    }

    // nginx closes idle connections after a second: the next replays notice and go on new ones.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..6 {
        check(
            &replayer,
            "GET",
            "/static.json",
            200,
            plain.as_bytes(),
            plain_len,
        )
        .await;
    }
}
