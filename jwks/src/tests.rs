//! Each rejection of `verify` and each keyring transition, proved by a test that fails when
//! the check is taken out (the error variant is asserted, not just "some error").

use josekit::jws::HS256;
use serde_json::{Map, Value, json};

use crate::b64;
use crate::*;

const ISS: &str = "https://id.example.com";
const AUD: &str = "api";
const NOW: i64 = 1_700_000_000;
const POLICY: KeyPolicy = KeyPolicy {
    publish_lead: 600,
    retain_retired: 3600,
};

fn keks() -> KekRing {
    KekRing::new(vec![Kek::new("kek1", &[9; 32])]).unwrap()
}

fn claims() -> Map<String, Value> {
    json!({ "iss": ISS, "aud": AUD, "sub": "u1", "iat": NOW, "exp": NOW + 300 })
        .as_object()
        .unwrap()
        .clone()
}

fn opts(algs: &[Alg]) -> VerifyOptions<'_> {
    VerifyOptions {
        algs,
        issuer: ISS,
        audience: AUD,
        typ: None,
        now: NOW,
        leeway: 0,
    }
}

struct Fixture {
    records: Vec<KeyRecord>,
    ring: Keyring,
}

fn fixture() -> Fixture {
    let keks = keks();
    let records: Vec<KeyRecord> = Alg::ALL
        .iter()
        .map(|&alg| {
            PrivateKey::generate(alg)
                .unwrap()
                .seal(&keks, NOW - 10, NOW - 10)
                .unwrap()
        })
        .collect();
    let ring = Keyring::load(&records, &keks, NOW, &POLICY).unwrap();
    Fixture { records, ring }
}

fn kid_of(f: &Fixture, alg: Alg) -> String {
    f.ring.signing_kid(alg).unwrap().to_owned()
}

/// Signs `header.payload` with an arbitrary header using a stored key.
fn sign_raw(f: &Fixture, alg: Alg, header: Value, payload: &Map<String, Value>) -> String {
    let record = f.records.iter().find(|r| r.alg == alg).unwrap();
    let key = record.open(&keks()).unwrap();
    let signer = alg.signer(key.private_jwk()).unwrap();
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(Value::Object(payload.clone()).to_string())
    );
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(sig))
}

#[test]
fn signed_token_verifies_for_every_alg() {
    let f = fixture();
    for alg in Alg::ALL {
        let t = f.ring.sign(alg, "JWT", &claims()).unwrap();
        let c = f.ring.verify(&t, &opts(&[alg])).unwrap();
        assert_eq!(c.str("sub"), Some("u1"));
    }
}

/// The prepared signers make the signatures josekit's own verifiers accept, and ECDSA's are
/// fresh each time (a repeated nonce would give the key away).
#[test]
fn prepared_signatures_verify_with_josekit_and_ecdsa_nonces_differ() {
    use josekit::jws::{ES256, RS256};
    let f = fixture();
    for alg in [Alg::Es256, Alg::Rs256] {
        let t = f.ring.sign(alg, "JWT", &claims()).unwrap();
        let public = f
            .records
            .iter()
            .find(|r| r.alg == alg)
            .unwrap()
            .public()
            .unwrap();
        let verifier: Box<dyn josekit::jws::JwsVerifier> = match alg {
            Alg::Es256 => Box::new(ES256.verifier_from_jwk(&public).unwrap()),
            _ => Box::new(RS256.verifier_from_jwk(&public).unwrap()),
        };
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig = b64::decode(sig).unwrap();
        assert_eq!(sig.len(), if alg == Alg::Es256 { 64 } else { 256 });
        verifier.verify(input.as_bytes(), &sig).unwrap();
        let again = f.ring.sign(alg, "JWT", &claims()).unwrap();
        assert_eq!(
            t == again,
            alg == Alg::Rs256,
            "{alg}: ECDSA signs anew each time"
        );
    }
}

#[test]
fn rejects_alg_none() {
    let f = fixture();
    let kid = kid_of(&f, Alg::Es256);
    let t = format!(
        "{}.{}.",
        b64::encode(json!({"alg":"none","kid":kid}).to_string()),
        b64::encode(Value::Object(claims()).to_string())
    );
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::AlgNotAllowed("none".into()))
    );
}

