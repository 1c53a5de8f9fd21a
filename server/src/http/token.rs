//! `/token` (RFC 6749 §3.2): client authentication, then one grant per `grant_type`.
//! Responses carry `Cache-Control: no-store`; errors are RFC 6749 §5.2 JSON.

use latchkey_jwks::Alg;
use poem::http::header;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::{Map, Value, json};

use super::authorize::is_form;
use super::browser::client_ip;
use super::respond::{json_ok, token_error};
use crate::clients::authenticate;
use crate::oauth::claims::{UserInfo, requested_names, user_claims};
use crate::oauth::client::{Client, GrantType};
use crate::oauth::client_auth::presented;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::params::{Params, ParamsError};
use crate::oauth::pkce;
use crate::oauth::scope::parse_scope;
use crate::oauth::tokens::{
    AccessTokenInput, IdTokenInput, Subject, access_token_claims, id_token_claims,
};
use crate::secrets::{Purpose, random_token};
use crate::state::{AppState, secs};
use crate::store::{Authn, RefreshRow, Replay, Taken};

/// Access tokens are signed with ES256 (DESIGN: the default for access tokens).
pub const ACCESS_TOKEN_ALG: Alg = Alg::Es256;

fn err(code: T, why: &'static str) -> TokenError {
    TokenError::new(code, why)
}

fn server_error(e: impl std::fmt::Display) -> TokenError {
    tracing::error!(error = %e, "token endpoint failure");
    err(T::ServerError, "server error")
}

#[handler]
pub async fn token_endpoint(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Response {
    gated(req, state, handle(req, body, state)).await
}

/// Runs the token endpoint's work behind the address gate (see [`gate_closed`]); failed
/// client authentication counts against the address.
async fn gated(
    req: &Request,
    state: &AppState,
    work: impl std::future::Future<Output = Result<Value, TokenError>>,
) -> Response {
    if let Some(closed) = gate_closed(req, state).await {
        return closed;
    }
    match work.await {
        Ok(body) => json_ok(&body),
        Err(e) => failed_request(req, state, &e).await,
    }
}

/// 429 with `Retry-After` and an RFC 6749 error body.
pub(super) fn too_many(wait: i64, why: String) -> Response {
    let mut resp = token_error(&TokenError::new(T::InvalidRequest, why), false);
    resp.set_status(poem::http::StatusCode::TOO_MANY_REQUESTS);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, poem::http::HeaderValue::from(wait));
    resp
}

