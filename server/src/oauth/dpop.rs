//! RFC 9449 DPoP proofs: the checks of §4.3 that need nothing but the proof and the request
//! (signature by the key in the header, `typ`, `alg`, `htm`, `htu`, `iat`, `jti`, `ath`).
//! Whether the `jti` was seen before and whether the `nonce` is ours are the caller's
//! (`crate::dpop`): they need the store and the pepper.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_jwks::{Alg, verify_embedded_key};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The algorithms a proof may be signed with (`dpop_signing_alg_values_supported`): all
/// asymmetric; `none` and HMAC cannot be named.
pub const PROOF_ALGS: [Alg; 4] = [Alg::Es256, Alg::EdDsa, Alg::Ps256, Alg::Rs256];

/// Longest `jti` accepted (it is stored until the proof is stale).
pub const MAX_JTI_LEN: usize = 128;
/// Longest `nonce` claim read.
pub const MAX_NONCE_LEN: usize = 256;

/// What the request a proof came with was.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The HTTP method, as sent (`POST`, `GET`).
    pub method: &'a str,
    /// The URL we are reached at for this request: the issuer and the path, no query.
    pub url: &'a str,
    /// At a protected resource: the access token presented, whose hash `ath` must be.
    pub access_token: Option<&'a str>,
    pub now: i64,
    /// How far `iat` may lie from `now`, either way, in seconds.
    pub window: i64,
}

/// A proof that passed every check here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what tokens are bound to (`cnf.jkt`).
    pub jkt: String,
    /// The algorithm the proof was signed with.
    pub alg: Alg,
    pub jti: String,
    pub iat: i64,
    pub nonce: Option<String>,
}

