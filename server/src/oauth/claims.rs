//! User claims by scope (OIDC Core §5.4) and by the `claims` request parameter (§5.5).

use serde_json::{Map, Value, json};

/// What we know about a user that claims can be made of.
pub struct UserInfo<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
}

/// Claim names the `claims` parameter asks for under `member` (`userinfo` or `id_token`).
pub fn requested_names(claims: Option<&Value>, member: &str) -> Vec<String> {
    claims
        .and_then(|c| c.get(member))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Claims released for `scopes` plus the individually requested `names`.
pub fn user_claims(u: &UserInfo<'_>, scopes: &[&str], names: &[String]) -> Map<String, Value> {
    let wants =
        |scope: &str, claim: &str| scopes.contains(&scope) || names.iter().any(|n| n == claim);
    let mut c = Map::new();
    c.insert("sub".into(), json!(u.id));
    if wants("profile", "name")
        && let Some(name) = u.name
    {
        c.insert("name".into(), json!(name));
    }
    if wants("email", "email") {
        c.insert("email".into(), json!(u.email));
    }
    if wants("email", "email_verified") {
        c.insert("email_verified".into(), json!(u.email_verified));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_scope_and_explicit_requests() {
        let u = UserInfo {
            id: "u1",
            email: "a@example.com",
            email_verified: true,
            name: Some("Ada"),
        };
        let c = user_claims(&u, &["openid"], &[]);
        assert_eq!(c.len(), 1);
        let c = user_claims(&u, &["openid", "email"], &[]);
        assert_eq!(c["email"], "a@example.com");
        assert!(c.get("name").is_none());
        let req = json!({"userinfo": {"name": {"essential": true}}});
        let names = requested_names(Some(&req), "userinfo");
        assert_eq!(user_claims(&u, &["openid"], &names)["name"], "Ada");
    }
}
