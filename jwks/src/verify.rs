//! JWT verification (RFC 7519 §7.2, RFC 7515 §5.2, RFC 8725) against a set of published keys.
//!
//! The order of checks is fixed and each one has its own error, so a test can show that every
//! check is really there:
//! 1. size and compact shape;
//! 2. header: `alg` must be in the caller's allowlist for this use (never the token's word alone);
//!    `crit` must name only extensions we understand (none); `typ` when the use demands one;
//! 3. key: `kid` must name a published key, and that key's algorithm must equal `alg`
//!    (no algorithm confusion: an RSA or EC public key is never used as an HMAC secret);
//! 4. signature;
//! 5. claims: `exp` (required), `nbf`, `iat`, `iss`, `aud`.

use std::collections::HashMap;
use std::fmt;

use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::b64;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token is too large")]
    TooLarge,
    #[error("algorithm {0:?} is not allowed here")]
    AlgNotAllowed(String),
    #[error("unsupported critical header parameter {0:?}")]
    UnknownCrit(String),
    #[error("token type is not the one expected here")]
    WrongType,
    #[error("token has no kid")]
    MissingKid,
    #[error("no published key has this kid")]
    UnknownKid,
    #[error("the key named by kid is not a key for this algorithm")]
    AlgKeyMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("claim {0} is missing or malformed")]
    Claim(&'static str),
    #[error("issuer does not match")]
    WrongIssuer,
    #[error("audience does not match")]
    WrongAudience,
    #[error("the header's jwk is missing, not a public key, or not a key for its alg")]
    EmbeddedKey,
}

/// What a use of JWTs accepts. Every field is explicit; there is no default allowlist.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    pub algs: &'a [Alg],
    pub issuer: &'a str,
    pub audience: &'a str,
    /// The `typ` header this use requires (compared case-insensitively, with or without the
    /// `application/` prefix, RFC 7515 §4.1.9), or `None` to accept any.
    pub typ: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
}

/// The verified claims of a token, and the `typ` of its (verified) header. Only
/// [`PublicKeySet::verify`] makes one.
#[derive(Clone, PartialEq)]
pub struct Claims(Map<String, Value>, Option<String>);

