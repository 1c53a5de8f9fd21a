//! The token endpoint's grants (RFC 6749 §4, §6; RFC 8628 §3.4; RFC 8693), one file each, all
//! with one contract: `redeem(&TokenContext, &TokenRequest) -> Result<TokenResponse,
//! TokenError>`, and a `PARAMETERS` list naming what the grant reads. Each first validates
//! (refusing with the error its RFC names), then populates the response; issuing tokens is
//! [`issue`]'s. Before any grant runs, the HTTP layer has authenticated the client, and
//! [`TokenRequest::new`] has parsed `grant_type`, checked that the client may use it, and
//! resolved the RFC 8707 audience.
//!
//! No HTTP here: this module knows the store, the keys and the protocol rules of `oauth`,
//! never poem or `http`.

mod authorization_code;
mod client_credentials;
mod device_code;
mod issue;
mod refresh_token;
mod token_exchange;

#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::access::AccessTokens;
use crate::config::TokensConfig;
use crate::federation::TrustedIssuers;
use crate::keys::KeyService;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::params::Params;
use crate::secrets::Pepper;
use crate::store::Store;

/// What the grants need of the server, and nothing else. Built per request from the
/// application state by the HTTP layer; the time comes with the request ([`TokenRequest::now`]),
/// read once.
#[derive(Clone, Copy)]
pub struct TokenContext<'a> {
    pub store: &'a Store,
    pub pepper: &'a Pepper,
    pub keys: &'a KeyService,
    /// Seals a rotated refresh token's successor for the retry grace.
    pub keks: &'a latchkey_jwks::KekRing,
    pub trusted_issuers: &'a TrustedIssuers,
    pub issuer: &'a str,
    pub tokens: &'a TokensConfig,
    /// Fetches resource servers' RFC 9728 metadata (`tokens.discover_resources`).
    pub resource_guard: &'a crate::outbound::Guard,
    pub audit: &'a crate::audit::Audit,
    /// API keys presented as subject tokens (`urn:latchkey:params:oauth:token-type:api_key`).
    pub api_keys: crate::api_keys::ApiKeys<'a>,
}

impl<'a> TokenContext<'a> {
    /// Checks our own access tokens presented as subject or actor tokens.
    fn access_tokens(&self) -> AccessTokens<'a> {
        AccessTokens {
            keys: self.keys,
            store: self.store,
            issuer: self.issuer,
            resources: &self.tokens.resources,
        }
    }

    /// Whether a token of `client` may have `aud` (RFC 8707 `resource`, RFC 8693
    /// `audience`): see [`crate::audiences`].
    async fn may_have(&self, client: &Client, aud: &str, now: i64) -> Result<bool, TokenError> {
        crate::audiences::Audiences {
            store: self.store,
            guard: self.resource_guard,
            issuer: self.issuer,
            tokens: self.tokens,
            now,
        }
        .may_have(client, aud)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "checking a resource failed");
            err(T::ServerError, "server error")
        })
    }
}

/// One token request, parsed: the authenticated client, its grant, the access token's
/// audience, the parameters each grant reads on its own, and where it came from.
pub struct TokenRequest<'a> {
    pub client: &'a Client,
    pub grant: GrantType,
    /// `aud` of the access token: the issuer, or the RFC 8707 `resource` asked for.
    pub audience: String,
    pub params: &'a Params,
    /// The client's address (behind trusted proxies, the forwarded one), for device records.
    pub peer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// RFC 9449: the thumbprint of the key of the request's DPoP proof (checked already),
    /// which the access token is bound to (`cnf.jkt`, `token_type` `DPoP`).
    pub dpop_jkt: Option<&'a str>,
    pub now: i64,
}

