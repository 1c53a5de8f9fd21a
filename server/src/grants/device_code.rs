//! RFC 8628 §3.4–3.5: the device polls with its device code. Until the user answers:
//! `authorization_pending` (or `slow_down`, adding 5 s to its interval, when it polls sooner
//! than its interval); then `access_denied`, or tokens once (the device code is consumed) and
//! a device record the user can see and remove; after 10 minutes `expired_token`.

use super::issue::{self, Issue, NewRefresh};
use super::{TokenContext, TokenRequest, TokenResponse, err, server_error};
use crate::clock::secs;
use crate::oauth::device::Approval;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::secrets::{Purpose, random_token};
use crate::store::{Authn, NewDevice, RefreshRow};

pub const PARAMETERS: &[&str] = &["device_code"];

/// Longest device code looked up; ours are 43 characters.
const MAX_DEVICE_CODE: usize = 64;

pub async fn redeem(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let code = req.required("device_code")?;
    if code.len() > MAX_DEVICE_CODE {
        return Err(err(T::InvalidGrant, "the device_code is not valid"));
    }
    let client = req.client;
    let now = req.now;
    let digests = ctx
        .pepper
        .lookup_digests(Purpose::DeviceCode, code.as_bytes());
    let row = ctx
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
    let taken = ctx
        .store
        .take_approved_device(&digests, &client.client_id, now)
        .await
        .map_err(server_error)?
        // Taken meanwhile by a concurrent poll, or its user was disabled since approving.
        .ok_or_else(|| err(T::InvalidGrant, "the device_code is no longer valid"))?;
    let approval: Approval = serde_json::from_str(&taken.authn).map_err(server_error)?;
    let authn = Authn {
        user_id: taken.user_id.clone(),
        sid: Some(approval.sid),
        auth_time: approval.auth_time,
        amr: approval.amr,
        acr: approval.acr,
    };
    let grant_id = random_token(16);
    let grant_expires_at = now + secs(ctx.tokens.refresh_token_lifetime);
    let made = ctx
        .store
        .create_grant(
            &grant_id,
            &client.client_id,
            &taken.user_id,
            now,
            grant_expires_at,
        )
        .await
        .map_err(server_error)?;
    if !made {
        return Err(err(T::InvalidGrant, "the user is no longer active"));
    }
    // The device is recorded before its tokens exist: a failure leaves nothing the user
    // cannot see and remove.
    let name = if client.metadata.client_name.is_empty() {
        client.client_id.as_str()
    } else {
        client.metadata.client_name.as_str()
    };
    ctx.store
        .insert_device(&NewDevice {
            id: &random_token(16),
            user_id: &taken.user_id,
            client_id: &client.client_id,
            grant_id: &grant_id,
            name,
            ip: req.peer,
            user_agent: req.user_agent,
            now,
        })
        .await
        .map_err(server_error)?;
    let refresh = if issue::refreshable(ctx, client, &taken.scope) {
        let next = NewRefresh::generate(ctx);
        let first = RefreshRow {
            grant_id: grant_id.clone(),
            client_id: client.client_id.clone(),
            scope: taken.scope.clone(),
            claims: None,
            authn: authn.clone(),
            expires_at: grant_expires_at,
            dpop_jkt: req.refresh_binding(),
            resource: None,
        };
        ctx.store
            .insert_refresh_token(&next.digest, &first, now)
            .await
            .map_err(server_error)?;
        Some(next.token)
    } else {
        None
    };
    let body = issue::user_tokens(
        ctx,
        req,
        &Issue {
            grant_id: &grant_id,
            scope: &taken.scope,
            authn: &authn,
            nonce: None,
            claims: None,
            audience: &req.audience,
        },
        refresh,
    )
    .await?;
    tracing::info!(client = %client.client_id, user = %taken.user_id, "device connected");
    Ok(body)
}
