//! TOTP authenticators and recovery codes.
//!
//! A TOTP code is accepted with one `UPDATE ... WHERE last_step < $step`: a code (or an older
//! one) that was accepted once is refused, by every instance. A recovery code is spent with one
//! `UPDATE ... WHERE used_at IS NULL`: used once.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::{Store, StoreError, placeholders};

/// A user's TOTP authenticator, its secret still sealed.
#[derive(Debug)]
pub struct TotpRow {
    pub kek_id: String,
    pub secret_sealed: Vec<u8>,
    pub confirmed: bool,
}

impl Store {
    /// The user's authenticator, confirmed or awaiting its first code.
    pub async fn totp_of(&self, user_id: &str) -> Result<Option<TotpRow>, StoreError> {
        let row =
            sqlx::query("SELECT kek_id, secret_sealed, confirmed_at FROM totp WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TotpRow {
            kek_id: row.try_get("kek_id")?,
            secret_sealed: row.try_get("secret_sealed")?,
            confirmed: row.try_get::<Option<i64>, _>("confirmed_at")?.is_some(),
        }))
    }

    /// Whether the user has a confirmed authenticator (a second factor after the password).
    pub async fn totp_enabled(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.totp_of(user_id).await?.is_some_and(|t| t.confirmed))
    }

    /// Starts an enrolment with a new sealed secret, replacing one that was never confirmed.
    /// Returns false when the user already has a confirmed authenticator.
    pub async fn start_totp(
        &self,
        user_id: &str,
        kek_id: &str,
        secret_sealed: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO totp (user_id, kek_id, secret_sealed, confirmed_at, last_step, created_at) \
             VALUES ($1, $2, $3, NULL, 0, $4) \
             ON CONFLICT (user_id) DO UPDATE SET kek_id = $2, secret_sealed = $3, last_step = 0, \
             created_at = $4 WHERE totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(kek_id)
        .bind(secret_sealed)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Accepts the code of time step `step`: true only if no code of this step or a later one
    /// was accepted before. With `confirming` (the sealed secret the code was checked
    /// against), also confirms that pending enrolment, and only while it is still that one (a
    /// new set-up racing the confirmation wins); otherwise only a confirmed authenticator
    /// counts.
    pub async fn accept_totp_step(
        &self,
        user_id: &str,
        step: i64,
        confirming: Option<&[u8]>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let q = if let Some(sealed) = confirming {
            sqlx::query(
                "UPDATE totp SET last_step = $1, confirmed_at = $2 \
                 WHERE user_id = $3 AND last_step < $1 AND confirmed_at IS NULL \
                 AND secret_sealed = $4",
            )
            .bind(step)
            .bind(now)
            .bind(user_id)
            .bind(sealed)
        } else {
            sqlx::query(
                "UPDATE totp SET last_step = $1 \
                 WHERE user_id = $2 AND last_step < $1 AND confirmed_at IS NOT NULL",
            )
            .bind(step)
            .bind(user_id)
        };
        Ok(q.execute_w(self).await?.rows_affected() == 1)
    }

    /// Removes the authenticator and the recovery codes. Returns false if there was none.
    pub async fn delete_totp(&self, user_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query("DELETE FROM totp WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces all of the user's recovery codes with these digests, in one transaction.
    pub async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for d in digests {
            sqlx::query(
                "INSERT INTO recovery_codes (code_digest, user_id, used_at, created_at) \
                 VALUES ($1, $2, NULL, $3)",
            )
            .bind(d)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spends one of the user's unused recovery codes, given the digests it may be stored
    /// under. True exactly once per code.
    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        digests: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE recovery_codes SET used_at = $1 \
             WHERE user_id = $2 AND used_at IS NULL AND code_digest IN ({})",
            placeholders(3, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(now).bind(user_id);
        for d in digests {
            q = q.bind(d);
        }
        Ok(q.execute_w(self).await?.rows_affected() == 1)
    }

    /// How many unused recovery codes the user has left.
    pub async fn recovery_codes_left(&self, user_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }
}
