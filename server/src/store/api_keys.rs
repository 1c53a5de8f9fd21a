//! Personal API keys: `lk_<id>_<secret>`, kept as the id and a pepper digest of the whole
//! key. A key is looked up by its id and checked against the digest; its user must be
//! enabled at every use, so disabling the user stops the keys and deleting the user deletes
//! them (`ON DELETE CASCADE`).

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub secret_digest: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    /// Who made it: the user themselves, or an administrator.
    pub created_by: &'a str,
    pub now: i64,
    pub expires_at: Option<i64>,
}

/// A key as it is listed and checked. Holds the secret's digest, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub secret_digest: String,
    pub scope: String,
    pub resource: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
}

const COLUMNS: &str = "k.id, k.user_id, k.name, k.secret_digest, k.scope, k.resource, k.created_by, \
     k.created_at, k.expires_at, k.last_used_at, k.last_used_ip";

fn from_row(row: &AnyRow) -> Result<ApiKeyRow, StoreError> {
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        secret_digest: row.try_get("secret_digest")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        last_used_ip: row.try_get("last_used_ip")?,
    })
}

/// A key that has not been revoked and has not expired at `$1`.
const LIVE: &str = "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1)";

impl Store {
    /// Stores a key, unless the user already holds `max` live ones (false then).
    pub async fn create_api_key(&self, k: &NewApiKey<'_>, max: u32) -> Result<bool, StoreError> {
        let held: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM api_keys k WHERE k.user_id = $2 AND {LIVE}"
        ))
        .bind(k.now)
        .bind(k.user_id)
        .fetch_one(&self.pool)
        .await?;
        if held >= i64::from(max) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, secret_digest, scope, resource, created_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(k.id)
        .bind(k.user_id)
        .bind(k.name)
        .bind(k.secret_digest)
        .bind(k.scope)
        .bind(k.resource)
        .bind(k.created_by)
        .bind(k.now)
        .bind(k.expires_at)
        .execute_w(self)
        .await?;
        Ok(true)
    }

    /// The live key `id` of an enabled user, if there is one.
    pub async fn live_api_key(&self, id: &str, now: i64) -> Result<Option<ApiKeyRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.id = $2 AND {LIVE} AND u.disabled_at IS NULL"
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The user's live keys, newest first.
    pub async fn api_keys_of(&self, user_id: &str, now: i64) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE k.user_id = $2 AND {LIVE} \
             ORDER BY k.created_at DESC, k.id"
        ))
        .bind(now)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Revokes the user's key `id`; false if the user has no such live key.
    pub async fn revoke_api_key(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes a key's use: the time and address, at most once a minute from one address (a
    /// write on every request would serialise traffic on the database's writer).
    pub async fn note_api_key_use(
        &self,
        id: &str,
        now: i64,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1, last_used_ip = $2 WHERE id = $3")
            .bind(now)
            .bind(ip)
            .bind(id)
            .execute_w(self)
            .await?;
        Ok(())
    }

    /// Makes a service account: a user that is not a person, owned by `owner` (an
    /// administrator's id), with no way to sign in. Its address is `<id, lowercase>@service.invalid`
    /// (RFC 2606: never deliverable), so no mail can reach anyone for it.
    pub async fn create_service_account(
        &self,
        id: &str,
        name: &str,
        owner: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        // Lowercase, as every address is kept (`email_key`), so `--email` finds it.
        let email = format!("{}@service.invalid", id.to_ascii_lowercase());
        sqlx::query(
            "INSERT INTO users (id, email, email_key, email_verified, name, is_admin, \
             service_owner, created_at, updated_at) VALUES ($1, $2, $2, 0, $3, 0, $4, $5, $5)",
        )
        .bind(id)
        .bind(&email)
        .bind(name)
        .bind(owner)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(())
    }
}
