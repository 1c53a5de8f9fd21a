//! What operators do to users, clients and sessions (the CLI, and the admin API and console
//! of issue 16): listing, changing, deleting. Deleting a user is one transaction.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::users::{USER_COLUMNS, user_from_row};
use super::{Store, StoreError, StoredClient, User};

/// A live browser session of any user, as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionRow {
    pub sid: String,
    pub user_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// SQL: another enabled administrator than the user whose id is parameter `$n` exists.
pub(super) fn other_admin(n: usize) -> String {
    format!(
        "EXISTS (SELECT 1 FROM users o WHERE o.is_admin = 1 AND o.disabled_at IS NULL AND o.id <> ${n})"
    )
}

/// Why the last enabled administrator cannot be deleted, disabled or demoted.
pub const LAST_ADMIN: &str = "this is the last enabled administrator: make another one first";

/// `%`, `_` and `\` of a LIKE pattern, escaped (with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl Store {
    /// Users in id order after `after`, at most `limit`; `search` matches the address or the
    /// name (case-insensitively, anywhere).
    pub async fn list_users(
        &self,
        search: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = search.map(|s| format!("%{}%", like_escape(&s.to_lowercase())));
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id > $1 \
             AND ($2 = '' OR email_key LIKE $3 ESCAPE '\\' OR LOWER(COALESCE(name, '')) LIKE $3 ESCAPE '\\') \
             ORDER BY id LIMIT $4"
        ))
        .bind(after.unwrap_or(""))
        .bind(if pattern.is_some() { "x" } else { "" })
        .bind(pattern.as_deref().unwrap_or(""))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Makes the user an administrator or not; false if there is no such user.
    pub async fn set_user_admin(
        &self,
        user_id: &str,
        admin: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(&format!(
            "UPDATE users SET is_admin = $1, updated_at = $2 WHERE id = $3 AND ($1 = 1 OR {})",
            other_admin(3)
        ))
        .bind(i64::from(admin))
        .bind(now)
        .bind(user_id)
        .execute_w(self)
        .await?
        .rows_affected();
        if n == 0 && !admin && self.user_by_id(user_id).await?.is_some() {
            return Err(StoreError::Conflict(LAST_ADMIN));
        }
        Ok(n == 1)
    }

    /// Deletes a user and everything that is theirs, in one transaction: their sessions end
    /// (and the back-channel logouts they call for are queued, to be sent after), their grants
    /// are revoked (so access tokens already out turn inactive) and keep no link to them,
    /// and their codes, refresh tokens, devices, passkeys, authenticator app, recovery codes,
    /// mailed links, stream destinations, consents, linked identities and ceremonies go; so
    /// does the account. False if there is no such user.
    pub async fn delete_user(&self, user_id: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        // Never the last enabled administrator: nobody could manage the server after.
        let last_admin: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM users WHERE id = $1 AND is_admin = 1 AND NOT {}",
            other_admin(1)
        ))
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if last_admin > 0 {
            return Err(StoreError::Conflict(LAST_ADMIN));
        }
        super::sessions::end_sessions_in(&mut tx, "s.user_id = $2", now, &[user_id]).await?;
        sqlx::query(
            "UPDATE grants SET revoked_at = COALESCE(revoked_at, $1), user_id = NULL \
             WHERE user_id = $2",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE invites SET used_by = NULL, email = NULL WHERE used_by = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for table in [
            "authorization_codes",
            "refresh_tokens",
            "device_codes",
            "devices",
            "consents",
            "passkeys",
            "ceremonies",
            "totp",
            "recovery_codes",
            "email_links",
            "streams",
            "federated_identities",
            "scim_group_members",
            "sessions",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Clients in id order after `after`, at most `limit`.
    pub async fn list_clients(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredClient>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, secret_digest, metadata, created_at, origin, document_expires_at, \
             previous_secret_digest, previous_secret_expires_at FROM clients \
             WHERE client_id > $1 ORDER BY client_id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::clients::client_from_row).collect()
    }

    /// Replaces a client's secret digest; the one it replaces keeps working until
    /// `previous_until` when that is later than `now` (a grace for switching over). False if
    /// there is no such client with a secret.
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
        new_digest: &str,
        previous_until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let keep = previous_until > now;
        let n = sqlx::query(
            "UPDATE clients SET previous_secret_digest = CASE WHEN $1 = 1 THEN secret_digest ELSE NULL END, \
             previous_secret_expires_at = CASE WHEN $1 = 1 THEN $2 ELSE NULL END, \
             secret_digest = $3, updated_at = $4 \
             WHERE client_id = $5 AND secret_digest IS NOT NULL",
        )
        .bind(i64::from(keep))
        .bind(previous_until)
        .bind(new_digest)
        .bind(now)
        .bind(client_id)
        .execute_w(self)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Live sessions, of one user or of everyone, most recently used first, at most `limit`.
    pub async fn list_sessions(
        &self,
        user_id: Option<&str>,
        now: i64,
        limit: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT sid, user_id, ip, user_agent, created_at, last_seen_at, expires_at FROM sessions \
             WHERE revoked_at IS NULL AND expires_at > $1 AND ($2 = '' OR user_id = $2) \
             ORDER BY last_seen_at DESC, sid LIMIT $3",
        )
        .bind(now)
        .bind(user_id.unwrap_or(""))
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRow {
                    sid: r.try_get("sid")?,
                    user_id: r.try_get("user_id")?,
                    ip: r.try_get("ip")?,
                    user_agent: r.try_get("user_agent")?,
                    created_at: r.try_get("created_at")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Ends a session by its id, whoever's it is (queuing its back-channel logouts); the
    /// user it was of, or none when there is no such live session.
    pub async fn end_session(&self, sid: &str, now: i64) -> Result<Option<String>, StoreError> {
        let user: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM sessions WHERE sid = $1 AND revoked_at IS NULL",
        )
        .bind(sid)
        .fetch_optional(&self.pool)
        .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        let n = self.end_sessions("s.sid = $2", now, &[sid]).await?;
        Ok((n == 1).then_some(user))
    }
}
