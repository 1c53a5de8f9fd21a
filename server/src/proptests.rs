//! Property tests of every parser of outside input: form and query parameters, `Authorization:
//! Basic`, JWTs and their JOSE headers, DPoP proofs, redirect URIs, scopes, the OIDC `claims`
//! parameter and registration metadata. For any input: no panic, and a refusal is one of the
//! errors the RFC names. The black-box half (random bytes through the HTTP endpoints, on
//! SQLite and PostgreSQL) is in `tests/blackbox/input.rs`.
//!
//! The case count and seed come from `PROPTEST_CASES` and `PROPTEST_RNG_SEED`
//! (defaults 256 and a fixed seed), so a run is repeatable; `.ci/run` sets and prints both.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::oauth::client::{MetadataError, validate_redirect_uri};
use crate::oauth::error::TokenErrorCode as T;
use crate::oauth::params::{Params, ParamsError};

/// The seed when `PROPTEST_RNG_SEED` is unset.
const DEFAULT_SEED: u64 = 0x1a7c_4e11;

/// The configuration every property here runs with; prints what it uses (cargo shows it
/// with a failing test).
pub fn config() -> Config {
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    eprintln!("PROPTEST_RNG_SEED={seed} PROPTEST_CASES={cases}");
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Bytes that look like a form body more often than uniform bytes would.
fn form_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"%FF".to_vec()),
        Just(b"+".to_vec()),
        Just(b"client_id".to_vec()),
        Just(b"scope".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// Strings shaped like compact JWTs: three (sometimes two or four) dot-separated parts of
/// base64url of arbitrary bytes or JSON.
fn jwt_like() -> impl Strategy<Value = String> {
    use base64::Engine as _;
    let part = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"alg":"none"}"#.to_vec()),
        Just(br#"{"alg":"ES256","kid":"x","crit":["b64"]}"#.to_vec()),
        Just(br#"{"alg":"HS256","typ":"JWT"}"#.to_vec()),
        Just(br#"{"alg":"RS256","jwk":{"kty":"RSA"}}"#.to_vec()),
        Just(br#"{"iss":1,"aud":[],"exp":"soon"}"#.to_vec()),
    ]
    .prop_map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b));
    prop_oneof![
        proptest::collection::vec(part.clone(), 3..4),
        proptest::collection::vec(part, 0..6),
    ]
    .prop_map(|parts| parts.join("."))
}

/// A key set with one ES256 key, for the JWT properties.
/// The key random DPoP proofs are signed with, so their claims (not just their shape) are
/// what the checks see.
static PROOF_KEY: std::sync::LazyLock<latchkey_jwks::PrivateKey> = std::sync::LazyLock::new(|| {
    latchkey_jwks::PrivateKey::generate(latchkey_jwks::Alg::Es256).expect("a key")
});

/// Claims of a proof: each claim missing, of the wrong type, or a value near or far from
/// the right one.
fn proof_claims() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let text = |good: &'static str| {
        prop_oneof![
            Just(Value::Null),
            Just(json!(good)),
            any::<String>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
        ]
    };
    let iat = prop_oneof![
        Just(Value::Null),
        (-120i64..120).prop_map(|d| json!(1_700_000_000 + d)),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
    ];
    (
        text("j-1"),
        text("POST"),
        text("https://issuer.example/token"),
        iat,
        text("ath-value"),
        text("n"),
    )
        .prop_map(|(jti, htm, htu, iat, ath, nonce)| {
            let mut c = serde_json::Map::new();
            for (k, v) in [
                ("jti", jti),
                ("htm", htm),
                ("htu", htu),
                ("iat", iat),
                ("ath", ath),
                ("nonce", nonce),
            ] {
                if !v.is_null() {
                    c.insert(k.into(), v);
                }
            }
            Value::Object(c)
        })
}

static KEYS: std::sync::LazyLock<latchkey_jwks::PublicKeySet> = std::sync::LazyLock::new(|| {
    let key = latchkey_jwks::PrivateKey::generate(latchkey_jwks::Alg::Es256).unwrap();
    let mut set = latchkey_jwks::PublicKeySet::new();
    set.insert("x", latchkey_jwks::Alg::Es256, key.public_jwk())
        .unwrap();
    set
});

