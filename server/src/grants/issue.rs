//! Issuing what the grants hand out: RFC 9068 JWT access tokens, OIDC id_tokens (Core
//! §3.1.3.3, §12.2), refresh tokens (RFC 6749 §6, stored as digests, rotated by the store in
//! the same transaction that takes their predecessor), and revoking a grant when a code or a
//! rotated refresh token comes back (RFC 6749 §4.1.2, RFC 9700 §4.14.2).

use serde_json::{Map, Value, json};

use super::{TokenContext, TokenRequest, TokenResponse, err, server_error};
use crate::clock::secs;
use crate::oauth::claims::{ClaimsRequest, UserInfo, user_claims};
use crate::oauth::client::{Client, GrantType};
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::tokens::{
    ACCESS_TOKEN_ALG, AccessTokenInput, IdTokenInput, Subject, access_token_claims, id_token_claims,
};
use crate::secrets::{Purpose, RefreshToken, random_token};
use crate::store::{Authn, Replay, Successor};

/// What a user grant issues now.
pub(super) struct Issue<'a> {
    pub grant_id: &'a str,
    /// Scope of the access token (and id_token) issued now; a refresh may have narrowed it.
    pub scope: &'a str,
    pub authn: &'a Authn,
    pub nonce: Option<&'a str>,
    /// The OIDC `claims` request parameter the grant was given with.
    pub claims: Option<&'a ClaimsRequest>,
    /// `aud` of the access token: the grant's resource, or the request's.
    pub audience: &'a str,
}

/// A refresh token about to be issued: the secret for the response, and the digest the store
/// keeps (in the transaction that takes what it replaces).
pub(super) struct NewRefresh {
    pub token: RefreshToken,
    pub digest: String,
}

impl NewRefresh {
    pub fn generate(ctx: &TokenContext<'_>) -> Self {
        let token = RefreshToken::generate();
        let digest = ctx
            .pepper
            .digest(Purpose::RefreshToken, token.expose().as_bytes());
        Self { token, digest }
    }

    /// What the store keeps of a rotation's successor: its digest, and itself sealed under
    /// the key-encryption key for the retry grace (the digest as associated data, so a box
    /// cannot be moved to another row).
    pub fn successor(&self, ctx: &TokenContext<'_>) -> Result<Successor, TokenError> {
        use base64::Engine as _;
        let (kek, sealed) = ctx
            .keks
            .seal(self.token.expose().as_bytes(), self.digest.as_bytes())
            .map_err(server_error)?;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
        Ok(Successor {
            digest: self.digest.clone(),
            sealed: format!("{kek}.{sealed}"),
        })
    }
}

/// Opens a successor sealed by [`NewRefresh::successor`], to answer it again.
pub(super) fn open_successor(
    ctx: &TokenContext<'_>,
    s: &Successor,
) -> Result<RefreshToken, TokenError> {
    use base64::Engine as _;
    let opened = s
        .sealed
        .rsplit_once('.')
        .and_then(|(kek, b64)| {
            let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .ok()?;
            ctx.keks.open(kek, &sealed, s.digest.as_bytes()).ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| server_error("a sealed refresh token successor could not be opened"))?;
    Ok(RefreshToken::new(opened))
}

/// RFC 8707: the audience of a grant's access token: the resource the authorization request
/// named, which a token request may only repeat (`invalid_target` otherwise); without one,
/// what the token request asked (the issuer by default).
pub(super) fn grant_audience<'r>(
    granted: Option<&'r str>,
    req: &'r TokenRequest<'_>,
) -> Result<&'r str, TokenError> {
    match granted {
        None => Ok(&req.audience),
        Some(r) if req.params.get("resource").is_none_or(|asked| asked == r) => Ok(r),
        Some(_) => Err(err(
            T::InvalidTarget,
            "the resource differs from the one the authorization was for",
        )),
    }
}

/// Whether a grant of `client` with `granted_scope` comes with refresh tokens: the client has
/// the grant type and, with `tokens.refresh_requires_offline_access`, `offline_access` was
/// granted (OIDC Core §11).
pub(super) fn refreshable(ctx: &TokenContext<'_>, client: &Client, granted_scope: &str) -> bool {
    let offline_ok = !ctx.tokens.refresh_requires_offline_access
        || granted_scope.split(' ').any(|s| s == "offline_access");
    client.has_grant(GrantType::RefreshToken) && offline_ok
}

