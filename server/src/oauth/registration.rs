//! Dynamic client registration requests (RFC 7591 §2, OIDC Registration §2; RFC 7592 §2.2 for
//! updates): what a registrant may set, with RFC 7591's defaults, into [`ClientMetadata`].
//! Metadata we do not understand is ignored, as §2 requires; metadata we understand but do not
//! support is refused, so a client never believes it got what it did not.

use serde::Deserialize;
use serde_json::Value;

use super::client::{AuthMethod, ClientMetadata, GrantType, MetadataError};

#[derive(Debug, Default, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub scope: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks: Option<Value>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_signed_response_alg: Option<String>,
    pub userinfo_signed_response_alg: Option<String>,
    pub subject_type: Option<String>,
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    /// RFC 9126 §6.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.2.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// RFC 9101 §10.5.
    #[serde(default)]
    pub require_signed_request_object: bool,
    /// A security profile (`fapi2`), a Latchkey extension.
    pub profile: Option<super::client::Profile>,
    /// Back-Channel Logout 1.0 §2.2.
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// Present in RFC 7592 updates.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// What a registered client of the code flow may ask for when it registers no `scope`.
pub const DEFAULT_SCOPE: &str = "openid profile email";

fn meta(why: impl Into<String>) -> MetadataError {
    MetadataError::InvalidClientMetadata(why.into())
}

