//! `/revoke` (RFC 7009) and `/introspect` (RFC 7662). Both authenticate the client.
//! Revoking a refresh token revokes its family and every access token of that grant; revoking
//! an access token denies its `jti` from then on.

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::json;

use super::client_auth::{authenticated_client, failed_request, gate_closed};
use super::error::ApiError;
use super::respond::json_ok;
use crate::access::Audience;
use crate::oauth::client::Client;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::params::Params;
use crate::secrets::Purpose;
use crate::state::AppState;

#[handler]
pub async fn revoke(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (client, params) = authenticated(req, body, state).await?;
    let token = required_token(&params)?;
    let now = state.clock.now();
    let digests = state
        .pepper
        .lookup_digests(Purpose::RefreshToken, token.as_bytes());
    if let Some(row) = state.store.refresh_token_grant(&digests, now).await? {
        if row.client_id == client.client_id {
            state.store.revoke_grant(&row.grant_id, now).await?;
        }
    } else if let Some((jti, exp, owner)) = state.access_tokens().to_revoke(token, now).await
        && owner == client.client_id
    {
        state.store.revoke_access_token(&jti, exp).await?;
    }
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CACHE_CONTROL, "no-store")
        .finish())
}

/// The gate, then client authentication, as at the token endpoint.
async fn authenticated(
    req: &Request,
    body: poem::Body,
    state: &AppState,
) -> Result<(Client, Params), ApiError> {
    gate_closed(req, state).await?;
    match authenticated_client(req, body, state, false).await {
        Ok(x) => Ok(x),
        Err(e) => Err(failed_request(req, state, e).await),
    }
}

/// RFC 7009 §2.1, RFC 7662 §2.1: `token` is required.
fn required_token(params: &Params) -> Result<&str, ApiError> {
    params.get("token").ok_or(ApiError::Token {
        error: TokenError::new(T::InvalidRequest, "token is required"),
        basic: false,
    })
}

#[handler]
pub async fn introspect(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (client, params) = authenticated(req, body, state).await?;
    let token = required_token(&params)?;
    let now = state.clock.now();
    let inactive = json!({ "active": false });

    let digests = state
        .pepper
        .lookup_digests(Purpose::RefreshToken, token.as_bytes());
    match state.store.refresh_token_grant(&digests, now).await? {
        // A refresh token is only described to the client that holds it: to anyone else it
        // is just not an active token (RFC 7662 §2.2 leaves this to the server).
        Some(row) if row.client_id == client.client_id => {
            return Ok(json_ok(&json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": row.scope,
                "client_id": row.client_id,
                "sub": row.authn.user_id,
                "exp": row.expires_at,
                "iss": state.config.issuer,
            })));
        }
        Some(_) => return Ok(json_ok(&inactive)),
        None => {}
    }
    match state
        .access_tokens()
        .verify(token, now, Audience::AnyOurs)
        .await
    {
        Ok(claims) => {
            // RFC 9449 §6.2: a bound token says so, and names its key in `cnf`.
            let token_type = if crate::access::bound_key(&claims).is_some() {
                "DPoP"
            } else {
                "Bearer"
            };
            let mut out = json!({ "active": true, "token_type": token_type });
            for name in [
                "scope",
                "client_id",
                "sub",
                "exp",
                "iat",
                "iss",
                "aud",
                "jti",
                "auth_time",
                "acr",
                "act",
                "cnf",
            ] {
                if let Some(v) = claims.get(name) {
                    out[name] = v.clone();
                }
            }
            Ok(json_ok(&out))
        }
        Err(_) => Ok(json_ok(&inactive)),
    }
}
