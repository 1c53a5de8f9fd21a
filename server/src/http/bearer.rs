//! Access tokens presented to us (RFC 6750 §2, RFC 9449 §7): where they may come from, and
//! the one way our protected resources take them ([`access_token`], and [`access`], which
//! also takes personal API keys). Checking the token is `access`'s, a DPoP proof `dpop`'s, an
//! API key `api_keys`'.

use latchkey_jwks::Claims;
use poem::Request;
use poem::http::header;

use super::dpop::{dpop_error, resource_proof};
use super::error::ApiError;
use crate::access::{Audience, bound_key};
use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;
use crate::state::AppState;

/// What a request to one of our resource APIs presented: one of our access tokens, verified,
/// or a personal API key, checked.
pub(super) enum Access {
    Token(Claims),
    Key(crate::store::ApiKeyRow),
}

impl Access {
    /// The user (or, for a client's own token, the client) the request acts for.
    pub fn sub(&self) -> &str {
        match self {
            Access::Token(c) => c.str("sub").unwrap_or_default(),
            Access::Key(k) => &k.user_id,
        }
    }

    /// Whether it stands for a user: a token with a grant, or a key.
    pub fn is_users(&self) -> bool {
        match self {
            Access::Token(c) => c.str("gid").is_some(),
            Access::Key(_) => true,
        }
    }

    /// The client the token was issued to; None for a key.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Access::Token(c) => c.str("client_id"),
            Access::Key(_) => None,
        }
    }

    /// When the user signed in for it; None for a key (no sign-in is behind one), so steps
    /// that need a recent sign-in refuse keys.
    pub fn auth_time(&self) -> Option<i64> {
        match self {
            Access::Token(c) => c.int("auth_time"),
            Access::Key(_) => None,
        }
    }

    /// RFC 8693 `act`: who acts for the user.
    pub fn act(&self) -> Option<&serde_json::Value> {
        match self {
            Access::Token(c) => c.get("act"),
            Access::Key(_) => None,
        }
    }

    /// The API key's id, when it is one.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Access::Token(_) => None,
            Access::Key(k) => Some(&k.id),
        }
    }
}

/// Like [`access_token`], and a personal API key (`lk_...` as the Bearer token) is taken too:
/// live, of an enabled user, carrying `scope`, and, if it was made for a resource, made for
/// this one. Failed keys count against the address at the token endpoints' gate (a held-back
/// address gets 429 before its key is looked at), as failed client secrets do.
pub(super) async fn access(
    state: &AppState,
    req: &Request,
    which: Audience,
    scope: &'static str,
) -> Result<Access, ApiError> {
    let key = match presented(req, None)? {
        Some((t, Scheme::Bearer)) if crate::api_keys::is_key(&t) => t,
        _ => {
            return access_token(state, req, None, which, scope)
                .await
                .map(Access::Token);
        }
    };
    super::client_auth::gate_closed(req, state).await?;
    let now = state.clock.now();
    let ip = super::browser::client_ip(state, req);
    let Some(row) = state.api_keys().check(&key, now, ip.as_deref()).await? else {
        super::client_auth::count_gate_failure(req, state).await;
        super::browser::audit(
            state,
            req,
            crate::audit::Event::new(
                crate::audit::EventType::ApiKeyFailure,
                crate::audit::Actor::Anonymous,
            )
            .details(serde_json::json!({
                "where": req.uri().path(),
                "key_id": crate::api_keys::key_id(&key),
            })),
        )
        .await;
        return Err(ApiError::from(BearerError::new(
            B::InvalidToken,
            "the API key is unknown, revoked or expired",
        )));
    };
    if let Some(resource) = &row.resource {
        let here = match which {
            Audience::Api(api) => api.id(&state.config.issuer),
            _ => state.config.issuer.to_string(),
        };
        if *resource != here && *resource != *state.config.issuer {
            return Err(ApiError::from(BearerError::new(
                B::InvalidToken,
                "the API key is for another resource",
            )));
        }
    }
    if !row.scope.split(' ').any(|s| s == scope) {
        return Err(ApiError::Bearer {
            error: BearerError::new(B::InsufficientScope, "the API key lacks the scope needed"),
            scope: Some(scope),
        });
    }
    Ok(Access::Key(row))
}

/// How an access token was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `Authorization: Bearer`, or the form's `access_token` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof header (RFC 9449 §7.1).
    Dpop,
}

