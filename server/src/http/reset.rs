//! Password reset by email: `/reset` asks for the address and sends a link (the same answer,
//! in about the same time, whether or not an account uses it); `/reset/confirm` takes the
//! link's token and a new password. The link works once and briefly, ends every session, and
//! signs no one in: the next sign-in still asks for the second factor the account has.

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};

use super::error::PageError;
use super::links::{
    TokenQuery, account_to_mail, after_answer, count_mail_request, failed, unusable,
};
use super::pages::checked_form;
use super::respond::{form_page, page};
use crate::input::validate_email;
use crate::signin::password::{self, PasswordError};
use crate::state::{AppState, secs};
use crate::store::EMAIL_LINK_RESET;
use crate::views::Msg;

fn request_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    sent: bool,
    error: Option<&str>,
) -> Response {
    let minutes = secs(state.config.mail.reset_link_lifetime) / 60;
    form_page(
        state,
        req,
        status,
        "reset_request.html",
        minijinja::context! { sent => sent, error => error, minutes => minutes },
    )
}

#[handler]
pub async fn reset_form(req: &Request, Data(state): Data<&AppState>) -> Response {
    request_page(state, req, StatusCode::OK, false, None)
}

#[handler]
pub async fn reset_request(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let Ok(email) = validate_email(form.get("email").unwrap_or_default()) else {
        return Ok(request_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            false,
            Some(state.views.msg(Msg::InvalidEmail)),
        ));
    };
    if let Err(wait) = count_mail_request(state, req).await {
        return Ok(request_page(
            state,
            req,
            StatusCode::TOO_MANY_REQUESTS,
            false,
            Some(&wait),
        ));
    }
    after_answer(state, "password reset", |state| async move {
        send_reset_link(&state, &email).await
    });
    Ok(request_page(state, req, StatusCode::OK, true, None))
}

/// Mails a reset link to `email` if an enabled account uses it; nothing otherwise.
pub(super) async fn send_reset_link(
    state: &AppState,
    email: &str,
) -> Result<(), crate::store::StoreError> {
    let Some(user) = account_to_mail(state, email).await? else {
        return Ok(());
    };
    let lifetime = state.config.mail.reset_link_lifetime;
    let token = crate::signin::new_email_link(
        &state.signin(),
        EMAIL_LINK_RESET,
        &user.id,
        &user.email,
        None,
        None,
        lifetime,
    )
    .await?;
    tracing::info!(user = %user.id, "password reset link made");
    state.mailer.send_later(
        &user.email,
        "mail/password_reset.txt",
        minijinja::context! {
            service => state.config.passkeys.rp_name,
            email => user.email,
            link => format!("{}/reset/confirm?token={token}", state.config.issuer),
            minutes => secs(lifetime) / 60,
        },
    );
    Ok(())
}

/// Whether `token` names a live reset link.
async fn live_link(state: &AppState, token: &str) -> Result<bool, crate::store::StoreError> {
    let Some(digests) = crate::signin::email_link_digests(&state.signin(), token) else {
        return Ok(false);
    };
    Ok(state
        .store
        .email_link(&digests, EMAIL_LINK_RESET, state.clock.now())
        .await?
        .is_some())
}

fn confirm_page(
    state: &AppState,
    req: &Request,
    token: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    form_page(
        state,
        req,
        status,
        "reset_confirm.html",
        minijinja::context! { token => token, error => error },
    )
}

/// The new-password form. Opening the link changes nothing (mail scanners open links too).
#[handler]
pub async fn confirm_form(
    req: &Request,
    Query(q): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    match live_link(state, &q.token).await {
        Ok(true) => Ok(confirm_page(state, req, &q.token, StatusCode::OK, None)),
        Ok(false) => Err(unusable(Msg::ResetLinkUnusable)),
        Err(e) => Err(failed(e)),
    }
}

#[handler]
pub async fn confirm(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let token = form.get("token").unwrap_or_default().to_owned();
    // Checked before hashing, so a dead link costs no argon2 time.
    match live_link(state, &token).await {
        Ok(true) => {}
        Ok(false) => return Err(unusable(Msg::ResetLinkUnusable)),
        Err(e) => return Err(failed(e)),
    }
    let new = form.get("new_password").unwrap_or_default().to_owned();
    let hash = match state.hash_password(new).await {
        Ok(h) => h,
        Err(PasswordError::Hash) => return Err(failed("argon2")),
        Err(e) => {
            return Ok(confirm_page(
                state,
                req,
                &token,
                StatusCode::BAD_REQUEST,
                Some(state.views.msg(password::advice(&e))),
            ));
        }
    };
    let Some(digests) = crate::signin::email_link_digests(&state.signin(), &token) else {
        return Err(unusable(Msg::ResetLinkUnusable));
    };
    match state
        .store
        .reset_password(&digests, &hash, state.clock.now())
        .await
    {
        Ok(Some(user_id)) => {
            tracing::info!(user = %user_id, "password reset by email link");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::PasswordReset, &user_id)
                    .details(serde_json::json!({"how": "email_link"})),
            )
            .await;
            Ok(page(
                state,
                StatusCode::OK,
                "reset_confirm.html",
                minijinja::context! { done => true },
            ))
        }
        Ok(None) => Err(unusable(Msg::ResetLinkUnusable)),
        Err(e) => Err(failed(e)),
    }
}
