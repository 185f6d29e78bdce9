//! Integration tests against a real ClickHouse (`SHADOWDIFF_TEST_CLICKHOUSE`), plus one that
//! runs its own server to take it down.

use shadowdiff_clickhouse::{
    retry_with_backoff, Backoff, ClickHouseConfig, ClickHouseSink, ClickHouseStore,
};
use shadowdiff_model::{DiffRecord, Outcome};
use shadowdiff_store::report::ReportQuery;
use shadowdiff_store::{build_report, RecordSink, StoreError};
use std::time::{Duration, Instant};

mod common;
use common::{comparable, records};

fn clickhouse_url() -> String {
    std::env::var("SHADOWDIFF_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!(
            "SHADOWDIFF_TEST_CLICKHOUSE is not set: start the servers with \
             `scripts/services.sh start && source .services/env`"
        )
    })
}

fn unique_db() -> String {
    format!("sd_test_{}", uuid::Uuid::new_v4().simple())
}

async fn store_for_test() -> ClickHouseStore {
    let config = ClickHouseConfig::new(clickhouse_url()).with_database(unique_db());
    ClickHouseStore::new(&config).expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_records_its_version() {
    let store = store_for_test().await;
    let version = store.server_version().await.expect("server answers");
    assert_eq!(
        store.migrate().await.expect("first migrate"),
        vec![1, 2, 3],
        "on {version}"
    );
    assert_eq!(
        store.migrate().await.expect("second migrate"),
        Vec::<u32>::new()
    );
    assert_eq!(
        store.applied_migrations().await.expect("versions"),
        vec![1, 2, 3]
    );
    store.drop_database().await.expect("cleanup");
}

/// Runs one SQL statement over HTTP and returns the output (for schema checks).
fn sql(query: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--max-time",
            "60",
            "--data-binary",
        ])
        .arg(query)
        .arg(clickhouse_url())
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{query}: {text}");
    text
}

/// Redeliveries of `originals` replayed with other results (slower; a timeout every other).
fn differing_copies(originals: &[DiffRecord]) -> Vec<DiffRecord> {
    originals
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, r)| {
            let mut c = r.clone();
            c.target_latency_us = Some(c.target_latency_us.unwrap_or(0) + 1_000);
            if i % 2 == 0 {
                c.outcome = Outcome::Error;
                c.target_status = None;
                c.differences.clear();
                c.noise.clear();
                c.fingerprint = 0;
                c.detail = Some("timeout: after 2s".into());
            }
            c
        })
        .collect()
}

