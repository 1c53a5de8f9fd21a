//! Dynamic client registration (RFC 7591) at `/register`, and the client configuration
//! endpoint (RFC 7592) at `/register/{client_id}`, guarded by the client's registration access
//! token. Registration needs an initial access token unless `registration.policy = "open"`.

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde_json::{Value, json};

use super::bearer::presented_token;
use super::client_auth::{count_gate_failure, gate_closed};
use super::respond::bearer_error;
use crate::config::RegistrationPolicy;
use crate::oauth::client::{AuthMethod, ClientMetadata, MetadataError};
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::registration::RegistrationRequest;
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

fn metadata_error(e: &MetadataError) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": e.code(), "error_description": e.description() }),
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    super::server_error(e)
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
pub async fn register(req: &Request, body: poem::Body, Data(state): Data<&AppState>) -> Response {
    let now = state.clock.now();
    match state.config.registration.policy {
        RegistrationPolicy::Closed => {
            return Response::builder().status(StatusCode::NOT_FOUND).finish();
        }
        // Anyone may register, but one address only so many clients an hour.
        RegistrationPolicy::Open => {
            use crate::signin::throttle::{self, OPEN_REGISTRATION_WINDOW, OPEN_REGISTRATIONS};
            let ip = super::browser::client_ip(state, req);
            let limit = (OPEN_REGISTRATIONS, OPEN_REGISTRATION_WINDOW);
            match throttle::quota(
                &state.store,
                &state.pepper,
                "register-ip",
                ip.as_deref(),
                limit,
                now,
            )
            .await
            {
                Ok(0) => {}
                Ok(wait) => {
                    return super::client_auth::too_many(
                        wait,
                        format!("too many clients registered from this address; retry in {wait} s"),
                    );
                }
                Err(e) => return internal(e),
            }
        }
        RegistrationPolicy::InitialAccessToken => {
            // Wrong initial access tokens count against the address, as failed client
            // authentication does at the token endpoint.
            if let Some(closed) = gate_closed(req, state).await {
                return closed;
            }
            let token = match presented_token(req, None) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return bearer_error(
                        &BearerError::new(B::InvalidToken, "an initial access token is required"),
                        None,
                    );
                }
                Err(e) => return bearer_error(&e, None),
            };
            let digests = state
                .pepper
                .lookup_digests(Purpose::InitialAccessToken, token.as_bytes());
            match state.store.use_initial_access_token(&digests, now).await {
                Ok(true) => {}
                Ok(false) => {
                    count_gate_failure(req, state).await;
                    return bearer_error(
                        &BearerError::new(
                            B::InvalidToken,
                            "the initial access token is invalid, expired or used up",
                        ),
                        None,
                    );
                }
                Err(e) => return internal(e),
            }
        }
    }
    if !is_json(req) {
        return metadata_error(&MetadataError::InvalidClientMetadata(
            "the body must be application/json".into(),
        ));
    }
    let Ok(bytes) = body.into_vec().await else {
        return metadata_error(&MetadataError::InvalidClientMetadata(
            "the body could not be read".into(),
        ));
    };
    let metadata =
        match RegistrationRequest::parse(&bytes).and_then(RegistrationRequest::into_metadata) {
            Ok(m) => m,
            Err(e) => return metadata_error(&e),
        };

    let (client_id, secret) = match state.clients().create(&metadata).await {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let registration_token = random_token(32);
    let rat_digest = state.pepper.digest(
        Purpose::RegistrationAccessToken,
        registration_token.as_bytes(),
    );
    if let Err(e) = state
        .store
        .set_registration_token(&client_id, &rat_digest)
        .await
    {
        return internal(e);
    }
    tracing::info!(client = %client_id, "client registered");
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
    json_response(StatusCode::CREATED, &out)
}

/// The one answer to a registration access token that does not open the client in the path.
fn not_this_client() -> Response {
    bearer_error(
        &BearerError::new(
            B::InvalidToken,
            "the registration access token is not valid for this client",
        ),
        None,
    )
}

