//! `/userinfo` (OIDC Core §5.3): GET or POST, token in the header or (POST) the form body.

use poem::http::Method;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::Value;

use super::authorize::is_form;
use super::bearer::presented_token;
use super::respond::{bearer_error, bearer_missing, json_ok};
use crate::access::Audience;
use crate::oauth::claims::{UserInfo, user_claims};
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;
use crate::state::AppState;

#[handler]
pub async fn userinfo(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let form = if req.method() == Method::POST && is_form(req) {
        match body
            .into_vec()
            .await
            .ok()
            .and_then(|b| Params::parse(&b).ok())
        {
            Some(p) => Some(p),
            None => {
                return bearer_error(
                    &BearerError::new(B::InvalidRequest, "the form could not be read"),
                    None,
                );
            }
        }
    } else {
        None
    };
    let token = match presented_token(req, form.as_ref()) {
        Ok(Some(t)) => t,
        Ok(None) => return bearer_missing(),
        Err(e) => return bearer_error(&e, None),
    };
    let now = state.clock.now();
    let claims = match state
        .access_tokens()
        .verify(&token, now, Audience::Issuer)
        .await
    {
        Ok(c) => c,
        Err(e) => return bearer_error(&e, None),
    };
    let scope = claims.str("scope").unwrap_or_default();
    let scopes: Vec<&str> = scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return bearer_error(
            &BearerError::new(B::InsufficientScope, "userinfo needs the openid scope"),
            Some("openid"),
        );
    }
    let Some(sub) = claims.str("sub") else {
        return bearer_error(
            &BearerError::new(B::InvalidToken, "the token has no subject"),
            None,
        );
    };
    let user = match state.store.active_user(sub).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return bearer_error(
                &BearerError::new(B::InvalidToken, "the user is no longer active"),
                None,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return super::server_error("userinfo user lookup");
        }
    };
    // Claims asked for by name (the `claims` parameter) ride in the access token.
    let names: Vec<String> = claims
        .get("userinfo_claims")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let info = UserInfo {
        id: &user.id,
        email: &user.email,
        email_verified: user.email_verified,
        name: user.name.as_deref(),
    };
    json_ok(&user_claims(&info, &scopes, &names))
}
