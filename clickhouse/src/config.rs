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
