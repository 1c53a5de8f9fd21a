//! The account's email address: verifying it, and changing it (after a recent sign-in). Either
//! way a link goes to the address to prove it; a change also tells the old address, when it
//! is asked for and when it is done. `/email/confirm` opens the link (a page with a button,
//! so a mail scanner opening links changes nothing) and confirms it.

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};

use super::account::{account_failed, account_form, account_with_message, recently_signed_in};
use super::links::{TokenQuery, count_mail_request, failed, unusable};
use super::login::checked_form;
use super::respond::{error_page, form_page, page};
use crate::signin::{email_link_digests, new_email_link, validate_email};
use crate::state::{AppState, secs};
use crate::store::{EMAIL_LINK_EMAIL, StoreError, email_key};
use crate::views::Msg;

#[handler]
pub async fn change(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let (form, session, user) = match account_form(state, req, body).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let Ok(new) = validate_email(form.get("email").unwrap_or_default()) else {
        let error = state.views.msg(Msg::InvalidEmail);
        return account_with_message(state, req, None, Some(error)).await;
    };
    let same = email_key(&new) == email_key(&user.email);
    if same && user.email_verified {
        let notice = state.views.msg(Msg::EmailAlreadyYours);
        return account_with_message(state, req, Some(notice), None).await;
    }
    // Verifying the address the account has is harmless; moving the account to another
    // address (where password resets will go) needs a fresh sign-in.
    if !same && !recently_signed_in(state, &session) {
        let error = state.views.msg(Msg::SignInAgain);
        return account_with_message(state, req, None, Some(error)).await;
    }
    if let Err(wait) = count_mail_request(state, req, &new).await {
        return account_with_message(state, req, None, Some(&wait)).await;
    }
    let lifetime = state.config.mail.verify_link_lifetime;
    let token = match new_email_link(state, EMAIL_LINK_EMAIL, &user.id, &new, None, lifetime).await
    {
        Ok(t) => t,
        Err(e) => return account_failed(state, req, "making an address link", e).await,
    };
    let service = &state.config.passkeys.rp_name;
    state.mailer.send_later(
        &new,
        "mail/email_verify.txt",
        minijinja::context! {
            service => service,
            email => new,
            change => !same,
            link => format!("{}/email/confirm?token={token}", state.config.issuer),
            hours => secs(lifetime) / 3600,
        },
    );
    if !same {
        state.mailer.send_later(
            &user.email,
            "mail/email_change_notice.txt",
            minijinja::context! { service => service, old => user.email, new => new, done => false },
        );
    }
    tracing::info!(user = %user.id, change = !same, "address link sent");
    let sent = if same {
        Msg::EmailLinkSentVerify
    } else {
        Msg::EmailLinkSentChange
    };
    let notice = state.views.msg_with(sent, &[("address", &new)]);
    account_with_message(state, req, Some(&notice), None).await
}

#[handler]
pub async fn confirm_form(
    req: &Request,
    Query(q): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> Response {
    let Some(digests) = email_link_digests(state, &q.token) else {
        return unusable(state, Msg::EmailLinkUnusable);
    };
    match state
        .store
        .email_link(&digests, EMAIL_LINK_EMAIL, state.clock.now())
        .await
    {
        Ok(Some(link)) => form_page(
            state,
            req,
            StatusCode::OK,
            "email_confirm.html",
            minijinja::context! { token => q.token, email => link.email },
        ),
        Ok(None) => unusable(state, Msg::EmailLinkUnusable),
        Err(e) => failed(state, e),
    }
}

#[handler]
pub async fn confirm(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let Some(digests) = email_link_digests(state, form.get("token").unwrap_or_default()) else {
        return unusable(state, Msg::EmailLinkUnusable);
    };
    let confirmed = match state.store.confirm_email(&digests, state.clock.now()).await {
        Ok(Some(c)) => c,
        Ok(None) => return unusable(state, Msg::EmailLinkUnusable),
        Err(StoreError::Conflict(_)) => {
            return error_page(
                state,
                StatusCode::CONFLICT,
                Msg::EmailTakenTitle,
                Msg::EmailTakenMessage,
            );
        }
        Err(e) => return failed(state, e),
    };
    let changed = email_key(&confirmed.old) != email_key(&confirmed.new);
    if changed {
        state.mailer.send_later(
            &confirmed.old,
            "mail/email_change_notice.txt",
            minijinja::context! {
                service => state.config.passkeys.rp_name,
                old => confirmed.old,
                new => confirmed.new,
                done => true,
            },
        );
    }
    tracing::info!(user = %confirmed.user_id, changed, "address confirmed");
    page(
        state,
        StatusCode::OK,
        "email_confirm.html",
        minijinja::context! { done => true, email => confirmed.new, changed => changed },
    )
}
