//! RFC 8693 token exchange, delegation: the client presents a subject token (one of our
//! access tokens, or a JWT of a trusted issuer whose subject is linked to an account here)
//! and its own access token as the actor token, and gets an access token for the subject with
//! the actor in `act` (over any earlier `act` chain, §4.1), a scope within the subject token's
//! and its own, and an audience among ours (`audience` or `resource`). No refresh token.
//! Impersonation (no actor token, no new `act`) only for a client an administrator allowed it
//! (`client create --allow-impersonation`). A personal API key as the subject
//! (`urn:latchkey:params:oauth:token-type:api_key`) is the user's own credential: its holder
//! acts as the user, so no actor token is needed; the scope stays within the key's, and a key
//! made for a resource gets tokens for that resource only. A subject or actor token that is
//! invalid, or unacceptable by policy, is `invalid_request` (§2.2.2).

use serde_json::{Map, Value, json};

use super::{TokenContext, TokenRequest, TokenResponse, err, invalid_scope, issue, server_error};
use crate::access::Audience;
use crate::clock::secs;
use crate::oauth::client::Client;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::exchange::{self, ACCESS_TOKEN, JWT};
use crate::oauth::scope;
use crate::secrets::random_token;

pub const PARAMETERS: &[&str] = &[
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "audience",
    "scope",
];

fn invalid(why: &'static str) -> TokenError {
    err(T::InvalidRequest, why)
}

