//! OpenID Connect Back-Channel Logout 1.0: sending the logout tokens queued when sessions
//! end (the queue is the store's: `store::logout`). Every instance runs [`deliver_due`] every
//! few seconds; a delivery claimed by one is not taken by another until its lease runs out.
//! A token is signed when sent (with the client's id_token algorithm), POSTed as
//! `logout_token` to the client's `backchannel_logout_uri` under the outbound rules
//! (`outbound::Guard`: https, public addresses, no redirects, 5 s); a 200 or 204 is
//! delivered, anything else is retried with backoff, and the last failure is logged and
//! counted (`latchkey_backchannel_logouts_total{outcome="failed"}`).

use crate::clients::Clients;
use crate::config::BackchannelLogoutConfig;
use crate::keys::KeyService;
use crate::metrics::Metrics;
use crate::oauth::tokens::logout_token_claims;
use crate::outbound::Guard;
use crate::secrets::random_token;
use crate::store::{LogoutDelivery, LogoutOutcome, Store};

/// How long a claimed delivery is this instance's (seconds): longer than a batch can take
/// (10 sends of at most 5 s to resolve and 5 s to answer).
const LEASE: i64 = 300;
/// Deliveries claimed at once.
const BATCH: i64 = 10;
/// The first retry waits this long (seconds); each next one twice as long, up to an hour.
const FIRST_BACKOFF: i64 = 5;
const MAX_BACKOFF: i64 = 3600;

/// What sending logouts needs.
pub struct Sender<'a> {
    pub store: &'a Store,
    pub clients: Clients<'a>,
    pub keys: &'a KeyService,
    pub guard: &'a Guard,
    pub issuer: &'a str,
    pub config: &'a BackchannelLogoutConfig,
    pub metrics: &'a Metrics,
    /// Read for each send, so a token late in a batch is as fresh as the first.
    pub clock: &'a dyn crate::clock::Clock,
}

/// When the attempt after `attempts` failed ones is due.
pub fn next_attempt(now: i64, attempts: i64) -> i64 {
    let shift = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    now + FIRST_BACKOFF.saturating_mul(1i64 << shift).min(MAX_BACKOFF)
}

impl Sender<'_> {
    /// Claims the due deliveries and sends them; how many were claimed.
    pub async fn deliver_due(&self, now: i64) -> usize {
        let claimed = match self.store.claim_logouts(now, LEASE, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming back-channel logouts failed");
                return 0;
            }
        };
        for d in &claimed {
            let now = self.clock.now();
            let outcome = self.send(d, now).await;
            let label = match &outcome {
                LogoutOutcome::Delivered => {
                    tracing::info!(client = %d.client_id, "back-channel logout delivered");
                    "delivered"
                }
                LogoutOutcome::Retry { error, .. } => {
                    tracing::info!(client = %d.client_id, attempt = d.attempts + 1, error = %error, "back-channel logout failed; will retry");
                    "retry"
                }
                LogoutOutcome::Failed { error } => {
                    tracing::error!(client = %d.client_id, attempts = d.attempts + 1, error = %error, "back-channel logout given up");
                    "failed"
                }
            };
            self.metrics.observe_logout(label);
            if let Err(e) = self.store.finish_logout(d, &outcome, now).await {
                // The lease runs out and the delivery is tried again: at least once.
                tracing::warn!(error = %e, "recording a back-channel logout failed");
            }
        }
        claimed.len()
    }

    async fn send(&self, d: &LogoutDelivery, now: i64) -> LogoutOutcome {
        let fail = |error: String| {
            if d.attempts + 1 >= i64::from(self.config.max_attempts) {
                LogoutOutcome::Failed { error }
            } else {
                LogoutOutcome::Retry {
                    next_attempt_at: next_attempt(now, d.attempts),
                    error,
                }
            }
        };
        let client = match self.clients.find(&d.client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return LogoutOutcome::Failed {
                    error: "the client no longer exists".into(),
                };
            }
            Err(e) => return fail(format!("client lookup: {e}")),
        };
        let Some(uri) = client.metadata.backchannel_logout_uri.as_deref() else {
            return LogoutOutcome::Failed {
                error: "the client no longer has a backchannel_logout_uri".into(),
            };
        };
        let ring = match self.keys.keyring(now).await {
            Ok(r) => r,
            Err(e) => return fail(format!("keys: {e}")),
        };
        let claims = logout_token_claims(
            self.issuer,
            &client.client_id,
            &d.user_id,
            &d.sid,
            &random_token(16),
            now,
        );
        let token = match ring.sign(client.id_token_alg(), "logout+jwt", &claims) {
            Ok(t) => t,
            Err(e) => return fail(format!("signing: {e}")),
        };
        match self
            .guard
            .post_form(uri, "backchannel_logout_uri", &[("logout_token", &token)])
            .await
        {
            Ok(200 | 204) => LogoutOutcome::Delivered,
            Ok(status) => fail(format!("backchannel_logout_uri answered {status}")),
            Err(e) => fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_an_hour() {
        assert_eq!(next_attempt(100, 0), 105);
        assert_eq!(next_attempt(100, 1), 110);
        assert_eq!(next_attempt(100, 3), 140);
        assert_eq!(next_attempt(0, 15), 3600);
        assert_eq!(next_attempt(0, 1000), 3600);
    }
}
