//! The admin API under `/admin/api/` (issue 16): users, clients, keys, registration tokens,
//! invitations, sessions and the audit log, as JSON.
//!
//! Access: an access token of ours for the issuer with `admin:read` (reads) or `admin:write`
//! (writes) — both only an administrator can give a client (`latchkey client create --scope`).
//! A token that stands for a user works only while that user is an administrator (403
//! `access_denied` otherwise), and a write needs a sign-in of at most 5 minutes ago (RFC 9470:
//! 401 `insufficient_user_authentication` with `max_age`). A client's own token
//! (client_credentials) acts as that client. Every write is an audit event with the
//! administrator (or client) as its actor; changes go through `crate::admin`, as the CLI's do.

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::api::{json_body, no_content, page, page_params};
use super::bearer::{access, refuse};
use super::error::ApiError;
use super::respond::json_ok;
use crate::access::Audience;
use crate::admin::{Admin, AdminError, client_json, user_json};
use crate::audit::{Actor, Event, EventType, Origin};
use crate::oauth::client::{ClientMetadata, ClientOrigin};
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;
use crate::state::AppState;

/// How recent a sign-in must be for a write (RFC 9470 `max_age`).
pub const WRITE_MAX_AGE: i64 = 300;

/// Who is calling: an administrator (by user id) or a client acting for itself.
struct Caller {
    id: String,
    client: bool,
    seen: super::browser::Seen,
}

impl Caller {
    fn actor(&self) -> Actor<'_> {
        if self.client {
            Actor::Client(&self.id)
        } else {
            Actor::Admin(&self.id)
        }
    }

    fn origin(&self) -> Origin<'_> {
        self.seen.origin()
    }

    fn admin<'a>(&'a self, state: &'a AppState) -> Admin<'a> {
        state.admin(self.actor(), self.origin())
    }

    async fn record(&self, state: &AppState, e: Event<'_>) {
        state
            .audit
            .note(state.clock.now(), e.from(self.origin()))
            .await;
    }
}

async fn caller(state: &AppState, req: &Request, write: bool) -> Result<Caller, ApiError> {
    let scope = if write { "admin:write" } else { "admin:read" };
    let claims = access(state, req, Audience::Issuer, scope).await?;
    let seen = super::browser::Seen::of(state, req);
    if !claims.is_users() {
        // A client's own token: the client an administrator gave the scope to.
        return Ok(Caller {
            id: claims.client_id().unwrap_or_default().to_owned(),
            client: true,
            seen,
        });
    }
    let Some(user) = state.store.active_user(claims.sub()).await? else {
        return Err(refuse(
            state,
            &claims,
            BearerError::new(
                B::InvalidToken,
                "the access token's user is gone or disabled",
            ),
        ));
    };
    if !user.is_admin {
        return Err(ApiError::Forbidden(
            "only administrators may use the admin API",
        ));
    }
    // A write needs a recent sign-in behind the token. An API key has none: the
    // administrator made it with admin:write on purpose, as a client's credentials are
    // given the scope on purpose, and its user must still be an administrator (above).
    let stale = match (claims.key_id(), claims.auth_time()) {
        (Some(_), _) => false,
        (None, Some(t)) => state.clock.now() - t > WRITE_MAX_AGE,
        (None, None) => true,
    };
    if write && stale {
        return Err(ApiError::StepUp {
            max_age: WRITE_MAX_AGE,
        });
    }
    Ok(Caller {
        id: user.id,
        client: false,
        seen,
    })
}

fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound => ApiError::NotFound,
        AdminError::Invalid(why) => ApiError::Invalid(why.into()),
        AdminError::Store(e) => e.into(),
        AdminError::Keys(e) => ApiError::server(e),
    }
}

/// A JSON body that may be left out (then `{}`).
async fn optional_body(req: &Request, body: poem::Body) -> Result<Value, ApiError> {
    if req.content_type().is_some() {
        json_body(req, body).await
    } else {
        Ok(json!({}))
    }
}

fn query(req: &Request) -> Result<Params, ApiError> {
    Params::parse(req.uri().query().unwrap_or_default().as_bytes())
        .map_err(|_| ApiError::invalid("the query could not be read"))
}

fn created(body: &Value) -> Response {
    let mut resp = json_ok(body);
    resp.set_status(StatusCode::CREATED);
    resp
}

fn str_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::Invalid(format!("{name} must be a string").into())),
    }
}

fn bool_field(body: &Value, name: &str) -> Result<Option<bool>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::Invalid(
            format!("{name} must be true or false").into(),
        )),
    }
}

// ---- users ----

