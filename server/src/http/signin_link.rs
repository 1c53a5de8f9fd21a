//! Sign-in by a mailed link (`signin.email_links`): `/login/email` mails a link to the account's
//! address (the same answer, in about the same time, whether or not an account uses it);
//! opening `/login/email/confirm` shows a button, so a mail scanner opening links signs no one
//! in; confirming spends the link and signs in, or asks for the authenticator app first when
//! the account has one. The link carries the authorization request it interrupts, and works
//! only in the browser that asked for it (bound to that browser's CSRF cookie): a link
//! forwarded, or asked for someone else's address, signs no one in elsewhere.
//!
//! RFC 8176 has no `amr` value for an emailed link: tokens say `email` (acr 1).

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};

use super::browser::browser_binding;
use super::error::PageError;
use super::links::{
    TokenQuery, account_to_mail, after_answer, count_mail_request, failed, unusable,
};
use super::pages::{checked_form, signed_in};
use super::respond::form_page;
use crate::input::validate_email;
use crate::oauth::params::Params;
use crate::signin::{
    email_link_digests, link_browser_digest, link_browser_lookup, link_browser_matches,
    new_email_link,
};
use crate::state::{AppState, secs};
use crate::store::{EMAIL_LINK_SIGNIN, StoreError};
use crate::views::Msg;

/// The `amr` value of a sign-in by mailed link (not in the RFC 8176 registry).
pub const EMAIL_AMR: &str = "email";

/// Sign-in links are off: the pages are not there.
fn offered(state: &AppState) -> Result<(), PageError> {
    if state.config.signin.email_links {
        Ok(())
    } else {
        Err(PageError::not_found(Msg::SigninLinksOff))
    }
}

/// A bound link opened in another browser than the one that asked: nothing is spent.
fn other_browser() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        Msg::SigninLinkOtherBrowserTitle,
        Msg::SigninLinkOtherBrowser,
    )
}

fn link_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    ctx: minijinja::Value,
) -> Response {
    form_page(state, req, status, "signin_link.html", ctx)
}

