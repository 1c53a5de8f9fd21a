//! Free text people type, as we keep it: labels (a passkey's name, a display name, a device's
//! name) and email addresses. Used by sign-up, the account pages, the resource APIs and
//! federation alike.

/// Whether a JSON document holds a NUL character in any string or key: such a body is refused
/// (a `\u0000` would otherwise reach the database, and PostgreSQL text cannot hold it).
pub fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// A name a person typed (a passkey's, a display name) as we keep it: trimmed, control
/// characters out, at most `max_chars`; None when nothing is left.
pub fn clean_label(raw: &str, max_chars: usize) -> Option<String> {
    let label: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    let label = label.trim();
    (!label.is_empty()).then(|| label.to_owned())
}

/// A plausible bare address (an RFC 5321 mailbox, no display name): exactly one `@`, a
/// non-empty local part and a domain with a dot, none of the characters that make a name,
/// a group or a quoted part (`<>"(),;:[]\`), no spaces or control characters, at most 254
/// bytes (RFC 5321 §4.5.3.1.3). What is stored is then exactly where mail goes; delivery is
/// the real test.
pub fn validate_email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return Err("email must contain @");
    };
    if email.len() > 254
        || local.is_empty()
        || local.len() > 64
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains('@')
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"(),;:[]\\".contains(c))
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
            "\"victim@corp.example\"<attacker@evil.example>",
            "Ada <ada@example.com>",
            "ada@example.com,eve@example.com",
            "a@b@example.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