impl Claims {
    /// The header's `typ`, if it has one (RFC 7515 §4.1.9).
    pub fn typ(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// Whether the header's `typ` is `want`, compared as media types (case-insensitively,
    /// with or without `application/`). A header without `typ` is an untyped JWT: it is `JWT`
    /// here (RFC 7519 §5.1 names that value for a JWT that says what it is only by shape).
    pub fn typ_is(&self, want: &str) -> bool {
        media_type_eq(self.typ().unwrap_or("JWT"), want)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(numeric_date)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claim names only: values may be personal data.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

struct PublicKey {
    alg: Alg,
    verifier: Box<dyn JwsVerifier>,
}

/// Public keys by `kid`, each bound to the one algorithm it was made for.
#[derive(Default)]
pub struct PublicKeySet {
    keys: HashMap<String, PublicKey>,
}

impl fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

impl PublicKeySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, kid: &str, alg: Alg, public: &Jwk) -> Result<(), josekit::JoseError> {
        let verifier = alg.verifier(public)?;
        self.keys
            .insert(kid.to_owned(), PublicKey { alg, verifier });
        Ok(())
    }

    /// Builds a set from a JWKS document (RFC 7517 §5). A key is bound to one algorithm: its
    /// `alg`, or when absent the one its type implies (RSA: RS256, EC P-256: ES256, OKP
    /// Ed25519: EdDSA). A key without `kid` gets its RFC 7638 thumbprint. Keys for other
    /// algorithms and encryption keys are skipped; private or symmetric material is refused.
    pub fn from_jwks_json(doc: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(doc).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        Self::from_jwks_value(&doc)
    }

    pub fn from_jwks_value(doc: &Value) -> Result<Self, String> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no keys array")?;
        let mut set = Self::new();
        for key in keys {
            let Value::Object(map) = key else { continue };
            if map
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            if ["d", "p", "q", "k"].iter().any(|m| map.contains_key(*m)) {
                return Err("a JWKS must not contain private or symmetric key material".into());
            }
            let implied = match (
                map.get("kty").and_then(Value::as_str),
                map.get("crv").and_then(Value::as_str),
            ) {
                (Some("RSA"), _) => Some(Alg::Rs256),
                (Some("EC"), Some("P-256")) => Some(Alg::Es256),
                (Some("OKP"), Some("Ed25519")) => Some(Alg::EdDsa),
                _ => None,
            };
            let alg = match map.get("alg").and_then(Value::as_str) {
                // An RSA key may name PS256 instead of the RS256 its type implies.
                Some(a) => match a.parse::<Alg>() {
                    Ok(alg) if Some(alg) == implied => alg,
                    Ok(Alg::Ps256) if implied == Some(Alg::Rs256) => Alg::Ps256,
                    _ => continue,
                },
                None => match implied {
                    Some(alg) => alg,
                    None => continue,
                },
            };
            let jwk = Jwk::from_map(map.clone()).map_err(|e| format!("key: {e}"))?;
            let kid = match map.get("kid").and_then(Value::as_str) {
                Some(k) => k.to_owned(),
                None => crate::key::thumbprint(&jwk)?,
            };
            set.insert(&kid, alg, &jwk)
                .map_err(|e| format!("key {kid}: {e}"))?;
        }
        Ok(set)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn verify(&self, token: &str, opts: &VerifyOptions<'_>) -> Result<Claims, VerifyError> {
        let Compact {
            h64,
            p64,
            s64,
            header,
            alg,
        } = Compact::parse(token, opts.algs)?;

        // 2. header
        if let Some(crit) = header.get("crit") {
            let names = crit.as_array().ok_or(VerifyError::Malformed("crit"))?;
            // RFC 7515 §4.1.11: an empty list is not allowed; we understand no extension.
            let first = names.first().ok_or(VerifyError::Malformed("crit"))?;
            return Err(VerifyError::UnknownCrit(
                first.as_str().unwrap_or_default().to_owned(),
            ));
        }
        if let Some(want) = opts.typ {
            let typ = header
                .get("typ")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !media_type_eq(typ, want) {
                return Err(VerifyError::WrongType);
            }
        }

        // 3. key: named by `kid`; a set of one key may be used without one (client JWKS often
        // hold a single key and their assertions name none).
        let key = match header.get("kid").and_then(Value::as_str) {
            Some(kid) => self.keys.get(kid).ok_or(VerifyError::UnknownKid)?,
            None if self.keys.len() == 1 => {
                self.keys.values().next().ok_or(VerifyError::MissingKid)?
            }
            None => return Err(VerifyError::MissingKid),
        };
        if key.alg != alg {
            return Err(VerifyError::AlgKeyMismatch);
        }

        // 4. signature over the exact bytes received
        let signature = b64::decode(s64).ok_or(VerifyError::Malformed("signature"))?;
        let signing_input = &token[..h64.len() + 1 + p64.len()];
        key.verifier
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature)?;

        // 5. claims
        let claims = decode_json(p64).ok_or(VerifyError::Malformed("payload"))?;
        check_claims(&claims, opts)?;
        let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
        Ok(Claims(claims, typ))
    }
}

/// A compact JWS taken apart: its three parts, its decoded header, and its `alg`, which is in
/// the caller's allowlist (checks 1 and the first of 2).
struct Compact<'t> {
    h64: &'t str,
    p64: &'t str,
    s64: &'t str,
    header: Map<String, Value>,
    alg: Alg,
}

