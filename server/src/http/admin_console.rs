//! The admin console at `/admin` (issue 16): server-rendered pages in the style of `/account`
//! for users, clients, sessions, keys and the audit log. Only signed-in administrators; every
//! form is CSRF-checked and needs a sign-in within `sessions.recent_signin`; changes go through
//! `crate::admin` (as the admin API's and the CLI's do), so each is an audit event naming the
//! administrator. No script: plain links and forms.

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::Value;

use super::browser::Seen;
use super::error::PageError;
use super::pages::{checked_form, recently_signed_in, see_other, signed_in_user};
use super::respond::form_page;
use crate::admin::{AdminError, client_json, user_json};
use crate::audit::Actor;
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::store::{Session, User};
use crate::views::Msg;

/// The signed-in administrator, or the way to sign in, or a refusal.
async fn administrator(state: &AppState, req: &Request) -> Result<(Session, User), PageError> {
    let Some((session, user)) = signed_in_user(state, req).await else {
        return Err(PageError::SignIn { location: "/login" });
    };
    if !user.is_admin {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            Msg::AdminTitle,
            Msg::AdminOnly,
        ));
    }
    Ok((session, user))
}

/// A console form: CSRF-checked, from an administrator who signed in recently.
async fn admin_form(
    state: &AppState,
    req: &Request,
    body: poem::Body,
) -> Result<(Params, User), PageError> {
    let form = checked_form(state, req, body).await?;
    let (session, user) = administrator(state, req).await?;
    if !recently_signed_in(state, &session) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            Msg::AdminTitle,
            Msg::SignInAgain,
        ));
    }
    Ok((form, user))
}

fn render(
    state: &AppState,
    req: &Request,
    view: &str,
    admin: &User,
    ctx: minijinja::Value,
) -> Response {
    form_page(
        state,
        req,
        StatusCode::OK,
        "admin.html",
        minijinja::context! { view => view, me => admin.email, ..ctx },
    )
}

fn query(req: &Request) -> Params {
    Params::parse(req.uri().query().unwrap_or_default().as_bytes()).unwrap_or_default()
}

fn failed(e: impl std::fmt::Display) -> PageError {
    PageError::server("an admin console action", e)
}

fn admin_failed(e: AdminError) -> PageError {
    match e {
        AdminError::NotFound => PageError::not_found(Msg::AdminNotFound),
        AdminError::Invalid(_) => PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::AdminTitle,
            Msg::LastAdminConsole,
        ),
        AdminError::Store(e) => failed(e),
        AdminError::Keys(e) => failed(e),
    }
}

#[handler]
pub async fn home() -> Response {
    see_other("/admin/users")
}

#[handler]
pub async fn users_page(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let q = query(req);
    let search = q.get("search").map(str::trim).filter(|s| !s.is_empty());
    let list = state
        .store
        .list_users(search, None, 100)
        .await
        .map_err(failed)?;
    let users: Vec<Value> = list.iter().map(user_json).collect();
    Ok(render(
        state,
        req,
        "users",
        &me,
        minijinja::context! { users => users, search => search },
    ))
}

#[handler]
pub async fn user_page(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let user = state
        .store
        .user_by_id(&id)
        .await
        .map_err(failed)?
        .ok_or_else(|| PageError::not_found(Msg::AdminNotFound))?;
    let sessions = state
        .store
        .list_sessions(Some(&id), state.clock.now(), 1000)
        .await
        .map_err(failed)?;
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "sid": s.sid,
                "browser": super::account::describe_browser(&state.views, s.user_agent.as_deref()),
                "ip": s.ip,
                "last_seen": super::account::when(s.last_seen_at),
            })
        })
        .collect();
    let seen = Seen::of(state, req);
    let details = state
        .admin(Actor::Admin(&me.id), seen.origin())
        .user_details(&user)
        .await
        .map_err(failed)?;
    let api_keys: Vec<Value> = state
        .store
        .api_keys_of(&id, state.clock.now())
        .await
        .map_err(failed)?
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": k.id,
                "name": k.name,
                "scope": k.scope,
                "resource": k.resource,
                "last_used": k.last_used_at.map(super::account::when),
                "last_ip": k.last_used_ip,
                "expires": k.expires_at.map(super::account::when),
            })
        })
        .collect();
    let notice = match query(req).get("done") {
        Some("key") => Some("The API key is revoked."),
        Some("sessions") => Some("Their sessions have ended."),
        Some("disabled") => Some("The account is disabled."),
        Some("enabled") => Some("The account is enabled."),
        _ => None,
    };
    Ok(render(
        state,
        req,
        "user",
        &me,
        minijinja::context! {
            user => details,
            sessions => sessions,
            api_keys => api_keys,
            notice => notice,
        },
    ))
}

