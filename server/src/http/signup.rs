//! Creating an account at `/signup`: by invitation (`signup.policy = "invite"`, the default),
//! and the first administrator's setup link. The account and its first credential are made
//! together: a passkey (the page script runs the ceremony first), or a password.
//!
//! - `GET /signup?invite=...` → the form
//! - `POST /signup/options` → options for `navigator.credentials.create()` (JSON)
//! - `POST /signup` → creates the account and signs in

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::json;

use super::browser::{append_cookie, client_ip, csrf_token};
use super::error::PageError;
use super::links::{after_answer, count_mail_request, mail_allowed};
use super::pages::{checked_form, signed_in};
use super::passkeys::script_failed;
use super::respond::{form_page, json_ok, page};
use crate::config::SignupPolicy;
use crate::input::validate_email;
use crate::oauth::params::Params;
use crate::secrets::{Purpose, random_token};
use crate::signin::passkey::{self, PasskeyError};
use crate::signin::password::{self, PasswordError};
use crate::signin::throttle;
use crate::state::{AppState, secs};
use crate::store::{AccountError, Invite, NewAccount};
use crate::views::Msg;

/// The invite a token names, if usable; Err with what to tell the visitor otherwise. With
/// `signup.policy = "closed"` only the administrator setup link works. Unusable invitation
/// tokens count as failures of the client address, like failed sign-ins; an address that must
/// wait is told so before any token is looked at.
async fn invite_for(state: &AppState, req: &Request, token: &str) -> Result<Option<Invite>, Msg> {
    let policy = state.config.signup.policy;
    if token.is_empty() {
        return Err(match policy {
            SignupPolicy::Open => Msg::SignupStartFromPage,
            _ => Msg::InviteOnly,
        });
    }
    let now = state.clock.now();
    let throttle = throttle::Keys::address_only(&state.pepper, client_ip(state, req).as_deref());
    match throttle.wait(&state.store, now).await {
        Ok(0) => {}
        Ok(_) => return Err(Msg::SignupTooMany),
        Err(e) => tracing::error!(error = %e, "sign-up throttle check failed"),
    }
    let refused = |msg| async move {
        if let Err(e) = throttle.failed(&state.store, now).await {
            tracing::error!(error = %e, "counting an unusable invitation failed");
        }
        Err(msg)
    };
    if token.len() > 64 {
        return refused(Msg::InviteUnusable).await;
    }
    let digests = state
        .pepper
        .lookup_digests(Purpose::Invite, token.as_bytes());
    match state.store.usable_invite(&digests, now).await {
        Ok(Some(i)) if i.is_admin || policy != SignupPolicy::Closed => Ok(Some(i)),
        Ok(_) => refused(Msg::InviteUnusable).await,
        Err(e) => {
            tracing::error!(error = %e, "invite lookup failed");
            Err(Msg::ErrorTryAgainSoon)
        }
    }
}

struct Form<'a> {
    invite: &'a str,
    email: &'a str,
    name: &'a str,
    error: Option<&'a str>,
}

fn signup_page(
    state: &AppState,
    req: &Request,
    invite: Option<&Invite>,
    f: &Form<'_>,
    status: StatusCode,
) -> Response {
    let bound = invite.and_then(|i| i.email.clone());
    let (csrf, cookie) = csrf_token(state, req);
    let mut resp = page(
        state,
        status,
        "signup.html",
        minijinja::context! {
            csrf_token => csrf,
            invite => f.invite,
            admin => invite.is_some_and(|i| i.is_admin),
            email => bound.as_deref().unwrap_or(f.email),
            email_locked => bound.is_some(),
            name => f.name,
            error => f.error,
            passkeys_possible => true,
        },
    );
    append_cookie(&mut resp, cookie);
    resp
}

fn refused(why: Msg) -> PageError {
    PageError::new(StatusCode::FORBIDDEN, Msg::SignupRefusedTitle, why)
}

