//! The only module with SQL. One implementation over sqlx's Any driver with portable SQL
//! (`$N` placeholders, TEXT / BIGINT / BLOB, unix seconds, JSON as TEXT) serves SQLite (the
//! embedded default) and PostgreSQL (several instances behind a load balancer).

mod admin;
mod api_keys;
mod audit;
mod clients;
mod devices;
mod email_links;
mod federation;
mod forward_auth;
mod grants;
mod housekeeping;
mod invites;
mod keys;
mod logout;
mod migrations;
mod passkeys;
mod pepper;
mod pushed;
mod registration;
mod scim;
mod sessions;
mod streams;
mod throttles;
mod totp;
mod users;

#[cfg(test)]
mod tests;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyQueryResult, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub use admin::SessionRow;
pub use api_keys::{ApiKeyRow, NewApiKey};
pub use audit::{AuditFilter, StoredEvent};
pub use clients::{NewClient, ORIGIN_ANONYMOUS, ORIGIN_DOCUMENT, ORIGIN_OPEN_PUBLIC, StoredClient};
pub use devices::{ApprovedDevice, Device, DeviceCodeRow, NewDevice, NewDeviceCode, PendingDevice};
pub use email_links::{
    EMAIL as EMAIL_LINK_EMAIL, EmailChange, EmailLink, NewEmailLink, RESET as EMAIL_LINK_RESET,
    SIGNIN as EMAIL_LINK_SIGNIN, VERIFY as EMAIL_LINK_VERIFY,
};
pub use federation::Provisioned;
pub use forward_auth::ForwardAuthSession;
pub use grants::{
    Authn, CodeRow, MAX_REFRESH_RETRY_GRACE, Redeemed, RefreshRow, Replay, Successor,
};
pub use invites::{AccountError, Invite, InviteOrigin, NewAccount};
pub use logout::{LogoutDelivery, LogoutOutcome};
pub use passkeys::{Ceremony, PasskeyRow, PasskeyUse};
pub use scim::ScimGroup;
pub use sessions::{Consent, NewSession, Session, SessionInfo};
pub use streams::StreamRow;
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

/// Set on every SQLite connection. WAL lets readers run beside the writer; NORMAL is durable
/// in WAL mode except for the last transactions before a power loss.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// A handle on the database; cheap to clone.
///
/// On SQLite, writes go through one connection behind an async mutex: writers then queue
/// in-process, in order, instead of colliding in SQLite's lock and sleeping in its busy
/// handler (which under load stalls requests for seconds). It is not a pool of one: sqlx
/// pings a pooled connection on every release (and by default on every acquire), each a round
/// trip to the connection's worker thread in a spawned task, and with one writer those hops
/// were the queue. Reads use the pool; WAL lets them run beside the writer. On PostgreSQL,
/// writes and reads share the pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    writer: Option<Arc<Writer>>,
    backend: Backend,
}

/// SQLite's one writing connection (`None` once the store is closed).
#[derive(Debug)]
struct Writer {
    conn: Mutex<Option<AnyConnection>>,
    /// How long a write waits for its turn before failing, like a pool's acquire timeout.
    wait: Duration,
    /// To open a new connection when the one there is has lost its worker thread.
    options: AnyConnectOptions,
}

impl Writer {
    async fn open(options: &AnyConnectOptions) -> Result<AnyConnection, sqlx::Error> {
        use sqlx::ConnectOptions as _;
        let mut conn = options.connect().await?;
        conn.execute(SQLITE_PRAGMAS).await?;
        Ok(conn)
    }

    /// Replaces a connection whose worker thread is gone (sqlx answers `WorkerCrashed` for
    /// every statement after that); a pool would have dropped it when it failed its ping.
    async fn reconnect(&self) {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            return; // closed
        }
        match Self::open(&self.options).await {
            Ok(conn) => {
                *slot = Some(conn);
                tracing::warn!("the SQLite writer connection failed and was replaced");
            }
            Err(e) => tracing::error!(error = %e, "replacing the SQLite writer connection failed"),
        }
    }
}

/// A connection to write through, held for one statement or transaction: SQLite's writer in
/// its turn, or a connection from the PostgreSQL pool.
pub(crate) enum WriteConn<'a> {
    Sqlite(MappedMutexGuard<'a, AnyConnection>),
    Pooled(PoolConnection<Any>),
}

impl Deref for WriteConn<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Sqlite(c) => c,
            Self::Pooled(c) => c,
        }
    }
}

impl DerefMut for WriteConn<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Sqlite(c) => c,
            Self::Pooled(c) => c,
        }
    }
}

/// A statement run through the writer: `.execute_w(self)` where a pool would be
/// `.execute(pool)`. The connection is held only while the statement runs.
pub(crate) trait Write {
    async fn execute_w(self, store: &Store) -> Result<AnyQueryResult, sqlx::Error>;
    async fn fetch_optional_w(self, store: &Store) -> Result<Option<AnyRow>, sqlx::Error>;
    async fn fetch_one_w(self, store: &Store) -> Result<AnyRow, sqlx::Error>;
}

