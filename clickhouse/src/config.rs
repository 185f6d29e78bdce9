use serde::{Deserialize, Serialize};

/// Where the ClickHouse store lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding shadowdiff's tables; created by `migrate`.
    #[serde(default = "default_database")]
    pub database: String,
    /// User to log in as; ClickHouse's `default` user when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// Password of `user`.
    #[serde(default)]
    pub password: Option<String>,
    /// Upper bound on one insert (sending and committing), in milliseconds.
    #[serde(default = "default_insert_timeout_ms")]
    pub insert_timeout_ms: u64,
    /// Partition of the tables `migrate` creates (`day` or `month`); existing tables keep theirs.
    #[serde(default)]
    pub partition: crate::migrate::Partition,
    /// Days `diff_records` rows are kept (ClickHouse TTL, 19.6 and later); forever when absent.
    #[serde(default)]
    pub ttl_days: Option<u32>,
    /// Days the per-minute aggregates (`diff_minutes`) are kept; forever when absent.
    #[serde(default)]
    pub minutes_ttl_days: Option<u32>,
}

fn default_database() -> String {
    "shadowdiff".to_string()
}

fn default_insert_timeout_ms() -> u64 {
    30_000
}

impl ClickHouseConfig {
    /// A configuration with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: default_database(),
            user: None,
            password: None,
            insert_timeout_ms: default_insert_timeout_ms(),
            partition: crate::migrate::Partition::default(),
            ttl_days: None,
            minutes_ttl_days: None,
        }
    }

    /// The same configuration with another database.
    pub fn with_database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    /// Database names are spliced into SQL, so only `[A-Za-z0-9_]` is accepted.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let ok = !self.database.is_empty()
            && self
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.database.starts_with(|c: char| c.is_ascii_digit());
        for (key, days) in [
            ("ttl_days", self.ttl_days),
            ("minutes_ttl_days", self.minutes_ttl_days),
        ] {
            if days == Some(0) {
                return Err(crate::Error::Config(format!(
                    "{key} must be at least 1 (leave it out to keep rows forever)"
                )));
            }
        }
        if ok {
            Ok(())
        } else {
            Err(crate::Error::Config(format!(
                "database name `{}` must be letters, digits and `_`, not starting with a digit",
                self.database
            )))
        }
    }
}