/// A database at schema version 1 (the ReplacingMergeTree) with rows, differing redeliveries
/// among them, is upgraded in place: every row kept, the report unchanged, the per-minute
/// aggregates filled from the rows already there, and merging the parts (what made the old
/// table keep the last inserted copy) no longer changes the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_is_rebuilt_without_losing_a_row_and_merges_no_longer_change_the_report(
) {
    let store = store_for_test().await;
    let db = store.database().to_string();
    let options = shadowdiff_clickhouse::SchemaOptions::new(shadowdiff_clickhouse::Flavor::Legacy);
    sql(&format!("CREATE DATABASE {db}"));
    sql(&format!(
        "CREATE TABLE {db}.schema_migrations (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    ));
    for step in (shadowdiff_clickhouse::MIGRATIONS[0].steps)(&db, &options) {
        sql(&step.sql);
    }
    sql(&format!(
        "INSERT INTO {db}.schema_migrations (version, name) VALUES (1, 'diff_records')"
    ));
    assert!(sql(&format!(
        "SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'diff_records'"
    ))
    .starts_with("Replacing"));
    let originals = records(300);
    let copies = differing_copies(&originals);
    store.insert_batch(&originals).await.expect("insert");
    store.insert_batch(&copies).await.expect("insert copies");
    let rows = originals.len() + copies.len();
    let query = ReportQuery::default();
    let before = store.report(&query).await.expect("report before");

    assert_eq!(store.migrate().await.expect("upgrade"), vec![2, 3]);
    assert_eq!(
        sql(&format!(
            "SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'diff_records'"
        ))
        .trim(),
        "MergeTree"
    );
    assert_eq!(
        sql(&format!("SELECT count() FROM system.tables WHERE database = '{db}' AND name IN ('diff_records_replacing', 'diff_records_next', 'schema_lock')")).trim(),
        "0",
        "no table of the rebuild or the lock is left"
    );
    assert_eq!(store.raw_row_count().await.expect("count"), rows as u64);
    assert_eq!(
        sql(&format!(
            "SELECT countMerge(records) FROM {db}.diff_minutes"
        ))
        .trim(),
        rows.to_string(),
        "the aggregates hold every row already there"
    );
    let after = store.report(&query).await.expect("report after");
    assert_eq!(comparable(after.clone()), comparable(before));
    // What the old table's merges did: keep one copy per key. Now every copy stays.
    sql(&format!("OPTIMIZE TABLE {db}.diff_records FINAL"));
    assert_eq!(store.raw_row_count().await.expect("count"), rows as u64);
    let merged = store.report(&query).await.expect("report after merge");
    assert_eq!(comparable(merged), comparable(after.clone()));
    let expected = build_report(
        &originals.iter().chain(&copies).cloned().collect::<Vec<_>>(),
        &query,
    );
    assert_eq!(comparable(after), comparable(expected));

    // New rows reach the aggregates through the view.
    store.insert_batch(&records(10)).await.expect("insert more");
    assert_eq!(
        sql(&format!(
            "SELECT countMerge(records) FROM {db}.diff_minutes"
        ))
        .trim(),
        (rows + records(10).len()).to_string()
    );
    store.drop_database().await.expect("cleanup");
}

/// Several `diff` processes start at once and each runs `migrate`: the lock lets one apply the
/// migrations, the others wait and find nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_each_version_once() {
    let config = ClickHouseConfig::new(clickhouse_url()).with_database(unique_db());
    let stores: Vec<ClickHouseStore> = (0..4)
        .map(|_| ClickHouseStore::new(&config).expect("store"))
        .collect();
    let runs: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    let mut applied: Vec<u32> = Vec::new();
    for run in runs {
        applied.extend(run.await.expect("joined").expect("every migrate succeeds"));
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        vec![1, 2, 3],
        "each version applied by exactly one process"
    );
    let db = &config.database;
    assert_eq!(
        sql(&format!("SELECT count() FROM {db}.schema_migrations")).trim(),
        "3"
    );
    assert_eq!(
        sql(&format!(
            "SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'schema_lock'"
        ))
        .trim(),
        "0"
    );
    stores[0].drop_database().await.expect("cleanup");
}

/// `ttl_days` on a server without TTL (18.16) is refused with the reason, not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_needs_a_server_with_ttl_and_says_so() {
    let mut config = ClickHouseConfig::new(clickhouse_url()).with_database(unique_db());
    config.ttl_days = Some(30);
    let store = ClickHouseStore::new(&config).expect("store");
    let version = store.server_version().await.expect("version");
    if shadowdiff_clickhouse::Flavor::from_version(&version)
        == shadowdiff_clickhouse::Flavor::Legacy
    {
        let error = store
            .migrate()
            .await
            .expect_err("TTL refused on this server")
            .to_string();
        assert!(
            error.contains("ttl_days") && error.contains("19.6") && error.contains(&version),
            "{error}"
        );
    } else {
        store.migrate().await.expect("migrate with TTL");
        let create = sql(&format!(
            "SHOW CREATE TABLE {}.diff_records",
            config.database
        ));
        assert!(
            create.contains("TTL captured_at + toIntervalDay(30)"),
            "{create}"
        );
    }
    store.drop_database().await.ok();
    config.ttl_days = Some(0);
    let error = ClickHouseStore::new(&config)
        .expect_err("0 days refused")
        .to_string();
    assert!(error.contains("ttl_days must be at least 1"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_report_matches_build_report_and_counts_duplicates_once() {
    let store = store_for_test().await;
    store.migrate().await.expect("migrate");
    let records = records(400);
    // Every record once, a fifth of them again in the same batch, a tenth again later.
    let mut first: Vec<DiffRecord> = records.clone();
    first.extend(records.iter().step_by(5).cloned());
    store.insert_batch(&first).await.expect("insert");
    let again: Vec<DiffRecord> = records.iter().step_by(10).cloned().collect();
    store.insert_batch(&again).await.expect("insert duplicates");
    let raw = store.raw_row_count().await.expect("count");
    // Until ClickHouse merges parts, the duplicates are separate rows; reports count them once.
    assert!(raw >= records.len() as u64, "{raw} rows");
    // The experiments with results, once each, sorted (what `report --experiment` names).
    let mut expected: Vec<String> = records.iter().map(|r| r.experiment.clone()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(store.experiments().await.expect("experiments"), expected);

    let all_deliveries: Vec<DiffRecord> = first.iter().chain(&again).cloned().collect();
    assert!(
        build_report(&all_deliveries, &ReportQuery::default())
            .endpoints
            .iter()
            .any(|e| e.saturated > 0),
        "the records have saturated replays for the reports to count"
    );
    let queries = [
        ReportQuery::default(),
        ReportQuery {
            experiment: Some("exp-a".into()),
            ..ReportQuery::default()
        },
        ReportQuery {
            endpoint: Some("GET /users".into()),
            samples: 5,
            ..ReportQuery::default()
        },
        ReportQuery {
            since_ms: Some(1_763_805_600_000 + 100 * 7_000),
            until_ms: Some(1_763_805_600_000 + 300 * 7_000),
            ..ReportQuery::default()
        },
        ReportQuery {
            experiment: Some("nope".into()),
            ..ReportQuery::default()
        },
    ];
    for query in &queries {
        let expected = build_report(&all_deliveries, query);
        let got = store.report(query).await.expect("sql report");
        assert_eq!(got.totals, expected.totals, "totals for {query:?}");
        let (got_c, expected_c) = (comparable(got.clone()), comparable(expected.clone()));
        assert_eq!(
            got_c.endpoints.len(),
            expected_c.endpoints.len(),
            "{query:?}"
        );
        for (g, e) in got_c.endpoints.iter().zip(&expected_c.endpoints) {
            assert_eq!(g, e, "endpoint report for {query:?}");
        }
        assert_eq!(got_c, expected_c, "report for {query:?}");
        // Samples: one per signature, the most frequent first, within the limit.
        for e in &got.endpoints {
            let limit = if query.samples == 0 { 3 } else { query.samples };
            assert!(e.samples.len() <= limit);
            assert_eq!(e.samples.len(), e.signatures.len().min(limit));
            for s in &e.samples {
                assert!(!s.diff.is_empty(), "sample {} has its diff", s.exchange_id);
            }
        }
    }
    let full = store.report(&ReportQuery::default()).await.expect("report");
    assert_eq!(full.totals.exchanges, 400);
    assert!(full.totals.compared > 0 && full.totals.mismatched > 0);
    assert!(full.totals.errors > 0 && full.totals.blocked > 0 && full.totals.skipped > 0);
    assert!(full.endpoints.iter().any(|e| e.verdict == "regression"));
    assert!(full
        .endpoints
        .iter()
        .flat_map(|e| &e.fields)
        .any(|f| f.verdict == "noise"));
    store.drop_database().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_report_matches_build_report_with_repeat_records() {
    let store = store_for_test().await;
    store.migrate().await.expect("migrate");
    // Repeats learned without a secondary, beside the secondary's records of other endpoints.
    let mut all = records(150);
    all.extend(common::repeat_records(240));
    store.insert_batch(&all).await.expect("insert");
    // A redelivered repeat record counts once.
    let again: Vec<DiffRecord> = all
        .iter()
        .filter(|r| r.role == shadowdiff_model::TargetRole::Repeat)
        .step_by(7)
        .cloned()
        .collect();
    store.insert_batch(&again).await.expect("insert again");
    let deliveries: Vec<DiffRecord> = all.iter().chain(&again).cloned().collect();
    for query in [
        ReportQuery::default(),
        ReportQuery {
            experiment: Some("exp-r".into()),
            ..ReportQuery::default()
        },
    ] {
        let expected = build_report(&deliveries, &query);
        let got = store.report(&query).await.expect("sql report");
        assert_eq!(got.totals, expected.totals, "totals for {query:?}");
        assert_eq!(
            comparable(got),
            comparable(expected),
            "report for {query:?}"
        );
    }
    let report = store
        .report(&ReportQuery {
            experiment: Some("exp-r".into()),
            ..ReportQuery::default()
        })
        .await
        .expect("report");
    let endpoint = |route: &str| {
        report
            .endpoints
            .iter()
            .find(|e| e.route == route)
            .unwrap_or_else(|| panic!("{route} in {report:#?}"))
    };
    // Repeat records are A/A evidence, never an endpoint of their own.
    assert!(report
        .endpoints
        .iter()
        .all(|e| e.candidate != shadowdiff_model::REPEAT_TARGET));
    let accounts = endpoint("/accounts/{id}/summary");
    assert_eq!(
        accounts.verdict, "regression",
        "{}",
        accounts.verdict_reason
    );
    for f in &accounts.fields {
        let expected = if f.path == "body.limits.daily" {
            "regression"
        } else {
            "noise"
        };
        assert_eq!(
            (f.verdict.as_str(), f.evidence.as_str()),
            (expected, "repeated_requests"),
            "{f:#?}"
        );
    }
    assert_eq!(endpoint("/catalog/{id}").verdict, "noisy");
    let never = endpoint("/never-repeated/{id}");
    assert_eq!(never.verdict, "inconclusive");
    assert!(never
        .fields
        .iter()
        .all(|f| f.verdict == "inconclusive" && f.evidence == "none"));
    store.drop_database().await.expect("cleanup");
}

// --- A ClickHouse of our own, to take down and bring back. ---

use shadowdiff_tests::OwnClickHouse;

#[test]
fn insert_fails_unavailable_while_down_and_succeeds_after_restart() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = OwnClickHouse::start();
    let store = ClickHouseStore::new(&ClickHouseConfig::new(server.url()).with_database("sd_down"))
        .expect("store");
    runtime.block_on(async {
        // The HTTP port can open a moment before queries are served.
        retry_with_backoff(
            Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            Some(50),
            || store.migrate(),
        )
        .await
        .expect("migrate")
    });
    let batch = records(20);
    let mut sink = ClickHouseSink::new(store.clone(), runtime.handle().clone());
    sink.write_batch(&batch[..10]).expect("insert while up");

    server.kill();
    let err = sink.write_batch(&batch[10..]).expect_err("server is down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");

    // The differ's loop: retry with backoff until the server is back.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        server.spawn();
        server
    });
    let started = Instant::now();
    runtime
        .block_on(retry_with_backoff(
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            Some(120),
            || store.insert_batch(&batch[10..]),
        ))
        .expect("insert after restart");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let _server = restarter.join().expect("restarter");
    sink.write_batch(&batch[10..]).expect("sink works again");

    let report = runtime
        .block_on(store.report(&ReportQuery::default()))
        .expect("report");
    assert_eq!(
        report.totals,
        build_report(&batch, &ReportQuery::default()).totals
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_redeliveries_count_the_same_copy_in_sql_and_in_build_report() {
    let store = store_for_test().await;
    store.migrate().await.expect("migrate");
    let originals = records(200);
    // A redelivered exchange replayed again can differ: a slower answer, or a timeout this time.
    let copies = differing_copies(&originals);
    // The copies arrive first here; the embedded store reads them in both orders.
    store.insert_batch(&copies).await.expect("insert copies");
    store
        .insert_batch(&originals)
        .await
        .expect("insert originals");
    let copies_first: Vec<DiffRecord> = copies.iter().chain(&originals).cloned().collect();
    let originals_first: Vec<DiffRecord> = originals.iter().chain(&copies).cloned().collect();
    let query = ReportQuery::default();
    let expected = build_report(&originals_first, &query);
    assert_eq!(
        comparable(build_report(&copies_first, &query)),
        comparable(expected.clone()),
        "the copy that counts does not depend on arrival order"
    );
    // The timeouts of the second delivery count (more severe than a match)...
    let once = build_report(&originals, &query);
    assert!(expected.totals.errors > once.totals.errors);
    assert_eq!(expected.totals.exchanges, once.totals.exchanges);
    // ...and ClickHouse picks exactly the same copies.
    let got = store.report(&query).await.expect("sql report");
    assert_eq!(got.totals, expected.totals);
    assert_eq!(comparable(got), comparable(expected));
    store.drop_database().await.expect("cleanup");
}

/// A migrator that died holding the lock (no heartbeat since) does not block the next one for
/// long: its lock is taken over once stale (15 s without a heartbeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_by_a_dead_migrator_is_taken_over() {
    let store = store_for_test().await;
    let db = store.database().to_string();
    sql(&format!("CREATE DATABASE {db}"));
    sql(&format!(
        "CREATE TABLE {db}.schema_lock (at DateTime DEFAULT now()) ENGINE = Memory"
    ));
    let started = std::time::Instant::now();
    let applied = tokio::time::timeout(Duration::from_secs(60), store.migrate())
        .await
        .expect("the stale lock is taken over well within a minute")
        .expect("migrate");
    assert_eq!(applied, vec![1, 2, 3]);
    assert!(
        started.elapsed() >= Duration::from_secs(15),
        "a fresh lock is waited for: {:?}",
        started.elapsed()
    );
    store.drop_database().await.expect("cleanup");
}
