//! `/token` (RFC 6749 §3.2): the address gate, client authentication, the DPoP proof if one
//! came (RFC 9449 §5), then the grant (`grants::redeem`). Responses carry `Cache-Control:
//! no-store` (and `DPoP-Nonce` when nonces are required); errors are RFC 6749 §5.2 JSON.

use poem::web::Data;
use poem::{IntoResponse, Request, Response, handler};

use super::browser::{client_ip, user_agent};
use super::client_auth::{authenticated_client, failed_request, gate_closed};
use super::dpop::{fapi2_proof_alg, token_endpoint_proof, with_nonce};
use super::error::ApiError;
use super::respond::json_ok;
use crate::grants::{self, TokenRequest, TokenResponse};
use crate::oauth::error::TokenError;
use crate::state::AppState;

#[handler]
pub async fn token_endpoint(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    gate_closed(req, state).await?;
    let resp = match handle(req, body, state).await {
        Ok(tokens) => json_ok(&tokens),
        Err(e) => failed_request(req, state, e).await.into_response(),
    };
    Ok(with_nonce(resp, state))
}

async fn handle(
    req: &Request,
    body: poem::Body,
    state: &AppState,
) -> Result<TokenResponse, TokenError> {
    let (client, params) = authenticated_client(req, body, state, true).await?;
    let proof = token_endpoint_proof(req, state).await?;
    fapi2_proof_alg(&client, proof.as_ref())?;
    let ctx = state.token_context();
    let peer = client_ip(state, req);
    let agent = user_agent(req);
    let request = TokenRequest::new(
        &ctx,
        &client,
        &params,
        peer.as_deref(),
        agent.as_deref(),
        proof.as_ref().map(|p| p.jkt.as_str()),
        state.clock.now(),
    )
    .await?;
    grants::redeem(&ctx, &request).await
}
