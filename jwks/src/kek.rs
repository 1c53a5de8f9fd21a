//! Key-encryption keys: AES-256-GCM under a key id, so the KEK can rotate while older
//! ciphertexts stay readable. Used for signing keys here and for other secrets by the server.
//!
//! A sealed box is `nonce (12 bytes) || ciphertext || tag`; the caller passes associated data
//! that binds the box to its row (a key id, a stream id), so a ciphertext moved to another row
//! does not open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

const NONCE_LEN: usize = 12;

pub struct Kek {
    id: String,
    cipher: Aes256Gcm,
}

impl Kek {
    pub fn new(id: impl Into<String>, key: &[u8; 32]) -> Self {
        Self {
            id: id.into(),
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The current KEK (used to seal) and the older ones (only used to open).
#[derive(Debug)]
pub struct KekRing {
    keys: Vec<Kek>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KekError {
    #[error("a KEK ring needs at least one key")]
    Empty,
    #[error("duplicate KEK id {0:?}")]
    DuplicateId(String),
    #[error("no KEK with id {0:?} is configured")]
    UnknownKek(String),
    #[error("sealed data is damaged or was sealed for another row")]
    Open,
    #[error("sealing failed")]
    Seal,
}

impl KekRing {
    /// The first key is the current one.
    pub fn new(keys: Vec<Kek>) -> Result<Self, KekError> {
        if keys.is_empty() {
            return Err(KekError::Empty);
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KekError::DuplicateId(k.id.clone()));
            }
        }
        Ok(Self { keys })
    }

    pub fn current_id(&self) -> &str {
        self.keys.first().map(|k| k.id.as_str()).unwrap_or_default()
    }

    /// Seals under the current KEK; returns its id and the box.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<(String, Vec<u8>), KekError> {
        let kek = self.keys.first().ok_or(KekError::Empty)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = kek
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| KekError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok((kek.id.clone(), out))
    }

    pub fn open(&self, kek_id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KekError> {
        let kek = self
            .keys
            .iter()
            .find(|k| k.id == kek_id)
            .ok_or_else(|| KekError::UnknownKek(kek_id.to_owned()))?;
        if sealed.len() < NONCE_LEN {
            return Err(KekError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        kek.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| KekError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KekRing {
        KekRing::new(vec![Kek::new("k2", &[2; 32]), Kek::new("k1", &[1; 32])]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_plaintext() {
        let ring = ring();
        let (id, sealed) = ring.seal(b"private key", b"kid-1").unwrap();
        assert_eq!(id, "k2");
        assert!(!sealed.windows(11).any(|w| w == b"private key"));
        assert_eq!(ring.open(&id, &sealed, b"kid-1").unwrap(), b"private key");
    }

    #[test]
    fn box_moved_to_another_row_does_not_open() {
        let ring = ring();
        let (id, sealed) = ring.seal(b"secret", b"row-a").unwrap();
        assert_eq!(ring.open(&id, &sealed, b"row-b"), Err(KekError::Open));
    }

    #[test]
    fn older_kek_still_opens_after_rotation() {
        let old = KekRing::new(vec![Kek::new("k1", &[1; 32])]).unwrap();
        let (id, sealed) = old.seal(b"x", b"").unwrap();
        assert_eq!(ring().open(&id, &sealed, b"").unwrap(), b"x");
        assert_eq!(
            ring().open("k9", &sealed, b""),
            Err(KekError::UnknownKek("k9".into()))
        );
    }

    #[test]
    fn tampered_box_does_not_open() {
        let ring = ring();
        let (id, mut sealed) = ring.seal(b"secret", b"").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(ring.open(&id, &sealed, b""), Err(KekError::Open));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err = KekRing::new(vec![Kek::new("a", &[1; 32]), Kek::new("a", &[2; 32])]);
        assert_eq!(err.unwrap_err(), KekError::DuplicateId("a".into()));
    }
}