#[handler]
pub async fn end_sessions(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = admin_form(state, req, body).await?;
    let seen = Seen::of(state, req);
    state
        .admin(Actor::Admin(&me.id), seen.origin())
        .end_sessions_of(&id)
        .await
        .map_err(admin_failed)?;
    Ok(see_other(&format!("/admin/users/{id}?done=sessions")))
}

/// Revokes one of the user's API keys.
#[handler]
pub async fn revoke_api_key(
    req: &Request,
    Path((id, key)): Path<(String, String)>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = admin_form(state, req, body).await?;
    let seen = Seen::of(state, req);
    state
        .admin(Actor::Admin(&me.id), seen.origin())
        .revoke_api_key(&id, &key)
        .await
        .map_err(admin_failed)?;
    Ok(see_other(&format!("/admin/users/{id}?done=key")))
}

async fn set_disabled(
    state: &AppState,
    req: &Request,
    id: &str,
    body: poem::Body,
    disabled: bool,
) -> Result<Response, PageError> {
    let (_, me) = admin_form(state, req, body).await?;
    let seen = Seen::of(state, req);
    state
        .admin(Actor::Admin(&me.id), seen.origin())
        .set_disabled(id, disabled)
        .await
        .map_err(admin_failed)?;
    let done = if disabled { "disabled" } else { "enabled" };
    Ok(see_other(&format!("/admin/users/{id}?done={done}")))
}

#[handler]
pub async fn disable_user(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    set_disabled(state, req, &id, body, true).await
}

#[handler]
pub async fn enable_user(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    set_disabled(state, req, &id, body, false).await
}

#[handler]
pub async fn delete_user_form(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, me) = admin_form(state, req, body).await?;
    let user = state
        .store
        .user_by_id(&id)
        .await
        .map_err(failed)?
        .ok_or_else(|| PageError::not_found(Msg::AdminNotFound))?;
    if crate::store::email_key(form.get("confirm").unwrap_or_default())
        != crate::store::email_key(&user.email)
    {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::AdminTitle,
            Msg::DeleteConfirm,
        ));
    }
    let seen = Seen::of(state, req);
    state
        .admin(Actor::Admin(&me.id), seen.origin())
        .delete_user(&id)
        .await
        .map_err(admin_failed)?;
    Ok(see_other("/admin/users"))
}

/// Every live session, most recently used first, each with a button that ends it.
#[handler]
pub async fn sessions_page(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let rows = state
        .store
        .list_sessions(None, state.clock.now(), 500)
        .await
        .map_err(failed)?;
    let mut sessions = Vec::with_capacity(rows.len());
    for s in &rows {
        let email = state
            .store
            .user_by_id(&s.user_id)
            .await
            .map_err(failed)?
            .map(|u| u.email);
        sessions.push(serde_json::json!({
            "sid": s.sid,
            "user_id": s.user_id,
            "email": email,
            "browser": super::account::describe_browser(&state.views, s.user_agent.as_deref()),
            "ip": s.ip,
            "last_seen": super::account::when(s.last_seen_at),
        }));
    }
    let notice = (query(req).get("done") == Some("ended")).then_some("The session has ended.");
    Ok(render(
        state,
        req,
        "sessions",
        &me,
        minijinja::context! { sessions => sessions, notice => notice },
    ))
}