/// The client named in the path, if the request carries its registration access token.
/// Every failure is the same 401, so the answer does not tell which clients exist.
async fn authorized(
    req: &Request,
    state: &AppState,
    client_id: &str,
) -> Result<crate::oauth::client::Client, Response> {
    let deny = not_this_client;
    if let Some(closed) = gate_closed(req, state).await {
        return Err(closed);
    }
    let token = match presented_token(req, None) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(super::respond::bearer_missing()),
        Err(e) => return Err(bearer_error(&e, None)),
    };
    let stored = match state.store.registration_token_digest(client_id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            count_gate_failure(req, state).await;
            return Err(deny());
        }
        Err(e) => return Err(internal(e)),
    };
    if !state
        .pepper
        .verify(Purpose::RegistrationAccessToken, token.as_bytes(), &stored)
    {
        count_gate_failure(req, state).await;
        return Err(deny());
    }
    match state.clients().find(client_id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(deny()),
        Err(e) => Err(internal(e)),
    }
}

#[handler]
pub async fn read(
    req: &Request,
    Path(client_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let client = match authorized(req, state, &client_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let created = state
        .store
        .client_by_id(&client_id)
        .await
        .ok()
        .flatten()
        .map_or(0, |c| c.created_at);
    json_response(
        StatusCode::OK,
        &described(state, &client_id, &client.metadata, created),
    )
}

#[handler]
pub async fn update(
    req: &Request,
    Path(client_id): Path<String>,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Response {
    let client = match authorized(req, state, &client_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !is_json(req) {
        return metadata_error(&MetadataError::InvalidClientMetadata(
            "the body must be application/json".into(),
        ));
    }
    let Ok(bytes) = body.into_vec().await else {
        return metadata_error(&MetadataError::InvalidClientMetadata(
            "the body could not be read".into(),
        ));
    };
    let request = match RegistrationRequest::parse(&bytes) {
        Ok(r) => r,
        Err(e) => return metadata_error(&e),
    };
    // RFC 7592 §2.2: the body names the client; a secret, if sent, must be the current one.
    if request.client_id.as_deref() != Some(client_id.as_str()) {
        return metadata_error(&MetadataError::InvalidClientMetadata(
            "client_id must be the client's own".into(),
        ));
    }
    if let Some(secret) = &request.client_secret {
        let ok = client.secret_digest.as_deref().is_some_and(|d| {
            state
                .pepper
                .verify(Purpose::ClientSecret, secret.as_bytes(), d)
        });
        if !ok {
            return metadata_error(&MetadataError::InvalidClientMetadata(
                "client_secret does not match".into(),
            ));
        }
    }
    let mut metadata = match request.into_metadata() {
        Ok(m) => m,
        Err(e) => return metadata_error(&e),
    };
    // What only an administrator sets stays as it is now: read from the database, not the
    // per-instance cache, so a change made a moment ago (`client set-resources`) is kept.
    let current: ClientMetadata = match state.store.client_by_id(&client_id).await {
        Ok(Some(row)) => match serde_json::from_str(&row.metadata) {
            Ok(m) => m,
            Err(e) => return internal(e),
        },
        Ok(None) => return not_this_client(),
        Err(e) => return internal(e),
    };
    metadata.first_party = current.first_party;
    metadata.token_exchange_impersonation = current.token_exchange_impersonation;
    metadata.resources = current.resources;
    metadata.serves = current.serves;
    let was_public = client.metadata.token_endpoint_auth_method == AuthMethod::None;
    let is_public = metadata.token_endpoint_auth_method == AuthMethod::None;
    if was_public != is_public {
        return metadata_error(&MetadataError::InvalidClientMetadata(
            "a client cannot change between public and confidential; register a new one".into(),
        ));
    }
    let now = state.clock.now();
    let stored = match serde_json::to_string(&metadata) {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    match state
        .store
        .update_client_metadata(&client_id, &stored, now)
        .await
    {
        Ok(true) => {}
        // Deleted meanwhile: the same 401 as for any client the token is not valid for.
        Ok(false) => return not_this_client(),
        Err(e) => return internal(e),
    }
    state.client_cache.forget(&client_id);
    let created = state
        .store
        .client_by_id(&client_id)
        .await
        .ok()
        .flatten()
        .map_or(0, |c| c.created_at);
    json_response(
        StatusCode::OK,
        &described(state, &client_id, &metadata, created),
    )
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(client_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    if let Err(r) = authorized(req, state, &client_id).await {
        return r;
    }
    state.client_cache.forget(&client_id);
    match state
        .store
        .delete_client(&client_id, state.clock.now())
        .await
    {
        Ok(()) => {
            tracing::info!(client = %client_id, "client deleted through RFC 7592");
            Response::builder().status(StatusCode::NO_CONTENT).finish()
        }
        Err(e) => internal(e),
    }
}
