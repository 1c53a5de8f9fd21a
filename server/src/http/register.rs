//! Dynamic client registration (RFC 7591) at `/register`, and the client configuration
//! endpoint (RFC 7592) at `/register/{client_id}`, guarded by the client's registration access
//! token. Registration needs an initial access token unless `registration.policy = "open"`.
//! Every read and update answers a new registration access token (RFC 7592 §3): only its
//! digest is stored, so the token in use cannot be answered again.

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::bearer::presented_token;
use super::client_auth::{count_gate_failure, gate_closed};
use super::error::ApiError;
use crate::config::RegistrationPolicy;
use crate::oauth::client::{AuthMethod, ClientMetadata, ClientOrigin, MetadataError};
use crate::oauth::error::BearerErrorCode as B;
use crate::oauth::registration::{RegistrationRequest, open_public};
use crate::secrets::{Purpose, random_token};
use crate::state::AppState;

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
        .body(body.to_string())
}

fn bad_metadata(why: &str) -> ApiError {
    ApiError::Registration(MetadataError::InvalidClientMetadata(why.into()))
}

fn is_json(req: &Request) -> bool {
    req.content_type()
        .is_some_and(|c| c.starts_with("application/json"))
}

fn client_uri(state: &AppState, client_id: &str) -> String {
    format!("{}/register/{client_id}", state.config.issuer)
}

fn described(
    state: &AppState,
    client_id: &str,
    metadata: &ClientMetadata,
    created_at: i64,
) -> Value {
    let mut out = serde_json::to_value(metadata).unwrap_or_else(|_| json!({}));
    if let Some(o) = out.as_object_mut() {
        o.insert("client_id".into(), json!(client_id));
        o.insert("client_id_issued_at".into(), json!(created_at));
        o.insert(
            "registration_client_uri".into(),
            json!(client_uri(state, client_id)),
        );
    }
    out
}

#[handler]
pub async fn register(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    // With an initial access token, the token is checked first (a wrong one counts against
    // the address, as failed client authentication does at the token endpoint) but spent only
    // by a registration that is made: a malformed request costs a `--max-uses 1` token nothing.
    let initial_token = match state.config.registration.policy {
        RegistrationPolicy::Closed => {
            return Ok(Response::builder().status(StatusCode::NOT_FOUND).finish());
        }
        // Anyone may register, but one address only so many clients an hour.
        RegistrationPolicy::Open | RegistrationPolicy::OpenPublic => {
            use crate::signin::throttle::{self, OPEN_REGISTRATION_WINDOW, OPEN_REGISTRATIONS};
            let ip = super::browser::client_ip(state, req);
            let limit = (OPEN_REGISTRATIONS, OPEN_REGISTRATION_WINDOW);
            let wait = throttle::quota(
                &state.store,
                &state.pepper,
                "register-ip",
                ip.as_deref(),
                limit,
                now,
            )
            .await?;
            if wait > 0 {
                return Err(ApiError::TooMany {
                    wait,
                    why: format!(
                        "too many clients registered from this address; retry in {wait} s"
                    ),
                });
            }
            None
        }
        RegistrationPolicy::InitialAccessToken => {
            gate_closed(req, state).await?;
            let token = presented_token(req, None)?.ok_or(ApiError::bearer(
                B::InvalidToken,
                "an initial access token is required",
            ))?;
            let digests = state
                .pepper
                .lookup_digests(Purpose::InitialAccessToken, token.as_bytes());
            if !state
                .store
                .initial_access_token_usable(&digests, now)
                .await?
            {
                count_gate_failure(req, state).await;
                return Err(spent_or_invalid());
            }
            Some(digests)
        }
    };
    if !is_json(req) {
        return Err(bad_metadata("the body must be application/json"));
    }
    let bytes = body
        .into_vec()
        .await
        .map_err(|_| bad_metadata("the body could not be read"))?;
    let metadata = RegistrationRequest::parse(&bytes)
        .and_then(RegistrationRequest::into_metadata)
        .map_err(ApiError::Registration)?;
    let policy = state.config.registration.policy;
    if policy == RegistrationPolicy::OpenPublic {
        open_public(&metadata).map_err(ApiError::Registration)?;
    }
    // Spent now, atomically: of two registrations racing for its last use, one gets it.
    let used_token = initial_token.is_some();
    if let Some(digests) = initial_token
        && !state.store.use_initial_access_token(&digests, now).await?
    {
        return Err(spent_or_invalid());
    }

    // Nobody vouches for a client anyone could register: the consent page says so, and
    // housekeeping removes it when it goes unused (`registration.unused_expiry`).
    let origin = match policy {
        RegistrationPolicy::Open => ClientOrigin::Anonymous,
        RegistrationPolicy::OpenPublic => ClientOrigin::OpenPublic,
        _ => ClientOrigin::Registered,
    };
    let (client_id, secret) = state.clients().create(&metadata, origin).await?;
    let registration_token = random_token(32);
    let rat_digest = state.pepper.digest(
        Purpose::RegistrationAccessToken,
        registration_token.as_bytes(),
    );
    state
        .store
        .set_registration_token(&client_id, &rat_digest)
        .await?;
    tracing::info!(client = %client_id, "client registered");
    let actor = crate::audit::Actor::Client(&client_id);
    if used_token {
        super::browser::audit(
            state,
            req,
            crate::audit::Event::new(crate::audit::EventType::RegistrationTokenUsed, actor)
                .client(&client_id),
        )
        .await;
    }
    super::browser::audit(
        state,
        req,
        crate::audit::Event::new(crate::audit::EventType::ClientCreated, actor)
            .client(&client_id)
            .details(json!({
                "client_name": metadata.client_name,
                "registration": format!("{policy:?}"),
            })),
    )
    .await;
    let mut out = described(state, &client_id, &metadata, now);
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "registration_access_token".into(),
            json!(registration_token),
        );
        if let Some(secret) = &secret {
            o.insert("client_secret".into(), json!(secret.expose()));
            o.insert("client_secret_expires_at".into(), json!(0));
        }
    }
    Ok(json_response(StatusCode::CREATED, &out))
}

