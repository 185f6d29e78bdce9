//! The files under deploy/clickhouse/: the schema files are what `shadowdiff migrate
//! --print-sql` generates, and every dashboard query runs against the real ClickHouse
//! (`SHADOWDIFF_TEST_CLICKHOUSE`) on known rows, its numbers checked against the report of the
//! same data (the report is the reference).
#![allow(clippy::unwrap_used)]

use shadowdiff_clickhouse::{schema_sql, ClickHouseConfig, ClickHouseStore, Flavor, SchemaOptions};
use shadowdiff_model::{DiffRecord, Outcome, TargetRole};
use shadowdiff_store::report::{Report, ReportQuery};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

mod common;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/clickhouse")
}

#[test]
fn schema_files_are_what_migrate_print_sql_generates() {
    for (file, flavor) in [
        ("schema-18.16.sql", Flavor::Legacy),
        ("schema-current.sql", Flavor::Modern),
    ] {
        let on_disk = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        assert_eq!(
            on_disk,
            schema_sql("shadowdiff", &SchemaOptions::new(flavor)),
            "deploy/clickhouse/{file} is stale: regenerate it with \
             `shadowdiff migrate --print-sql --flavor {} > deploy/clickhouse/{file}`",
            flavor.flag_name()
        );
    }
}

/// Runs `sql`, its parameters already filled in as literals (ClickHouse 18.16 has no query
/// parameters), against the test database over HTTP.
fn run_query(url: &str, database: &str, sql: &str) -> Vec<serde_json::Value> {
    let sql = sql
        .replace(
            "shadowdiff.diff_records",
            &format!("{database}.diff_records"),
        )
        .replace(
            "shadowdiff.diff_minutes",
            &format!("{database}.diff_minutes"),
        );
    assert!(
        !sql.contains(":String}") && !sql.contains(":DateTime}") && !sql.contains(":UInt32}"),
        "a parameter is left: {sql}"
    );
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--data-binary"])
        .arg(format!("{sql}\nFORMAT JSONEachRow"))
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("DB::Exception"),
        "{text}\n{sql}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn query_file(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join("queries").join(format!("{name}.sql"))).unwrap()
}

