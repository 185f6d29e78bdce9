//! `shadowdiff serve`: the report and the gate over HTTP, for the canary step of a progressive
//! rollout (Argo Rollouts' web provider, Flagger's webhooks) and for dashboards.
//!
//! - `GET /gate?experiment=…&candidate=…` → `{"outcome": "pass"|"fail"|"undecided", "reasons":
//!   […], …}` with 200 (a decision was reached, whatever it is); thresholds as query parameters
//!   override the server's flags.
//! - `GET|POST /gate/webhook?…` → the same JSON, 200 on pass and 412 otherwise (Flagger fails
//!   an analysis step on any non-2xx answer).
//! - `GET /report?experiment=…&since=…&endpoint=…` → the report JSON.
//! - Errors are JSON `{"error": …}`: 400 for a bad parameter, 404 for an unknown experiment
//!   (with the known ones), 503 when the store cannot be read; never an empty success.
//! - `/healthz`, `/readyz` (the store answers), `/metrics`.

use crate::report_cmd::{clickhouse_store, parse_time};
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use shadowdiff_clickhouse::{gate, GateConfig, GateOutcome};
use shadowdiff_store::{build_report, EmbeddedStore, Report, ReportQuery};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to serve on (the gate, the report, /healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "SHADOWDIFF_SERVE_LISTEN",
        default_value = "127.0.0.1:9400"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: crate::report_cmd::StoreArgs,
    /// Default largest mismatched/compared per endpoint (`max_mismatch_rate=` overrides).
    #[arg(long, default_value_t = 0.01)]
    pub max_mismatch_rate: f64,
    /// Default compared exchanges an endpoint needs to pass or fail (`min_compared=`).
    #[arg(long, default_value_t = 100)]
    pub min_compared: u64,
    /// Default largest failure rate per endpoint (`max_error_rate=`); unchecked when absent.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Default largest significant latency ratio (`max_latency_ratio=`); unchecked when absent.
    #[arg(long)]
    pub max_latency_ratio: Option<f64>,
    #[command(flatten)]
    pub log: crate::process::LogArgs,
}

/// Where reports are read from.
#[derive(Clone)]
enum Source {
    ClickHouse {
        store: Arc<shadowdiff_clickhouse::ClickHouseStore>,
        url: String,
    },
    Embedded(PathBuf),
}

/// Why a request got no report: each maps to one HTTP status.
enum Failure {
    BadRequest(String),
    UnknownExperiment { wanted: String, known: Vec<String> },
    Unavailable(String),
}

impl Failure {
    fn response(self) -> Response<Full<Bytes>> {
        let (status, body) = match self {
            Failure::BadRequest(error) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": error }),
            ),
            Failure::UnknownExperiment { wanted, known } => (
                StatusCode::NOT_FOUND,
                serde_json::json!({
                    "error": format!("no results for experiment `{wanted}`"),
                    "known_experiments": known,
                }),
            ),
            Failure::Unavailable(error) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": error }),
            ),
        };
        json(status, &body)
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl Source {
    async fn experiments_and_report(&self, query: &ReportQuery) -> Result<Report, Failure> {
        match self {
            Source::ClickHouse { store, url } => {
                let known = store.experiments().await.map_err(|e| {
                    Failure::Unavailable(format!("cannot read ClickHouse at {url}: {e}"))
                })?;
                check(query, known)?;
                store.report(query).await.map_err(|e| {
                    Failure::Unavailable(format!("cannot read the report from {url}: {e}"))
                })
            }
            Source::Embedded(dir) => {
                let (dir, query) = (dir.clone(), query.clone());
                tokio::task::spawn_blocking(move || {
                    if !dir.is_dir() {
                        return Err(Failure::Unavailable(format!(
                            "data directory {} does not exist",
                            dir.display()
                        )));
                    }
                    let (records, _) = EmbeddedStore::open(&dir)
                        .and_then(|s| s.read_all())
                        .map_err(|e| Failure::Unavailable(e.to_string()))?;
                    let mut known: Vec<String> =
                        records.iter().map(|r| r.experiment.clone()).collect();
                    known.sort();
                    known.dedup();
                    check(&query, known)?;
                    Ok(build_report(&records, &query))
                })
                .await
                .map_err(|e| Failure::Unavailable(e.to_string()))?
            }
        }
    }

    async fn ready(&self) -> Result<(), String> {
        match self {
            Source::ClickHouse { store, url } => store
                .server_version()
                .await
                .map(|_| ())
                .map_err(|e| format!("ClickHouse at {url}: {e}")),
            Source::Embedded(dir) if dir.is_dir() => Ok(()),
            Source::Embedded(dir) => Err(format!("data directory {} is missing", dir.display())),
        }
    }
}

