//! Sign-in methods: passkeys and passwords; TOTP and email links are to come.

pub mod passkey;
pub mod password;
pub mod throttle;

/// A plausible address: one `@`, non-empty local part and a domain with a dot, no spaces or
/// control characters, at most 254 bytes (RFC 5321 §4.5.3.1.3). Delivery is the real test.
pub fn validate_email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("email must contain @");
    };
    if email.len() > 254
        || local.is_empty()
        || local.len() > 64
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
        || domain.contains('@')
    {
        return Err("email address is not valid");
    }
    Ok(email.to_owned())
}

#[cfg(test)]
mod tests {
    use super::validate_email;

    #[test]
    fn email_shapes() {
        assert_eq!(
            validate_email(" ada@example.com ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
