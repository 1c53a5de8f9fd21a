//! Links sent by email. A link is used with one conditional `UPDATE`: once, before it expires.

use super::Write as _;
use sqlx::Connection as _;
use sqlx::Row;

use super::{Store, StoreError, placeholders};

/// A link to store: the digest of its token, what it is for, whom, the address it goes to,
/// and (for a sign-in link) the authorization request it continues.
pub struct NewEmailLink<'a> {
    pub digest: &'a str,
    pub purpose: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub request: Option<&'a str>,
    /// A sign-in link: the digest of the browser that asked ([`Purpose::LinkBrowser`]).
    pub browser: Option<&'a str>,
    pub now: i64,
    pub expires_at: i64,
}

/// A live link: whom it is for and the address it was sent to.
#[derive(Debug)]
pub struct EmailLink {
    pub user_id: String,
    pub email: String,
    /// A sign-in link's authorization request.
    pub request: Option<String>,
    /// A sign-in link: the digest of the browser that asked for it.
    pub browser: Option<String>,
}

pub const RESET: &str = "reset";
/// Moves the account to the address it was sent to (a change).
pub const EMAIL: &str = "email";
/// Proves the account's own address (verification); changes nothing else.
pub const VERIFY: &str = "verify";

/// Spends every unused link of a user (`$1` now, `$2` the user): after a password reset,
/// password change or address change, links asked for before must not work.
pub(super) const SPEND_USER_LINKS: &str =
    "UPDATE email_links SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL";
/// Signs in (`signin.email_links`).
pub const SIGNIN: &str = "signin";

/// A confirmed address change.
#[derive(Debug)]
pub struct EmailChange {
    pub user_id: String,
    pub old: String,
    pub new: String,
}

impl Store {
    pub async fn insert_email_link(&self, l: &NewEmailLink<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO email_links (token_digest, purpose, user_id, email, request, browser_digest, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(l.digest)
        .bind(l.purpose)
        .bind(l.user_id)
        .bind(l.email)
        .bind(l.request)
        .bind(l.browser)
        .bind(l.now)
        .bind(l.expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// The unused, unexpired link of `purpose` stored under one of `digests`, left in place.
    pub async fn email_link(
        &self,
        digests: &[String],
        purpose: &str,
        now: i64,
    ) -> Result<Option<EmailLink>, StoreError> {
        let sql = format!(
            "SELECT user_id, email, request, browser_digest FROM email_links WHERE purpose = $1 AND used_at IS NULL \
             AND expires_at > $2 AND token_digest IN ({})",
            placeholders(3, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(purpose).bind(now);
        for d in digests {
            q = q.bind(d);
        }
        let row = q.fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(EmailLink {
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                request: r.try_get("request")?,
                browser: r.try_get("browser_digest")?,
            })
        })
        .transpose()
    }

    /// Uses a sign-in link: once, before it expires, for an enabled user, from the browser
    /// that asked for it (`browser`: the lookup digests of this browser's binding). The user's
    /// id and the authorization request it continues.
    pub async fn use_signin_link(
        &self,
        digests: &[String],
        browser: &[String],
        now: i64,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let n = digests.len();
        let sql = format!(
            "UPDATE email_links SET used_at = $1 WHERE purpose = $2 AND used_at IS NULL \
             AND expires_at > $1 AND token_digest IN ({}) \
             AND (browser_digest IS NULL OR browser_digest IN ({})) \
             AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
             RETURNING user_id, request",
            placeholders(3, n),
            // An empty list matches nothing: a browser without a binding cannot use a bound link.
            if browser.is_empty() {
                "NULL".to_owned()
            } else {
                placeholders(3 + n, browser.len())
            }
        );
        let mut q = sqlx::query(&sql).bind(now).bind(SIGNIN);
        for d in digests.iter().chain(browser) {
            q = q.bind(d);
        }
        let row = q.fetch_optional_w(self).await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("request")?)))
            .transpose()
    }

    /// Uses a password-reset link: in one transaction the link is spent (only if unused,
    /// unexpired and its user enabled), the password set, every session of the user ended, the
    /// user's grants (refresh and access tokens) revoked and every other unused link of the
    /// user spent. The user's id, or None when the link was not usable.
    pub async fn reset_password(
        &self,
        digests: &[String],
        hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let sql = format!(
            "UPDATE email_links SET used_at = $1 WHERE purpose = $2 AND used_at IS NULL \
             AND expires_at > $1 AND token_digest IN ({}) \
             AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) RETURNING user_id",
            placeholders(3, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(now).bind(RESET);
        for d in digests {
            q = q.bind(d);
        }
        let Some(row) = q.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let user_id: String = row.try_get("user_id")?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        // The sessions end (their back-channel logouts queued), then the grants.
        super::sessions::end_sessions_in(&mut tx, "s.user_id = $2", now, &[&user_id]).await?;
        for sql in [
            "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            SPEND_USER_LINKS,
        ] {
            sqlx::query(sql)
                .bind(now)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(user_id))
    }

    /// Uses an address link: in one transaction the link is spent and the account's address
    /// is proven. A change link sets the address to the one it was sent to, verified, and
    /// spends every other unused link of the user (reset and sign-in links went to the old
    /// address). A verification link only marks the address verified, and only while it is
    /// still the account's address. None when the link was not usable; Conflict (and the link
    /// left unused) when another account has the new address by now.
    pub async fn confirm_email(
        &self,
        digests: &[String],
        now: i64,
    ) -> Result<Option<EmailChange>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let sql = format!(
            "UPDATE email_links SET used_at = $1 WHERE purpose IN ($2, $3) AND used_at IS NULL \
             AND expires_at > $1 AND token_digest IN ({}) RETURNING user_id, email, purpose",
            placeholders(4, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(now).bind(EMAIL).bind(VERIFY);
        for d in digests {
            q = q.bind(d);
        }
        let Some(row) = q.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let user_id: String = row.try_get("user_id")?;
        let new: String = row.try_get("email")?;
        let purpose: String = row.try_get("purpose")?;
        let Some(user) =
            sqlx::query("SELECT email FROM users WHERE id = $1 AND disabled_at IS NULL")
                .bind(&user_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let old: String = user.try_get("email")?;
        if purpose == VERIFY {
            let done = sqlx::query(
                "UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2 AND email_key = $3",
            )
            .bind(now)
            .bind(&user_id)
            .bind(super::users::email_key(&new))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok((done.rows_affected() == 1).then_some(EmailChange {
                user_id,
                new: old.clone(),
                old,
            }));
        }
        let changed = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, email_verified = 1, updated_at = $3 WHERE id = $4",
        )
        .bind(&new)
        .bind(super::users::email_key(&new))
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx)
        .await;
        match changed {
            Ok(_) => {}
            Err(e) if super::is_unique_violation(&e) => {
                return Err(StoreError::Conflict("another account uses this address"));
            }
            Err(e) => return Err(e.into()),
        }
        sqlx::query(SPEND_USER_LINKS)
            .bind(now)
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(EmailChange { user_id, old, new }))
    }
}
