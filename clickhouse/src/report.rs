//! The report contract computed by SQL.
//!
//! Each query reads the de-duplicated records (`ORDER BY` the redelivery order, then `LIMIT 1 BY
//! exchange_id, target, role`: the same copy [`build_report`] keeps); per-field verdicts come from [`judge`] on the SQL counts, so both
//! stores report the same numbers.
//!
//! [`build_report`]: shadowdiff_store::build_report

use crate::row::{parse_kind, DiffRow};
use crate::store::ClickHouseStore;
use crate::Error;
use clickhouse::query::Query;
use clickhouse::Row;
use serde::Deserialize;
use shadowdiff_store::report::{endpoint_verdict, field_report, severity};
use shadowdiff_store::report::{
    render_diff, Count, EndpointReport, FieldReport, Latency, Report, ReportQuery, Sample,
    Signature, StatusPair, Totals, Window,
};
use shadowdiff_store::stats::FieldEvidence;
use shadowdiff_store::verdicts::{self, LatencyHistogram};
use std::collections::{BTreeMap, HashMap};

/// Which copy of a record delivered more than once counts: `shadowdiff_store::redelivery_order`
/// in SQL (most severe outcome, then the lowest fingerprint, target status, target latency), so
/// ClickHouse and the embedded store pick the same copy by construction.
const REDELIVERY_ORDER: &str = "multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, \
    outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), \
    ifNull(target_latency_us, 0)";

const COMPARED: &str = "outcome IN ('match', 'mismatch')";
/// Records of candidates: not the A/A ones (secondary, repeat).
const CANDIDATES: &str = "role NOT IN ('secondary', 'repeat')";

type EndpointKey = (String, String, String);

#[derive(Row, Deserialize)]
struct OverviewRow {
    rows: u64,
    exchanges: u64,
    first_ms: u64,
    last_ms: u64,
    experiments: Vec<String>,
}

#[derive(Row, Deserialize)]
struct EndpointRow {
    method: String,
    route: String,
    target: String,
    compared: u64,
    mismatched: u64,
    errors: u64,
    blocked: u64,
    skipped: u64,
    saturated: u64,
    host_busy: u64,
    control_p50: u64,
    control_p99: u64,
    candidate_p50: u64,
    candidate_p99: u64,
}

/// Latencies of one side of an endpoint, counted per log-scale bucket
/// (`shadowdiff_store::verdicts::LatencyHistogram`).
#[derive(Row, Deserialize)]
struct LatencyBucketRow {
    method: String,
    route: String,
    target: String,
    bucket: u32,
    n: u64,
}

#[derive(Row, Deserialize)]
struct StatusRow {
    method: String,
    route: String,
    target: String,
    control: u16,
    candidate: u16,
    n: u64,
}

#[derive(Row, Deserialize)]
struct FieldRow {
    method: String,
    route: String,
    target: String,
    path: String,
    kind: String,
    raw: u64,
    unmasked: u64,
}

#[derive(Row, Deserialize)]
struct NamedCountRow {
    method: String,
    route: String,
    target: String,
    name: String,
    n: u64,
}

#[derive(Row, Deserialize)]
struct ReasonRow {
    method: String,
    route: String,
    target: String,
    path: String,
    kind: String,
    reason: String,
    n: u64,
}

#[derive(Row, Deserialize)]
struct SecondaryRow {
    method: String,
    route: String,
    n: u64,
}

#[derive(Row, Deserialize)]
struct SecondaryFieldRow {
    method: String,
    route: String,
    path: String,
    kind: String,
    n: u64,
}

#[derive(Row, Deserialize)]
struct DetailRow {
    method: String,
    route: String,
    target: String,
    outcome: String,
    detail: Option<String>,
    n: u64,
}

#[derive(Row, Deserialize)]
struct SignatureRow {
    method: String,
    route: String,
    target: String,
    fingerprint: u64,
    n: u64,
    sample_id: String,
}

