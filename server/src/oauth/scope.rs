//! RFC 6749 §3.3 scope syntax: space-delimited tokens of `%x21 / %x23-5B / %x5D-7E`.

/// Scopes only an administrator can give a client (CLI), never dynamic registration: a
/// service reading any user's stream keys.
pub const ADMIN_ONLY_SCOPES: &[&str] = &["streams:internal"];

pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Splits a scope string into tokens, refusing any that break the syntax. Duplicates collapse.
pub fn parse_scope(scope: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(format!(
                "scope token {token:?} has characters RFC 6749 §3.3 forbids"
            ));
        }
        if !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_scope_syntax() {
        assert_eq!(
            parse_scope("openid  profile openid").unwrap(),
            ["openid", "profile"]
        );
        assert!(parse_scope("a\"b").is_err());
        assert!(parse_scope("a\\b").is_err());
        assert!(parse_scope("é").is_err());
        assert!(parse_scope("devices:read streams:write").is_ok());
    }
}
