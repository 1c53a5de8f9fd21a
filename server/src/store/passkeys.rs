//! Passkeys and WebAuthn ceremonies.
//!
//! A credential id belongs to one user (a unique index). The signature counter moves forward
//! only, checked in the same `UPDATE` that records it, so two uses of a cloned authenticator
//! cannot both pass. Ceremonies are taken with one `DELETE ... RETURNING`: used once, by one
//! instance.

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, is_unique_violation};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: String,
    pub name: String,
    /// The webauthn-rs `Passkey`, JSON.
    pub credential: String,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// What an authentication changed on a passkey.
pub struct PasskeyUse<'a> {
    pub id: &'a str,
    pub credential: &'a str,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub now: i64,
}

/// A ceremony taken back from the store.
#[derive(Debug)]
pub struct Ceremony {
    pub kind: String,
    pub user_id: Option<String>,
    pub state: String,
}

const PASSKEY_COLUMNS: &str = "id, user_id, credential_id, name, credential, sign_count, \
     backup_eligible, backup_state, created_at, last_used_at";

impl Store {
    /// The user's WebAuthn handle, set to `candidate` if the user has none yet. Two concurrent
    /// first registrations agree on one handle.
    pub async fn webauthn_handle(
        &self,
        user_id: &str,
        candidate: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query(
            "UPDATE users SET webauthn_handle = $1 WHERE id = $2 AND webauthn_handle IS NULL",
        )
        .bind(candidate)
        .bind(user_id)
        .execute_w(self)
        .await?;
        let row = sqlx::query("SELECT webauthn_handle FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional_w(self)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("webauthn_handle"))
            .transpose()?
            .flatten())
    }

    /// The user a WebAuthn handle names, if it names an enabled one.
    pub async fn user_id_by_webauthn_handle(
        &self,
        handle: &str,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT id FROM users WHERE webauthn_handle = $1 AND disabled_at IS NULL")
                .bind(handle)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    pub async fn passkeys_of(&self, user_id: &str) -> Result<Vec<PasskeyRow>, StoreError> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(passkey_from_row).collect()
    }

    pub async fn passkey_by_credential_id(
        &self,
        credential_id: &str,
    ) -> Result<Option<PasskeyRow>, StoreError> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1");
        let row = sqlx::query(&sql)
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(passkey_from_row).transpose()
    }

    /// Stores a new passkey. A credential id already bound (to anyone) is a `Conflict`.
    pub async fn insert_passkey(&self, p: &PasskeyRow) -> Result<(), StoreError> {
        let result = passkey_insert(p).execute_w(self).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict("this passkey is already registered"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a sign-in with a passkey. Returns false, changing nothing, when the counter
    /// does not move forward (an authenticator that counts, seen at or past this value
    /// already) or the passkey is gone.
    pub async fn record_passkey_use(&self, u: &PasskeyUse<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE passkeys SET credential = $1, sign_count = $2, backup_eligible = $3, \
             backup_state = $4, last_used_at = $5 \
             WHERE id = $6 AND (sign_count < $2 OR ($2 = 0 AND sign_count = 0))",
        )
        .bind(u.credential)
        .bind(u.sign_count)
        .bind(i64::from(u.backup_eligible))
        .bind(i64::from(u.backup_state))
        .bind(u.now)
        .bind(u.id)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn rename_passkey(
        &self,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3")
            .bind(name)
            .bind(id)
            .bind(user_id)
            .execute_w(self)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes one of the user's passkeys. With `keep_one`, refuses (returns false) to delete
    /// the user's last passkey; the check and the delete are one statement.
    pub async fn delete_passkey(
        &self,
        user_id: &str,
        id: &str,
        keep_one: bool,
    ) -> Result<bool, StoreError> {
        let sql = if keep_one {
            "DELETE FROM passkeys WHERE id = $1 AND user_id = $2 \
             AND (SELECT COUNT(*) FROM passkeys WHERE user_id = $2) > 1"
        } else {
            "DELETE FROM passkeys WHERE id = $1 AND user_id = $2"
        };
        let done = sqlx::query(sql)
            .bind(id)
            .bind(user_id)
            .execute_w(self)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_ceremony(
        &self,
        id_digest: &str,
        kind: &str,
        user_id: Option<&str>,
        state: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ceremonies (id_digest, kind, user_id, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_digest)
        .bind(kind)
        .bind(user_id)
        .bind(state)
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Takes a ceremony of one of `kinds`: deleted whatever its state, returned only if not
    /// expired. A second take of the same id finds nothing.
    pub async fn take_ceremony(
        &self,
        digests: &[String],
        kinds: &[&str],
        now: i64,
    ) -> Result<Option<Ceremony>, StoreError> {
        let sql = format!(
            "DELETE FROM ceremonies WHERE id_digest IN ({}) AND kind IN ({}) \
             RETURNING kind, user_id, state, expires_at",
            super::placeholders(1, digests.len()),
            super::placeholders(digests.len() + 1, kinds.len()),
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        for k in kinds {
            q = q.bind(*k);
        }
        let row = q.fetch_optional_w(self).await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= now {
            return Ok(None);
        }
        ceremony_from_row(&row).map(Some)
    }

    /// Reads a live ceremony of one of `kinds` without taking it.
    pub async fn peek_ceremony(
        &self,
        digests: &[String],
        kinds: &[&str],
        now: i64,
    ) -> Result<Option<Ceremony>, StoreError> {
        let sql = format!(
            "SELECT kind, user_id, state FROM ceremonies WHERE id_digest IN ({}) AND kind IN ({}) \
             AND expires_at > ${}",
            super::placeholders(1, digests.len()),
            super::placeholders(digests.len() + 1, kinds.len()),
            digests.len() + kinds.len() + 1,
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        for k in kinds {
            q = q.bind(*k);
        }
        let row = q.bind(now).fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        ceremony_from_row(&row).map(Some)
    }
}

/// The `INSERT` of a new passkey, to run on the pool or inside a transaction.
pub(super) fn passkey_insert(
    p: &PasskeyRow,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, name, credential, sign_count, \
         backup_eligible, backup_state, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&p.id)
    .bind(&p.user_id)
    .bind(&p.credential_id)
    .bind(&p.name)
    .bind(&p.credential)
    .bind(p.sign_count)
    .bind(i64::from(p.backup_eligible))
    .bind(i64::from(p.backup_state))
    .bind(p.created_at)
    .bind(p.last_used_at)
}

fn ceremony_from_row(row: &AnyRow) -> Result<Ceremony, StoreError> {
    Ok(Ceremony {
        kind: row.try_get("kind")?,
        user_id: row.try_get("user_id")?,
        state: row.try_get("state")?,
    })
}

fn passkey_from_row(row: &AnyRow) -> Result<PasskeyRow, StoreError> {
    Ok(PasskeyRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        credential_id: row.try_get("credential_id")?,
        name: row.try_get("name")?,
        credential: row.try_get("credential")?,
        sign_count: row.try_get("sign_count")?,
        backup_eligible: row.try_get::<i64, _>("backup_eligible")? != 0,
        backup_state: row.try_get::<i64, _>("backup_state")? != 0,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}