fn spent_or_invalid() -> ApiError {
    ApiError::bearer(
        B::InvalidToken,
        "the initial access token is invalid, expired or used up",
    )
}

/// The one answer to a registration access token that does not open the client in the path.
fn not_this_client() -> ApiError {
    ApiError::bearer(
        B::InvalidToken,
        "the registration access token is not valid for this client",
    )
}

/// The client named in the path and the stored digest of its registration access token, if
/// the request carries that token. Every failure is the same 401, so the answer does not tell
/// which clients exist.
async fn authorized(
    req: &Request,
    state: &AppState,
    client_id: &str,
) -> Result<(crate::oauth::client::Client, String), ApiError> {
    gate_closed(req, state).await?;
    let token = presented_token(req, None)?.ok_or(ApiError::NoToken)?;
    let Some(stored) = state.store.registration_token_digest(client_id).await? else {
        count_gate_failure(req, state).await;
        return Err(not_this_client());
    };
    if !state
        .pepper
        .verify(Purpose::RegistrationAccessToken, token.as_bytes(), &stored)
    {
        count_gate_failure(req, state).await;
        return Err(not_this_client());
    }
    let client = state
        .clients()
        .find(client_id)
        .await?
        .ok_or_else(not_this_client)?;
    Ok((client, stored))
}

/// The client configuration response (RFC 7592 §3), with a new registration access token:
/// only a digest of the token is stored, so the one in use cannot be answered again. The
/// token is replaced, and `metadata` (for an update) saved, in one statement; the old token
/// stops working at once.
async fn configuration_response(
    state: &AppState,
    client_id: &str,
    old_digest: &str,
    metadata: &ClientMetadata,
    stored_metadata: Option<&str>,
    created_at: i64,
) -> Result<Response, ApiError> {
    let token = random_token(32);
    let digest = state
        .pepper
        .digest(Purpose::RegistrationAccessToken, token.as_bytes());
    let now = state.clock.now();
    if !state
        .store
        .rotate_registration_token(client_id, old_digest, &digest, stored_metadata, now)
        .await?
    {
        return Err(not_this_client());
    }
    let mut out = described(state, client_id, metadata, created_at);
    if let Some(o) = out.as_object_mut() {
        o.insert("registration_access_token".into(), json!(token));
    }
    Ok(json_response(StatusCode::OK, &out))
}