#[test]
fn rejects_hmac_alg_keyed_with_a_published_public_key() {
    // The classic confusion: HS256 with the RSA public key as the HMAC secret.
    let f = fixture();
    let kid = kid_of(&f, Alg::Rs256);
    let record = f.records.iter().find(|r| r.alg == Alg::Rs256).unwrap();
    let secret = record.public_jwk.as_bytes();
    let signer = HS256.signer_from_bytes(secret).unwrap();
    let input = format!(
        "{}.{}",
        b64::encode(json!({"alg":"HS256","kid":kid}).to_string()),
        b64::encode(Value::Object(claims()).to_string())
    );
    use josekit::jws::JwsSigner as _;
    let t = format!(
        "{input}.{}",
        b64::encode(signer.sign(input.as_bytes()).unwrap())
    );
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::AlgNotAllowed("HS256".into()))
    );
}

#[test]
fn rejects_alg_outside_the_allowlist_of_this_use() {
    let f = fixture();
    let t = f.ring.sign(Alg::Rs256, "JWT", &claims()).unwrap();
    assert_eq!(
        f.ring.verify(&t, &opts(&[Alg::Es256])),
        Err(VerifyError::AlgNotAllowed("RS256".into()))
    );
}

#[test]
fn rejects_alg_that_does_not_match_the_key_named_by_kid() {
    let f = fixture();
    // Signed by the EC key, but the header names the RSA key's kid.
    let kid = kid_of(&f, Alg::Rs256);
    let t = sign_raw(&f, Alg::Es256, json!({"alg":"ES256","kid":kid}), &claims());
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::AlgKeyMismatch)
    );
}

#[test]
fn rejects_unknown_kid() {
    let f = fixture();
    let t = sign_raw(
        &f,
        Alg::Es256,
        json!({"alg":"ES256","kid":"nope"}),
        &claims(),
    );
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::UnknownKid)
    );
    let t = sign_raw(&f, Alg::Es256, json!({"alg":"ES256"}), &claims());
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::MissingKid)
    );
}

#[test]
fn rejects_unknown_crit_header() {
    let f = fixture();
    let kid = kid_of(&f, Alg::Es256);
    let t = sign_raw(
        &f,
        Alg::Es256,
        json!({"alg":"ES256","kid":kid,"crit":["x-bound"],"x-bound":true}),
        &claims(),
    );
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::UnknownCrit("x-bound".into()))
    );
}

#[test]
fn rejects_bad_signature() {
    let f = fixture();
    let t = f.ring.sign(Alg::Es256, "JWT", &claims()).unwrap();
    let mut c = claims();
    c.insert("sub".into(), json!("admin"));
    let parts: Vec<&str> = t.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64::encode(Value::Object(c).to_string()),
        parts[2]
    );
    assert_eq!(
        f.ring.verify(&forged, &opts(&Alg::ALL)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn rejects_expired_and_not_yet_valid_tokens() {
    let f = fixture();
    let t = f.ring.sign(Alg::Es256, "JWT", &claims()).unwrap();
    let mut late = opts(&Alg::ALL);
    late.now = NOW + 300;
    assert_eq!(f.ring.verify(&t, &late), Err(VerifyError::Expired));
    late.leeway = 30;
    assert!(f.ring.verify(&t, &late).is_ok(), "leeway tolerates skew");

    let mut c = claims();
    c.insert("nbf".into(), json!(NOW + 60));
    let t = f.ring.sign(Alg::Es256, "JWT", &c).unwrap();
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::NotYetValid)
    );

    let mut c = claims();
    c.insert("iat".into(), json!(NOW + 60));
    let t = f.ring.sign(Alg::Es256, "JWT", &c).unwrap();
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::NotYetValid)
    );

    let mut c = claims();
    c.remove("exp");
    let t = f.ring.sign(Alg::Es256, "JWT", &c).unwrap();
    assert_eq!(
        f.ring.verify(&t, &opts(&Alg::ALL)),
        Err(VerifyError::Claim("exp"))
    );
}

