//! The streams API: a user's stream destinations (`streams:read` / `streams:write`), listings
//! with the key masked to its last four characters, a reveal of the key (`streams:reveal` and
//! a sign-in within the last 5 minutes, else the RFC 9470 step-up challenge), and an internal
//! read of a user's streams with their keys for a service (`streams:internal`, a
//! client_credentials token). Every reveal and internal read is written to the audit log.

use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::api::{api_client, api_user, json_body, no_content, page, page_params};
use super::error::ApiError;
use super::respond::json_ok;
use crate::audit::{Actor, Event, EventType};
use crate::secrets::random_token;
use crate::state::AppState;
use crate::store::StreamRow;
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
pub async fn list(req: &Request, Data(state): Data<&AppState>) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "streams:read").await?;
    let (limit, after) = page_params(req).map_err(ApiError::invalid)?;
    let rows = state
        .store
        .streams_of(&user.id, after.as_deref(), limit + 1)
        .await?;
    Ok(page(rows, limit, |r| r.id.clone(), |r| masked(state, r)))
}

#[handler]
pub async fn get_one(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "streams:read").await?;
    let row = state
        .store
        .stream_of(&user.id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_ok(&masked(state, &row)))
}

#[handler]
pub async fn create(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "streams:write").await?;
    let body = json_body(req, body).await?;
    let input = parse_input(&body, true).map_err(ApiError::invalid)?;
    let id = random_token(16);
    let key = input.stream_key.unwrap_or_default();
    let (kek_id, key_sealed) = seal_key(&state.keks, &id, &key).map_err(ApiError::server)?;
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
    state.store.insert_stream(&row).await?;
    let mut resp = json_ok(&stream_json(&row, Some(&key), false));
    resp.set_status(StatusCode::CREATED);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/streams/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

#[handler]
pub async fn replace(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "streams:write").await?;
    let body = json_body(req, body).await?;
    let input = parse_input(&body, false).map_err(ApiError::invalid)?;
    let current = state
        .store
        .stream_of(&user.id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Without a new key the current one stays; with one, it is sealed under the current KEK.
    let (kek_id, key_sealed, key) = match input.stream_key {
        Some(key) => {
            let (kek, sealed) = seal_key(&state.keks, &id, &key).map_err(ApiError::server)?;
            (kek, sealed, Some(key))
        }
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
    if !state.store.update_stream(&row).await? {
        return Err(ApiError::NotFound);
    }
    Ok(json_ok(&stream_json(&row, key.as_deref(), false)))
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "streams:write").await?;
    if !state.store.delete_stream(&user.id, &id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(no_content())
}

/// Records `e` before the caller goes on: a read of secrets that cannot be recorded fails.
async fn audit(state: &AppState, req: &Request, e: Event<'_>) -> Result<(), ApiError> {
    let seen = super::browser::Seen::of(state, req);
    state
        .audit
        .record(state.clock.now(), e.from(seen.origin()))
        .await?;
    Ok(())
}

#[handler]
pub async fn reveal(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, claims) = api_user(state, req, "streams:reveal").await?;
    let now = state.clock.now();
    let auth_time = claims.auth_time().unwrap_or(0);
    if now - auth_time > REVEAL_MAX_AGE {
        return Err(ApiError::StepUp {
            max_age: REVEAL_MAX_AGE,
        });
    }
    let row = state
        .store
        .stream_of(&user.id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let key = opened(state, &row).ok_or_else(|| ApiError::server("stream key does not open"))?;
    // Audited before the key leaves: no reveal goes unrecorded.
    let mut e = Event::by_user(EventType::StreamKeyRevealed, &user.id)
        .details(json!({"target": id, "act": claims.act(), "api_key": claims.key_id()}));
    if let Some(c) = claims.client_id() {
        e = e.client(c);
    }
    audit(state, req, e).await?;
    tracing::info!(user = %user.id, stream = %id, "stream key revealed");
    Ok(json_ok(&stream_json(&row, Some(&key), true)))
}

/// `GET /api/internal/users/{id}/streams`: a service's read of a user's streams, keys
/// included.
#[handler]
pub async fn internal_list(
    req: &Request,
    Path(user_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let client_id = api_client(state, req, "streams:internal").await?;
    let (limit, after) = page_params(req).map_err(ApiError::invalid)?;
    let rows = state
        .store
        .streams_of(&user_id, after.as_deref(), limit + 1)
        .await?;
    audit(
        state,
        req,
        Event::new(EventType::StreamsReadInternal, Actor::Client(&client_id))
            .subject(&user_id)
            .client(&client_id)
            .details(json!({"target": "all"})),
    )
    .await?;
    tracing::info!(client = %client_id, user = %user_id, "streams read internally");
    Ok(page(
        rows,
        limit,
        |r| r.id.clone(),
        |r| stream_json(r, opened(state, r).as_deref(), true),
    ))
}
