use crate::config::ClickHouseConfig;
use crate::migrate::{bootstrap, Flavor, MIGRATIONS};
use crate::row::DiffRow;
use crate::Error;
use clickhouse::Client;
use shadowdiff_model::DiffRecord;
use std::collections::BTreeSet;
use std::time::Duration;

/// A handle on shadowdiff's tables in one ClickHouse database. Cheap to clone.
#[derive(Clone)]
pub struct ClickHouseStore {
    pub(crate) client: Client,
    pub(crate) database: String,
    insert_timeout: Duration,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl ClickHouseStore {
    /// Builds the client; no request is made until the first call.
    pub fn new(config: &ClickHouseConfig) -> Result<Self, Error> {
        config.validate()?;
        // Validation needs RowBinaryWithNamesAndTypes, which ClickHouse 18.16 lacks.
        let mut client = Client::default()
            .with_url(&config.url)
            .with_validation(false);
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password);
        }
        Ok(Self {
            client,
            database: config.database.clone(),
            insert_timeout: Duration::from_millis(config.insert_timeout_ms),
        })
    }

    /// The database holding shadowdiff's tables.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// `SELECT version()`.
    pub async fn server_version(&self) -> Result<String, Error> {
        self.client
            .query("SELECT version()")
            .fetch_one::<String>()
            .await
            .map_err(Error::query("version query"))
    }

    /// Creates the database and tables, or upgrades them; returns the versions applied now.
    /// Safe to run on every start.
    pub async fn migrate(&self) -> Result<Vec<u32>, Error> {
        let version = self.server_version().await?;
        let flavor = Flavor::from_version(&version);
        let db = &self.database;
        for statement in bootstrap(db) {
            self.client
                .query(&statement)
                .execute()
                .await
                .map_err(Error::query("migration bootstrap"))?;
        }
        let applied: BTreeSet<u32> = self
            .client
            .query(&format!(
                "SELECT DISTINCT version FROM {db}.schema_migrations"
            ))
            .fetch_all::<u32>()
            .await
            .map_err(Error::query("reading schema_migrations"))?
            .into_iter()
            .collect();
        let mut now = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            for statement in (m.statements)(db, flavor) {
                self.client
                    .query(&statement)
                    .execute()
                    .await
                    .map_err(Error::query("migration"))?;
            }
            self.client
                .query(&format!(
                    "INSERT INTO {db}.schema_migrations (version, name) VALUES (?, ?)"
                ))
                .bind(m.version)
                .bind(m.name)
                .execute()
                .await
                .map_err(Error::query("recording a migration"))?;
            tracing::info!(database = %db, version = m.version, name = m.name, server = %version, "Applied ClickHouse migration.");
            now.push(m.version);
        }
        Ok(now)
    }

    /// Versions recorded in `schema_migrations`.
    pub async fn applied_migrations(&self) -> Result<Vec<u32>, Error> {
        self.client
            .query(&format!(
                "SELECT DISTINCT version FROM {}.schema_migrations ORDER BY version",
                self.database
            ))
            .fetch_all::<u32>()
            .await
            .map_err(Error::query("reading schema_migrations"))
    }

    /// Inserts `records` in one INSERT. `Ok` means the server committed every row. Duplicates
    /// (the same exchange × target delivered twice) collapse in the table and count once in
    /// reports.
    pub async fn insert_batch(&self, records: &[DiffRecord]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let table = format!("{}.diff_records", self.database);
        let mut insert = self
            .client
            .insert_unescaped::<DiffRow>(&table)
            .await
            .map_err(Error::query("insert"))?
            .with_timeouts(Some(self.insert_timeout), Some(self.insert_timeout));
        for r in records {
            insert
                .write(&DiffRow::from(r))
                .await
                .map_err(Error::query("insert"))?;
        }
        insert.end().await.map_err(Error::query("insert"))?;
        tracing::debug!(rows = records.len(), "Inserted diff records.");
        Ok(())
    }

    /// The experiments that have results, sorted (to name them when a report asks for one that
    /// has none).
    pub async fn experiments(&self) -> Result<Vec<String>, Error> {
        self.client
            .query(&format!(
                "SELECT DISTINCT experiment FROM {}.diff_records ORDER BY experiment",
                self.database
            ))
            .fetch_all::<String>()
            .await
            .map_err(Error::query("experiments"))
    }

    /// Rows in `diff_records` without de-duplication (for tests and diagnostics).
    pub async fn raw_row_count(&self) -> Result<u64, Error> {
        self.client
            .query(&format!(
                "SELECT count() FROM {}.diff_records",
                self.database
            ))
            .fetch_one::<u64>()
            .await
            .map_err(Error::query("count"))
    }

    /// Drops the database (tests).
    pub async fn drop_database(&self) -> Result<(), Error> {
        self.client
            .query(&format!("DROP DATABASE IF EXISTS {}", self.database))
            .execute()
            .await
            .map_err(Error::query("drop database"))
    }
}
