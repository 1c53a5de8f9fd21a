//! TOTP: setting up an authenticator app and recovery codes from the account page, and the
//! second step of a password sign-in (`/login/second-factor`).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};

use super::account::{account_failed, account_with_message, recent_account_form};
use super::browser::client_ip;
use super::error::PageError;
use super::pages::account_redirect;
use super::pages::{checked_form, signed_in};
use super::respond::form_page;
use crate::oauth::params::Params;
use crate::signin::totp::{self, Enrolment, TotpError};
use crate::signin::{ceremony, throttle};
use crate::state::AppState;
use crate::views::Msg;

/// The ceremony kind of a sign-in waiting for its second factor.
const SECOND_FACTOR: &str = "second-factor";

/// The first factor, then a code from an authenticator app or a recovery code: RFC 8176
/// `otp` and `mfa` after the first factor's value; ACR level 2 (two factors, not
/// phishing-resistant).
pub const TOTP_ACR: &str = "2";

fn setup_page(
    state: &AppState,
    req: &Request,
    enrolment: &Enrolment,
    error: Option<&str>,
) -> Response {
    form_page(
        state,
        req,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "totp_setup.html",
        minijinja::context! {
            qr_svg => minijinja::Value::from_safe_string(enrolment.qr_svg.clone()),
            uri => enrolment.uri,
            secret => enrolment.secret,
            error => error,
        },
    )
}

fn recovery_codes_page(state: &AppState, req: &Request, codes: &[String]) -> Response {
    form_page(
        state,
        req,
        StatusCode::OK,
        "recovery_codes.html",
        minijinja::context! { codes => codes },
    )
}

#[handler]
pub async fn setup(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = recent_account_form(state, req, body).await?;
    match totp::start_enrolment(&state.signin(), &user.id, &user.email).await {
        Ok(enrolment) => Ok(setup_page(state, req, &enrolment, None)),
        Err(TotpError::AlreadyEnabled) => {
            let error = state.views.msg(Msg::TotpAlreadyEnabled);
            account_with_message(state, req, None, Some(error)).await
        }
        Err(e) => account_failed(state, req, "starting TOTP enrolment", e).await,
    }
}

#[handler]
pub async fn confirm(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, _, user) = recent_account_form(state, req, body).await?;
    let code = form.get("code").unwrap_or_default();
    match totp::verify(&state.signin(), &user.id, code, true).await {
        Ok(true) => {}
        Ok(false) => {
            return match totp::pending_enrolment(&state.signin(), &user.id, &user.email).await {
                Ok(enrolment) => Ok(setup_page(
                    state,
                    req,
                    &enrolment,
                    Some(state.views.msg(Msg::WrongTotpCode)),
                )),
                Err(TotpError::NotEnrolling) => Ok(account_redirect()),
                Err(e) => account_failed(state, req, "showing TOTP enrolment", e).await,
            };
        }
        Err(e) => return account_failed(state, req, "confirming TOTP", e).await,
    }
    tracing::info!(user = %user.id, "authenticator app set up");
    super::browser::audit(
        state,
        req,
        crate::audit::Event::by_user(crate::audit::EventType::SecondFactorEnabled, &user.id),
    )
    .await;
    match totp::new_recovery_codes(&state.signin(), &user.id).await {
        Ok(codes) => Ok(recovery_codes_page(state, req, &codes)),
        Err(e) => account_failed(state, req, "making recovery codes", e).await,
    }
}

#[handler]
pub async fn disable(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = recent_account_form(state, req, body).await?;
    match state.store.delete_totp(&user.id).await {
        Ok(_) => {
            tracing::info!(user = %user.id, "authenticator app turned off");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(
                    crate::audit::EventType::SecondFactorDisabled,
                    &user.id,
                ),
            )
            .await;
            let notice = state.views.msg(Msg::TotpDisabled);
            account_with_message(state, req, Some(notice), None).await
        }
        Err(e) => account_failed(state, req, "turning TOTP off", e).await,
    }
}

#[handler]
pub async fn regenerate_codes(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = recent_account_form(state, req, body).await?;
    match state.store.totp_enabled(&user.id).await {
        Ok(true) => {}
        Ok(false) => return Ok(account_redirect()),
        Err(e) => return account_failed(state, req, "making recovery codes", e).await,
    }
    match totp::new_recovery_codes(&state.signin(), &user.id).await {
        Ok(codes) => {
            tracing::info!(user = %user.id, "recovery codes replaced");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(
                    crate::audit::EventType::RecoveryCodesReplaced,
                    &user.id,
                ),
            )
            .await;
            Ok(recovery_codes_page(state, req, &codes))
        }
        Err(e) => account_failed(state, req, "making recovery codes", e).await,
    }
}

/// What a sign-in waiting for its second factor remembers: the authorization request it
/// interrupts, if any.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    request: String,
    /// The first factor's `amr` value: `pwd`, or `email` for a sign-in link.
    first: String,
}

