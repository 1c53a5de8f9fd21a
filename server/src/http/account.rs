//! The account pages at `/account`: profile, passkeys, sessions and connected apps. Every
//! action is a form post with a CSRF token, on the signed-in user's own rows only; another
//! user's id answers 404.

use std::time::{Duration, UNIX_EPOCH};

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Serialize;

use super::browser::{append_cookie, csrf_token, current_session, session_cookie_name, set_cookie};
use super::error::PageError;
use super::pages::{
    account_form, account_redirect, checked_form, recently_signed_in, see_other, signed_in_user,
};
use super::respond::page;
use crate::oauth::params::Params;
use crate::state::{AppState, secs};
use crate::store::{Session, User};
use crate::views::{Msg, Views};

/// A form post from the account page for a sensitive change: as [`account_form`], and from a
/// session signed in within `sessions.recent_signin`; otherwise the account page asking to
/// sign in again. Adding or removing a way in (a passkey, an authenticator app, recovery
/// codes) goes through here, so a session cookie stolen long after it was made cannot put the
/// thief's credential between the owner and their account.
pub async fn recent_account_form(
    state: &AppState,
    req: &Request,
    body: poem::Body,
) -> Result<(Params, Session, User), PageError> {
    let (form, session, user) = account_form(state, req, body).await?;
    if !recently_signed_in(state, &session) {
        let error = state.views.msg(Msg::SignInAgain);
        return Err(PageError::page(
            account_with_message(state, req, None, Some(error)).await?,
        ));
    }
    Ok((form, session, user))
}

/// The account page after an action failed on our side: logged, and a generic message.
pub async fn account_failed(
    state: &AppState,
    req: &Request,
    action: &str,
    error: impl std::fmt::Display,
) -> Result<Response, PageError> {
    tracing::error!(%error, action, "an account action failed");
    let error = state.views.msg(Msg::ErrorTryAgain);
    account_with_message(state, req, None, Some(error)).await
}

/// A date and time for people: `2026-11-22 14:05 UTC`.
pub(super) fn when(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-11-22T14:05:09Z
    format!(
        "{} {} UTC",
        s.get(..10).unwrap_or_default(),
        s.get(11..16).unwrap_or_default()
    )
}

/// A short description of a browser from its User-Agent: "Firefox on Linux".
pub fn describe_browser(views: &Views, ua: Option<&str>) -> String {
    let Some(ua) = ua else {
        return views.msg(Msg::BrowserUnknown).to_owned();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (browser, Some(os)) => {
            let browser = browser.unwrap_or_else(|| views.msg(Msg::BrowserGeneric));
            views.msg_with(Msg::BrowserOnOs, &[("browser", browser), ("os", os)])
        }
        (None, None) => ua.chars().take(60).collect(),
        (Some(browser), None) => browser.to_owned(),
    }
}

#[derive(Serialize)]
struct PasskeyView {
    id: String,
    name: String,
    created: String,
    last_used: Option<String>,
    synced: bool,
}

#[derive(Serialize)]
struct SessionView {
    sid: String,
    browser: String,
    ip: Option<String>,
    created: String,
    last_used: String,
    current: bool,
}

#[derive(Serialize)]
struct AppView {
    client_id: String,
    name: String,
    scope: String,
    since: String,
}

