//! The JWS algorithms Latchkey signs with (RFC 7518 §3, RFC 8037 §3.1).
//!
//! The set is closed on purpose: `none` and the HMAC family cannot even be named here, so no
//! allowlist built from this type can admit them.

use std::fmt;
use std::str::FromStr;

use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, PS256, RS256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256: the default for access tokens.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256: OIDC's default id_token algorithm.
    Rs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PSS with SHA-256 and MGF1 (RFC 7518 §3.5): what FAPI 2.0 allows of RSA.
    Ps256,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Alg::Es256, Alg::Rs256, Alg::EdDsa, Alg::Ps256];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
            Alg::EdDsa => "EdDSA",
            Alg::Ps256 => "PS256",
        }
    }

    pub(crate) fn signer(self, private: &Jwk) -> Result<Box<dyn JwsSigner>, josekit::JoseError> {
        Ok(match self {
            Alg::Es256 => Box::new(ES256.signer_from_jwk(private)?),
            Alg::Rs256 => Box::new(RS256.signer_from_jwk(private)?),
            Alg::EdDsa => Box::new(EdDSA.signer_from_jwk(private)?),
            Alg::Ps256 => Box::new(PS256.signer_from_jwk(private)?),
        })
    }

    pub(crate) fn verifier(self, public: &Jwk) -> Result<Box<dyn JwsVerifier>, josekit::JoseError> {
        Ok(match self {
            Alg::Es256 => Box::new(ES256.verifier_from_jwk(public)?),
            Alg::Rs256 => Box::new(RS256.verifier_from_jwk(public)?),
            Alg::EdDsa => Box::new(EdDSA.verifier_from_jwk(public)?),
            Alg::Ps256 => Box::new(PS256.verifier_from_jwk(public)?),
        })
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsing is exact and case-sensitive, as JOSE algorithm names are (RFC 7515 §4.1.1).
impl FromStr for Alg {
    type Err = UnknownAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Alg::Es256),
            "RS256" => Ok(Alg::Rs256),
            "EdDSA" => Ok(Alg::EdDsa),
            "PS256" => Ok(Alg::Ps256),
            _ => Err(UnknownAlg),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAlg;

impl fmt::Display for UnknownAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown algorithm (expected ES256, RS256, PS256 or EdDSA)")
    }
}

impl std::error::Error for UnknownAlg {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_names_only() {
        assert_eq!("ES256".parse::<Alg>(), Ok(Alg::Es256));
        assert_eq!("EdDSA".parse::<Alg>(), Ok(Alg::EdDsa));
        assert!("es256".parse::<Alg>().is_err());
        assert!("none".parse::<Alg>().is_err());
        assert!("HS256".parse::<Alg>().is_err());
    }
}
