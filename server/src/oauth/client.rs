//! Client metadata (RFC 7591 §2, OIDC Registration §2) and its validation. Static clients from
//! the CLI and, later, dynamic registration go through the same rules.

use serde::{Deserialize, Serialize};
use url::Url;

use super::scope::parse_scope;
use crate::config::is_loopback_host;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    #[value(name = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    #[value(name = "refresh_token")]
    RefreshToken,
    #[serde(rename = "client_credentials")]
    #[value(name = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    #[value(name = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    #[value(name = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl std::str::FromStr for GrantType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| ())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// A security profile a client is held to, beyond what its metadata says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// FAPI 2.0 Security Profile (§5): pushed requests, PKCE S256, private_key_jwt, DPoP, RFC
    /// 9207 `iss`, codes of at most 60 s, and PS256, ES256 or EdDSA for every signature.
    Fapi2,
}

/// The algorithms FAPI 2.0 §5.4 allows for every JWS (RS256 and `none` are not among them).
pub const FAPI2_ALGS: [latchkey_jwks::Alg; 3] = [
    latchkey_jwks::Alg::Ps256,
    latchkey_jwks::Alg::Es256,
    latchkey_jwks::Alg::EdDsa,
];

/// Registered metadata, as stored and as returned to the registrant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The client's public keys by value (RFC 7591 §2), for private_key_jwt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed when a session in which
    /// the client got a grant ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// §2.2: the client needs `sid` in logout tokens (they always carry it here).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backchannel_logout_session_required: bool,
    /// OIDC Registration §2; RS256 when absent, as OIDC Core §3.1.3.7 says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// A first-party client skips the consent page. Set by an administrator only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_party: bool,
    /// RFC 9126 §6: this client's authorization requests must be pushed (`/par`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.2: every token request of this client must carry a DPoP proof, so every
    /// access token it gets is DPoP-bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// RFC 9101 §10.5: this client's authorization requests must be request objects signed
    /// with its registered keys (or pushed to `/par` as such).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signed_request_object: bool,
    /// A security profile (`fapi2`), which sets and checks what it requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// RFC 8693 impersonation: the client may exchange a subject token without an actor
    /// token and get a token that does not name it. Set by an administrator only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_exchange_impersonation: bool,
    /// Resource servers (RFC 8707 `resource`, RFC 8693 `audience`) this client may have
    /// tokens for, besides the issuer; each must also be in `tokens.resources`. Set by an
    /// administrator only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Resource servers (of `tokens.resources`) this client is: users' tokens for them are
    /// meant for it, so it may exchange them (RFC 8693). Set by an administrator only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serves: Vec<String>,
}

/// A registered client as the protocol sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub secret_digest: Option<String>,
    pub metadata: ClientMetadata,
    pub origin: ClientOrigin,
    /// The secret digest a rotation replaced and until when it still works
    /// (`client rotate-secret --grace`).
    pub previous_secret: Option<(String, i64)>,
}

/// Who vouches for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOrigin {
    /// An administrator (the CLI), or a registrant holding an initial access token.
    Registered,
    /// Anyone: `registration.policy = "open"`. Shown as unverified.
    Anonymous,
    /// Anyone, within what `open_public` allows (a public code-flow client), which binds it
    /// for good (RFC 7592 updates too). Shown as unverified; removed when unused.
    OpenPublic,
    /// A client ID metadata document at the https URL that is its `client_id`: the host of
    /// that URL is who it is.
    Document,
}

impl Client {
    /// Whether nobody we trust vouches for the client (the consent page says so).
    pub fn is_unverified(&self) -> bool {
        self.origin != ClientOrigin::Registered
    }

