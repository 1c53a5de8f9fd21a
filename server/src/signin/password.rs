//! Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), PHC strings at rest.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::views::Msg;

/// NIST SP 800-63B: at least 8 characters, no composition rules, allow at least 64.
pub const MIN_LEN: usize = 8;
/// Long passphrases are welcome; the bound only keeps hashing cost predictable.
pub const MAX_LEN: usize = 128;

/// Common passwords (see `server/data/README.md`), lowercase, one per line.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("password is on a list of common passwords")]
    Common,
    #[error("password hashing failed")]
    Hash,
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|_| PasswordError::Hash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Whether a new password may be used: its length, and not a common password (compared in
/// lower case, as the list is).
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        Err(PasswordError::TooShort)
    } else if n > MAX_LEN {
        Err(PasswordError::TooLong)
    } else if COMMON.contains(password.to_lowercase().as_str()) {
        Err(PasswordError::Common)
    } else {
        Ok(())
    }
}

/// What to tell a person whose new password `check_policy` refused.
pub fn advice(e: &PasswordError) -> Msg {
    match e {
        PasswordError::TooShort => Msg::PasswordTooShort,
        PasswordError::TooLong => Msg::PasswordTooLong,
        PasswordError::Common => Msg::PasswordCommon,
        PasswordError::Hash => Msg::ErrorTryAgain,
    }
}

/// Hashes after checking the policy. CPU-heavy: call from a blocking task on a server.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_policy(password)?;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Verifies against a stored PHC string (constant-time inside argon2).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_argon2id_and_verifies() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn policy_bounds() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(
            check_policy(&"x".repeat(MAX_LEN + 1)),
            Err(PasswordError::TooLong)
        );
        assert!(check_policy("ünïcødé pass").is_ok());
        for common in ["password1", "Password1", "qwertyuiop", "iloveyou2"] {
            assert_eq!(check_policy(common), Err(PasswordError::Common), "{common}");
        }
        assert!(check_policy("correct horse battery staple").is_ok());
        assert!(COMMON.len() > 8000);
    }

    #[test]
    fn advice_names_the_policy_bounds() {
        let views = crate::views::Views::new(None).unwrap();
        let short = views.msg(advice(&PasswordError::TooShort));
        assert!(short.contains(&format!(" {MIN_LEN} ")), "{short}");
        let long = views.msg(advice(&PasswordError::TooLong));
        assert!(long.contains(&format!(" {MAX_LEN} ")), "{long}");
    }
}
