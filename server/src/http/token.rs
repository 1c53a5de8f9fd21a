//! `/token` (RFC 6749 §3.2): the address gate, client authentication, then the grant
//! (`grants::redeem`). Responses carry `Cache-Control: no-store`; errors are RFC 6749 §5.2
//! JSON.

use poem::web::Data;
use poem::{Request, Response, handler};

use super::browser::{client_ip, user_agent};
use super::client_auth::{authenticated_client, failed_request, gate_closed};
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
    match handle(req, body, state).await {
        Ok(tokens) => Ok(json_ok(&tokens)),
        Err(e) => Err(failed_request(req, state, e).await),
    }
}

async fn handle(
    req: &Request,
    body: poem::Body,
    state: &AppState,
) -> Result<TokenResponse, TokenError> {
    let (client, params) = authenticated_client(req, body, state, true).await?;
    let ctx = state.token_context();
    let peer = client_ip(state, req);
    let agent = user_agent(req);
    let request = TokenRequest::new(
        &ctx,
        &client,
        &params,
        peer.as_deref(),
        agent.as_deref(),
        state.clock.now(),
    )?;
    grants::redeem(&ctx, &request).await
}
