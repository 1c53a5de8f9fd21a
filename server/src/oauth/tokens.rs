//! The claims of what we sign: id_tokens (OIDC Core §2, §3.1.3.6) and RFC 9068 JWT access
//! tokens. Pure: the caller signs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_jwks::Alg;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256, Sha512};

/// Access tokens are signed with ES256 (DESIGN: the default for access tokens), and only
/// that alg is accepted when they come back.
pub const ACCESS_TOKEN_ALG: Alg = Alg::Es256;

/// Who and how, for claims that describe the sign-in.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub auth_time: i64,
    pub amr: &'a [String],
    pub acr: &'a str,
    pub sid: Option<&'a str>,
}

pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: Subject<'a>,
    pub nonce: Option<&'a str>,
    pub access_token: Option<&'a str>,
    pub alg: Alg,
    pub now: i64,
    pub lifetime: i64,
    /// Extra claims the client asked for with the `claims` parameter and may have.
    pub extra: Map<String, Value>,
}

pub fn id_token_claims(i: &IdTokenInput<'_>) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), json!(i.issuer));
    c.insert("sub".into(), json!(i.subject.user_id));
    c.insert("aud".into(), json!(i.client_id));
    c.insert("exp".into(), json!(i.now + i.lifetime));
    c.insert("iat".into(), json!(i.now));
    c.insert("auth_time".into(), json!(i.subject.auth_time));
    if let Some(n) = i.nonce {
        c.insert("nonce".into(), json!(n));
    }
    c.insert("acr".into(), json!(i.subject.acr));
    c.insert("amr".into(), json!(i.subject.amr));
    if let Some(at) = i.access_token {
        c.insert("at_hash".into(), json!(left_half_hash(i.alg, at)));
    }
    if let Some(sid) = i.subject.sid {
        c.insert("sid".into(), json!(sid));
    }
    for (k, v) in &i.extra {
        c.entry(k.clone()).or_insert_with(|| v.clone());
    }
    c
}

/// OIDC Core §3.1.3.6 `at_hash`: the left half of the hash the signing algorithm uses
/// (SHA-256 for RS256/ES256; SHA-512 for EdDSA with Ed25519), base64url.
pub fn left_half_hash(alg: Alg, value: &str) -> String {
    match alg {
        Alg::Rs256 | Alg::Es256 | Alg::Ps256 => {
            let h = Sha256::digest(value.as_bytes());
            URL_SAFE_NO_PAD.encode(&h[..16])
        }
        Alg::EdDsa => {
            let h = Sha512::digest(value.as_bytes());
            URL_SAFE_NO_PAD.encode(&h[..32])
        }
    }
}

pub struct AccessTokenInput<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    /// The user, or the client itself for client_credentials (RFC 9068 §2.2).
    pub sub: &'a str,
    pub scope: &'a str,
    pub jti: &'a str,
    pub grant_id: Option<&'a str>,
    pub auth: Option<&'a Subject<'a>>,
    pub now: i64,
    pub lifetime: i64,
}

/// RFC 9068 §2.2 claims. `gid` names the grant, so revoking the grant deactivates the token.
pub fn access_token_claims(i: &AccessTokenInput<'_>) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), json!(i.issuer));
    c.insert("sub".into(), json!(i.sub));
    c.insert("aud".into(), json!(i.audience));
    c.insert("exp".into(), json!(i.now + i.lifetime));
    c.insert("iat".into(), json!(i.now));
    c.insert("jti".into(), json!(i.jti));
    c.insert("client_id".into(), json!(i.client_id));
    c.insert("scope".into(), json!(i.scope));
    if let Some(gid) = i.grant_id {
        c.insert("gid".into(), json!(gid));
    }
    if let Some(a) = i.auth {
        c.insert("auth_time".into(), json!(a.auth_time));
        c.insert("acr".into(), json!(a.acr));
        c.insert("amr".into(), json!(a.amr));
        if let Some(sid) = a.sid {
            c.insert("sid".into(), json!(sid));
        }
    }
    c
}

/// The `events` member of a logout token (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token's claims (Back-Channel Logout 1.0 §2.4): `iss`, `aud` the client, `iat`,
/// `exp` (two minutes), `jti`, `events`, `sub` and `sid`; never a `nonce`. Signed with
/// `typ: logout+jwt` (§2.4, RFC 8417-style explicit typing).
pub fn logout_token_claims(
    issuer: &str,
    client_id: &str,
    sub: &str,
    sid: &str,
    jti: &str,
    now: i64,
) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), json!(issuer));
    c.insert("aud".into(), json!(client_id));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + 120));
    c.insert("jti".into(), json!(jti));
    c.insert("sub".into(), json!(sub));
    c.insert("sid".into(), json!(sid));
    c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_oidc_core_example() {
        // OIDC Core A.3: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" is
        // "77QmUPtjPfzWtF2AnpK9RQ" with RS256.
        assert_eq!(
            left_half_hash(Alg::Rs256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
