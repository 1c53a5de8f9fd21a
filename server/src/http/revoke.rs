//! `/revoke` (RFC 7009) and `/introspect` (RFC 7662). Both authenticate the client.
//! Revoking a refresh token revokes its family and every access token of that grant; revoking
//! an access token denies its `jti` from then on.

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::json;

use super::client_auth::{authenticated_client, failed_request, gate_closed};
use super::respond::{json_ok, token_error};
use crate::access::Audience;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::secrets::Purpose;
use crate::state::AppState;

#[handler]
pub async fn revoke(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    if let Some(closed) = gate_closed(req, state).await {
        return closed;
    }
    let (client, params) = match authenticated_client(req, body, state, false).await {
        Ok(x) => x,
        Err(e) => return failed_request(req, state, &e).await,
    };
    let Some(token) = params.get("token") else {
        return token_error(
            &TokenError::new(T::InvalidRequest, "token is required"),
            false,
        );
    };
    let now = state.clock.now();
    let result = async {
        let digests = state
            .pepper
            .lookup_digests(Purpose::RefreshToken, token.as_bytes());
        if let Some(row) = state.store.refresh_token_grant(&digests, now).await? {
            if row.client_id == client.client_id {
                state.store.revoke_grant(&row.grant_id, now).await?;
            }
            return Ok(());
        }
        if let Some((jti, exp, owner)) = state.access_tokens().to_revoke(token, now).await
            && owner == client.client_id
        {
            state.store.revoke_access_token(&jti, exp).await?;
        }
        Ok::<(), crate::store::StoreError>(())
    }
    .await;
    match result {
        // RFC 7009 §2.2: 200 whether or not the token was valid.
        Ok(()) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CACHE_CONTROL, "no-store")
            .finish(),
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            token_error(&TokenError::new(T::ServerError, "server error"), false)
        }
    }
}

#[handler]
pub async fn introspect(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    if let Some(closed) = gate_closed(req, state).await {
        return closed;
    }
    let (client, params) = match authenticated_client(req, body, state, false).await {
        Ok(x) => x,
        Err(e) => return failed_request(req, state, &e).await,
    };
    let Some(token) = params.get("token") else {
        return token_error(
            &TokenError::new(T::InvalidRequest, "token is required"),
            false,
        );
    };
    let now = state.clock.now();
    let inactive = json!({ "active": false });

    let digests = state
        .pepper
        .lookup_digests(Purpose::RefreshToken, token.as_bytes());
    match state.store.refresh_token_grant(&digests, now).await {
        // A refresh token is only described to the client that holds it: to anyone else it
        // is just not an active token (RFC 7662 §2.2 leaves this to the server).
        Ok(Some(row)) if row.client_id == client.client_id => {
            return json_ok(&json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": row.scope,
                "client_id": row.client_id,
                "sub": row.authn.user_id,
                "exp": row.expires_at,
                "iss": state.config.issuer,
            }));
        }
        Ok(Some(_)) => return json_ok(&inactive),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "introspection failed");
            return token_error(&TokenError::new(T::ServerError, "server error"), false);
        }
    }
    match state
        .access_tokens()
        .verify(token, now, Audience::AnyOurs)
        .await
    {
        Ok(claims) => {
            let mut out = json!({ "active": true, "token_type": "Bearer" });
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
            ] {
                if let Some(v) = claims.get(name) {
                    out[name] = v.clone();
                }
            }
            json_ok(&out)
        }
        Err(_) => json_ok(&inactive),
    }
}
