//! HTML bodies are diffed as trees, so noise is masked per element, text and attribute: real
//! HTTP servers render pages whose nonce, CSRF token and render time change on every response
//! (the secondary's too); a candidate that changes the `<title>` of every page is a regression
//! at `body.html.head.title`, and one that differs only by the volatile values is not. Three
//! page shapes (a Rails layout, a Django template, a Next.js document), none of their element
//! names or values known to shadowdiff.
#![allow(clippy::unwrap_used)]

use shadowdiff_tests::{client, endpoint, send, start_pipeline, Reply, TestServer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A counter that differs on every call, shared by every server of a test.
fn tick() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A random-looking token (base64-ish, mixed case and digits) from `n`.
fn token(n: u64, len: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::from("k7Q");
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
    }
    s
}

fn iso(n: u64) -> String {
    format!(
        "2026-12-04T10:{:02}:{:02}.{:03}Z",
        (n / 60) % 60,
        n % 60,
        (n * 37) % 1000
    )
}

/// A Rails layout: csrf meta tags, a nonce'd inline script, an authenticity token in the form,
/// "Rendered in N ms" in the footer.
fn rails(id: &str, title: &str, n: u64) -> String {
    let (csrf, nonce) = (token(n, 43), token(n + 7, 24));
    let items: String = (0..12)
        .map(|i| format!("<li class=\"item\"><a href=\"/products/{i}\">Product {i}</a> <span class=\"price\">${}.00</span></li>\n", 10 + i))
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html>
  <head>
    <title>{title}</title>
    <meta name="csrf-param" content="authenticity_token" />
    <meta name="csrf-token" content="{csrf}" />
    <link rel="stylesheet" href="/assets/application-5d2f.css" media="all" />
    <script nonce="{nonce}">document.documentElement.className = 'js';</script>
  </head>
  <body class="products show">
    <nav><ul><li><a href="/">Home</a></li><li><a href="/products">Products</a></li></ul></nav>
    <h1>Order {id}</h1>
    <ul class="items">
{items}    </ul>
    <form class="new_comment" action="/orders/{id}/comments" accept-charset="UTF-8" method="post">
      <input type="hidden" name="authenticity_token" value="{csrf}" autocomplete="off" />
      <textarea name="comment[body]"></textarea>
      <input type="submit" name="commit" value="Comment" data-disable-with="Comment" />
    </form>
    <footer>Rendered in {} ms</footer>
  </body>
</html>
"#,
        n % 90 + 3
    )
}

/// A Django template: the CSRF middleware token, a generated-at time in a `<time>` element and
/// in the footer text, a table of rows.
fn django(id: &str, title: &str, n: u64) -> String {
    let rows: String = (0..15)
        .map(|i| {
            format!(
                "<tr><td>{i}</td><td>user{i}@example.com</td><td><a href=\"/users/{i}/\">edit</a></td></tr>"
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/static/admin/css/base.css"></head>
<body><div id="container"><div id="header"><h1 id="site-name"><a href="/admin/">Administration</a></h1></div>
<div id="content" class="colM"><h2>Account {id}</h2>
<table id="result_list"><thead><tr><th>#</th><th>Email</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<form method="post" action="/accounts/{id}/"><input type="hidden" name="csrfmiddlewaretoken" value="{}">
<input type="text" name="q" value=""><button type="submit">Search</button></form>
<p class="generated">Generated <time datetime="{}">{}</time></p>
</div><div id="footer">Page generated at {}</div></div></body></html>"#,
        token(n, 64),
        iso(n),
        iso(n),
        iso(n + 1)
    )
}

/// A Next.js document: a nonce on every script, the data script whose JSON carries a render
/// time and a request id, a build id, cards in a grid.
fn next(id: &str, title: &str, n: u64) -> String {
    let nonce = token(n, 32);
    let cards: String = (0..10)
        .map(|i| {
            format!(
                r#"<div class="card" data-testid="card-{i}"><h3>Widget {i}</h3><p>Status: <span class="ok">ok</span></p></div>"#
            )
        })
        .collect();
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charSet="utf-8"/><meta name="viewport" content="width=device-width"/><title>{title}</title><link rel="preload" href="/_next/static/css/9a8b.css" as="style" nonce="{nonce}"/><script src="/_next/static/chunks/main-3c2d.js" defer="" nonce="{nonce}"></script></head><body><div id="__next"><main class="dashboard"><h1>Dashboard {id}</h1><div class="grid">{cards}</div></main></div><script id="__NEXT_DATA__" type="application/json" nonce="{nonce}">{{"props":{{"pageProps":{{"id":"{id}","renderedAt":"{}","requestId":"{}"}}}},"page":"/dash/[id]","buildId":"b1"}}</script></body></html>"#,
        iso(n),
        token(n + 3, 20)
    )
}

fn html(body: String) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: body.into_bytes(),
        chunks: 0,
        delay: Duration::ZERO,
    }
}

