//! Access tokens presented to us (RFC 6750): where they may come from, and checking them.

use latchkey_jwks::{Claims, VerifyOptions};
use poem::Request;
use poem::http::header;

use super::token::ACCESS_TOKEN_ALG;
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;
use crate::state::AppState;

/// Clock skew tolerated on access tokens, in seconds.
const LEEWAY: i64 = 30;

/// The token from `Authorization: Bearer` or, for a form POST, the `access_token` field
/// (RFC 6750 §2.1, §2.2). Both at once is `invalid_request`. `Ok(None)`: none presented.
pub fn presented_token(
    req: &Request,
    form: Option<&Params>,
) -> Result<Option<String>, BearerError> {
    let header_token = match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => match h.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => Some(h[7..].trim().to_owned()),
            _ => return Err(BearerError::new(B::InvalidRequest, "use the Bearer scheme")),
        },
        None => None,
    };
    let body_token = form.and_then(|f| f.get("access_token")).map(str::to_owned);
    match (header_token, body_token) {
        (Some(_), Some(_)) => Err(BearerError::new(
            B::InvalidRequest,
            "present the token once",
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(Some(t)),
        (Some(_), None) | (None, Some(_)) => {
            Err(BearerError::new(B::InvalidRequest, "the token is empty"))
        }
        (None, None) => Ok(None),
    }
}

/// Which audiences an endpoint accepts in the access tokens presented to it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Tokens for us (userinfo): `aud` is the issuer.
    Issuer,
    /// Any token we issued: the issuer or a configured RFC 8707 resource (introspection,
    /// revocation).
    AnyOurs,
}

/// The audience to verify against: the token's own, if it is one the endpoint accepts. The
/// signature check that follows makes the unverified read safe.
pub fn accepted_audience(state: &AppState, token: &str, which: Audience) -> Option<String> {
    let claims = latchkey_jwks::verify::unverified_payload(token)?;
    let aud = match claims.get("aud")? {
        serde_json::Value::String(a) => a.clone(),
        serde_json::Value::Array(list) => list.first()?.as_str()?.to_owned(),
        _ => return None,
    };
    let ok = aud == state.config.issuer
        || (which == Audience::AnyOurs && state.config.tokens.resources.contains(&aud));
    ok.then_some(aud)
}

/// Verifies one of our access tokens: signature, `typ`, issuer, audience, expiry, and that
/// neither the token nor its grant has been revoked.
pub async fn verify_access_token(
    state: &AppState,
    token: &str,
    now: i64,
    which: Audience,
) -> Result<Claims, BearerError> {
    let invalid = |why: &'static str| BearerError::new(B::InvalidToken, why);
    let ring = state
        .keys
        .keyring(now)
        .await
        .map_err(|_| invalid("the token cannot be checked now"))?;
    let audience = accepted_audience(state, token, which)
        .ok_or_else(|| invalid("the access token is not for this endpoint"))?;
    let opts = VerifyOptions {
        algs: &[ACCESS_TOKEN_ALG],
        issuer: &state.config.issuer,
        audience: &audience,
        typ: Some("at+jwt"),
        now,
        leeway: LEEWAY,
    };
    let claims = ring.verify(token, &opts).map_err(|e| {
        tracing::debug!(error = %e, "access token rejected");
        invalid("the access token is invalid or expired")
    })?;
    let jti = claims
        .str("jti")
        .ok_or_else(|| invalid("the access token has no jti"))?;
    match state
        .store
        .access_token_revoked(jti, claims.str("gid"))
        .await
    {
        Ok(false) => Ok(claims),
        Ok(true) => Err(invalid("the access token has been revoked")),
        Err(e) => {
            tracing::error!(error = %e, "revocation check failed");
            Err(invalid("the token cannot be checked now"))
        }
    }
}
