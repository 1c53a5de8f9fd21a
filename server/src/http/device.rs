//! RFC 8628 device authorization: `/device_authorization` (a client asks for a device code and
//! a user code), and `/device`, where a signed-in user types the user code, sees the
//! application and the scopes, and approves or denies. The token endpoint's
//! `urn:ietf:params:oauth:grant-type:device_code` grant is in `token`.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::browser::client_ip;
use super::client_auth::{authenticated_client, failed_request, gate_closed};
use super::error::{ApiError, PageError};
use super::login::plain_login_page;
use super::pages::{CARRIED_USER_CODE, account_form, signed_in_user};
use super::respond::{form_page, json_ok};
use crate::oauth::client::GrantType;
use crate::oauth::device::{self, Approval};
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::params::Params;
use crate::oauth::scope;
use crate::secrets::{Purpose, random_token};
use crate::signin::throttle;
use crate::state::AppState;
use crate::store::{NewDeviceCode, StoreError, User};
use crate::views::Msg;

fn err(code: T, why: &'static str) -> TokenError {
    TokenError::new(code, why)
}

#[handler]
pub async fn device_authorization(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    gate_closed(req, state).await?;
    match start(req, body, state).await {
        Ok(body) => Ok(json_ok(&body)),
        Err(e) => Err(failed_request(req, state, e).await),
    }
}

/// RFC 8628 §3.1–3.2: the client (authenticated as at the token endpoint, or a public client
/// by its `client_id`) gets a device code to poll with and a user code for its user.
async fn start(req: &Request, body: poem::Body, state: &AppState) -> Result<Value, TokenError> {
    let (client, params) = authenticated_client(req, body, state, false).await?;
    if !client.has_grant(GrantType::DeviceCode) {
        return Err(err(
            T::UnauthorizedClient,
            "the client may not use the device authorization grant",
        ));
    }
    let scope = scope::for_device(params.get("scope"), client.allowed_scopes())
        .map_err(|e| TokenError::new(T::InvalidScope, e.to_string()))?;
    let now = state.clock.now();
    let device_code = random_token(32);
    // A collision among live user codes is rare (20^8 codes); draw again when it happens.
    for _ in 0..3 {
        let user_code = device::new_user_code();
        let stored = state
            .store
            .insert_device_code(&NewDeviceCode {
                device_code_digest: &state
                    .pepper
                    .digest(Purpose::DeviceCode, device_code.as_bytes()),
                user_code_digest: &state.pepper.digest(Purpose::UserCode, user_code.as_bytes()),
                client_id: &client.client_id,
                scope: &scope,
                interval_secs: device::INTERVAL,
                now,
                expires_at: now + device::LIFETIME,
            })
            .await;
        match stored {
            Ok(()) => {
                let shown = device::display(&user_code);
                let uri = format!("{}/device", state.config.issuer);
                tracing::info!(client = %client.client_id, "device code issued");
                return Ok(json!({
                    "device_code": device_code,
                    "user_code": shown,
                    "verification_uri": uri,
                    "verification_uri_complete": format!("{uri}?user_code={shown}"),
                    "expires_in": device::LIFETIME,
                    "interval": device::INTERVAL,
                }));
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => {
                tracing::error!(error = %e, "storing a device code failed");
                return Err(err(T::ServerError, "server error"));
            }
        }
    }
    tracing::error!("no free user code after three draws");
    Err(err(T::ServerError, "server error"))
}

fn user_code_digests(state: &AppState, code: &str) -> Vec<String> {
    state
        .pepper
        .lookup_digests(Purpose::UserCode, code.as_bytes())
}

/// The page to type a code on, with an error when there is one.
fn enter_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    form_page(
        state,
        req,
        status,
        "device.html",
        minijinja::context! { enter => true, error => error },
    )
}

