//! Resource APIs under `/api`: bearer access tokens verified locally (signature, audience,
//! expiry, revocation) or personal API keys (`lk_...`), a scope per operation, RFC 6750 errors (`invalid_token`;
//! `insufficient_scope` naming the scope needed), a user's own rows only (another user's id
//! answers 404), JSON bodies validated with clear errors, lists paginated.
//!
//! - `GET /api/devices` (`devices:read`): the user's devices, `?limit=` (1–100, default 50)
//!   and `?after=<id>` from the previous page's `next`.
//! - `PATCH /api/devices/{id}` (`devices:write`): `{"name": "..."}`.
//! - `DELETE /api/devices/{id}` (`devices:write`): the device goes, its refresh tokens stop
//!   working and its access tokens turn inactive at once.
//! - `GET /api/openapi.json`: the OpenAPI 3.1 description of these APIs and the streams API.

use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::bearer::{Access, access, refuse};
use super::error::ApiError;
use super::respond::json_ok;
use crate::access::Audience;
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::store::{Device, User};

/// Largest page of a list.
const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 50;
/// Longest device name, in characters.
const MAX_NAME_CHARS: usize = 64;

/// The user a request acts for: a valid access token of ours, carrying `scope`, issued for
/// a user (not a client by itself) who is still enabled.
pub(super) async fn api_user(
    state: &AppState,
    req: &Request,
    scope: &'static str,
) -> Result<(User, Access), ApiError> {
    let claims = scoped_token(state, req, scope).await?;
    let invalid = || {
        refuse(
            state,
            &claims,
            BearerError::new(B::InvalidToken, "the access token is not a user's"),
        )
    };
    // Client-credentials tokens have no grant: they act for no user.
    if !claims.is_users() {
        return Err(invalid());
    }
    let user = state
        .store
        .active_user(claims.sub())
        .await?
        .ok_or_else(invalid)?;
    Ok((user, claims))
}

/// A verified access token of ours, or a live API key, carrying `scope`.
async fn scoped_token(
    state: &AppState,
    req: &Request,
    scope: &'static str,
) -> Result<Access, ApiError> {
    // RFC 9728 §5.1: a refusal names the API's metadata, so a client can find out where to
    // get a token for it.
    match crate::oauth::resource::by_scope(scope) {
        Some(api) => access(state, req, Audience::Api(api), scope)
            .await
            .map_err(|e| e.for_resource(api.metadata_url(&state.config.issuer))),
        None => access(state, req, Audience::Issuer, scope).await,
    }
}

/// The client a request acts for by itself (a client_credentials token, no user) carrying
/// `scope`; its client_id.
pub(super) async fn api_client(
    state: &AppState,
    req: &Request,
    scope: &'static str,
) -> Result<String, ApiError> {
    let claims = scoped_token(state, req, scope).await?;
    if claims.is_users() {
        return Err(refuse(
            state,
            &claims,
            BearerError::new(B::InvalidToken, "this API takes a client's own token"),
        ));
    }
    Ok(claims.client_id().unwrap_or_default().to_owned())
}

/// `?limit=` (1-100, default 50) and `?after=` of a list request; Err with what is wrong.
pub(super) fn page_params(req: &Request) -> Result<(i64, Option<String>), &'static str> {
    let Ok(query) = Params::parse(req.uri().query().unwrap_or_default().as_bytes()) else {
        return Err("the query could not be read");
    };
    let limit = match query.get("limit").map(str::parse::<i64>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err("limit must be a number from 1 to 100"),
    };
    let after = query.get("after");
    if after.is_some_and(|a| a.len() > 64) {
        return Err("after is not an id from a previous page");
    }
    Ok((limit, after.map(str::to_owned)))
}

/// A page of a list fetched with `limit + 1` rows: the first `limit`, and `next` when more
/// follow.
pub(super) fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> String,
    json: impl Fn(&T) -> Value,
) -> Response {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| rows.last().map(&id)).flatten();
    json_ok(&json!({ "items": rows.iter().map(json).collect::<Vec<_>>(), "next": next }))
}