    /// Whether a token of this client may have `aud` (a requested `resource` or
    /// `audience`): the issuer, one of our own APIs (`oauth::resource`), or a resource server
    /// both configured (`configured`) and given to the client (`resources`), or one the client
    /// is (`serves`).
    pub fn may_have_audience(&self, issuer: &str, configured: &[String], aud: &str) -> bool {
        let mine = |list: &[String]| list.iter().any(|r| r == aud);
        aud == issuer
            || super::resource::by_id(issuer, aud).is_some()
            || (mine(configured) && (mine(&self.metadata.resources) || mine(&self.metadata.serves)))
    }

    pub fn has_grant(&self, g: GrantType) -> bool {
        self.metadata.grant_types.contains(&g)
    }

    pub fn allowed_scopes(&self) -> impl Iterator<Item = &str> + Clone {
        self.metadata.scope.split(' ').filter(|s| !s.is_empty())
    }

    pub fn id_token_alg(&self) -> latchkey_jwks::Alg {
        let default = if self.is_fapi2() {
            latchkey_jwks::Alg::Ps256
        } else {
            latchkey_jwks::Alg::Rs256
        };
        self.metadata
            .id_token_signed_response_alg
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    }

    pub fn is_fapi2(&self) -> bool {
        self.metadata.profile == Some(Profile::Fapi2)
    }

    /// The algorithms this client's own JWTs (client assertions, request objects, DPoP
    /// proofs) may be signed with: FAPI 2.0's for a `fapi2` client, else every one we know.
    pub fn jws_algs(&self) -> &'static [latchkey_jwks::Alg] {
        if self.is_fapi2() {
            &FAPI2_ALGS
        } else {
            &latchkey_jwks::Alg::ALL
        }
    }
}

/// RFC 7591 §3.2.2 error codes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(String),
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(String),
}

impl MetadataError {
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            MetadataError::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            MetadataError::InvalidRedirectUri(d) | MetadataError::InvalidClientMetadata(d) => d,
        }
    }
}

fn meta(why: impl Into<String>) -> MetadataError {
    MetadataError::InvalidClientMetadata(why.into())
}

pub const MAX_REDIRECT_URIS: usize = 20;
pub const MAX_URI_LEN: usize = 2000;

impl ClientMetadata {
    /// Checks the rules and fills what RFC 7591 §2 says to derive (response types from
    /// grant types).
    /// FAPI 2.0 Security Profile §5.3.2.1–2, §5.4: what a `fapi2` client must be. PAR and
    /// DPoP are switched on; the rest must already hold.
    fn fapi2(&mut self) -> Result<(), MetadataError> {
        let fapi = |why: &str| meta(format!("profile fapi2: {why}"));
        if self.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
            return Err(fapi("token_endpoint_auth_method must be private_key_jwt"));
        }
        if self
            .grant_types
            .iter()
            .any(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
        {
            return Err(fapi(
                "grant_types may be authorization_code and refresh_token only",
            ));
        }
        if let Some(alg) = &self.id_token_signed_response_alg
            && !FAPI2_ALGS.iter().any(|a| a.as_str() == alg)
        {
            return Err(fapi(
                "id_token_signed_response_alg must be PS256, ES256 or EdDSA",
            ));
        }
        self.require_pushed_authorization_requests = true;
        self.dpop_bound_access_tokens = true;
        Ok(())
    }

    pub fn validate(mut self) -> Result<Self, MetadataError> {
        let name = self.client_name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(meta(
                "client_name must be 1 to 200 characters without control characters",
            ));
        }
        self.client_name = name.to_owned();

