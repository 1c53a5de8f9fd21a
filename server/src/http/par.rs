//! `/par` (RFC 9126): a client pushes its authorization request, authenticated as at `/token`;
//! the request is validated at once by the same pipeline as `/authorize` (errors as JSON here,
//! never redirects) and stored by the digest of a one-time `request_uri` that lives 60 s.
//! `/authorize` takes it with `client_id` and `request_uri` (see `authorize`).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Request, Response, handler};
use serde_json::json;

use super::client_auth::{authenticated_client, failed_request, gate_closed};
use super::dpop::{fapi2_proof_alg, token_endpoint_proof, with_nonce};
use super::error::ApiError;
use super::respond::json_ok;
use crate::oauth::authorize::{PageReason, Rejection, validate};
use crate::oauth::client::Client;
use crate::oauth::error::{
    AuthorizeError, AuthorizeErrorCode as E, TokenError, TokenErrorCode as T,
};
use crate::oauth::par;
use crate::oauth::params::Params;
use crate::oauth::request_object;
use crate::secrets::{Purpose, random_token};
use crate::state::AppState;

#[handler]
pub async fn push(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    gate_closed(req, state).await?;
    let resp = match accept(req, body, state).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    Ok(with_nonce(resp, state))
}

async fn accept(req: &Request, body: poem::Body, state: &AppState) -> Result<Response, ApiError> {
    let (client, mut params, proof) = match authenticated(req, body, state).await {
        Ok(found) => found,
        Err(e) => return Err(failed_request(req, state, e).await),
    };
    // RFC 9126 §3, RFC 9101: a request object pushed by value stands for the request.
    if let Some(object) = params.remove("request") {
        let claims = state
            .clients()
            .verify_request_object(&client, &object)
            .await
            .and_then(|claims| request_object::parameters(&client.client_id, claims));
        params = claims
            .map_err(|why| ApiError::Pushed(AuthorizeError::new(E::InvalidRequestObject, why)))?;
    } else if client.metadata.require_signed_request_object {
        return Err(ApiError::Pushed(AuthorizeError::new(
            E::InvalidRequest,
            "this client's authorization requests must be signed request objects (RFC 9101)",
        )));
    }
    // RFC 9449 §10.1: a proof at /par binds the code to its key, as dpop_jkt would; both
    // must name the same key.
    if let Some(proof) = proof {
        match params.get("dpop_jkt") {
            Some(jkt) if jkt != proof.jkt => {
                return Err(failed_request(
                    req,
                    state,
                    TokenError::new(
                        T::InvalidDpopProof,
                        "dpop_jkt is not the thumbprint of the proof's key",
                    ),
                )
                .await);
            }
            Some(_) => {}
            None => params.insert("dpop_jkt", proof.jkt),
        }
    }
    let pushed = pushable(&client, params)?;
    // RFC 8707 §2: a resource this client may have tokens for, refused here as JSON.
    if let Some(r) = pushed.get("resource")
        && !state.audiences().may_have(&client, r).await?
    {
        return Err(ApiError::Pushed(AuthorizeError::new(
            E::InvalidTarget,
            "the requested resource is not one this client may have tokens for",
        )));
    }
    let now = state.clock.now();
    let random = random_token(32);
    let digest = state
        .pepper
        .digest(Purpose::PushedRequest, random.as_bytes());
    state
        .store
        .insert_pushed_request(
            &digest,
            &client.client_id,
            &pushed.encode(),
            now,
            now + par::LIFETIME,
        )
        .await?;
    let mut resp = json_ok(&json!({
        "request_uri": format!("{}{random}", par::REQUEST_URI_PREFIX),
        "expires_in": par::LIFETIME,
    }));
    resp.set_status(StatusCode::CREATED);
    Ok(resp)
}

/// The client, its form, and the DPoP proof it sent, if any.
async fn authenticated(
    req: &Request,
    body: poem::Body,
    state: &AppState,
) -> Result<(Client, Params, Option<crate::oauth::dpop::Proof>), TokenError> {
    let (client, params) = authenticated_client(req, body, state, false).await?;
    let proof = token_endpoint_proof(req, state).await?;
    fapi2_proof_alg(&client, proof.as_ref())?;
    Ok((client, params, proof))
}

/// The parameters to store: the authenticated client's own request, checked as `/authorize`
/// checks it, without the credentials it authenticated with.
fn pushable(client: &Client, mut params: Params) -> Result<Params, ApiError> {
    let bad = |why: &'static str| ApiError::Pushed(AuthorizeError::new(E::InvalidRequest, why));
    if params.contains("request_uri") {
        return Err(bad("request_uri cannot be pushed (RFC 9126 §2.1)"));
    }
    match params.get("client_id") {
        Some(id) if id != client.client_id => {
            return Err(bad("client_id is not the client that authenticated"));
        }
        Some(_) => {}
        None => params.insert("client_id", client.client_id.clone()),
    }
    for credential in par::CREDENTIALS {
        params.remove(credential);
    }
    match validate(&params, Some(client)) {
        Ok(_) => Ok(params),
        Err(Rejection::Page(reason)) => Err(bad(match reason {
            PageReason::NoClientId | PageReason::UnknownClient => "client_id is not known",
            PageReason::NoRedirectUri => "redirect_uri is required",
            PageReason::UnregisteredRedirectUri => "redirect_uri is not registered for this client",
        })),
        Err(Rejection::Redirect(_, e)) => Err(ApiError::Pushed(e)),
    }
}