fn check(query: &ReportQuery, known: Vec<String>) -> Result<(), Failure> {
    match &query.experiment {
        Some(wanted) if !known.contains(wanted) => Err(Failure::UnknownExperiment {
            wanted: wanted.clone(),
            known,
        }),
        _ => Ok(()),
    }
}

#[derive(Clone)]
struct Server {
    source: Source,
    defaults: GateConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

const PARAMETERS: &[&str] = &[
    "experiment",
    "candidate",
    "endpoint",
    "since",
    "max_mismatch_rate",
    "min_compared",
    "max_error_rate",
    "max_latency_ratio",
];

/// The query string as a map; an unknown or repeated parameter is an error, so a typo never
/// silently gates on the defaults.
fn parameters(query: Option<&str>) -> Result<HashMap<String, String>, Failure> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !PARAMETERS.contains(&k.as_ref()) {
            return Err(Failure::BadRequest(format!(
                "unknown parameter `{k}`; known: {}",
                PARAMETERS.join(", ")
            )));
        }
        if v.trim().is_empty() {
            return Err(Failure::BadRequest(format!("parameter `{k}` is empty")));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Failure::BadRequest(format!("parameter `{k}` given twice")));
        }
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    p: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, Failure> {
    p.get(key)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| Failure::BadRequest(format!("`{key}={v}` is not a number")))
        })
        .transpose()
}

impl Server {
    fn query(&self, p: &HashMap<String, String>) -> Result<ReportQuery, Failure> {
        let since_ms = p
            .get("since")
            .map(|v| parse_time("since", v).map_err(|e| Failure::BadRequest(format!("{e:#}"))))
            .transpose()?;
        Ok(ReportQuery {
            experiment: p.get("experiment").cloned(),
            since_ms,
            until_ms: None,
            endpoint: None,
            samples: 1,
        })
    }

    fn gate_config(&self, p: &HashMap<String, String>) -> Result<GateConfig, Failure> {
        let mut config = self.defaults.clone();
        if let Some(v) = number::<f64>(p, "max_mismatch_rate")? {
            if !(0.0..=1.0).contains(&v) {
                return Err(Failure::BadRequest(format!(
                    "`max_mismatch_rate={v}` must be a fraction between 0 and 1"
                )));
            }
            config.max_mismatch_rate = v;
        }
        if let Some(v) = number::<u64>(p, "min_compared")? {
            config.min_compared = v;
        }
        if let Some(v) = number::<f64>(p, "max_error_rate")? {
            if !(0.0..=1.0).contains(&v) {
                return Err(Failure::BadRequest(format!(
                    "`max_error_rate={v}` must be a fraction between 0 and 1"
                )));
            }
            config.max_error_rate = Some(v);
        }
        if let Some(v) = number::<f64>(p, "max_latency_ratio")? {
            if !(v.is_finite() && v >= 1.0) {
                return Err(Failure::BadRequest(format!(
                    "`max_latency_ratio={v}` must be 1 or more"
                )));
            }
            config.max_latency_ratio = Some(v);
        }
        config.candidate = p.get("candidate").cloned();
        config.endpoint = p.get("endpoint").cloned();
        Ok(config)
    }

