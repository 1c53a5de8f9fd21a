//! The keyring: which key signs, which keys are published, and when that changes.
//!
//! A key's state is derived from timestamps alone, so every instance reading the same rows
//! reaches the same answer without coordination or background jobs:
//! - **next**: `activates_at` is in the future. Published (relying parties learn it) but never signs.
//! - **active**: the latest key of its algorithm whose `activates_at` has come. Signs.
//! - **retired**: superseded by a later active key of the same algorithm. Still published, so
//!   tokens it signed keep verifying, until `retain_retired` (the longest token lifetime) has
//!   passed since it was superseded.
//! - **expired**: no longer published; nothing it signed can still be valid.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::alg::Alg;
use crate::b64;
use crate::kek::KekRing;
use crate::key::{KeyError, KeyRecord};
use crate::verify::{Claims, PublicKeySet, VerifyError, VerifyOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Seconds a new key is published before it signs, so caches of the JWKS hold it in time.
    pub publish_lead: i64,
    /// Seconds a superseded key stays published: the longest lifetime of a token it signed.
    pub retain_retired: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyState {
    Active,
    Next,
    Retired,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }

    pub fn is_published(self) -> bool {
        self != KeyState::Expired
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: String,
    pub alg: Alg,
    pub state: KeyState,
    pub created_at: i64,
    pub activates_at: i64,
    /// When a later key took over signing, if one has.
    pub retired_at: Option<i64>,
    /// When the key leaves the JWKS, if it is retired.
    pub unpublish_at: Option<i64>,
}

impl KeyStatus {
    /// Derives the state of every record at `now`.
    pub fn derive(records: &[KeyRecord], now: i64, policy: &KeyPolicy) -> Vec<KeyStatus> {
        let mut by_alg: BTreeMap<Alg, Vec<&KeyRecord>> = BTreeMap::new();
        for r in records {
            by_alg.entry(r.alg).or_default().push(r);
        }
        let mut out = Vec::with_capacity(records.len());
        for (_, mut keys) in by_alg {
            keys.sort_by(|a, b| {
                (a.activates_at, a.created_at, &a.kid).cmp(&(b.activates_at, b.created_at, &b.kid))
            });
            for (i, r) in keys.iter().enumerate() {
                // The first later key that has already activated takes over from this one.
                let retired_at = keys[i + 1..]
                    .iter()
                    .map(|s| s.activates_at)
                    .find(|&t| t <= now);
                let unpublish_at = retired_at.map(|t| t.saturating_add(policy.retain_retired));
                let state = if r.activates_at > now {
                    KeyState::Next
                } else {
                    match unpublish_at {
                        None => KeyState::Active,
                        Some(u) if u > now => KeyState::Retired,
                        Some(_) => KeyState::Expired,
                    }
                };
                out.push(KeyStatus {
                    kid: r.kid.clone(),
                    alg: r.alg,
                    state,
                    created_at: r.created_at,
                    activates_at: r.activates_at,
                    retired_at,
                    unpublish_at,
                });
            }
        }
        out.sort_by_key(|s| (s.alg, s.state, s.activates_at));
        out
    }
}

/// When a key generated now for `alg` should start signing: at once when nothing of that
/// algorithm signs yet (first start), otherwise after the publish lead.
pub fn activation_time(records: &[KeyRecord], alg: Alg, now: i64, policy: &KeyPolicy) -> i64 {
    let has_signer = records
        .iter()
        .any(|r| r.alg == alg && r.activates_at <= now);
    if has_signer {
        now.saturating_add(policy.publish_lead)
    } else {
        now
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("no active {0} signing key")]
    NoActiveKey(Alg),
    #[error("claims must be a JSON object that serialises")]
    Claims,
    #[error("signing failed")]
    Crypto,
}

struct Signer {
    kid: String,
    signer: crate::signer::Prepared,
}

/// A loaded keyring at one instant: the active signers, the published public keys, and the
/// JWKS document with its ETag.
pub struct Keyring {
    signers: BTreeMap<Alg, Signer>,
    public: PublicKeySet,
    statuses: Vec<KeyStatus>,
    jwks: String,
    etag: String,
    valid_until: i64,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("statuses", &self.statuses)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Builds the keyring from stored records. Only active keys are decrypted.
    pub fn load(
        records: &[KeyRecord],
        keks: &KekRing,
        now: i64,
        policy: &KeyPolicy,
    ) -> Result<Self, KeyError> {
        let statuses = KeyStatus::derive(records, now, policy);
        let mut signers = BTreeMap::new();
        let mut public = PublicKeySet::new();
        let mut jwks = Vec::new();
        let mut valid_until = i64::MAX;
        for st in statuses.iter().filter(|s| s.state.is_published()) {
            let Some(record) = records.iter().find(|r| r.kid == st.kid) else {
                continue;
            };
            let jwk = record.public()?;
            public
                .insert(&record.kid, record.alg, &jwk)
                .map_err(|e| KeyError::Stored {
                    kid: record.kid.clone(),
                    reason: e.to_string(),
                })?;
            jwks.push(Value::Object(jwk.as_ref().clone()));
            if st.state == KeyState::Active {
                let key = record.open(keks)?;
                let signer = crate::signer::Prepared::new(record.alg, key.private_jwk()).map_err(
                    |reason| KeyError::Stored {
                        kid: record.kid.clone(),
                        reason,
                    },
                )?;
                signers.insert(
                    record.alg,
                    Signer {
                        kid: record.kid.clone(),
                        signer,
                    },
                );
            }
            match st.state {
                KeyState::Next => valid_until = valid_until.min(st.activates_at),
                KeyState::Retired => {
                    valid_until = valid_until.min(st.unpublish_at.unwrap_or(i64::MAX))
                }
                _ => {}
            }
        }
        let jwks = json!({ "keys": jwks }).to_string();
        let etag = format!(
            "\"{}\"",
            b64::encode(&Sha256::digest(jwks.as_bytes())[..16])
        );
        Ok(Self {
            signers,
            public,
            statuses,
            jwks,
            etag,
            valid_until,
        })
    }

    /// Signs `claims` as a JWT with the active key of `alg`. `typ` goes in the header
    /// (`JWT`, `at+jwt`, `logout+jwt`, ...).
    pub fn sign(
        &self,
        alg: Alg,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, SignError> {
        let signer = self.signers.get(&alg).ok_or(SignError::NoActiveKey(alg))?;
        let header = json!({ "alg": alg.as_str(), "typ": typ, "kid": signer.kid });
        let header = serde_json::to_vec(&header).map_err(|_| SignError::Claims)?;
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::Claims)?;
        let mut token = b64::encode(header);
        token.push('.');
        token.push_str(&b64::encode(payload));
        let sig = signer
            .signer
            .sign(token.as_bytes())
            .map_err(|_| SignError::Crypto)?;
        token.push('.');
        token.push_str(&b64::encode(sig));
        Ok(token)
    }

    pub fn verify(&self, token: &str, opts: &VerifyOptions<'_>) -> Result<Claims, VerifyError> {
        self.public.verify(token, opts)
    }

    /// The kid that signs for `alg` now, if any.
    pub fn signing_kid(&self, alg: Alg) -> Option<&str> {
        self.signers.get(&alg).map(|s| s.kid.as_str())
    }

    /// Algorithms that have an active key.
    pub fn signing_algs(&self) -> impl Iterator<Item = Alg> + '_ {
        self.signers.keys().copied()
    }

    pub fn statuses(&self) -> &[KeyStatus] {
        &self.statuses
    }

    /// The JWKS document (RFC 7517 §5): every published public key.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// A strong ETag of the JWKS document.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// The first instant at which a state derived here changes (a next key activates or a
    /// retired key expires); a cache of this keyring must be rebuilt by then.
    pub fn valid_until(&self) -> i64 {
        self.valid_until
    }
}
