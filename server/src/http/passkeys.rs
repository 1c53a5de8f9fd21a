//! Passkey endpoints. The page script asks for ceremony options (JSON) and posts the
//! authenticator's answer back in an ordinary form, so outcomes are pages and redirects.
//!
//! - `POST /login/passkey/options` → options for `navigator.credentials.get()`
//! - `POST /login/passkey` → signs in
//! - `POST /account/passkeys/options` → options for `navigator.credentials.create()`
//! - `POST /account/passkeys` → adds the passkey
//! - `POST /account/passkeys/:id/rename`, `POST /account/passkeys/:id/delete`

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::json;

use super::account::{account_failed, account_with_message, recent_account_form};
use super::browser::client_ip;
use super::error::PageError;
use super::login::retry_page;
use super::pages::{
    account_form, account_redirect, checked_form, recently_signed_in, signed_in, signed_in_user,
};
use super::respond::json_ok;
use crate::oauth::params::Params;
use crate::signin::passkey::{self, PasskeyError};
use crate::signin::throttle;
use crate::state::AppState;
use crate::views::Msg;

#[handler]
pub async fn signin_options(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body)
        .await
        .map_err(|_| expired())?;
    let email = form
        .get("email")
        .map(str::trim)
        .filter(|e| !e.is_empty() && e.len() <= 254);
    let conditional = form.get("mediation") == Some("conditional");
    match passkey::start_authentication(&state.signin(), email, conditional).await {
        Ok((ceremony, options)) => Ok(json_ok(
            &json!({ "ceremony": ceremony, "options": options }),
        )),
        Err(e) => Err(script_failed("starting a passkey sign-in", e)),
    }
}

/// The scripts' answer to a form that has expired.
fn expired() -> PageError {
    PageError::script(StatusCode::FORBIDDEN, "the form has expired")
}

/// The scripts' answer to a failure on our side (logged).
pub fn script_failed(what: &str, e: impl std::fmt::Display) -> PageError {
    tracing::error!(error = %e, "{what} failed");
    PageError::script(StatusCode::INTERNAL_SERVER_ERROR, "try again later")
}

#[handler]
pub async fn signin(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let request =
        Params::parse(form.get("request").unwrap_or_default().as_bytes()).unwrap_or_default();
    let now = state.clock.now();
    let ip = client_ip(state, req);
    let throttle = throttle::Keys::address_only(&state.pepper, ip.as_deref());
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(wait) => {
            super::browser::audit(
                state,
                req,
                crate::audit::Event::new(
                    crate::audit::EventType::SigninFailure,
                    crate::audit::Actor::Anonymous,
                )
                .details(json!({"method": "passkey", "reason": "throttled"})),
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
                "",
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
        }
        Err(e) => tracing::error!(error = %e, "sign-in throttle check failed"),
    }
    let result = passkey::finish_authentication(
        &state.signin(),
        form.get("ceremony").unwrap_or_default(),
        form.get("credential").unwrap_or_default(),
    )
    .await;
    let signed = match result {
        Ok(s) => s,
        Err(PasskeyError::Store(e)) => return Err(PageError::server("a passkey sign-in", e)),
        Err(e) => {
            tracing::info!(reason = %e, "passkey sign-in refused");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::new(
                    crate::audit::EventType::SigninFailure,
                    crate::audit::Actor::Anonymous,
                )
                .details(json!({"method": "passkey", "reason": e.code()})),
            )
            .await;
            if let Err(e) = throttle.failed(&state.store, now).await {
                tracing::error!(error = %e, "recording a failed sign-in failed");
            }
            let msg = state.views.msg(Msg::PasskeySigninFailed);
            return retry_page(state, req, &request, msg, "", StatusCode::UNAUTHORIZED).await;
        }
    };
    tracing::info!(user = %signed.user_id, passkey = %signed.passkey_id, "signed in with a passkey");
    let (amr, acr) = passkey::amr_acr(signed.backup_eligible);
    let resp = signed_in(state, req, &signed.user_id, &amr, acr, &request, now).await?;
    super::browser::audit(
        state,
        req,
        crate::audit::Event::by_user(crate::audit::EventType::SigninSuccess, &signed.user_id)
            .details(json!({"method": "passkey", "passkey": signed.passkey_id})),
    )
    .await;
    Ok(resp)
}

