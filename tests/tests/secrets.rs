//! Security issue "replay guard": secrets never reach a candidate or the store, and writes
//! disguised as reads (method overrides, bodies on GET) are never replayed. Real servers on
//! loopback only; the lists are spelled out here on purpose, so the test pins what must be
//! stripped whatever the shared constants say.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use shadowdiff_store::html::render_html;
use shadowdiff_store::text::render_text;
use shadowdiff_tests::*;

/// Every credential header in common use.
const SECRET_HEADERS: &[&str] = &[
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "X-Api-Key",
    "Api-Key",
    "X-API-Token",
    "X-Auth-Token",
    "X-Access-Token",
    "X-Amz-Security-Token",
    "X-Amz-Credential",
    "X-CSRF-Token",
    "X-XSRF-Token",
    "X-Goog-Api-Key",
    "X-Functions-Key",
    "Ocp-Apim-Subscription-Key",
    "X-Vault-Token",
    "X-Client-Secret",
    "X-Refresh-Token",
    "X-Session-Token",
    "X-Id-Token",
    "X-Forwarded-Access-Token",
    "X-Hub-Signature",
    "X-Hub-Signature-256",
    "X-Signature",
    "Private-Token",
    "X-Shopify-Access-Token",
    "X-Slack-Signature",
    "DD-API-KEY",
];

/// Every credential query parameter in common use.
const SECRET_QUERY: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "auth",
    "session",
    "sessionid",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "code",
];

fn header_secret(i: usize) -> String {
    format!("leakedheadersecret{i:02}x")
}

fn query_secret(i: usize) -> String {
    format!("leakedquerysecret{i:02}x")
}

/// The path and query of a request carrying every secret query parameter, plus two spellings a
/// server also accepts: another case and a percent-encoded name.
fn secret_query(path: &str) -> String {
    let mut q: Vec<String> = vec!["page=2".to_string()];
    for (i, name) in SECRET_QUERY.iter().enumerate() {
        q.push(format!("{name}={}", query_secret(i)));
    }
    q.push(format!("API_KEY={}", query_secret(90)));
    q.push(format!("%74oken={}", query_secret(91)));
    format!("{path}?{}", q.join("&"))
}

fn all_secrets() -> Vec<String> {
    let mut s: Vec<String> = (0..SECRET_HEADERS.len()).map(header_secret).collect();
    s.extend((0..SECRET_QUERY.len()).map(query_secret));
    s.push(query_secret(90));
    s.push(query_secret(91));
    s
}

async fn send_with_secrets(c: &Client, method: &str, url: &str, body: &[u8]) -> u16 {
    let mut req = Request::builder().method(method).uri(url);
    for (i, name) in SECRET_HEADERS.iter().enumerate() {
        req = req.header(*name, header_secret(i));
    }
    let resp = c
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

/// Every file under `dir`, as text.
fn stored_text(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&stored_text(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_header_or_query_parameter_reaches_a_candidate_the_store_or_a_report() {
    let control = TestServer::start(|_| Reply::json(json!({"v": 1}))).await;
    // Answers differently, so the report has mismatches and samples to render.
    let candidate = TestServer::start(|_| Reply::json(json!({"v": 2}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |_| {}).await;
    let c = client();
    assert_eq!(
        send_with_secrets(&c, "GET", &h.url(&secret_query("/items/7")), b"").await,
        200
    );
    // A blocked write is stored too (as blocked): its secrets must not be.
    send_with_secrets(&c, "POST", &h.url(&secret_query("/items")), b"{}").await;
    let (report, _, dir) = h.finish().await;

    // Production got the secrets (all but Proxy-Authorization, which is hop-by-hop and ends at
    // the tap): the test really sent them.
    let at_control = format!("{:?}", control.seen());
    for (i, s) in all_secrets().iter().enumerate() {
        if i != 1 {
            assert!(at_control.contains(s), "{s} was not sent");
        }
    }

    let seen = candidate.seen();
    assert_eq!(seen.len(), 1, "only the GET is replayed");
    let got = &seen[0];
    let mut at_candidate = got.path.clone();
    for (name, value) in &got.headers {
        at_candidate.push_str(&format!(
            "\n{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    at_candidate.push_str(&String::from_utf8_lossy(&got.body));
    for s in all_secrets() {
        assert!(
            !at_candidate.contains(&s),
            "{s} reached the candidate:\n{at_candidate}"
        );
    }
    for name in SECRET_HEADERS {
        assert!(
            !got.headers.contains_key(*name),
            "{name} reached the candidate"
        );
    }
    // Ordinary parameters still go through.
    assert!(got.path.starts_with("/items/7?page=2"), "{}", got.path);

    let stored = stored_text(dir.path());
    assert!(!stored.is_empty());
    let json = serde_json::to_string(&report).unwrap();
    let text = render_text(&report, false);
    let html = render_html(&report);
    assert_eq!(endpoint(&report, "GET", "/items/{id}", "v2").compared, 1);
    for s in all_secrets() {
        assert!(!stored.contains(&s), "{s} is in the stored data");
        assert!(!json.contains(&s), "{s} is in the json report");
        assert!(!text.contains(&s), "{s} is in the text report");
        assert!(!html.contains(&s), "{s} is in the html report");
    }
}

/// A request with extra headers, through the tap.
async fn send_headers(c: &Client, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = c
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_disguised_as_reads_are_blocked_with_their_reasons() {
    let control = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let candidate = TestServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        // The one route where a GET body is declared harmless.
        c.replay.allow = vec![serde_json::from_value(
            json!({"method": "GET", "route": "/search", "bodies": true}),
        )
        .unwrap()];
    })
    .await;
    let c = client();
    let url = h.url("/items/3");
    for header in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        send_headers(&c, "GET", &url, &[(header, "DELETE")], b"").await;
    }
    send_headers(&c, "GET", &h.url("/items/3?_method=DELETE"), &[], b"").await;
    send_headers(
        &c,
        "GET",
        &url,
        &[("content-type", "application/json")],
        b"{\"delete\":true}",
    )
    .await;
    // Replayed: an override naming a read, and a body where the route allows it.
    send_headers(&c, "GET", &url, &[("X-HTTP-Method-Override", "GET")], b"").await;
    send_headers(&c, "GET", &h.url("/search"), &[], b"{\"q\":1}").await;
    let (report, _, _dir) = h.finish().await;

    // Replays run concurrently: their order at the candidate is not the order sent.
    let mut seen = candidate.seen();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].path, "/items/3");
    assert_eq!(seen[1].path, "/search");
    assert_eq!(&seen[1].body[..], b"{\"q\":1}");

    let row = endpoint(&report, "GET", "/items/{id}", "v2");
    assert_eq!(row.blocked, 5, "{row:#?}");
    let reasons: Vec<&str> = row
        .blocked_reasons
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for expect in [
        "method override X-HTTP-Method-Override: DELETE may write",
        "method override X-HTTP-Method: DELETE may write",
        "method override X-Method-Override: DELETE may write",
        "method override _method=DELETE in the query may write",
        "GET with a request body may write",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expect)),
            "no reason `{expect}` in {reasons:#?}"
        );
    }
}