/// The last path segment of a request.
fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or("").to_string()
}

type Page = fn(&str, &str, u64) -> String;

/// Control and secondary render `page` with `title`; the candidate with `candidate_title`.
async fn run(
    page: Page,
    route_path: &str,
    route: &str,
    title: &'static str,
    candidate_title: &'static str,
) -> shadowdiff_store::report::EndpointReport {
    let control = TestServer::start(move |s| html(page(&id_of(&s.path), title, tick()))).await;
    let secondary = TestServer::start(move |s| html(page(&id_of(&s.path), title, tick()))).await;
    let candidate =
        TestServer::start(move |s| html(page(&id_of(&s.path), candidate_title, tick()))).await;
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.secondary = Some(secondary.url());
    })
    .await;
    let c = client();
    for i in 0..8 {
        let got = send(&c, "GET", &h.url(&format!("{route_path}{i}")), b"").await;
        assert_eq!(got.status, 200);
    }
    let (report, _, _dir) = h.finish().await;
    endpoint(&report, "GET", route, "v2").clone()
}

/// The volatile values are masked per node, so the changed title stands out.
async fn title_change_is_a_regression(page: Page, route_path: &str, route: &str) {
    let e = run(page, route_path, route, "Orders", "Orders – Acme").await;
    let title = e
        .fields
        .iter()
        .find(|f| f.path == "body.html.head.title")
        .unwrap_or_else(|| panic!("no title field in {:#?}", e.fields));
    assert_eq!(
        (title.kind.as_str(), title.verdict.as_str(), title.count),
        ("value", "regression", 8),
        "{:#?}",
        e.fields
    );
    assert_eq!(e.verdict, "regression", "{}", e.verdict_reason);
    // Nothing but the title is a regression: the nonces, tokens and times are noise.
    let regressions: Vec<&str> = e
        .fields
        .iter()
        .filter(|f| f.verdict == "regression")
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(regressions, vec!["body.html.head.title"], "{:#?}", e.fields);
}

/// Differing only by what differs between any two renderings is not a regression.
async fn volatile_values_alone_are_not_a_regression(page: Page, route_path: &str, route: &str) {
    let e = run(page, route_path, route, "Orders", "Orders").await;
    assert_ne!(
        e.verdict, "regression",
        "{}\n{:#?}",
        e.verdict_reason, e.fields
    );
    assert!(
        e.fields.iter().all(|f| f.verdict != "regression"),
        "{:#?}",
        e.fields
    );
    // The volatile values were found, each at its own node, and called noise.
    assert!(
        e.fields.iter().any(|f| f.verdict == "noise"),
        "{:#?}",
        e.fields
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_page_with_a_changed_title_is_a_regression() {
    title_change_is_a_regression(rails, "/orders/", "/orders/{id}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_page_with_a_changed_title_is_a_regression() {
    title_change_is_a_regression(django, "/accounts/", "/accounts/{id}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_page_with_a_changed_title_is_a_regression() {
    title_change_is_a_regression(next, "/dash/", "/dash/{id}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_page_differing_only_by_nonce_token_and_time_is_not_a_regression() {
    volatile_values_alone_are_not_a_regression(rails, "/orders/", "/orders/{id}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_page_differing_only_by_token_and_time_is_not_a_regression() {
    volatile_values_alone_are_not_a_regression(django, "/accounts/", "/accounts/{id}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_page_differing_only_by_nonce_and_render_data_is_not_a_regression() {
    volatile_values_alone_are_not_a_regression(next, "/dash/", "/dash/{id}").await;
}