/// The subject as the new token sees it: its claims, the scope it holds, and, for another
/// issuer's subject or an API key, who vouches for it and the account here.
struct SubjectToken {
    claims: Map<String, Value>,
    held_scope: String,
    external: Option<(String, String)>,
    /// The API key the subject is: its id and the resource it is for, if any.
    key: Option<(String, Option<String>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SubjectKind {
    Ours,
    External,
    ApiKey,
}

pub async fn redeem(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let params = req.params;
    let client = req.client;
    let now = req.now;
    let subject_token = req.required("subject_token")?;
    // A JWT of ours is one of our access tokens, whichever type the client called it.
    let kind = match params.get("subject_token_type") {
        Some(ACCESS_TOKEN) => SubjectKind::Ours,
        Some(JWT) => {
            let ours = latchkey_jwks::verify::unverified_payload(subject_token)
                .and_then(|p| p.get("iss").cloned())
                == Some(json!(ctx.issuer));
            if ours {
                SubjectKind::Ours
            } else {
                SubjectKind::External
            }
        }
        Some(crate::api_keys::TOKEN_TYPE) => SubjectKind::ApiKey,
        Some(_) => return Err(invalid("this subject_token_type is not supported")),
        None => return Err(invalid("subject_token_type is required")),
    };
    let (typ, issued_type, token_type) = match params.get("requested_token_type") {
        None | Some(ACCESS_TOKEN) => ("at+jwt", ACCESS_TOKEN, req.token_type()),
        Some(JWT) => ("JWT", JWT, "N_A"),
        Some(_) => {
            return Err(invalid(
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
    let mut audience = match params.get("audience") {
        None => req.audience.clone(),
        Some(a) if ctx.may_have(client, a, now).await? => a.to_owned(),
        Some(_) => {
            return Err(err(
                T::InvalidTarget,
                "the audience is not one this client may have tokens for",
            ));
        }
    };
    let SubjectToken {
        claims: mut subject,
        held_scope,
        external,
        key,
    } = match kind {
        SubjectKind::Ours => our_subject(ctx, client, subject_token, req.dpop_jkt, now).await?,
        SubjectKind::External => external_subject(ctx, client, subject_token, now).await?,
        SubjectKind::ApiKey => key_subject(ctx, req, subject_token).await?,
    };
    // A key made for a resource is good for that resource only, and for it by default.
    if let Some((_, Some(resource))) = &key {
        match params.get("audience").or(params.get("resource")) {
            Some(asked) if asked != resource => {
                return Err(err(T::InvalidTarget, "the API key is for another resource"));
            }
            Some(_) => {}
            None if ctx.may_have(client, resource, now).await? => audience = resource.clone(),
            None => {
                return Err(err(
                    T::InvalidTarget,
                    "the API key's resource is not one this client may have tokens for",
                ));
            }
        }
    }
    // The holder of a key acts as its user: delegation only when an actor token says so.
    let actor = match (&key, params.get("actor_token")) {
        (Some(_), None) => None,
        (_, actor_token) => actor(ctx, client, actor_token, req).await?,
    };
    if !exchange::may_act(&subject, ctx.issuer, &client.client_id) {
        return Err(invalid(
            "the subject_token's may_act does not name this actor",
        ));
    }
    let scope = scope::at_exchange(params.get("scope"), &held_scope, |s| {
        client.allowed_scopes().any(|c| c == s)
    })
    .map_err(invalid_scope)?;
    let jti = random_token(16);
    let lifetime = secs(ctx.tokens.access_token_lifetime);
    let expires_at = exchange::expiry(&subject, now, lifetime);
    // A subject from another issuer gets a grant of its own here, so that disabling the
    // account, or revoking the grant, ends the token like any other of the user's.
    // An API key's subject gets one too (`external` names "api_key" as who vouches).
    if let Some((issuer, user_id)) = &external {
        let grant_id = random_token(16);
        let made = ctx
            .store
            .create_grant(&grant_id, &client.client_id, user_id, now, expires_at)
            .await
            .map_err(server_error)?;
        if !made {
            return Err(invalid("the subject's account here is disabled"));
        }
        subject.insert("gid".into(), json!(grant_id));
        tracing::info!(client = %client.client_id, vouched_by = %issuer, user = %user_id, "exchanging a token of another issuer, or an API key");
    }
    let mut claims = exchange::exchanged_claims(&exchange::Exchanged {
        issuer: ctx.issuer,
        audience: &audience,
        client_id: &client.client_id,
        scope: &scope,
        jti: &jti,
        now,
        lifetime,
        subject: &subject,
        actor,
    });
    // A plain JWT (N_A) is no access token of ours: it is not bound.
    if typ == "at+jwt" {
        req.bind(&mut claims);
    }
    let access_token = issue::sign_access_token(ctx, typ, &claims, now).await?;
    tracing::info!(client = %client.client_id, delegation = actor.is_some(), "token exchanged");
    {
        // Who the token stands for, who acts (RFC 8693 §4.1 `act`), for what: never the token.
        let mut e = crate::audit::Event::new(
            crate::audit::EventType::TokenExchanged,
            crate::audit::Actor::Client(&client.client_id),
        )
        .client(&client.client_id)
        .details(json!({
            "act": claims.get("act"),
            "aud": audience,
            "scope": scope,
            "jti": jti,
            "external_issuer": external.as_ref().filter(|_| key.is_none()).map(|(i, _)| i),
            "api_key": key.as_ref().map(|(id, _)| id),
        }));
        if let Some(sub) = claims.get("sub").and_then(|s| s.as_str()) {
            e = e.subject(sub);
        }
        req.audit(ctx, e).await;
    }
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in: expires_at - now,
        scope: Some(scope),
        id_token: None,
        refresh_token: None,
        issued_token_type: Some(issued_type),
    })
}

/// RFC 9449: a DPoP-bound token of ours is used only by the holder of its key, here as
/// everywhere: the exchange must come with a proof by that key, or a bound token would turn
/// into an unbound one.
fn proven(
    token: &latchkey_jwks::Claims,
    dpop_jkt: Option<&str>,
    what: &'static str,
) -> Result<(), TokenError> {
    match crate::access::bound_key(token) {
        Some(jkt) if dpop_jkt != Some(jkt) => Err(TokenError::new(
            T::InvalidRequest,
            format!("{what} is DPoP-bound: the request needs a DPoP proof by its key"),
        )),
        _ => Ok(()),
    }
}

/// One of our access tokens as the subject: a user's (with its grant), live, and meant for
/// this client: issued to it, or for a resource server it is (`--serves`). A user's token
/// that a client merely got hold of is not its to exchange.
async fn our_subject(
    ctx: &TokenContext<'_>,
    client: &Client,
    token: &str,
    dpop_jkt: Option<&str>,
    now: i64,
) -> Result<SubjectToken, TokenError> {
    let subject = ctx
        .access_tokens()
        .verify(token, now, Audience::AnyOurs)
        .await
        .map_err(|_| invalid("the subject_token is invalid, expired or revoked"))?;
    proven(&subject, dpop_jkt, "the subject_token")?;
    // A client's own token stands for no one to act for.
    if subject.str("gid").is_none() {
        return Err(invalid("the subject_token is not a user's token"));
    }
    if subject.int("exp").is_none_or(|exp| exp <= now) {
        return Err(invalid("the subject_token has expired"));
    }
    let meant_for_client = subject.str("client_id") == Some(client.client_id.as_str())
        || exchange::audiences(subject.as_map())
            .any(|a| a != ctx.issuer && client.metadata.serves.iter().any(|r| r == a));
    if !meant_for_client {
        return Err(invalid(
            "the subject_token is neither this client's nor for a resource server it serves",
        ));
    }
    let held_scope = subject.str("scope").unwrap_or_default().to_owned();
    Ok(SubjectToken {
        claims: subject.into_map(),
        held_scope,
        external: None,
        key: None,
    })
}

/// A personal API key as the subject: live, of an enabled user. The new token is theirs
/// (with a grant of its own, like another issuer's subject, so disabling the account ends
/// it) and never outlives the key. A key that is not one counts against the address, as a
/// wrong client secret does.
async fn key_subject(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
    token: &str,
) -> Result<SubjectToken, TokenError> {
    let Some(row) = ctx
        .api_keys
        .check(token, req.now, req.peer)
        .await
        .map_err(server_error)?
    else {
        req.audit(
            ctx,
            crate::audit::Event::new(
                crate::audit::EventType::ApiKeyFailure,
                crate::audit::Actor::Client(&req.client.client_id),
            )
            .client(&req.client.client_id)
            .details(json!({"where": "token_exchange", "key_id": crate::api_keys::key_id(token)})),
        )
        .await;
        return Err(invalid(
            "the subject_token is not a live API key (unknown, revoked or expired)",
        ));
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(row.user_id));
    if let Some(exp) = row.expires_at {
        claims.insert("exp".into(), json!(exp));
    }
    Ok(SubjectToken {
        claims,
        held_scope: row.scope,
        external: Some(("api_key".into(), row.user_id)),
        key: Some((row.id, row.resource)),
    })
}

/// A trusted issuer's JWT as the subject: verified against that issuer's keys, for a client
/// the issuer's configuration names, and linked to (or provisioning) an enabled account here.
async fn external_subject(
    ctx: &TokenContext<'_>,
    client: &Client,
    token: &str,
    now: i64,
) -> Result<SubjectToken, TokenError> {
    let ext = ctx
        .trusted_issuers
        .verify(token, now)
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
    let user_id = crate::federation::account_for(ctx.store, &ext, now)
        .await
        .map_err(server_error)?
        .ok_or_else(|| invalid("no account here is linked to the subject_token's subject"))?;
    if ctx
        .store
        .active_user(&user_id)
        .await
        .map_err(server_error)?
        .is_none()
    {
        return Err(invalid("the subject's account here is disabled"));
    }
    let held_scope = ext.held_scope();
    let issuer = ext.issuer.issuer.clone();
    Ok(SubjectToken {
        claims: ext.as_subject(&user_id),
        held_scope,
        external: Some((issuer, user_id)),
        key: None,
    })
}

/// Delegation names the actor: the client, by its own access token. Impersonation, only for
/// a client an administrator allowed it, names no one.
async fn actor<'c>(
    ctx: &TokenContext<'_>,
    client: &'c Client,
    actor_token: Option<&str>,
    req: &TokenRequest<'_>,
) -> Result<Option<&'c str>, TokenError> {
    match actor_token {
        Some(actor_token) => {
            if req.params.get("actor_token_type") != Some(ACCESS_TOKEN) {
                return Err(invalid(
                    "actor_token_type must be urn:ietf:params:oauth:token-type:access_token",
                ));
            }
            let actor = ctx
                .access_tokens()
                .verify(actor_token, req.now, Audience::AnyOurs)
                .await
                .map_err(|_| invalid("the actor_token is invalid, expired or revoked"))?;
            proven(&actor, req.dpop_jkt, "the actor_token")?;
            // The actor is the client itself: its own token, not someone else's.
            if actor.str("sub") != Some(client.client_id.as_str()) {
                return Err(invalid("the actor_token is not this client's"));
            }
            Ok(Some(client.client_id.as_str()))
        }
        None if client.metadata.token_exchange_impersonation => Ok(None),
        None => Err(invalid(
            "actor_token is required: this client may not impersonate",
        )),
    }
}