/// After the first factor (`first`: its `amr` value): when the user has an authenticator app,
/// the page that asks for its code (None when no second factor is needed).
pub async fn second_factor_needed(
    state: &AppState,
    req: &Request,
    user_id: &str,
    request: &Params,
    first: &'static str,
) -> Result<Option<Response>, PageError> {
    match state.store.totp_enabled(user_id).await {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) => return Err(failed("checking for TOTP", e)),
    }
    let pending = Pending {
        request: request.encode(),
        first: first.to_owned(),
    };
    match ceremony::create(&state.signin(), SECOND_FACTOR, Some(user_id), &pending).await {
        Ok(id) => Ok(Some(second_factor_page(
            state,
            req,
            &id,
            None,
            StatusCode::OK,
        ))),
        Err(e) => Err(failed("starting the second step", e)),
    }
}

/// A sign-in that failed on our side: logged, the generic error page.
fn failed(action: &str, error: impl std::fmt::Display) -> PageError {
    tracing::error!(%error, action, "sign-in failed on our side");
    PageError::Server
}

fn second_factor_page(
    state: &AppState,
    req: &Request,
    pending: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    form_page(
        state,
        req,
        status,
        "second_factor.html",
        minijinja::context! { pending => pending, error => error },
    )
}

fn expired() -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        Msg::SecondFactorExpiredTitle,
        Msg::SecondFactorExpiredMessage,
    )
}

/// Mails the account's owner that the second step stopped someone [`throttle::FREE_FAILURES`]
/// times (once per run of failures: the count starts afresh after a success or a quiet
/// window).
fn notify_second_factor_failures(state: &AppState, user_id: &str) {
    let user_id = user_id.to_owned();
    super::links::after_answer(state, "second-factor failure notice", |state| async move {
        let Some(user) = state.store.active_user(&user_id).await? else {
            return Ok(());
        };
        if super::links::mail_allowed(&state, &user.email).await? {
            state.mailer.send_later(
                &user.email,
                "mail/second_factor_failures.txt",
                minijinja::context! {
                    service => state.config.passkeys.rp_name,
                    email => user.email,
                    failures => throttle::FREE_FAILURES,
                },
            );
            tracing::warn!(user = %user_id, "repeated second-factor failures; owner notified");
        }
        Ok(())
    });
}

#[handler]
pub async fn second_factor(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let id = form.get("pending").unwrap_or_default();
    let pending = match ceremony::peek(&state.signin(), id, &[SECOND_FACTOR]).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(failed("reading the second step", e)),
    };
    let Some(user_id) = pending.user_id else {
        return Err(expired());
    };
    let now = state.clock.now();
    let throttle =
        throttle::Keys::second_factor(&state.pepper, client_ip(state, req).as_deref(), &user_id);
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(wait) => {
            let msg = state
                .views
                .msg_with(Msg::TooManyAttempts, &[("seconds", &wait.to_string())]);
            return Ok(second_factor_page(
                state,
                req,
                id,
                Some(&msg),
                StatusCode::TOO_MANY_REQUESTS,
            ));
        }
        Err(e) => tracing::error!(error = %e, "second-factor throttle check failed"),
    }
    let recovery = form.get("recovery_code").unwrap_or_default().trim();
    let (passed, method) = if recovery.is_empty() {
        let code = form.get("code").unwrap_or_default();
        (
            totp::verify(&state.signin(), &user_id, code, false).await,
            "totp",
        )
    } else {
        (
            totp::use_recovery_code(&state.signin(), &user_id, recovery).await,
            "recovery code",
        )
    };
    match passed {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(user = %user_id, method, "second factor refused");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::new(
                    crate::audit::EventType::SecondFactorFailure,
                    crate::audit::Actor::Anonymous,
                )
                .subject(&user_id)
                .details(serde_json::json!({"method": method})),
            )
            .await;
            match throttle.failed(&state.store, now).await {
                // Whoever fails this often has the first factor: the owner should know.
                Ok(Some(throttle::FREE_FAILURES)) => notify_second_factor_failures(state, &user_id),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "recording a failed second factor failed"),
            }
            let msg = state.views.msg(if method == "totp" {
                Msg::WrongTotpCode
            } else {
                Msg::WrongRecoveryCode
            });
            return Ok(second_factor_page(
                state,
                req,
                id,
                Some(msg),
                StatusCode::UNAUTHORIZED,
            ));
        }
        Err(e) => return Err(failed("checking the second factor", e)),
    }
    // The step is used once: a second submission of the same form finds nothing.
    let pending = match ceremony::take(&state.signin(), id, &[SECOND_FACTOR]).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(failed("finishing the second step", e)),
    };
    if let Err(e) = throttle.succeeded(&state.store).await {
        tracing::warn!(error = %e, "clearing the second-factor throttle failed");
    }
    match state.store.active_user(&user_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(expired()),
        Err(e) => return Err(failed("loading the user", e)),
    }
    let Ok(pending) = serde_json::from_str::<Pending>(&pending.state) else {
        return Err(expired());
    };
    let request = Params::parse(pending.request.as_bytes()).unwrap_or_default();
    let first = if pending.first == "email" {
        "email"
    } else {
        "pwd"
    };
    tracing::info!(user = %user_id, method, "signed in with a password and a second factor");
    let resp = signed_in(
        state,
        req,
        &user_id,
        &[first, "otp", "mfa"],
        TOTP_ACR,
        &request,
        now,
    )
    .await?;
    super::browser::audit(
        state,
        req,
        crate::audit::Event::by_user(crate::audit::EventType::SigninSuccess, &user_id)
            .details(serde_json::json!({"method": first, "second_factor": method})),
    )
    .await;
    Ok(resp)
}
