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

    fn low_cardinality(self) -> &'static str {
        match self {
            Self::Legacy => "String",
            Self::Modern => "LowCardinality(String)",
        }
    }
}

/// One schema version: a name and the statements that bring the previous version to it.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: fn(db: &str, flavor: Flavor) -> Vec<String>,
}

/// Every migration, oldest first. Statements are idempotent (`IF NOT EXISTS`), so two processes
/// migrating at once do no harm.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "diff_records",
    statements: v1,
}];

fn v1(db: &str, flavor: Flavor) -> Vec<String> {
    let lc = flavor.low_cardinality();
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.diff_records (
            exchange_id String,
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
            inserted_at DateTime DEFAULT now()
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(captured_at)
        ORDER BY (experiment, method, route, target, role, exchange_id)"
    )]
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
        let sql = (MIGRATIONS[0].statements)("db", Flavor::Legacy).join("\n");
        for banned in ["LowCardinality", "DateTime64", "Map(", "TTL"] {
            assert!(!sql.contains(banned), "{banned} in legacy schema");
        }
        let sql = (MIGRATIONS[0].statements)("db", Flavor::Modern).join("\n");
        assert!(sql.contains("LowCardinality(String)"));
    }
}
