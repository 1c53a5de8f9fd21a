//! The back-channel logout queue (OpenID Connect Back-Channel Logout 1.0): one row per
//! (client, ended session), written in the same transaction that ends the session, for every
//! client with a grant made in that session and a `backchannel_logout_uri`. Instances claim
//! due rows for a while (a lease) and send them; a failure comes back after a backoff, and
//! after the last attempt the row is marked failed. A crash mid-send leaves the lease to run
//! out, and another instance (or the same, restarted) sends it again.

use sqlx::Row;

use super::{Backend, Store, StoreError};

/// Rows of the queue for the sessions `sessions` (a condition on `s`, a `sessions` row; its
/// binds start at $2, $1 is now) that were just ended (revoked at $1, by the statement before
/// in the same transaction): every client with a grant in one of them whose metadata names a
/// `backchannel_logout_uri`.
pub(super) fn enqueue_sql(sessions: &str) -> String {
    format!(
        "INSERT INTO logout_deliveries (client_id, sid, user_id, created_at, next_attempt_at) \
         SELECT DISTINCT g.client_id, g.sid, s.user_id, $1, $1 \
         FROM sessions s JOIN grants g ON g.sid = s.sid JOIN clients c ON c.client_id = g.client_id \
         WHERE s.revoked_at = $1 AND ({sessions}) \
         AND c.metadata LIKE '%\"backchannel_logout_uri\"%' \
         ORDER BY g.client_id, g.sid \
         ON CONFLICT (client_id, sid) DO NOTHING"
    )
}

/// A logout to send: to `client_id`, for the user's session `sid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutDelivery {
    pub client_id: String,
    pub sid: String,
    pub user_id: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The claim's end: recording the outcome needs it still to be this claim.
    pub claimed_until: i64,
}

/// What a delivery came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogoutOutcome {
    Delivered,
    /// Try again at `next_attempt_at`.
    Retry {
        next_attempt_at: i64,
        error: String,
    },
    /// The last attempt failed (or the client has no logout URI any more).
    Failed {
        error: String,
    },
}

impl Store {
    /// Claims up to `limit` due deliveries for `lease` seconds: no other instance takes them
    /// meanwhile (PostgreSQL: `FOR UPDATE SKIP LOCKED`, and the claim re-checked on the row;
    /// SQLite: one writer).
    pub async fn claim_logouts(
        &self,
        now: i64,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<LogoutDelivery>, StoreError> {
        let free = "delivered_at IS NULL AND failed_at IS NULL \
                    AND (claimed_until IS NULL OR claimed_until <= $1)";
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE logout_deliveries SET claimed_until = $2 \
             WHERE (client_id, sid) IN (SELECT client_id, sid FROM logout_deliveries \
               WHERE {free} AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $3 {lock}) \
             AND {free} \
             RETURNING client_id, sid, user_id, attempts, claimed_until"
        );
        let rows = {
            let mut conn = self.write_conn().await?;
            sqlx::query(&sql)
                .bind(now)
                .bind(now + lease)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        };
        rows.iter()
            .map(|r| {
                Ok(LogoutDelivery {
                    client_id: r.try_get("client_id")?,
                    sid: r.try_get("sid")?,
                    user_id: r.try_get("user_id")?,
                    attempts: r.try_get("attempts")?,
                    claimed_until: r.try_get("claimed_until")?,
                })
            })
            .collect()
    }

    /// Records what became of a claimed delivery, and frees it; nothing if the claim ran
    /// out and the delivery was claimed again meanwhile (that instance records its own).
    pub async fn finish_logout(
        &self,
        d: &LogoutDelivery,
        outcome: &LogoutOutcome,
        now: i64,
    ) -> Result<(), StoreError> {
        use super::Write as _;
        let (set, at, error) = match outcome {
            LogoutOutcome::Delivered => ("delivered_at = $1", now, None),
            LogoutOutcome::Retry {
                next_attempt_at,
                error,
            } => (
                "next_attempt_at = $1",
                *next_attempt_at,
                Some(error.as_str()),
            ),
            LogoutOutcome::Failed { error } => ("failed_at = $1", now, Some(error.as_str())),
        };
        let sql = format!(
            "UPDATE logout_deliveries SET {set}, attempts = attempts + 1, claimed_until = NULL, \
             last_error = $4 WHERE client_id = $2 AND sid = $3 AND claimed_until = $5"
        );
        sqlx::query(&sql)
            .bind(at)
            .bind(&d.client_id)
            .bind(&d.sid)
            .bind(error)
            .bind(d.claimed_until)
            .execute_w(self)
            .await?;
        Ok(())
    }

    /// The deliveries of `client_id` (newest first), for tests and operators:
    /// (sid, attempts, delivered, failed).
    pub async fn logout_deliveries(
        &self,
        client_id: &str,
    ) -> Result<Vec<(String, i64, bool, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT sid, attempts, delivered_at, failed_at FROM logout_deliveries \
             WHERE client_id = $1 ORDER BY created_at DESC, sid",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("sid")?,
                    r.try_get("attempts")?,
                    r.try_get::<Option<i64>, _>("delivered_at")?.is_some(),
                    r.try_get::<Option<i64>, _>("failed_at")?.is_some(),
                ))
            })
            .collect()
    }
}