fn number(v: &serde_json::Value) -> f64 {
    // ClickHouse writes 64-bit integers as strings in JSON.
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn key(row: &serde_json::Value) -> (String, String) {
    (
        row["endpoint"].as_str().unwrap().to_string(),
        row["candidate"].as_str().unwrap().to_string(),
    )
}

fn endpoints(
    report: &Report,
) -> BTreeMap<(String, String), &shadowdiff_store::report::EndpointReport> {
    report
        .endpoints
        .iter()
        .map(|e| {
            (
                (format!("{} {}", e.method, e.route), e.candidate.clone()),
                e,
            )
        })
        .collect()
}

/// Records with redeliveries: a tenth again, some of them with another outcome (a replay
/// that differed).
fn records_with_redeliveries() -> (Vec<DiffRecord>, Vec<DiffRecord>) {
    let records = common::records(300);
    let mut again: Vec<DiffRecord> = records.iter().step_by(10).cloned().collect();
    for r in again.iter_mut().step_by(2) {
        if r.outcome == Outcome::Match {
            r.outcome = Outcome::Error;
            r.detail = Some("timeout: replayed again".into());
        }
    }
    (records, again)
}

/// A query parameter: its name, its value as SQL text (substituted on servers without query
/// parameters), and its value as a query parameter.
type Param = (&'static str, String, String);

fn all_time_params() -> Vec<Param> {
    vec![
        ("experiment", "'exp-a'".into(), "exp-a".into()),
        ("since", "toDateTime(0)".into(), "0".into()),
        (
            "until",
            "toDateTime(4102444800)".into(),
            "4102444800".into(),
        ),
        ("bucket_seconds", "600".into(), "600".into()),
    ]
}

type NamedCounts<K> = BTreeMap<K, BTreeMap<String, u64>>;
/// Error kinds by (endpoint, candidate), and side effects by (endpoint, candidate, what).
type KindsAndEffects = (
    NamedCounts<(String, String)>,
    NamedCounts<(String, String, String)>,
);

/// The rows of `{dir}error_kinds` by (endpoint, candidate) and of `{dir}side_effects` by
/// (endpoint, candidate, what), each as name → count.
fn error_kinds_and_effects(
    run: &dyn Fn(&str, &[Param]) -> Vec<serde_json::Value>,
    dir: &str,
    params: &[Param],
) -> KindsAndEffects {
    let mut kinds: NamedCounts<(String, String)> = BTreeMap::new();
    for row in &run(&format!("{dir}error_kinds"), params) {
        kinds.entry(key(row)).or_default().insert(
            row["kind"].as_str().unwrap().into(),
            number(&row["errors"]) as u64,
        );
    }
    let mut effects: NamedCounts<(String, String, String)> = BTreeMap::new();
    for row in &run(&format!("{dir}side_effects"), params) {
        let (endpoint, candidate) = key(row);
        effects
            .entry((endpoint, candidate, row["what"].as_str().unwrap().into()))
            .or_default()
            .insert(
                row["name"].as_str().unwrap().into(),
                number(&row["count"]) as u64,
            );
    }
    (kinds, effects)
}

/// Every dashboard query, run by `run` (a file name and its parameters), agrees with `report`
/// (experiment `exp-a` of `records` + `again`).
fn check_dashboard_queries(
    run: &dyn Fn(&str, &[Param]) -> Vec<serde_json::Value>,
    report: &Report,
    records: &[DiffRecord],
    again: &[DiffRecord],
) {
    let experiment = "exp-a";
    let all_time = all_time_params();
    let expected = endpoints(report);

    // Mismatch rate over time: the buckets add up to the report's counts.
    let mut sums: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    let rows = run("mismatch_rate_over_time", &all_time);
    assert!(
        rows.len() > expected.len(),
        "several buckets per endpoint: {} rows for {} endpoints: {rows:?}",
        rows.len(),
        expected.len()
    );
    for row in &rows {
        let s = sums.entry(key(row)).or_default();
        s.0 += number(&row["compared"]);
        s.1 += number(&row["mismatched"]);
    }
    for (k, e) in &expected {
        let (compared, mismatched) = sums.get(k).copied().unwrap_or_default();
        assert_eq!(
            (compared, mismatched),
            (e.compared as f64, e.mismatched as f64),
            "{k:?}"
        );
    }

    // Candidates side by side: the report's counts, row for row.
    let rows = run("candidates_side_by_side", &all_time);
    assert_eq!(rows.len(), expected.len());
    for row in &rows {
        let e = expected[&key(row)];
        assert_eq!(
            [
                number(&row["compared"]),
                number(&row["mismatched"]),
                number(&row["errors"]),
                number(&row["blocked"])
            ],
            [
                e.compared as f64,
                e.mismatched as f64,
                e.errors as f64,
                e.blocked as f64
            ],
            "{row}"
        );
    }

    // Latency: the report's nearest-rank percentiles.
    for row in &run("latency_by_endpoint", &all_time) {
        let l = &expected[&key(row)].latency_ms;
        assert_eq!(
            [
                number(&row["control_p50_ms"]),
                number(&row["control_p99_ms"]),
                number(&row["candidate_p50_ms"]),
                number(&row["candidate_p99_ms"])
            ],
            [
                l.control_p50,
                l.control_p99,
                l.candidate_p50,
                l.candidate_p99
            ],
            "{row}"
        );
    }

    // Top signatures: the report's, in its order, with their counts.
    let mut signatures: BTreeMap<(String, String), Vec<(String, u64)>> = BTreeMap::new();
    for row in &run("top_signatures", &all_time) {
        signatures.entry(key(row)).or_default().push((
            row["signature"].as_str().unwrap().to_string(),
            number(&row["exchanges"]) as u64,
        ));
        assert!(row["first_seen"].as_str().unwrap() <= row["last_seen"].as_str().unwrap());
    }
    for (k, e) in &expected {
        let want: Vec<(String, u64)> = e
            .signatures
            .iter()
            .map(|s| (s.fingerprint.clone(), s.count))
            .collect();
        assert_eq!(
            signatures.get(k).cloned().unwrap_or_default(),
            want,
            "{k:?}"
        );
    }

    // Error kinds, blocked writes and side effects: the report's counts by name.
    let (kinds, effects) = error_kinds_and_effects(run, "", &all_time);
    let by_name = |counts: &[shadowdiff_store::report::Count]| -> BTreeMap<String, u64> {
        counts.iter().map(|c| (c.name.clone(), c.count)).collect()
    };
    let mut seen_effects = false;
    for ((endpoint, candidate), e) in &expected {
        let k = (endpoint.clone(), candidate.clone());
        assert_eq!(
            kinds.get(&k).cloned().unwrap_or_default(),
            by_name(&e.error_kinds),
            "{k:?}"
        );
        let blocked = effects.get(&(endpoint.clone(), candidate.clone(), "blocked".into()));
        assert_eq!(
            blocked.cloned().unwrap_or_default(),
            by_name(&e.blocked_reasons),
            "{k:?}"
        );
        let side = effects.get(&(endpoint.clone(), candidate.clone(), "side_effect".into()));
        assert_eq!(
            side.cloned().unwrap_or_default(),
            by_name(&e.side_effects),
            "{k:?}"
        );
        seen_effects |= !e.side_effects.is_empty();
    }
    assert!(seen_effects, "the data has side effects to show");

    // New regressing fields since a moment: exactly the (endpoint, candidate, path, kind) whose
    // unmasked differences all fall after it, computed from the records the report counts.
    let since_ms = 1_763_805_600_000 + 200 * 7_000;
    let mut params = all_time.clone();
    params[1] = (
        "since",
        format!("toDateTime({})", since_ms / 1000),
        (since_ms / 1000).to_string(),
    );
    let got: BTreeSet<(String, String, String, String)> = run("new_regressing_fields", &params)
        .iter()
        .map(|r| {
            let (e, c) = key(r);
            (
                e,
                c,
                r["path"].as_str().unwrap().into(),
                r["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut chosen: HashMap<(String, String, TargetRole), &DiffRecord> = HashMap::new();
    for r in records
        .iter()
        .chain(again)
        .filter(|r| r.experiment == experiment)
    {
        chosen
            .entry((r.exchange_id.clone(), r.target.clone(), r.role))
            .and_modify(|c| {
                if shadowdiff_store::redelivery_order(r, c).is_lt() {
                    *c = r;
                }
            })
            .or_insert(r);
    }
    let (mut before, mut after): (BTreeSet<_>, BTreeSet<_>) = Default::default();
    for r in chosen.values().filter(|r| {
        r.role != TargetRole::Secondary && matches!(r.outcome, Outcome::Match | Outcome::Mismatch)
    }) {
        for d in &r.differences {
            let k = (
                format!("{} {}", r.method, r.route),
                r.target.clone(),
                d.aggregate_path(),
                d.kind.as_str().to_string(),
            );
            if r.captured_at_ms < since_ms {
                before.insert(k);
            } else {
                after.insert(k);
            }
        }
    }
    let want: BTreeSet<_> = after.difference(&before).cloned().collect();
    assert_eq!(got, want);
}

/// Nearest-rank percentile of `values` in ms, as the report computes it.
fn nearest_rank_ms(values: &mut [u64], q: f64) -> f64 {
    values.sort_unstable();
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1] as f64 / 1000.0
}

/// The per-minute queries (`queries/minutes/`) over the aggregates the view built from the same
/// inserts: every delivered copy counts, so the expectations come from all copies (`records` and
/// the redelivered `again`), computed here independently of SQL.
fn check_minute_queries(
    run: &dyn Fn(&str, &[Param]) -> Vec<serde_json::Value>,
    records: &[DiffRecord],
    again: &[DiffRecord],
) {
    let all_time = all_time_params();
    let copies: Vec<&DiffRecord> = records
        .iter()
        .chain(again)
        .filter(|r| r.experiment == "exp-a" && r.role != TargetRole::Secondary)
        .collect();
    let key_of = |r: &DiffRecord| (format!("{} {}", r.method, r.route), r.target.clone());
    #[derive(Default)]
    struct Want {
        compared: u64,
        mismatched: u64,
        errors: u64,
        blocked: u64,
        error_kinds: BTreeMap<String, u64>,
        blocked_names: BTreeMap<String, u64>,
        side_effects: BTreeMap<String, u64>,
        signatures: BTreeMap<String, u64>,
        control_latency: Vec<u64>,
        target_latency: Vec<u64>,
    }
    let mut want: BTreeMap<(String, String), Want> = BTreeMap::new();
    for r in &copies {
        let w = want.entry(key_of(r)).or_default();
        match r.outcome {
            Outcome::Match | Outcome::Mismatch => {
                w.compared += 1;
                w.control_latency.extend(r.control_latency_us);
                w.target_latency.extend(r.target_latency_us);
                if r.outcome == Outcome::Mismatch {
                    w.mismatched += 1;
                    *w.signatures
                        .entry(format!("{:016x}", r.fingerprint))
                        .or_default() += 1;
                }
            }
            Outcome::Error => {
                w.errors += 1;
                let detail = r.detail.clone().unwrap_or_else(|| "error".into());
                let kind = detail.split(':').next().unwrap_or_default().to_string();
                *w.error_kinds.entry(kind).or_default() += 1;
            }
            Outcome::Blocked => {
                w.blocked += 1;
                let name = r.detail.clone().unwrap_or_else(|| "blocked".into());
                *w.blocked_names.entry(name).or_default() += 1;
            }
            Outcome::Skipped => {}
        }
        for effect in &r.side_effects {
            *w.side_effects.entry(effect.clone()).or_default() += 1;
        }
    }
    assert!(want.values().any(|w| !w.side_effects.is_empty()));
    assert!(want.values().any(|w| w.errors > 0 && w.blocked > 0));

    let mut sums: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for row in &run("minutes/mismatch_rate_over_time", &all_time) {
        let s = sums.entry(key(row)).or_default();
        s.0 += number(&row["compared"]) as u64;
        s.1 += number(&row["mismatched"]) as u64;
    }
    let side = run("minutes/candidates_side_by_side", &all_time);
    assert_eq!(side.len(), want.len());
    for row in &side {
        let w = &want[&key(row)];
        assert_eq!(sums[&key(row)], (w.compared, w.mismatched), "{row}");
        assert_eq!(
            [
                number(&row["compared"]) as u64,
                number(&row["mismatched"]) as u64,
                number(&row["errors"]) as u64,
                number(&row["blocked"]) as u64
            ],
            [w.compared, w.mismatched, w.errors, w.blocked],
            "{row}"
        );
    }

    // Latency: t-digest estimates, within 10% (or 1 ms) of the exact nearest rank.
    let close = |got: f64, exact: f64| (got - exact).abs() <= (exact * 0.1).max(1.0);
    for row in &run("minutes/latency_by_endpoint", &all_time) {
        let w = want.get_mut(&key(row)).unwrap();
        let (control, target) = (&mut w.control_latency, &mut w.target_latency);
        for (column, exact) in [
            ("control_p50_ms", nearest_rank_ms(control, 0.5)),
            ("control_p99_ms", nearest_rank_ms(control, 0.99)),
            ("candidate_p50_ms", nearest_rank_ms(target, 0.5)),
            ("candidate_p99_ms", nearest_rank_ms(target, 0.99)),
        ] {
            assert!(
                close(number(&row[column]), exact),
                "{column}: {row} vs {exact}"
            );
        }
    }

    let mut signatures: BTreeMap<(String, String), Vec<(String, u64)>> = BTreeMap::new();
    for row in &run("minutes/top_signatures", &all_time) {
        signatures.entry(key(row)).or_default().push((
            row["signature"].as_str().unwrap().to_string(),
            number(&row["exchanges"]) as u64,
        ));
        assert!(row["sample_exchange_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("ex-")));
    }
    for (k, w) in &want {
        let mut top: Vec<(String, u64)> =
            w.signatures.iter().map(|(s, n)| (s.clone(), *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(5);
        assert_eq!(signatures.get(k).cloned().unwrap_or_default(), top, "{k:?}");
    }

    let (kinds, effects) = error_kinds_and_effects(run, "minutes/", &all_time);
    for ((endpoint, candidate), w) in &want {
        let k = (endpoint.clone(), candidate.clone());
        assert_eq!(
            kinds.get(&k).cloned().unwrap_or_default(),
            w.error_kinds,
            "{k:?}"
        );
        let of = |what: &str| {
            effects
                .get(&(endpoint.clone(), candidate.clone(), what.to_string()))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(of("blocked"), w.blocked_names, "{k:?}");
        assert_eq!(of("side_effect"), w.side_effects, "{k:?}");
    }

    // New regressing fields since a whole minute, from every copy: the first minute after
    // which some field appears that never appeared before it.
    let fields_split = |since_ms: u64| {
        let (mut before, mut after): (BTreeSet<_>, BTreeSet<_>) = Default::default();
        for r in copies
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Match | Outcome::Mismatch))
        {
            for d in &r.differences {
                let (e, c) = key_of(r);
                let k = (e, c, d.aggregate_path(), d.kind.as_str().to_string());
                if r.captured_at_ms < since_ms {
                    before.insert(k);
                } else {
                    after.insert(k);
                }
            }
        }
        (before, after)
    };
    let since_ms: u64 = (1..35)
        .map(|minute| 1_763_805_600_000 + minute * 60_000)
        .find(|since| {
            let (before, after) = fields_split(*since);
            !before.is_empty() && after.difference(&before).next().is_some()
        })
        .expect("the data has fields that start regressing at some minute");
    let (before, after) = fields_split(since_ms);
    let mut params = all_time.clone();
    params[1] = (
        "since",
        format!("toDateTime({})", since_ms / 1000),
        (since_ms / 1000).to_string(),
    );
    let got: BTreeSet<(String, String, String, String)> =
        run("minutes/new_regressing_fields", &params)
            .iter()
            .map(|r| {
                let (e, c) = key(r);
                (
                    e,
                    c,
                    r["path"].as_str().unwrap().into(),
                    r["kind"].as_str().unwrap().into(),
                )
            })
            .collect();
    let want_fields: BTreeSet<_> = after.difference(&before).cloned().collect();
    assert!(
        !want_fields.is_empty(),
        "the data has fields new since then"
    );
    assert_eq!(got, want_fields);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_agrees_with_the_report() {
    let url = std::env::var("SHADOWDIFF_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!("SHADOWDIFF_TEST_CLICKHOUSE is not set: scripts/services.sh start && source .services/env")
    });
    let database = format!("sd_dash_{}", uuid::Uuid::new_v4().simple());
    let store =
        ClickHouseStore::new(&ClickHouseConfig::new(url.clone()).with_database(&database)).unwrap();
    store.migrate().await.unwrap();
    let (records, again) = records_with_redeliveries();
    store.insert_batch(&records).await.unwrap();
    store.insert_batch(&again).await.unwrap();
    let report = store
        .report(&ReportQuery {
            experiment: Some("exp-a".into()),
            samples: 5,
            ..ReportQuery::default()
        })
        .await
        .unwrap();
    // ClickHouse 18.16 has no query parameters: the values go into the text.
    let run = |name: &str, params: &[Param]| {
        let literal: Vec<(String, &str)> = params
            .iter()
            .map(|(n, sql, _)| (format!("{{{n}:"), sql.as_str()))
            .collect();
        run_query(&url, &database, &substitute(&query_file(name), &literal))
    };
    check_dashboard_queries(&run, &report, &records, &again);
    check_minute_queries(&run, &records, &again);
    store.drop_database().await.unwrap();
}

/// Replaces each `{name:Type}` whose prefix `{name:` is given with its SQL text.
fn substitute(sql: &str, values: &[(String, &str)]) -> String {
    let mut out = sql.to_string();
    for (prefix, value) in values {
        while let Some(start) = out.find(prefix.as_str()) {
            let end = start + out[start..].find('}').unwrap();
            out.replace_range(start..=end, value);
        }
    }
    out
}

/// Expands what the Grafana ClickHouse plugin (grafana-clickhouse-datasource v4) and Grafana
/// expand before a query reaches ClickHouse, as the plugin documents them: `$__timeFilter(c)`
/// → `c >= toDateTime(from) AND c <= toDateTime(to)`, `$__interval_s` → seconds,
/// `$__conditionalAll(condition, $var)` → the condition, or `1=1` when the variable is All,
/// and `${var:singlequote}` → the selected values, quoted and comma-separated.
fn expand_grafana(sql: &str, vars: &BTreeMap<&str, Vec<String>>, all: &BTreeSet<&str>) -> String {
    let (from, to, interval) = (1_700_000_000u64, 1_800_000_000u64, 600u64);
    let mut out = sql.replace("$__interval_s", &interval.to_string());
    // $__conditionalAll(condition, $var): split at the last top-level comma.
    while let Some(start) = out.find("$__conditionalAll(") {
        let open = start + "$__conditionalAll".len();
        let (mut depth, mut end, mut comma) = (0i32, open, open);
        for (i, c) in out[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                ',' if depth == 1 => comma = open + i,
                _ => {}
            }
        }
        let condition = out[open + 1..comma].trim().to_string();
        let var = out[comma + 1..end]
            .trim()
            .trim_start_matches('$')
            .to_string();
        let replacement = if all.contains(var.as_str()) {
            "1=1".to_string()
        } else {
            condition
        };
        out.replace_range(start..=end, &replacement);
    }
    while let Some(start) = out.find("$__timeFilter(") {
        let end = start + out[start..].find(')').unwrap();
        let column = out[start + "$__timeFilter(".len()..end].to_string();
        out.replace_range(
            start..=end,
            &format!("{column} >= toDateTime({from}) AND {column} <= toDateTime({to})"),
        );
    }
    for (name, values) in vars {
        let quoted: Vec<String> = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "\\'")))
            .collect();
        out = out.replace(&format!("${{{name}:singlequote}}"), &quoted.join(","));
    }
    assert!(!out.contains('$'), "a macro or variable is left: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_runs_with_the_plugins_macros_expanded() {
    let url = std::env::var("SHADOWDIFF_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!("SHADOWDIFF_TEST_CLICKHOUSE is not set: scripts/services.sh start && source .services/env")
    });
    let database = format!("sd_graf_{}", uuid::Uuid::new_v4().simple());
    let store =
        ClickHouseStore::new(&ClickHouseConfig::new(url.clone()).with_database(&database)).unwrap();
    store.migrate().await.unwrap();
    store.insert_batch(&common::records(200)).await.unwrap();
    let report = store
        .report(&ReportQuery {
            experiment: Some("exp-a".into()),
            ..ReportQuery::default()
        })
        .await
        .unwrap();

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/grafana/shadowdiff-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let run = |sql: &str| run_query(&url, &database, sql);
    let candidates: Vec<String> = report
        .endpoints
        .iter()
        .map(|e| e.candidate.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let endpoints_all: Vec<String> = report
        .endpoints
        .iter()
        .map(|e| format!("{} {}", e.method, e.route))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // The variables' own queries list what the data holds.
    let mut vars: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    vars.insert("experiment", vec!["exp-a".into()]);
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let rows = run(&expand_grafana(
            v["query"].as_str().unwrap(),
            &vars,
            &BTreeSet::new(),
        ));
        let values: BTreeSet<String> = rows
            .iter()
            .map(|r| {
                r.as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        match v["name"].as_str().unwrap() {
            "experiment" => assert!(
                values.contains("exp-a") && values.contains("exp-b"),
                "{values:?}"
            ),
            "candidate" => assert_eq!(values, candidates.iter().cloned().collect()),
            "endpoint" => assert_eq!(values, endpoints_all.iter().cloned().collect()),
            other => panic!("unexpected variable {other}"),
        }
    }

    // Every panel, with every variable on All and with one value each.
    vars.insert("candidate", candidates.clone());
    vars.insert("endpoint", endpoints_all.clone());
    let all: BTreeSet<&str> = ["candidate", "endpoint"].into();
    let mut one = vars.clone();
    one.insert("candidate", vec!["v2".into()]);
    one.insert("endpoint", vec!["GET /users/{id}".into()]);
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    for panel in panels {
        let sql = panel["targets"][0]["rawSql"].as_str().unwrap();
        assert_eq!(panel["datasource"]["type"], "grafana-clickhouse-datasource");
        let every = run(&expand_grafana(sql, &vars, &all));
        assert!(!every.is_empty(), "panel {} shows nothing", panel["title"]);
        let filtered = run(&expand_grafana(sql, &one, &BTreeSet::new()));
        assert!(filtered.len() <= every.len(), "panel {}", panel["title"]);
        if panel["title"] == "Candidates side by side" {
            // The panel's numbers are the report's.
            let expected = endpoints(&report);
            assert_eq!(every.len(), expected.len());
            for row in &every {
                let e = expected[&key(row)];
                assert_eq!(
                    (number(&row["compared"]), number(&row["mismatched"])),
                    (e.compared as f64, e.mismatched as f64)
                );
            }
            assert!(filtered
                .iter()
                .all(|r| key(r) == ("GET /users/{id}".to_string(), "v2".to_string())));
        }
    }
    store.drop_database().await.unwrap();
}

/// The Python with chdb (`scripts/test.sh` installs it), or a failure that says how to get it.
fn chdb_python() -> String {
    std::env::var("SHADOWDIFF_TEST_CHDB_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SHADOWDIFF_TEST_CHDB_PYTHON is not set: a Python with chdb-core (scripts/test.sh \
             installs one: python3 -m venv DIR && DIR/bin/pip install chdb-core)"
        )
    })
}

/// One request to scripts/chdb-sql.py: statements, then a query with server-side parameters.
fn chdb(
    path: &std::path::Path,
    statements: &[String],
    query: Option<&str>,
    params: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    chdb_text(path, statements, query, params)
        .expect("chdb runs")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// [`chdb`]'s JSONEachRow output as text, or chdb's error.
fn chdb_text(
    path: &std::path::Path,
    statements: &[String],
    query: Option<&str>,
    params: &[(&str, &str)],
) -> Result<String, String> {
    let mut request = serde_json::json!({
        "path": path.to_str().unwrap(),
        "statements": statements,
        "params": params.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(q) = query {
        request["query"] = serde_json::json!(q);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/chdb-sql.py");
    let mut child = std::process::Command::new(chdb_python())
        .arg(script)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        request.to_string().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "chdb failed: {}\n{request}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The current-release flavour on a current ClickHouse engine (chdb 26.x): the schema as
/// `migrate --print-sql --flavor current` prints it, the rows as the sink sends them, and every
/// dashboard query with real query parameters, checked against the report of the same records.
#[test]
fn on_a_current_clickhouse_the_schema_inserts_and_every_dashboard_query_work() {
    let dir = tempfile_dir();
    let statements: Vec<String> = schema_sql("shadowdiff", &SchemaOptions::new(Flavor::Modern))
        .split(";\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|s| !s.trim().is_empty())
        .collect();
    assert!(statements.len() >= 4, "{statements:?}");
    let version = chdb(&dir, &statements, Some("SELECT version() AS v"), &[]);
    let version = version[0]["v"].as_str().unwrap().to_string();
    assert_eq!(Flavor::from_version(&version), Flavor::Modern, "{version}");
    let types = chdb(
        &dir,
        &[],
        Some("SELECT type FROM system.columns WHERE database = 'shadowdiff' AND table = 'diff_records' AND name = 'route'"),
        &[],
    );
    assert_eq!(types[0]["type"], "LowCardinality(String)");
    let (records, again) = records_with_redeliveries();
    let insert = |batch: &[DiffRecord]| {
        let rows: Vec<String> = batch
            .iter()
            .map(|r| serde_json::to_string(&shadowdiff_clickhouse::DiffRow::from(r)).unwrap())
            .collect();
        format!(
            "INSERT INTO shadowdiff.diff_records FORMAT JSONEachRow\n{}",
            rows.join("\n")
        )
    };
    chdb(&dir, &[insert(&records), insert(&again)], None, &[]);
    let all: Vec<DiffRecord> = records.iter().chain(&again).cloned().collect();
    let report = shadowdiff_store::build_report(
        &all,
        &ReportQuery {
            experiment: Some("exp-a".into()),
            samples: 5,
            ..ReportQuery::default()
        },
    );
    let datetime = |sql_literal: &str, value: &str| -> String {
        // The parameter as ClickHouse parses a DateTime: `YYYY-MM-DD hh:mm:ss` (UTC here).
        if sql_literal.starts_with("toDateTime(") {
            let secs: i64 = value.parse().unwrap();
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        } else {
            value.to_string()
        }
    };
    let run = |name: &str, params: &[Param]| {
        let values: Vec<(String, String)> = params
            .iter()
            .map(|(n, sql, v)| (n.to_string(), datetime(sql, v)))
            .collect();
        let refs: Vec<(&str, &str)> = values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        chdb(&dir, &[], Some(&query_file(name)), &refs)
    };
    check_dashboard_queries(&run, &report, &records, &again);
    check_minute_queries(&run, &records, &again);

    // The report's own SQL, the queries `shadowdiff report --clickhouse` runs, on the same
    // engine: the same report as the embedded store computes from the records.
    let store = ClickHouseStore::new(&ClickHouseConfig::new("http://127.0.0.1:9")).unwrap();
    let settings = ["SET output_format_json_quote_64bit_integers = 0".to_string()];
    let runner = |sql: &str| chdb_text(&dir, &settings, Some(sql), &[]);
    for query in [
        ReportQuery::default(),
        ReportQuery {
            experiment: Some("exp-a".into()),
            samples: 5,
            ..ReportQuery::default()
        },
        ReportQuery {
            endpoint: Some("GET /users".into()),
            since_ms: Some(1_763_805_600_000 + 50 * 7_000),
            ..ReportQuery::default()
        },
    ] {
        let sql_report = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.report_with_sql_runner(&query, &runner))
            .unwrap();
        assert!(!sql_report.endpoints.is_empty(), "{query:?}");
        assert_eq!(
            common::comparable(sql_report),
            common::comparable(shadowdiff_store::build_report(&all, &query)),
            "{query:?}"
        );
    }
    // Retention as migrate sets it on current releases (last: it drops these old rows).
    chdb(
        &dir,
        &shadowdiff_clickhouse::retention_sql("shadowdiff", Some(30), Some(400)),
        None,
        &[],
    );
    for (table, ttl) in [
        ("diff_records", "TTL captured_at + toIntervalDay(30)"),
        ("diff_minutes", "TTL minute + toIntervalDay(400)"),
    ] {
        let create = chdb(
            &dir,
            &[],
            Some(&format!(
                "SELECT create_table_query AS q FROM system.tables WHERE database = 'shadowdiff' AND name = '{table}'"
            )),
            &[],
        );
        let q = create[0]["q"].as_str().unwrap();
        assert!(q.contains(ttl), "{q}");
        assert!(
            table != "diff_records" || q.contains("PARTITION BY toYYYYMMDD(captured_at)"),
            "{q}"
        );
    }

    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sd-chdb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
