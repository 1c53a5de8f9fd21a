//! The checks. Each returns an [`Outcome`]; a check that depends on an earlier one that
//! failed is skipped with that reason.

use std::collections::HashSet;

use openidconnect::core::{CoreJsonWebKeySet, CoreJsonWebKeyType};
use openidconnect::{JsonWebKey as _, JsonWebKeyAlgorithm};
use serde_json::Value;

use crate::report::{Outcome, Report};

pub async fn run_all(http: &reqwest::Client, issuer: &str, report: &mut Report) {
    let metadata = match discovery(http, issuer).await {
        Ok(m) => {
            report.record("discovery", Outcome::Pass);
            Some(m)
        }
        Err(why) => {
            report.record("discovery", Outcome::Fail(why));
            None
        }
    };
    match metadata {
        Some(m) => report.record("jwks", jwks(http, &m).await),
        None => report.record("jwks", Outcome::Skip("discovery failed".into())),
    }
}

/// OIDC Discovery §4: the document is JSON, served 200 with a JSON content type, and its
/// `issuer` is exactly the URL used (§4.3). Present fields have the types §3 gives them.
async fn discovery(http: &reqwest::Client, issuer: &str) -> Result<Value, String> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "content type is {content_type:?}, not application/json"
        ));
    }
    let doc: Value = resp
        .json()
        .await
        .map_err(|e| format!("body is not JSON: {e}"))?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(format!(
            "issuer {:?} differs from the URL used ({issuer:?})",
            doc.get("issuer")
        ));
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("jwks_uri is missing")?;
    url::Url::parse(jwks_uri).map_err(|e| format!("jwks_uri is not a URL: {e}"))?;
    for list in [
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "grant_types_supported",
        "scopes_supported",
        "claims_supported",
        "code_challenge_methods_supported",
        "token_endpoint_auth_methods_supported",
    ] {
        if let Some(v) = doc.get(list) {
            let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !ok {
                return Err(format!("{list} must be an array of strings"));
            }
        }
    }
    Ok(doc)
}

/// The JWKS parses with a certified RP library; every key has a `kid`, all distinct; no
/// private members; at least one RS256 key, the default id_token algorithm (OIDC Core §3.1.3.7).
async fn jwks(http: &reqwest::Client, metadata: &Value) -> Outcome {
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