impl<'q> Write for Query<'q, Any, AnyArguments<'q>> {
    async fn execute_w(self, store: &Store) -> Result<AnyQueryResult, sqlx::Error> {
        let done = self.execute(&mut *store.write_conn().await?).await;
        store.after_write(&done).await;
        done
    }
    async fn fetch_optional_w(self, store: &Store) -> Result<Option<AnyRow>, sqlx::Error> {
        let done = self.fetch_optional(&mut *store.write_conn().await?).await;
        store.after_write(&done).await;
        done
    }
    async fn fetch_one_w(self, store: &Store) -> Result<AnyRow, sqlx::Error> {
        let done = self.fetch_one(&mut *store.write_conn().await?).await;
        store.after_write(&done).await;
        done
    }
}

/// A value bound to a statement of [`Store::write_batch`]: owned, so the batch can run in a
/// task of its own.
#[derive(Clone, Debug)]
pub(crate) enum WriteArg {
    Text(String),
    Int(i64),
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
                // sqlx pings a connection on release (always) and, by default, again on
                // acquire: each a round trip to the connection's worker thread. A SQLite file
                // has no far end to lose, so the second ping only costs a hop per statement.
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let writer = Writer {
                    conn: Mutex::new(Some(Writer::open(&options).await?)),
                    wait: settings.acquire_timeout,
                    options: options.clone(),
                };
                let pool = sqlite_pool(settings.max_connections)
                    .connect_with(options)
                    .await?;
                (pool, Some(Arc::new(writer)))
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
        let mut conn = self.write_conn().await?;
        migrations::migrator(self.backend).run(&mut *conn).await?;
        Ok(())
    }

    /// Lets the next writer go first. Releasing SQLite's writer wakes the task waiting for it
    /// into this worker thread's LIFO slot, which no other worker may steal from: had this task
    /// gone on to sign an RSA id_token (a few hundred microseconds), the writer would have
    /// sat idle all that time. Measured (SQLite, 2 cores): RS256 refreshes 1,980/s without this
    /// yield, 3,850/s with it. A writer that lost its worker thread is replaced first.
    async fn after_write<T>(&self, done: &Result<T, sqlx::Error>) {
        if let Some(writer) = &self.writer {
            if matches!(done, Err(sqlx::Error::WorkerCrashed)) {
                writer.reconnect().await;
            }
            tokio::task::yield_now().await;
        }
    }

    /// A connection to write through (see [`Store`]), for a transaction; single statements
    /// use [`Write`]. Fails like a pool's acquire when the writer stays busy for the acquire
    /// timeout, or is closed.
    pub(crate) async fn write_conn(&self) -> Result<WriteConn<'_>, sqlx::Error> {
        let Some(writer) = &self.writer else {
            return Ok(WriteConn::Pooled(self.pool.acquire().await?));
        };
        let guard = tokio::time::timeout(writer.wait, writer.conn.lock())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        MutexGuard::try_map(guard, Option::as_mut)
            .map(WriteConn::Sqlite)
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Runs one atomic write and answers whether it returned a row. On PostgreSQL `sql` is one
    /// statement. On SQLite it is a whole transaction (`BEGIN IMMEDIATE; ...; COMMIT`) sent to
    /// the writer as one batch: the statements of a transaction then cost one hand-off to
    /// SQLite's worker thread instead of one each, while the writer is held. The batch runs in
    /// a task of its own, so a caller that goes away (a client hanging up) cannot stop it
    /// half-way; a failed batch is rolled back before the writer is let go.
    pub(crate) async fn write_batch(
        &self,
        sql: String,
        args: Vec<WriteArg>,
    ) -> Result<bool, StoreError> {
        fn bound(sql: &str, args: Vec<WriteArg>) -> Query<'_, Any, AnyArguments<'_>> {
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    WriteArg::Text(v) => q.bind(v),
                    WriteArg::Int(v) => q.bind(v),
                };
            }
            q
        }
        if self.writer.is_none() {
            let row = bound(&sql, args).fetch_optional(&self.pool).await?;
            return Ok(row.is_some());
        }
        let store = self.clone();
        let done = tokio::spawn(async move {
            let mut conn = store.write_conn().await?;
            let done = bound(&sql, args).fetch_all(&mut *conn).await;
            if done.is_err() {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            drop(conn);
            store.after_write(&done).await;
            Ok::<_, sqlx::Error>(!done?.is_empty())
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("write batch: {e}")))?;
        Ok(done?)
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
        if let Some(w) = &self.writer
            && let Some(conn) = w.conn.lock().await.take()
        {
            use sqlx::Connection as _;
            let _ = conn.close().await;
        }
        self.pool.close().await;
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
