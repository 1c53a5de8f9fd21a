//! The account's email address: verifying it, and changing it (after a recent sign-in). Either
//! way a link goes to the address to prove it; a change also tells the old address, when it
//! is asked for and when it is done. `/email/confirm` opens the link (a page with a button,
//! so a mail scanner opening links changes nothing) and confirms it; a change link only in a
//! browser signed in to the account it moves. A verification link proves the account's
//! current address and nothing else.

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};

use super::account::{account_failed, account_with_message};
use super::error::PageError;
use super::links::{TokenQuery, count_mail_request, failed, mail_allowed, unusable};
use super::pages::{account_form, checked_form, recently_signed_in, signed_in_user};
use super::respond::{form_page, page};
use crate::input::validate_email;
use crate::signin::{email_link_digests, new_email_link};
use crate::state::{AppState, secs};
use crate::store::{EMAIL_LINK_EMAIL, EMAIL_LINK_VERIFY, StoreError, email_key};
use crate::views::Msg;

#[handler]
pub async fn change(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, session, user) = account_form(state, req, body).await?;
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
    if let Err(wait) = count_mail_request(state, req).await {
        return account_with_message(state, req, None, Some(&wait)).await;
    }
    let notice = state.views.msg_with(
        if same {
            Msg::EmailLinkSentVerify
        } else {
            Msg::EmailLinkSentChange
        },
        &[("address", &new)],
    );
    match mail_allowed(state, &new).await {
        Ok(true) => {}
        // The last message there is a minute old at most: the same answer, nothing new.
        Ok(false) => return account_with_message(state, req, Some(&notice), None).await,
        Err(e) => return account_failed(state, req, "checking the mail interval", e).await,
    }
    let lifetime = state.config.mail.verify_link_lifetime;
    let purpose = if same {
        EMAIL_LINK_VERIFY
    } else {
        EMAIL_LINK_EMAIL
    };
    let token = match new_email_link(
        &state.signin(),
        purpose,
        &user.id,
        &new,
        None,
        None,
        lifetime,
    )
    .await
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
    account_with_message(state, req, Some(&notice), None).await
}

/// What an address link asks, if it is live: a change needs the browser signed in to the
/// account it moves (so no one can attach an address to their own account by getting its
/// owner to click), a verification does not.
enum Link {
    /// Move the account of `current` (the signed-in user's address) to `new`.
    Change { current: String, new: String },
    /// A change link opened in a browser not signed in to its account.
    SignInFirst,
    /// Confirm `email` as the account's address.
    Verify { email: String },
}

async fn read_link(
    state: &AppState,
    req: &Request,
    digests: &[String],
) -> Result<Option<Link>, StoreError> {
    let now = state.clock.now();
    if let Some(link) = state
        .store
        .email_link(digests, EMAIL_LINK_EMAIL, now)
        .await?
    {
        return Ok(Some(match signed_in_user(state, req).await {
            Some((_, user)) if user.id == link.user_id => Link::Change {
                current: user.email,
                new: link.email,
            },
            _ => Link::SignInFirst,
        }));
    }
    Ok(state
        .store
        .email_link(digests, EMAIL_LINK_VERIFY, now)
        .await?
        .map(|link| Link::Verify { email: link.email }))
}

#[handler]
pub async fn confirm_form(
    req: &Request,
    Query(q): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let Some(digests) = email_link_digests(&state.signin(), &q.token) else {
        return Err(unusable(Msg::EmailLinkUnusable));
    };
    let ctx = match read_link(state, req, &digests).await {
        Ok(Some(Link::Change { current, new })) => {
            minijinja::context! { token => q.token, email => new, current => current }
        }
        Ok(Some(Link::SignInFirst)) => minijinja::context! { sign_in_first => true },
        Ok(Some(Link::Verify { email })) => {
            minijinja::context! { token => q.token, email => email }
        }
        Ok(None) => return Err(unusable(Msg::EmailLinkUnusable)),
        Err(e) => return Err(failed(e)),
    };
    Ok(form_page(
        state,
        req,
        StatusCode::OK,
        "email_confirm.html",
        ctx,
    ))
}

#[handler]
pub async fn confirm(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let Some(digests) = email_link_digests(&state.signin(), form.get("token").unwrap_or_default())
    else {
        return Err(unusable(Msg::EmailLinkUnusable));
    };
    match read_link(state, req, &digests).await {
        Ok(Some(Link::SignInFirst)) => {
            return Ok(form_page(
                state,
                req,
                StatusCode::FORBIDDEN,
                "email_confirm.html",
                minijinja::context! { sign_in_first => true },
            ));
        }
        Ok(Some(_)) => {}
        Ok(None) => return Err(unusable(Msg::EmailLinkUnusable)),
        Err(e) => return Err(failed(e)),
    }
    let confirmed = match state.store.confirm_email(&digests, state.clock.now()).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(unusable(Msg::EmailLinkUnusable)),
        Err(StoreError::Conflict(_)) => {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                Msg::EmailTakenTitle,
                Msg::EmailTakenMessage,
            ));
        }
        Err(e) => return Err(failed(e)),
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
    if changed {
        super::browser::audit(
            state,
            req,
            crate::audit::Event::by_user(crate::audit::EventType::EmailChanged, &confirmed.user_id),
        )
        .await;
    }
    Ok(page(
        state,
        StatusCode::OK,
        "email_confirm.html",
        minijinja::context! { done => true, email => confirmed.new, changed => changed },
    ))
}
