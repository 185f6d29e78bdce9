//! Versioned schema migrations.

/// Which column types the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// ClickHouse before 19.9 (Debian's 18.16): plain `String` columns.
    Legacy,
    /// Current releases: `LowCardinality(String)` for low-cardinality columns.
    Modern,
}

impl Flavor {
    /// Parses `SELECT version()` output such as `18.16.1` or `24.8.4.13`.
    pub fn from_version(version: &str) -> Self {
        let mut parts = version
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        if major > 19 || (major == 19 && minor >= 9) {
            Self::Modern
        } else {
            Self::Legacy
        }
    }

    /// The `--flavor` value naming it: `18.16` or `current`.
    pub fn flag_name(self) -> &'static str {
        match self {
            Self::Legacy => "18.16",
            Self::Modern => "current",
        }
    }

    fn low_cardinality(self) -> &'static str {
        match self {
            Self::Legacy => "String",
            Self::Modern => "LowCardinality(String)",
        }
    }
}

/// How `diff_records` is partitioned; fixed when a table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    /// One partition per day: retention drops whole days, queries over a day read one part set.
    #[default]
    Day,
    /// One partition per month (the layout before migration 2).
    Month,
}

impl Partition {
    fn expression(self, column: &str) -> String {
        match self {
            Self::Day => format!("toYYYYMMDD({column})"),
            Self::Month => format!("toYYYYMM({column})"),
        }
    }
}

/// What the schema statements depend on besides the database name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaOptions {
    /// The server's column types.
    pub flavor: Flavor,
    /// The partition of tables created from now on.
    pub partition: Partition,
}

impl SchemaOptions {
    /// The defaults for a server of `flavor`.
    pub fn new(flavor: Flavor) -> Self {
        Self {
            flavor,
            partition: Partition::default(),
        }
    }
}

/// One statement of a migration, with the condition under which `migrate` runs it: a query
/// returning a count, non-zero to run. The conditions make a migration that was interrupted
/// half-way resumable (a rebuild renames, then copies).
pub struct Step {
    /// The statement.
    pub sql: String,
    /// A `SELECT count() …` that must be non-zero for the statement to run; always when absent.
    pub only_if: Option<String>,
}

impl Step {
    fn always(sql: String) -> Self {
        Self { sql, only_if: None }
    }
}

/// One schema version: a name and the steps that bring the previous version to it.
pub struct Migration {
    /// Recorded in `schema_migrations` once applied.
    pub version: u32,
    /// What it does, also recorded.
    pub name: &'static str,
    /// Its statements for a database and server.
    pub steps: fn(db: &str, options: &SchemaOptions) -> Vec<Step>,
}

/// Every migration, oldest first. `migrate` applies them under a lock table, so two processes
/// starting at once do not interleave; steps are idempotent or guarded so an interrupted
/// migration resumes.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "diff_records",
        steps: v1,
    },
    Migration {
        version: 2,
        name: "diff_records_merge_tree",
        steps: v2,
    },
    Migration {
        version: 3,
        name: "diff_minutes",
        steps: v3,
    },
];

/// `diff_records`' columns (unchanged since migration 1).
fn record_columns(flavor: Flavor) -> String {
    let lc = flavor.low_cardinality();
    format!(
        "exchange_id String,
            captured_at DateTime,
            captured_at_ms UInt64,
            experiment {lc},
            method {lc},
            route {lc},
            target {lc},
            role {lc},
            outcome {lc},
            control_status Nullable(UInt16),
            target_status Nullable(UInt16),
            control_latency_us Nullable(UInt64),
            target_latency_us Nullable(UInt64),
            fingerprint UInt64,
            detail Nullable(String),
            notes Array(String),
            side_effects Array(String),
            diff_path Array(String),
            diff_kind Array({lc}),
            diff_control Array(Nullable(String)),
            diff_candidate Array(Nullable(String)),
            noise_path Array(String),
            noise_kind Array({lc}),
            noise_control Array(Nullable(String)),
            noise_candidate Array(Nullable(String)),
            noise_reason Array({lc}),
            field_path Array(String),
            field_kind Array({lc}),
            field_noise Array(UInt8),
            field_reason Array({lc}),
            schema_version UInt32,
            inserted_at DateTime DEFAULT now()"
    )
}

const RECORDS_KEY: &str = "(experiment, method, route, target, role, exchange_id)";

fn v1(db: &str, options: &SchemaOptions) -> Vec<Step> {
    vec![Step::always(format!(
        "CREATE TABLE IF NOT EXISTS {db}.diff_records (
            {}
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(captured_at)
        ORDER BY {RECORDS_KEY}",
        record_columns(options.flavor)
    ))]
}