#[handler]
pub async fn request_link(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    offered(state)?;
    let form = checked_form(state, req, body).await?;
    let request = form.get("request").unwrap_or_default().to_owned();
    let Ok(email) = validate_email(form.get("email").unwrap_or_default()) else {
        return super::login::retry_page(
            state,
            req,
            &Params::parse(request.as_bytes()).unwrap_or_default(),
            state.views.msg(Msg::InvalidEmail),
            "",
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    if let Err(wait) = count_mail_request(state, req).await {
        return Ok(link_page(
            state,
            req,
            StatusCode::TOO_MANY_REQUESTS,
            minijinja::context! { error => wait },
        ));
    }
    // The form passed the CSRF check, so the browser has its CSRF cookie.
    let browser = browser_binding(state, req).map(|b| link_browser_digest(&state.signin(), &b));
    after_answer(state, "sign-in link", |state| async move {
        send_link(&state, &email, &request, browser.as_deref()).await
    });
    let minutes = secs(state.config.mail.signin_link_lifetime) / 60;
    Ok(link_page(
        state,
        req,
        StatusCode::OK,
        minijinja::context! { sent => true, minutes => minutes },
    ))
}

/// Mails a sign-in link to `email` if an enabled account uses it; nothing otherwise.
async fn send_link(
    state: &AppState,
    email: &str,
    request: &str,
    browser: Option<&str>,
) -> Result<(), StoreError> {
    let Some(user) = account_to_mail(state, email).await? else {
        return Ok(());
    };
    // Only a request that parses is carried; the link works without one.
    let request = Params::parse(request.as_bytes())
        .ok()
        .filter(|p| p.contains("client_id"))
        .map(|p| p.encode());
    let lifetime = state.config.mail.signin_link_lifetime;
    let token = new_email_link(
        &state.signin(),
        EMAIL_LINK_SIGNIN,
        &user.id,
        &user.email,
        request.as_deref(),
        browser,
        lifetime,
    )
    .await?;
    tracing::info!(user = %user.id, "sign-in link made");
    state.mailer.send_later(
        &user.email,
        "mail/signin_link.txt",
        minijinja::context! {
            service => state.config.passkeys.rp_name,
            email => user.email,
            link => format!("{}/login/email/confirm?token={token}", state.config.issuer),
            minutes => secs(lifetime) / 60,
        },
    );
    Ok(())
}

#[handler]
pub async fn confirm_form(
    req: &Request,
    Query(q): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    offered(state)?;
    let Some(digests) = email_link_digests(&state.signin(), &q.token) else {
        return Err(unusable(Msg::ResetLinkUnusable));
    };
    match state
        .store
        .email_link(&digests, EMAIL_LINK_SIGNIN, state.clock.now())
        .await
    {
        Ok(Some(link))
            if !link_browser_matches(
                &state.signin(),
                link.browser.as_deref(),
                browser_binding(state, req).as_deref(),
            ) =>
        {
            Err(other_browser())
        }
        Ok(Some(link)) => {
            // Anyone can ask for a link to someone's address from any application's sign-in
            // page: the page names the application the sign-in goes on to.
            let client_id = link
                .request
                .as_deref()
                .and_then(|r| Params::parse(r.as_bytes()).ok())
                .and_then(|p| p.get("client_id").map(str::to_owned));
            let client = match &client_id {
                Some(id) => match state.clients().find(id).await {
                    Ok(Some(c)) if !c.metadata.client_name.is_empty() => {
                        Some(c.metadata.client_name.clone())
                    }
                    _ => Some(id.clone()),
                },
                None => None,
            };
            Ok(link_page(
                state,
                req,
                StatusCode::OK,
                minijinja::context! {
                    confirm => true,
                    token => q.token,
                    email => link.email,
                    client => client,
                },
            ))
        }
        Ok(None) => Err(unusable(Msg::ResetLinkUnusable)),
        Err(e) => Err(failed(e)),
    }
}

#[handler]
pub async fn confirm(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    offered(state)?;
    let form = checked_form(state, req, body).await?;
    let Some(digests) = email_link_digests(&state.signin(), form.get("token").unwrap_or_default())
    else {
        return Err(unusable(Msg::ResetLinkUnusable));
    };
    let now = state.clock.now();
    let binding = browser_binding(state, req);
    match state
        .store
        .email_link(&digests, EMAIL_LINK_SIGNIN, now)
        .await
    {
        Ok(Some(link))
            if !link_browser_matches(
                &state.signin(),
                link.browser.as_deref(),
                binding.as_deref(),
            ) =>
        {
            return Err(other_browser());
        }
        Ok(_) => {}
        Err(e) => return Err(failed(e)),
    }
    let browser = link_browser_lookup(&state.signin(), binding.as_deref());
    let (user_id, request) = match state.store.use_signin_link(&digests, &browser, now).await {
        Ok(Some(used)) => used,
        Ok(None) => return Err(unusable(Msg::ResetLinkUnusable)),
        Err(e) => return Err(failed(e)),
    };
    let request = request
        .and_then(|r| Params::parse(r.as_bytes()).ok())
        .unwrap_or_default();
    if let Some(page) =
        super::totp::second_factor_needed(state, req, &user_id, &request, EMAIL_AMR).await?
    {
        tracing::info!(user = %user_id, "sign-in link used; asking for the second factor");
        return Ok(page);
    }
    tracing::info!(user = %user_id, "signed in with a mailed link");
    let resp = signed_in(
        state,
        req,
        &user_id,
        &[EMAIL_AMR],
        super::login::PASSWORD_ACR,
        &request,
        now,
    )
    .await?;
    super::browser::audit(
        state,
        req,
        crate::audit::Event::by_user(crate::audit::EventType::SigninSuccess, &user_id)
            .details(serde_json::json!({"method": "email_link"})),
    )
    .await;
    Ok(resp)
}
