//! Trusted issuers (`exchange.trusted_issuers`): another issuer's signed JWT stands for one of
//! its users as an RFC 8693 `subject_token`. The token is routed by its (unverified) `iss` to
//! that issuer's keys, then verified like any JWT here (allowlisted asymmetric algorithms,
//! `kid`, signature, `exp`/`nbf`/`iat`, exact `iss`, an allowed `aud`). Its subject is linked
//! to an account here on first sight: provisioned from a verified address, or, only where the
//! operator allowed it, linked to the account with that address; never by an unverified one.

use std::sync::Arc;

use latchkey_jwks::{Alg, Claims, PublicKeySet, VerifyError, VerifyOptions};
use serde_json::{Map, Value};

use crate::config::{Config, TrustedIssuerConfig};
use crate::outbound::JwksFetcher;
use crate::secrets::random_token;
use crate::store::{NewUser, Provisioned, Store, StoreError};

/// Clock skew tolerated on another issuer's `exp`, `nbf` and `iat`.
const LEEWAY: i64 = 30;
/// The longest `sub` linked.
const MAX_SUBJECT: usize = 255;

enum Keys {
    Inline(Arc<PublicKeySet>),
    Published { uri: String, fetcher: JwksFetcher },
}

struct Trusted {
    config: TrustedIssuerConfig,
    keys: Keys,
}

pub struct TrustedIssuers {
    issuers: Vec<Trusted>,
}

/// A verified token of a trusted issuer.
pub struct External<'a> {
    pub issuer: &'a TrustedIssuerConfig,
    pub claims: Claims,
}

impl TrustedIssuers {
    /// From the validated configuration (inline JWKS parse there already).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut issuers = Vec::new();
        for t in &config.exchange.trusted_issuers {
            let keys = match (&t.jwks, &t.jwks_uri) {
                (Some(jwks), _) => Keys::Inline(Arc::new(
                    PublicKeySet::from_jwks_value(jwks)
                        .map_err(|e| format!("trusted issuer {}: {e}", t.issuer))?,
                )),
                (None, Some(uri)) => Keys::Published {
                    uri: uri.clone(),
                    fetcher: if t.danger_allow_insecure_jwks_uri {
                        JwksFetcher::insecure()
                    } else {
                        JwksFetcher::new(config.danger_allow_private_jwks_uri)
                    },
                },
                (None, None) => return Err(format!("trusted issuer {} has no keys", t.issuer)),
            };
            issuers.push(Trusted {
                config: t.clone(),
                keys,
            });
        }
        Ok(Self { issuers })
    }

    /// Verifies `token` as a JWT of one of the trusted issuers. The error says why, for the
    /// log; the client is told less.
    pub async fn verify(&self, token: &str, now: i64) -> Result<External<'_>, String> {
        let unverified = latchkey_jwks::verify::unverified_payload(token)
            .ok_or_else(|| "not a JWT".to_owned())?;
        let iss = unverified.get("iss").and_then(Value::as_str);
        let trusted = self
            .issuers
            .iter()
            .find(|t| Some(t.config.issuer.as_str()) == iss)
            .ok_or_else(|| "the issuer is not trusted".to_owned())?;
        // The audience to check: one of the allowed ones that the token names (verification
        // checks it again, on the signed claims).
        let audience = allowed_audience(&trusted.config.audiences, unverified.get("aud"))
            .ok_or_else(|| "the audience is not one this issuer's tokens may have".to_owned())?;
        let opts = VerifyOptions {
            algs: &Alg::ALL,
            issuer: &trusted.config.issuer,
            audience,
            typ: None,
            now,
            leeway: LEEWAY,
        };
        let claims = match &trusted.keys {
            Keys::Inline(keys) => keys.verify(token, &opts).map_err(|e| e.to_string())?,
            Keys::Published { uri, fetcher } => {
                let keys = fetcher.keys(uri, now, false).await?;
                match keys.verify(token, &opts) {
                    // The issuer may have rotated: fetch once more (rate-limited).
                    Err(VerifyError::UnknownKid) => fetcher
                        .keys(uri, now, true)
                        .await?
                        .verify(token, &opts)
                        .map_err(|e| e.to_string())?,
                    other => other.map_err(|e| e.to_string())?,
                }
            }
        };
        match claims.str("sub") {
            Some(s) if !s.is_empty() && s.len() <= MAX_SUBJECT => {}
            _ => return Err("sub is missing or unusable".into()),
        }
        Ok(External {
            issuer: &trusted.config,
            claims,
        })
    }
}

