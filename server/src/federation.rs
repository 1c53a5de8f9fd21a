//! Trusted issuers (`exchange.trusted_issuers`): another issuer's signed JWT stands for one of
//! its users as an RFC 8693 `subject_token`. The token is routed by its (unverified) `iss` to
//! that issuer's keys, then verified like any JWT here (allowlisted asymmetric algorithms,
//! `kid`, signature, `exp`/`nbf`/`iat`, exact `iss`, an allowed `aud`). Its subject is linked
//! to an account here on first sight: provisioned from a verified address, or, only where the
//! operator allowed it, linked to the account with that address; never by an unverified one.

use std::sync::Arc;

use latchkey_jwks::{Alg, Claims, PublicKeySet, VerifyOptions};
use serde_json::{Map, Value};

use crate::config::{Config, TrustedIssuerConfig};
use crate::outbound::{JwksFetcher, extra_roots};
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
                    // `danger_allow_private_jwks_uri` is about clients' keys; an issuer's
                    // are fetched from public addresses unless its own danger_ option says.
                    fetcher: if t.danger_allow_insecure_jwks_uri {
                        JwksFetcher::insecure(extra_roots(&config.outbound_ca_pem))
                    } else {
                        JwksFetcher::new(false, extra_roots(&config.outbound_ca_pem))
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
            Keys::Published { uri, fetcher } => fetcher
                .check(uri, now, |keys| keys.verify(token, &opts))
                .await?
                .map_err(|e| e.to_string())?,
        };
        // What kind of token: by default access tokens only, so a user's id_token (made for
        // the client that signed them in) does not stand for them here.
        if !trusted.config.typ.iter().any(|t| claims.typ_is(t)) {
            return Err(format!(
                "the token's typ {:?} is not one this issuer's tokens may have",
                claims.typ().unwrap_or("(none)")
            ));
        }
        match claims.str("sub") {
            Some(s) if !s.is_empty() && s.len() <= MAX_SUBJECT => {}
            _ => return Err("sub is missing or unusable".into()),
        }
        // The leeway is for clock skew in verification; a token that has run out is not
        // exchanged for one that has not.
        if claims.int("exp").is_none_or(|exp| exp <= now) {
            return Err("the token has expired".into());
        }
        own_scope(&claims)?;
        Ok(External {
            issuer: &trusted.config,
            claims,
        })
    }
}

/// The token's own scope: `scope` (a space-separated string, RFC 9068) or `scp` (a list of
/// strings, as some issuers write it); `Ok(None)` when it has neither; Err when either is
/// malformed, so a token whose scope cannot be read never counts as holding everything.
fn own_scope(claims: &Claims) -> Result<Option<Vec<&str>>, String> {
    match (claims.get("scope"), claims.get("scp")) {
        (None, None) => Ok(None),
        (Some(Value::String(s)), None) | (None, Some(Value::String(s))) => Ok(Some(words(s))),
        (None, Some(Value::Array(list))) => list
            .iter()
            .map(|v| v.as_str().ok_or_else(|| "scp is malformed".to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err("scope is malformed".into()),
    }
}

/// Marks every actor of an `act` chain (or a `may_act`) that names no issuer with `issuer`.
fn with_issuer(actor: &mut Map<String, Value>, issuer: &Value) {
    actor.entry("iss").or_insert_with(|| issuer.clone());
    if let Some(Value::Object(inner)) = actor.get_mut("act") {
        with_issuer(inner, issuer);
    }
}

fn words(s: &str) -> Vec<&str> {
    s.split(' ').filter(|w| !w.is_empty()).collect()
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

    /// Whether `client_id` may exchange this issuer's tokens.
    pub fn client_allowed(&self, client_id: &str) -> bool {
        self.issuer.clients.iter().any(|c| c == client_id)
    }

    /// What the token can be exchanged for: the issuer's scopes, narrowed by the token's own
    /// `scope` (or `scp`) when it has one.
    pub fn held_scope(&self) -> String {
        // Checked well-formed at verification; a malformed one would hold nothing.
        let own = own_scope(&self.claims).unwrap_or(Some(Vec::new()));
        self.issuer
            .scopes
            .iter()
            .filter(|s| own.as_ref().is_none_or(|own| own.contains(&s.as_str())))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The subject token's claims as the new token sees them: the account here as `sub`, the
    /// token's expiry, its `act` chain (each actor marked with the issuer that named it, since
    /// its `sub` is in that issuer's namespace, not ours) and `may_act` (read the same way).
    /// `auth_time`, `amr` and `acr` are the other issuer's word on a sign-in we did not see,
    /// and are not carried over.
    pub fn as_subject(&self, user_id: &str) -> Map<String, Value> {
        let issuer = Value::String(self.issuer.issuer.clone());
        let mut m = Map::new();
        m.insert("sub".into(), Value::String(user_id.to_owned()));
        if let Some(exp) = self.claims.int("exp") {
            m.insert("exp".into(), exp.into());
        }
        for name in ["act", "may_act"] {
            if let Some(Value::Object(v)) = self.claims.get(name) {
                let mut v = v.clone();
                with_issuer(&mut v, &issuer);
                m.insert(name.into(), Value::Object(v));
            }
        }
        m
    }

    /// The verified address, when the token vouches for one.
    fn verified_email(&self) -> Option<String> {
        let verified = self.claims.get("email_verified") == Some(&Value::Bool(true));
        let email = self.claims.str("email").filter(|_| verified)?;
        crate::input::validate_email(email).ok()
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
    // Only to an account whose address was verified here too, and only for plain ASCII
    // addresses (case folding beyond ASCII could make two addresses one).
    if ext.issuer.link_verified_email
        && email.is_ascii()
        && let Some(user) = store.user_by_email(&email).await?
        && user.email_verified
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
        .and_then(|n| crate::input::clean_label(n, 100));
    let user = NewUser {
        id: &id,
        email: &email,
        email_verified: true,
        name: name.as_deref(),
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