/// `diff_records` becomes a plain MergeTree: background merges of the ReplacingMergeTree kept
/// the last *inserted* copy of a redelivered exchange, which need not be the copy the report's
/// redelivery order picks, so a report could change after a merge. Now every copy stays (they
/// are rare: redeliveries after a crash) and every reader picks one the same way. The rebuild
/// also applies the configured partition.
fn v2(db: &str, options: &SchemaOptions) -> Vec<Step> {
    let replacing = format!(
        "SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'diff_records' \
         AND engine LIKE 'Replacing%'"
    );
    let leftover = format!(
        "SELECT count() FROM system.tables WHERE database = '{db}' \
         AND name = 'diff_records_replacing'"
    );
    vec![
        Step {
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.diff_records_next (
            {}
        ) ENGINE = MergeTree
        PARTITION BY {}
        ORDER BY {RECORDS_KEY}",
                record_columns(options.flavor),
                options.partition.expression("captured_at")
            ),
            only_if: Some(replacing.clone()),
        },
        // Writers keep inserting: from here on into the new table.
        Step {
            sql: format!(
                "RENAME TABLE {db}.diff_records TO {db}.diff_records_replacing, \
                 {db}.diff_records_next TO {db}.diff_records"
            ),
            only_if: Some(replacing),
        },
        Step {
            sql: format!("INSERT INTO {db}.diff_records SELECT * FROM {db}.diff_records_replacing"),
            only_if: Some(leftover),
        },
        Step::always(format!("DROP TABLE IF EXISTS {db}.diff_records_replacing")),
    ]
}

/// The columns of `diff_minutes` as the view computes them from `diff_records`.
const MINUTE_SELECT: &str = "experiment,
            toStartOfMinute(captured_at) AS minute,
            method,
            route,
            target,
            role,
            outcome,
            fingerprint,
            multiIf(outcome = 'error', splitByChar(':', ifNull(detail, 'error'))[1],
                    outcome = 'blocked', ifNull(detail, 'blocked'), '') AS detail_key,
            arrayStringConcat(arraySort(side_effects), '\\n') AS side_effect_set,
            countState() AS records,
            minState(captured_at) AS first_seen,
            maxState(captured_at) AS last_seen,
            minState(exchange_id) AS sample_exchange_id,
            argMinState(diff_path, exchange_id) AS sample_paths,
            groupUniqArrayArrayState(arrayFilter((f, n) -> n = 0,
                arrayMap((p, k) -> concat(p, '\\t', k), field_path, field_kind), field_noise)) AS fields,
            quantilesTDigestIfState(0.5, 0.99)(ifNull(control_latency_us, 0), isNotNull(control_latency_us)) AS control_latency,
            quantilesTDigestIfState(0.5, 0.99)(ifNull(target_latency_us, 0), isNotNull(target_latency_us)) AS target_latency";

const MINUTE_GROUP: &str = "GROUP BY experiment, minute, method, route, target, role, outcome, \
    fingerprint, detail_key, side_effect_set";

/// Per-minute aggregates of `diff_records` (a materialized view into an AggregatingMergeTree),
/// so dashboards over weeks read thousands of rows per endpoint instead of millions. They
/// count every delivered copy: a redelivered exchange (rare) counts once per copy here, once in
/// the report.
///
/// Monthly partitions whatever `partition` says: the aggregates are small, and ClickHouse 18.16
/// inserts aggregate states split over several partitions ten times slower.
fn v3(db: &str, options: &SchemaOptions) -> Vec<Step> {
    let lc = options.flavor.low_cardinality();
    vec![
        Step::always(format!(
            "CREATE TABLE IF NOT EXISTS {db}.diff_minutes (
            experiment {lc},
            minute DateTime,
            method {lc},
            route {lc},
            target {lc},
            role {lc},
            outcome {lc},
            fingerprint UInt64,
            detail_key String,
            side_effect_set String,
            records AggregateFunction(count),
            first_seen AggregateFunction(min, DateTime),
            last_seen AggregateFunction(max, DateTime),
            sample_exchange_id AggregateFunction(min, String),
            sample_paths AggregateFunction(argMin, Array(String), String),
            fields AggregateFunction(groupUniqArrayArray, Array(String)),
            control_latency AggregateFunction(quantilesTDigestIf(0.5, 0.99), UInt64, UInt8),
            target_latency AggregateFunction(quantilesTDigestIf(0.5, 0.99), UInt64, UInt8)
        ) ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(minute)
        ORDER BY (experiment, method, route, target, role, minute, outcome, fingerprint, detail_key, side_effect_set)"
        )),
        // The moment from which the view counts rows: a little ahead, so the view exists
        // before any row stamped at or after it is inserted; the rows before it are copied
        // once the moment has passed. No row is counted twice or missed (an insert still
        // running seconds after it was stamped aside).
        Step::always(format!(
            "CREATE TABLE IF NOT EXISTS {db}.diff_minutes_start (since DateTime) ENGINE = TinyLog"
        )),
        Step {
            sql: format!("INSERT INTO {db}.diff_minutes_start SELECT now() + 2"),
            only_if: Some(format!(
                "SELECT toUInt64(count() = 0) FROM {db}.diff_minutes_start"
            )),
        },
        Step::always(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.diff_minutes_mv TO {db}.diff_minutes AS
        SELECT {MINUTE_SELECT}
        FROM {db}.diff_records
        WHERE inserted_at >= (SELECT min(since) FROM {db}.diff_minutes_start)
        {MINUTE_GROUP}"
        )),
        // Past the moment by a second: every row stamped before it has been inserted.
        Step::always("SELECT sleep(3)".to_string()),
        Step::always(format!(
            "INSERT INTO {db}.diff_minutes
        SELECT {MINUTE_SELECT}
        FROM {db}.diff_records
        WHERE inserted_at < (SELECT min(since) FROM {db}.diff_minutes_start)
        {MINUTE_GROUP}"
        )),
    ]
}

