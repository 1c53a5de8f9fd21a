//! One signing key: generation, its RFC 7638 thumbprint as `kid`, and its sealed form at rest.

use std::fmt;

use josekit::jwk::alg::ed::EdCurve;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{ES256, EdDSA, RS256};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::alg::Alg;
use crate::b64;
use crate::kek::{KekError, KekRing};

/// RSA modulus size for RS256 keys: 2048 bits is what RFC 7518 §3.3 requires at minimum and
/// what every relying party accepts; signing cost grows with the cube of the size.
const RSA_BITS: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("stored key {kid}: {reason}")]
    Stored { kid: String, reason: String },
    #[error(transparent)]
    Kek(#[from] KekError),
}

/// A key as the store keeps it: public part in clear, private part sealed under a KEK with the
/// `kid` as associated data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: Alg,
    /// The public JWK as JSON, with `kid`, `alg` and `use` set: what `/jwks.json` publishes.
    pub public_jwk: String,
    pub kek_id: String,
    pub private_sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds from which the key may sign; until then it is only published.
    pub activates_at: i64,
}

/// A private signing key in memory. Not `Clone`, and its `Debug` shows only the `kid`.
pub struct PrivateKey {
    kid: String,
    alg: Alg,
    private: Jwk,
    public: Jwk,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    pub fn generate(alg: Alg) -> Result<Self, KeyError> {
        let gen_err = |e: josekit::JoseError| KeyError::Generate(e.to_string());
        let (private, public) = match alg {
            Alg::Es256 => {
                let kp = ES256.generate_key_pair().map_err(gen_err)?;
                (kp.to_jwk_private_key(), kp.to_jwk_public_key())
            }
            // A PS256 key is an RSA key like any other; only its use differs.
            Alg::Rs256 | Alg::Ps256 => {
                let kp = RS256.generate_key_pair(RSA_BITS).map_err(gen_err)?;
                (kp.to_jwk_private_key(), kp.to_jwk_public_key())
            }
            Alg::EdDsa => {
                let kp = EdDSA.generate_key_pair(EdCurve::Ed25519).map_err(gen_err)?;
                (kp.to_jwk_private_key(), kp.to_jwk_public_key())
            }
        };
        Self::from_parts(alg, private, public).map_err(KeyError::Generate)
    }

