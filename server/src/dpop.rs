//! RFC 9449 DPoP proofs where they arrive (`/token`, `/par`, the protected resources): the
//! proof's own checks (`oauth::dpop`), then the two that need shared state, so that every
//! instance on one database agrees: the `jti` is recorded in the store for as long as the
//! proof could be accepted (a replay is refused by any instance), and a server nonce
//! (§8, §9), when required, is an HMAC of the current time window under the pepper (any
//! instance issues and checks it without a round trip). No HTTP here.

use crate::clock::secs;
use crate::config::DpopConfig;
use crate::oauth::dpop::{Expect, Proof, check};
use crate::secrets::{Pepper, Purpose};
use crate::store::Store;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// `invalid_dpop_proof`, with its public description.
    Invalid(&'static str),
    /// `use_dpop_nonce`: the proof lacks a current nonce of ours.
    UseNonce,
    /// The store could not record the proof (logged): a server error, not the client's.
    Server,
}

/// What checking proofs needs: the store (for `jti`s), the pepper (for nonces), the settings.
#[derive(Clone, Copy)]
pub struct DpopProofs<'a> {
    pub store: &'a Store,
    pub pepper: &'a Pepper,
    pub config: &'a DpopConfig,
    pub issuer: &'a str,
}

impl DpopProofs<'_> {
    /// The URL a request for `path` reaches us at, as a proof's `htu` names it.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The nonce to hand out now (`DPoP-Nonce`), when nonces are required.
    pub fn nonce(&self, now: i64) -> Option<String> {
        self.config
            .require_nonce
            .then(|| self.nonce_for(now.div_euclid(self.window())))
    }

    fn window(&self) -> i64 {
        secs(self.config.nonce_lifetime).max(1)
    }

    fn nonce_for(&self, counter: i64) -> String {
        let mac = self
            .pepper
            .digest(Purpose::DpopNonce, counter.to_string().as_bytes());
        format!("{counter}.{mac}")
    }

    /// Whether `nonce` is one we handed out in this time window or the one before.
    fn nonce_is_current(&self, nonce: &str, now: i64) -> bool {
        let current = now.div_euclid(self.window());
        let Some((counter, mac)) = nonce.split_once('.') else {
            return false;
        };
        let Ok(counter) = counter.parse::<i64>() else {
            return false;
        };
        (counter == current || counter == current - 1)
            && self
                .pepper
                .verify(Purpose::DpopNonce, counter.to_string().as_bytes(), mac)
    }

    /// Checks one proof for a request to `path` with `method` (and, at a resource, the
    /// `access_token` presented): the proof's own rules, the nonce when required, and that its
    /// `jti` was not used before with this key (recorded now, so it never is again).
    pub async fn verify(
        &self,
        proof: &str,
        method: &str,
        path: &str,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<Proof, DpopError> {
        let url = self.url_of(path);
        let window = secs(self.config.proof_window);
        let proof = check(
            proof,
            &Expect {
                method,
                url: &url,
                access_token,
                now,
                window,
            },
        )
        .map_err(DpopError::Invalid)?;
        if self.config.require_nonce
            && !proof
                .nonce
                .as_deref()
                .is_some_and(|n| self.nonce_is_current(n, now))
        {
            return Err(DpopError::UseNonce);
        }
        // Remembered past the last instant the proof's iat would still pass (iat + window,
        // which may be up to twice the window after it arrived).
        let key = format!("dpop:{}:{}", proof.jkt, proof.jti);
        match self
            .store
            .use_assertion_jti(&key, proof.iat + window + 1)
            .await
        {
            Ok(true) => Ok(proof),
            Ok(false) => Err(DpopError::Invalid("the proof was used already")),
            Err(e) => {
                tracing::error!(error = %e, "recording a DPoP proof jti failed");
                Err(DpopError::Server)
            }
        }
    }
}
