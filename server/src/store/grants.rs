//! Grants, authorization codes, refresh tokens and access-token revocation. Every single-use
//! artifact is consumed by one atomic `UPDATE ... WHERE <not yet used> RETURNING`.

use super::Write as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, WriteArg, placeholders};
use crate::oauth::claims::ClaimsRequest;

/// What a code or refresh token carries about the sign-in it stems from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authn {
    pub user_id: String,
    pub sid: Option<String>,
    pub auth_time: i64,
    /// RFC 8176 method references (stored as a JSON array).
    pub amr: Vec<String>,
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
    pub claims: Option<ClaimsRequest>,
    pub authn: Authn,
    pub expires_at: i64,
    /// RFC 9449 §10: the DPoP key thumbprint the code is bound to.
    pub dpop_jkt: Option<String>,
    /// RFC 8707: the resource the authorization request named.
    pub resource: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRow {
    pub grant_id: String,
    pub client_id: String,
    pub scope: String,
    pub claims: Option<ClaimsRequest>,
    pub authn: Authn,
    pub expires_at: i64,
    /// RFC 9449 §5.0: the DPoP key thumbprint a public client's refresh token is bound to.
    pub dpop_jkt: Option<String>,
    /// RFC 8707: the resource of the grant's access tokens (from the authorization request).
    pub resource: Option<String>,
}

/// The longest retry grace of a rotated refresh token (`tokens.refresh_retry_grace`, in
/// seconds): housekeeping wipes sealed successors older than this.
pub const MAX_REFRESH_RETRY_GRACE: i64 = 60;

/// A refresh token's successor, stored with the rotation that takes its predecessor: its
/// digest, and (for the retry grace) the successor itself sealed under the key-encryption key,
/// as `<kek id>.<base64url box>` with the digest as associated data (empty when no retry
/// grace applies: then only the digest is kept). The store never sees it in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Successor {
    pub digest: String,
    pub sealed: String,
}

/// The outcome of redeeming a code or rotating a refresh token in one transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed<T, E> {
    /// Taken, checked, and its successors stored: here is what it carried.
    Fresh(T),
    /// A refresh token rotated within the retry grace, by the same client, whose successor is
    /// still unused: the client's retry of a request whose answer it lost (RFC 9700
    /// §4.14.2). Here is what it carried and its successor, to be answered again. Never for a
    /// code: RFC 6749 §4.1.2 denies every second use.
    Retried(T, Successor),
    /// Taken, but the caller's check refused it (see each method for whether it stays used).
    Refused(E),
    /// It existed and was already used: a replay. Its grant should be revoked
    /// ([`Store::revoke_replayed`]).
    Replayed(Replay),
    /// Unknown, expired, revoked, or its user is disabled.
    Invalid,
}

/// What a replayed code or refresh token belonged to.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay {
    pub grant_id: String,
    client_id: String,
    pub user_id: Option<String>,
}

/// A table of single-use artifacts: its digest column and the column that marks it used.
/// Our constants, never input.
#[derive(Clone, Copy)]
struct SingleUse {
    table: &'static str,
    key: &'static str,
    used: &'static str,
}

const CODES: SingleUse = SingleUse {
    table: "authorization_codes",
    key: "code_digest",
    used: "consumed_at",
};
const REFRESH_TOKENS: SingleUse = SingleUse {
    table: "refresh_tokens",
    key: "token_digest",
    used: "rotated_at",
};

