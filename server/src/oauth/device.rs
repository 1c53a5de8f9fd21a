//! RFC 8628 device authorization: user codes and what an approval records. No I/O here.

use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// RFC 8628 §6.1: consonants only (no vowels, so no words), upper case.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code (20^8, about 2^34.6), shown as `XXXX-XXXX`.
pub const USER_CODE_LEN: usize = 8;
/// How long a device code and its user code live, in seconds.
pub const LIFETIME: i64 = 600;
/// The polling interval a device starts with, in seconds.
pub const INTERVAL: i64 = 5;

/// A fresh user code in its canonical form (no separator).
pub fn new_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..USER_CODE_LEN)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

/// A user code as people read it: `BCDF-GHJK`.
pub fn display(code: &str) -> String {
    let (a, b) = code.split_at(code.len().min(USER_CODE_LEN / 2));
    format!("{a}-{b}")
}

/// A user code as typed, in canonical form: letters upper-cased, spaces and dashes dropped;
/// None when it cannot be one of ours.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 32 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// How the user who approved a device had signed in; the device's tokens carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub sid: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_consonant_alphabet_and_read_forgivingly() {
        for _ in 0..50 {
            let code = new_user_code();
            assert_eq!(code.len(), 8);
            assert!(
                code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)),
                "{code}"
            );
            assert_eq!(
                normalize_user_code(&display(&code)).as_deref(),
                Some(code.as_str())
            );
        }
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(
            normalize_user_code(" bcdf-ghjk ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDF-GHJA"), None, "a vowel");
        assert_eq!(normalize_user_code("BCDF-GHJ"), None, "too short");
        assert_eq!(normalize_user_code(&"B".repeat(40)), None);
    }
}
