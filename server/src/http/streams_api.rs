//! The streams API: a user's stream destinations (`streams:read` / `streams:write`), listings
//! with the key masked to its last four characters, a reveal of the key (`streams:reveal` and
//! a sign-in within the last 5 minutes, else the RFC 9470 step-up challenge), and an internal
//! read of a user's streams with their keys for a service (`streams:internal`, a
//! client_credentials token). Every reveal and internal read is written to the audit log.

use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::api::{
    api_client, api_user, invalid_request, json_body, no_content, not_found, page, page_params,
};
use super::browser::client_ip;
use super::respond::json_ok;
use crate::secrets::random_token;
use crate::state::AppState;
use crate::store::{AuditEntry, StreamRow};
use crate::streams::{last4, open_key, parse_input, seal_key};

/// RFC 9470: how recent a sign-in revealing a stream key needs, in seconds.
pub const REVEAL_MAX_AGE: i64 = 300;

fn stream_json(row: &StreamRow, key: Option<&str>, shown_key: bool) -> Value {
    let mut v = json!({
        "id": row.id,
        "label": row.label,
        "platform": row.platform,
        "rtmp_url": row.rtmp_url,
        "enabled": row.enabled,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    });
    if let Some(key) = key {
        if shown_key {
            v["stream_key"] = json!(key);
        } else {
            v["stream_key_last4"] = json!(last4(key));
        }
    }
    v
}

/// The row with its key opened; a key that does not open (a damaged row, a KEK removed too
/// early) is logged and the row shown without it.
fn opened(state: &AppState, row: &StreamRow) -> Option<String> {
    match open_key(&state.keks, &row.id, &row.kek_id, &row.key_sealed) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::error!(stream = %row.id, error = %e, "a stream key does not open");
            None
        }
    }
}

fn masked(state: &AppState, row: &StreamRow) -> Value {
    stream_json(row, opened(state, row).as_deref(), false)
}

#[handler]
pub async fn list(req: &Request, Data(state): Data<&AppState>) -> Response {
    let (user, _) = match api_user(state, req, "streams:read").await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let (limit, after) = match page_params(req) {
        Ok(p) => p,
        Err(why) => return invalid_request(why),
    };
    match state
        .store
        .streams_of(&user.id, after.as_deref(), limit + 1)
        .await
    {
        Ok(rows) => page(rows, limit, |r| r.id.clone(), |r| masked(state, r)),
        Err(e) => super::server_error(e),
    }
}

#[handler]
pub async fn get_one(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let (user, _) = match api_user(state, req, "streams:read").await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    match state.store.stream_of(&user.id, &id).await {
        Ok(Some(row)) => json_ok(&masked(state, &row)),
        Ok(None) => not_found(),
        Err(e) => super::server_error(e),
    }
}