impl RegistrationRequest {
    pub fn parse(body: &[u8]) -> Result<Self, MetadataError> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| meta(format!("the body is not valid registration JSON: {e}")))?;
        if crate::input::json_has_nul(&value) {
            return Err(meta("the metadata holds a NUL character"));
        }
        serde_json::from_value(value)
            .map_err(|e| meta(format!("the body is not valid registration JSON: {e}")))
    }

    pub fn into_metadata(self) -> Result<ClientMetadata, MetadataError> {
        let grant_types = match self.grant_types {
            None => vec![GrantType::AuthorizationCode],
            Some(list) => list
                .iter()
                .map(|g| {
                    g.parse::<GrantType>()
                        .map_err(|()| meta(format!("grant type {g:?} is not supported")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        // Trust an administrator gives: redeeming other parties' tokens (token exchange) and
        // the service-only scopes are not for self-registered clients.
        if grant_types.contains(&GrantType::TokenExchange) {
            return Err(meta(
                "the token-exchange grant is given by an administrator (latchkey client create)",
            ));
        }
        if let Some(reserved) = self.scope.as_deref().and_then(|s| {
            s.split(' ')
                .find(|s| crate::oauth::scope::ADMIN_ONLY_SCOPES.contains(s))
        }) {
            return Err(meta(format!(
                "the scope {reserved} is given by an administrator (latchkey client create)"
            )));
        }
        // RFC 7591 §2.1: response_types and grant_types must agree.
        let wants_code = grant_types.contains(&GrantType::AuthorizationCode);
        let response_types = self.response_types.unwrap_or_else(|| {
            if wants_code {
                vec!["code".into()]
            } else {
                Vec::new()
            }
        });
        match (wants_code, response_types.as_slice()) {
            (true, [code]) if code == "code" => {}
            (false, []) => {}
            _ => {
                return Err(meta(
                    "response_types must be [\"code\"] with authorization_code and empty without it",
                ));
            }
        }
        let method = match self.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
            Some("client_secret_post") => AuthMethod::ClientSecretPost,
            Some("none") => AuthMethod::None,
            Some("private_key_jwt") => AuthMethod::PrivateKeyJwt,
            Some(other) => {
                return Err(meta(format!(
                    "token_endpoint_auth_method {other:?} is not supported"
                )));
            }
        };
        if self.userinfo_signed_response_alg.is_some() {
            return Err(meta("signed userinfo responses are not supported"));
        }
        if self.subject_type.as_deref().is_some_and(|s| s != "public") {
            return Err(meta("only the public subject type is supported"));
        }
        let client_name = self
            .client_name
            .or_else(|| {
                self.redirect_uris
                    .first()
                    .and_then(|u| url::Url::parse(u).ok())
                    .and_then(|u| u.host_str().map(str::to_owned))
            })
            .unwrap_or_else(|| "Unnamed application".into());
        ClientMetadata {
            client_name,
            redirect_uris: self.redirect_uris,
            grant_types,
            response_types,
            token_endpoint_auth_method: method,
            // OIDC relying parties seldom send `scope` when they register and expect the
            // standard claims: without one, a client of the code flow may ask for the OIDC
            // scopes this server offers everyone (openid, profile, email).
            scope: match self.scope.filter(|s| !s.trim().is_empty()) {
                Some(s) => s,
                None if wants_code => DEFAULT_SCOPE.to_owned(),
                None => String::new(),
            },
            jwks_uri: self.jwks_uri,
            jwks: self.jwks,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            id_token_signed_response_alg: self.id_token_signed_response_alg,
            logo_uri: self.logo_uri,
            policy_uri: self.policy_uri,
            tos_uri: self.tos_uri,
            // Only an administrator makes a client first-party.
            first_party: false,
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            require_signed_request_object: self.require_signed_request_object,
            profile: self.profile,
            backchannel_logout_uri: self.backchannel_logout_uri,
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            token_exchange_impersonation: false,
            // Nor gives it resource servers.
            resources: Vec::new(),
            serves: Vec::new(),
        }
        .validate()
    }
}

/// `registration.policy = "open_public"`: what anyone may register. A public client
/// (`token_endpoint_auth_method` `none`) of the code flow, with refresh tokens, whose redirect
/// URIs are https or on a loopback address (a native app or an agent on the user's machine).
/// No client_credentials, device code or token exchange, no administrator scopes (those are
/// refused for every registrant already).
pub fn open_public(m: &ClientMetadata) -> Result<(), MetadataError> {
    if m.token_endpoint_auth_method != AuthMethod::None {
        return Err(meta(
            "open registration takes public clients only: token_endpoint_auth_method must be none",
        ));
    }
    if m.grant_types
        .iter()
        .any(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
    {
        return Err(meta(
            "open registration takes authorization_code and refresh_token only",
        ));
    }
    for uri in m.redirect_uris.iter().chain(&m.post_logout_redirect_uris) {
        let ok = url::Url::parse(uri).is_ok_and(|u| {
            u.scheme() == "https"
                || (u.scheme() == "http"
                    && u.host_str().is_some_and(crate::config::is_loopback_host))
        });
        if !ok {
            return Err(MetadataError::InvalidRedirectUri(format!(
                "open registration takes https or loopback (http://127.0.0.1) redirect URIs only: {uri}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_holding_a_nul_is_invalid_client_metadata() {
        let body = br#"{"redirect_uris": ["https://rp.example.com/cb"], "policy_uri": "https://rp.example.com/\u0000"}"#;
        assert!(matches!(
            RegistrationRequest::parse(body),
            Err(MetadataError::InvalidClientMetadata(_))
        ));
    }

    fn reg(json: &str) -> Result<ClientMetadata, MetadataError> {
        RegistrationRequest::parse(json.as_bytes())?.into_metadata()
    }

    #[test]
    fn open_public_takes_public_code_flow_clients_with_loopback_or_https_redirects() {
        let ok = |json: &str| open_public(&reg(json).unwrap());
        ok(r#"{"redirect_uris":["http://127.0.0.1:4711/cb","https://app.example/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}"#).unwrap();
        let e = ok(r#"{"redirect_uris":["https://app.example/cb"]}"#).unwrap_err();
        assert!(e.description().contains("public clients only"), "{e}");
        let e =
            ok(r#"{"redirect_uris":["com.example.app:/cb"],"token_endpoint_auth_method":"none"}"#)
                .unwrap_err();
        assert_eq!(e.code(), "invalid_redirect_uri");
        let e = ok(r#"{"grant_types":["urn:ietf:params:oauth:grant-type:device_code"],"token_endpoint_auth_method":"none"}"#).unwrap_err();
        assert!(
            e.description()
                .contains("authorization_code and refresh_token only")
        );
    }

    #[test]
    fn rfc7591_defaults_apply() {
        let m =
            reg(r#"{"redirect_uris":["https://app.example.com/cb"],"unknown_field":1}"#).unwrap();
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.client_name, "app.example.com");
        assert!(!m.first_party);
    }

    #[test]
    fn inconsistent_or_unsupported_metadata_is_refused() {
        let e =
            reg(r#"{"redirect_uris":["https://a.example/cb"],"response_types":["code id_token"]}"#)
                .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        let e = reg(r#"{"redirect_uris":["https://a.example/cb#frag"]}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_redirect_uri");
        let e = reg(r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["implicit"]}"#)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        let e = reg(r#"{"grant_types":["refresh_token"]}"#).unwrap_err();
        assert_eq!(
            e.code(),
            "invalid_client_metadata",
            "refresh_token alone issues nothing"
        );
        // Token exchange and service-only scopes come from an administrator only.
        let e = reg(r#"{"grant_types":["urn:ietf:params:oauth:grant-type:token-exchange"]}"#)
            .unwrap_err();
        assert!(e.description().contains("administrator"));
        let e = reg(
            r#"{"grant_types":["client_credentials"],"scope":"streams:read streams:internal"}"#,
        )
        .unwrap_err();
        assert!(e.description().contains("streams:internal"));
        let m = reg(r#"{"grant_types":["urn:ietf:params:oauth:grant-type:device_code"]}"#).unwrap();
        assert_eq!(m.grant_types, [GrantType::DeviceCode]);
        let e = reg(r#"{"redirect_uris":["https://a.example/cb"],"subject_type":"pairwise"}"#)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        let e = reg(r#"{"redirect_uris":"https://a.example/cb"}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        let e = reg(r#"{"redirect_uris":["javascript:alert(1)"]}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_redirect_uri");
    }
}
