//! RFC 9126 pushed authorization requests: stored by digest, taken once.

use super::Write as _;
use super::{Store, StoreError, placeholders};
use sqlx::Row;

impl Store {
    /// Stores a pushed request under the digest of its `request_uri`.
    pub async fn insert_pushed_request(
        &self,
        digest: &str,
        client_id: &str,
        params: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pushed_requests (request_digest, client_id, params, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest)
        .bind(client_id)
        .bind(params)
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Takes a pushed request: once, for the client that pushed it, before it expires, in one
    /// atomic statement (two instances racing for it: one gets it). Its parameters.
    pub async fn take_pushed_request(
        &self,
        digests: &[String],
        client_id: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "UPDATE pushed_requests SET used_at = $1 WHERE used_at IS NULL AND expires_at > $1 \
             AND client_id = $2 AND request_digest IN ({}) RETURNING params",
            placeholders(3, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(now).bind(client_id);
        for d in digests {
            q = q.bind(d);
        }
        let row = q.fetch_optional_w(self).await?;
        row.map(|r| r.try_get("params").map_err(StoreError::from))
            .transpose()
    }
}
