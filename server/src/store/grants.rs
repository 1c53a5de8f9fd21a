//! Grants, authorization codes, refresh tokens and access-token revocation. Every single-use
//! artifact is consumed by one atomic `UPDATE ... WHERE <not yet used> RETURNING`.

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, placeholders};

/// What a code or refresh token carries about the sign-in it stems from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authn {
    pub user_id: String,
    pub sid: Option<String>,
    pub auth_time: i64,
    /// JSON array.
    pub amr: String,
    pub acr: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRow {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub claims: Option<String>,
    pub authn: Authn,
    pub expires_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRow {
    pub grant_id: String,
    pub client_id: String,
    pub scope: String,
    pub claims: Option<String>,
    pub authn: Authn,
    pub expires_at: i64,
}

/// The outcome of taking a single-use artifact.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    /// First use: here is what it carried.
    Fresh(T),
    /// It existed and was already used: a replay. Its grant should be revoked
    /// ([`Store::revoke_replayed`]).
    Replayed(Replay),
    /// Unknown or expired.
    Invalid,
}

/// What a replayed code or refresh token belonged to.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay {
    pub grant_id: String,
    client_id: String,
    user_id: Option<String>,
}

const CODE_COLUMNS: &str = "grant_id, client_id, user_id, sid, redirect_uri, scope, nonce, code_challenge, auth_time, amr, acr, claims, expires_at";
const REFRESH_COLUMNS: &str =
    "grant_id, client_id, user_id, sid, scope, auth_time, amr, acr, claims, expires_at";

/// The condition, in a statement that takes a code, refresh token or device code from
/// `table` (one with a `user_id` column), that its user exists and is not disabled: a
/// disabled user's artifacts are not taken at all, and taking them needs no second statement
/// to look. `table` is one of our constants, never input.
pub(super) fn user_enabled(table: &str) -> String {
    format!("EXISTS (SELECT 1 FROM users u WHERE u.id = {table}.user_id AND u.disabled_at IS NULL)")
}

impl Store {
    /// Records a grant of `user_id` to `client_id`, if that user exists and is enabled;
    /// returns whether it did. The check is in the insert itself, so disabling the user
    /// (which revokes the user's grants in one transaction) either comes first and no grant is
    /// made, or comes after and revokes it: on PostgreSQL the insert holds the user's row
    /// `FOR SHARE` until it commits, and SQLite runs one write at a time. A grant that a
    /// replay of its code revoked before it was made ([`Store::revoke_replayed`]) is there
    /// already, revoked: it gets its lifetime and stays revoked.
    pub async fn create_grant(
        &self,
        id: &str,
        client_id: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR SHARE",
            super::Backend::Sqlite => "",
        };
        let done = sqlx::query(&format!(
            "INSERT INTO grants (id, client_id, user_id, created_at, expires_at) \
             SELECT $1, $2, id, $4, $5 FROM users WHERE id = $3 AND disabled_at IS NULL{lock} \
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at"
        ))
        .bind(id)
        .bind(client_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a grant: its refresh tokens stop working and its access tokens turn inactive.
    pub async fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(grant_id)
            .execute_w(self)
            .await?;
        Ok(())
    }

