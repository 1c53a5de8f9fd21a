//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at `/logout`.
//!
//! With a valid `id_token_hint` the session ends at once; without one the user is asked to
//! confirm (a CSRF-protected form). `post_logout_redirect_uri` must exactly match one the
//! client registered, and the client must be known (from the hint or `client_id`): otherwise
//! an error page, never a redirect.

use latchkey_jwks::{Alg, VerifyOptions};
use poem::http::{Method, StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::Value;

use super::authorize::{is_form, load_client};
use super::browser::{
    append_cookie, csrf_ok, csrf_token, current_session, session_cookie_name, set_cookie,
};
use super::error::PageError;
use super::respond::page;
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::views::Msg;

#[handler]
pub async fn logout(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let bad = |msg: Msg| {
        Err(PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::LogoutInvalidTitle,
            msg,
        ))
    };
    let raw = if req.method() == Method::POST {
        if !is_form(req) {
            return bad(Msg::LogoutPostNotForm);
        }
        body.into_vec().await.unwrap_or_default()
    } else {
        req.uri().query().unwrap_or_default().as_bytes().to_vec()
    };
    let Ok(outer) = Params::parse(&raw) else {
        return bad(Msg::LogoutParamsUnreadable);
    };
    // The confirmation form carries the original request.
    let (params, confirmed) = if req.method() == Method::POST && outer.get("confirm") == Some("yes")
    {
        if !csrf_ok(state, req, outer.get("csrf_token")) {
            return Err(PageError::FormExpired);
        }
        match Params::parse(outer.get("request").unwrap_or_default().as_bytes()) {
            Ok(p) => (p, true),
            Err(_) => return bad(Msg::FormUnreadable),
        }
    } else {
        (outer, false)
    };

    let now = state.clock.now();
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(h) => match hint_claims(state, h, params.get("client_id"), now).await {
            Some(c) => Some(c),
            None => return bad(Msg::LogoutBadHint),
        },
    };
    let client_id = hint
        .as_ref()
        .map(|(aud, _, _)| aud.clone())
        .or_else(|| params.get("client_id").map(str::to_owned));
    let client = match &client_id {
        Some(id) => match load_client(state, req, id).await? {
            Some(c) => Some(c),
            None => return bad(Msg::ClientNotRegistered),
        },
        None => None,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match &client {
            Some(c)
                if c.metadata
                    .post_logout_redirect_uris
                    .iter()
                    .any(|r| r == uri) =>
            {
                Some(uri.to_owned())
            }
            Some(_) => {
                return bad(Msg::LogoutRedirectUnregistered);
            }
            None => {
                return bad(Msg::LogoutRedirectNeedsClient);
            }
        },
    };

    let session = current_session(state, req, now).await;
    if hint.is_none() && !confirmed && session.is_some() {
        let (csrf, cookie) = csrf_token(state, req);
        let mut resp = page(
            state,
            StatusCode::OK,
            "logout.html",
            minijinja::context! {
                client_name => client.as_ref().map(|c| c.metadata.client_name.clone()),
                csrf_token => csrf,
                request => params.encode(),
            },
        );
        append_cookie(&mut resp, cookie);
        if let Some(uri) = &redirect {
            super::respond::allow_form_redirect(&mut resp, uri);
        }
        return Ok(resp);
    }
    if let Some(s) = &session {
        let same_user = hint.as_ref().is_none_or(|(_, sub, _)| *sub == s.user_id);
        if same_user {
            if let Err(e) = state.store.revoke_session(&s.sid, now).await {
                tracing::error!(error = %e, "ending the session failed");
                return Err(PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Msg::ErrorTitle,
                    Msg::ErrorPleaseTryAgain,
                ));
            }
            state.forward_auth_cache.forget_session(&s.sid);
            tracing::info!(user = %s.user_id, "signed out");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::SessionEnded, &s.user_id)
                    .details(serde_json::json!({"how": "logout", "sid": s.sid})),
            )
            .await;
        }
    }
    let clear = set_cookie(state, session_cookie_name(state), "", Some(0));
    let mut resp = match redirect {
        Some(uri) => {
            let location = match params.get("state") {
                Some(st) => {
                    let q = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("state", st)
                        .finish();
                    format!("{uri}{}{q}", if uri.contains('?') { '&' } else { '?' })
                }
                None => uri,
            };
            Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, location)
                .header(header::CACHE_CONTROL, "no-store")
                .finish()
        }
        None => page(
            state,
            StatusCode::OK,
            "logged_out.html",
            minijinja::context! {},
        ),
    };
    append_cookie(&mut resp, Some(clear));
    append_cookie(&mut resp, super::browser::clear_forward_auth_cookie(state));
    Ok(resp)
}

/// `(client_id, sub, sid)` of a valid hint: our signature, our issuer; expiry does not matter
/// (the hint is usually an old id_token). The audience is the `client_id` given, or else the
/// hint's own, which the signature vouches for.
async fn hint_claims(
    state: &AppState,
    hint: &str,
    client_id: Option<&str>,
    now: i64,
) -> Option<(String, String, Option<String>)> {
    let ring = state.keys.keyring(now).await.ok()?;
    let audience = match client_id {
        Some(c) => c.to_owned(),
        None => unverified_aud(hint)?,
    };
    let opts = VerifyOptions {
        algs: &Alg::ALL,
        issuer: &state.config.issuer,
        audience: &audience,
        typ: None,
        now,
        leeway: i64::MAX / 4,
    };
    let claims = ring.verify(hint, &opts).ok()?;
    Some((
        audience,
        claims.str("sub")?.to_owned(),
        claims.str("sid").map(str::to_owned),
    ))
}

fn unverified_aud(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    match v.get("aud")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}