impl<'t> Compact<'t> {
    fn parse(token: &'t str, algs: &[Alg]) -> Result<Self, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not a compact JWS"));
        };
        let header = decode_json(h64).ok_or(VerifyError::Malformed("header"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(VerifyError::Malformed("alg"))?;
        let alg = match alg.parse::<Alg>() {
            Ok(a) if algs.contains(&a) => a,
            _ => return Err(VerifyError::AlgNotAllowed(alg.to_owned())),
        };
        Ok(Self {
            h64,
            p64,
            s64,
            header,
            alg,
        })
    }
}

fn check_claims(claims: &Map<String, Value>, opts: &VerifyOptions<'_>) -> Result<(), VerifyError> {
    let date = |name: &'static str| -> Result<Option<i64>, VerifyError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => numeric_date(v).map(Some).ok_or(VerifyError::Claim(name)),
        }
    };
    let exp = date("exp")?.ok_or(VerifyError::Claim("exp"))?;
    if opts.now >= exp.saturating_add(opts.leeway) {
        return Err(VerifyError::Expired);
    }
    // Neither `nbf` nor `iat` may lie in the future.
    for name in ["nbf", "iat"] {
        if date(name)?.is_some_and(|t| opts.now.saturating_add(opts.leeway) < t) {
            return Err(VerifyError::NotYetValid);
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(opts.issuer) {
        return Err(VerifyError::WrongIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == opts.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(opts.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(VerifyError::WrongAudience);
    }
    Ok(())
}

/// RFC 7519 §2 NumericDate: seconds, possibly fractional.
fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
}

/// A JWS verified with the public key in its own header (`jwk`, RFC 7515 §4.1.3), as RFC 9449
/// DPoP proofs are: what it proves is possession of that key, named by its RFC 7638
/// thumbprint. Claims are not checked here (a proof has no `exp`, `iss` or `aud`): that is the
/// caller's protocol.
#[derive(Clone, PartialEq)]
pub struct SelfSigned {
    /// RFC 7638 thumbprint of the header's key (SHA-256, base64url): `jkt`.
    pub thumbprint: String,
    pub alg: Alg,
    pub claims: Map<String, Value>,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("thumbprint", &self.thumbprint)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// RSA moduli accepted in a header's key, in bits: at least 2048 (RFC 7518 §3.3), and at most
/// 4096, so a proof cannot be made arbitrarily expensive to verify.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// The number of significant bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let significant: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    match significant.first() {
        None => 0,
        Some(first) => (significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// Verifies a JWS signed by the key its header carries. The order of checks: size and shape;
/// `alg` in `algs` (never `none` or HMAC: [`Alg`] cannot name them); no `crit`; `typ` equal to
/// `typ`; `jwk` a public key (no private or symmetric members) of the type `alg` needs, RSA at
/// least 2048 bits; the signature; the payload a JSON object.
pub fn verify_embedded_key(
    token: &str,
    algs: &[Alg],
    typ: &str,
) -> Result<SelfSigned, VerifyError> {
    let Compact {
        h64,
        p64,
        s64,
        header,
        alg,
    } = Compact::parse(token, algs)?;
    if header.contains_key("crit") {
        return Err(VerifyError::UnknownCrit(String::new()));
    }
    let got_typ = header
        .get("typ")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !media_type_eq(got_typ, typ) {
        return Err(VerifyError::WrongType);
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(VerifyError::EmbeddedKey);
    };
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|m| jwk.contains_key(*m))
    {
        return Err(VerifyError::EmbeddedKey);
    }
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    let fits = match alg {
        Alg::Es256 => kty == Some("EC") && crv == Some("P-256"),
        Alg::EdDsa => kty == Some("OKP") && crv == Some("Ed25519"),
        Alg::Rs256 | Alg::Ps256 => {
            let part = |name: &str| jwk.get(name).and_then(Value::as_str).and_then(b64::decode);
            kty == Some("RSA")
                && part("n").is_some_and(|n| RSA_MODULUS_BITS.contains(&bit_length(&n)))
                && part("e").is_some_and(|e| {
                    // An odd public exponent of at most 32 bits (65537 in practice): a huge one
                    // would make every check of a proof anyone can send expensive.
                    let bits = bit_length(&e);
                    (2..=32).contains(&bits) && e.last().is_some_and(|b| b & 1 == 1)
                })
        }
    };
    if !fits {
        return Err(VerifyError::EmbeddedKey);
    }
    let jwk = Jwk::from_map(jwk.clone()).map_err(|_| VerifyError::EmbeddedKey)?;
    let verifier = alg.verifier(&jwk).map_err(|_| VerifyError::EmbeddedKey)?;
    let signature = b64::decode(s64).ok_or(VerifyError::Malformed("signature"))?;
    let signing_input = &token[..h64.len() + 1 + p64.len()];
    verifier
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature)?;
    let claims = decode_json(p64).ok_or(VerifyError::Malformed("payload"))?;
    let thumbprint = crate::key::thumbprint(&jwk).map_err(|_| VerifyError::EmbeddedKey)?;
    Ok(SelfSigned {
        thumbprint,
        alg,
        claims,
    })
}

/// The payload of a compact JWS, NOT verified: only to route a token to the keys that will
/// verify it (its `iss`, a client assertion's `sub`). Nothing read here may be trusted.
pub fn unverified_payload(token: &str) -> Option<Map<String, Value>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    decode_json(token.split('.').nth(1)?)
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = b64::decode(part)?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn media_type_eq(got: &str, want: &str) -> bool {
    let strip = |s: &str| {
        let s = s.trim();
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => s[12..].to_owned(),
            _ => s.to_owned(),
        }
    };
    strip(got).eq_ignore_ascii_case(&strip(want))
}