#[handler]
pub async fn list_users(req: &Request, Data(state): Data<&AppState>) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    let (limit, after) = page_params(req).map_err(ApiError::invalid)?;
    let q = query(req)?;
    let rows = state
        .store
        .list_users(q.get("search"), after.as_deref(), limit + 1)
        .await?;
    Ok(page(rows, limit, |u| u.id.clone(), user_json))
}

#[handler]
pub async fn create_user(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = json_body(req, body).await?;
    let email = crate::input::validate_email(str_field(&body, "email")?.unwrap_or_default())
        .map_err(|_| ApiError::invalid("email must be an email address"))?;
    let name = str_field(&body, "name")?
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let admin = bool_field(&body, "admin")?.unwrap_or(false);
    let verified = bool_field(&body, "email_verified")?.unwrap_or(false);
    let id = crate::secrets::random_token(16);
    let now = state.clock.now();
    match state
        .store
        .create_user(&crate::store::NewUser {
            id: &id,
            email: &email,
            email_verified: verified,
            name,
            password_hash: None,
            is_admin: admin,
            now,
        })
        .await
    {
        Ok(()) => {}
        Err(crate::store::StoreError::Conflict(why)) => return Err(ApiError::invalid(why)),
        Err(e) => return Err(e.into()),
    }
    who.record(
        state,
        Event::new(EventType::UserCreated, who.actor())
            .subject(&id)
            .details(json!({ "admin": admin, "through": "admin_api" })),
    )
    .await;
    let user = state.store.user_by_id(&id).await?.ok_or(ApiError::Server)?;
    Ok(created(&user_json(&user)))
}

#[handler]
pub async fn show_user(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, false).await?;
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_ok(&who.admin(state).user_details(&user).await?))
}

/// `PATCH /admin/api/users/{id}`: `{"admin": bool, "disabled": bool}` (either or both).
#[handler]
pub async fn update_user(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = json_body(req, body).await?;
    if let Some(k) = body.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["admin", "disabled"].contains(&k.as_str()))
    }) {
        return Err(ApiError::Invalid(
            format!("{k} cannot be changed here (admin, disabled)").into(),
        ));
    }
    let admin = bool_field(&body, "admin")?;
    let disabled = bool_field(&body, "disabled")?;
    if state.store.user_by_id(&id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    if let Some(a) = admin {
        who.admin(state)
            .set_admin(&id, a)
            .await
            .map_err(admin_error)?;
    }
    if let Some(d) = disabled {
        who.admin(state)
            .set_disabled(&id, d)
            .await
            .map_err(admin_error)?;
    }
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_ok(&user_json(&user)))
}

#[handler]
pub async fn delete_user(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    who.admin(state)
        .delete_user(&id)
        .await
        .map_err(admin_error)?;
    Ok(no_content())
}

#[handler]
pub async fn end_user_sessions(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    if state.store.user_by_id(&id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let n = who
        .admin(state)
        .end_sessions_of(&id)
        .await
        .map_err(admin_error)?;
    Ok(json_ok(&json!({ "ended": n })))
}

/// Removes the user's authenticator app and recovery codes (they lost the device).
#[handler]
pub async fn reset_second_factor(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    if state.store.user_by_id(&id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let removed = state.store.delete_totp(&id).await?;
    who.record(
        state,
        Event::new(EventType::SecondFactorReset, who.actor())
            .subject(&id)
            .details(json!({ "removed": removed })),
    )
    .await;
    Ok(json_ok(&json!({ "removed": removed })))
}

/// Mails the user a password-reset link.
#[handler]
pub async fn send_reset(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let user = state
        .store
        .active_user(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    super::reset::send_reset_link(state, &user.email).await?;
    who.record(
        state,
        Event::new(EventType::PasswordResetSent, who.actor()).subject(&id),
    )
    .await;
    Ok(Response::builder().status(StatusCode::ACCEPTED).finish())
}

// ---- clients ----

#[handler]
pub async fn list_clients(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    let (limit, after) = page_params(req).map_err(ApiError::invalid)?;
    let rows = state
        .store
        .list_clients(after.as_deref(), limit + 1)
        .await?;
    Ok(page(
        rows,
        limit,
        |c| c.client_id.clone(),
        |c| client_json(c).unwrap_or_else(|_| json!({ "client_id": c.client_id })),
    ))
}

/// `POST /admin/api/clients`: RFC 7591 metadata; the answer carries `client_secret` once.
#[handler]
pub async fn create_client(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = json_body(req, body).await?;
    let metadata =
        crate::oauth::registration::RegistrationRequest::parse(body.to_string().as_bytes())
            .and_then(crate::oauth::registration::RegistrationRequest::into_metadata)
            .map_err(ApiError::Registration)?;
    let (client_id, secret) = state
        .clients()
        .create(&metadata, ClientOrigin::Registered)
        .await?;
    who.record(
        state,
        Event::new(EventType::ClientCreated, who.actor())
            .client(&client_id)
            .details(json!({ "client_name": metadata.client_name, "through": "admin_api" })),
    )
    .await;
    let stored = state
        .store
        .client_by_id(&client_id)
        .await?
        .ok_or(ApiError::Server)?;
    let mut out = client_json(&stored)?;
    if let Some(s) = &secret {
        out["client_secret"] = json!(s.expose());
    }
    Ok(created(&out))
}

#[handler]
pub async fn show_client(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    let c = state
        .store
        .client_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_ok(&client_json(&c)?))
}

/// `PATCH /admin/api/clients/{id}`: the metadata fields given replace the stored ones
/// (client_name, redirect_uris, post_logout_redirect_uris, scope, logo_uri, policy_uri,
/// tos_uri, first_party).
#[handler]
pub async fn update_client(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    const FIELDS: [&str; 8] = [
        "client_name",
        "redirect_uris",
        "post_logout_redirect_uris",
        "scope",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "first_party",
    ];
    let who = caller(state, req, true).await?;
    let body = json_body(req, body).await?;
    let Some(changes) = body.as_object() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    if let Some(k) = changes.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::Invalid(
            format!("{k} cannot be changed here").into(),
        ));
    }
    let stored = state
        .store
        .client_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut current: Value = serde_json::from_str(&stored.metadata).map_err(ApiError::server)?;
    for (k, v) in changes {
        current[k.as_str()] = v.clone();
    }
    let metadata: ClientMetadata = serde_json::from_value(current)
        .map_err(|e| ApiError::Invalid(format!("the metadata is not valid: {e}").into()))?;
    let changed: Vec<&str> = changes.keys().map(String::as_str).collect();
    who.admin(state)
        .update_client(&id, metadata, &changed)
        .await
        .map_err(admin_error)?;
    let c = state
        .store
        .client_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_ok(&client_json(&c)?))
}

