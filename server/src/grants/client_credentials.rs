//! RFC 6749 §4.4: the client acts for itself. `sub` is its id (RFC 9068 §2.2); the scope is
//! within its own and holds no user scope; no refresh token (§4.4.3) and no id_token.

use super::{TokenContext, TokenRequest, TokenResponse, invalid_scope, issue};
use crate::clock::secs;
use crate::oauth::error::TokenError;
use crate::oauth::scope;
use crate::oauth::tokens::{AccessTokenInput, access_token_claims};
use crate::secrets::random_token;

pub const PARAMETERS: &[&str] = &["scope"];

pub async fn redeem(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let client = req.client;
    let scope = scope::for_client_itself(req.params.get("scope"), client.allowed_scopes())
        .map_err(invalid_scope)?;
    let jti = random_token(16);
    let lifetime = secs(ctx.tokens.access_token_lifetime);
    let mut claims = access_token_claims(&AccessTokenInput {
        issuer: ctx.issuer,
        audience: &req.audience,
        client_id: &client.client_id,
        sub: &client.client_id,
        scope: &scope,
        jti: &jti,
        grant_id: None,
        auth: None,
        now: req.now,
        lifetime,
    });
    req.bind(&mut claims);
    let access_token = issue::sign_access_token(ctx, "at+jwt", &claims, req.now).await?;
    Ok(TokenResponse {
        access_token,
        token_type: req.token_type(),
        expires_in: lifetime,
        scope: (!scope.is_empty()).then_some(scope),
        id_token: None,
        refresh_token: None,
        issued_token_type: None,
    })
}
