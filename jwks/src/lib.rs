//! Signing keys for Latchkey: generation, RFC 7638 key ids, encryption at rest, the rotation
//! keyring, the published JWKS, and JWT signing and verification with an explicit allowlist of
//! algorithms per use.
//!
//! This crate knows neither HTTP nor SQL: the server loads [`KeyRecord`]s from its store, opens
//! them with a [`Kek`] ring and hands them to [`Keyring::load`].

mod alg;
mod b64;
mod kek;
mod key;
mod keyring;
mod signer;
pub mod verify;

pub use alg::{Alg, UnknownAlg as UnknownAlgError};
pub use kek::{Kek, KekError, KekRing};
pub use key::{KeyError, KeyRecord, PrivateKey, thumbprint};
pub use keyring::{KeyPolicy, KeyState, KeyStatus, Keyring, SignError, activation_time};
pub use verify::{
    Claims, PublicKeySet, SelfSigned, VerifyError, VerifyOptions, verify_embedded_key,
};

#[cfg(test)]
mod tests;