/// Nearest-rank percentile of a sorted array, as `build_report` computes it.
fn percentile_sql(array: &str, q: f64) -> String {
    format!("if(empty({array}), 0, {array}[toUInt64(greatest(1, ceil({q} * length({array}))))])")
}

#[derive(Default)]
struct Acc {
    control_latency: LatencyHistogram,
    candidate_latency: LatencyHistogram,
    fields: Vec<FieldRow>,
    reasons: BTreeMap<(String, String), BTreeMap<String, u64>>,
    status: Vec<StatusPair>,
    error_kinds: BTreeMap<String, u64>,
    blocked_reasons: BTreeMap<String, u64>,
    side_effects: BTreeMap<String, u64>,
    signatures: Vec<SignatureRow>,
}

/// Control-vs-secondary (or control-vs-itself on repeats) A/A counts of one endpoint.
#[derive(Default)]
struct SecondaryAcc {
    compared: u64,
    latency: LatencyHistogram,
    /// (aggregate path, kind) → exchanges where control and secondary differed there.
    fields: HashMap<(String, String), u64>,
}

impl ClickHouseStore {
    /// De-duplicated, filtered records as a subquery, with `?` placeholders for the filter.
    fn source(&self, query: &ReportQuery) -> (String, Vec<Param>) {
        let mut conditions = vec!["1".to_string()];
        let mut params = Vec::new();
        if let Some(e) = &query.experiment {
            conditions.push("experiment = ?".into());
            params.push(Param::Text(e.clone()));
        }
        if let Some(s) = query.since_ms {
            conditions.push("captured_at_ms >= ?".into());
            params.push(Param::Number(s));
        }
        if let Some(u) = query.until_ms {
            conditions.push("captured_at_ms < ?".into());
            params.push(Param::Number(u));
        }
        if let Some(e) = &query.endpoint {
            conditions.push("position(concat(method, ' ', route), ?) > 0".into());
            params.push(Param::Text(e.clone()));
        }
        (
            format!(
                "(SELECT * FROM {}.diff_records WHERE {} ORDER BY {REDELIVERY_ORDER} \
                 LIMIT 1 BY exchange_id, target, role)",
                self.database,
                conditions.join(" AND ")
            ),
            params,
        )
    }