        if self.grant_types.is_empty() {
            return Err(meta("grant_types must not be empty"));
        }
        if self.profile == Some(Profile::Fapi2) {
            self.fapi2()?;
        }
        self.grant_types.dedup();
        for r in self.resources.iter().chain(&self.serves) {
            let ok = r.len() <= MAX_URI_LEN
                && Url::parse(r).is_ok_and(|u| u.fragment().is_none() && u.has_host());
            if !ok {
                return Err(meta(format!(
                    "resource {r:?} is not an absolute URI without a fragment (RFC 8707)"
                )));
            }
        }
        self.resources.sort();
        self.resources.dedup();
        self.serves.sort();
        self.serves.dedup();
        let has = |g: GrantType| self.grant_types.contains(&g);
        if has(GrantType::RefreshToken)
            && !(has(GrantType::AuthorizationCode)
                || has(GrantType::DeviceCode)
                || has(GrantType::TokenExchange))
        {
            return Err(meta(
                "refresh_token needs a grant that issues refresh tokens (authorization_code, device_code or token-exchange)",
            ));
        }
        let public = self.token_endpoint_auth_method == AuthMethod::None;
        if public && has(GrantType::ClientCredentials) {
            return Err(meta(
                "a public client (token_endpoint_auth_method none) cannot use client_credentials",
            ));
        }
        self.response_types = if has(GrantType::AuthorizationCode) {
            vec!["code".into()]
        } else {
            Vec::new()
        };

        if has(GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err(MetadataError::InvalidRedirectUri(
                "authorization_code needs at least one redirect URI".into(),
            ));
        }
        if self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(MetadataError::InvalidRedirectUri(format!(
                "at most {MAX_REDIRECT_URIS} redirect URIs"
            )));
        }
        for uri in &self.redirect_uris {
            validate_redirect_uri(uri)?;
        }
        self.redirect_uris.dedup();

        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Err(meta("give jwks or jwks_uri, not both (RFC 7591 §2)"));
        }
        if let Some(uri) = &self.jwks_uri {
            let url = Url::parse(uri).map_err(|_| meta("jwks_uri is not a URL"))?;
            if url.scheme() != "https" || url.fragment().is_some() || uri.len() > MAX_URI_LEN {
                return Err(meta("jwks_uri must be an https URL without a fragment"));
            }
        }
        if let Some(jwks) = &self.jwks {
            let set = latchkey_jwks::PublicKeySet::from_jwks_value(jwks)
                .map_err(|e| meta(format!("jwks: {e}")))?;
            if set.is_empty() {
                return Err(meta(
                    "jwks has no signature key for RS256, PS256, ES256 or EdDSA",
                ));
            }
        }
        if self.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt
            && self.jwks.is_none()
            && self.jwks_uri.is_none()
        {
            return Err(meta("private_key_jwt needs jwks or jwks_uri"));
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            // §2.2: an absolute http(s) URI without a fragment; https is required when it is
            // used (outbound rules), unless a danger_ option allows http for a test setup.
            // http only on a loopback host (a relying party in development; sending to it
            // still needs the danger_ option).
            let ok = url::Url::parse(uri).is_ok_and(|u| {
                let loopback = matches!(
                    u.host(),
                    Some(url::Host::Ipv4(ip)) if ip.is_loopback()
                ) || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || u.host_str() == Some("localhost");
                (u.scheme() == "https" || (u.scheme() == "http" && loopback))
                    && u.has_host()
                    && u.fragment().is_none()
            });
            if !ok || uri.len() > 2048 {
                return Err(meta(
                    "backchannel_logout_uri must be an absolute https URL without a fragment",
                ));
            }
        }
        if self.require_signed_request_object && self.jwks.is_none() && self.jwks_uri.is_none() {
            return Err(meta(
                "require_signed_request_object needs jwks or jwks_uri to verify them with",
            ));
        }

        for uri in &self.post_logout_redirect_uris {
            validate_redirect_uri(uri)
                .map_err(|e| meta(format!("post_logout_redirect_uris: {}", e.description())))?;
        }
        if let Some(alg) = &self.id_token_signed_response_alg
            && alg.parse::<latchkey_jwks::Alg>().is_err()
        {
            return Err(meta(
                "id_token_signed_response_alg must be RS256, PS256, ES256 or EdDSA",
            ));
        }
        for (name, uri) in [
            ("logo_uri", &self.logo_uri),
            ("policy_uri", &self.policy_uri),
            ("tos_uri", &self.tos_uri),
        ] {
            if let Some(uri) = uri {
                let ok = uri.len() <= MAX_URI_LEN
                    && Url::parse(uri).is_ok_and(|u| {
                        u.scheme() == "https"
                            || (u.scheme() == "http" && u.host_str().is_some_and(is_loopback_host))
                    });
                if !ok {
                    return Err(meta(format!("{name} must be an https URL")));
                }
            }
        }
        let scopes = parse_scope(&self.scope).map_err(meta)?;
        self.scope = if scopes.is_empty() && has(GrantType::AuthorizationCode) {
            "openid".into()
        } else {
            scopes.join(" ")
        };
        Ok(self)
    }
}

