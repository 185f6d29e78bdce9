//! `shadowdiff demo`: a control, a candidate with deliberate regressions, a secondary (a second
//! control, for A/A noise), and a bounded traffic generator, all on loopback.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Which build a demo service plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Production's behaviour (also the secondary).
    Control,
    /// The build with the deliberate regressions.
    Candidate,
}

#[derive(Clone, Copy)]
struct DemoService(Build);

impl hyper::service::Service<Request<Incoming>> for DemoService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let build = self.0;
        Box::pin(async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            // Read the request body so writes behave like a real service.
            let _ = req.into_body().collect().await;
            Ok(answer(build, method.as_str(), &path, &query))
        })
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "x-request-id",
        http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or(http::HeaderValue::from_static("x")),
    );
    r
}

fn answer(build: Build, method: &str, path: &str, query: &str) -> Response<Full<Bytes>> {
    let mut rng = rand::thread_rng();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let now = chrono::Utc::now();
    match (method, segments.as_slice()) {
        ("GET", ["users", id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return json_response(StatusCode::NOT_FOUND, json!({"error": "no such user"}));
            };
            let mut tags = vec!["beta", "admin", "billing", "support"];
            tags.shuffle(&mut rng);
            let mut user = json!({
                "id": id,
                "name": format!("User {id}"),
                "plan": {"tier": if id % 3 == 0 { "pro" } else { "free" }, "seats": id % 10 + 1},
                "tags": tags,
                "updated_at": now.to_rfc3339(),
                "request_id": format!("req_{:016x}{}", rng.gen::<u64>(), rng.gen_range(10..99)),
            });
            let email = format!("user{id}@example.com");
            // Regression: v2 renamed `email` to `email_address`.
            user[if build == Build::Candidate {
                "email_address"
            } else {
                "email"
            }] = json!(email);
            json_response(StatusCode::OK, user)
        }
        ("GET", ["products", id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return json_response(StatusCode::NOT_FOUND, json!({"error": "no such product"}));
            };
            // Regression: v2 fails on some products.
            if build == Build::Candidate && id % 13 == 0 {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "inventory lookup failed"}),
                );
            }
            let price = 10.0 + (id % 50) as f64 + 0.99;
            let stock = id % 7 + 1;
            let mut product = json!({
                "id": id,
                "title": format!("Product {id}"),
                "price": price,
                "currency": "EUR",
                "stock": stock,
                "fetched_at": now.timestamp_millis(),
            });
            if build == Build::Candidate {
                // Regression: v2 serialises prices as strings for every fourth product…
                if id % 4 == 0 {
                    product["price"] = json!(format!("{price:.2}"));
                }
                // …and miscounts stock on some ids.
                if id % 5 == 0 {
                    product["stock"] = json!(stock + 1);
                }
            }
            json_response(StatusCode::OK, product)
        }
        ("GET", ["search"]) => {
            let q = query.strip_prefix("q=").unwrap_or(query);
            let hits: Vec<_> = (1..=3)
                .map(|i| json!({"id": i, "title": format!("{q} result {i}")}))
                .collect();
            json_response(
                StatusCode::OK,
                // `took_ms` varies between any two runs; only an A/A comparison can tell.
                json!({"query": q, "hits": hits, "took_ms": rng.gen_range(1..40)}),
            )
        }
        ("GET", ["health"]) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok\n")));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            r
        }
        ("POST", ["orders"]) => json_response(
            StatusCode::CREATED,
            json!({"order_id": uuid::Uuid::new_v4().to_string(), "status": "created"}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    }
}

/// A demo service listening on `127.0.0.1:0`.
pub struct DemoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DemoServer {
    /// Binds a loopback port and serves `build` on it.
    pub async fn start(build: Build) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(shadowdiff_net::server::serve(
            listener,
            DemoService(build),
            async move {
                let _ = rx.changed().await;
            },
            Duration::from_secs(1),
        ));
        Ok(Self { addr, stop, task })
    }

    /// `http://` and the address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the traffic generator saw.
#[derive(Debug, Default, Clone)]
pub struct TrafficSummary {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered with a complete response (any status).
    pub ok: u64,
    /// Requests that got no response or a broken body.
    pub failed: u64,
    /// Time from the first request to the last answer.
    pub elapsed: Duration,
}

/// Sends `count` requests (a mix of reads and a few writes) through `target` with `concurrency`
/// workers, stopping early at `deadline`.
pub async fn generate_traffic(
    target: SocketAddr,
    count: u64,
    concurrency: usize,
    deadline: Duration,
) -> TrafficSummary {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next) = (client.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut s = TrafficSummary::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count || started.elapsed() > deadline {
                    return s;
                }
                let (method, path) = demo_request(i);
                let req = Request::builder()
                    .method(method)
                    .uri(format!("http://{target}{path}"))
                    .header("authorization", "Bearer demo-token")
                    .body(Full::new(if method == "POST" {
                        Bytes::from_static(b"{\"sku\": 7, \"qty\": 1}")
                    } else {
                        Bytes::new()
                    }));
                let Ok(req) = req else { continue };
                s.sent += 1;
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.into_body().collect().await.is_ok();
                        if ok {
                            s.ok += 1
                        } else {
                            s.failed += 1
                        }
                    }
                    Err(_) => s.failed += 1,
                }
            }
        }));
    }
    let mut total = TrafficSummary::default();
    for w in workers {
        if let Ok(s) = w.await {
            total.sent += s.sent;
            total.ok += s.ok;
            total.failed += s.failed;
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// The i-th request of the demo mix.
fn demo_request(i: u64) -> (&'static str, String) {
    let id = i * 7919 % 500 + 1;
    match i % 10 {
        0..=3 => ("GET", format!("/users/{id}")),
        4..=6 => ("GET", format!("/products/{id}")),
        7 => ("GET", format!("/search?q=item{}", id % 20)),
        8 => ("GET", "/health".to_string()),
        _ => ("POST", "/orders".to_string()),
    }
}