#[handler]
pub async fn create(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let (user, _) = match api_user(state, req, "streams:write").await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let body = match json_body(req, body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let input = match parse_input(&body, true) {
        Ok(i) => i,
        Err(why) => return invalid_request(&why),
    };
    let id = random_token(16);
    let key = input.stream_key.unwrap_or_default();
    let (kek_id, key_sealed) = match seal_key(&state.keks, &id, &key) {
        Ok(s) => s,
        Err(e) => return super::server_error(e),
    };
    let now = state.clock.now();
    let row = StreamRow {
        id: id.clone(),
        user_id: user.id.clone(),
        label: input.label,
        platform: input.platform,
        rtmp_url: input.rtmp_url,
        kek_id,
        key_sealed,
        enabled: input.enabled,
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = state.store.insert_stream(&row).await {
        return super::server_error(e);
    }
    let mut resp = json_ok(&stream_json(&row, Some(&key), false));
    resp.set_status(StatusCode::CREATED);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/streams/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

#[handler]
pub async fn replace(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Response {
    let (user, _) = match api_user(state, req, "streams:write").await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let body = match json_body(req, body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let input = match parse_input(&body, false) {
        Ok(i) => i,
        Err(why) => return invalid_request(&why),
    };
    let current = match state.store.stream_of(&user.id, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(e) => return super::server_error(e),
    };
    // Without a new key the current one stays; with one, it is sealed under the current KEK.
    let (kek_id, key_sealed, key) = match input.stream_key {
        Some(key) => match seal_key(&state.keks, &id, &key) {
            Ok((kek, sealed)) => (kek, sealed, Some(key)),
            Err(e) => return super::server_error(e),
        },
        None => {
            let key = opened(state, &current);
            (current.kek_id.clone(), current.key_sealed.clone(), key)
        }
    };
    let row = StreamRow {
        label: input.label,
        platform: input.platform,
        rtmp_url: input.rtmp_url,
        kek_id,
        key_sealed,
        enabled: input.enabled,
        updated_at: state.clock.now(),
        ..current
    };
    match state.store.update_stream(&row).await {
        Ok(true) => json_ok(&stream_json(&row, key.as_deref(), false)),
        Ok(false) => not_found(),
        Err(e) => super::server_error(e),
    }
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let (user, _) = match api_user(state, req, "streams:write").await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    match state.store.delete_stream(&user.id, &id).await {
        Ok(true) => no_content(),
        Ok(false) => not_found(),
        Err(e) => super::server_error(e),
    }
}

/// RFC 9470 §3: the sign-in behind the token is too old for this; sign in again.
fn step_up_needed() -> Response {
    let challenge = format!(
        "Bearer realm=\"latchkey\", error=\"insufficient_user_authentication\", \
         error_description=\"a more recent sign-in is required\", max_age=\"{REVEAL_MAX_AGE}\""
    );
    let mut resp = json_ok(&json!({
        "error": "insufficient_user_authentication",
        "error_description": "a more recent sign-in is required",
    }));
    resp.set_status(StatusCode::UNAUTHORIZED);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

async fn audit(state: &AppState, req: &Request, entry: AuditEntry<'_>) -> Result<(), Response> {
    let ip = client_ip(state, req);
    state
        .store
        .audit(&AuditEntry {
            ip: ip.as_deref(),
            ..entry
        })
        .await
        .map_err(super::server_error)
}

#[handler]
pub async fn reveal(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let (user, claims) = match api_user(state, req, "streams:reveal").await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let now = state.clock.now();
    let auth_time = claims.int("auth_time").unwrap_or(0);
    if now - auth_time > REVEAL_MAX_AGE {
        return step_up_needed();
    }
    let row = match state.store.stream_of(&user.id, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(e) => return super::server_error(e),
    };
    let Some(key) = opened(state, &row) else {
        return super::server_error("stream key does not open");
    };
    let actor = format!("user:{}", user.id);
    let act = claims.get("act").map(ToString::to_string);
    // Audited before the key leaves: no reveal goes unrecorded.
    if let Err(resp) = audit(
        state,
        req,
        AuditEntry {
            actor: &actor,
            action: "stream.reveal",
            owner_id: Some(&user.id),
            target: Some(&id),
            client_id: claims.str("client_id"),
            act: act.as_deref(),
            ip: None,
            now,
        },
    )
    .await
    {
        return resp;
    }
    tracing::info!(user = %user.id, stream = %id, "stream key revealed");
    json_ok(&stream_json(&row, Some(&key), true))
}

/// `GET /api/internal/users/{id}/streams`: a service's read of a user's streams, keys
/// included.
#[handler]
pub async fn internal_list(
    req: &Request,
    Path(user_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let client_id = match api_client(state, req, "streams:internal").await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (limit, after) = match page_params(req) {
        Ok(p) => p,
        Err(why) => return invalid_request(why),
    };
    let rows = match state
        .store
        .streams_of(&user_id, after.as_deref(), limit + 1)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return super::server_error(e),
    };
    let actor = format!("client:{client_id}");
    if let Err(resp) = audit(
        state,
        req,
        AuditEntry {
            actor: &actor,
            action: "streams.internal_read",
            owner_id: Some(&user_id),
            target: Some("all"),
            client_id: Some(&client_id),
            act: None,
            ip: None,
            now: state.clock.now(),
        },
    )
    .await
    {
        return resp;
    }
    tracing::info!(client = %client_id, user = %user_id, "streams read internally");
    page(
        rows,
        limit,
        |r| r.id.clone(),
        |r| stream_json(r, opened(state, r).as_deref(), true),
    )
}