/// The access token, the id_token (for `openid`) and the refresh token (already stored) of a
/// user grant. The user is enabled: the code, refresh token or device code was taken only on
/// that condition, and a grant made only on it.
pub(super) async fn user_tokens(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
    i: &Issue<'_>,
    refresh: Option<RefreshToken>,
) -> Result<TokenResponse, TokenError> {
    let client = req.client;
    let now = req.now;
    let user_id = i.authn.user_id.as_str();
    let subject = Subject {
        user_id,
        auth_time: i.authn.auth_time,
        amr: &i.authn.amr,
        acr: &i.authn.acr,
        sid: i.authn.sid.as_deref(),
    };
    let ring = ctx.keys.keyring(now).await.map_err(server_error)?;
    let at_lifetime = secs(ctx.tokens.access_token_lifetime);
    let jti = random_token(16);
    let mut at_claims = access_token_claims(&AccessTokenInput {
        issuer: ctx.issuer,
        audience: i.audience,
        client_id: &client.client_id,
        sub: user_id,
        scope: i.scope,
        jti: &jti,
        grant_id: Some(i.grant_id),
        auth: Some(&subject),
        now,
        lifetime: at_lifetime,
    });
    // Claims asked for by name for userinfo (OIDC Core §5.5) ride in the access token.
    if let Some(names) = i.claims.map(|c| &c.userinfo).filter(|n| !n.is_empty()) {
        at_claims.insert("userinfo_claims".into(), json!(names));
    }
    req.bind(&mut at_claims);
    let access_token = ring
        .sign(ACCESS_TOKEN_ALG, "at+jwt", &at_claims)
        .map_err(server_error)?;

    let id_token = if i.scope.split(' ').any(|s| s == "openid") {
        let names: &[String] = i.claims.map_or(&[], |c| &c.id_token);
        // The groups scope puts the user's groups in the id_token too (relying parties
        // authorize by them at sign-in).
        let scopes: Vec<&str> = i.scope.split(' ').collect();
        let groups_wanted = crate::oauth::claims::wants_groups(&scopes, names);
        let id_scopes: &[&str] = if groups_wanted { &["groups"] } else { &[] };
        let extra: Map<String, Value> = if names.is_empty() && !groups_wanted {
            Map::new()
        } else {
            // Claims asked for by name (OIDC Core §5.5): only then is the user read.
            let user = ctx
                .store
                .active_user(user_id)
                .await
                .map_err(server_error)?
                .ok_or_else(|| err(T::InvalidGrant, "the user is no longer active"))?;
            let groups = if groups_wanted {
                ctx.store
                    .group_names_of(&user.id)
                    .await
                    .map_err(server_error)?
            } else {
                Vec::new()
            };
            let info = UserInfo {
                id: &user.id,
                email: &user.email,
                email_verified: user.email_verified,
                name: user.name.as_deref(),
                groups: &groups,
            };
            user_claims(&info, id_scopes, names)
        };
        let alg = client.id_token_alg();
        let claims = id_token_claims(&IdTokenInput {
            issuer: ctx.issuer,
            client_id: &client.client_id,
            subject: subject.clone(),
            nonce: i.nonce,
            access_token: Some(&access_token),
            alg,
            now,
            lifetime: secs(ctx.tokens.id_token_lifetime),
            extra,
        });
        Some(ring.sign(alg, "JWT", &claims).map_err(server_error)?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: req.token_type(),
        expires_in: at_lifetime,
        scope: Some(i.scope.to_owned()),
        id_token,
        refresh_token: refresh.map(|t| t.expose().to_owned()),
        issued_token_type: None,
    })
}

/// Signs an access token's claims with the access-token key; `typ` is `at+jwt`, or `JWT`
/// for a token exchange that asked for a plain JWT.
pub(super) async fn sign_access_token(
    ctx: &TokenContext<'_>,
    typ: &str,
    claims: &Map<String, Value>,
    now: i64,
) -> Result<String, TokenError> {
    let ring = ctx.keys.keyring(now).await.map_err(server_error)?;
    ring.sign(ACCESS_TOKEN_ALG, typ, claims)
        .map_err(server_error)
}

/// A used code or rotated refresh token presented again: its grant is revoked, recorded so
/// if the first redemption has not made it yet (with the lifetime that redemption gives it).
pub(super) async fn revoke_replayed(
    ctx: &TokenContext<'_>,
    replay: &Replay,
    now: i64,
) -> Result<(), TokenError> {
    let expires = now + secs(ctx.tokens.refresh_token_lifetime);
    ctx.store
        .revoke_replayed(replay, now, expires)
        .await
        .map_err(server_error)
}
