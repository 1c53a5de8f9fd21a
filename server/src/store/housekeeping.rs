//! Single-use records and expired credentials are removed once nothing can use them.

use super::Write as _;
use super::{Store, StoreError, is_unique_violation};

impl Store {
    /// Records a client assertion's jti; false when it was already used (a replay).
    pub async fn use_assertion_jti(&self, key: &str, expires_at: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("INSERT INTO used_assertions (jti_key, expires_at) VALUES ($1, $2)")
            .bind(key)
            .bind(expires_at)
            .execute_w(self)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes what has expired: the sealed successors of refresh tokens rotated longer ago
    /// than any retry grace, used assertion ids, codes, revoked access-token ids, refresh
    /// tokens and grants past their absolute lifetime, sessions ended a day ago, spent
    /// initial access tokens, expired mailed links and unused expired invitations. Returns the number of rows removed.
    pub async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let day_ago = now - 86_400;
        let statements: [(&str, i64); 18] = [
            ("DELETE FROM pushed_requests WHERE expires_at < $1", now),
            (
                "DELETE FROM discovered_resources WHERE expires_at < $1",
                now,
            ),
            // The retry grace of a rotated refresh token is over: its successor, sealed for
            // the retry, goes (the digest stays, for replay detection).
            (
                "UPDATE refresh_tokens SET successor_sealed = NULL \
                 WHERE successor_sealed IS NOT NULL AND rotated_at < $1",
                now - super::MAX_REFRESH_RETRY_GRACE,
            ),
            ("DELETE FROM ceremonies WHERE expires_at < $1", now),
            (
                "DELETE FROM forward_auth_sessions WHERE expires_at < $1",
                now,
            ),
            (
                "DELETE FROM api_keys WHERE (revoked_at IS NOT NULL AND revoked_at < $1) \
                 OR (expires_at IS NOT NULL AND expires_at < $1)",
                day_ago,
            ),
            (
                "DELETE FROM throttles WHERE blocked_until < $1 AND last_failure_at < $1",
                day_ago,
            ),
            ("DELETE FROM used_assertions WHERE expires_at < $1", now),
            ("DELETE FROM authorization_codes WHERE expires_at < $1", now),
            (
                "DELETE FROM revoked_access_tokens WHERE expires_at < $1",
                now,
            ),
            ("DELETE FROM refresh_tokens WHERE expires_at < $1", now),
            ("DELETE FROM grants WHERE expires_at < $1", now),
            (
                "DELETE FROM sessions WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)",
                day_ago,
            ),
            (
                "DELETE FROM initial_access_tokens WHERE expires_at IS NOT NULL AND expires_at < $1",
                now,
            ),
            ("DELETE FROM email_links WHERE expires_at < $1", now),
            // A day late, so a device polling after expiry still hears expired_token.
            ("DELETE FROM device_codes WHERE expires_at < $1", day_ago),
            (
                "DELETE FROM invites WHERE expires_at < $1 AND used_at IS NULL",
                now,
            ),
            // Back-channel logouts sent or given up, a week on (kept that long to look into).
            (
                "DELETE FROM logout_deliveries WHERE (delivered_at IS NOT NULL AND delivered_at < $1) \
                 OR (failed_at IS NOT NULL AND failed_at < $1)",
                now - 7 * 86_400,
            ),
        ];
        let mut removed = 0;
        for (sql, at) in statements {
            removed += sqlx::query(sql)
                .bind(at)
                .execute_w(self)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}
