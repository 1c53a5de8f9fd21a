//! Sign-up invitations and the creation of an account with its first credential, in one
//! transaction: the invite is used, the user and the passkey exist, or nothing happened.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::users::email_key;
use super::{PasskeyRow, Store, StoreError, is_unique_violation};

/// Where an invitation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteOrigin {
    /// `latchkey invite create`.
    Cli,
    /// Mailed by open sign-up to the address it is bound to: using it proves the address.
    Mail,
    /// The first administrator's setup link.
    Setup,
}

impl InviteOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteOrigin::Cli => "cli",
            InviteOrigin::Mail => "mail",
            InviteOrigin::Setup => "setup",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    pub email: Option<String>,
    pub is_admin: bool,
    pub expires_at: i64,
}

/// An account to create: the user, how they may sign in, and the invite it uses, if any.
pub struct NewAccount<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    /// The WebAuthn user handle the passkey was registered under.
    pub webauthn_handle: Option<&'a str>,
    /// The first passkey; its `user_id` must be `id`.
    pub passkey: Option<&'a PasskeyRow>,
    /// Digests of the invite token (one per pepper key), when signing up by invitation.
    pub invite: Option<&'a [String]>,
    pub now: i64,
}

/// Why an account was not created.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the invitation is unknown, used or expired")]
    Invite,
    #[error("the invitation is for another email address")]
    InviteEmail,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("this passkey is already registered")]
    PasskeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Store(e.into())
    }
}

impl Store {
    pub async fn insert_invite(
        &self,
        digest: &str,
        email: Option<&str>,
        is_admin: bool,
        origin: InviteOrigin,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO invites (token_digest, email, is_admin, origin, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(digest)
        .bind(email)
        .bind(i64::from(is_admin))
        .bind(origin.as_str())
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// The invite a token names, if it can still be used (unused, unexpired). Does not use it.
    pub async fn usable_invite(
        &self,
        digests: &[String],
        now: i64,
    ) -> Result<Option<Invite>, StoreError> {
        let sql = format!(
            "SELECT email, is_admin, expires_at FROM invites WHERE token_digest IN ({}) \
             AND used_at IS NULL AND expires_at > ${}",
            super::placeholders(1, digests.len()),
            digests.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        let row = q.bind(now).fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(Invite {
                email: r.try_get("email")?,
                is_admin: r.try_get::<i64, _>("is_admin")? != 0,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Whether any enabled administrator exists.
    pub async fn admin_exists(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM users WHERE is_admin = 1 AND disabled_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Forgets unused setup links (an earlier start's); administrator invitations made with
    /// the CLI stay.
    pub async fn drop_unused_setup_links(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM invites WHERE origin = 'setup' AND used_at IS NULL")
            .execute_w(self)
            .await?;
        Ok(done.rows_affected())
    }

    /// Creates an account, using its invite and storing its passkey, atomically. Returns
    /// whether the account is an administrator (from the invite).
    pub async fn create_account(&self, a: &NewAccount<'_>) -> Result<bool, AccountError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let mut is_admin = false;
        let mut verified = false;
        if let Some(digests) = a.invite {
            let sql = format!(
                "UPDATE invites SET used_at = ${n}, used_by = ${m} WHERE token_digest IN ({}) \
                 AND used_at IS NULL AND expires_at > ${n} RETURNING email, is_admin, origin",
                super::placeholders(1, digests.len()),
                n = digests.len() + 1,
                m = digests.len() + 2,
            );
            let mut q = sqlx::query(&sql);
            for d in digests {
                q = q.bind(d);
            }
            let row = q
                .bind(a.now)
                .bind(a.id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(AccountError::Invite)?;
            let bound: Option<String> = row.try_get("email")?;
            if bound.is_some_and(|e| email_key(&e) != email_key(a.email)) {
                return Err(AccountError::InviteEmail);
            }
            is_admin = row.try_get::<i64, _>("is_admin")? != 0;
            verified = row.try_get::<String, _>("origin")? == InviteOrigin::Mail.as_str();
        }
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, email_key, email_verified, name, password_hash, is_admin, \
             webauthn_handle, created_at, updated_at) VALUES ($1, $2, $3, $9, $4, $5, $6, $7, $8, $8)",
        )
        .bind(a.id)
        .bind(a.email)
        .bind(email_key(a.email))
        .bind(a.name)
        .bind(a.password_hash)
        .bind(i64::from(is_admin))
        .bind(a.webauthn_handle)
        .bind(a.now)
        .bind(i64::from(verified))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(AccountError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        if let Some(p) = a.passkey {
            let stored = super::passkeys::passkey_insert(p).execute(&mut *tx).await;
            match stored {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(AccountError::PasskeyTaken),
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(is_admin)
    }
}