fn allowed_audience<'a>(allowed: &'a [String], aud: Option<&Value>) -> Option<&'a str> {
    let named = |a: &str| match aud {
        Some(Value::String(s)) => s == a,
        Some(Value::Array(list)) => list.iter().any(|v| v.as_str() == Some(a)),
        _ => false,
    };
    allowed.iter().map(String::as_str).find(|a| named(a))
}

impl External<'_> {
    pub fn subject(&self) -> &str {
        self.claims.str("sub").unwrap_or_default()
    }

    /// What the token can be exchanged for: the issuer's scopes, narrowed by the token's own
    /// `scope` when it has one.
    pub fn held_scope(&self) -> String {
        let own: Option<Vec<&str>> = self
            .claims
            .str("scope")
            .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect());
        self.issuer
            .scopes
            .iter()
            .filter(|s| own.as_ref().is_none_or(|own| own.contains(&s.as_str())))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The subject token's claims as the new token sees them: the account here as `sub`, the
    /// token's expiry, and its `act` chain and `may_act` (`auth_time`, `amr` and `acr` are the
    /// other issuer's word on a sign-in we did not see, and are not carried over).
    pub fn as_subject(&self, user_id: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("sub".into(), Value::String(user_id.to_owned()));
        for name in ["exp", "act", "may_act"] {
            if let Some(v) = self.claims.get(name) {
                m.insert(name.into(), v.clone());
            }
        }
        m
    }

    /// The verified address, when the token vouches for one.
    fn verified_email(&self) -> Option<String> {
        let verified = self.claims.get("email_verified") == Some(&Value::Bool(true));
        let email = self.claims.str("email").filter(|_| verified)?;
        crate::signin::validate_email(email).ok()
    }
}

/// The account here for the token's subject: the one linked before; on first sight one
/// provisioned from the token's verified address, or (where the operator allowed it) the
/// account that has that address. `Ok(None)`: none can be, by policy.
pub async fn account_for(
    store: &Store,
    ext: &External<'_>,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let (issuer, subject) = (ext.issuer.issuer.as_str(), ext.subject());
    if let Some(id) = store.federated_user(issuer, subject).await? {
        return Ok(Some(id));
    }
    let Some(email) = ext.verified_email() else {
        return Ok(None);
    };
    if ext.issuer.link_verified_email
        && let Some(user) = store.user_by_email(&email).await?
    {
        let id = store.link_federated(issuer, subject, &user.id, now).await?;
        tracing::info!(issuer, user = %id, "federated identity linked by verified address");
        return Ok(Some(id));
    }
    if !ext.issuer.provision {
        return Ok(None);
    }
    let id = random_token(16);
    let name = ext
        .claims
        .str("name")
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 200);
    let user = NewUser {
        id: &id,
        email: &email,
        email_verified: true,
        name,
        password_hash: None,
        is_admin: false,
        now,
    };
    match store.provision_federated(issuer, subject, &user).await? {
        Provisioned::User(id) => {
            tracing::info!(issuer, user = %id, "account provisioned for a federated identity");
            Ok(Some(id))
        }
        Provisioned::EmailTaken => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_audience_must_be_an_allowed_one() {
        let allowed = vec!["https://id".to_owned(), "https://other".to_owned()];
        assert_eq!(
            allowed_audience(&allowed, Some(&json!("https://other"))),
            Some("https://other")
        );
        assert_eq!(
            allowed_audience(&allowed, Some(&json!(["x", "https://id"]))),
            Some("https://id")
        );
        assert_eq!(
            allowed_audience(&allowed, Some(&json!("https://evil"))),
            None
        );
        assert_eq!(allowed_audience(&allowed, Some(&json!(7))), None);
        assert_eq!(allowed_audience(&allowed, None), None);
    }
}
