//! The JWKS check every happy flow starts with.

use std::collections::HashSet;

use openidconnect::core::{CoreJsonWebKeySet, CoreJsonWebKeyType};
use openidconnect::{JsonWebKey as _, JsonWebKeyAlgorithm};
use serde_json::Value;

use crate::report::Outcome;

/// The JWKS parses with a certified RP library; every key has a `kid`, all distinct; no
/// private members; at least one RS256 key, the default id_token algorithm (OIDC Core §3.1.3.7).
pub async fn jwks(http: &reqwest::Client, metadata: &Value) -> Outcome {
    let Some(uri) = metadata.get("jwks_uri").and_then(Value::as_str) else {
        return Outcome::Fail("jwks_uri is missing".into());
    };
    let resp = match http.get(uri).send().await {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => return Outcome::Fail(format!("GET {uri}: status {}", r.status())),
        Err(e) => return Outcome::Fail(format!("GET {uri}: {e}")),
    };
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(format!("GET {uri}: {e}")),
    };
    let raw: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(format!("JWKS is not JSON: {e}")),
    };
    let set: CoreJsonWebKeySet = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(format!("JWKS does not parse as a JWK set: {e}")),
    };
    if set.keys().is_empty() {
        return Outcome::Fail("JWKS has no keys".into());
    }
    let mut kids = HashSet::new();
    let mut has_rs256 = false;
    for key in set.keys() {
        let Some(kid) = key.key_id() else {
            return Outcome::Fail("a key has no kid".into());
        };
        if !kids.insert(kid.as_str().to_owned()) {
            return Outcome::Fail(format!("kid {} appears twice", kid.as_str()));
        }
        if *key.key_type() == CoreJsonWebKeyType::Symmetric {
            return Outcome::Fail(format!("key {} is a symmetric key", kid.as_str()));
        }
        if let JsonWebKeyAlgorithm::Algorithm(alg) = key.signing_alg() {
            has_rs256 |= *alg == openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        }
    }
    let private = ["d", "p", "q", "dp", "dq", "qi", "k"];
    if let Some(keys) = raw.get("keys").and_then(Value::as_array) {
        for k in keys {
            if let Some(m) = private.iter().find(|m| k.get(**m).is_some()) {
                return Outcome::Fail(format!("a published key has private member {m:?}"));
            }
        }
    }
    if !has_rs256 {
        return Outcome::Fail("no RS256 key: OIDC's default id_token algorithm".into());
    }
    Outcome::Pass
}
