//! The only module with SQL. One implementation over sqlx's Any driver with portable SQL
//! (`$N` placeholders, TEXT / BIGINT / BLOB, unix seconds, JSON as TEXT) serves SQLite (the
//! embedded default) and PostgreSQL (several instances behind a load balancer).

mod clients;
mod devices;
mod email_links;
mod federation;
mod grants;
mod housekeeping;
mod invites;
mod keys;
mod migrations;
mod passkeys;
mod pepper;
mod registration;
mod sessions;
mod streams;
mod throttles;
mod totp;
mod users;

#[cfg(test)]
mod tests;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use clients::{NewClient, StoredClient};
pub use devices::{ApprovedDevice, Device, DeviceCodeRow, NewDevice, NewDeviceCode, PendingDevice};
pub use email_links::{
    EMAIL as EMAIL_LINK_EMAIL, EmailChange, EmailLink, NewEmailLink, RESET as EMAIL_LINK_RESET,
    SIGNIN as EMAIL_LINK_SIGNIN, VERIFY as EMAIL_LINK_VERIFY,
};
pub use federation::Provisioned;
pub use grants::{Authn, CodeRow, RefreshRow, Taken};
pub use invites::{AccountError, Invite, InviteOrigin, NewAccount};
pub use passkeys::{Ceremony, PasskeyRow, PasskeyUse};
pub use sessions::{Consent, NewSession, Session, SessionInfo};
pub use streams::{AuditEntry, StreamRow};
pub use totp::TotpRow;
pub use users::{NewUser, User, email_key};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// A handle on the database; cheap to clone.
///
/// On SQLite, writes go through a pool of one connection: writers then queue in-process, in
/// order, instead of colliding in SQLite's lock and sleeping in its busy handler (which under
/// load stalls requests for seconds). Reads use the full pool; WAL lets them run beside the
/// writer. On PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    writer: Option<AnyPool>,
    backend: Backend,
}

pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Store {
    /// Connects and runs pending migrations.
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        let store = Self::connect(url, settings).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options: AnyConnectOptions = url.parse()?;
        // One direct connection first: when the database is unreachable, this reports why
        // (refused, auth failed, no such database) where the pool would only time out.
        {
            use sqlx::ConnectOptions as _;
            use sqlx::Connection as _;
            let conn = options.connect().await?;
            let _ = conn.close().await;
        }
        let sqlite_pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(settings.acquire_timeout)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL lets readers run beside the writer; NORMAL is durable in WAL mode
                        // except for the last transactions before a power loss.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                        )
                        .await?;
                        Ok(())
                    })
                })
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let writer = sqlite_pool(1).connect_with(options.clone()).await?;
                let pool = sqlite_pool(settings.max_connections)
                    .connect_with(options)
                    .await?;
                (pool, Some(writer))
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options)
                    .await?;
                (pool, None)
            }
        };
        Ok(Self {
            pool,
            writer,
            backend,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::migrator(self.backend)
            .run(self.writer())
            .await?;
        Ok(())
    }

    /// The pool that writes go through.
    fn writer(&self) -> &AnyPool {
        self.writer.as_ref().unwrap_or(&self.pool)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// For `/readyz`: one round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.close().await;
        }
        self.pool.close().await;
    }
}

/// A database URL fit for a log line or an error: the password is replaced.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => raw
            .split_once('@')
            .map_or_else(|| raw.to_owned(), |(_, host)| format!("***@{host}")),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `$first, $first+1, ...` for `n` values, for `IN (...)` lists.
impl Store {
    /// A page of a user's rows of `table` (`columns`; our constants, never input), oldest
    /// first by `(created_at, id)`, after the row `after` (a cursor from the previous page; one
    /// that is not the user's gives an empty page), at most `limit`.
    async fn user_page(
        &self,
        table: &str,
        columns: &str,
        user_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let rows = match after {
            Some(after) => {
                sqlx::query(&format!(
                    "SELECT {columns} FROM {table} WHERE user_id = $1 AND (created_at, id) > \
                     (SELECT created_at, id FROM {table} WHERE id = $2 AND user_id = $1) \
                     ORDER BY created_at, id LIMIT $3"
                ))
                .bind(user_id)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => sqlx::query(&format!(
                "SELECT {columns} FROM {table} WHERE user_id = $1 ORDER BY created_at, id LIMIT $2"
            ))
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        };
        Ok(rows)
    }
}

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