    async fn gate(&self, query: Option<&str>) -> Result<(GateOutcome, serde_json::Value), Failure> {
        let p = parameters(query)?;
        let config = self.gate_config(&p)?;
        let report_query = self.query(&p)?;
        let report = self.source.experiments_and_report(&report_query).await?;
        let outcome = gate(&report, &config);
        let (name, reasons) = match &outcome {
            GateOutcome::Pass => ("pass", Vec::new()),
            GateOutcome::Fail(r) => ("fail", r.clone()),
            GateOutcome::Undecided(r) => ("undecided", r.clone()),
        };
        let body = serde_json::json!({
            "outcome": name,
            "passed": name == "pass",
            "reasons": reasons,
            "experiment": report.experiment,
            "candidate": config.candidate,
            "endpoint": config.endpoint,
            "endpoints": report.endpoints.len(),
            "thresholds": {
                "max_mismatch_rate": config.max_mismatch_rate,
                "min_compared": config.min_compared,
                "max_error_rate": config.max_error_rate,
                "max_latency_ratio": config.max_latency_ratio,
            },
        });
        Ok((outcome, body))
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (path, query) = (
            req.uri().path().to_string(),
            req.uri().query().map(str::to_string),
        );
        let method = req.method().clone();
        let read = method == http::Method::GET || method == http::Method::HEAD;
        match path.as_str() {
            "/gate" if read => match self.gate(query.as_deref()).await {
                Ok((_, body)) => json(StatusCode::OK, &body),
                Err(f) => f.response(),
            },
            // Flagger's webhooks POST a JSON payload we do not need: the answer is the status.
            "/gate/webhook" if read || method == http::Method::POST => {
                match self.gate(query.as_deref()).await {
                    Ok((GateOutcome::Pass, body)) => json(StatusCode::OK, &body),
                    Ok((_, body)) => json(StatusCode::PRECONDITION_FAILED, &body),
                    Err(f) => f.response(),
                }
            }
            "/report" if read => {
                let result = async {
                    let p = parameters(query.as_deref())?;
                    let mut q = self.query(&p)?;
                    q.endpoint = p.get("endpoint").cloned();
                    q.samples = 3;
                    self.source.experiments_and_report(&q).await
                }
                .await;
                match result {
                    Ok(report) => match serde_json::to_value(&report) {
                        Ok(v) => json(StatusCode::OK, &v),
                        Err(e) => Failure::Unavailable(e.to_string()).response(),
                    },
                    Err(f) => f.response(),
                }
            }
            "/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            "/readyz" => match self.source.ready().await {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
                Err(e) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"error": e}),
                ),
            },
            "/metrics" => {
                let mut r = Response::new(Full::new(Bytes::from(
                    self.metrics
                        .as_ref()
                        .map(|h| h.render())
                        .unwrap_or_default(),
                )));
                *r.status_mut() = StatusCode::OK;
                r
            }
            "/gate" | "/gate/webhook" | "/report" => json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": format!("{method} is not allowed here")}),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "try /gate, /gate/webhook, /report, /healthz, /readyz or /metrics"}),
            ),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Server {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let response = this.handle(req).await;
            metrics::counter!("shadowdiff_serve_requests_total", "status" => response.status().as_u16().to_string()).increment(1);
            Ok(response)
        })
    }
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    shadowdiff_pipeline::init_logging(args.log.log_format.into());
    if !(0.0..=1.0).contains(&args.max_mismatch_rate) {
        anyhow::bail!(
            "--max-mismatch-rate {} must be a fraction between 0 and 1 (0.01 = 1%)",
            args.max_mismatch_rate
        );
    }
    let source = match &args.store.clickhouse {
        Some(url) => Source::ClickHouse {
            store: Arc::new(clickhouse_store(url, &args.store.database)?),
            url: url.clone(),
        },
        None => Source::Embedded(args.store.data.clone()),
    };
    let server = Server {
        source,
        defaults: GateConfig {
            max_mismatch_rate: args.max_mismatch_rate,
            min_compared: args.min_compared,
            endpoint: None,
            candidate: None,
            max_error_rate: args.max_error_rate,
            max_latency_ratio: args.max_latency_ratio,
        },
        metrics: shadowdiff_pipeline::admin::metrics_handle(),
    };
    crate::process::runtime()?.block_on(async move {
        let (listener, addr) = shadowdiff_net::server::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(%addr, "Serving the gate and the report.");
        shadowdiff_net::server::serve(
            listener,
            server,
            crate::process::first_signal(),
            Duration::from_secs(5),
        )
        .await;
        tracing::info!("Stopped.");
        Ok(ExitCode::SUCCESS)
    })
}