/// `ath`: base64url of the SHA-256 of the access token (RFC 9449 §4.2).
pub fn token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Checks a proof against the request it came with. The error is the public description of
/// an `invalid_dpop_proof`.
pub fn check(proof: &str, expect: &Expect<'_>) -> Result<Proof, &'static str> {
    let signed = verify_embedded_key(proof, &PROOF_ALGS, "dpop+jwt").map_err(|e| {
        use latchkey_jwks::VerifyError as V;
        match e {
            V::AlgNotAllowed(_) => {
                "the proof's alg is not one of dpop_signing_alg_values_supported"
            }
            V::WrongType => "the proof's typ must be dpop+jwt",
            V::EmbeddedKey => "the proof's jwk must be a public key for its alg",
            V::BadSignature => "the proof's signature does not verify",
            _ => "the proof is not a well-formed JWS",
        }
    })?;
    let c = &signed.claims;
    let str_claim = |name: &str| c.get(name).and_then(Value::as_str);
    let jti = str_claim("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or("the proof needs a jti (at most 128 characters)")?;
    if str_claim("htm") != Some(expect.method) {
        return Err("the proof's htm is not this request's method");
    }
    let htu = str_claim("htu").ok_or("the proof needs an htu")?;
    if !same_target(htu, expect.url) {
        return Err("the proof's htu is not this request's URL");
    }
    let iat = match c.get("iat") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        _ => None,
    }
    .ok_or("the proof needs an iat")?;
    if expect.now.abs_diff(iat) > expect.window.unsigned_abs() {
        return Err("the proof's iat is too far from now");
    }
    match (expect.access_token, str_claim("ath")) {
        (Some(token), Some(ath)) if ath == token_hash(token) => {}
        (Some(_), Some(_)) => return Err("the proof's ath is not the hash of this access token"),
        (Some(_), None) => return Err("a proof presented with an access token needs its ath"),
        (None, _) => {}
    }
    let nonce = match c.get("nonce") {
        None => None,
        Some(Value::String(n)) if n.len() <= MAX_NONCE_LEN => Some(n.clone()),
        Some(_) => return Err("the proof's nonce is malformed"),
    };
    Ok(Proof {
        alg: signed.alg,
        jkt: signed.thumbprint,
        jti: jti.to_owned(),
        iat,
        nonce,
    })
}

/// RFC 9449 §4.3 (9): `htu` names the request's URL, query and fragment ignored, compared after
/// RFC 3986 §6.2.2–6.2.3 normalisation (case of scheme and host, default port, dot segments).
fn same_target(htu: &str, url: &str) -> bool {
    let norm = |s: &str| {
        url::Url::parse(s).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u
        })
    };
    match (norm(htu), norm(url)) {
        (Some(a), Some(b)) => {
            a.username().is_empty() && a.password().is_none() && a.as_str() == b.as_str()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_jwks::PrivateKey;
    use serde_json::json;

    const URL: &str = "https://id.example.com/token";
    const NOW: i64 = 1_800_000_000;

    fn expect() -> Expect<'static> {
        Expect {
            method: "POST",
            url: URL,
            access_token: None,
            now: NOW,
            window: 60,
        }
    }

    fn proof(key: &PrivateKey, claims: Value) -> String {
        key.sign_with_embedded_key("dpop+jwt", claims.as_object().unwrap())
            .unwrap()
    }

    fn good() -> Value {
        json!({"jti": "a1", "htm": "POST", "htu": URL, "iat": NOW})
    }

    #[test]
    fn rfc9449_4_3_a_fresh_proof_names_its_key() {
        let key = PrivateKey::generate(Alg::Es256).unwrap();
        let p = check(&proof(&key, good()), &expect()).unwrap();
        assert_eq!(p.jkt, key.kid());
        assert_eq!(p.jti, "a1");
        // Query, fragment, case of scheme and host, default port: the same target.
        let mut c = good();
        c["htu"] = json!("HTTPS://ID.example.com:443/token?x=1#f");
        assert!(check(&proof(&key, c), &expect()).is_ok());
    }

    #[test]
    fn rfc9449_4_3_each_claim_is_checked() {
        let key = PrivateKey::generate(Alg::Es256).unwrap();
        let with = |k: &str, v: Value| {
            let mut c = good();
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v;
            }
            check(&proof(&key, c), &expect())
        };
        assert!(with("jti", Value::Null).is_err());
        assert!(with("jti", json!("x".repeat(129))).is_err());
        assert!(with("htm", json!("GET")).is_err());
        assert!(with("htm", json!("post")).is_err());
        assert!(with("htu", json!("https://id.example.com/userinfo")).is_err());
        assert!(with("htu", json!("https://other.example.com/token")).is_err());
        assert!(with("htu", json!("https://u:p@id.example.com/token")).is_err());
        assert!(with("htu", Value::Null).is_err());
        assert!(with("iat", json!(NOW - 61)).is_err());
        assert!(with("iat", json!(NOW + 61)).is_err());
        assert!(with("iat", json!(NOW - 60)).is_ok());
        assert!(with("iat", json!("now")).is_err());
        assert!(with("iat", json!(i64::MIN)).is_err());
        assert!(with("iat", json!(-1e300)).is_err());
        assert!(with("nonce", json!(5)).is_err());
    }

    #[test]
    fn rfc9449_7_ath_binds_the_proof_to_the_access_token() {
        let key = PrivateKey::generate(Alg::EdDsa).unwrap();
        let e = Expect {
            access_token: Some("the-token"),
            ..expect()
        };
        assert!(check(&proof(&key, good()), &e).is_err(), "ath required");
        let mut c = good();
        c["ath"] = json!(token_hash("other-token"));
        assert!(check(&proof(&key, c.clone()), &e).is_err());
        c["ath"] = json!(token_hash("the-token"));
        assert!(check(&proof(&key, c), &e).is_ok());
    }

    #[test]
    fn rfc9449_4_3_a_proof_signed_otherwise_is_refused() {
        let key = PrivateKey::generate(Alg::Es256).unwrap();
        let jwt = key
            .sign_with_embedded_key("JWT", good().as_object().unwrap())
            .unwrap();
        assert_eq!(
            check(&jwt, &expect()),
            Err("the proof's typ must be dpop+jwt")
        );
        let p = proof(&key, good());
        let mut parts: Vec<&str> = p.split('.').collect();
        let other = proof(
            &key,
            json!({"jti": "b", "htm": "POST", "htu": URL, "iat": NOW}),
        );
        parts[2] = other.split('.').nth(2).unwrap();
        assert!(check(&parts.join("."), &expect()).is_err());
    }
}