#[test]
fn rejects_wrong_issuer_and_audience() {
    let f = fixture();
    let t = f.ring.sign(Alg::Es256, "JWT", &claims()).unwrap();
    let mut o = opts(&Alg::ALL);
    o.issuer = "https://evil.example.com";
    assert_eq!(f.ring.verify(&t, &o), Err(VerifyError::WrongIssuer));
    let mut o = opts(&Alg::ALL);
    o.audience = "other-api";
    assert_eq!(f.ring.verify(&t, &o), Err(VerifyError::WrongAudience));

    let mut c = claims();
    c.insert("aud".into(), json!(["x", AUD]));
    let t = f.ring.sign(Alg::Es256, "JWT", &c).unwrap();
    assert!(f.ring.verify(&t, &opts(&Alg::ALL)).is_ok(), "aud array");
}

#[test]
fn rejects_wrong_typ_when_the_use_demands_one() {
    let f = fixture();
    let t = f.ring.sign(Alg::Es256, "JWT", &claims()).unwrap();
    let mut o = opts(&Alg::ALL);
    o.typ = Some("at+jwt");
    assert_eq!(f.ring.verify(&t, &o), Err(VerifyError::WrongType));
    let t = f.ring.sign(Alg::Es256, "at+jwt", &claims()).unwrap();
    assert!(f.ring.verify(&t, &o).is_ok());
    o.typ = Some("application/AT+JWT");
    assert!(f.ring.verify(&t, &o).is_ok());
}

#[test]
fn rejects_malformed_and_oversized_input() {
    let f = fixture();
    for bad in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
        assert!(matches!(
            f.ring.verify(bad, &opts(&Alg::ALL)),
            Err(VerifyError::Malformed(_)) | Err(VerifyError::AlgNotAllowed(_))
        ));
    }
    let huge = "a".repeat(verify::MAX_TOKEN_LEN + 1);
    assert_eq!(
        f.ring.verify(&huge, &opts(&Alg::ALL)),
        Err(VerifyError::TooLarge)
    );
}

#[test]
fn new_key_is_published_before_it_signs_and_old_key_stays_published_while_retired() {
    let keks = keks();
    let old = PrivateKey::generate(Alg::Es256).unwrap();
    let mut records = vec![old.seal(&keks, NOW - 100, NOW - 100).unwrap()];
    let ring = Keyring::load(&records, &keks, NOW, &POLICY).unwrap();
    let before = ring.sign(Alg::Es256, "JWT", &claims()).unwrap();

    // Rotate: the new key activates after the publish lead.
    let activates = activation_time(&records, Alg::Es256, NOW, &POLICY);
    assert_eq!(activates, NOW + POLICY.publish_lead);
    let new = PrivateKey::generate(Alg::Es256).unwrap();
    records.push(new.seal(&keks, NOW, activates).unwrap());

    let ring = Keyring::load(&records, &keks, NOW, &POLICY).unwrap();
    assert_eq!(
        ring.signing_kid(Alg::Es256),
        Some(old.kid()),
        "next key must not sign"
    );
    assert!(
        ring.jwks_json().contains(new.kid()),
        "next key is published"
    );
    assert_eq!(ring.valid_until(), activates);

    let later = activates + 1;
    let ring = Keyring::load(&records, &keks, later, &POLICY).unwrap();
    assert_eq!(ring.signing_kid(Alg::Es256), Some(new.kid()));
    assert!(
        ring.jwks_json().contains(old.kid()),
        "retired key still published"
    );
    let mut o = opts(&Alg::ALL);
    o.now = NOW + 200;
    let ring_at = Keyring::load(&records, &keks, NOW + 200, &POLICY).unwrap();
    assert!(ring_at.verify(&before, &o).is_ok());
    let states: Vec<_> = ring
        .statuses()
        .iter()
        .map(|s| (s.kid.as_str(), s.state))
        .collect();
    assert!(states.contains(&(old.kid(), KeyState::Retired)));
    assert!(states.contains(&(new.kid(), KeyState::Active)));

    let gone = activates + POLICY.retain_retired;
    let ring = Keyring::load(&records, &keks, gone, &POLICY).unwrap();
    assert!(
        !ring.jwks_json().contains(old.kid()),
        "expired key unpublished"
    );
    assert_eq!(
        ring.verify(&before, &opts(&Alg::ALL)),
        Err(VerifyError::UnknownKid)
    );
}

