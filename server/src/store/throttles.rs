//! Failure counters behind sign-in throttling.

use super::Write as _;
use sqlx::Row;

use super::{Store, StoreError, placeholders};

impl Store {
    /// The latest `blocked_until` among `keys` (0 when none is blocked).
    pub async fn blocked_until(&self, keys: &[String]) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT COALESCE(MAX(blocked_until), 0) AS until FROM throttles WHERE throttle_key IN ({})",
            placeholders(1, keys.len())
        );
        let mut q = sqlx::query(&sql);
        for k in keys {
            q = q.bind(k);
        }
        Ok(q.fetch_one(&self.pool).await?.try_get::<i64, _>("until")?)
    }

    /// Counts a failure for `key` (a fresh count when the last one is older than `window`
    /// seconds) and returns the count.
    pub async fn record_failure(
        &self,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO throttles (throttle_key, failures, last_failure_at, blocked_until) VALUES ($1, 1, $2, 0) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
             failures = CASE WHEN throttles.last_failure_at < $3 THEN 1 ELSE throttles.failures + 1 END, \
             last_failure_at = $2 \
             RETURNING failures",
        )
        .bind(key)
        .bind(now)
        .bind(now - window)
        .fetch_one_w(self)
        .await?;
        Ok(row.try_get::<i64, _>("failures")?)
    }

    pub async fn block_until(&self, key: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE throttles SET blocked_until = $1 WHERE throttle_key = $2 AND blocked_until < $1")
            .bind(until)
            .bind(key)
            .execute_w(self)
            .await?;
        Ok(())
    }

    pub async fn clear_throttle(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM throttles WHERE throttle_key = $1")
            .bind(key)
            .execute_w(self)
            .await?;
        Ok(())
    }
}