    fn filtered(&self, query: &ReportQuery, sql: &str) -> Query {
        let (source, params) = self.source(query);
        let mut q = self.client.query(
            &sql.replace("{source}", &source)
                .replace("{CANDIDATES}", CANDIDATES),
        );
        for p in params {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Number(n) => q.bind(n),
            };
        }
        q
    }

    async fn fetch<T>(
        &self,
        runner: Runner<'_>,
        query: &ReportQuery,
        what: &'static str,
        sql: &str,
    ) -> Result<Vec<T>, Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.fetch_bound(runner, query, what, sql, None).await
    }

    /// [`fetch`](Self::fetch) with one more bound value (an array of strings) after the
    /// filter's, and `?fields` standing for `T`'s columns.
    async fn fetch_bound<T>(
        &self,
        runner: Runner<'_>,
        query: &ReportQuery,
        what: &'static str,
        sql: &str,
        extra: Option<Vec<String>>,
    ) -> Result<Vec<T>, Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        match runner {
            Runner::Http => {
                let mut q = self.filtered(query, sql);
                if let Some(values) = extra {
                    q = q.bind(values);
                }
                q.fetch_all::<T>().await.map_err(Error::query(what))
            }
            Runner::JsonRows(run) => {
                let sql = self.rendered::<T>(query, sql, extra);
                let out = run(&sql).map_err(|message| Error::Runner { what, message })?;
                out.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        serde_json::from_str::<T>(l).map_err(|e| Error::Runner {
                            what,
                            message: format!("row {l}: {e}"),
                        })
                    })
                    .collect()
            }
        }
    }

    /// The SQL of `sql` for `query` with every value written in (what `filtered` binds), for a
    /// runner without parameters.
    fn rendered<T: clickhouse::Row>(
        &self,
        query: &ReportQuery,
        sql: &str,
        extra: Option<Vec<String>>,
    ) -> String {
        let (source, mut params) = self.source(query);
        let text = sql
            .replace("{source}", &source)
            .replace("{CANDIDATES}", CANDIDATES)
            .replace("?fields", &json_columns(T::COLUMN_NAMES));
        let literal = |p: &Param| match p {
            Param::Text(t) => format!("'{}'", t.replace('\\', "\\\\").replace('\'', "\\'")),
            Param::Number(n) => n.to_string(),
        };
        let mut values: Vec<String> = params.drain(..).map(|p| literal(&p)).collect();
        if let Some(extra) = extra {
            let items: Vec<String> = extra
                .into_iter()
                .map(|t| literal(&Param::Text(t)))
                .collect();
            values.push(format!("[{}]", items.join(", ")));
        }
        let mut out = String::with_capacity(text.len());
        let mut values = values.into_iter();
        for (i, part) in text.split('?').enumerate() {
            if i > 0 {
                out.push_str(&values.next().unwrap_or_default());
            }
            out.push_str(part);
        }
        out
    }

    /// The report for `query`, computed in ClickHouse.
    pub async fn report(&self, query: &ReportQuery) -> Result<Report, Error> {
        self.report_with(Runner::Http, query).await
    }

    /// The report for `query` with its SQL run by `run`, which takes one statement (values
    /// written in, no parameters) and answers its rows as `JSONEachRow` with 64-bit integers
    /// unquoted (`output_format_json_quote_64bit_integers = 0`). The same queries and the same assembly as
    /// [`report`](Self::report): how the tests run the report SQL on an embedded current
    /// ClickHouse (chdb), which has no HTTP interface.
    pub async fn report_with_sql_runner(
        &self,
        query: &ReportQuery,
        run: &(dyn Fn(&str) -> Result<String, String> + Sync),
    ) -> Result<Report, Error> {
        self.report_with(Runner::JsonRows(run), query).await
    }

    async fn report_with(&self, runner: Runner<'_>, query: &ReportQuery) -> Result<Report, Error> {
        let overview: Vec<OverviewRow> = self
            .fetch(
                runner,
                query,
                "report overview",
                "SELECT count() AS rows, uniqExact(exchange_id) AS exchanges, \
                 min(captured_at_ms) AS first_ms, max(captured_at_ms) AS last_ms, \
                 groupUniqArray(experiment) AS experiments FROM {source}",
            )
            .await?;
        let endpoints: Vec<EndpointRow> = self
            .fetch(
                runner,
                query,
                "report endpoints",
                &format!(
                    "SELECT method, route, target, compared, mismatched, errors, blocked, skipped, \
                     saturated, host_busy, {} AS control_p50, {} AS control_p99, {} AS candidate_p50, {} AS candidate_p99 \
                     FROM (SELECT method, route, target, \
                       countIf({COMPARED}) AS compared, countIf(outcome = 'mismatch') AS mismatched, \
                       countIf(outcome = 'error') AS errors, countIf(outcome = 'blocked') AS blocked, \
                       countIf(outcome = 'skipped') AS skipped, \
                       countIf(has(notes, '{saturated_note}')) AS saturated, \
                       countIf(has(notes, '{host_busy_note}')) AS host_busy, \
                       arraySort(groupArrayIf(assumeNotNull(control_latency_us), {COMPARED} AND isNotNull(control_latency_us))) AS cl, \
                       arraySort(groupArrayIf(assumeNotNull(target_latency_us), {COMPARED} AND isNotNull(target_latency_us))) AS tl \
                     FROM {{source}} WHERE {CANDIDATES} GROUP BY method, route, target)",
                    percentile_sql("cl", 0.5),
                    percentile_sql("cl", 0.99),
                    percentile_sql("tl", 0.5),
                    percentile_sql("tl", 0.99),
                    saturated_note = shadowdiff_model::SATURATED_NOTE,
                    host_busy_note = shadowdiff_model::HOST_BUSY_NOTE,
                ),
            )
            .await?;
        let status: Vec<StatusRow> = self
            .fetch(
                runner,
                query,
                "report status pairs",
                &format!(
                    "SELECT method, route, target, assumeNotNull(control_status) AS control, \
                     assumeNotNull(target_status) AS candidate, count() AS n FROM {{source}} \
                     WHERE {CANDIDATES} AND {COMPARED} AND isNotNull(control_status) \
                     AND isNotNull(target_status) GROUP BY method, route, target, control, candidate"
                ),
            )
            .await?;
        let fields: Vec<FieldRow> = self
            .fetch(
                runner,
                query,
                "report fields",
                &format!(
                    "SELECT method, route, target, fp AS path, fk AS kind, count() AS raw, \
                     countIf(fnz = 0) AS unmasked FROM {{source}} \
                     ARRAY JOIN field_path AS fp, field_kind AS fk, field_noise AS fnz \
                     WHERE {CANDIDATES} AND {COMPARED} GROUP BY method, route, target, path, kind"
                ),
            )
            .await?;
        let reasons: Vec<ReasonRow> = self
            .fetch(
                runner,
                query,
                "report noise reasons",
                &format!(
                    "SELECT method, route, target, fp AS path, fk AS kind, fr AS reason, count() AS n \
                     FROM {{source}} ARRAY JOIN field_path AS fp, field_kind AS fk, \
                     field_noise AS fnz, field_reason AS fr \
                     WHERE {CANDIDATES} AND {COMPARED} AND fnz = 1 \
                     GROUP BY method, route, target, path, kind, reason"
                ),
            )
            .await?;
        let secondary: Vec<SecondaryRow> = self
            .fetch(
                runner,
                query,
                "report secondary",
                &format!(
                    "SELECT method, route, count() AS n FROM {{source}} \
                     WHERE role = 'secondary' AND {COMPARED} GROUP BY method, route"
                ),
            )
            .await?;
        let secondary_fields: Vec<SecondaryFieldRow> = self
            .fetch(
                runner,
                query,
                "report secondary fields",
                &format!(
                    "SELECT method, route, fp AS path, fk AS kind, count() AS n FROM {{source}} \
                     ARRAY JOIN field_path AS fp, field_kind AS fk \
                     WHERE role = 'secondary' AND {COMPARED} GROUP BY method, route, path, kind"
                ),
            )
            .await?;
        // The control against its own earlier answers to identical requests (A/A from repeats).
        let repeat: Vec<SecondaryRow> = self
            .fetch(
                runner,
                query,
                "report repeats",
                &format!(
                    "SELECT method, route, count() AS n FROM {{source}} \
                     WHERE role = 'repeat' AND {COMPARED} GROUP BY method, route"
                ),
            )
            .await?;
        let repeat_fields: Vec<SecondaryFieldRow> = self
            .fetch(
                runner,
                query,
                "report repeat fields",
                &format!(
                    "SELECT method, route, fp AS path, fk AS kind, count() AS n FROM {{source}} \
                     ARRAY JOIN field_path AS fp, field_kind AS fk \
                     WHERE role = 'repeat' AND {COMPARED} GROUP BY method, route, path, kind"
                ),
            )
            .await?;
        // The same buckets the embedded report makes, summed here instead of sent row by row.
        let latency_buckets = |column: &str, role: &str, target: &str| {
            format!(
                "SELECT method, route, {target} AS target, {} AS bucket, count() AS n \
                 FROM {{source}} WHERE {role} AND {COMPARED} AND isNotNull({column}) \
                 GROUP BY method, route, target, bucket",
                LatencyHistogram::bucket_sql(&format!("assumeNotNull({column})"))
            )
        };
        let control_latency: Vec<LatencyBucketRow> = self
            .fetch(
                runner,
                query,
                "report control latency",
                &latency_buckets("control_latency_us", "{CANDIDATES}", "target"),
            )
            .await?;
        let candidate_latency: Vec<LatencyBucketRow> = self
            .fetch(
                runner,
                query,
                "report candidate latency",
                &latency_buckets("target_latency_us", "{CANDIDATES}", "target"),
            )
            .await?;
        let secondary_latency: Vec<LatencyBucketRow> = self
            .fetch(
                runner,
                query,
                "report secondary latency",
                &latency_buckets("target_latency_us", "role = 'secondary'", "''"),
            )
            .await?;
        let details: Vec<DetailRow> = self
            .fetch(
                runner,
                query,
                "report errors",
                "SELECT method, route, target, outcome, detail, count() AS n FROM {source} \
                 WHERE {CANDIDATES} AND outcome IN ('error', 'blocked') \
                 GROUP BY method, route, target, outcome, detail",
            )
            .await?;
        let side_effects: Vec<NamedCountRow> = self
            .fetch(
                runner,
                query,
                "report side effects",
                "SELECT method, route, target, se AS name, count() AS n FROM {source} \
                 ARRAY JOIN side_effects AS se WHERE {CANDIDATES} \
                 GROUP BY method, route, target, name",
            )
            .await?;
        let signatures: Vec<SignatureRow> = self
            .fetch(
                runner,
                query,
                "report signatures",
                "SELECT method, route, target, fingerprint, count() AS n, min(exchange_id) AS sample_id \
                 FROM {source} WHERE {CANDIDATES} AND outcome = 'mismatch' \
                 GROUP BY method, route, target, fingerprint \
                 ORDER BY n DESC, fingerprint ASC LIMIT 5 BY method, route, target",
            )
            .await?;
        let sample_ids: Vec<String> = signatures.iter().map(|s| s.sample_id.clone()).collect();
        let sample_rows: Vec<DiffRow> = if sample_ids.is_empty() {
            Vec::new()
        } else {
            self.fetch_bound::<DiffRow>(
                runner,
                query,
                "report samples",
                "SELECT ?fields FROM {source} WHERE {CANDIDATES} AND has(?, exchange_id)",
                Some(sample_ids),
            )
            .await?
        };

        let mut accs: HashMap<EndpointKey, Acc> = HashMap::new();
        for f in fields {
            let key = (f.method.clone(), f.route.clone(), f.target.clone());
            accs.entry(key).or_default().fields.push(f);
        }
        for r in reasons {
            *accs
                .entry((r.method, r.route, r.target))
                .or_default()
                .reasons
                .entry((r.path, r.kind))
                .or_default()
                .entry(r.reason)
                .or_default() += r.n;
        }
        for s in status {
            accs.entry((s.method, s.route, s.target))
                .or_default()
                .status
                .push(StatusPair {
                    control: s.control,
                    candidate: s.candidate,
                    count: s.n,
                });
        }
        for d in details {
            let acc = accs.entry((d.method, d.route, d.target)).or_default();
            if d.outcome == "error" {
                let kind = d
                    .detail
                    .as_deref()
                    .and_then(|d| d.split(':').next())
                    .unwrap_or("error")
                    .to_string();
                *acc.error_kinds.entry(kind).or_default() += d.n;
            } else {
                let reason = d.detail.unwrap_or_else(|| "blocked".to_string());
                *acc.blocked_reasons.entry(reason).or_default() += d.n;
            }
        }
        for s in side_effects {
            *accs
                .entry((s.method, s.route, s.target))
                .or_default()
                .side_effects
                .entry(s.name)
                .or_default() += s.n;
        }
        for s in signatures {
            accs.entry((s.method.clone(), s.route.clone(), s.target.clone()))
                .or_default()
                .signatures
                .push(s);
        }
        for l in control_latency {
            accs.entry((l.method, l.route, l.target))
                .or_default()
                .control_latency
                .add_bucket(l.bucket, l.n);
        }
        for l in candidate_latency {
            accs.entry((l.method, l.route, l.target))
                .or_default()
                .candidate_latency
                .add_bucket(l.bucket, l.n);
        }
        let mut secondaries: HashMap<(String, String), SecondaryAcc> = HashMap::new();
        for l in secondary_latency {
            secondaries
                .entry((l.method, l.route))
                .or_default()
                .latency
                .add_bucket(l.bucket, l.n);
        }
        for s in secondary {
            secondaries.entry((s.method, s.route)).or_default().compared = s.n;
        }
        for f in secondary_fields {
            secondaries
                .entry((f.method, f.route))
                .or_default()
                .fields
                .insert((f.path, f.kind), f.n);
        }
        let mut repeats: HashMap<(String, String), SecondaryAcc> = HashMap::new();
        for r in repeat {
            repeats.entry((r.method, r.route)).or_default().compared = r.n;
        }
        for f in repeat_fields {
            repeats
                .entry((f.method, f.route))
                .or_default()
                .fields
                .insert((f.path, f.kind), f.n);
        }

        let max_samples = if query.samples == 0 { 3 } else { query.samples };
        let mut totals = Totals::default();
        let mut out = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            totals.compared += e.compared;
            totals.mismatched += e.mismatched;
            totals.errors += e.errors;
            totals.blocked += e.blocked;
            totals.skipped += e.skipped;
            let key = (e.method.clone(), e.route.clone(), e.target.clone());
            let acc = accs.remove(&key).unwrap_or_default();
            let secondary = secondaries.get(&(e.method.clone(), e.route.clone()));
            let repeat = repeats.get(&(e.method.clone(), e.route.clone()));
            out.push(finish_endpoint(
                e,
                acc,
                secondary,
                repeat,
                &sample_rows,
                max_samples,
            ));
        }
        out.sort_by(|a, b| {
            severity(&a.verdict)
                .cmp(&severity(&b.verdict))
                .then(b.mismatched.cmp(&a.mismatched))
                .then(a.route.cmp(&b.route))
                .then(a.method.cmp(&b.method))
                .then(a.candidate.cmp(&b.candidate))
        });

        let overview = overview.into_iter().next();
        let (rows, exchanges, first, last, mut experiments) = overview
            .map_or((0, 0, 0, 0, Vec::new()), |o| {
                (o.rows, o.exchanges, o.first_ms, o.last_ms, o.experiments)
            });
        totals.exchanges = exchanges;
        experiments.sort();
        let fmt = |ms: u64| {
            chrono::DateTime::from_timestamp_millis(ms as i64)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        let empty = rows == 0 || last == 0;
        Ok(Report {
            experiment: query
                .experiment
                .clone()
                .unwrap_or_else(|| experiments.join(",")),
            window: Window {
                from: if empty { None } else { fmt(first) },
                to: if empty { None } else { fmt(last) },
            },
            totals,
            endpoints: out,
        })
    }
}