impl<'a> TokenRequest<'a> {
    /// RFC 6749 §4.1.3, §5.2: `grant_type` is required and must be one we support
    /// (`unsupported_grant_type`) and the client's (`unauthorized_client`); RFC 8707 §2.2: a
    /// `resource` must be one this client may have tokens for (`invalid_target`).
    pub async fn new(
        ctx: &TokenContext<'_>,
        client: &'a Client,
        params: &'a Params,
        peer: Option<&'a str>,
        user_agent: Option<&'a str>,
        dpop_jkt: Option<&'a str>,
        now: i64,
    ) -> Result<Self, TokenError> {
        let grant: GrantType = params
            .get("grant_type")
            .ok_or_else(|| err(T::InvalidRequest, "grant_type is required"))?
            .parse()
            .map_err(|()| err(T::UnsupportedGrantType, "this grant type is not supported"))?;
        if !client.has_grant(grant) {
            return Err(err(
                T::UnauthorizedClient,
                "the client may not use this grant type",
            ));
        }
        // RFC 9449 §5.2: a client registered with dpop_bound_access_tokens always proves. No
        // proof is not an invalid one: invalid_request (what the FAPI 2.0 suite expects).
        if client.metadata.dpop_bound_access_tokens && dpop_jkt.is_none() {
            return Err(err(
                T::InvalidRequest,
                "this client must send a DPoP proof with its token requests",
            ));
        }
        let audience = match params.get("resource") {
            None => ctx.issuer.to_owned(),
            Some(r) if ctx.may_have(client, r, now).await? => r.to_owned(),
            Some(_) => {
                return Err(err(
                    T::InvalidTarget,
                    "the requested resource is not one this client may have tokens for",
                ));
            }
        };
        Ok(Self {
            client,
            grant,
            audience,
            params,
            peer,
            user_agent,
            dpop_jkt,
            now,
        })
    }

    /// Records `e` in the audit log with the request's address and user agent.
    async fn audit(&self, ctx: &TokenContext<'_>, e: crate::audit::Event<'_>) {
        let origin = crate::audit::Origin {
            ip: self.peer,
            user_agent: self.user_agent,
        };
        ctx.audit.note(self.now, e.from(origin)).await;
    }

    /// `token_type` of an access token issued now (RFC 9449 §5.1: `DPoP` when bound).
    fn token_type(&self) -> &'static str {
        if self.dpop_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        }
    }

    /// RFC 9449 §6.1: binds an access token to the proof's key, `cnf.jkt`.
    fn bind(&self, claims: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(jkt) = self.dpop_jkt {
            claims.insert("cnf".into(), serde_json::json!({ "jkt": jkt }));
        }
    }

    /// RFC 9449 §5.0: what a refresh token issued now is bound to: the proof's key, for a
    /// public client (a confidential client's refresh tokens are bound to its credentials).
    fn refresh_binding(&self) -> Option<String> {
        (self.client.metadata.token_endpoint_auth_method == crate::oauth::client::AuthMethod::None)
            .then(|| self.dpop_jkt.map(str::to_owned))
            .flatten()
    }

    /// A parameter the grant requires (`invalid_request` when it is missing).
    fn required(&self, name: &'static str) -> Result<&'a str, TokenError> {
        self.params
            .get(name)
            .ok_or_else(|| TokenError::new(T::InvalidRequest, format!("{name} is required")))
    }
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1), sent with `Cache-Control:
/// no-store`. Holds live credentials: no `Debug`.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer`, or `N_A` for a token exchange that issued a plain JWT.
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 8693 §2.2.1, token exchange only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// Runs the request's grant.
pub async fn redeem(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    match req.grant {
        GrantType::AuthorizationCode => authorization_code::redeem(ctx, req).await,
        GrantType::RefreshToken => refresh_token::redeem(ctx, req).await,
        GrantType::ClientCredentials => client_credentials::redeem(ctx, req).await,
        GrantType::DeviceCode => device_code::redeem(ctx, req).await,
        GrantType::TokenExchange => token_exchange::redeem(ctx, req).await,
    }
}

/// The parameters a grant reads, besides `grant_type`, `resource` and client authentication.
pub fn parameters(grant: GrantType) -> &'static [&'static str] {
    match grant {
        GrantType::AuthorizationCode => authorization_code::PARAMETERS,
        GrantType::RefreshToken => refresh_token::PARAMETERS,
        GrantType::ClientCredentials => client_credentials::PARAMETERS,
        GrantType::DeviceCode => device_code::PARAMETERS,
        GrantType::TokenExchange => token_exchange::PARAMETERS,
    }
}

fn err(code: T, why: &'static str) -> TokenError {
    TokenError::new(code, why)
}

/// An internal failure: the detail goes to the log, the client hears `server_error`.
fn server_error(e: impl std::fmt::Display) -> TokenError {
    tracing::error!(error = %e, "token endpoint failure");
    err(T::ServerError, "server error")
}

/// A scope refusal of `oauth::scope`, as RFC 6749 §5.2 `invalid_scope`.
fn invalid_scope(e: crate::oauth::scope::ScopeError) -> TokenError {
    TokenError::new(T::InvalidScope, e.to_string())
}