/// The whole schema of `db` for a server of `flavor` as one SQL script, for DBAs who review and
/// apply it themselves (`shadowdiff migrate --print-sql`): what `migrate` runs, in order, with
/// the `schema_migrations` rows that tell `migrate` it was applied.
pub fn schema_sql(db: &str, options: &SchemaOptions) -> String {
    let flavor = options.flavor;
    let mut out = format!(
        "-- shadowdiff schema for ClickHouse {}, database `{db}`.\n\
         -- Generated by `shadowdiff migrate --print-sql --flavor {}`; do not edit.\n\
         -- `shadowdiff migrate` applies the same statements itself and skips those recorded\n\
         -- in {db}.schema_migrations.\n",
        match flavor {
            Flavor::Legacy => "18.16 up to 19.8",
            Flavor::Modern => "19.9 and later",
        },
        flavor.flag_name()
    );
    for statement in bootstrap(db) {
        out.push_str(&format!("\n{statement};\n"));
    }
    for m in MIGRATIONS {
        out.push_str(&format!("\n-- Migration {}: {}\n", m.version, m.name));
        for step in (m.steps)(db, options) {
            if let Some(condition) = &step.only_if {
                out.push_str(&format!("-- only when ({condition}) > 0:\n"));
            }
            out.push_str(&format!("{};\n", step.sql));
        }
        out.push_str(&format!(
            "INSERT INTO {db}.schema_migrations (version, name) VALUES ({}, '{}');\n",
            m.version, m.name
        ));
    }
    out
}

/// The statements that set the retention of the tables: `ALTER TABLE … MODIFY TTL`, for
/// ClickHouse 19.6 and later. `migrate` runs them at every start, so a new value replaces the old.
pub fn retention_sql(
    db: &str,
    ttl_days: Option<u32>,
    minutes_ttl_days: Option<u32>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(days) = ttl_days {
        out.push(format!(
            "ALTER TABLE {db}.diff_records MODIFY TTL captured_at + INTERVAL {days} DAY"
        ));
    }
    if let Some(days) = minutes_ttl_days {
        out.push(format!(
            "ALTER TABLE {db}.diff_minutes MODIFY TTL minute + INTERVAL {days} DAY"
        ));
    }
    out
}

pub(crate) fn bootstrap(db: &str) -> Vec<String> {
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
                version UInt32,
                name String,
                applied_at DateTime DEFAULT now()
            ) ENGINE = MergeTree ORDER BY version"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_flavors() {
        assert_eq!(Flavor::from_version("18.16.1"), Flavor::Legacy);
        assert_eq!(Flavor::from_version("19.8.3.8"), Flavor::Legacy);
        assert_eq!(Flavor::from_version("19.9.2.4"), Flavor::Modern);
        assert_eq!(Flavor::from_version("24.8.4.13"), Flavor::Modern);
        assert_eq!(Flavor::from_version("garbage"), Flavor::Legacy);
    }

    #[test]
    fn legacy_schema_avoids_new_types() {
        let legacy = schema_sql("db", &SchemaOptions::new(Flavor::Legacy));
        for banned in [
            "LowCardinality",
            "DateTime64",
            " Map(",
            "TTL",
            "SimpleAggregateFunction",
        ] {
            assert!(!legacy.contains(banned), "{banned} in legacy schema");
        }
        let current = schema_sql("db", &SchemaOptions::new(Flavor::Modern));
        assert!(current.contains("LowCardinality(String)"));
    }

    #[test]
    fn the_partition_applies_to_tables_created_from_migration_2() {
        let monthly = SchemaOptions {
            partition: Partition::Month,
            ..SchemaOptions::new(Flavor::Modern)
        };
        let sql = schema_sql("db", &monthly);
        assert!(!sql.contains("toYYYYMMDD"));
        let daily = schema_sql("db", &SchemaOptions::new(Flavor::Modern));
        assert!(daily.contains("PARTITION BY toYYYYMMDD(captured_at)"));
        // Migration 1 stays as it was applied everywhere.
        assert_eq!(
            daily.matches("PARTITION BY toYYYYMM(captured_at)").count(),
            1
        );
    }
}