#[handler]
pub async fn delete_client(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    who.admin(state)
        .delete_client(&id)
        .await
        .map_err(admin_error)?;
    Ok(no_content())
}

/// `{"grace_seconds": N}` (optional): the old secret keeps working that long.
#[handler]
pub async fn rotate_secret(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = optional_body(req, body).await?;
    let grace = match body.get("grace_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|g| (0..=30 * 86_400).contains(g))
            .ok_or(ApiError::invalid("grace_seconds must be 0 to 2592000"))?,
    };
    let (secret, until) = who
        .admin(state)
        .rotate_secret(&id, grace)
        .await
        .map_err(admin_error)?;
    Ok(json_ok(&json!({
        "client_id": id,
        "client_secret": secret.expose(),
        "previous_secret_expires_at": until,
    })))
}

// ---- keys, registration tokens, invitations ----

#[handler]
pub async fn list_keys(req: &Request, Data(state): Data<&AppState>) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    let statuses = state
        .keys
        .statuses(state.clock.now())
        .await
        .map_err(ApiError::server)?;
    let items: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({
                "kid": s.kid,
                "alg": s.alg.as_str(),
                "state": s.state.as_str(),
                "activates_at": s.activates_at,
            })
        })
        .collect();
    Ok(json_ok(&json!({ "items": items })))
}

/// `{"alg": "ES256"}` (optional; all algorithms when absent).
#[handler]
pub async fn rotate_keys(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = optional_body(req, body).await?;
    let algs = match str_field(&body, "alg")? {
        Some(a) => vec![
            a.parse::<latchkey_jwks::Alg>()
                .map_err(|_| ApiError::invalid("alg must be ES256, RS256, PS256 or EdDSA"))?,
        ],
        None => latchkey_jwks::Alg::ALL.to_vec(),
    };
    let created_keys = who
        .admin(state)
        .rotate_keys(&algs)
        .await
        .map_err(admin_error)?;
    Ok(created(&json!({ "created": created_keys })))
}

/// `{"expires_in": seconds, "max_uses": n}` (both optional); the token is in the answer once.
#[handler]
pub async fn create_registration_token(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = optional_body(req, body).await?;
    let positive = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or(ApiError::Invalid(
                format!("{name} must be a positive number").into(),
            )),
    };
    let now = state.clock.now();
    let expires_at = positive("expires_in")?.map(|s| now + s);
    let max_uses = positive("max_uses")?;
    let token = who
        .admin(state)
        .create_registration_token(expires_at, max_uses)
        .await
        .map_err(admin_error)?;
    Ok(created(&json!({
        "initial_access_token": token,
        "expires_at": expires_at,
        "max_uses": max_uses,
    })))
}