#[test]
fn first_key_of_an_alg_activates_at_once() {
    assert_eq!(activation_time(&[], Alg::Rs256, NOW, &POLICY), NOW);
}

#[test]
fn jwks_has_distinct_kids_and_no_private_members() {
    let f = fixture();
    let doc: Value = serde_json::from_str(f.ring.jwks_json()).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4);
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    kids.sort();
    kids.dedup();
    assert_eq!(kids.len(), 4);
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                k.get(private).is_none(),
                "private member {private} published"
            );
        }
        assert_eq!(k["use"], "sig");
    }
    assert!(f.ring.etag().starts_with('"'));
}

#[test]
fn jwks_documents_bind_each_key_to_the_algorithm_its_type_implies() {
    let f = fixture();
    let doc: Value = serde_json::from_str(f.ring.jwks_json()).unwrap();
    let set = PublicKeySet::from_jwks_value(&doc).unwrap();
    assert_eq!(set.len(), 4);
    // Without alg or kid, a lone EC key is ES256 under its thumbprint, and a token that names
    // no kid verifies against a set of one.
    let ec = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "EC")
        .unwrap()
        .clone();
    let mut bare = ec.as_object().unwrap().clone();
    bare.remove("alg");
    bare.remove("kid");
    let one = PublicKeySet::from_jwks_value(&json!({ "keys": [bare] })).unwrap();
    assert_eq!(one.len(), 1);
    let t = sign_raw(&f, Alg::Es256, json!({"alg":"ES256"}), &claims());
    assert!(one.verify(&t, &opts(&Alg::ALL)).is_ok());
    // An alg that contradicts the key type is not trusted.
    let mut lying = ec.as_object().unwrap().clone();
    lying.insert("alg".into(), json!("RS256"));
    assert!(
        PublicKeySet::from_jwks_value(&json!({ "keys": [lying] }))
            .unwrap()
            .is_empty()
    );
    // Private material is refused outright.
    let mut private = ec.as_object().unwrap().clone();
    private.insert("d".into(), json!("AAAA"));
    assert!(PublicKeySet::from_jwks_value(&json!({ "keys": [private] })).is_err());
}

/// A proof-shaped token: `header` gets the public JWK of `key` unless it has one.
fn embedded(key: &PrivateKey, mut header: Value) -> String {
    if header.get("jwk").is_none() {
        header["jwk"] = Value::Object(key.public_jwk().as_ref().clone());
    }
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(json!({"jti": "j", "htm": "POST"}).to_string())
    );
    let sig = key
        .alg()
        .signer(key.private_jwk())
        .unwrap()
        .sign(input.as_bytes())
        .unwrap();
    format!("{input}.{}", b64::encode(sig))
}

