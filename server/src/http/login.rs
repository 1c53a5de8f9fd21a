//! Password sign-in (`/login`) and the consent answer (`/consent`). Both forms carry the
//! authorization request they interrupt and hand it back to the pipeline.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};

use super::authorize::{load_client, login_page, run};
use super::browser::{append_cookie, audit, client_ip, current_session};
use super::error::PageError;
use super::pages::{checked_form, signed_in};
use super::respond::page;
use crate::audit::{Actor, Event, EventType};
use crate::oauth::params::Params;
use crate::signin::throttle;
use crate::state::AppState;
use crate::views::Msg;
use serde_json::json;

/// The single-factor password method: RFC 8176 `pwd`, ACR level 1.
const PASSWORD_AMR: &str = "pwd";
pub const PASSWORD_ACR: &str = "1";

#[handler]
pub async fn login_form(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    // `rd`: a forward-auth sign-in, back to a protected page afterwards.
    let query = Params::parse(req.uri().query().unwrap_or_default().as_bytes()).unwrap_or_default();
    if let Some(rd) = query.get("rd") {
        return Ok(
            match super::forward_auth::login_with_rd(state, req, rd).await? {
                super::forward_auth::ReturnTo::Back(resp) => resp,
                super::forward_auth::ReturnTo::SignIn { carried, notice } => {
                    let notice = notice.map(|m| state.views.msg(m));
                    plain_login_page(state, req, &carried, notice, "", StatusCode::OK)
                }
            },
        );
    }
    Ok(plain_login_page(
        state,
        req,
        &Params::default(),
        None,
        "",
        StatusCode::OK,
    ))
}

#[handler]
pub async fn login(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
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
            audit(
                state,
                req,
                Event::new(EventType::SigninFailure, Actor::Anonymous)
                    .details(json!({"method": "password", "reason": "throttled"})),
            )
            .await;
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
    let user = state
        .store
        .active_user_by_email(&email)
        .await
        .map_err(|e| PageError::server("the user lookup", e))?;
    let hash = match &user {
        Some(u) => state.store.password_hash(&u.id).await.ok().flatten(),
        None => None,
    };
    // An unknown account costs the same hash as a known one, so timing does not tell them apart.
    let verified = state.verify_password(password, hash).await;
    let known = user.as_ref().map(|u| u.id.clone());
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!("password sign-in failed");
        // The address typed is not kept: people type passwords into it.
        let disabled = match &known {
            Some(_) => None,
            None => state
                .store
                .user_by_email(&email)
                .await
                .ok()
                .flatten()
                .map(|u| u.id),
        };
        let (reason, e) = match (&known, &disabled) {
            (Some(id), _) => (
                "wrong_password",
                Event::new(EventType::SigninFailure, Actor::Anonymous).subject(id),
            ),
            (None, Some(id)) => (
                "disabled_account",
                Event::new(EventType::SigninFailure, Actor::Anonymous).subject(id),
            ),
            (None, None) => (
                "unknown_account",
                Event::new(EventType::SigninFailure, Actor::Anonymous),
            ),
        };
        audit(
            state,
            req,
            e.details(json!({"method": "password", "reason": reason})),
        )
        .await;
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
        super::totp::second_factor_needed(state, req, &user.id, &request, PASSWORD_AMR).await?
    {
        tracing::info!(user = %user.id, "password accepted; asking for the second factor");
        return Ok(page);
    }

    tracing::info!(user = %user.id, "signed in with a password");
    let resp = signed_in(
        state,
        req,
        &user.id,
        &[PASSWORD_AMR],
        PASSWORD_ACR,
        &request,
        now,
    )
    .await?;
    audit(
        state,
        req,
        Event::new(EventType::SigninSuccess, Actor::User(&user.id))
            .subject(&user.id)
            .details(json!({"method": "password"})),
    )
    .await;
    Ok(resp)
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
) -> Result<Response, PageError> {
    let client = match request.get("client_id") {
        Some(id) => load_client(state, req, id).await?,
        None => None,
    };
    Ok(match client {
        Some(c) => login_page(state, req, request, &c, Some(message), email, status),
        None => plain_login_page(state, req, request, Some(message), email, status),
    })
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
pub async fn consent(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let now = state.clock.now();
    let Some(session) = current_session(state, req, now).await else {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            Msg::SignedOutTitle,
            Msg::SignedOutMessage,
        ));
    };
    let decision = match form.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return Err(PageError::bad_request(Msg::ConsentChoose)),
    };
    let Ok(request) = Params::parse(form.get("request").unwrap_or_default().as_bytes()) else {
        return Err(PageError::bad_request(Msg::FormUnreadable));
    };
    run(state, req, request, Some(session), Some(decision), now).await
}
