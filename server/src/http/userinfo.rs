//! `/userinfo` (OIDC Core §5.3): GET or POST, token in the header or (POST) the form body.

use poem::http::Method;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::Value;

use super::authorize::is_form;
use super::bearer::{access_token, refuse_token};
use super::error::ApiError;
use super::respond::json_ok;
use crate::access::Audience;
use crate::oauth::claims::{UserInfo, user_claims};
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;
use crate::state::AppState;

#[handler]
pub async fn userinfo(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let form = if req.method() == Method::POST && is_form(req) {
        let parsed = body
            .into_vec()
            .await
            .ok()
            .and_then(|b| Params::parse(&b).ok());
        Some(parsed.ok_or(ApiError::bearer(
            B::InvalidRequest,
            "the form could not be read",
        ))?)
    } else {
        None
    };
    let claims = access_token(state, req, form.as_ref(), Audience::Issuer, "openid").await?;
    let scope = claims.str("scope").unwrap_or_default();
    let scopes: Vec<&str> = scope.split(' ').collect();
    let invalid =
        |why: &'static str| refuse_token(state, &claims, BearerError::new(B::InvalidToken, why));
    let sub = claims
        .str("sub")
        .ok_or_else(|| invalid("the token has no subject"))?;
    let user = state
        .store
        .active_user(sub)
        .await?
        .ok_or_else(|| invalid("the user is no longer active"))?;
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
    let groups = if crate::oauth::claims::wants_groups(&scopes, &names) {
        state.store.group_names_of(&user.id).await?
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
    Ok(json_ok(&user_claims(&info, &scopes, &names)))
}
