//! Password sign-in (`/login`) and the consent answer (`/consent`). Both forms carry the
//! authorization request they interrupt and hand it back to the pipeline.

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};

use super::authorize::{is_form, load_client, login_page, run};
use super::browser::{
    append_cookie, client_ip, csrf_ok, current_session, session_cookie_name, set_cookie, user_agent,
};
use super::respond::{error_page, page};
use crate::oauth::params::Params;
use crate::secrets::{Purpose, random_token};
use crate::signin::throttle;
use crate::state::{AppState, secs};
use crate::store::NewSession;
use crate::views::Msg;

/// The single-factor password method: RFC 8176 `pwd`, ACR level 1.
const PASSWORD_AMR: &str = "pwd";
pub const PASSWORD_ACR: &str = "1";

/// Reads a page form and checks its CSRF token; on failure, the page to show instead.
pub async fn checked_form(
    state: &AppState,
    req: &Request,
    body: poem::Body,
) -> Result<Params, Response> {
    let bytes = if is_form(req) {
        body.into_vec().await.ok()
    } else {
        None
    };
    let Some(form) = bytes.and_then(|b| Params::parse(&b).ok()) else {
        return Err(error_page(
            state,
            StatusCode::BAD_REQUEST,
            Msg::InvalidRequestTitle,
            Msg::FormUnreadable,
        ));
    };
    if !csrf_ok(state, req, form.get("csrf_token")) {
        return Err(error_page(
            state,
            StatusCode::FORBIDDEN,
            Msg::FormExpiredTitle,
            Msg::FormExpiredMessage,
        ));
    }
    Ok(form)
}

#[handler]
pub async fn login_form(req: &Request, Data(state): Data<&AppState>) -> Response {
    plain_login_page(state, req, &Params::default(), None, "", StatusCode::OK)
}

#[handler]
pub async fn login(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let email = form.get("email").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    let request =
        Params::parse(form.get("request").unwrap_or_default().as_bytes()).unwrap_or_default();
    let now = state.clock.now();
    // Throttled before anything about the account is looked at: the answer is the same
    // whether or not it exists.
    let ip = client_ip(state, req);
    let throttle = throttle::Keys::new(&state.pepper, ip.as_deref(), &email);
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(wait) => {
            let msg = state
                .views
                .msg_with(Msg::TooManyAttempts, &[("seconds", &wait.to_string())]);
            return retry_page(
                state,
                req,
                &request,
                &msg,
                &email,
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
        }
        Err(e) => tracing::error!(error = %e, "sign-in throttle check failed"),
    }
    let user = match state.store.user_by_email(&email).await {
        Ok(u) => u.filter(|u| u.disabled_at.is_none()),
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return error_page(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                Msg::ErrorTitle,
                Msg::ErrorMessage,
            );
        }
    };
    let hash = match &user {
        Some(u) => state.store.password_hash(&u.id).await.ok().flatten(),
        None => None,
    };
    // An unknown account costs the same hash as a known one, so timing does not tell them apart.
    let verified = state.verify_password(password, hash).await;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!("password sign-in failed");
        if let Err(e) = throttle.failed(&state.store, now).await {
            tracing::error!(error = %e, "recording a failed sign-in failed");
        }
        return retry_page(
            state,
            req,
            &request,
            state.views.msg(Msg::WrongPassword),
            &email,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    if let Err(e) = throttle.succeeded(&state.store).await {
        tracing::warn!(error = %e, "clearing the sign-in throttle failed");
    }
    if let Some(page) =
        super::totp::second_factor_needed(state, req, &user.id, &request, PASSWORD_AMR).await
    {
        tracing::info!(user = %user.id, "password accepted; asking for the second factor");
        return page;
    }

    tracing::info!(user = %user.id, "signed in with a password");
    signed_in(
        state,
        req,
        &user.id,
        &[PASSWORD_AMR],
        PASSWORD_ACR,
        &request,
        now,
    )
    .await
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
) -> Response {
    if let Some(old) = current_session(state, req, now).await {
        let _ = state.store.revoke_session(&old.sid, now).await;
    }
    let id = random_token(32);
    let sid = random_token(16);
    let absolute = secs(state.config.sessions.absolute_lifetime);
    let amr = serde_json::json!(amr).to_string();
    let ip = client_ip(state, req);
    let ua = user_agent(req);
    let created = state
        .store
        .create_session(&NewSession {
            id_digest: &state.pepper.digest(Purpose::Session, id.as_bytes()),
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
        tracing::error!(error = %e, "creating the session failed");
        return error_page(
            state,
            StatusCode::INTERNAL_SERVER_ERROR,
            Msg::ErrorTitle,
            Msg::ErrorMessage,
        );
    }
    let location = if request.contains("client_id") {
        format!("/authorize?{}", request.encode())
    } else if let Some(code) = request
        .get(super::device::CARRIED_USER_CODE)
        .and_then(crate::oauth::device::normalize_user_code)
    {
        format!("/device?user_code={code}")
    } else {
        "/account".to_owned()
    };
    let cookie = set_cookie(state, session_cookie_name(state), &id, Some(absolute));
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::SET_COOKIE, cookie)
        .header(header::CACHE_CONTROL, "no-store")
        .finish()
}

/// The sign-in form again, with a message, for a failed or throttled attempt (password or
/// passkey), carrying the authorization request it came with, if any.
pub async fn retry_page(
    state: &AppState,
    req: &Request,
    request: &Params,
    message: &str,
    email: &str,
    status: StatusCode,
) -> Response {
    let client = match request.get("client_id") {
        Some(id) => match load_client(state, id).await {
            Ok(c) => c,
            Err(resp) => return resp,
        },
        None => None,
    };
    match client {
        Some(c) => login_page(state, req, request, &c, Some(message), email, status),
        None => plain_login_page(state, req, request, Some(message), email, status),
    }
}

/// The sign-in page on its own (no application asking); `request` is what the sign-in goes on
/// to (a device's user code), if anything.
pub fn plain_login_page(
    state: &AppState,
    req: &Request,
    request: &Params,
    error: Option<&str>,
    email: &str,
    status: StatusCode,
) -> Response {
    let (csrf, cookie) = super::browser::csrf_token(state, req);
    let mut resp = page(
        state,
        status,
        "login.html",
        minijinja::context! {
            csrf_token => csrf,
            request => request.encode(),
            email => email,
            error => error,
            signup_open => state.config.signup.policy == crate::config::SignupPolicy::Open,
            email_links => state.config.signin.email_links,
        },
    );
    append_cookie(&mut resp, cookie);
    resp
}

#[handler]
pub async fn consent(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let now = state.clock.now();
    let Some(session) = current_session(state, req, now).await else {
        return error_page(
            state,
            StatusCode::FORBIDDEN,
            Msg::SignedOutTitle,
            Msg::SignedOutMessage,
        );
    };
    let decision = match form.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                state,
                StatusCode::BAD_REQUEST,
                Msg::InvalidRequestTitle,
                Msg::ConsentChoose,
            );
        }
    };
    let Ok(request) = Params::parse(form.get("request").unwrap_or_default().as_bytes()) else {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            Msg::InvalidRequestTitle,
            Msg::FormUnreadable,
        );
    };
    run(state, req, request, Some(session), Some(decision), now).await
}
