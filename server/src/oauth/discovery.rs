//! Provider metadata (OIDC Discovery §3, RFC 8414 §2). Advertises only what this server does:
//! each field joins the document in the same change that makes it true.

use serde_json::{Value, json};

/// What the configuration switches on, as discovery tells it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Offers {
    /// `/register` is open to anyone or to holders of an initial access token.
    pub registration: bool,
    /// Every authorization request must be pushed (RFC 9126 §5).
    pub par_required: bool,
    /// An https `client_id` is taken as a client ID metadata document's URL.
    pub client_id_metadata_documents: bool,
}

/// The metadata document for `issuer`.
pub fn metadata(issuer: &str, offers: Offers) -> Value {
    let Offers {
        registration,
        par_required,
        client_id_metadata_documents,
    } = offers;
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "scopes_supported": ["openid", "profile", "email", "offline_access", "groups"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:token-exchange"],
        "device_authorization_endpoint": format!("{issuer}/device_authorization"),
        "pushed_authorization_request_endpoint": format!("{issuer}/par"),
        "require_pushed_authorization_requests": par_required,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid", "name", "email", "email_verified", "groups"],
        "claims_parameter_supported": true,
        "acr_values_supported": ["phrh", "phr", "1"],
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": super::request_object::SIGNING_ALGS,
        "request_uri_parameter_supported": false,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "client_id_metadata_document_supported": client_id_metadata_documents,
    });
    doc["dpop_signing_alg_values_supported"] = json!(
        super::dpop::PROOF_ALGS
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
    );
    if registration {
        doc["registration_endpoint"] = json!(format!("{issuer}/register"));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_derived_from_the_issuer() {
        let m = metadata("https://id.example.com", Offers::default());
        assert!(m.get("registration_endpoint").is_none());
        assert_eq!(m["issuer"], "https://id.example.com");
        assert_eq!(m["jwks_uri"], "https://id.example.com/jwks.json");
        assert_eq!(m["token_endpoint"], "https://id.example.com/token");
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    }
}