#[handler]
pub async fn end_session(
    req: &Request,
    Path(sid): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = admin_form(state, req, body).await?;
    let seen = Seen::of(state, req);
    state
        .admin(Actor::Admin(&me.id), seen.origin())
        .end_session(&sid)
        .await
        .map_err(admin_failed)?;
    Ok(see_other("/admin/sessions?done=ended"))
}

#[handler]
pub async fn clients_page(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let list = state.store.list_clients(None, 1000).await.map_err(failed)?;
    let clients: Vec<Value> = list.iter().filter_map(|c| client_json(c).ok()).collect();
    Ok(render(
        state,
        req,
        "clients",
        &me,
        minijinja::context! { clients => clients },
    ))
}

#[handler]
pub async fn client_page(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let c = state
        .store
        .client_by_id(&id)
        .await
        .map_err(failed)?
        .ok_or_else(|| PageError::not_found(Msg::AdminNotFound))?;
    let has_secret = c.secret_digest.is_some();
    let json = client_json(&c).map_err(failed)?;
    let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
    Ok(render(
        state,
        req,
        "client",
        &me,
        minijinja::context! { client => json, metadata => pretty, has_secret => has_secret },
    ))
}

#[handler]
pub async fn rotate_secret_form(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (form, me) = admin_form(state, req, body).await?;
    let grace = match form.get("grace").unwrap_or("0") {
        "0" => 0,
        "3600" => 3600,
        "86400" => 86_400,
        _ => return Err(PageError::bad_request(Msg::FormUnreadable)),
    };
    let seen = Seen::of(state, req);
    let (secret, until) = state
        .admin(Actor::Admin(&me.id), seen.origin())
        .rotate_secret(&id, grace)
        .await
        .map_err(admin_failed)?;
    Ok(render(
        state,
        req,
        "secret",
        &me,
        minijinja::context! {
            client_id => id,
            secret => secret.expose(),
            until => until.map(super::account::when),
        },
    ))
}

#[handler]
pub async fn keys_page(req: &Request, Data(state): Data<&AppState>) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let statuses = state
        .keys
        .statuses(state.clock.now())
        .await
        .map_err(failed)?;
    let keys: Vec<Value> = statuses
        .iter()
        .map(|s| {
            serde_json::json!({
                "kid": s.kid,
                "alg": s.alg.as_str(),
                "state": s.state.as_str(),
                "activates": super::account::when(s.activates_at),
            })
        })
        .collect();
    Ok(render(
        state,
        req,
        "keys",
        &me,
        minijinja::context! { keys => keys },
    ))
}

#[handler]
pub async fn rotate_keys_form(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = admin_form(state, req, body).await?;
    let seen = Seen::of(state, req);
    state
        .admin(Actor::Admin(&me.id), seen.origin())
        .rotate_keys(&latchkey_jwks::Alg::ALL)
        .await
        .map_err(admin_failed)?;
    Ok(see_other("/admin/keys"))
}

#[handler]
pub async fn audit_page(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, PageError> {
    let (_, me) = administrator(state, req).await?;
    let q = query(req);
    let pick = |k: &str| {
        q.get(k)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let filter = crate::store::AuditFilter {
        subject: pick("user"),
        client_id: pick("client"),
        kind: pick("type"),
        ..Default::default()
    };
    let mut events = state
        .store
        .audit_events(&filter, 200)
        .await
        .map_err(failed)?;
    events.reverse();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "when": super::account::when(e.at),
                "type": e.kind,
                "actor": e.actor,
                "subject": e.subject,
                "client_id": e.client_id,
                "ip": e.ip,
                "outcome": e.outcome,
                "details": e.details.to_string(),
            })
        })
        .collect();
    Ok(render(
        state,
        req,
        "audit",
        &me,
        minijinja::context! {
            events => events,
            user => filter.subject,
            client => filter.client_id,
            kind => filter.kind,
        },
    ))
}