#[test]
fn embedded_key_tokens_verify_for_every_alg_and_name_the_key_by_thumbprint() {
    for alg in Alg::ALL {
        let key = PrivateKey::generate(alg).unwrap();
        let claims = json!({"jti": "j1"}).as_object().unwrap().clone();
        let token = key.sign_with_embedded_key("dpop+jwt", &claims).unwrap();
        let got = verify_embedded_key(&token, &Alg::ALL, "dpop+jwt").unwrap();
        assert_eq!(got.thumbprint, key.kid(), "{alg}");
        assert_eq!(got.alg, alg);
        assert_eq!(got.claims["jti"], "j1");
        let header: Value =
            serde_json::from_slice(&b64::decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        for private in ["d", "p", "q"] {
            assert!(header["jwk"].get(private).is_none());
        }
    }
}

#[test]
fn embedded_key_tokens_refuse_each_broken_rule() {
    let key = PrivateKey::generate(Alg::Es256).unwrap();
    let ok = json!({"alg": "ES256", "typ": "dpop+jwt"});
    assert!(verify_embedded_key(&embedded(&key, ok.clone()), &Alg::ALL, "dpop+jwt").is_ok());

    // alg outside the allowlist, and `none`
    assert!(matches!(
        verify_embedded_key(&embedded(&key, ok.clone()), &[Alg::EdDsa], "dpop+jwt"),
        Err(VerifyError::AlgNotAllowed(_))
    ));
    let none = format!(
        "{}.{}.",
        b64::encode(
            json!({"alg": "none", "typ": "dpop+jwt", "jwk": key.public_jwk().as_ref()}).to_string()
        ),
        b64::encode("{}")
    );
    assert!(matches!(
        verify_embedded_key(&none, &Alg::ALL, "dpop+jwt"),
        Err(VerifyError::AlgNotAllowed(_))
    ));
    // typ
    assert_eq!(
        verify_embedded_key(
            &embedded(&key, json!({"alg": "ES256", "typ": "JWT"})),
            &Alg::ALL,
            "dpop+jwt"
        ),
        Err(VerifyError::WrongType)
    );
    // crit
    assert!(matches!(
        verify_embedded_key(
            &embedded(
                &key,
                json!({"alg": "ES256", "typ": "dpop+jwt", "crit": ["x"]})
            ),
            &Alg::ALL,
            "dpop+jwt"
        ),
        Err(VerifyError::UnknownCrit(_))
    ));
    // no jwk; a jwk with the private key; a key of another type than alg
    let no_jwk = embedded(
        &key,
        json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": "none"}),
    );
    assert_eq!(
        verify_embedded_key(&no_jwk, &Alg::ALL, "dpop+jwt"),
        Err(VerifyError::EmbeddedKey)
    );
    let private = embedded(
        &key,
        json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": key.private_jwk().as_ref()}),
    );
    assert_eq!(
        verify_embedded_key(&private, &Alg::ALL, "dpop+jwt"),
        Err(VerifyError::EmbeddedKey)
    );
    let ed = PrivateKey::generate(Alg::EdDsa).unwrap();
    let mismatched = embedded(
        &key,
        json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": ed.public_jwk().as_ref()}),
    );
    assert_eq!(
        verify_embedded_key(&mismatched, &Alg::ALL, "dpop+jwt"),
        Err(VerifyError::EmbeddedKey)
    );
    // another key's jwk in the header of a token signed by this one
    let other = PrivateKey::generate(Alg::Es256).unwrap();
    let swapped = embedded(
        &key,
        json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": other.public_jwk().as_ref()}),
    );
    assert_eq!(
        verify_embedded_key(&swapped, &Alg::ALL, "dpop+jwt"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn embedded_rsa_keys_must_be_2048_to_4096_bits_with_a_small_odd_exponent() {
    let key = PrivateKey::generate(Alg::Rs256).unwrap();
    let ok = json!({"alg": "RS256", "typ": "dpop+jwt"});
    assert!(verify_embedded_key(&embedded(&key, ok), &Alg::ALL, "dpop+jwt").is_ok());
    let public = key.public_jwk().as_ref().clone();
    let with = |name: &str, bytes: Vec<u8>| {
        let mut jwk = public.clone();
        jwk.insert(name.into(), json!(b64::encode(bytes)));
        embedded(&key, json!({"alg": "RS256", "typ": "dpop+jwt", "jwk": jwk}))
    };
    for (label, token) in [
        ("2040-bit modulus", with("n", vec![0xff; 255])),
        ("4104-bit modulus", with("n", vec![0xff; 513])),
        ("huge exponent", with("e", vec![0xff; 64])),
        ("even exponent", with("e", vec![0x01, 0x00, 0x00])),
        ("exponent 1", with("e", vec![0x01])),
    ] {
        assert_eq!(
            verify_embedded_key(&token, &Alg::ALL, "dpop+jwt"),
            Err(VerifyError::EmbeddedKey),
            "{label}"
        );
    }
    // Private members of an RSA or symmetric key in the header are refused too.
    for member in ["p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut jwk = public.clone();
        jwk.insert(member.into(), json!("AQAB"));
        let token = embedded(&key, json!({"alg": "RS256", "typ": "dpop+jwt", "jwk": jwk}));
        assert_eq!(
            verify_embedded_key(&token, &Alg::ALL, "dpop+jwt"),
            Err(VerifyError::EmbeddedKey),
            "{member}"
        );
    }
}
