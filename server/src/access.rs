//! Our access tokens (RFC 9068 JWTs) when they come back to us: at `/userinfo`, `/introspect`
//! and `/revoke`, at the resource APIs, and as subject or actor tokens of a token exchange.
//! Checks the signature against the allowlisted alg, `typ`, issuer, audience and expiry, then
//! that neither the token nor its grant has been revoked. No HTTP here: where the token came
//! from (`Authorization: Bearer`, a form field) is the caller's business.

use latchkey_jwks::{Claims, VerifyOptions};

use crate::keys::KeyService;
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::tokens::ACCESS_TOKEN_ALG;
use crate::store::Store;

/// `cnf.jkt` of one of our access tokens: the DPoP key it is bound to (RFC 9449 §6.1).
pub fn bound_key(claims: &Claims) -> Option<&str> {
    claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(serde_json::Value::as_str)
}

/// Clock skew tolerated on access tokens, in seconds.
const LEEWAY: i64 = 30;

/// Which audiences an endpoint accepts in the access tokens presented to it.
#[derive(Clone, Copy)]
pub enum Audience {
    /// Tokens for us (userinfo): `aud` is the issuer.
    Issuer,
    /// Any token we issued: the issuer, a configured RFC 8707 resource or one of our own
    /// APIs (introspection, revocation, token exchange).
    AnyOurs,
    /// One of our own APIs (`oauth::resource`): tokens for the issuer, or for that API.
    Api(&'static crate::oauth::resource::ApiResource),
}

/// What verifying our access tokens needs: the keys, the revocation records, and who we are.
#[derive(Clone, Copy)]
pub struct AccessTokens<'a> {
    pub keys: &'a KeyService,
    pub store: &'a Store,
    pub issuer: &'a str,
    /// `tokens.resources`: the RFC 8707 audiences we issue tokens for.
    pub resources: &'a [String],
}

impl AccessTokens<'_> {
    /// The audience to verify against: the token's own, if it is one `which` accepts. The
    /// signature check that follows makes the unverified read safe.
    pub fn accepted_audience(&self, token: &str, which: Audience) -> Option<String> {
        let claims = latchkey_jwks::verify::unverified_payload(token)?;
        let aud = match claims.get("aud")? {
            serde_json::Value::String(a) => a.clone(),
            serde_json::Value::Array(list) => list.first()?.as_str()?.to_owned(),
            _ => return None,
        };
        let ok = aud == self.issuer
            || match which {
                Audience::Issuer => false,
                Audience::AnyOurs => {
                    self.resources.contains(&aud)
                        || crate::oauth::resource::by_id(self.issuer, &aud).is_some()
                }
                Audience::Api(api) => api.id(self.issuer) == aud,
            };
        ok.then_some(aud)
    }

    /// The claims of a token we signed for an audience `which` accepts, checked against
    /// the clock with `leeway`; revocation is not looked at.
    async fn signed(
        &self,
        token: &str,
        now: i64,
        which: Audience,
        leeway: i64,
    ) -> Result<Claims, BearerError> {
        let invalid = |why: &'static str| BearerError::new(B::InvalidToken, why);
        let ring = self
            .keys
            .keyring(now)
            .await
            .map_err(|_| invalid("the token cannot be checked now"))?;
        let audience = self
            .accepted_audience(token, which)
            .ok_or_else(|| invalid("the access token is not for this endpoint"))?;
        let opts = VerifyOptions {
            algs: &[ACCESS_TOKEN_ALG],
            issuer: self.issuer,
            audience: &audience,
            typ: Some("at+jwt"),
            now,
            leeway,
        };
        ring.verify(token, &opts).map_err(|e| {
            tracing::debug!(error = %e, "access token rejected");
            invalid("the access token is invalid or expired")
        })
    }

    /// Verifies one of our access tokens: signature, `typ`, issuer, audience, expiry, and
    /// that neither the token nor its grant has been revoked.
    pub async fn verify(
        &self,
        token: &str,
        now: i64,
        which: Audience,
    ) -> Result<Claims, BearerError> {
        let invalid = |why: &'static str| BearerError::new(B::InvalidToken, why);
        let claims = self.signed(token, now, which, LEEWAY).await?;
        let jti = claims
            .str("jti")
            .ok_or_else(|| invalid("the access token has no jti"))?;
        match self
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

    /// `(jti, exp, client_id)` of a live access token we signed for any of our audiences,
    /// whether or not it was revoked already: what RFC 7009 revocation needs.
    pub async fn to_revoke(&self, token: &str, now: i64) -> Option<(String, i64, String)> {
        let claims = self.signed(token, now, Audience::AnyOurs, 0).await.ok()?;
        Some((
            claims.str("jti")?.to_owned(),
            claims.int("exp")?,
            claims.str("client_id")?.to_owned(),
        ))
    }
}