#[handler]
pub async fn read(
    req: &Request,
    Path(client_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (client, digest) = authorized(req, state, &client_id).await?;
    let created = state
        .store
        .client_by_id(&client_id)
        .await?
        .map_or(0, |c| c.created_at);
    configuration_response(state, &client_id, &digest, &client.metadata, None, created).await
}

#[handler]
pub async fn update(
    req: &Request,
    Path(client_id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let (client, digest) = authorized(req, state, &client_id).await?;
    if !is_json(req) {
        return Err(bad_metadata("the body must be application/json"));
    }
    let bytes = body
        .into_vec()
        .await
        .map_err(|_| bad_metadata("the body could not be read"))?;
    let request = RegistrationRequest::parse(&bytes).map_err(ApiError::Registration)?;
    // RFC 7592 §2.2: the body names the client; a secret, if sent, must be the current one.
    if request.client_id.as_deref() != Some(client_id.as_str()) {
        return Err(bad_metadata("client_id must be the client's own"));
    }
    if let Some(secret) = &request.client_secret {
        let ok = client.secret_digest.as_deref().is_some_and(|d| {
            state
                .pepper
                .verify(Purpose::ClientSecret, secret.as_bytes(), d)
        });
        if !ok {
            return Err(bad_metadata("client_secret does not match"));
        }
    }
    let mut metadata = request.into_metadata().map_err(ApiError::Registration)?;
    // What only an administrator sets stays as it is now: read from the database, not the
    // per-instance cache, so a change made a moment ago (`client set-resources`) is kept.
    let row = state
        .store
        .client_by_id(&client_id)
        .await?
        .ok_or_else(not_this_client)?;
    let current: ClientMetadata = serde_json::from_str(&row.metadata).map_err(ApiError::server)?;
    // A security profile, once set, stays (RFC 7592 replaces the metadata as a whole; a
    // client that leaves `profile` out must not slip out of FAPI 2.0).
    if current.profile.is_some() && metadata.profile != current.profile {
        return Err(bad_metadata(
            "a client's profile cannot be removed or changed",
        ));
    }
    metadata.first_party = current.first_party;
    metadata.token_exchange_impersonation = current.token_exchange_impersonation;
    metadata.resources = current.resources;
    metadata.serves = current.serves;
    // A client anyone registered under open_public stays within it, whatever the policy
    // is now.
    if client.origin == ClientOrigin::OpenPublic {
        open_public(&metadata).map_err(ApiError::Registration)?;
    }
    let was_public = client.metadata.token_endpoint_auth_method == AuthMethod::None;
    let is_public = metadata.token_endpoint_auth_method == AuthMethod::None;
    if was_public != is_public {
        return Err(bad_metadata(
            "a client cannot change between public and confidential; register a new one",
        ));
    }
    let stored = serde_json::to_string(&metadata).map_err(ApiError::server)?;
    // Deleted or rotated meanwhile: the same 401 as for any client the token is not valid for.
    let resp = configuration_response(
        state,
        &client_id,
        &digest,
        &metadata,
        Some(&stored),
        row.created_at,
    )
    .await;
    state.client_cache.forget(&client_id);
    if resp.is_ok() {
        super::browser::audit(
            state,
            req,
            crate::audit::Event::new(
                crate::audit::EventType::ClientUpdated,
                crate::audit::Actor::Client(&client_id),
            )
            .client(&client_id)
            .details(json!({"through": "rfc7592"})),
        )
        .await;
    }
    resp
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(client_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    authorized(req, state, &client_id).await?;
    state.client_cache.forget(&client_id);
    state
        .store
        .delete_client(&client_id, state.clock.now())
        .await?;
    tracing::info!(client = %client_id, "client deleted through RFC 7592");
    super::browser::audit(
        state,
        req,
        crate::audit::Event::new(
            crate::audit::EventType::ClientDeleted,
            crate::audit::Actor::Client(&client_id),
        )
        .client(&client_id)
        .details(json!({"through": "rfc7592"})),
    )
    .await;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}
