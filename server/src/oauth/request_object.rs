//! RFC 9101 (JAR) and OIDC Core §6.1: an authorization request passed as a signed JWT, by
//! value in `request`. Once its signature is verified (`clients::verify_request_object`), its
//! claims ARE the request: RFC 9101 §5 has the server use only the parameters inside the
//! object, so every other parameter sent beside it, but `client_id`, is dropped. Pure.

use serde_json::{Map, Value};

use super::params::{MAX_PARAMS, MAX_VALUE_LEN, Params};

/// JWT claims of the object itself, not parameters of the request.
const JWT_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

/// The algorithms request objects may be signed with (`none` is not one of them).
pub const SIGNING_ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// The parameters of the request an object stands for: its claims (strings as they are,
/// numbers and booleans as text, objects such as `claims` as JSON), and `client_id` from
/// beside it. An object naming another `request` or `request_uri`, or holding values a
/// parameter could not, is refused with the description of an `invalid_request_object`.
pub fn parameters(client_id: &str, claims: Map<String, Value>) -> Result<Params, &'static str> {
    let mut params = Params::default();
    let mut count = 0;
    for (name, value) in claims {
        if JWT_CLAIMS.contains(&name.as_str()) {
            continue;
        }
        if name == "request" || name == "request_uri" {
            return Err("a request object cannot hold another request or request_uri");
        }
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            v @ (Value::Object(_) | Value::Array(_)) => v.to_string(),
        };
        if text.len() > MAX_VALUE_LEN || name.len() > MAX_VALUE_LEN || text.contains('\0') {
            return Err("a request object value is too long or holds a NUL");
        }
        count += 1;
        if count > MAX_PARAMS {
            return Err("the request object has too many parameters");
        }
        params.insert(&name, text);
    }
    params.insert("client_id", client_id.to_owned());
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rfc9101_5_only_the_objects_parameters_count() {
        let p = parameters(
            "c1",
            claims(json!({
                "iss": "c1", "aud": "https://op", "exp": 5, "jti": "j",
                "response_type": "code", "redirect_uri": "https://rp/cb",
                "max_age": 300, "claims": {"userinfo": {"email": null}}, "client_id": "c1"
            })),
        )
        .unwrap();
        assert_eq!(p.get("redirect_uri"), Some("https://rp/cb"));
        assert_eq!(p.get("max_age"), Some("300"));
        assert_eq!(p.get("claims"), Some(r#"{"userinfo":{"email":null}}"#));
        assert_eq!(p.get("client_id"), Some("c1"));
        for jwt in ["iss", "aud", "exp", "jti"] {
            assert!(p.get(jwt).is_none(), "{jwt}");
        }
    }

    #[test]
    fn rfc9101_nested_requests_are_refused() {
        assert!(parameters("c", claims(json!({"request": "x"}))).is_err());
        assert!(parameters("c", claims(json!({"request_uri": "x"}))).is_err());
        assert!(parameters("c", claims(json!({"state": "a\u{0}b"}))).is_err());
    }
}
