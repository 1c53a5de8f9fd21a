//! Our own protected resources, as RFC 9728 describes them: the resource APIs under `/api`,
//! each a resource of its own (`<issuer>/api/devices`, `<issuer>/api/streams`) whose metadata
//! document names this server as its authorization server and the scopes it takes. A client
//! may ask for a token for one of them with RFC 8707 `resource`; such a token (`aud` that
//! resource) is taken by that API only. Tokens for the issuer itself are taken by every API,
//! as before. Pure.

use serde_json::{Value, json};

/// A built-in resource: its path under the issuer, its name, the scopes it takes.
pub struct ApiResource {
    pub path: &'static str,
    pub name: &'static str,
    pub scopes: &'static [&'static str],
}

pub const API_RESOURCES: [ApiResource; 2] = [
    ApiResource {
        path: "/api/devices",
        name: "Latchkey devices API",
        scopes: &["devices:read", "devices:write"],
    },
    ApiResource {
        path: "/api/streams",
        name: "Latchkey streams API",
        scopes: &["streams:read", "streams:write", "streams:reveal"],
    },
];

impl ApiResource {
    /// The resource identifier: the issuer and the path.
    pub fn id(&self, issuer: &str) -> String {
        format!("{issuer}{}", self.path)
    }

    /// Where its RFC 9728 §3.1 metadata is: the well-known prefix inserted between the host
    /// and the path of the identifier.
    pub fn metadata_url(&self, issuer: &str) -> String {
        match url::Url::parse(&self.id(issuer)) {
            Ok(u) => {
                let origin = u.origin().ascii_serialization();
                format!("{origin}/.well-known/oauth-protected-resource{}", u.path())
            }
            Err(_) => String::new(),
        }
    }

    /// The metadata document (RFC 9728 §2).
    pub fn metadata(&self, issuer: &str, dpop_algs: &[&str]) -> Value {
        json!({
            "resource": self.id(issuer),
            "authorization_servers": [issuer],
            "scopes_supported": self.scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": self.name,
            "dpop_signing_alg_values_supported": dpop_algs,
        })
    }
}

/// The built-in resource whose identifier is `aud`, if any.
pub fn by_id(issuer: &str, aud: &str) -> Option<&'static ApiResource> {
    API_RESOURCES.iter().find(|r| r.id(issuer) == aud)
}

/// The built-in resource that takes `scope`.
pub fn by_scope(scope: &str) -> Option<&'static ApiResource> {
    API_RESOURCES.iter().find(|r| r.scopes.contains(&scope))
}

/// The built-in resource whose metadata answers at `/.well-known/oauth-protected-resource/`
/// + `rest` (the path of its identifier, the issuer's path included).
pub fn by_metadata_path(issuer: &str, rest: &str) -> Option<&'static ApiResource> {
    let want = format!("/{}", rest.trim_start_matches('/'));
    API_RESOURCES
        .iter()
        .find(|r| url::Url::parse(&r.id(issuer)).is_ok_and(|u| u.path() == want))
}

/// RFC 9728 §3.1: where the metadata of a resource server outside this one is, for a
/// `resource` we might discover: https (http only with `allow_http`), no userinfo, query or
/// fragment; the well-known prefix goes between the host and the path (a lone `/` path adds
/// nothing).
pub fn external_metadata_url(resource: &str, allow_http: bool) -> Option<String> {
    let u = url::Url::parse(resource).ok()?;
    let scheme_ok = u.scheme() == "https" || (allow_http && u.scheme() == "http");
    if !scheme_ok
        || !u.has_host()
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || resource.len() > 2000
    {
        return None;
    }
    let path = match u.path() {
        "/" => "",
        p => p,
    };
    Some(format!(
        "{}/.well-known/oauth-protected-resource{path}",
        u.origin().ascii_serialization()
    ))
}

/// RFC 9728 §3.2, §3.3: whether the metadata document `body` fetched for `resource` names
/// `issuer` among its `authorization_servers`. Err: not a usable document (not JSON, or its
/// `resource` is not the one asked about, which §3.3 says must not be used).
pub fn names_issuer(resource: &str, body: &[u8], issuer: &str) -> Result<bool, &'static str> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "the metadata is not JSON")?;
    if doc.get("resource").and_then(Value::as_str) != Some(resource) {
        return Err("the metadata's resource is not the resource asked for");
    }
    Ok(doc
        .get("authorization_servers")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|a| a.as_str() == Some(issuer))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_resources_are_discovered_by_their_rfc9728_metadata() {
        assert_eq!(
            external_metadata_url("https://mcp.example.com/mcp", false).as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            external_metadata_url("https://mcp.example.com", false).as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        for bad in [
            "http://mcp.example.com/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://u@mcp.example.com/mcp",
            "urn:example:api",
        ] {
            assert_eq!(external_metadata_url(bad, false), None, "{bad}");
        }
        assert!(external_metadata_url("http://127.0.0.1:9/mcp", true).is_some());

        let r = "https://mcp.example.com/mcp";
        let doc = |res: &str, servers: &str| {
            format!(r#"{{"resource":"{res}","authorization_servers":{servers}}}"#)
        };
        let iss = "https://id.example.com";
        assert_eq!(
            names_issuer(r, doc(r, r#"["https://id.example.com"]"#).as_bytes(), iss),
            Ok(true)
        );
        assert_eq!(
            names_issuer(r, doc(r, r#"["https://other.example"]"#).as_bytes(), iss),
            Ok(false)
        );
        assert_eq!(names_issuer(r, doc(r, "null").as_bytes(), iss), Ok(false));
        assert!(
            names_issuer(
                r,
                doc(
                    "https://mcp.example.com/other",
                    r#"["https://id.example.com"]"#
                )
                .as_bytes(),
                iss
            )
            .is_err()
        );
        assert!(names_issuer(r, b"<html>", iss).is_err());
    }

    #[test]
    fn rfc9728_3_1_the_metadata_url_inserts_the_well_known_prefix() {
        let devices = &API_RESOURCES[0];
        assert_eq!(
            devices.metadata_url("https://id.example.com"),
            "https://id.example.com/.well-known/oauth-protected-resource/api/devices"
        );
        assert_eq!(
            devices.metadata_url("https://id.example.com/tenant"),
            "https://id.example.com/.well-known/oauth-protected-resource/tenant/api/devices"
        );
        assert!(by_metadata_path("https://id.example.com/tenant", "tenant/api/devices").is_some());
        assert!(by_metadata_path("https://id.example.com/tenant", "api/devices").is_none());
        assert!(
            by_id(
                "https://id.example.com",
                "https://id.example.com/api/streams"
            )
            .is_some()
        );
        assert!(by_id("https://id.example.com", "https://id.example.com/api").is_none());
        assert_eq!(by_scope("streams:reveal").unwrap().path, "/api/streams");
    }
}