/// The verified claims of the access token a request to a protected resource presents
/// (`Bearer`, the form's `access_token`, or `DPoP` with a proof), for an audience `which`
/// accepts, carrying `scope` (else `insufficient_scope` naming it, in the challenge of the
/// scheme used). A DPoP-bound token (`cnf.jkt`) is taken only with the DPoP scheme and a fresh
/// proof by its key whose `ath` is its hash; a token presented with the DPoP scheme must be
/// bound (RFC 9449 §7.1, §7.2).
pub(super) async fn access_token(
    state: &AppState,
    req: &Request,
    form: Option<&Params>,
    which: Audience,
    scope: &'static str,
) -> Result<Claims, ApiError> {
    let (token, scheme) = presented(req, form)?.ok_or(ApiError::NoToken)?;
    // Every error from here on is in the scheme the request used.
    let in_scheme = |error: BearerError| match scheme {
        Scheme::Bearer => ApiError::from(error),
        Scheme::Dpop => dpop_error(state, error),
    };
    let claims = state
        .access_tokens()
        .verify(&token, state.clock.now(), which)
        .await
        .map_err(in_scheme)?;
    match (scheme, bound_key(&claims)) {
        (Scheme::Bearer, None) => {}
        (Scheme::Bearer, Some(_)) => {
            return Err(dpop_error(
                state,
                BearerError::new(
                    B::InvalidToken,
                    "a DPoP-bound access token must be presented with the DPoP scheme and a proof",
                ),
            ));
        }
        (Scheme::Dpop, None) => {
            return Err(in_scheme(BearerError::new(
                B::InvalidToken,
                "the access token is not DPoP-bound: present it as a Bearer token",
            )));
        }
        (Scheme::Dpop, Some(jkt)) => {
            let proof = resource_proof(req, state, &token).await?;
            if proof.jkt != jkt {
                return Err(in_scheme(BearerError::new(
                    B::InvalidDpopProof,
                    "the proof is not signed by the key the access token is bound to",
                )));
            }
        }
    }
    let granted = claims.str("scope").unwrap_or_default();
    if granted.split(' ').any(|s| s == scope) {
        return Ok(claims);
    }
    let error = BearerError::new(
        B::InsufficientScope,
        "the access token lacks the scope needed",
    );
    Err(match scheme {
        Scheme::Bearer => ApiError::Bearer {
            error,
            scope: Some(scope),
        },
        Scheme::Dpop => ApiError::Dpop {
            error,
            nonce: None,
            scope: Some(scope),
        },
    })
}

/// A later refusal of what [`access`] accepted, in the scheme it came with: a bound token
/// came as DPoP (and only a bound one may); a key as Bearer.
pub(super) fn refuse(state: &AppState, access: &Access, error: BearerError) -> ApiError {
    match access {
        Access::Token(claims) => refuse_token(state, claims, error),
        Access::Key(_) => ApiError::from(error),
    }
}

/// [`refuse`] for a token [`access_token`] accepted.
pub(super) fn refuse_token(state: &AppState, claims: &Claims, error: BearerError) -> ApiError {
    if bound_key(claims).is_some() {
        dpop_error(state, error)
    } else {
        ApiError::from(error)
    }
}

/// The access token and its scheme: `Authorization: Bearer`, `Authorization: DPoP`, or the
/// form's `access_token`. More than one is `invalid_request`.
fn presented(
    req: &Request,
    form: Option<&Params>,
) -> Result<Option<(String, Scheme)>, BearerError> {
    if let Some(h) = authorization(req)
        && let Some(p) = h.get(..5)
        && p.eq_ignore_ascii_case("dpop ")
    {
        if form.and_then(|f| f.get("access_token")).is_some() {
            return Err(BearerError::new(
                B::InvalidRequest,
                "present the token once",
            ));
        }
        let token = h[5..].trim();
        if token.is_empty() {
            return Err(BearerError::new(B::InvalidRequest, "the token is empty"));
        }
        return Ok(Some((token.to_owned(), Scheme::Dpop)));
    }
    Ok(presented_token(req, form)?.map(|t| (t, Scheme::Bearer)))
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The token from `Authorization: Bearer` or, for a form POST, the `access_token` field
/// (RFC 6750 §2.1, §2.2). Both at once is `invalid_request`. `Ok(None)`: none presented.
pub fn presented_token(
    req: &Request,
    form: Option<&Params>,
) -> Result<Option<String>, BearerError> {
    let header_token = match authorization(req) {
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
