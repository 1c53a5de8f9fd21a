//! Loading registered clients and authenticating them.

use crate::oauth::client::{AuthMethod, Client, ClientMetadata};
use crate::oauth::client_auth::Presented;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::secrets::Purpose;
use crate::state::AppState;
use crate::store::StoreError;

pub async fn find(state: &AppState, client_id: &str) -> Result<Option<Client>, StoreError> {
    if client_id.len() > 256 {
        return Ok(None);
    }
    let Some(row) = state.store.client_by_id(client_id).await? else {
        return Ok(None);
    };
    let metadata: ClientMetadata = serde_json::from_str(&row.metadata)
        .map_err(|e| StoreError::Corrupt(format!("client {client_id} metadata: {e}")))?;
    Ok(Some(Client {
        client_id: row.client_id,
        secret_digest: row.secret_digest,
        metadata,
    }))
}

/// Authenticates the presented credentials against the registered client: the method must be
/// the registered one and the secret must match its digest. One error for every failure, so
/// the answer does not tell which client ids exist.
pub async fn authenticate(state: &AppState, presented: &Presented) -> Result<Client, TokenError> {
    let fail = || TokenError::new(T::InvalidClient, "client authentication failed");
    let client = match find(state, presented.client_id()).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(fail()),
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            return Err(TokenError::new(T::ServerError, "server error"));
        }
    };
    let method = client.metadata.token_endpoint_auth_method;
    let ok = match (presented, method) {
        (Presented::Basic { secret, .. }, AuthMethod::ClientSecretBasic)
        | (Presented::Post { secret, .. }, AuthMethod::ClientSecretPost) => {
            client.secret_digest.as_deref().is_some_and(|d| {
                state
                    .pepper
                    .verify(Purpose::ClientSecret, secret.as_bytes(), d)
            })
        }
        (Presented::None { .. }, AuthMethod::None) => true,
        _ => false,
    };
    if ok { Ok(client) } else { Err(fail()) }
}