/// A redirect URI is registered as an exact string (compared exactly at /authorize, with the
/// RFC 8252 §7.3 loopback-port exception). It must be absolute and have no fragment
/// (RFC 6749 §3.1.2); https, http only on a loopback host, or a private-use scheme with a dot
/// for native apps (RFC 8252 §7.1). Script and data schemes are never accepted.
pub fn validate_redirect_uri(uri: &str) -> Result<(), MetadataError> {
    let bad = |why: &str| MetadataError::InvalidRedirectUri(format!("{why}: {uri:?}"));
    if uri.len() > MAX_URI_LEN {
        return Err(bad("redirect URI is too long"));
    }
    let url = Url::parse(uri).map_err(|_| bad("redirect URI is not an absolute URL"))?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(bad("redirect URI must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("redirect URI must not contain credentials"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => Err(bad("http redirect URIs are only allowed on loopback hosts")),
        "javascript" | "data" | "vbscript" | "file" | "blob" | "about" | "ws" | "wss" => {
            Err(bad("redirect URI scheme is not allowed"))
        }
        s if s.contains('.') => Ok(()),
        _ => Err(bad(
            "a private-use redirect URI scheme must be a reverse domain name (RFC 8252 §7.1)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ClientMetadata {
        ClientMetadata {
            client_name: "App".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            response_types: vec![],
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            scope: String::new(),
            jwks_uri: None,
            jwks: None,
            post_logout_redirect_uris: vec![],
            id_token_signed_response_alg: None,
            logo_uri: None,
            policy_uri: None,
            tos_uri: None,
            first_party: false,
            require_pushed_authorization_requests: false,
            dpop_bound_access_tokens: false,
            require_signed_request_object: false,
            profile: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            token_exchange_impersonation: false,
            resources: Vec::new(),
            serves: Vec::new(),
        }
    }

    #[test]
    fn valid_metadata_gets_derived_fields() {
        let m = base().validate().unwrap();
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.scope, "openid");
    }

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1:8000/cb",
            "http://localhost/cb",
            "http://[::1]/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "/relative",
            "myapp:/cb",
            "https://user:pw@app.example.com/cb",
        ] {
            assert!(
                matches!(
                    validate_redirect_uri(bad),
                    Err(MetadataError::InvalidRedirectUri(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn inconsistent_grants_are_refused() {
        let mut m = base();
        m.grant_types = vec![GrantType::RefreshToken];
        assert!(m.validate().is_err());
        let mut m = base();
        m.token_endpoint_auth_method = AuthMethod::None;
        m.grant_types.push(GrantType::ClientCredentials);
        assert!(m.validate().is_err());
        let mut m = base();
        m.token_endpoint_auth_method = AuthMethod::PrivateKeyJwt;
        assert_eq!(m.validate().unwrap_err().code(), "invalid_client_metadata");
        let mut m = base();
        m.redirect_uris.clear();
        assert_eq!(m.validate().unwrap_err().code(), "invalid_redirect_uri");
    }

    #[test]
    fn client_credentials_only_needs_no_redirect_uri() {
        let mut m = base();
        m.redirect_uris.clear();
        m.grant_types = vec![GrantType::ClientCredentials];
        let m = m.validate().unwrap();
        assert!(m.response_types.is_empty());
    }
}
