//! What the pages that mail links (password reset, sign-in link, open sign-up, address
//! change) and the pages those links open have in common.

use std::future::Future;

use poem::Request;
use poem::http::StatusCode;

use super::browser::client_ip;
use super::error::PageError;
use crate::signin::throttle;
use crate::state::AppState;
use crate::store::{StoreError, User};
use crate::views::Msg;

/// Counts a request that may send mail, per client address (every request counts: each may
/// send a message). Err with the message to show when the client must wait first.
pub async fn count_mail_request(state: &AppState, req: &Request) -> Result<(), String> {
    let now = state.clock.now();
    let throttle = throttle::Keys::mail_request(&state.pepper, client_ip(state, req).as_deref());
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(wait) => {
            return Err(state
                .views
                .msg_with(Msg::TooManyRequests, &[("seconds", &wait.to_string())]));
        }
        Err(e) => tracing::error!(error = %e, "mail request throttle check failed"),
    }
    if let Err(e) = throttle.failed(&state.store, now).await {
        tracing::error!(error = %e, "counting a mail request failed");
    }
    Ok(())
}

/// Runs `work` after the answer is given: whatever depends on whether an account exists (the
/// lookup, a link, the mail) then changes neither the answer nor its timing.
pub fn after_answer<F>(state: &AppState, what: &'static str, work: impl FnOnce(AppState) -> F)
where
    F: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let work = work(state.clone());
    tokio::spawn(async move {
        if let Err(e) = work.await {
            tracing::error!(error = %e, what, "preparing mail failed");
        }
    });
}

/// The enabled account that uses `email`, if any, when a message may go there now (see
/// [`throttle::mail_allowed`]); None otherwise.
pub async fn account_to_mail(state: &AppState, email: &str) -> Result<Option<User>, StoreError> {
    let Some(user) = state.store.active_user_by_email(email).await? else {
        tracing::info!("mail asked for an address without an account");
        return Ok(None);
    };
    Ok(mail_allowed(state, &user.email).await?.then_some(user))
}

/// Whether a message may go to `email` now; logs when it may not.
pub async fn mail_allowed(state: &AppState, email: &str) -> Result<bool, StoreError> {
    let ok = throttle::mail_allowed(&state.store, &state.pepper, email, state.clock.now()).await?;
    if !ok {
        tracing::info!("mail to this address was sent less than a minute ago; not sending");
    }
    Ok(ok)
}

/// The `?token=` of a mailed link.
#[derive(serde::Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub token: String,
}

/// A link that was used, expired, or never was; `message` says where to get a new one.
pub fn unusable(message: Msg) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, Msg::LinkUnusableTitle, message)
}

/// Our failure, logged; the visitor is asked to try again.
pub fn failed(error: impl std::fmt::Display) -> PageError {
    PageError::server("a mailed link", error)
}