#[handler]
pub async fn signup_form(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let query = Params::parse(req.uri().query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let token = query.get("invite").unwrap_or_default();
    if token.is_empty() && state.config.signup.policy == SignupPolicy::Open {
        return Ok(email_page(state, req, StatusCode::OK, false, None));
    }
    match invite_for(state, req, token).await {
        Ok(invite) => Ok(signup_page(
            state,
            req,
            invite.as_ref(),
            &Form {
                invite: token,
                email: "",
                name: "",
                error: None,
            },
            StatusCode::OK,
        )),
        Err(why) => Err(refused(why)),
    }
}

/// Open sign-up's first step: the address we mail the sign-up link to.
fn email_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    sent: bool,
    error: Option<&str>,
) -> Response {
    let hours = secs(state.config.mail.verify_link_lifetime) / 3600;
    form_page(
        state,
        req,
        status,
        "signup_email.html",
        minijinja::context! { sent => sent, error => error, hours => hours },
    )
}

/// `POST /signup/email` (open sign-up): mails a sign-up link bound to the address, or, when
/// an account already uses it, a note saying so. The same answer either way, given before
/// the account is looked up.
#[handler]
pub async fn signup_email(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    if state.config.signup.policy != SignupPolicy::Open {
        return Err(refused(Msg::InviteOnly));
    }
    let Ok(email) = validate_email(form.get("email").unwrap_or_default()) else {
        return Ok(email_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            false,
            Some(state.views.msg(Msg::InvalidEmail)),
        ));
    };
    if let Err(wait) = count_mail_request(state, req).await {
        return Ok(email_page(
            state,
            req,
            StatusCode::TOO_MANY_REQUESTS,
            false,
            Some(&wait),
        ));
    }
    after_answer(state, "open sign-up", |state| async move {
        send_signup_link(&state, &email).await
    });
    Ok(email_page(state, req, StatusCode::OK, true, None))
}

async fn send_signup_link(state: &AppState, email: &str) -> Result<(), crate::store::StoreError> {
    if !mail_allowed(state, email).await? {
        return Ok(());
    }
    let service = &state.config.passkeys.rp_name;
    let issuer = &state.config.issuer;
    if let Some(user) = state.store.user_by_email(email).await? {
        tracing::info!(user = %user.id, "sign-up asked for an address with an account");
        state.mailer.send_later(
            &user.email,
            "mail/account_exists.txt",
            minijinja::context! {
                service => service,
                email => user.email,
                signin => format!("{issuer}/login"),
                reset => format!("{issuer}/reset"),
            },
        );
        return Ok(());
    }
    let lifetime = state.config.mail.verify_link_lifetime;
    let (link, _) =
        crate::signin::create_verifying_invite(&state.signin(), email, lifetime).await?;
    tracing::info!("sign-up link made");
    state.mailer.send_later(
        email,
        "mail/signup_link.txt",
        minijinja::context! {
            service => service,
            email => email,
            link => link,
            hours => secs(lifetime) / 3600,
        },
    );
    Ok(())
}

/// A display name as we keep it: at most 100 characters.
fn clean_name(raw: &str) -> Option<String> {
    crate::input::clean_label(raw, 100)
}

#[handler]
pub async fn signup_options(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let Ok(form) = checked_form(state, req, body).await else {
        return Err(PageError::script(
            StatusCode::FORBIDDEN,
            "the form has expired",
        ));
    };
    let invite = match invite_for(state, req, form.get("invite").unwrap_or_default()).await {
        Ok(i) => i,
        Err(why) => {
            let message = state.views.msg(why).to_owned();
            return Err(PageError::script(StatusCode::FORBIDDEN, message));
        }
    };
    let email = match invite.as_ref().and_then(|i| i.email.clone()) {
        Some(bound) => bound,
        None => validate_email(form.get("email").unwrap_or_default())
            .map_err(|why| PageError::script(StatusCode::BAD_REQUEST, why))?,
    };
    let name = clean_name(form.get("name").unwrap_or_default());
    match passkey::start_signup(&state.signin(), &email, name.as_deref()).await {
        Ok((ceremony, options)) => Ok(json_ok(
            &json!({ "ceremony": ceremony, "options": options }),
        )),
        Err(e) => Err(script_failed("starting a sign-up passkey", e)),
    }
}