    /// A key from a private JWK (JSON) held by a client of ours, e.g. a relying party's
    /// signing key in a test harness; the public half is derived from it. The JWK's type must
    /// fit `alg`.
    pub fn from_private_jwk_json(alg: Alg, json: &str) -> Result<Self, KeyError> {
        let bad = |e: String| KeyError::Generate(format!("private JWK: {e}"));
        let private = Jwk::from_bytes(json.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let public =
            match alg {
                Alg::Es256 => josekit::jwk::alg::ec::EcKeyPair::from_jwk(&private)
                    .map(|k| k.to_jwk_public_key()),
                Alg::Rs256 | Alg::Ps256 => josekit::jwk::alg::rsa::RsaKeyPair::from_jwk(&private)
                    .map(|k| k.to_jwk_public_key()),
                Alg::EdDsa => josekit::jwk::alg::ed::EdKeyPair::from_jwk(&private)
                    .map(|k| k.to_jwk_public_key()),
            }
            .map_err(|e| bad(e.to_string()))?;
        Self::from_parts(alg, private, public).map_err(bad)
    }

    fn from_parts(alg: Alg, mut private: Jwk, mut public: Jwk) -> Result<Self, String> {
        let kid = thumbprint(&public)?;
        for jwk in [&mut private, &mut public] {
            jwk.set_key_id(kid.clone());
            jwk.set_algorithm(alg.as_str());
            jwk.set_key_use("sig");
        }
        Ok(Self {
            kid,
            alg,
            private,
            public,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    pub(crate) fn private_jwk(&self) -> &Jwk {
        &self.private
    }

    /// Signs `claims` as a JWS whose header carries this key's public JWK (`jwk`, RFC 7515
    /// §4.1.3) instead of a `kid`: what a client sends as an RFC 9449 DPoP proof (`typ`
    /// `dpop+jwt`). The JWK is the public key only.
    pub fn sign_with_embedded_key(
        &self,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, crate::SignError> {
        use crate::SignError;
        let header = serde_json::json!({
            "alg": self.alg.as_str(),
            "typ": typ,
            "jwk": Value::Object(self.public.as_ref().clone()),
        });
        let header = serde_json::to_vec(&header).map_err(|_| SignError::Claims)?;
        let payload = serde_json::to_vec(claims).map_err(|_| SignError::Claims)?;
        let mut token = b64::encode(header);
        token.push('.');
        token.push_str(&b64::encode(payload));
        let sig = self
            .alg
            .signer(&self.private)
            .and_then(|s| s.sign(token.as_bytes()))
            .map_err(|_| SignError::Crypto)?;
        token.push('.');
        token.push_str(&b64::encode(sig));
        Ok(token)
    }

    /// Seals the private part for storage.
    pub fn seal(
        &self,
        keks: &KekRing,
        created_at: i64,
        activates_at: i64,
    ) -> Result<KeyRecord, KeyError> {
        let private = serde_json::to_vec(self.private.as_ref())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let (kek_id, private_sealed) = keks.seal(&private, self.kid.as_bytes())?;
        Ok(KeyRecord {
            kid: self.kid.clone(),
            alg: self.alg,
            public_jwk: Value::Object(self.public.as_ref().clone()).to_string(),
            kek_id,
            private_sealed,
            created_at,
            activates_at,
        })
    }
}

impl KeyRecord {
    /// Opens the sealed private key and checks that it belongs to this record.
    pub fn open(&self, keks: &KekRing) -> Result<PrivateKey, KeyError> {
        let stored = |reason: String| KeyError::Stored {
            kid: self.kid.clone(),
            reason,
        };
        let private = keks.open(&self.kek_id, &self.private_sealed, self.kid.as_bytes())?;
        let private = Jwk::from_bytes(&private).map_err(|e| stored(e.to_string()))?;
        let public = self.public()?;
        let key = PrivateKey::from_parts(self.alg, private, public).map_err(stored)?;
        if key.kid != self.kid {
            return Err(stored(
                "kid is not the thumbprint of the stored public key".into(),
            ));
        }
        Ok(key)
    }

    pub fn public(&self) -> Result<Jwk, KeyError> {
        Jwk::from_bytes(self.public_jwk.as_bytes()).map_err(|e| KeyError::Stored {
            kid: self.kid.clone(),
            reason: e.to_string(),
        })
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members of the key type, in
/// lexicographic order, serialised without white space.
pub fn thumbprint(jwk: &Jwk) -> Result<String, String> {
    let members: &[&str] = match jwk.key_type() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => return Err(format!("unsupported key type {other:?}")),
    };
    // serde_json's Map keeps keys sorted (no preserve_order feature), which RFC 7638 requires.
    let mut canonical = Map::new();
    for m in members {
        match jwk.parameter(m) {
            Some(Value::String(v)) => {
                canonical.insert((*m).to_owned(), Value::String(v.clone()));
            }
            _ => return Err(format!("JWK lacks required member {m:?}")),
        }
    }
    let json = Value::Object(canonical).to_string();
    Ok(b64::encode(Sha256::digest(json.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kek::Kek;

    #[test]
    fn rfc7638_section_3_1_example_thumbprint() {
        let jwk = Jwk::from_bytes(
            br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_use_their_thumbprint_as_kid_and_survive_sealing() {
        let keks = KekRing::new(vec![Kek::new("k1", &[7; 32])]).unwrap();
        for alg in Alg::ALL {
            let key = PrivateKey::generate(alg).unwrap();
            assert_eq!(key.kid(), thumbprint(key.public_jwk()).unwrap());
            let record = key.seal(&keks, 10, 20).unwrap();
            assert!(
                !record.public_jwk.contains("\"d\""),
                "{alg}: public JWK has d"
            );
            let opened = record.open(&keks).unwrap();
            assert_eq!(opened.kid(), key.kid());
            assert_eq!(opened.alg(), alg);
        }
    }

    #[test]
    fn record_with_swapped_public_key_does_not_open() {
        let keks = KekRing::new(vec![Kek::new("k1", &[7; 32])]).unwrap();
        let a = PrivateKey::generate(Alg::Es256)
            .unwrap()
            .seal(&keks, 0, 0)
            .unwrap();
        let b = PrivateKey::generate(Alg::Es256)
            .unwrap()
            .seal(&keks, 0, 0)
            .unwrap();
        let forged = KeyRecord {
            public_jwk: b.public_jwk.clone(),
            ..a
        };
        assert!(forged.open(&keks).is_err());
    }
}