proptest! {
    #![proptest_config(config())]

    #[test]
    fn form_and_query_parameters(raw in form_bytes()) {
        match Params::parse(&raw) {
            Ok(p) => {
                // What parses holds no NUL and survives a round trip.
                let again = Params::parse(p.encode().as_bytes()).unwrap();
                prop_assert_eq!(&again, &p);
                prop_assert!(!p.encode().contains("%00"));
            }
            Err(ParamsError::Repeated(_) | ParamsError::TooLong(_) | ParamsError::TooMany
                | ParamsError::NotUtf8(_) | ParamsError::Nul(_)) => {}
        }
    }

    #[test]
    fn basic_authorization_headers(
        scheme in prop_oneof![Just("Basic "), Just("basic "), Just("Bearer "), Just("")],
        credentials in prop_oneof![
            any::<String>(),
            any::<(String, String)>().prop_map(|(a, b)| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(format!("{a}:{b}"))
            }),
        ],
        body in form_bytes(),
    ) {
        let header = format!("{scheme}{credentials}");
        let params = Params::parse(&body).unwrap_or_default();
        if let Err(e) = crate::oauth::client_auth::presented(Some(&header), &params) {
            prop_assert!(matches!(e.code, T::InvalidClient | T::InvalidRequest), "{:?}", e.code);
        }
    }

    #[test]
    fn jwts_and_jose_headers(token in jwt_like(), junk in any::<String>()) {
        let set = &*KEYS;
        let opts = latchkey_jwks::VerifyOptions {
            algs: &latchkey_jwks::Alg::ALL,
            issuer: "https://issuer.example",
            audience: "client",
            typ: None,
            now: 1_700_000_000,
            leeway: 60,
        };
        for t in [token.as_str(), junk.as_str()] {
            prop_assert!(set.verify(t, &opts).is_err(), "an unsigned token verified: {}", t);
            let _ = latchkey_jwks::verify::unverified_payload(t);
        }
    }

    #[test]
    fn dpop_proofs(token in jwt_like(), junk in any::<String>()) {
        // A proof that nobody signed never passes; nothing panics on the way.
        let expect = crate::oauth::dpop::Expect {
            method: "POST",
            url: "https://issuer.example/token",
            access_token: Some("at"),
            now: 1_700_000_000,
            window: 60,
        };
        for t in [token.as_str(), junk.as_str()] {
            prop_assert!(crate::oauth::dpop::check(t, &expect).is_err(), "an unsigned proof passed: {}", t);
        }
    }

    #[test]
    fn signed_dpop_proofs(claims in proof_claims()) {
        // Signed, so every claim check runs: no panic, and a proof that passes meets each rule.
        let expect = crate::oauth::dpop::Expect {
            method: "POST",
            url: "https://issuer.example/token",
            access_token: None,
            now: 1_700_000_000,
            window: 60,
        };
        let proof = PROOF_KEY
            .sign_with_embedded_key("dpop+jwt", claims.as_object().expect("an object"))
            .expect("signed");
        if let Ok(p) = crate::oauth::dpop::check(&proof, &expect) {
            prop_assert_eq!(claims["htm"].as_str(), Some("POST"));
            prop_assert_eq!(claims["htu"].as_str(), Some("https://issuer.example/token"));
            prop_assert!((p.iat - 1_700_000_000).abs() <= 60);
            prop_assert!(!p.jti.is_empty() && p.jti.len() <= 128);
        }
    }

    #[test]
    fn redirect_uris(uri in any::<String>(), registered in proptest::collection::vec(any::<String>(), 0..3)) {
        if let Err(e) = validate_redirect_uri(&uri) {
            prop_assert!(matches!(e, MetadataError::InvalidRedirectUri(_)));
        }
        let _ = crate::oauth::redirect::matches_registered(&uri, &registered, true);
        let _ = crate::oauth::redirect::matches_registered(&uri, &registered, false);
        // An exact match of a valid registered URI always matches.
        if validate_redirect_uri(&uri).is_ok() {
            prop_assert!(crate::oauth::redirect::matches_registered(&uri, std::slice::from_ref(&uri), false));
        }
    }

    #[test]
    fn scopes(scope in any::<String>()) {
        if let Ok(tokens) = crate::oauth::scope::parse_scope(&scope) {
            for t in tokens {
                // RFC 6749 §3.3: NQCHAR, at least one.
                prop_assert!(!t.is_empty());
                prop_assert!(t.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)));
            }
        }
    }

    #[test]
    fn claims_parameter(text in prop_oneof![
        any::<String>(),
        Just(r#"{"id_token":{"email":null},"userinfo":{"name":{"essential":true}}}"#.to_owned()),
        Just(r#"{"id_token":[]}"#.to_owned()),
    ]) {
        let _ = crate::oauth::claims::ClaimsRequest::parse(&text);
    }

    #[test]
    fn registration_metadata(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        (any::<String>(), any::<String>(), any::<String>()).prop_map(|(uri, scope, method)| {
            serde_json::json!({
                "redirect_uris": [uri],
                "scope": scope,
                "token_endpoint_auth_method": method,
                "grant_types": ["authorization_code", method],
            })
            .to_string()
            .into_bytes()
        }),
    ]) {
        let parsed = crate::oauth::registration::RegistrationRequest::parse(&body)
            .and_then(crate::oauth::registration::RegistrationRequest::into_metadata);
        if let Err(e) = parsed {
            prop_assert!(matches!(e.code(), "invalid_client_metadata" | "invalid_redirect_uri"));
        }
    }

    #[test]
    fn authorization_requests(raw in form_bytes(), uri in any::<String>()) {
        let mut params = Params::parse(&raw).unwrap_or_default();
        params.insert("client_id", "c".to_owned());
        params.insert("redirect_uri", uri);
        let _ = crate::oauth::authorize::validate(&params, None);
    }
}