#[handler]
pub async fn signup(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let form = checked_form(state, req, body).await?;
    let token = form.get("invite").unwrap_or_default();
    let invite = invite_for(state, req, token).await.map_err(refused)?;
    let typed_email = form.get("email").unwrap_or_default();
    let typed_name = form.get("name").unwrap_or_default();
    let again = |error: Msg, status: StatusCode| {
        Ok(signup_page(
            state,
            req,
            invite.as_ref(),
            &Form {
                invite: token,
                email: typed_email,
                name: typed_name,
                error: Some(state.views.msg(error)),
            },
            status,
        ))
    };
    let id = random_token(16);
    let ceremony = form.get("ceremony").unwrap_or_default();
    let (email, name, handle, passkey, password_hash) = if !ceremony.is_empty() {
        match passkey::finish_signup(
            &state.signin(),
            ceremony,
            form.get("credential").unwrap_or_default(),
            &id,
        )
        .await
        {
            Ok((signup, row)) => (
                signup.email,
                signup.name,
                Some(signup.handle),
                Some(row),
                None,
            ),
            Err(PasskeyError::Store(e)) => {
                tracing::error!(error = %e, "finishing a sign-up passkey failed");
                return again(Msg::ErrorTryAgain, StatusCode::INTERNAL_SERVER_ERROR);
            }
            Err(e) => {
                tracing::info!(reason = %e, "sign-up passkey refused");
                return again(Msg::SignupPasskeyFailed, StatusCode::BAD_REQUEST);
            }
        }
    } else {
        let email = match invite.as_ref().and_then(|i| i.email.clone()) {
            Some(bound) => bound,
            None => match validate_email(typed_email) {
                Ok(e) => e,
                Err(_) => return again(Msg::InvalidEmail, StatusCode::BAD_REQUEST),
            },
        };
        let pw = form.get("password").unwrap_or_default().to_owned();
        let hash = match state.hash_password(pw).await {
            Ok(h) => h,
            Err(PasswordError::Hash) => {
                return again(Msg::ErrorTryAgain, StatusCode::INTERNAL_SERVER_ERROR);
            }
            Err(e) => return again(password::advice(&e), StatusCode::BAD_REQUEST),
        };
        (email, clean_name(typed_name), None, None, Some(hash))
    };
    let digests = state
        .pepper
        .lookup_digests(Purpose::Invite, token.as_bytes());
    let now = state.clock.now();
    let created = state
        .store
        .create_account(&NewAccount {
            id: &id,
            email: &email,
            name: name.as_deref(),
            password_hash: password_hash.as_deref(),
            webauthn_handle: handle.as_deref(),
            passkey: passkey.as_ref(),
            invite: invite.as_ref().map(|_| digests.as_slice()),
            now,
        })
        .await;
    let is_admin = match created {
        Ok(admin) => admin,
        Err(AccountError::EmailTaken) => {
            return again(Msg::SignupEmailTaken, StatusCode::CONFLICT);
        }
        Err(AccountError::InviteEmail) => {
            return again(Msg::InviteOtherEmail, StatusCode::BAD_REQUEST);
        }
        Err(AccountError::Invite) => {
            return Err(refused(Msg::InviteUnusable));
        }
        Err(AccountError::PasskeyTaken) => {
            return again(Msg::SignupPasskeyTaken, StatusCode::CONFLICT);
        }
        Err(AccountError::Store(e)) => {
            tracing::error!(error = %e, "creating an account failed");
            return again(Msg::ErrorTryAgain, StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    tracing::info!(user = %id, admin = is_admin, passkey = passkey.is_some(), "account created");
    super::browser::audit(
        state,
        req,
        crate::audit::Event::by_user(crate::audit::EventType::UserCreated, &id).details(
            serde_json::json!({"through": "signup", "admin": is_admin, "passkey": passkey.is_some()}),
        ),
    )
    .await;
    let (amr, acr) = match &passkey {
        Some(p) => passkey::amr_acr(p.backup_eligible),
        None => (vec!["pwd"], super::login::PASSWORD_ACR),
    };
    signed_in(state, req, &id, &amr, acr, &Params::default(), now).await
}