#[handler]
pub async fn device_page(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let query = Params::parse(req.uri().query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let typed = query.get("user_code").unwrap_or_default().to_owned();
    let Some((_, user)) = signed_in_user(state, req).await else {
        // Sign in first; the sign-in comes back here with the code.
        let mut carried = Params::default();
        if let Some(code) = device::normalize_user_code(&typed) {
            carried.insert(CARRIED_USER_CODE, code);
        }
        return Ok(plain_login_page(
            state,
            req,
            &carried,
            None,
            "",
            StatusCode::OK,
        ));
    };
    if typed.is_empty() {
        return Ok(enter_page(state, req, StatusCode::OK, None));
    }
    confirm_page(state, req, &user, &typed).await
}

/// The application and scopes a typed code stands for, with Approve and Deny; or the code
/// page again. Wrong codes count per address and per user, like failed sign-ins, so codes
/// cannot be guessed.
async fn confirm_page(
    state: &AppState,
    req: &Request,
    user: &User,
    typed: &str,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let throttle =
        throttle::Keys::device_code(&state.pepper, client_ip(state, req).as_deref(), &user.id);
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(wait) => {
            let msg = state
                .views
                .msg_with(Msg::TooManyAttempts, &[("seconds", &wait.to_string())]);
            return Ok(enter_page(
                state,
                req,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&msg),
            ));
        }
        Err(e) => tracing::error!(error = %e, "device code throttle check failed"),
    }
    let pending = match device::normalize_user_code(typed) {
        Some(code) => state
            .store
            .pending_device(&user_code_digests(state, &code), now)
            .await
            .map(|p| p.map(|p| (code, p))),
        None => Ok(None),
    };
    let (code, pending) = match pending {
        Ok(Some(found)) => found,
        Ok(None) => {
            if let Err(e) = throttle.failed(&state.store, now).await {
                tracing::error!(error = %e, "counting a wrong device code failed");
            }
            let msg = state.views.msg(Msg::DeviceCodeUnknown);
            return Ok(enter_page(state, req, StatusCode::BAD_REQUEST, Some(msg)));
        }
        Err(e) => return Err(failed(e)),
    };
    let client_name = match state.clients().find(&pending.client_id).await {
        Ok(Some(c)) if !c.metadata.client_name.is_empty() => c.metadata.client_name.clone(),
        Ok(_) => pending.client_id.clone(),
        Err(e) => return Err(failed(e)),
    };
    let scopes: Vec<&str> = pending.scope.split(' ').filter(|s| !s.is_empty()).collect();
    Ok(form_page(
        state,
        req,
        StatusCode::OK,
        "device.html",
        minijinja::context! {
            confirm => true,
            user_code => device::display(&code),
            client_name => client_name,
            scopes => scopes,
            email => user.email,
        },
    ))
}

fn failed(e: impl std::fmt::Display) -> PageError {
    PageError::server("the device page", e)
}

/// Approve or Deny: answers the request once; the device learns it at its next poll.
#[handler]
pub async fn device_answer(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, session, user) = account_form(state, req, body).await?;
    let approve = match form.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return Err(PageError::bad_request(Msg::ConsentChoose)),
    };
    // Answers count like lookups: wrong codes here are guesses too.
    let now = state.clock.now();
    let throttle =
        throttle::Keys::device_code(&state.pepper, client_ip(state, req).as_deref(), &user.id);
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(wait) => {
            let msg = state
                .views
                .msg_with(Msg::TooManyAttempts, &[("seconds", &wait.to_string())]);
            return Ok(enter_page(
                state,
                req,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&msg),
            ));
        }
        Err(e) => tracing::error!(error = %e, "device code throttle check failed"),
    }
    let wrong = || async {
        if let Err(e) = throttle.failed(&state.store, now).await {
            tracing::error!(error = %e, "counting a wrong device code failed");
        }
        let msg = state.views.msg(Msg::DeviceCodeUnknown);
        Ok(enter_page(state, req, StatusCode::BAD_REQUEST, Some(msg)))
    };
    let Some(code) = device::normalize_user_code(form.get("user_code").unwrap_or_default()) else {
        return wrong().await;
    };
    let approval = Approval {
        sid: session.sid.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        acr: session.acr.clone(),
    };
    let approval = serde_json::to_string(&approval).map_err(failed)?;
    let answer = approve.then_some((user.id.as_str(), approval.as_str()));
    match state
        .store
        .answer_device(&user_code_digests(state, &code), answer, now)
        .await
    {
        Ok(true) => {
            tracing::info!(user = %user.id, approve, "device request answered");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::DeviceAnswered, &user.id)
                    .details(serde_json::json!({"approved": approve})),
            )
            .await;
            Ok(form_page(
                state,
                req,
                StatusCode::OK,
                "device.html",
                minijinja::context! { done => true, approved => approve },
            ))
        }
        Ok(false) => wrong().await,
        Err(e) => Err(failed(e)),
    }
}
