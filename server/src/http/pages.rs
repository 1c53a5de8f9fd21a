//! What the pages share: reading a CSRF-checked form, the signed-in user, starting a session
//! after a sign-in, and the way back to the account page. Pages import this module, never each
//! other's helpers.

use poem::http::{StatusCode, header};
use poem::{Request, Response};

use super::authorize::is_form;
use super::browser::{
    client_ip, csrf_ok, current_session, session_cookie_name, set_cookie, user_agent,
};
use super::error::PageError;
use crate::oauth::params::Params;
use crate::secrets::{Purpose, SessionId, random_token};
use crate::state::{AppState, secs};
use crate::store::{NewSession, Session, User};
use crate::views::Msg;

/// The parameter that carries a user code through sign-in, back to `/device`.
pub const CARRIED_USER_CODE: &str = "device_user_code";

/// The parameter that carries forward-auth's `rd` through a sign-in, back to `/login?rd=`.
pub const CARRIED_RD: &str = "forward_auth_rd";

/// Reads a page form and checks its CSRF token.
pub async fn checked_form(
    state: &AppState,
    req: &Request,
    body: poem::Body,
) -> Result<Params, PageError> {
    let bytes = if is_form(req) {
        body.into_vec().await.ok()
    } else {
        None
    };
    let Some(form) = bytes.and_then(|b| Params::parse(&b).ok()) else {
        return Err(PageError::bad_request(Msg::FormUnreadable));
    };
    if !csrf_ok(state, req, form.get("csrf_token")) {
        return Err(PageError::FormExpired);
    }
    Ok(form)
}

/// Starts a session for a user who has just signed in, and sends the browser on: back to
/// the authorization request it came with, or to the account page. A new session id at every
/// sign-in (no fixation); the browser's old session, if any, ends.
pub async fn signed_in(
    state: &AppState,
    req: &Request,
    user_id: &str,
    amr: &[&str],
    acr: &str,
    request: &Params,
    now: i64,
) -> Result<Response, PageError> {
    // The same user signing in again (prompt=login, max_age, step-up) keeps the session's
    // `sid` under a new cookie: the applications' sessions go on, and nobody is told of a
    // logout. Another user's sign-in ends the old session, and its applications are told.
    let mut sid = random_token(16);
    if let Some(old) = current_session(state, req, now).await {
        if old.user_id == user_id {
            match state
                .store
                .retire_session(&old.sid, &random_token(8), now)
                .await
            {
                Ok(true) => sid = old.sid.clone(),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "retiring the old session failed"),
            }
        } else if let Err(e) = state.store.revoke_session(&old.sid, now).await {
            tracing::warn!(error = %e, "ending the old session failed");
        }
    }
    let id = SessionId::generate();
    let absolute = secs(state.config.sessions.absolute_lifetime);
    let amr = serde_json::json!(amr).to_string();
    let ip = client_ip(state, req);
    let ua = user_agent(req);
    let created = state
        .store
        .create_session(&NewSession {
            id_digest: &state
                .pepper
                .digest(Purpose::Session, id.expose().as_bytes()),
            sid: &sid,
            user_id,
            auth_time: now,
            amr: &amr,
            acr,
            ip: ip.as_deref(),
            user_agent: ua.as_deref(),
            now,
            expires_at: now + absolute,
        })
        .await;
    if let Err(e) = created {
        return Err(PageError::server("creating the session", e));
    }
    let location = if request.contains("client_id") {
        format!("/authorize?{}", request.encode())
    } else if let Some(code) = request
        .get(CARRIED_USER_CODE)
        .and_then(crate::oauth::device::normalize_user_code)
    {
        format!("/device?user_code={code}")
    } else if let Some(rd) = request.get(CARRIED_RD) {
        // Back through /login?rd=, which checks rd again and sets the forward-auth cookie.
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", rd)
            .finish();
        format!("/login?{q}")
    } else {
        "/account".to_owned()
    };
    let cookie = set_cookie(
        state,
        session_cookie_name(state),
        id.expose(),
        Some(absolute),
    );
    Ok(Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::SET_COOKIE, cookie)
        .header(header::CACHE_CONTROL, "no-store")
        .finish())
}

/// The signed-in session and its user, if the browser has a live session.
pub async fn signed_in_user(state: &AppState, req: &Request) -> Option<(Session, User)> {
    let now = state.clock.now();
    let session = current_session(state, req, now).await?;
    match state.store.active_user(&session.user_id).await {
        Ok(Some(user)) => Some((session, user)),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            None
        }
    }
}

/// A form post from the account page: CSRF-checked and from a signed-in user.
pub async fn account_form(
    state: &AppState,
    req: &Request,
    body: poem::Body,
) -> Result<(Params, Session, User), PageError> {
    let form = checked_form(state, req, body).await?;
    let (session, user) = signed_in_user(state, req)
        .await
        .ok_or_else(PageError::to_account)?;
    Ok((form, session, user))
}

/// Whether the session's sign-in is recent enough for sensitive changes
/// (`sessions.recent_signin`).
pub fn recently_signed_in(state: &AppState, session: &Session) -> bool {
    state.clock.now() - session.auth_time <= secs(state.config.sessions.recent_signin)
}

pub fn see_other(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .finish()
}

/// Back to the account page (which sends a signed-out browser to sign in).
pub fn account_redirect() -> Response {
    see_other("/account")
}
