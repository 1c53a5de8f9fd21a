//! Passwords from the account page: set one, or change it (with the current one, or after a
//! recent sign-in). The reset by email is in `reset`.

use poem::web::Data;
use poem::{Request, Response, handler};

use super::account::{account_failed, account_with_message};
use super::browser::client_ip;
use super::error::PageError;
use super::pages::{account_form, recently_signed_in};
use crate::signin::password::{self, PasswordError};
use crate::signin::throttle;
use crate::state::AppState;
use crate::views::Msg;

#[handler]
pub async fn change(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, session, user) = account_form(state, req, body).await?;
    let now = state.clock.now();
    let current = match state.store.password_hash(&user.id).await {
        Ok(h) => h,
        Err(e) => return account_failed(state, req, "reading the password", e).await,
    };
    if !recently_signed_in(state, &session) {
        let Some(current) = current else {
            // Nothing to prove it with: setting a first password needs a fresh sign-in.
            let error = state.views.msg(Msg::SignInAgain);
            return account_with_message(state, req, None, Some(error)).await;
        };
        // Guessing the current password here counts as failed sign-ins for the account.
        let throttle =
            throttle::Keys::new(&state.pepper, client_ip(state, req).as_deref(), &user.email);
        match throttle.wait(&state.store, now).await {
            Ok(0) => {}
            Ok(wait) => {
                let msg = state
                    .views
                    .msg_with(Msg::TooManyAttempts, &[("seconds", &wait.to_string())]);
                return account_with_message(state, req, None, Some(&msg)).await;
            }
            Err(e) => tracing::error!(error = %e, "password change throttle check failed"),
        }
        let typed = form.get("current_password").unwrap_or_default().to_owned();
        if !state.verify_password(typed, Some(current)).await {
            if let Err(e) = throttle.failed(&state.store, now).await {
                tracing::error!(error = %e, "recording a failed password check failed");
            }
            let error = state.views.msg(Msg::WrongCurrentPassword);
            return account_with_message(state, req, None, Some(error)).await;
        }
    }
    let new = form.get("new_password").unwrap_or_default().to_owned();
    let hash = match state.hash_password(new).await {
        Ok(h) => h,
        Err(PasswordError::Hash) => {
            return account_failed(state, req, "hashing a password", "argon2").await;
        }
        Err(e) => {
            let error = state.views.msg(password::advice(&e));
            return account_with_message(state, req, None, Some(error)).await;
        }
    };
    match state
        .store
        .set_password(&user.id, &hash, Some(&session.sid), now)
        .await
    {
        Ok(()) => {
            tracing::info!(user = %user.id, "password changed from the account page");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::PasswordChanged, &user.id),
            )
            .await;
            let notice = state.views.msg(Msg::PasswordSaved);
            account_with_message(state, req, Some(notice), None).await
        }
        Err(e) => account_failed(state, req, "saving a password", e).await,
    }
}