    /// Revokes the grant of a replayed code or refresh token. The grant of a code is made
    /// only after the code is taken, so a replay racing the first redemption can come first:
    /// then the grant is recorded here, revoked, with `expires_at` (the lifetime the first
    /// redemption will give it), and the first redemption's tokens are born revoked. Either
    /// order ends with the grant revoked.
    pub async fn revoke_replayed(
        &self,
        r: &Replay,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO grants (id, client_id, user_id, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $4) \
             ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at \
             WHERE grants.revoked_at IS NULL",
        )
        .bind(&r.grant_id)
        .bind(&r.client_id)
        .bind(&r.user_id)
        .bind(now)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    pub async fn insert_code(&self, digest: &str, c: &CodeRow, now: i64) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO authorization_codes (code_digest, {CODE_COLUMNS}, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(digest)
        .bind(&c.grant_id)
        .bind(&c.client_id)
        .bind(&c.authn.user_id)
        .bind(&c.authn.sid)
        .bind(&c.redirect_uri)
        .bind(&c.scope)
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(c.authn.auth_time)
        .bind(&c.authn.amr)
        .bind(&c.authn.acr)
        .bind(&c.claims)
        .bind(c.expires_at)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Takes a code once, for the client it was issued to. Concurrent callers race on one
    /// UPDATE: exactly one sees `Fresh`. Another client's attempt consumes nothing, and nor
    /// does any attempt once the user is disabled (`Invalid`).
    pub async fn take_code(
        &self,
        digests: &[String],
        client_id: &str,
        now: i64,
    ) -> Result<Taken<CodeRow>, StoreError> {
        let n = digests.len();
        let sql = format!(
            "UPDATE authorization_codes SET consumed_at = ${} \
             WHERE code_digest IN ({}) AND consumed_at IS NULL AND expires_at > ${} AND client_id = ${} \
             AND {} \
             RETURNING {CODE_COLUMNS}",
            n + 1,
            placeholders(1, n),
            n + 1,
            n + 2,
            user_enabled("authorization_codes"),
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        if let Some(row) = q.bind(now).bind(client_id).fetch_optional_w(self).await? {
            return Ok(Taken::Fresh(code_from_row(&row)?));
        }
        self.replay_of("authorization_codes", "code_digest", "consumed_at", digests)
            .await
    }

    async fn replay_of<T>(
        &self,
        table: &str,
        key: &str,
        used: &str,
        digests: &[String],
    ) -> Result<Taken<T>, StoreError> {
        let sql = format!(
            "SELECT grant_id, client_id, user_id FROM {table} WHERE {key} IN ({}) AND {used} IS NOT NULL",
            placeholders(1, digests.len())
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        Ok(match q.fetch_optional(&self.pool).await? {
            Some(row) => Taken::Replayed(Replay {
                grant_id: row.try_get("grant_id")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
            }),
            None => Taken::Invalid,
        })
    }

    pub async fn insert_refresh_token(
        &self,
        digest: &str,
        r: &RefreshRow,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO refresh_tokens (token_digest, {REFRESH_COLUMNS}, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(digest)
        .bind(&r.grant_id)
        .bind(&r.client_id)
        .bind(&r.authn.user_id)
        .bind(&r.authn.sid)
        .bind(&r.scope)
        .bind(r.authn.auth_time)
        .bind(&r.authn.amr)
        .bind(&r.authn.acr)
        .bind(&r.claims)
        .bind(r.expires_at)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Takes a refresh token for rotation, once, for the client it was issued to. A token of
    /// a revoked grant, or of a disabled user, is `Invalid`.
    pub async fn take_refresh_token(
        &self,
        digests: &[String],
        client_id: &str,
        now: i64,
    ) -> Result<Taken<RefreshRow>, StoreError> {
        let n = digests.len();
        let sql = format!(
            "UPDATE refresh_tokens SET rotated_at = ${} \
             WHERE token_digest IN ({}) AND rotated_at IS NULL AND expires_at > ${} AND client_id = ${} \
             AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NOT NULL) \
             AND {} \
             RETURNING {REFRESH_COLUMNS}",
            n + 1,
            placeholders(1, n),
            n + 1,
            n + 2,
            user_enabled("refresh_tokens"),
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        if let Some(row) = q.bind(now).bind(client_id).fetch_optional_w(self).await? {
            return Ok(Taken::Fresh(refresh_from_row(&row)?));
        }
        self.replay_of("refresh_tokens", "token_digest", "rotated_at", digests)
            .await
    }

    /// The grant and client of a live refresh token, for revocation and introspection.
    pub async fn refresh_token_grant(
        &self,
        digests: &[String],
        now: i64,
    ) -> Result<Option<RefreshRow>, StoreError> {
        let sql = format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_digest IN ({}) \
             AND rotated_at IS NULL AND expires_at > ${} \
             AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NOT NULL)",
            placeholders(1, digests.len()),
            digests.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        let row = q.bind(now).fetch_optional(&self.pool).await?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    pub async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// Whether an access token has been revoked, by its own `jti` or through its grant.
    pub async fn access_token_revoked(
        &self,
        jti: &str,
        grant_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = $1) \
             + (SELECT COUNT(*) FROM grants WHERE id = $2 AND revoked_at IS NOT NULL) AS n",
        )
        .bind(jti)
        .bind(grant_id.unwrap_or(""))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }
}

fn authn_from_row(row: &AnyRow) -> Result<Authn, StoreError> {
    Ok(Authn {
        user_id: row.try_get("user_id")?,
        sid: row.try_get("sid")?,
        auth_time: row.try_get("auth_time")?,
        amr: row.try_get("amr")?,
        acr: row.try_get("acr")?,
    })
}

fn code_from_row(row: &AnyRow) -> Result<CodeRow, StoreError> {
    Ok(CodeRow {
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        nonce: row.try_get("nonce")?,
        code_challenge: row.try_get("code_challenge")?,
        claims: row.try_get("claims")?,
        authn: authn_from_row(row)?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn refresh_from_row(row: &AnyRow) -> Result<RefreshRow, StoreError> {
    Ok(RefreshRow {
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        claims: row.try_get("claims")?,
        authn: authn_from_row(row)?,
        expires_at: row.try_get("expires_at")?,
    })
}
