//! RFC 9449 DPoP at the HTTP edge: the `DPoP` request header, the `DPoP-Nonce` response
//! header, and what a proof means where it arrives (`/token`, `/par`, the protected
//! resources). Checking proofs is `crate::dpop`'s.

use poem::http::{HeaderValue, header::HeaderName};
use poem::{Request, Response};

use super::error::ApiError;
use crate::dpop::DpopError;
use crate::oauth::dpop::Proof;
use crate::oauth::error::{BearerError, BearerErrorCode as B, TokenError, TokenErrorCode as T};
use crate::state::AppState;

pub(super) const DPOP: HeaderName = HeaderName::from_static("dpop");
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The request's one `DPoP` header: `Ok(None)` without one; two or more, or one that is not
/// visible ASCII, are refused (RFC 9449 §4.3 (1)).
pub(super) fn proof_header(req: &Request) -> Result<Option<&str>, &'static str> {
    let mut all = req.headers().get_all(DPOP).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("send one DPoP header"),
        (Some(v), None) => v
            .to_str()
            .map(Some)
            .map_err(|_| "the DPoP header is not a JWS"),
    }
}

/// The checked proof of a request to the token or pushed authorization endpoint, if it
/// carries one: errors as RFC 9449 §5 token endpoint errors.
pub(super) async fn token_endpoint_proof(
    req: &Request,
    state: &AppState,
) -> Result<Option<Proof>, TokenError> {
    let proof = proof_header(req).map_err(|why| TokenError::new(T::InvalidDpopProof, why))?;
    let Some(proof) = proof else {
        return Ok(None);
    };
    verify(req, state, proof, None)
        .await
        .map(Some)
        .map_err(|e| match e {
            DpopError::Invalid(why) => TokenError::new(T::InvalidDpopProof, why),
            DpopError::UseNonce => TokenError::new(
                T::UseDpopNonce,
                "send the DPoP-Nonce of this response in the proof's nonce",
            ),
            DpopError::Server => TokenError::new(T::ServerError, "server error"),
        })
}

/// FAPI 2.0 §5.4: a `fapi2` client's proofs are signed PS256, ES256 or EdDSA.
pub(super) fn fapi2_proof_alg(
    client: &crate::oauth::client::Client,
    proof: Option<&Proof>,
) -> Result<(), TokenError> {
    match proof {
        Some(p) if !client.jws_algs().contains(&p.alg) => Err(TokenError::new(
            T::InvalidDpopProof,
            "this client's DPoP proofs must be signed PS256, ES256 or EdDSA (FAPI 2.0)",
        )),
        _ => Ok(()),
    }
}

/// The checked proof presented with a DPoP-bound `access_token` at a protected resource,
/// errors as RFC 9449 §7.1 `WWW-Authenticate: DPoP` errors.
pub(super) async fn resource_proof(
    req: &Request,
    state: &AppState,
    access_token: &str,
) -> Result<Proof, ApiError> {
    let error = |e: BearerError| dpop_error(state, e);
    let proof = proof_header(req)
        .map_err(|why| error(BearerError::new(B::InvalidDpopProof, why)))?
        .ok_or_else(|| {
            error(BearerError::new(
                B::InvalidDpopProof,
                "a DPoP access token needs a DPoP proof",
            ))
        })?;
    verify(req, state, proof, Some(access_token))
        .await
        .map_err(|e| match e {
            DpopError::Invalid(why) => error(BearerError::new(B::InvalidDpopProof, why)),
            DpopError::UseNonce => error(BearerError::new(
                B::UseDpopNonce,
                "send the DPoP-Nonce of this response in the proof's nonce",
            )),
            DpopError::Server => ApiError::Server,
        })
}

/// A protected resource's error for a request that used the DPoP scheme: a DPoP challenge,
/// with the current nonce when nonces are required.
pub(super) fn dpop_error(state: &AppState, error: BearerError) -> ApiError {
    ApiError::Dpop {
        error,
        nonce: state.dpop().nonce(state.clock.now()),
        scope: None,
    }
}

/// `proof` checked for this request (its method and path), with `access_token` at a resource.
async fn verify(
    req: &Request,
    state: &AppState,
    proof: &str,
    access_token: Option<&str>,
) -> Result<Proof, DpopError> {
    state
        .dpop()
        .verify(
            proof,
            req.method().as_str(),
            req.uri().path(),
            access_token,
            state.clock.now(),
        )
        .await
}

/// `resp` with the current server nonce (RFC 9449 §8.2), when nonces are required.
pub(super) fn with_nonce(mut resp: Response, state: &AppState) -> Response {
    if let Some(nonce) = state
        .dpop()
        .nonce(state.clock.now())
        .and_then(|n| HeaderValue::from_str(&n).ok())
    {
        resp.headers_mut().insert(DPOP_NONCE, nonce);
    }
    resp
}
