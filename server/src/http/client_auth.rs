//! Client authentication and the address gate shared by the endpoints where clients
//! authenticate: `/token`, `/revoke`, `/introspect`, `/device_authorization` and `/register`
//! (RFC 6749 §2.3, §5.2; RFC 7523 §2.2). Reading the credentials is `oauth::client_auth`'s,
//! checking them against the registered client is `clients`'; this file is the HTTP around
//! them: the form body, the `Authorization` header, 429s and 401 challenges.

use poem::Request;
use poem::http::header;

use super::authorize::is_form;
use super::browser::client_ip;
use super::error::ApiError;
use crate::oauth::client::Client;
use crate::oauth::client_auth::presented;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::params::{Params, ParamsError};
use crate::state::AppState;

fn err(code: T, why: &'static str) -> TokenError {
    TokenError::new(code, why)
}

/// For an address the gate holds back: 429 with `Retry-After`, before anything is checked.
pub(super) async fn gate_closed(req: &Request, state: &AppState) -> Result<(), ApiError> {
    let wait = state
        .token_gate
        .wait(
            &state.store,
            &state.pepper,
            client_ip(state, req).as_deref(),
            state.clock.now(),
        )
        .await;
    match wait {
        Ok(0) => Ok(()),
        Ok(wait) => Err(ApiError::TooMany {
            wait,
            why: format!("too many failed requests from this address; retry in {wait} s"),
        }),
        Err(e) => {
            tracing::error!(error = %e, "token endpoint throttle check failed");
            Ok(())
        }
    }
}

/// Counts a failed authentication (a client's, or a registration bearer token's) against the
/// request's address at the address gate.
pub(super) async fn count_gate_failure(req: &Request, state: &AppState) {
    if let Err(err) = state
        .token_gate
        .failed(
            &state.store,
            &state.pepper,
            client_ip(state, req).as_deref(),
            state.clock.now(),
        )
        .await
    {
        tracing::error!(error = %err, "counting a failed authentication failed");
    }
}

/// The error to answer, after counting a failed client authentication against the address.
/// Errors after the client authenticated (a bad code, say) do not count: a stranger can make
/// a real client redeem garbage, and must not get it gated that way.
pub(super) async fn failed_request(req: &Request, state: &AppState, error: TokenError) -> ApiError {
    if error.code == T::InvalidClient {
        count_gate_failure(req, state).await;
    }
    ApiError::Token {
        error,
        basic: basic_used(req),
    }
}

/// Whether the request authenticated with `Authorization: Basic` (RFC 6749 §5.2: then a failed
/// client authentication answers with a Basic challenge).
pub(super) fn basic_used(req: &Request) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")))
}

/// The form body of a request to the token, revocation, introspection or device
/// authorization endpoint, and the client it authenticates as. `at_token_endpoint`: a repeated
/// `resource` or `audience` is `invalid_target` there (RFC 8707, RFC 8693), and an
/// `invalid_request` like any repeated parameter elsewhere.
pub(super) async fn authenticated_client(
    req: &Request,
    body: poem::Body,
    state: &AppState,
    at_token_endpoint: bool,
) -> Result<(Client, Params), TokenError> {
    if !is_form(req) {
        return Err(err(
            T::InvalidRequest,
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = body
        .into_vec()
        .await
        .map_err(|_| err(T::InvalidRequest, "the body could not be read"))?;
    let params = Params::parse(&bytes).map_err(|e| match e {
        // RFC 8707 §2 and RFC 8693 §2.1 allow several targets; a token here has one
        // audience, and for a server unable to serve them all, RFC 8693 §2.2.2 says
        // invalid_target.
        ParamsError::Repeated(name)
            if at_token_endpoint && (name == "resource" || name == "audience") =>
        {
            err(
                T::InvalidTarget,
                "a token here is for one target: send one resource (or audience) per request",
            )
        }
        e => TokenError::new(T::InvalidRequest, e.to_string()),
    })?;
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let creds = presented(authorization, &params)?;
    let ip = super::browser::client_ip(state, req);
    let clients = crate::clients::Clients {
        peer: ip.as_deref(),
        ..state.clients()
    };
    let client = match clients.authenticate(&creds).await {
        Ok(c) => c,
        Err(e) => {
            if e.code == T::InvalidClient {
                let id = creds.client_id();
                super::browser::audit(
                    state,
                    req,
                    crate::audit::Event::new(
                        crate::audit::EventType::ClientAuthFailure,
                        crate::audit::Actor::Anonymous,
                    )
                    .client(id)
                    .details(serde_json::json!({"endpoint": req.uri().path()})),
                )
                .await;
            }
            return Err(e);
        }
    };
    Ok((client, params))
}
