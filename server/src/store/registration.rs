//! Initial access tokens and registration access tokens (RFC 7591 §3, RFC 7592 §1).

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::{Store, StoreError, placeholders};

impl Store {
    pub async fn create_initial_access_token(
        &self,
        digest: &str,
        now: i64,
        expires_at: Option<i64>,
        max_uses: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO initial_access_tokens (token_digest, created_at, expires_at, max_uses) VALUES ($1, $2, $3, $4)",
        )
        .bind(digest)
        .bind(now)
        .bind(expires_at)
        .bind(max_uses)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Whether an initial access token is known, unexpired and not used up, without using it:
    /// a registration checks it first and spends it ([`Store::use_initial_access_token`]) only
    /// once the request is valid.
    pub async fn initial_access_token_usable(
        &self,
        digests: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = digests.len();
        let sql = format!(
            "SELECT 1 AS ok FROM initial_access_tokens \
             WHERE token_digest IN ({}) AND (expires_at IS NULL OR expires_at > ${}) \
             AND (max_uses IS NULL OR uses < max_uses)",
            placeholders(1, n),
            n + 1
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        Ok(q.bind(now).fetch_optional(&self.pool).await?.is_some())
    }

    /// Uses an initial access token once, atomically: false if unknown, expired or used up.
    pub async fn use_initial_access_token(
        &self,
        digests: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = digests.len();
        let sql = format!(
            "UPDATE initial_access_tokens SET uses = uses + 1 \
             WHERE token_digest IN ({}) AND (expires_at IS NULL OR expires_at > ${}) \
             AND (max_uses IS NULL OR uses < max_uses) RETURNING token_digest",
            placeholders(1, n),
            n + 1
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        Ok(q.bind(now).fetch_optional_w(self).await?.is_some())
    }

    pub async fn set_registration_token(
        &self,
        client_id: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE clients SET registration_token_digest = $1 WHERE client_id = $2")
            .bind(digest)
            .bind(client_id)
            .execute_w(self)
            .await?;
        Ok(())
    }

    pub async fn registration_token_digest(
        &self,
        client_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT registration_token_digest FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("registration_token_digest")?,
            None => None,
        })
    }

    /// RFC 7592 §3: replaces the registration access token whose digest is `old` by `new`,
    /// and the metadata too when given, in one statement. False when the client is gone or
    /// its token has changed meanwhile (another read or update rotated it first): of two
    /// requests racing with the same token, one gets the new token, the other a 401.
    pub async fn rotate_registration_token(
        &self,
        client_id: &str,
        old: &str,
        new: &str,
        metadata: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE clients SET registration_token_digest = $1, \
             metadata = COALESCE($2, metadata), updated_at = $3 \
             WHERE client_id = $4 AND registration_token_digest = $5",
        )
        .bind(new)
        .bind(metadata)
        .bind(now)
        .bind(client_id)
        .bind(old)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a client's metadata; false when there is no such client (any more).
    pub async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE clients SET metadata = $1, updated_at = $2 WHERE client_id = $3")
                .bind(metadata)
                .bind(now)
                .bind(client_id)
                .execute_w(self)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a client and revokes every grant made to it.
    pub async fn delete_client(&self, client_id: &str, now: i64) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "UPDATE grants SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM consents WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the code-flow clients nobody vouches for (`open_public` registrations, copies
    /// of client ID metadata documents) made before `cutoff` that got no grant since and hold
    /// no live refresh token or code; their consents go with them. Returns how many. (Clients
    /// of plain `open` registration may use client_credentials, which leaves no grant: they
    /// are never removed here.)
    pub async fn purge_unused_clients(&self, cutoff: i64, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM clients WHERE origin IN ('open_public', 'document') AND created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM authorization_codes c \
                 WHERE c.client_id = clients.client_id AND c.expires_at > $2) \
             AND NOT EXISTS (SELECT 1 FROM grants g \
                 WHERE g.client_id = clients.client_id AND g.created_at >= $1) \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens r \
                 WHERE r.client_id = clients.client_id AND r.expires_at > $2 AND r.rotated_at IS NULL)",
        )
        .bind(cutoff)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(r.rows_affected())
    }

    /// What the RFC 9728 metadata of `resource` said (does it name this issuer?), while the
    /// answer is still to be used.
    pub async fn discovered_resource(
        &self,
        resource: &str,
        now: i64,
    ) -> Result<Option<bool>, StoreError> {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT authorized FROM discovered_resources WHERE resource = $1 AND expires_at > $2",
        )
        .bind(resource)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|a| a != 0))
    }

    pub async fn put_discovered_resource(
        &self,
        resource: &str,
        authorized: bool,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO discovered_resources (resource, authorized, fetched_at, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (resource) DO UPDATE SET \
             authorized = excluded.authorized, fetched_at = excluded.fetched_at, \
             expires_at = excluded.expires_at",
        )
        .bind(resource)
        .bind(i64::from(authorized))
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }
}