/// For an address the gate holds back: 429 with `Retry-After`, before anything is checked.
pub(super) async fn gate_closed(req: &Request, state: &AppState) -> Option<Response> {
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
        Ok(0) => None,
        Ok(wait) => Some(too_many(
            wait,
            format!("too many failed requests from this address; retry in {wait} s"),
        )),
        Err(e) => {
            tracing::error!(error = %e, "token endpoint throttle check failed");
            None
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

/// The error response, after counting a failed client authentication against the address.
/// Errors after the client authenticated (a bad code, say) do not count: a stranger can make
/// a real client redeem garbage, and must not get it gated that way.
pub(super) async fn failed_request(req: &Request, state: &AppState, e: &TokenError) -> Response {
    if e.code == T::InvalidClient {
        count_gate_failure(req, state).await;
    }
    token_error(e, basic_used(req))
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
    let client = authenticate(state, &creds).await?;
    Ok((client, params))
}

async fn handle(req: &Request, body: poem::Body, state: &AppState) -> Result<Value, TokenError> {
    let (client, params) = authenticated_client(req, body, state, true).await?;

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
    // RFC 8707 §2.2: `resource` names the access token's audience: one known here and given
    // to this client.
    let audience = match params.get("resource") {
        None => state.config.issuer.clone(),
        Some(r) if may_have(state, &client, r) => r.to_owned(),
        Some(_) => {
            return Err(err(
                T::InvalidTarget,
                "the requested resource is not one this client may have tokens for",
            ));
        }
    };
    let now = state.clock.now();
    match grant {
        GrantType::AuthorizationCode => {
            authorization_code(state, &client, &params, &audience, now).await
        }
        GrantType::RefreshToken => {
            refresh_token(state, req, &client, &params, &audience, now).await
        }
        GrantType::ClientCredentials => {
            client_credentials(state, &client, &params, &audience, now).await
        }
        GrantType::DeviceCode => device_code(state, req, &client, &params, &audience, now).await,
        GrantType::TokenExchange => token_exchange(state, &client, &params, &audience, now).await,
    }
}

fn may_have(state: &AppState, client: &Client, aud: &str) -> bool {
    client.may_have_audience(&state.config.issuer, &state.config.tokens.resources, aud)
}

/// RFC 8693 token exchange, delegation: the client presents a subject token (one of our
/// access tokens, or a JWT of a trusted issuer whose subject is linked to an account here)
/// and its own access token as the actor token, and gets an access token for the subject with
/// the actor in `act` (over any earlier `act` chain), a scope within the subject token's and
/// its own, and an audience among ours (`audience` or `resource`). No refresh token.
/// Impersonation (no actor token, no new `act`) only for a client an administrator allowed it
/// (`client create --allow-impersonation`).
async fn token_exchange(
    state: &AppState,
    client: &Client,
    params: &Params,
    resource_audience: &str,
    now: i64,
) -> Result<Value, TokenError> {
    use super::bearer::{Audience, verify_access_token};
    use crate::oauth::exchange::{self, ACCESS_TOKEN, JWT};
    let subject_token = params
        .get("subject_token")
        .ok_or_else(|| err(T::InvalidRequest, "subject_token is required"))?;
    // A JWT of ours is one of our access tokens, whichever type the client called it.
    let ours = match params.get("subject_token_type") {
        Some(ACCESS_TOKEN) => true,
        Some(JWT) => {
            latchkey_jwks::verify::unverified_payload(subject_token)
                .and_then(|p| p.get("iss").cloned())
                == Some(json!(state.config.issuer))
        }
        Some(_) => {
            return Err(err(
                T::InvalidRequest,
                "this subject_token_type is not supported",
            ));
        }
        None => return Err(err(T::InvalidRequest, "subject_token_type is required")),
    };
    let (typ, issued_type, token_type) = match params.get("requested_token_type") {
        None | Some(ACCESS_TOKEN) => ("at+jwt", ACCESS_TOKEN, "Bearer"),
        Some(JWT) => ("JWT", JWT, "N_A"),
        Some(_) => {
            return Err(err(
                T::InvalidRequest,
                "requested_token_type must be an access_token or a jwt",
            ));
        }
    };
    // One audience per token: `audience` and `resource` may both be given, naming the same.
    if let (Some(a), Some(r)) = (params.get("audience"), params.get("resource"))
        && a != r
    {
        return Err(err(
            T::InvalidTarget,
            "audience and resource name different targets; a token here has one audience",
        ));
    }
    let audience = match params.get("audience") {
        None => resource_audience.to_owned(),
        Some(a) if may_have(state, client, a) => a.to_owned(),
        Some(_) => {
            return Err(err(
                T::InvalidTarget,
                "the audience is not one this client may have tokens for",
            ));
        }
    };
    // RFC 8693 §2.2.2: a subject or actor token that is invalid, or unacceptable by policy,
    // is invalid_request.
    let invalid = |why: &'static str| err(T::InvalidRequest, why);
    // The subject (its claims as the new token sees them) and the scope it holds.
    let (mut subject, held_scope, external) = if ours {
        let subject = verify_access_token(state, subject_token, now, Audience::AnyOurs)
            .await
            .map_err(|_| invalid("the subject_token is invalid, expired or revoked"))?;
        // A user's token (with its grant): a client's own token stands for no one to act for.
        if subject.str("gid").is_none() {
            return Err(invalid("the subject_token is not a user's token"));
        }
        if subject.int("exp").is_none_or(|exp| exp <= now) {
            return Err(invalid("the subject_token has expired"));
        }
        // It must be meant for this client: issued to it, or for a resource server it is
        // (`--serves`). A user's token that a client merely got hold of is not its to exchange.
        let meant_for_client = subject.str("client_id") == Some(client.client_id.as_str())
            || exchange::audiences(subject.as_map())
                .any(|a| a != state.config.issuer && client.metadata.serves.iter().any(|r| r == a));
        if !meant_for_client {
            return Err(invalid(
                "the subject_token is neither this client's nor for a resource server it serves",
            ));
        }
        let scope = subject.str("scope").unwrap_or_default().to_owned();
        (subject.into_map(), scope, None)
    } else {
        let ext = state
            .trusted_issuers
            .verify(subject_token, now)
            .await
            .map_err(|why| {
                tracing::info!(client = %client.client_id, %why, "subject_token refused");
                invalid("the subject_token is invalid, expired or not from a trusted issuer")
            })?;
        if !ext.client_allowed(&client.client_id) {
            return Err(invalid(
                "this client may not exchange tokens of the subject_token's issuer",
            ));
        }
        let user_id = crate::federation::account_for(&state.store, &ext, now)
            .await
            .map_err(server_error)?
            .ok_or_else(|| invalid("no account here is linked to the subject_token's subject"))?;
        match state
            .store
            .user_by_id(&user_id)
            .await
            .map_err(server_error)?
        {
            Some(u) if u.disabled_at.is_none() => {}
            _ => return Err(invalid("the subject's account here is disabled")),
        }
        let scope = ext.held_scope();
        let issuer = ext.issuer.issuer.clone();
        (ext.as_subject(&user_id), scope, Some((issuer, user_id)))
    };
    // Delegation names the actor (the client, by its own token); impersonation, only for a
    // client an administrator allowed it, names no one.
    let actor = match params.get("actor_token") {
        Some(actor_token) => {
            if params.get("actor_token_type") != Some(ACCESS_TOKEN) {
                return Err(err(
                    T::InvalidRequest,
                    "actor_token_type must be urn:ietf:params:oauth:token-type:access_token",
                ));
            }
            let actor = verify_access_token(state, actor_token, now, Audience::AnyOurs)
                .await
                .map_err(|_| invalid("the actor_token is invalid, expired or revoked"))?;
            // The actor is the client itself: its own token, not someone else's.
            if actor.str("sub") != Some(client.client_id.as_str()) {
                return Err(invalid("the actor_token is not this client's"));
            }
            Some(client.client_id.as_str())
        }
        None if client.metadata.token_exchange_impersonation => None,
        None => {
            return Err(err(
                T::InvalidRequest,
                "actor_token is required: this client may not impersonate",
            ));
        }
    };
    if !exchange::may_act(&subject, &state.config.issuer, &client.client_id) {
        return Err(invalid(
            "the subject_token's may_act does not name this actor",
        ));
    }
    let scope = exchange::narrow_scope(params.get("scope"), &held_scope, |s| {
        client.allowed_scopes().any(|c| c == s)
    })
    .map_err(|why| TokenError::new(T::InvalidScope, why))?;
    let jti = random_token(16);
    let lifetime = secs(state.config.tokens.access_token_lifetime);
    let expires_at = exchange::expiry(&subject, now, lifetime);
    // A subject from another issuer gets a grant of its own here, so that disabling the
    // account, or revoking the grant, ends the token like any other of the user's.
    if let Some((issuer, user_id)) = &external {
        let grant_id = random_token(16);
        let made = state
            .store
            .create_grant(&grant_id, &client.client_id, user_id, now, expires_at)
            .await
            .map_err(server_error)?;
        if !made {
            return Err(invalid("the subject's account here is disabled"));
        }
        subject.insert("gid".into(), json!(grant_id));
        tracing::info!(client = %client.client_id, %issuer, user = %user_id, "exchanging another issuer's token");
    }
    let claims = exchange::exchanged_claims(&exchange::Exchanged {
        issuer: &state.config.issuer,
        audience: &audience,
        client_id: &client.client_id,
        scope: &scope,
        jti: &jti,
        now,
        lifetime,
        subject: &subject,
        actor,
    });
    let ring = state.keys.keyring(now).await.map_err(server_error)?;
    let token = ring
        .sign(ACCESS_TOKEN_ALG, typ, &claims)
        .map_err(server_error)?;
    tracing::info!(client = %client.client_id, delegation = actor.is_some(), "token exchanged");
    Ok(json!({
        "access_token": token,
        "issued_token_type": issued_type,
        "token_type": token_type,
        "expires_in": expires_at - now,
        "scope": scope,
    }))
}

/// RFC 8628 §3.4–3.5: the device polls with its device code. Until the user answers:
/// `authorization_pending` (or `slow_down`, adding 5 s to its interval, when it polls sooner
/// than its interval); then `access_denied`, or tokens once (the device code is consumed) and
/// a device record; after 10 minutes `expired_token`.
async fn device_code(
    state: &AppState,
    req: &Request,
    client: &Client,
    params: &Params,
    audience: &str,
    now: i64,
) -> Result<Value, TokenError> {
    let code = params
        .get("device_code")
        .ok_or_else(|| err(T::InvalidRequest, "device_code is required"))?;
    if code.len() > 64 {
        return Err(err(T::InvalidGrant, "the device_code is not valid"));
    }
    let digests = state
        .pepper
        .lookup_digests(Purpose::DeviceCode, code.as_bytes());
    let row = state
        .store
        .poll_device_code(&digests, &client.client_id, now)
        .await
        .map_err(server_error)?
        .ok_or_else(|| err(T::InvalidGrant, "the device_code is not valid"))?;
    if row.consumed {
        return Err(err(T::InvalidGrant, "the device_code was already used"));
    }
    if row.expires_at <= now {
        return Err(err(T::ExpiredToken, "the device_code has expired"));
    }
    if row.too_soon {
        return Err(err(
            T::SlowDown,
            "poll less often: the interval is now 5 s longer",
        ));
    }
    match row.status.as_str() {
        "pending" => {
            return Err(err(
                T::AuthorizationPending,
                "the user has not answered yet",
            ));
        }
        "denied" => return Err(err(T::AccessDenied, "the user denied the request")),
        _ => {}
    }
    let taken = state
        .store
        .take_approved_device(&digests, &client.client_id, now)
        .await
        .map_err(server_error)?
        // Taken meanwhile by a concurrent poll, or its user was disabled since approving.
        .ok_or_else(|| err(T::InvalidGrant, "the device_code is no longer valid"))?;
    let approval: crate::oauth::device::Approval =
        serde_json::from_str(&taken.authn).map_err(server_error)?;
    let authn = Authn {
        user_id: taken.user_id.clone(),
        sid: Some(approval.sid),
        auth_time: approval.auth_time,
        amr: serde_json::to_string(&approval.amr).map_err(server_error)?,
        acr: approval.acr,
    };
    let grant_id = random_token(16);
    let refresh_expires = now + secs(state.config.tokens.refresh_token_lifetime);
    let made = state
        .store
        .create_grant(
            &grant_id,
            &client.client_id,
            &taken.user_id,
            now,
            refresh_expires,
        )
        .await
        .map_err(server_error)?;
    if !made {
        return Err(err(T::InvalidGrant, "the user is no longer active"));
    }
    // The device is recorded before its tokens exist: a failure leaves nothing the user
    // cannot see and remove.
    let name = if client.metadata.client_name.is_empty() {
        client.client_id.clone()
    } else {
        client.metadata.client_name.clone()
    };
    let ip = client_ip(state, req);
    let ua = super::browser::user_agent(req);
    state
        .store
        .insert_device(&crate::store::NewDevice {
            id: &random_token(16),
            user_id: &taken.user_id,
            client_id: &client.client_id,
            grant_id: &grant_id,
            name: &name,
            ip: ip.as_deref(),
            user_agent: ua.as_deref(),
            now,
        })
        .await
        .map_err(server_error)?;
    let body = issue(
        state,
        client,
        Issue {
            grant_id: &grant_id,
            scope: &taken.scope,
            refresh_scope: &taken.scope,
            authn: &authn,
            nonce: None,
            claims: None,
            refresh_expires,
            audience,
        },
        now,
    )
    .await?;
    tracing::info!(client = %client.client_id, user = %taken.user_id, "device connected");
    Ok(body)
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.5: single use, bound to client, redirect URI and PKCE.
/// A replayed code revokes everything issued from it.
async fn authorization_code(
    state: &AppState,
    client: &Client,
    params: &Params,
    audience: &str,
    now: i64,
) -> Result<Value, TokenError> {
    let code = params
        .get("code")
        .ok_or_else(|| err(T::InvalidRequest, "code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| err(T::InvalidRequest, "redirect_uri is required"))?;
    let verifier = params
        .get("code_verifier")
        .ok_or_else(|| err(T::InvalidRequest, "code_verifier is required"))?;
    let digests = state
        .pepper
        .lookup_digests(Purpose::AuthorizationCode, code.as_bytes());
    let row = match state
        .store
        .take_code(&digests, &client.client_id, now)
        .await
        .map_err(server_error)?
    {
        Taken::Fresh(row) => row,
        Taken::Replayed(replay) => {
            revoke_replayed(state, &replay, now).await?;
            tracing::warn!(client = %client.client_id, "authorization code replayed; its grant is revoked");
            return Err(err(
                T::InvalidGrant,
                "the code was already used; tokens issued from it are revoked",
            ));
        }
        Taken::Invalid => return Err(err(T::InvalidGrant, "the code is invalid or expired")),
    };
    if row.redirect_uri != redirect_uri {
        return Err(err(
            T::InvalidGrant,
            "redirect_uri differs from the authorization request",
        ));
    }
    if !pkce::verify_s256(verifier, &row.code_challenge) {
        return Err(err(
            T::InvalidGrant,
            "code_verifier does not match the code_challenge",
        ));
    }
    let refresh_expires = now + secs(state.config.tokens.refresh_token_lifetime);
    // Made only while the user is enabled: a `user disable` between taking the code and
    // this either sees the grant (and revokes it) or leaves none to make.
    let made = state
        .store
        .create_grant(
            &row.grant_id,
            &client.client_id,
            &row.authn.user_id,
            now,
            refresh_expires,
        )
        .await
        .map_err(server_error)?;
    if !made {
        return Err(err(T::InvalidGrant, "the user is no longer active"));
    }
    issue(
        state,
        client,
        Issue {
            grant_id: &row.grant_id,
            scope: &row.scope,
            refresh_scope: &row.scope,
            authn: &row.authn,
            nonce: row.nonce.as_deref(),
            claims: row.claims.as_deref(),
            refresh_expires,
            audience,
        },
        now,
    )
    .await
}

/// A used code or rotated refresh token presented again: its grant is revoked, recorded so
/// if the first redemption has not made it yet (with the lifetime that redemption gives it).
async fn revoke_replayed(state: &AppState, replay: &Replay, now: i64) -> Result<(), TokenError> {
    let expires = now + secs(state.config.tokens.refresh_token_lifetime);
    state
        .store
        .revoke_replayed(replay, now, expires)
        .await
        .map_err(server_error)
}

/// RFC 6749 §6 with rotation: every use returns a new refresh token; a rotated one presented
/// again revokes the whole family (RFC 9700 §4.14.2).
async fn refresh_token(
    state: &AppState,
    req: &Request,
    client: &Client,
    params: &Params,
    audience: &str,
    now: i64,
) -> Result<Value, TokenError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| err(T::InvalidRequest, "refresh_token is required"))?;
    let digests = state
        .pepper
        .lookup_digests(Purpose::RefreshToken, token.as_bytes());
    let row: RefreshRow = match state
        .store
        .take_refresh_token(&digests, &client.client_id, now)
        .await
        .map_err(server_error)?
    {
        Taken::Fresh(row) => row,
        Taken::Replayed(replay) => {
            revoke_replayed(state, &replay, now).await?;
            tracing::warn!(client = %client.client_id, "rotated refresh token reused; its family is revoked");
            return Err(err(
                T::InvalidGrant,
                "the refresh token was already used; its family is revoked",
            ));
        }
        Taken::Invalid => {
            return Err(err(
                T::InvalidGrant,
                "the refresh token is invalid, expired or revoked",
            ));
        }
    };
    // A device (RFC 8628) refreshing: it was last used now, from here. The token is rotated
    // already, so a failure here is logged, not answered (a retry would look like a replay).
    if client.has_grant(GrantType::DeviceCode) {
        let ua = super::browser::user_agent(req);
        let ip = client_ip(state, req);
        let touched = state
            .store
            .touch_device(&row.grant_id, ip.as_deref(), ua.as_deref(), now)
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, "recording a device's last use failed");
        }
    }
    let scope = match params.get("scope") {
        None => row.scope.clone(),
        Some(s) => {
            let asked = parse_scope(s).map_err(|_| err(T::InvalidScope, "scope is malformed"))?;
            if !asked.iter().all(|a| row.scope.split(' ').any(|g| g == a)) {
                return Err(err(T::InvalidScope, "a refresh cannot widen the scope"));
            }
            asked.join(" ")
        }
    };
    issue(
        state,
        client,
        Issue {
            grant_id: &row.grant_id,
            scope: &scope,
            refresh_scope: &row.scope,
            authn: &row.authn,
            nonce: None,
            claims: row.claims.as_deref(),
            refresh_expires: row.expires_at,
            audience,
        },
        now,
    )
    .await
}

/// RFC 6749 §4.4: the client acts for itself; `sub` is its id (RFC 9068 §2.2).
async fn client_credentials(
    state: &AppState,
    client: &Client,
    params: &Params,
    audience: &str,
    now: i64,
) -> Result<Value, TokenError> {
    let user_scopes = [
        "openid",
        "offline_access",
        "profile",
        "email",
        "address",
        "phone",
    ];
    let scope: Vec<String> = match params.get("scope") {
        Some(s) => {
            let asked = parse_scope(s).map_err(|_| err(T::InvalidScope, "scope is malformed"))?;
            if asked.iter().any(|a| {
                !client.allowed_scopes().any(|c| c == a) || user_scopes.contains(&a.as_str())
            }) {
                return Err(err(
                    T::InvalidScope,
                    "a requested scope is not allowed for this client",
                ));
            }
            asked
        }
        None => client
            .allowed_scopes()
            .filter(|s| !user_scopes.contains(s))
            .map(str::to_owned)
            .collect(),
    };
    let scope = scope.join(" ");
    let jti = random_token(16);
    let lifetime = secs(state.config.tokens.access_token_lifetime);
    let claims = access_token_claims(&AccessTokenInput {
        issuer: &state.config.issuer,
        audience,
        client_id: &client.client_id,
        sub: &client.client_id,
        scope: &scope,
        jti: &jti,
        grant_id: None,
        auth: None,
        now,
        lifetime,
    });
    let ring = state.keys.keyring(now).await.map_err(server_error)?;
    let at = ring
        .sign(ACCESS_TOKEN_ALG, "at+jwt", &claims)
        .map_err(server_error)?;
    let mut body = json!({ "access_token": at, "token_type": "Bearer", "expires_in": lifetime });
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    Ok(body)
}

struct Issue<'a> {
    grant_id: &'a str,
    /// Scope of the access token (and id_token) issued now.
    scope: &'a str,
    /// Scope of the next refresh token: always the grant's (RFC 6749 §6).
    refresh_scope: &'a str,
    authn: &'a Authn,
    nonce: Option<&'a str>,
    claims: Option<&'a str>,
    refresh_expires: i64,
    /// `aud` of the access token: the issuer, or an RFC 8707 resource.
    audience: &'a str,
}