const CODE_COLUMNS: &str = "grant_id, client_id, user_id, sid, redirect_uri, scope, nonce, code_challenge, auth_time, amr, acr, claims, expires_at, dpop_jkt, resource";
const REFRESH_COLUMNS: &str = "grant_id, client_id, user_id, sid, scope, auth_time, amr, acr, claims, expires_at, dpop_jkt, resource";
/// What a rotation reads: the token, and what a retry within the grace needs.
const REFRESH_READ_COLUMNS: &str = "grant_id, client_id, user_id, sid, scope, auth_time, amr, acr, claims, expires_at, dpop_jkt, resource, \
     successor_digest, successor_sealed";

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
        let done = sqlx::query(&grant_insert(self.backend))
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

    /// Revokes the grant of a replayed code or refresh token. A code's grant is made in the
    /// transaction that takes the code ([`Store::redeem_code`]), so it is there by the time
    /// a replay sees the code used; should it not be, the grant is recorded here, revoked,
    /// with `expires_at`, and stays revoked when it is made. Either order ends with the grant
    /// revoked.
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
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
        .bind(amr_json(&c.authn.amr))
        .bind(&c.authn.acr)
        .bind(c.claims.as_ref().map(ClaimsRequest::to_json))
        .bind(c.expires_at)
        .bind(&c.dpop_jkt)
        .bind(&c.resource)
        .bind(now)
        .execute_w(self)
        .await?;
        Ok(())
    }

    /// A code or refresh token read by digest (`columns` and whether it was used), before it
    /// is taken: None if unknown; else its row, with the replay it stands for if it was used.
    async fn read_single_use(
        &self,
        kind: SingleUse,
        columns: &str,
        digests: &[String],
    ) -> Result<Option<(AnyRow, Option<Replay>)>, StoreError> {
        let SingleUse { table, key, used } = kind;
        let sql = format!(
            "SELECT {columns}, {used} AS used_at FROM {table} WHERE {key} IN ({})",
            placeholders(1, digests.len())
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d);
        }
        let Some(row) = q.fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let replay = match row.try_get::<Option<i64>, _>("used_at")? {
            Some(_) => Some(Replay {
                grant_id: row.try_get("grant_id")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
            }),
            None => None,
        };
        Ok(Some((row, replay)))
    }

    /// What a code or refresh token that was not taken was: used already (a replay), or
    /// unknown, expired or revoked.
    async fn replay_of<T, E>(
        &self,
        kind: SingleUse,
        digests: &[String],
    ) -> Result<Redeemed<T, E>, StoreError> {
        Ok(
            match self
                .read_single_use(kind, "grant_id, client_id, user_id", digests)
                .await?
            {
                Some((_, Some(replay))) => Redeemed::Replayed(replay),
                _ => Redeemed::Invalid,
            },
        )
    }

    pub async fn insert_refresh_token(
        &self,
        digest: &str,
        r: &RefreshRow,
        now: i64,
    ) -> Result<(), StoreError> {
        refresh_insert(digest, r, now).execute_w(self).await?;
        Ok(())
    }

    /// Redeems a code (RFC 6749 §4.1.3): reads it, asks `check` whether the request matches
    /// it, and if so takes it (once, for the client it was issued to, while its user is
    /// enabled), records its grant (lasting until `grant_expires_at`) and, when `check`
    /// answers a digest, the grant's first refresh token, all in one atomic write (one
    /// statement on PostgreSQL, one transaction sent as one batch on SQLite). A code `check`
    /// refuses is spent: a stolen code gets one try at its PKCE verifier. A failure before the
    /// commit leaves the code as it was. The refresh token is bound to `refresh_jkt` (a public
    /// client's DPoP key), if given.
    pub async fn redeem_code<E>(
        &self,
        digests: &[String],
        client_id: &str,
        now: i64,
        grant_expires_at: i64,
        refresh_jkt: Option<&str>,
        check: impl FnOnce(&CodeRow) -> Result<Option<String>, E>,
    ) -> Result<Redeemed<CodeRow, E>, StoreError> {
        let found = self.read_single_use(CODES, CODE_COLUMNS, digests).await?;
        let found = match found {
            None => return Ok(Redeemed::Invalid),
            Some((_, Some(replay))) => return Ok(Redeemed::Replayed(replay)),
            Some((row, None)) => row,
        };
        let code = code_from_row(&found)?;
        if code.client_id != client_id || code.expires_at <= now {
            return Ok(Redeemed::Invalid);
        }
        let refresh_digest = match check(&code) {
            Ok(d) => d,
            Err(e) => {
                let sql = format!(
                    "UPDATE authorization_codes SET consumed_at = ${} \
                     WHERE code_digest IN ({}) AND consumed_at IS NULL",
                    digests.len() + 1,
                    placeholders(1, digests.len())
                );
                let mut q = sqlx::query(&sql);
                for d in digests {
                    q = q.bind(d);
                }
                q.bind(now).execute_w(self).await?;
                return Ok(Redeemed::Refused(e));
            }
        };
        let n = digests.len();
        // $1..$n digests, then now, client, grant expiry, refresh digest, whether to store it,
        // the refresh token's DPoP binding ('' for none).
        let (t, c, exp, rd, want, jkt) = (n + 1, n + 2, n + 3, n + 4, n + 5, n + 6);
        // The session the code was issued in must still stand: a logout in between has
        // already told the clients with grants in it, and this one would never be told.
        let session_lock = match self.backend {
            super::Backend::Postgres => "FOR SHARE",
            super::Backend::Sqlite => "",
        };
        let live = format!(
            "code_digest IN ({}) AND consumed_at IS NULL AND expires_at > ${t} AND client_id = ${c} AND {} \
             AND (authorization_codes.sid IS NULL OR EXISTS (SELECT 1 FROM sessions s \
               WHERE s.sid = authorization_codes.sid AND s.revoked_at IS NULL {session_lock}))",
            placeholders(1, n),
            user_enabled_locked(self.backend, "authorization_codes")
        );
        let grant_upsert =
            "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, sid = excluded.sid";
        let refresh_cols =
            "grant_id, client_id, user_id, sid, scope, auth_time, amr, acr, claims, resource";
        let sql = match self.backend {
            super::Backend::Postgres => format!(
                "WITH taken AS (UPDATE authorization_codes SET consumed_at = ${t} WHERE {live} \
                 RETURNING {refresh_cols}), \
                 g AS (INSERT INTO grants (id, client_id, user_id, created_at, expires_at, sid) \
                 SELECT grant_id, client_id, user_id, ${t}, ${exp}, sid FROM taken {grant_upsert}), \
                 r AS (INSERT INTO refresh_tokens (token_digest, {refresh_cols}, expires_at, created_at, dpop_jkt) \
                 SELECT ${rd}, {refresh_cols}, ${exp}, ${t}, NULLIF(${jkt}, '') FROM taken WHERE ${want} = 1) \
                 SELECT grant_id FROM taken"
            ),
            // changes(): rows changed by the statement before, so each insert happens only if
            // this batch took the code (and not one taken in the same second by another).
            super::Backend::Sqlite => format!(
                "BEGIN IMMEDIATE; \
                 UPDATE authorization_codes SET consumed_at = ${t} WHERE {live} RETURNING grant_id; \
                 INSERT INTO grants (id, client_id, user_id, created_at, expires_at, sid) \
                 SELECT grant_id, client_id, user_id, ${t}, ${exp}, sid FROM authorization_codes \
                 WHERE code_digest IN ({ids}) AND consumed_at = ${t} AND changes() = 1 {grant_upsert}; \
                 INSERT INTO refresh_tokens (token_digest, {refresh_cols}, expires_at, created_at, dpop_jkt) \
                 SELECT ${rd}, {refresh_cols}, ${exp}, ${t}, NULLIF(${jkt}, '') FROM authorization_codes \
                 WHERE code_digest IN ({ids}) AND consumed_at = ${t} AND ${want} = 1 AND changes() = 1; \
                 COMMIT",
                ids = placeholders(1, n)
            ),
        };
        let mut args: Vec<WriteArg> = digests.iter().cloned().map(WriteArg::Text).collect();
        args.extend([
            WriteArg::Int(now),
            WriteArg::Text(client_id.to_owned()),
            WriteArg::Int(grant_expires_at),
            WriteArg::Text(refresh_digest.clone().unwrap_or_default()),
            WriteArg::Int(i64::from(refresh_digest.is_some())),
            WriteArg::Text(refresh_jkt.unwrap_or_default().to_owned()),
        ]);
        if self.write_batch(sql, args).await? {
            Ok(Redeemed::Fresh(code))
        } else {
            // Taken meanwhile by a concurrent redemption (a replay), or no longer live.
            self.replay_of(CODES, digests).await
        }
    }

    /// Rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14.2): reads it, asks `check`
    /// whether the request fits it, and if so takes it (once, for its client, while its grant
    /// stands and its user is enabled) and stores the successor `check` answers (same grant,
    /// scope and expiry; its digest and sealed self also on the taken row, for a retry), in one
    /// atomic write. If `check` refuses, nothing is written; if anything fails before the
    /// commit, the token stays as it was: a bad request or a crash never costs the login.
    ///
    /// A token rotated no more than `retry_grace` seconds ago, presented again by its client
    /// while its successor is unused and its grant stands, is [`Redeemed::Retried`]: the
    /// client lost the answer (a dropped connection, a crash) and gets the same successor
    /// again. Any other second use is [`Redeemed::Replayed`].
    pub async fn rotate_refresh_token<E>(
        &self,
        digests: &[String],
        client_id: &str,
        now: i64,
        retry_grace: i64,
        check: impl FnOnce(&RefreshRow) -> Result<Option<Successor>, E>,
    ) -> Result<Redeemed<RefreshRow, E>, StoreError> {
        let found = self
            .read_single_use(REFRESH_TOKENS, REFRESH_READ_COLUMNS, digests)
            .await?;
        let found = match found {
            None => return Ok(Redeemed::Invalid),
            Some((row, Some(replay))) => {
                return self
                    .retry_or_replay(&row, replay, client_id, now, retry_grace)
                    .await;
            }
            Some((row, None)) => row,
        };
        let taken = refresh_from_row(&found)?;
        if taken.client_id != client_id || taken.expires_at <= now {
            return Ok(Redeemed::Invalid);
        }
        let successor = match check(&taken) {
            Ok(d) => d,
            Err(e) => return Ok(Redeemed::Refused(e)),
        };
        let n = digests.len();
        // $1..$n digests, then now, client, successor digest, whether to store it, and the
        // sealed successor.
        let (t, c, sd, want, ss) = (n + 1, n + 2, n + 3, n + 4, n + 5);
        let live = format!(
            "token_digest IN ({}) AND rotated_at IS NULL AND expires_at > ${t} AND client_id = ${c} \
             AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NOT NULL) \
             AND {}",
            placeholders(1, n),
            user_enabled_locked(self.backend, "refresh_tokens")
        );
        let take = format!(
            "UPDATE refresh_tokens SET rotated_at = ${t}, \
             successor_digest = CASE WHEN ${want} = 1 THEN ${sd} END, \
             successor_sealed = CASE WHEN ${want} = 1 THEN NULLIF(${ss}, '') END WHERE {live}"
        );
        let cols = REFRESH_COLUMNS;
        // The predecessor's sealed copy of this token is needed no more once it is taken
        // (its retry would be a replay now): wiped in the same write. Harmless when the take
        // fails, since this token was then used already.
        let wipe = format!(
            "UPDATE refresh_tokens SET successor_sealed = NULL \
             WHERE successor_digest IN ({ids}) AND successor_sealed IS NOT NULL",
            ids = placeholders(1, n)
        );
        let sql = match self.backend {
            super::Backend::Postgres => format!(
                "WITH taken AS ({take} RETURNING {cols}), \
                 s AS (INSERT INTO refresh_tokens (token_digest, {cols}, created_at) \
                 SELECT ${sd}, {cols}, ${t} FROM taken WHERE ${want} = 1), \
                 w AS ({wipe} AND EXISTS (SELECT 1 FROM taken)) \
                 SELECT grant_id FROM taken"
            ),
            super::Backend::Sqlite => format!(
                "BEGIN IMMEDIATE; \
                 {take} RETURNING grant_id; \
                 INSERT INTO refresh_tokens (token_digest, {cols}, created_at) \
                 SELECT ${sd}, {cols}, ${t} FROM refresh_tokens \
                 WHERE token_digest IN ({ids}) AND rotated_at = ${t} AND ${want} = 1 AND changes() = 1; \
                 {wipe}; \
                 COMMIT",
                ids = placeholders(1, n)
            ),
        };
        let mut args: Vec<WriteArg> = digests.iter().cloned().map(WriteArg::Text).collect();
        let (digest, sealed) = successor
            .as_ref()
            .map(|s| (s.digest.clone(), s.sealed.clone()))
            .unwrap_or_default();
        args.extend([
            WriteArg::Int(now),
            WriteArg::Text(client_id.to_owned()),
            WriteArg::Text(digest),
            WriteArg::Int(i64::from(successor.is_some())),
            WriteArg::Text(sealed),
        ]);
        if self.write_batch(sql, args).await? {
            return Ok(Redeemed::Fresh(taken));
        }
        // Taken meanwhile (by the same request sent twice, or a replay), or no longer live.
        match self
            .read_single_use(REFRESH_TOKENS, REFRESH_READ_COLUMNS, digests)
            .await?
        {
            Some((row, Some(replay))) => {
                self.retry_or_replay(&row, replay, client_id, now, retry_grace)
                    .await
            }
            _ => Ok(Redeemed::Invalid),
        }
    }

    /// A rotated refresh token presented again: a retry within the grace (its client, its
    /// successor unused and live, its grant standing, its user enabled), or a replay.
    async fn retry_or_replay<E>(
        &self,
        row: &AnyRow,
        replay: Replay,
        client_id: &str,
        now: i64,
        retry_grace: i64,
    ) -> Result<Redeemed<RefreshRow, E>, StoreError> {
        let rotated_at: i64 = row.try_get("used_at")?;
        let digest: Option<String> = row.try_get("successor_digest")?;
        let sealed: Option<String> = row.try_get("successor_sealed")?;
        let (Some(digest), Some(sealed)) = (digest, sealed) else {
            return Ok(Redeemed::Replayed(replay));
        };
        if replay.client_id != client_id || now - rotated_at > retry_grace || retry_grace <= 0 {
            return Ok(Redeemed::Replayed(replay));
        }
        let live = sqlx::query(&format!(
            "SELECT 1 AS live FROM refresh_tokens WHERE token_digest = $1 AND rotated_at IS NULL \
             AND expires_at > $2 \
             AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NOT NULL) \
             AND {}",
            user_enabled("refresh_tokens")
        ))
        .bind(&digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if live.is_none() {
            return Ok(Redeemed::Replayed(replay));
        }
        Ok(Redeemed::Retried(
            refresh_from_row(row)?,
            Successor { digest, sealed },
        ))
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

/// `INSERT INTO grants`, only for a user who exists and is enabled; see
/// [`Store::create_grant`]. `$1..$5`: id, client, user, now, expires_at.
fn grant_insert(backend: super::Backend) -> String {
    let lock = match backend {
        super::Backend::Postgres => " FOR SHARE",
        super::Backend::Sqlite => "",
    };
    format!(
        "INSERT INTO grants (id, client_id, user_id, created_at, expires_at) \
         SELECT $1, $2, id, $4, $5 FROM users WHERE id = $3 AND disabled_at IS NULL{lock} \
         ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at"
    )
}

fn refresh_insert<'q>(
    digest: &'q str,
    r: &'q RefreshRow,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(REFRESH_INSERT)
        .bind(digest)
        .bind(&r.grant_id)
        .bind(&r.client_id)
        .bind(&r.authn.user_id)
        .bind(&r.authn.sid)
        .bind(&r.scope)
        .bind(r.authn.auth_time)
        .bind(amr_json(&r.authn.amr))
        .bind(&r.authn.acr)
        .bind(r.claims.as_ref().map(ClaimsRequest::to_json))
        .bind(r.expires_at)
        .bind(now)
        .bind(&r.dpop_jkt)
        .bind(&r.resource)
}

const REFRESH_INSERT: &str = "INSERT INTO refresh_tokens (token_digest, grant_id, client_id, user_id, sid, scope, auth_time, amr, acr, claims, expires_at, created_at, dpop_jkt, resource) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// [`user_enabled`], holding the user's row `FOR SHARE` on PostgreSQL to the end of the
/// statement's transaction, so a `user disable` (which locks the user, then the user's grants
/// and codes) waits for a redemption instead of deadlocking with it.
fn user_enabled_locked(backend: super::Backend, table: &str) -> String {
    match backend {
        super::Backend::Postgres => format!(
            "EXISTS (SELECT 1 FROM users u WHERE u.id = {table}.user_id AND u.disabled_at IS NULL FOR SHARE)"
        ),
        super::Backend::Sqlite => user_enabled(table),
    }
}

fn amr_json(amr: &[String]) -> String {
    serde_json::Value::from(amr).to_string()
}

fn authn_from_row(row: &AnyRow) -> Result<Authn, StoreError> {
    let amr: String = row.try_get("amr")?;
    Ok(Authn {
        user_id: row.try_get("user_id")?,
        sid: row.try_get("sid")?,
        auth_time: row.try_get("auth_time")?,
        amr: serde_json::from_str(&amr).map_err(|e| StoreError::Corrupt(format!("amr: {e}")))?,
        acr: row.try_get("acr")?,
    })
}

/// The stored `claims` request of a code or refresh token.
fn claims_from_row(row: &AnyRow) -> Result<Option<ClaimsRequest>, StoreError> {
    let text: Option<String> = row.try_get("claims")?;
    text.map(|t| ClaimsRequest::parse(&t).map_err(|e| StoreError::Corrupt(format!("claims: {e}"))))
        .transpose()
}

fn code_from_row(row: &AnyRow) -> Result<CodeRow, StoreError> {
    Ok(CodeRow {
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        nonce: row.try_get("nonce")?,
        code_challenge: row.try_get("code_challenge")?,
        claims: claims_from_row(row)?,
        authn: authn_from_row(row)?,
        expires_at: row.try_get("expires_at")?,
        dpop_jkt: row.try_get("dpop_jkt")?,
        resource: row.try_get("resource")?,
    })
}

fn refresh_from_row(row: &AnyRow) -> Result<RefreshRow, StoreError> {
    Ok(RefreshRow {
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        claims: claims_from_row(row)?,
        authn: authn_from_row(row)?,
        expires_at: row.try_get("expires_at")?,
        dpop_jkt: row.try_get("dpop_jkt")?,
        resource: row.try_get("resource")?,
    })
}