/// A JSON request body, or the 400 saying why not.
pub(super) async fn json_body(req: &Request, body: poem::Body) -> Result<Value, ApiError> {
    if !req
        .content_type()
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(ApiError::invalid("the body must be application/json"));
    }
    let Ok(bytes) = body.into_vec().await else {
        return Err(ApiError::invalid("the body could not be read"));
    };
    let value = serde_json::from_slice::<Value>(&bytes)
        .map_err(|_| ApiError::invalid("the body is not JSON"))?;
    if crate::input::json_has_nul(&value) {
        return Err(ApiError::invalid("the body holds a NUL character"));
    }
    Ok(value)
}

/// 204 for a resource that is gone.
pub(super) fn no_content() -> Response {
    Response::builder()
        .status(poem::http::StatusCode::NO_CONTENT)
        .header(poem::http::header::CACHE_CONTROL, "no-store")
        .finish()
}

fn device_json(d: &Device) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "client_id": d.client_id,
        "created_at": d.created_at,
        "last_used_at": d.last_used_at,
        "ip": d.ip,
        "user_agent": d.user_agent,
    })
}

#[handler]
pub async fn list_devices(
    req: &Request,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "devices:read").await?;
    let (limit, after) = page_params(req).map_err(ApiError::invalid)?;
    let devices = state
        .store
        .devices_of(&user.id, after.as_deref(), limit + 1)
        .await?;
    Ok(page(devices, limit, |d| d.id.clone(), device_json))
}

#[handler]
pub async fn rename_device(
    req: &Request,
    Path(id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "devices:write").await?;
    let patch = json_body(req, body).await?;
    let fields = patch
        .as_object()
        .ok_or(ApiError::invalid("the body must be a JSON object"))?;
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "name") {
        return Err(ApiError::invalid(format!(
            "{unknown} cannot be changed; only name can"
        )));
    }
    let raw = fields
        .get("name")
        .and_then(Value::as_str)
        .ok_or(ApiError::invalid("name must be a string"))?;
    let name = crate::input::clean_label(raw, MAX_NAME_CHARS)
        .ok_or(ApiError::invalid("name must not be empty"))?;
    if raw.trim().chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid("name must be at most 64 characters"));
    }
    if !state.store.rename_device(&user.id, &id, &name).await? {
        return Err(ApiError::NotFound);
    }
    let device = state
        .store
        .device_of(&user.id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_ok(&device_json(&device)))
}

#[handler]
pub async fn delete_device(
    req: &Request,
    Path(id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (user, _) = api_user(state, req, "devices:write").await?;
    if !state
        .store
        .delete_device(&user.id, &id, state.clock.now())
        .await?
    {
        return Err(ApiError::NotFound);
    }
    tracing::info!(user = %user.id, device = %id, "device removed");
    super::browser::audit(
        state,
        req,
        crate::audit::Event::by_user(crate::audit::EventType::DeviceRemoved, &user.id)
            .details(serde_json::json!({"device": id, "through": "api"})),
    )
    .await;
    Ok(no_content())
}

/// The OpenAPI document, with this server's issuer as its server.
#[handler]
pub async fn openapi(Data(state): Data<&AppState>) -> Response {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::from_str(include_str!("../../data/openapi.json")).unwrap_or(Value::Null)
    });
    let mut doc = DOC.clone();
    doc["servers"] = json!([{ "url": state.config.issuer }]);
    json_ok(&doc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_parses_and_names_every_api_path() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../data/openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let routes = include_str!("mod.rs");
        let paths = doc["paths"].as_object().unwrap();
        for path in paths.keys() {
            let route = path
                .replace("{id}", ":id")
                .replace("{sid}", ":sid")
                .replace("{key}", ":key");
            assert!(
                routes.contains(&format!("\"{route}\"")),
                "{path} is not routed"
            );
        }
        for line in routes
            .lines()
            .filter(|l| l.contains("\"/api/") || l.contains("\"/admin/api/"))
        {
            let route = line.split('"').nth(1).unwrap();
            if route == "/api/openapi.json" {
                continue;
            }
            assert!(
                paths.contains_key(
                    &route
                        .replace(":id", "{id}")
                        .replace(":sid", "{sid}")
                        .replace(":key", "{key}")
                ),
                "{route} is not described"
            );
        }
    }
}
