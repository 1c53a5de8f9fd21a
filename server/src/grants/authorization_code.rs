//! RFC 6749 §4.1.3 with RFC 7636 §4.5 and OIDC Core §3.1.3: the authorization code grant. The
//! code is single use, bound to the client it was issued to, the `redirect_uri` of the
//! authorization request and the PKCE challenge; a code presented again revokes everything
//! issued from it (§4.1.2). Taking the code, recording its grant and storing the first
//! refresh token are one transaction.

use super::issue::{self, Issue, NewRefresh};
use super::{TokenContext, TokenRequest, TokenResponse, err, server_error};
use crate::clock::secs;
use crate::oauth::error::{TokenError, TokenErrorCode as T};
use crate::oauth::pkce;
use crate::secrets::Purpose;
use crate::store::Redeemed;

pub const PARAMETERS: &[&str] = &["code", "redirect_uri", "code_verifier"];

pub async fn redeem(
    ctx: &TokenContext<'_>,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let code = req.required("code")?;
    let redirect_uri = req.required("redirect_uri")?;
    let verifier = req.required("code_verifier")?;
    let client = req.client;
    let digests = ctx
        .pepper
        .lookup_digests(Purpose::AuthorizationCode, code.as_bytes());
    let grant_expires_at = req.now + secs(ctx.tokens.refresh_token_lifetime);
    let mut refresh = None;
    let redeemed = ctx
        .store
        .redeem_code(
            &digests,
            &client.client_id,
            req.now,
            grant_expires_at,
            req.refresh_binding().as_deref(),
            |row| {
                if row.redirect_uri != redirect_uri {
                    return Err(err(
                        T::InvalidGrant,
                        "redirect_uri differs from the authorization request",
                    ));
                }
                // RFC 9449 §10: a code bound to a key (dpop_jkt) is redeemed with its proof.
                if let Some(jkt) = row.dpop_jkt.as_deref()
                    && req.dpop_jkt != Some(jkt)
                {
                    return Err(err(
                        T::InvalidGrant,
                        "the code is bound to a DPoP key this request does not prove",
                    ));
                }
                // RFC 8707: a token request may name the code's resource again, no other.
                issue::grant_audience(row.resource.as_deref(), req)?;
                if !pkce::verify_s256(verifier, &row.code_challenge) {
                    return Err(err(
                        T::InvalidGrant,
                        "code_verifier does not match the code_challenge",
                    ));
                }
                if !issue::refreshable(ctx, client, &row.scope) {
                    return Ok(None);
                }
                let next = NewRefresh::generate(ctx);
                let digest = next.digest.clone();
                refresh = Some(next.token);
                Ok(Some(digest))
            },
        )
        .await
        .map_err(server_error)?;
    let row = match redeemed {
        Redeemed::Fresh(row) => row,
        Redeemed::Refused(e) => return Err(e),
        Redeemed::Replayed(replay) => {
            issue::revoke_replayed(ctx, &replay, req.now).await?;
            tracing::warn!(client = %client.client_id, "authorization code replayed; its grant is revoked");
            {
                let mut e = crate::audit::Event::new(
                    crate::audit::EventType::CodeReplay,
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
                "the code was already used; tokens issued from it are revoked",
            ));
        }
        // Codes are never retried (RFC 6749 §4.1.2 denies every second use).
        Redeemed::Invalid | Redeemed::Retried(..) => {
            return Err(err(T::InvalidGrant, "the code is invalid or expired"));
        }
    };
    let audience = issue::grant_audience(row.resource.as_deref(), req)?;
    issue::user_tokens(
        ctx,
        req,
        &Issue {
            grant_id: &row.grant_id,
            scope: &row.scope,
            authn: &row.authn,
            nonce: row.nonce.as_deref(),
            claims: row.claims.as_ref(),
            audience,
        },
        refresh,
    )
    .await
}