/// `{"email": "...", "admin": bool}` (both optional): a one-time sign-up link, in the answer once.
#[handler]
pub async fn create_invitation(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = optional_body(req, body).await?;
    let email = str_field(&body, "email")?
        .map(crate::input::validate_email)
        .transpose()
        .map_err(|_| ApiError::invalid("email must be an email address"))?;
    let admin = bool_field(&body, "admin")?.unwrap_or(false);
    let (url, expires_at) = crate::signin::create_invite(
        &state.signin(),
        email.as_deref(),
        admin,
        state.config.signup.invite_lifetime,
    )
    .await?;
    who.record(
        state,
        Event::new(EventType::InvitationCreated, who.actor())
            .details(json!({ "admin": admin, "expires_at": expires_at })),
    )
    .await;
    Ok(created(
        &json!({ "invite_url": url, "expires_at": expires_at }),
    ))
}

// ---- sessions, audit ----

#[handler]
pub async fn list_sessions(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    let q = query(req)?;
    let rows = state
        .store
        .list_sessions(q.get("user"), state.clock.now(), 1000)
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .collect();
    Ok(json_ok(&json!({ "items": items })))
}

#[handler]
pub async fn end_session(
    req: &Request,
    Path(sid): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    who.admin(state)
        .end_session(&sid)
        .await
        .map_err(admin_error)?;
    Ok(no_content())
}

/// `GET /admin/api/audit-events?user=&client=&type=&since=&limit=`: the newest events
/// matching, oldest first; `?after=<at>:<id>` pages forward from an event.
#[handler]
pub async fn list_audit_events(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    let q = query(req)?;
    let limit = match q.get("limit").map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(ApiError::invalid("limit must be a number from 1 to 1000")),
    };
    let since = match q.get("since").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(ApiError::invalid("since must be a Unix time")),
    };
    let after = match q.get("after") {
        None => None,
        Some(a) => {
            let (at, id) = a
                .split_once(':')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                .ok_or(ApiError::invalid("after must be <at>:<id> of an event"))?;
            Some((at, id))
        }
    };
    let filter = crate::store::AuditFilter {
        subject: q.get("user").map(str::to_owned),
        client_id: q.get("client").map(str::to_owned),
        kind: q.get("type").map(str::to_owned),
        since,
        after,
    };
    let events = state.store.audit_events(&filter, limit).await?;
    let next = events.last().map(|e| format!("{}:{}", e.at, e.id));
    Ok(json_ok(&json!({ "items": events, "next": next })))
}

/// The user's live API keys (never a key or its digest).
#[handler]
pub async fn list_api_keys(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    caller(state, req, false).await?;
    if state.store.user_by_id(&id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let keys = state.store.api_keys_of(&id, state.clock.now()).await?;
    let items: Vec<Value> = keys.iter().map(crate::admin::api_key_json).collect();
    Ok(json_ok(&json!({ "items": items })))
}

/// `{"name": "...", "scope": "...", "resource": "...", "expires_in": seconds}` (the last two
/// optional): a key for the user or service account, in the answer once.
#[handler]
pub async fn create_api_key(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = optional_body(req, body).await?;
    let lifetime = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(std::time::Duration::from_secs(
            v.as_u64()
                .filter(|n| *n > 0)
                .ok_or(ApiError::invalid("expires_in must be a positive number"))?,
        )),
    };
    let request = crate::api_keys::KeyRequest {
        name: str_field(&body, "name")?.unwrap_or_default(),
        scope: str_field(&body, "scope")?.unwrap_or_default(),
        resource: str_field(&body, "resource")?,
        lifetime,
        // set by admin::Admin::create_api_key from who is asking
        admin_scopes: false,
    };
    let made = who
        .admin(state)
        .create_api_key(&id, &who.id, &request)
        .await
        .map_err(admin_error)?;
    Ok(created(&json!({
        "key": made.key,
        "id": made.id,
        "scope": made.scope,
        "expires_at": made.expires_at,
    })))
}

#[handler]
pub async fn revoke_api_key(
    req: &Request,
    Path((id, key)): Path<(String, String)>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    who.admin(state)
        .revoke_api_key(&id, &key)
        .await
        .map_err(admin_error)?;
    Ok(no_content())
}

/// `{"name": "...", "owner": "<administrator's user id>"}`: a service account; `owner`
/// defaults to the calling administrator (a client acting for itself must name one).
#[handler]
pub async fn create_service_account(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let who = caller(state, req, true).await?;
    let body = optional_body(req, body).await?;
    let owner = match (str_field(&body, "owner")?, who.client) {
        (Some(o), _) => o.to_owned(),
        (None, false) => who.id.clone(),
        (None, true) => return Err(ApiError::invalid("owner is required")),
    };
    let name = str_field(&body, "name")?.unwrap_or_default();
    let id = who
        .admin(state)
        .create_service_account(name, &owner)
        .await
        .map_err(admin_error)?;
    Ok(created(&json!({ "id": id, "name": name, "owner": owner })))
}