/// The account page, with an optional notice or error.
pub async fn account_with_message(
    state: &AppState,
    req: &Request,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, PageError> {
    account_page(state, req, notice, error, None).await
}

/// The account page; `new_key`: an API key just made, shown this once.
async fn account_page(
    state: &AppState,
    req: &Request,
    notice: Option<&str>,
    error: Option<&str>,
    new_key: Option<&crate::api_keys::CreatedKey>,
) -> Result<Response, PageError> {
    let Some((session, user)) = signed_in_user(state, req).await else {
        return Err(PageError::SignIn { location: "/login" });
    };
    let now = state.clock.now();
    let idle = secs(state.config.sessions.idle_lifetime);
    let loaded = async {
        Ok::<_, crate::store::StoreError>((
            state.store.passkeys_of(&user.id).await?,
            state.store.sessions_of(&user.id, now, idle).await?,
            state.store.consents_of(&user.id).await?,
            state.store.totp_enabled(&user.id).await?,
            state.store.recovery_codes_left(&user.id).await?,
            state.store.password_hash(&user.id).await?,
            state.store.devices_of(&user.id, None, 100).await?,
            state.store.api_keys_of(&user.id, now).await?,
        ))
    }
    .await;
    let (passkeys, sessions, consents, totp, codes_left, password, devices, api_keys) =
        loaded.map_err(|e| PageError::server("loading the account page", e))?;
    let passkeys: Vec<PasskeyView> = passkeys
        .into_iter()
        .map(|p| PasskeyView {
            id: p.id,
            name: p.name,
            created: when(p.created_at),
            last_used: p.last_used_at.map(when),
            synced: p.backup_eligible,
        })
        .collect();
    let sessions: Vec<SessionView> = sessions
        .into_iter()
        .map(|s| SessionView {
            current: s.sid == session.sid,
            browser: describe_browser(&state.views, s.user_agent.as_deref()),
            ip: s.ip,
            created: when(s.created_at),
            last_used: when(s.last_seen_at),
            sid: s.sid,
        })
        .collect();
    let mut apps = Vec::with_capacity(consents.len());
    for c in consents {
        let name = match state.clients().find(&c.client_id).await {
            Ok(Some(client)) if !client.metadata.client_name.is_empty() => {
                client.metadata.client_name.clone()
            }
            _ => c.client_id.clone(),
        };
        apps.push(AppView {
            client_id: c.client_id,
            name,
            scope: c.scope,
            since: when(c.created_at),
        });
    }
    let (csrf, cookie) = csrf_token(state, req);
    let mut resp = page(
        state,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "account.html",
        minijinja::context! {
            user => minijinja::context! {
                email => user.email,
                email_verified => user.email_verified,
                name => user.name,
            },
            passkeys => passkeys,
            sessions => sessions,
            apps => apps,
            totp => totp,
            has_password => password.is_some(),
            devices => devices
                .iter()
                .map(|d| minijinja::context! {
                    id => d.id,
                    name => d.name,
                    created => when(d.created_at),
                    ip => d.ip,
                })
                .collect::<Vec<_>>(),
            api_keys => api_keys
                .iter()
                .map(|k| minijinja::context! {
                    id => k.id,
                    name => k.name,
                    scope => k.scope,
                    resource => k.resource,
                    created => when(k.created_at),
                    expires => k.expires_at.map(when),
                    last_used => k.last_used_at.map(when),
                    last_ip => k.last_used_ip,
                })
                .collect::<Vec<_>>(),
            new_key => new_key.map(|k| minijinja::context! { key => k.key, id => k.id }),
            recent_signin => recently_signed_in(state, &session),
            recovery_codes_left => codes_left,
            csrf_token => csrf,
            notice => notice,
            error => error,
        },
    );
    append_cookie(&mut resp, cookie);
    Ok(resp)
}

#[handler]
pub async fn account(req: &Request, Data(state): Data<&AppState>) -> Result<Response, PageError> {
    account_with_message(state, req, None, None).await
}

/// A response that ends this browser's session: cookie cleared, on to the sign-in page.
fn signed_out(state: &AppState) -> Response {
    let mut resp = see_other("/login");
    append_cookie(
        &mut resp,
        Some(set_cookie(state, session_cookie_name(state), "", Some(0))),
    );
    append_cookie(&mut resp, super::browser::clear_forward_auth_cookie(state));
    resp
}

#[handler]
pub async fn sign_out(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    checked_form(state, req, body).await?;
    let now = state.clock.now();
    if let Some(session) = current_session(state, req, now).await {
        match state.store.revoke_session(&session.sid, now).await {
            Ok(()) => {
                state.forward_auth_cache.forget_session(&session.sid);
                super::browser::audit(
                    state,
                    req,
                    crate::audit::Event::by_user(
                        crate::audit::EventType::SessionEnded,
                        &session.user_id,
                    )
                    .details(serde_json::json!({"how": "sign_out", "sid": session.sid})),
                )
                .await;
            }
            Err(e) => tracing::error!(error = %e, "ending a session failed"),
        }
    }
    Ok(signed_out(state))
}

#[handler]
pub async fn revoke_session(
    req: &Request,
    Path(sid): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, session, user) = account_form(state, req, body).await?;
    let now = state.clock.now();
    match state.store.revoke_user_session(&user.id, &sid, now).await {
        Ok(true) => {
            state.forward_auth_cache.forget_session(&sid);
            tracing::info!(user = %user.id, "session ended from the account page");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::SessionEnded, &user.id)
                    .details(serde_json::json!({"how": "account_page", "sid": sid})),
            )
            .await;
            if sid == session.sid {
                Ok(signed_out(state))
            } else {
                Ok(account_redirect())
            }
        }
        Ok(false) => Err(PageError::not_found(Msg::SessionNotFound)),
        Err(e) => account_failed(state, req, "ending a session", e).await,
    }
}

#[handler]
pub async fn revoke_all_sessions(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = account_form(state, req, body).await?;
    match state
        .store
        .revoke_user_sessions(&user.id, state.clock.now())
        .await
    {
        Ok(n) => {
            state.forward_auth_cache.forget_user(&user.id);
            tracing::info!(user = %user.id, sessions = n, "signed out everywhere");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::SessionEnded, &user.id)
                    .details(serde_json::json!({"how": "sign_out_everywhere", "sessions": n})),
            )
            .await;
            Ok(signed_out(state))
        }
        Err(e) => account_failed(state, req, "signing out everywhere", e).await,
    }
}

#[handler]
pub async fn remove_device(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = account_form(state, req, body).await?;
    match state
        .store
        .delete_device(&user.id, &id, state.clock.now())
        .await
    {
        Ok(true) => {
            tracing::info!(user = %user.id, device = %id, "device removed from the account page");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::DeviceRemoved, &user.id)
                    .details(serde_json::json!({"device": id})),
            )
            .await;
            Ok(account_redirect())
        }
        Ok(false) => Err(PageError::not_found(Msg::DeviceNotFound)),
        Err(e) => account_failed(state, req, "removing a device", e).await,
    }
}

