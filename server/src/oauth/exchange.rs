//! RFC 8693 token exchange, the part without I/O: which scope and claims the new token gets.
//!
//! Delegation: the actor (the subject of the actor token) goes into `act`, with any `act`
//! chain of the subject token nested beneath it (§4.1), so a token passed user → A → B says
//! `act: {sub: B, act: {sub: A}}`. A `may_act` claim in the subject token (§4.4) names who may
//! act for the subject; another actor is refused. The new token never outlives the subject
//! token and keeps its grant (`gid`), so revoking the original grant ends every token
//! exchanged from it.

use serde_json::{Map, Value, json};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Whether `actor` (a client of `issuer`, us) may act for the subject: yes unless the subject
/// token's `may_act` names someone else: by `sub`, and by `iss` when it names an issuer.
pub fn may_act(subject: &Map<String, Value>, issuer: &str, actor: &str) -> bool {
    match subject.get("may_act") {
        None => true,
        Some(m) => {
            m.get("sub").and_then(Value::as_str) == Some(actor)
                && m.get("iss").is_none_or(|i| i.as_str() == Some(issuer))
        }
    }
}

/// The `aud` values of a token (a string or an array of them).
pub fn audiences(claims: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let list: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
}

/// When the new token expires: after its lifetime, and never after the subject token.
pub fn expiry(subject: &Map<String, Value>, now: i64, lifetime: i64) -> i64 {
    let subject_exp = subject.get("exp").and_then(Value::as_i64).unwrap_or(now);
    (now + lifetime).min(subject_exp)
}

/// What the new access token says.
pub struct Exchanged<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub jti: &'a str,
    pub now: i64,
    pub lifetime: i64,
    /// The verified claims of the subject token.
    pub subject: &'a Map<String, Value>,
    /// The actor's `sub` (delegation), or None (impersonation: no new `act`).
    pub actor: Option<&'a str>,
}

pub fn exchanged_claims(e: &Exchanged<'_>) -> Map<String, Value> {
    let mut c = Map::new();
    // Who the token is about, and how they signed in, come from the subject token.
    for name in ["sub", "auth_time", "acr", "amr", "sid", "gid"] {
        if let Some(v) = e.subject.get(name) {
            c.insert(name.into(), v.clone());
        }
    }
    c.insert("iss".into(), json!(e.issuer));
    c.insert("aud".into(), json!(e.audience));
    c.insert("client_id".into(), json!(e.client_id));
    c.insert("scope".into(), json!(e.scope));
    c.insert("jti".into(), json!(e.jti));
    c.insert("iat".into(), json!(e.now));
    c.insert("exp".into(), json!(expiry(e.subject, e.now, e.lifetime)));
    let prior = e.subject.get("act");
    match e.actor {
        Some(actor) => {
            let mut act = Map::new();
            act.insert("sub".into(), json!(actor));
            if let Some(prior) = prior {
                act.insert("act".into(), prior.clone());
            }
            c.insert("act".into(), Value::Object(act));
        }
        // Impersonation names no new actor; delegations before it stay on record.
        None => {
            if let Some(prior) = prior {
                c.insert("act".into(), prior.clone());
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn delegation_nests_the_act_chain_and_may_act_is_enforced() {
        let user_token = map(json!({"sub": "u1", "exp": 2_000, "gid": "g1", "scope": "s"}));
        let with = |subject: &Map<String, Value>, actor: Option<&'static str>| {
            exchanged_claims(&Exchanged {
                issuer: "https://id",
                audience: "https://api",
                client_id: actor.unwrap_or("impersonator"),
                scope: "s",
                jti: "j",
                now: 1_000,
                lifetime: 600,
                subject,
                actor,
            })
        };
        let base = |subject: &Map<String, Value>, actor: &'static str| with(subject, Some(actor));
        let by_a = base(&user_token, "svc-a");
        assert_eq!(by_a["act"], json!({"sub": "svc-a"}));
        assert_eq!(
            (by_a["sub"].clone(), by_a["gid"].clone()),
            (json!("u1"), json!("g1"))
        );
        let by_b = base(&by_a, "svc-b");
        assert_eq!(
            by_b["act"],
            json!({"sub": "svc-b", "act": {"sub": "svc-a"}})
        );
        // Never longer than the subject token.
        let short = map(json!({"sub": "u1", "exp": 1_100}));
        assert_eq!(base(&short, "svc-a")["exp"], 1_100);

        // Impersonation adds no actor and keeps the chain so far.
        assert!(with(&user_token, None).get("act").is_none());
        assert_eq!(with(&by_b, None)["act"], by_b["act"]);

        let named = map(json!({"sub": "u1", "may_act": {"sub": "svc-a"}}));
        assert!(may_act(&named, "https://id", "svc-a"));
        assert!(!may_act(&named, "https://id", "svc-b"));
        assert!(may_act(&user_token, "https://id", "anyone"));
        let elsewhere = map(json!({"may_act": {"sub": "svc-a", "iss": "https://other"}}));
        assert!(!may_act(&elsewhere, "https://id", "svc-a"));
        let here = map(json!({"may_act": {"sub": "svc-a", "iss": "https://id"}}));
        assert!(may_act(&here, "https://id", "svc-a"));
    }
}