enum Param {
    Text(String),
    Number(u64),
}

/// `columns` for a JSON runner: the `DateTime` column as the Unix seconds the row reads
/// (`DiffRow::captured_at`); JSON writes it as a quoted date otherwise.
fn json_columns(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| match *c {
            "captured_at" => "toUInt32(captured_at) AS captured_at",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the report's queries run.
#[derive(Clone, Copy)]
enum Runner<'r> {
    /// The server, over HTTP with bound parameters (RowBinary).
    Http,
    /// A function that runs SQL and answers JSONEachRow.
    JsonRows(&'r (dyn Fn(&str) -> Result<String, String> + Sync)),
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn finish_endpoint(
    e: EndpointRow,
    acc: Acc,
    secondary: Option<&SecondaryAcc>,
    repeat: Option<&SecondaryAcc>,
    sample_rows: &[DiffRow],
    max_samples: usize,
) -> EndpointReport {
    // The embedded report walks fields in (path, kind) order before its stable sort; so do we.
    let mut field_rows: Vec<&FieldRow> = acc.fields.iter().collect();
    field_rows.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then(parse_kind(&a.kind).cmp(&parse_kind(&b.kind)))
    });
    let family = shadowdiff_store::report::tested_fields(field_rows.iter().map(|f| f.unmasked));
    let mut fields: Vec<FieldReport> = field_rows
        .into_iter()
        .map(|f| {
            let field_key = (f.path.clone(), f.kind.clone());
            let aa = secondary.map_or(0, |s| s.fields.get(&field_key).copied().unwrap_or(0));
            // Same tie rule as the embedded report: the last of the most frequent in name order.
            let top_reason = acc
                .reasons
                .get(&field_key)
                .and_then(|m| m.iter().max_by_key(|(_, n)| **n).map(|(r, _)| r.as_str()));
            field_report(
                &f.path,
                parse_kind(&f.kind),
                FieldEvidence {
                    raw: f.raw,
                    unmasked: f.unmasked,
                    compared: e.compared,
                    noise: aa,
                    noise_compared: secondary.map_or(0, |s| s.compared),
                    repeat: repeat.map_or(0, |s| s.fields.get(&field_key).copied().unwrap_or(0)),
                    repeat_compared: repeat.map_or(0, |s| s.compared),
                },
                top_reason,
                family,
            )
        })
        .collect();
    let (verdict, verdict_reason) = endpoint_verdict(&mut fields, e.compared, e.errors);
    let latency_verdict = verdicts::latency_verdict(
        &acc.control_latency,
        &acc.candidate_latency,
        secondary.map(|s| &s.latency),
        verdicts::DEFAULT_LATENCY_RATIO,
    );
    let mut status = acc.status.clone();
    status.sort_by_key(|s| (s.control, s.candidate));
    let error_rate = verdicts::error_rate_from(&status, e.compared, e.errors);
    let (verdict, verdict_reason) =
        verdicts::with_endpoint_verdicts(verdict, verdict_reason, &latency_verdict, &error_rate);

    let mut signatures = Vec::new();
    let mut samples = Vec::new();
    for s in &acc.signatures {
        let row = sample_rows
            .iter()
            .find(|r| r.exchange_id == s.sample_id && r.target == e.target);
        let (sample, fields) = match row {
            Some(row) => {
                let record = row.to_record();
                let mut fields: Vec<String> = record
                    .differences
                    .iter()
                    .map(|d| format!("{} {}", d.aggregate_path(), d.kind.as_str()))
                    .collect();
                fields.sort();
                fields.dedup();
                (
                    Sample {
                        exchange_id: s.sample_id.clone(),
                        diff: render_diff(&record),
                        differences: record.differences.clone(),
                    },
                    fields,
                )
            }
            None => (
                Sample {
                    exchange_id: s.sample_id.clone(),
                    diff: String::new(),
                    differences: Vec::new(),
                },
                Vec::new(),
            ),
        };
        if samples.len() < max_samples {
            samples.push(sample.clone());
        }
        signatures.push(Signature {
            fingerprint: format!("{:016x}", s.fingerprint),
            count: s.n,
            fields,
            sample,
        });
    }

    let counts = |m: BTreeMap<String, u64>| {
        let mut v: Vec<Count> = m
            .into_iter()
            .map(|(name, count)| Count { name, count })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        v
    };

    EndpointReport {
        method: e.method,
        route: e.route,
        candidate: e.target,
        compared: e.compared,
        mismatched: e.mismatched,
        errors: e.errors,
        blocked: e.blocked,
        skipped: e.skipped,
        saturated: e.saturated,
        host_busy: e.host_busy,
        verdict,
        verdict_reason,
        fields,
        status,
        latency_verdict,
        error_rate,
        latency_ms: Latency {
            control_p50: ms(e.control_p50),
            control_p99: ms(e.control_p99),
            candidate_p50: ms(e.candidate_p50),
            candidate_p99: ms(e.candidate_p99),
        },
        samples,
        signatures,
        error_kinds: counts(acc.error_kinds),
        blocked_reasons: counts(acc.blocked_reasons),
        side_effects: counts(acc.side_effects),
    }
}
