//! Scope: RFC 6749 §3.3 syntax (space-delimited tokens of `%x21 / %x23-5B / %x5D-7E`), and
//! the policy every grant applies to what a client asks for: what a client acting for itself
//! may not get (RFC 6749 §4.4), that a refresh may only narrow (§6), that an exchange stays
//! within the subject token's scope (RFC 8693 §2.1), and that a device asks only for what its
//! client may have (RFC 8628 §3.1).

/// Scopes only an administrator can give a client (CLI), never dynamic registration: a
/// service reading any user's stream keys, and the admin API.
pub const ADMIN_ONLY_SCOPES: &[&str] = &["streams:internal", "admin:read", "admin:write"];

/// Scopes that stand for a user (OIDC Core §5.4, §11): a client acting for itself
/// (client_credentials) is no user and gets none of them.
pub const USER_SCOPES: &[&str] = &[
    "groups",
    "openid",
    "offline_access",
    "profile",
    "email",
    "address",
    "phone",
];

/// Why a requested scope is refused; every variant is `invalid_scope` (RFC 6749 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is malformed")]
    Malformed,
    #[error("a requested scope is not allowed for this client")]
    NotAllowed,
    #[error("a refresh cannot widen the scope")]
    Widened,
    #[error("{0} is not within the subject token's scope")]
    NotHeld(String),
}

/// What a client asks for on its own behalf or a device's (RFC 8628 §3.1): each requested
/// scope must be one the client may have (`allowed`) and pass `also`; when nothing is asked,
/// every allowed scope that passes `also`.
fn within_client<'a>(
    requested: Option<&str>,
    allowed: impl Iterator<Item = &'a str> + Clone,
    also: impl Fn(&str) -> bool,
) -> Result<String, ScopeError> {
    let scope: Vec<String> = match requested {
        Some(s) => {
            let asked = parse_scope(s).map_err(|_| ScopeError::Malformed)?;
            if asked
                .iter()
                .any(|a| !allowed.clone().any(|c| c == a) || !also(a))
            {
                return Err(ScopeError::NotAllowed);
            }
            asked
        }
        None => allowed.filter(|s| also(s)).map(str::to_owned).collect(),
    };
    Ok(scope.join(" "))
}

/// RFC 6749 §4.4 (client_credentials): within the client's scopes, and no user scope.
pub fn for_client_itself<'a>(
    requested: Option<&str>,
    allowed: impl Iterator<Item = &'a str> + Clone,
) -> Result<String, ScopeError> {
    within_client(requested, allowed, |s| !USER_SCOPES.contains(&s))
}

/// RFC 8628 §3.1 (device authorization): within the client's scopes.
pub fn for_device<'a>(
    requested: Option<&str>,
    allowed: impl Iterator<Item = &'a str> + Clone,
) -> Result<String, ScopeError> {
    within_client(requested, allowed, |_| true)
}

/// RFC 6749 §6 (refresh): the grant's scope, or a part of it; never wider.
pub fn at_refresh(requested: Option<&str>, granted: &str) -> Result<String, ScopeError> {
    match requested {
        None => Ok(granted.to_owned()),
        Some(s) => {
            let asked = parse_scope(s).map_err(|_| ScopeError::Malformed)?;
            if !asked.iter().all(|a| granted.split(' ').any(|g| g == a)) {
                return Err(ScopeError::Widened);
            }
            Ok(asked.join(" "))
        }
    }
}

/// RFC 8693 §2.1 (token exchange): what is asked (or, when nothing is, everything the
/// subject token holds), within the subject token's scope and the client's allowed scopes.
/// The error names the first scope that is not.
pub fn at_exchange(
    requested: Option<&str>,
    subject_scope: &str,
    client_may: impl Fn(&str) -> bool,
) -> Result<String, ScopeError> {
    let held: Vec<&str> = subject_scope.split(' ').filter(|s| !s.is_empty()).collect();
    match requested {
        Some(asked) => {
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(wider) = asked.iter().find(|s| !held.contains(s) || !client_may(s)) {
                return Err(ScopeError::NotHeld((*wider).to_owned()));
            }
            Ok(asked.join(" "))
        }
        None => Ok(held
            .into_iter()
            .filter(|s| client_may(s))
            .collect::<Vec<_>>()
            .join(" ")),
    }
}

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

    #[test]
    fn rfc6749_4_4_a_client_for_itself_gets_no_user_scope() {
        let allowed = || "openid profile devices:read streams:internal".split(' ');
        assert_eq!(
            for_client_itself(None, allowed()).unwrap(),
            "devices:read streams:internal"
        );
        assert_eq!(
            for_client_itself(Some("devices:read"), allowed()).unwrap(),
            "devices:read"
        );
        assert_eq!(
            for_client_itself(Some("openid"), allowed()),
            Err(ScopeError::NotAllowed)
        );
        assert_eq!(
            for_client_itself(Some("streams:write"), allowed()),
            Err(ScopeError::NotAllowed)
        );
        assert_eq!(
            for_client_itself(Some("a\\b"), allowed()),
            Err(ScopeError::Malformed)
        );
        assert_eq!(
            for_device(None, allowed()).unwrap(),
            allowed().collect::<Vec<_>>().join(" ")
        );
        assert_eq!(
            for_device(Some("x"), allowed()),
            Err(ScopeError::NotAllowed)
        );
    }

    #[test]
    fn rfc6749_6_a_refresh_narrows_never_widens() {
        assert_eq!(at_refresh(None, "openid email").unwrap(), "openid email");
        assert_eq!(at_refresh(Some("email"), "openid email").unwrap(), "email");
        assert_eq!(
            at_refresh(Some("email profile"), "openid email"),
            Err(ScopeError::Widened)
        );
        assert_eq!(
            at_refresh(Some("\"\""), "openid"),
            Err(ScopeError::Malformed)
        );
    }

    #[test]
    fn rfc8693_2_1_an_exchange_narrows_never_widens() {
        let any = |_: &str| true;
        assert_eq!(at_exchange(None, "a b c", any).unwrap(), "a b c");
        assert_eq!(at_exchange(Some("b"), "a b c", any).unwrap(), "b");
        assert_eq!(
            at_exchange(Some("b d"), "a b c", any),
            Err(ScopeError::NotHeld("d".into()))
        );
        assert!(at_exchange(Some("a"), "a b", |s| s != "a").is_err());
        assert_eq!(at_exchange(None, "a b", |s| s != "a").unwrap(), "b");
    }
}
