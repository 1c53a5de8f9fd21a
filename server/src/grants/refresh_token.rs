//! RFC 6749 §6 with rotation (RFC 9700 §4.14.2): every use answers a new refresh token, of the
//! same grant, scope and absolute expiry; the scope of what is issued now may be narrowed,
//! never widened. A rotated token presented again revokes its whole family, except for the
//! retry grace: its (confidential) client presenting it again within
//! `tokens.refresh_retry_grace` (10 s) while the successor is still unused lost the answer,
//! and gets the same successor again (with a newly signed access token), never a second new
//! one. Public clients get no grace. Taking the token and storing
//! its successor are one transaction, so a crash or a refused request never leaves a login
//! without a live token.

use super::issue::{self, Issue, NewRefresh};
use super::{TokenContext, TokenRequest, TokenResponse, err, invalid_scope, server_error};
use crate::clock::secs;
use crate::oauth::client::{AuthMethod, GrantType};
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::scope;
use crate::secrets::Purpose;
use crate::store::{Redeemed, Successor};

pub const PARAMETERS: &[&str] = &["refresh_token", "scope"];

/// RFC 9449 §5.0: a refresh token bound to a DPoP key is used only with a proof by that key.
/// Refused before anything is written: the token stays the holder's.
fn bound_key_proven(bound: Option<&str>, req: &TokenRequest<'_>) -> Result<(), TokenError> {
    match bound {
        Some(jkt) if req.dpop_jkt != Some(jkt) => Err(err(
            T::InvalidGrant,
            "the refresh token is bound to a DPoP key this request does not prove",
        )),
        _ => Ok(()),
    }
}

pub async fn redeem(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let token = req.required("refresh_token")?;
    let client = req.client;
    let digests = ctx
        .pepper
        .lookup_digests(Purpose::RefreshToken, token.as_bytes());
    let mut narrowed = String::new();
    let mut successor = None;
    // No grace for public clients: anyone holding their token is them, so a retry could
    // not be told from a thief's replay.
    let grace = if client.metadata.token_endpoint_auth_method == AuthMethod::None {
        0
    } else {
        secs(ctx.tokens.refresh_retry_grace)
    };
    let rotated = ctx
        .store
        .rotate_refresh_token(&digests, &client.client_id, req.now, grace, |row| {
            bound_key_proven(row.dpop_jkt.as_deref(), req)?;
            issue::grant_audience(row.resource.as_deref(), req)?;
            narrowed =
                scope::at_refresh(req.params.get("scope"), &row.scope).map_err(invalid_scope)?;
            // The client may have lost the refresh_token grant, or the offline_access rule
            // changed, since: then this is the last access token of the grant.
            if !issue::refreshable(ctx, client, &row.scope) {
                return Ok(None);
            }
            let next = NewRefresh::generate(ctx);
            // Without a grace nothing needs the successor again: only its digest is kept.
            let stored = if grace > 0 {
                next.successor(ctx)?
            } else {
                Successor {
                    digest: next.digest.clone(),
                    sealed: String::new(),
                }
            };
            successor = Some(next.token);
            Ok(Some(stored))
        })
        .await
        .map_err(server_error)?;
    let row = match rotated {
        Redeemed::Fresh(row) => row,
        Redeemed::Retried(row, stored) => {
            bound_key_proven(row.dpop_jkt.as_deref(), req)?;
            narrowed =
                scope::at_refresh(req.params.get("scope"), &row.scope).map_err(invalid_scope)?;
            successor = Some(issue::open_successor(ctx, &stored)?);
            tracing::info!(client = %client.client_id, "refresh retried within the grace; the same successor is answered");
            row
        }
        Redeemed::Refused(e) => return Err(e),
        Redeemed::Replayed(replay) => {
            issue::revoke_replayed(ctx, &replay, req.now).await?;
            tracing::warn!(client = %client.client_id, "rotated refresh token reused; its family is revoked");
            {
                let mut e = crate::audit::Event::new(
                    crate::audit::EventType::TokenReuse,
                    crate::audit::Actor::Client(&client.client_id),
                )
                .client(&client.client_id)
                .details(serde_json::json!({"grant": replay.grant_id}));
                if let Some(user) = &replay.user_id {
                    e = e.subject(user);
                }
                req.audit(ctx, e).await;
            }
            return Err(err(
                T::InvalidGrant,
                "the refresh token was already used; its family is revoked",
            ));
        }
        Redeemed::Invalid => {
            return Err(err(
                T::InvalidGrant,
                "the refresh token is invalid, expired or revoked",
            ));
        }
    };
    // A device (RFC 8628) refreshing: it was last used now, from here. The token is rotated
    // already, so a failure here is logged, not answered.
    if client.has_grant(GrantType::DeviceCode) {
        let touched = ctx
            .store
            .touch_device(&row.grant_id, req.peer, req.user_agent, req.now)
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, "recording a device's last use failed");
        }
    }
    // RFC 8707: a refresh keeps the grant's resource.
    let audience = issue::grant_audience(row.resource.as_deref(), req)?;
    issue::user_tokens(
        ctx,
        req,
        &Issue {
            grant_id: &row.grant_id,
            scope: &narrowed,
            authn: &row.authn,
            nonce: None,
            claims: row.claims.as_ref(),
            audience,
        },
        successor,
    )
    .await
}
