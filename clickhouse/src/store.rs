use crate::config::ClickHouseConfig;
use crate::migrate::{bootstrap, Flavor, SchemaOptions, MIGRATIONS};
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
    partition: crate::migrate::Partition,
    ttl_days: Option<u32>,
    minutes_ttl_days: Option<u32>,
}

/// A migration lock without a heartbeat for this long was left by a migrator that died (or was
/// cancelled); it is taken over.
const STALE_LOCK_SECS: u32 = 15;
/// How often the migrator holding the lock says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Keeps the migration lock's heartbeat going; dropping it stops the heartbeat.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
/// How long `migrate` waits for another process's migration before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(360);

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
            partition: config.partition,
            ttl_days: config.ttl_days,
            minutes_ttl_days: config.minutes_ttl_days,
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

    /// Creates the database and tables, or upgrades them, and applies the configured retention;
    /// returns the versions applied now. Safe to run on every start and from several processes
    /// at once: pending migrations run under a lock table (`schema_lock`), one process at a time.
    pub async fn migrate(&self) -> Result<Vec<u32>, Error> {
        let version = self.server_version().await?;
        let flavor = Flavor::from_version(&version);
        if flavor == Flavor::Legacy && (self.ttl_days.is_some() || self.minutes_ttl_days.is_some())
        {
            return Err(Error::Config(format!(
                "ttl_days and minutes_ttl_days need ClickHouse 19.6 or later (TTL); the server is {version}"
            )));
        }
        let options = SchemaOptions {
            flavor,
            partition: self.partition,
        };
        let db = &self.database;
        for statement in bootstrap(db) {
            self.execute(&statement, "migration bootstrap").await?;
        }
        let mut now = Vec::new();
        if !self.pending_migrations().await?.is_empty() {
            let heartbeat = self.lock_migrations().await?;
            let applied = self.apply_pending(&options, &version).await;
            drop(heartbeat);
            let unlocked = self.unlock_migrations().await;
            now = applied?;
            unlocked?;
        }
        self.apply_retention().await?;
        Ok(now)
    }

    async fn execute(&self, sql: &str, what: &'static str) -> Result<(), Error> {
        self.client
            .query(sql)
            .execute()
            .await
            .map_err(Error::query(what))
    }

    async fn pending_migrations(&self) -> Result<Vec<u32>, Error> {
        let applied: BTreeSet<u32> = self.applied_migrations().await?.into_iter().collect();
        Ok(MIGRATIONS
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    async fn apply_pending(
        &self,
        options: &SchemaOptions,
        server: &str,
    ) -> Result<Vec<u32>, Error> {
        let db = &self.database;
        // Read again under the lock: another process may have applied them meanwhile.
        let pending = self.pending_migrations().await?;
        let mut now = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| pending.contains(&m.version)) {
            for step in (m.steps)(db, options) {
                if let Some(condition) = &step.only_if {
                    let count = self
                        .client
                        .query(condition)
                        .fetch_one::<u64>()
                        .await
                        .map_err(Error::query("migration condition"))?;
                    if count == 0 {
                        continue;
                    }
                }
                self.execute(&step.sql, "migration").await?;
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
            tracing::info!(database = %db, version = m.version, name = m.name, server = %server, "Applied ClickHouse migration.");
            now.push(m.version);
        }
        Ok(now)
    }

    /// Takes the migration lock: creating a table fails when it exists, so only one process
    /// holds it. The holder writes a heartbeat row every [`HEARTBEAT`] while it migrates (the
    /// returned guard stops it when dropped, also when the migration is cancelled); a lock
    /// without a heartbeat for [`STALE_LOCK_SECS`] was left by a holder that died, and is dropped
    /// and retaken.
    async fn lock_migrations(&self) -> Result<Heartbeat, Error> {
        let db = &self.database;
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            let created = self
                .client
                .query(&format!(
                    "CREATE TABLE {db}.schema_lock (at DateTime DEFAULT now()) ENGINE = Memory"
                ))
                .execute()
                .await;
            match created {
                Ok(()) => {
                    let beat = format!("INSERT INTO {db}.schema_lock (at) VALUES (now())");
                    let client = self.client.clone();
                    let task = tokio::spawn(async move {
                        loop {
                            let _ = client.query(&beat).execute().await;
                            tokio::time::sleep(HEARTBEAT).await;
                        }
                    });
                    return Ok(Heartbeat(task));
                }
                Err(e) if crate::is_unavailable(&e) => return Err(Error::Unavailable(e)),
                Err(_) => {}
            }
            // Seconds since the last sign of life: the last heartbeat, else the creation.
            let age = self
                .client
                .query(&format!(
                    "SELECT toUInt32(greatest(0, toInt64(now()) - greatest( \
                       (SELECT toInt64(max(at)) FROM {db}.schema_lock), \
                       toInt64(metadata_modification_time)))) \
                     FROM system.tables WHERE database = '{db}' AND name = 'schema_lock'"
                ))
                .fetch_all::<u32>()
                .await;
            // The lock may have been dropped between the two statements: try again at once.
            let Ok(age) = age else { continue };
            if age.first().is_some_and(|age| *age > STALE_LOCK_SECS) {
                tracing::warn!(database = %db, "Taking over a stale ClickHouse migration lock (its holder stopped).");
                self.unlock_migrations().await?;
                continue;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Config(format!(
                    "another process has been migrating {db} for over {} s (table {db}.schema_lock); \
                     if none runs, drop that table",
                    LOCK_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn unlock_migrations(&self) -> Result<(), Error> {
        self.execute(
            &format!("DROP TABLE IF EXISTS {}.schema_lock", self.database),
            "releasing the migration lock",
        )
        .await
    }

    /// `ALTER … MODIFY TTL` on every start (idempotent), so changing `ttl_days` takes effect.
    async fn apply_retention(&self) -> Result<(), Error> {
        let statements =
            crate::migrate::retention_sql(&self.database, self.ttl_days, self.minutes_ttl_days);
        for statement in statements {
            self.execute(&statement, "setting the retention").await?;
        }
        Ok(())
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