/// `POST /account/delete`: after a recent sign-in and with the account's own address typed
/// as confirmation, the account and all that is the user's are deleted (`admin::delete_user`)
/// and the browser is signed out.
#[handler]
pub async fn delete_account(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, _, user) = recent_account_form(state, req, body).await?;
    let typed = form.get("confirm").unwrap_or_default();
    if crate::store::email_key(typed) != crate::store::email_key(&user.email) {
        let error = state.views.msg(Msg::DeleteConfirm);
        return account_with_message(state, req, None, Some(error)).await;
    }
    let seen = super::browser::Seen::of(state, req);
    match state
        .admin(crate::audit::Actor::User(&user.id), seen.origin())
        .delete_user(&user.id)
        .await
    {
        Ok(()) => {
            let mut resp = super::respond::page(
                state,
                StatusCode::OK,
                "account_deleted.html",
                minijinja::context! {},
            );
            append_cookie(
                &mut resp,
                Some(set_cookie(state, session_cookie_name(state), "", Some(0))),
            );
            Ok(resp)
        }
        Err(crate::admin::AdminError::Invalid(_)) => {
            let error = state.views.msg(Msg::LastAdmin);
            account_with_message(state, req, None, Some(error)).await
        }
        Err(e) => account_failed(state, req, "deleting an account", e).await,
    }
}

#[handler]
pub async fn revoke_app(
    req: &Request,
    Path(client_id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = account_form(state, req, body).await?;
    match state
        .store
        .revoke_consent(&user.id, &client_id, state.clock.now())
        .await
    {
        Ok(true) => {
            tracing::info!(user = %user.id, client = %client_id, "application disconnected");
            super::browser::audit(
                state,
                req,
                crate::audit::Event::by_user(crate::audit::EventType::ConsentRevoked, &user.id)
                    .client(&client_id),
            )
            .await;
            Ok(account_redirect())
        }
        Ok(false) => Err(PageError::not_found(Msg::AppNotFound)),
        Err(e) => account_failed(state, req, "disconnecting an application", e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_browser_names_browser_and_system_from_the_catalog() {
        let views = Views::new(None).unwrap();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe_browser(&views, Some(firefox)), "Firefox on Linux");
        assert_eq!(
            describe_browser(&views, Some("Mozilla/5.0 (Windows NT 10.0)")),
            "Browser on Windows"
        );
        assert_eq!(describe_browser(&views, Some("Opera/9.80 OPR/1")), "Opera");
        assert_eq!(describe_browser(&views, Some("curl/8.5.0")), "curl/8.5.0");
        assert_eq!(describe_browser(&views, None), "Unknown browser");
    }
}

/// `POST /account/api-keys`: `name`, `scope` (space-separated), `resource` and
/// `expires_in_days` (both optional). Needs a recent sign-in; the key is shown once.
#[handler]
pub async fn create_api_key(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, session, user) = account_form(state, req, body).await?;
    if !recently_signed_in(state, &session) {
        return account_with_message(state, req, None, Some(state.views.msg(Msg::SignInAgain)))
            .await;
    }
    let lifetime = match form
        .get("expires_in_days")
        .map(str::trim)
        .unwrap_or_default()
    {
        "" => None,
        days => match days.parse::<u64>() {
            Ok(d) if (1..=3650).contains(&d) => Some(Duration::from_secs(d * 86_400)),
            _ => {
                return account_with_message(
                    state,
                    req,
                    None,
                    Some("Expires in: a number of days from 1 to 3650, or empty for no expiry."),
                )
                .await;
            }
        },
    };
    let request = crate::api_keys::KeyRequest {
        name: form.get("name").unwrap_or_default(),
        scope: form.get("scope").unwrap_or_default(),
        resource: form.get("resource"),
        lifetime,
        // set by admin::Admin::create_api_key from who is asking
        admin_scopes: false,
    };
    let seen = super::browser::Seen::of(state, req);
    let made = state
        .admin(crate::audit::Actor::User(&user.id), seen.origin())
        .create_api_key(&user.id, &user.id, &request)
        .await;
    match made {
        Ok(key) => account_page(state, req, None, None, Some(&key)).await,
        Err(crate::admin::AdminError::Invalid(why)) => {
            account_with_message(state, req, None, Some(&why)).await
        }
        Err(e) => Err(PageError::server("creating an API key", e)),
    }
}

/// `POST /account/api-keys/{id}/revoke`.
#[handler]
pub async fn revoke_api_key(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, _, user) = account_form(state, req, body).await?;
    let seen = super::browser::Seen::of(state, req);
    match state
        .admin(crate::audit::Actor::User(&user.id), seen.origin())
        .revoke_api_key(&user.id, &id)
        .await
    {
        Ok(()) => Ok(account_redirect()),
        Err(crate::admin::AdminError::NotFound) => {
            account_with_message(state, req, None, Some(state.views.msg(Msg::ApiKeyNotFound))).await
        }
        Err(e) => Err(PageError::server("revoking an API key", e)),
    }
}
