//! Users. The email is unique case-insensitively (`email_key`) and kept as typed (`email`).

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, is_unique_violation};

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    /// An argon2id PHC string, never a password.
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub now: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub is_admin: bool,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    /// A service account's owner (an administrator's id); None for a person.
    pub service_owner: Option<String>,
}

pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(super) fn user_insert<'q>(
    u: &'q NewUser<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "INSERT INTO users (id, email, email_key, email_verified, name, password_hash, is_admin, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(u.id)
    .bind(u.email)
    .bind(email_key(u.email))
    .bind(i64::from(u.email_verified))
    .bind(u.name)
    .bind(u.password_hash)
    .bind(i64::from(u.is_admin))
    .bind(u.now)
}

pub(super) const USER_COLUMNS: &str =
    "id, email, email_verified, name, is_admin, disabled_at, created_at, service_owner";

impl Store {
    pub async fn create_user(&self, u: &NewUser<'_>) -> Result<(), StoreError> {
        let result = user_insert(u).execute_w(self).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                "a user with this email already exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user with this id if the account is active (exists and is not disabled): the one
    /// question every sign-in, token and resource request asks before acting for a user.
    pub async fn active_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND disabled_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// [`Store::active_user`] by email address; never a service account (none signs in).
    pub async fn active_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email_key = $1 AND disabled_at IS NULL \
             AND service_owner IS NULL"
        ))
        .bind(email_key(email))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email_key = $1"
        ))
        .bind(email_key(email))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Disables a user, ending their sessions, revoking every grant they gave (refresh
    /// tokens stop working, access tokens turn inactive) and expiring their unredeemed codes
    /// and approved device codes, in one transaction; or enables them again. Returns false if there is no such user.
    pub async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        if disabled {
            // Never the last enabled administrator: nobody could manage the server after.
            let last_admin: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM users WHERE id = $1 AND is_admin = 1 \
                 AND disabled_at IS NULL AND NOT {}",
                super::admin::other_admin(1)
            ))
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
            if last_admin > 0 {
                return Err(StoreError::Conflict(super::admin::LAST_ADMIN));
            }
        }
        let changed =
            sqlx::query("UPDATE users SET disabled_at = $1, updated_at = $2 WHERE id = $3")
                .bind(disabled.then_some(now))
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if disabled {
            // Ends the sessions and queues their back-channel logouts.
            super::sessions::end_sessions_in(&mut tx, "s.user_id = $2", now, &[user_id]).await?;
            sqlx::query(
                "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            // Codes not yet redeemed and devices approved but not yet polled end here, so
            // that enabling the user again does not bring them back. Expired as of their
            // creation, not of `now`: another instance's clock may be a little behind ours.
            for table in ["authorization_codes", "device_codes"] {
                sqlx::query(&format!(
                    "UPDATE {table} SET expires_at = created_at \
                     WHERE user_id = $1 AND consumed_at IS NULL AND expires_at > created_at"
                ))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Sets the user's password hash, ends every browser session of the user but `keep_sid`
    /// and spends the user's unused mailed links, in one transaction: a browser signed in with
    /// the old password is signed out (applications keep their tokens; a reset revokes those
    /// too).
    pub async fn set_password(
        &self,
        user_id: &str,
        hash: &str,
        keep_sid: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        super::sessions::end_sessions_in(
            &mut tx,
            "s.user_id = $2 AND s.sid <> $3",
            now,
            &[user_id, keep_sid.unwrap_or_default()],
        )
        .await?;
        sqlx::query(super::email_links::SPEND_USER_LINKS)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored password hash, for the sign-in check only.
    pub async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("password_hash")?,
            None => None,
        })
    }
}

pub(super) fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        name: row.try_get("name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
        service_owner: row.try_get("service_owner")?,
    })
}
