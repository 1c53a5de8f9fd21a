//! Prepared signers: one per active key, made when the keyring loads, so that signing a JWT
//! is the signature alone. josekit's signers build an OpenSSL `EVP_MD_CTX` for every
//! signature (and OpenSSL 3 fetches the digest and signature algorithms for each), then
//! re-parse the DER ECDSA signature; on the token endpoint that was a third of the cost of an
//! ES256 signature. ES256 and RS256 sign here through OpenSSL's key objects directly: SHA-256
//! of the signing input, then ECDSA (RFC 7518 §3.4: `r || s`, 32 bytes each) or RSASSA-PKCS1
//! v1.5 (RFC 8017 §8.2: the DigestInfo of the hash, padded with block type 1). EdDSA and PS256,
//! seldom used for tokens, keep josekit's signer.

use josekit::jwk::Jwk;
use josekit::jwk::alg::ec::EcKeyPair;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jws::JwsSigner;
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa};
use sha2::{Digest, Sha256};

use crate::Alg;

/// DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

pub(crate) enum Prepared {
    Es256(EcKey<Private>),
    Rs256(Rsa<Private>),
    Other(Box<dyn JwsSigner>),
}

impl Prepared {
    pub(crate) fn new(alg: Alg, private: &Jwk) -> Result<Self, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match alg {
            Alg::Es256 => {
                let der = EcKeyPair::from_jwk(private)
                    .map_err(|x| e(&x))?
                    .to_raw_private_key();
                let key = EcKey::private_key_from_der(&der).map_err(|x| e(&x))?;
                key.check_key().map_err(|x| e(&x))?;
                Prepared::Es256(key)
            }
            Alg::Rs256 => {
                let der = RsaKeyPair::from_jwk(private)
                    .map_err(|x| e(&x))?
                    .to_raw_private_key();
                let key = Rsa::private_key_from_der(&der).map_err(|x| e(&x))?;
                if !key.check_key().map_err(|x| e(&x))? {
                    return Err("the RSA key is inconsistent".into());
                }
                Prepared::Rs256(key)
            }
            Alg::EdDsa | Alg::Ps256 => Prepared::Other(alg.signer(private).map_err(|x| e(&x))?),
        })
    }

    /// The JWS signature of `input` (the `header.payload` of the token).
    pub(crate) fn sign(&self, input: &[u8]) -> Result<Vec<u8>, ()> {
        match self {
            Prepared::Es256(key) => {
                let digest = Sha256::digest(input);
                let sig = EcdsaSig::sign(&digest, key).map_err(|_| ())?;
                let mut out = sig.r().to_vec_padded(32).map_err(|_| ())?;
                out.extend(sig.s().to_vec_padded(32).map_err(|_| ())?);
                Ok(out)
            }
            Prepared::Rs256(key) => {
                let mut t = Vec::with_capacity(SHA256_DIGEST_INFO.len() + 32);
                t.extend_from_slice(&SHA256_DIGEST_INFO);
                t.extend_from_slice(&Sha256::digest(input));
                let mut out = vec![0; key.size() as usize];
                let n = key
                    .private_encrypt(&t, &mut out, Padding::PKCS1)
                    .map_err(|_| ())?;
                out.truncate(n);
                Ok(out)
            }
            Prepared::Other(signer) => signer.sign(input).map_err(|_| ()),
        }
    }
}
