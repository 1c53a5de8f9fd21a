//! User claims by scope (OIDC Core §5.4) and by the `claims` request parameter (§5.5).

use serde_json::{Map, Value, json};

/// What we know about a user that claims can be made of.
pub struct UserInfo<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    /// The user's groups (SCIM), loaded only when the `groups` scope or claim is asked for.
    pub groups: &'a [String],
}

/// Whether the `groups` claim is to be released: only with the `groups` scope granted (the
/// consent page lists scopes; the `claims` parameter alone does not release it).
pub fn wants_groups(scopes: &[&str], _names: &[String]) -> bool {
    scopes.contains(&"groups")
}

/// The `claims` request parameter (OIDC Core §5.5) as far as we act on it: the claims asked
/// for by name, for the id_token and for userinfo. Each member is an object whose keys are
/// claim names (their values, such as `{"essential": true}`, are not acted on); other members
/// are ignored. Stored with the code and the refresh tokens in the same JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimsRequest {
    pub id_token: Vec<String>,
    pub userinfo: Vec<String>,
}

/// Why a `claims` parameter is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("claims must be a JSON object whose id_token and userinfo members are objects")]
pub struct ClaimsError;

impl ClaimsRequest {
    /// Parses the parameter's JSON text.
    pub fn parse(text: &str) -> Result<Self, ClaimsError> {
        let value: Value = serde_json::from_str(text).map_err(|_| ClaimsError)?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, ClaimsError> {
        let obj = value.as_object().ok_or(ClaimsError)?;
        let names = |member: &str| -> Result<Vec<String>, ClaimsError> {
            match obj.get(member) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Object(m)) => Ok(m.keys().cloned().collect()),
                Some(_) => Err(ClaimsError),
            }
        };
        Ok(Self {
            id_token: names("id_token")?,
            userinfo: names("userinfo")?,
        })
    }

    /// The JSON stored for it: `{"id_token": {"name": null}, "userinfo": {...}}`.
    pub fn to_json(&self) -> String {
        let member = |names: &[String]| -> Value {
            Value::Object(names.iter().map(|n| (n.clone(), Value::Null)).collect())
        };
        json!({ "id_token": member(&self.id_token), "userinfo": member(&self.userinfo) })
            .to_string()
    }
}

/// Claims released for `scopes` plus the individually requested `names`; `sub` always.
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
    if scopes.contains(&"groups") {
        c.insert("groups".into(), json!(u.groups));
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
            groups: &[],
        };
        let c = user_claims(&u, &["openid"], &[]);
        assert_eq!(c.len(), 1);
        let c = user_claims(&u, &["openid", "email"], &[]);
        assert_eq!(c["email"], "a@example.com");
        assert!(c.get("name").is_none());
        let req = ClaimsRequest::parse(r#"{"userinfo": {"name": {"essential": true}}}"#).unwrap();
        assert_eq!(user_claims(&u, &["openid"], &req.userinfo)["name"], "Ada");
    }

    #[test]
    fn oidc_core_5_5_claims_parameter_is_typed_and_round_trips() {
        let r = ClaimsRequest::parse(
            r#"{"id_token": {"email": {"essential": true}}, "userinfo": {"name": null}, "x": 1}"#,
        )
        .unwrap();
        assert_eq!(r.id_token, ["email"]);
        assert_eq!(r.userinfo, ["name"]);
        assert_eq!(ClaimsRequest::parse(&r.to_json()).unwrap(), r);
        for bad in [
            "[]",
            "1",
            "{\"id_token\": []}",
            "{\"userinfo\": \"name\"}",
            "not json",
        ] {
            assert_eq!(ClaimsRequest::parse(bad), Err(ClaimsError), "{bad}");
        }
        assert_eq!(
            ClaimsRequest::parse("{}").unwrap(),
            ClaimsRequest::default()
        );
    }
}
