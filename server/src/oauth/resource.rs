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

#[cfg(test)]
mod tests {
    use super::*;

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