#[handler]
pub async fn register_options(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    checked_form(state, req, body)
        .await
        .map_err(|_| expired())?;
    let Some((session, user)) = signed_in_user(state, req).await else {
        return Err(PageError::script(StatusCode::UNAUTHORIZED, "sign in first"));
    };
    // A new way in, which skips any second factor: only from a fresh sign-in, so a session
    // cookie stolen long after it was made cannot add the thief's passkey.
    if !recently_signed_in(state, &session) {
        return Err(PageError::script(
            StatusCode::FORBIDDEN,
            "sign in again first",
        ));
    }
    match passkey::start_registration(&state.signin(), &user).await {
        Ok((ceremony, options)) => Ok(json_ok(
            &json!({ "ceremony": ceremony, "options": options }),
        )),
        Err(e) => Err(script_failed("starting a passkey registration", e)),
    }
}

#[handler]
pub async fn register(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, _, user) = recent_account_form(state, req, body).await?;
    let result = passkey::finish_registration(
        &state.signin(),
        &user.id,
        form.get("ceremony").unwrap_or_default(),
        form.get("credential").unwrap_or_default(),
        form.get("name").unwrap_or_default(),
    )
    .await;
    match result {
        Ok(row) => {
            tracing::info!(user = %user.id, passkey = %row.id, "passkey added");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::PasskeyAdded, &user.id)
                    .details(json!({"passkey": row.id})),
            )
            .await;
            Ok(account_redirect())
        }
        Err(PasskeyError::AlreadyRegistered) => {
            let error = state.views.msg(Msg::PasskeyAlreadyRegistered);
            account_with_message(state, req, None, Some(error)).await
        }
        Err(PasskeyError::Store(e)) => account_failed(state, req, "adding a passkey", e).await,
        Err(e) => {
            tracing::info!(reason = %e, "passkey registration refused");
            let error = state.views.msg(Msg::PasskeyNotAdded);
            account_with_message(state, req, None, Some(error)).await
        }
    }
}

#[handler]
pub async fn rename(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, _, user) = account_form(state, req, body).await?;
    let Some(name) = passkey::clean_name(form.get("name").unwrap_or_default()) else {
        let error = state.views.msg(Msg::PasskeyNameRequired);
        return account_with_message(state, req, None, Some(error)).await;
    };
    match state.store.rename_passkey(&user.id, &id, &name).await {
        Ok(true) => Ok(account_redirect()),
        Ok(false) => Err(not_found()),
        Err(e) => account_failed(state, req, "renaming a passkey", e).await,
    }
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, session, user) = account_form(state, req, body).await?;
    let recent = recently_signed_in(state, &session);
    let has_password = matches!(state.store.password_hash(&user.id).await, Ok(Some(_)));
    // The last passkey goes only after a recent sign-in, and never when it is the only way in.
    let keep_one = !(recent && has_password);
    match state.store.delete_passkey(&user.id, &id, keep_one).await {
        Ok(true) => {
            tracing::info!(user = %user.id, passkey = %id, "passkey removed");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::PasskeyRemoved, &user.id)
                    .details(json!({"passkey": id})),
            )
            .await;
            Ok(account_redirect())
        }
        Ok(false) => {
            let owned = state
                .store
                .passkeys_of(&user.id)
                .await
                .map(|all| all.iter().any(|p| p.id == id))
                .unwrap_or(false);
            if !owned {
                return Err(not_found());
            }
            let why = if !has_password {
                Msg::PasskeyOnlyWayIn
            } else {
                Msg::PasskeyLastNeedsSignIn
            };
            account_with_message(state, req, None, Some(state.views.msg(why))).await
        }
        Err(e) => account_failed(state, req, "removing a passkey", e).await,
    }
}

fn not_found() -> PageError {
    PageError::not_found(Msg::PasskeyNotFound)
}
