//! Browser sessions and remembered consents.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, placeholders};

pub struct NewSession<'a> {
    pub id_digest: &'a str,
    pub sid: &'a str,
    pub user_id: &'a str,
    pub auth_time: i64,
    /// JSON array of RFC 8176 values.
    pub amr: &'a str,
    pub acr: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub now: i64,
    pub expires_at: i64,
}

/// A session as the account page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub sid: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub amr: Vec<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub sid: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl Store {
    pub async fn create_session(&self, s: &NewSession<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_digest, sid, user_id, auth_time, amr, acr, ip, user_agent, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
        )
        .bind(s.id_digest)
        .bind(s.sid)
        .bind(s.user_id)
        .bind(s.auth_time)
        .bind(s.amr)
        .bind(s.acr)
        .bind(s.ip)
        .bind(s.user_agent)
        .bind(s.now)
        .bind(s.expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// The live session whose id digests to one of `digests` (one per pepper key), if any:
    /// not revoked, not past its absolute expiry, used within `idle` seconds, and its user
    /// not disabled.
    pub async fn live_session(
        &self,
        digests: &[String],
        now: i64,
        idle: i64,
    ) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT s.sid, s.user_id, s.auth_time, s.amr, s.acr, s.created_at, s.last_seen_at, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_digest IN ({}) AND s.revoked_at IS NULL AND s.expires_at > ${} \
             AND s.last_seen_at > ${} AND u.disabled_at IS NULL",
            placeholders(1, digests.len()),
            digests.len() + 1,
            digests.len() + 2,
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        let row = q
            .bind(now)
            .bind(now.saturating_sub(idle))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Records use, at most once a minute per session to keep writes off the hot path.
    pub async fn touch_session(&self, sid: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE sid = $2 AND last_seen_at < $3")
            .bind(now)
            .bind(sid)
            .bind(now - 60)
            .execute_w(self)
            .await?;
        Ok(())
    }

    /// Ends a session that a new one of the same user takes over with the same `sid` (the
    /// user signed in again in that browser): no back-channel logout is queued, and the old
    /// row's `sid` is renamed (with `suffix`) so the new one can have it. False if there was
    /// no such live session.
    pub async fn retire_session(
        &self,
        sid: &str,
        suffix: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, sid = sid || '~' || $3 \
             WHERE sid = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(sid)
        .bind(suffix)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a session, queueing a back-channel logout for every client with a grant in it,
    /// in one transaction.
    pub async fn revoke_session(&self, sid: &str, now: i64) -> Result<(), StoreError> {
        self.end_sessions("s.sid = $2", now, &[sid]).await?;
        Ok(())
    }

    /// Ends the live sessions `condition` names (a condition on `s`, a `sessions` row, with
    /// `binds` from $2 on; $1 is now), queueing their back-channel logouts first, in one
    /// transaction. The number of sessions ended.
    pub(super) async fn end_sessions(
        &self,
        condition: &str,
        now: i64,
        binds: &[&str],
    ) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let ended = end_sessions_in(&mut tx, condition, now, binds).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// The user's live sessions, most recently used first.
    pub async fn sessions_of(
        &self,
        user_id: &str,
        now: i64,
        idle: i64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT sid, ip, user_agent, amr, created_at, last_seen_at FROM sessions \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3 \
             ORDER BY last_seen_at DESC, sid",
        )
        .bind(user_id)
        .bind(now)
        .bind(now.saturating_sub(idle))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let amr: String = row.try_get("amr")?;
                Ok(SessionInfo {
                    sid: row.try_get("sid")?,
                    ip: row.try_get("ip")?,
                    user_agent: row.try_get("user_agent")?,
                    amr: serde_json::from_str(&amr)
                        .map_err(|e| StoreError::Corrupt(format!("session amr: {e}")))?,
                    created_at: row.try_get("created_at")?,
                    last_seen_at: row.try_get("last_seen_at")?,
                })
            })
            .collect()
    }

    /// Ends one of the user's sessions; false if the user has no such live session.
    pub async fn revoke_user_session(
        &self,
        user_id: &str,
        sid: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let ended = self
            .end_sessions("s.sid = $2 AND s.user_id = $3", now, &[sid, user_id])
            .await?;
        Ok(ended == 1)
    }

    /// Ends every session of the user ("sign out everywhere").
    pub async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        self.end_sessions("s.user_id = $2", now, &[user_id]).await
    }

    /// The clients the user has consented to, oldest first.
    pub async fn consents_of(&self, user_id: &str) -> Result<Vec<Consent>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, scope, created_at, updated_at FROM consents WHERE user_id = $1 \
             ORDER BY created_at, client_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Consent {
                    client_id: row.try_get("client_id")?,
                    scope: row.try_get("scope")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Disconnects an application: forgets the consent and revokes every grant the user gave
    /// the client, so its refresh tokens stop working and its access tokens turn inactive.
    /// False if there was nothing to disconnect.
    pub async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let forgotten = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute_w(self)
            .await?
            .rows_affected();
        let revoked = sqlx::query(
            "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(client_id)
        .execute_w(self)
        .await?
        .rows_affected();
        Ok(forgotten + revoked > 0)
    }

    pub async fn consented_scope(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("scope")?),
            None => None,
        })
    }

    pub async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scope, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = $3, updated_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(())
    }
}

fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    let amr: String = row.try_get("amr")?;
    Ok(Session {
        sid: row.try_get("sid")?,
        user_id: row.try_get("user_id")?,
        auth_time: row.try_get("auth_time")?,
        amr: serde_json::from_str(&amr)
            .map_err(|e| StoreError::Corrupt(format!("session amr: {e}")))?,
        acr: row.try_get("acr")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// [`Store::end_sessions`] inside a transaction of the caller's.
pub(super) async fn end_sessions_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    condition: &str,
    now: i64,
    binds: &[&str],
) -> Result<u64, StoreError> {
    // The sessions end first: on PostgreSQL that locks their rows, so a code redemption in
    // one of them (which takes the session's row FOR SHARE) either committed its grant before,
    // and the queue below sees it, or waits and then finds the session ended.
    let end = format!(
        "UPDATE sessions SET revoked_at = $1 WHERE sid IN \
         (SELECT s.sid FROM sessions s WHERE s.revoked_at IS NULL AND ({condition}))"
    );
    let mut q = sqlx::query(&end).bind(now);
    for b in binds {
        q = q.bind(*b);
    }
    let ended = q.execute(&mut **tx).await?.rows_affected();
    let enqueue = super::logout::enqueue_sql(condition);
    let mut q = sqlx::query(&enqueue).bind(now);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(&mut **tx).await?;
    Ok(ended)
}