/// Mints the access token, the id_token (for `openid`) and the next refresh token (when the
/// client may refresh) of a user grant.
async fn issue(
    state: &AppState,
    client: &Client,
    i: Issue<'_>,
    now: i64,
) -> Result<Value, TokenError> {
    // The user is enabled: the code, refresh token or device code was taken only on that
    // condition (store::grants::user_enabled), and a new grant made only on it.
    let user_id = i.authn.user_id.as_str();
    let amr: Vec<String> = serde_json::from_str(&i.authn.amr).unwrap_or_default();
    let subject = Subject {
        user_id,
        auth_time: i.authn.auth_time,
        amr: &amr,
        acr: &i.authn.acr,
        sid: i.authn.sid.as_deref(),
    };
    let ring = state.keys.keyring(now).await.map_err(server_error)?;
    let at_lifetime = secs(state.config.tokens.access_token_lifetime);
    let jti = random_token(16);
    let requested: Option<Value> = i.claims.and_then(|c| serde_json::from_str(c).ok());
    let mut at_claims = access_token_claims(&AccessTokenInput {
        issuer: &state.config.issuer,
        audience: i.audience,
        client_id: &client.client_id,
        sub: user_id,
        scope: i.scope,
        jti: &jti,
        grant_id: Some(i.grant_id),
        auth: Some(&subject),
        now,
        lifetime: at_lifetime,
    });
    // Claims asked for by name for userinfo (OIDC Core §5.5) ride in the access token.
    let userinfo_names = requested_names(requested.as_ref(), "userinfo");
    if !userinfo_names.is_empty() {
        at_claims.insert("userinfo_claims".into(), json!(userinfo_names));
    }
    let access_token = ring
        .sign(ACCESS_TOKEN_ALG, "at+jwt", &at_claims)
        .map_err(server_error)?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": at_lifetime,
        "scope": i.scope,
    });

    let scopes: Vec<&str> = i.scope.split(' ').collect();
    if scopes.contains(&"openid") {
        let names = requested_names(requested.as_ref(), "id_token");
        let extra: Map<String, Value> = if names.is_empty() {
            Map::new()
        } else {
            // Claims asked for by name (OIDC Core §5.5): only then is the user read.
            let user = match state
                .store
                .user_by_id(user_id)
                .await
                .map_err(server_error)?
            {
                Some(u) if u.disabled_at.is_none() => u,
                _ => return Err(err(T::InvalidGrant, "the user is no longer active")),
            };
            let info = UserInfo {
                id: &user.id,
                email: &user.email,
                email_verified: user.email_verified,
                name: user.name.as_deref(),
            };
            user_claims(&info, &[], &names)
        };
        let alg = client.id_token_alg();
        let claims = id_token_claims(&IdTokenInput {
            issuer: &state.config.issuer,
            client_id: &client.client_id,
            subject: subject.clone(),
            nonce: i.nonce,
            access_token: Some(&access_token),
            alg,
            now,
            lifetime: secs(state.config.tokens.id_token_lifetime),
            extra,
        });
        body["id_token"] = json!(ring.sign(alg, "JWT", &claims).map_err(server_error)?);
    }

    let offline_ok = !state.config.tokens.refresh_requires_offline_access
        || i.refresh_scope.split(' ').any(|s| s == "offline_access");
    if client.has_grant(GrantType::RefreshToken) && offline_ok {
        let token = random_token(32);
        let row = RefreshRow {
            grant_id: i.grant_id.to_owned(),
            client_id: client.client_id.clone(),
            scope: i.refresh_scope.to_owned(),
            claims: i.claims.map(str::to_owned),
            authn: i.authn.clone(),
            expires_at: i.refresh_expires,
        };
        let digest = state.pepper.digest(Purpose::RefreshToken, token.as_bytes());
        state
            .store
            .insert_refresh_token(&digest, &row, now)
            .await
            .map_err(server_error)?;
        body["refresh_token"] = json!(token);
    }
    Ok(body)
}
