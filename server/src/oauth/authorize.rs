//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) as an ordered pipeline of
//! small checks. Until the client and its redirect URI are verified, a failure can only be
//! shown as a page ([`Rejection::Page`]); the redirecting variant needs a [`VerifiedRedirect`],
//! which only this module can make, after those checks.

use super::claims::ClaimsRequest;
use super::client::{Client, GrantType};
use super::error::{AuthorizeError, AuthorizeErrorCode as E};
use super::params::Params;
use super::pkce;
use super::redirect::matches_registered;
use super::scope::parse_scope;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    FormPost,
}

/// A redirect URI that is registered for the client that asked. Not constructible elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRedirect {
    uri: String,
    pub mode: ResponseMode,
    pub state: Option<String>,
}

impl VerifiedRedirect {
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Shown to the user; never sent to the client.
    Page(PageReason),
    /// Sent back to the verified redirect URI.
    Redirect(Box<VerifiedRedirect>, AuthorizeError),
}

/// Why a request cannot go back to the client: the user is told on a page (in words the
/// page layer chooses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageReason {
    NoClientId,
    UnknownClient,
    NoRedirectUri,
    UnregisteredRedirectUri,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

/// A validated authorization request.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthzRequest {
    pub redirect: VerifiedRedirect,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub id_token_hint: Option<String>,
    pub login_hint: Option<String>,
    pub acr_values: Vec<String>,
    pub claims: Option<ClaimsRequest>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    pub dpop_jkt: Option<String>,
    /// RFC 8707 §2: the resource the tokens are for (whether this client may have it is the
    /// caller's to check: it needs the configuration).
    pub resource: Option<String>,
}

impl AuthzRequest {
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    pub fn is_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }
}

/// Runs the checks in order. `client` is what the store found for `client_id`, if anything.
pub fn validate(params: &Params, client: Option<&Client>) -> Result<AuthzRequest, Rejection> {
    // 1. The client must be known (RFC 6749 §4.1.2.1: never redirect otherwise).
    if params.get("client_id").is_none() {
        return Err(Rejection::Page(PageReason::NoClientId));
    }
    let client = client.ok_or(Rejection::Page(PageReason::UnknownClient))?;

    // 2. The redirect URI must be given and registered, exactly.
    let uri = params
        .get("redirect_uri")
        .ok_or(Rejection::Page(PageReason::NoRedirectUri))?;
    let native = client.metadata.token_endpoint_auth_method == super::client::AuthMethod::None;
    if !matches_registered(uri, &client.metadata.redirect_uris, native) {
        return Err(Rejection::Page(PageReason::UnregisteredRedirectUri));
    }

    // 3. From here on errors go back to the client, in the response mode it asked for
    //    (falling back to the query for an unknown mode).
    let mode = match params.get("response_mode") {
        None | Some("query") => Ok(ResponseMode::Query),
        Some("form_post") => Ok(ResponseMode::FormPost),
        Some(_) => Err(()),
    };
    let redirect = VerifiedRedirect {
        uri: uri.to_owned(),
        mode: mode.unwrap_or(ResponseMode::Query),
        state: params.get("state").map(str::to_owned),
    };
    let fail = |code: E, why: &'static str| {
        Rejection::Redirect(Box::new(redirect.clone()), AuthorizeError::new(code, why))
    };
    if mode.is_err() {
        return Err(fail(
            E::InvalidRequest,
            "response_mode must be query or form_post",
        ));
    }

    // 4. A request object (`request`) is verified and taken apart before this runs (its
    //    claims are the parameters here), so one still here is not one we could verify; a
    //    `request_uri` is taken only from /par (RFC 9126), never fetched; `registration` is
    //    not supported.
    if params.contains("request") {
        return Err(fail(
            E::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.contains("request_uri") {
        return Err(fail(
            E::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    if params.contains("registration") {
        return Err(fail(
            E::RegistrationNotSupported,
            "the registration parameter is not supported",
        ));
    }

    // 5. response_type: the code flow only.
    match params.get("response_type") {
        None => return Err(fail(E::InvalidRequest, "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                E::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client.has_grant(GrantType::AuthorizationCode) {
        return Err(fail(
            E::UnauthorizedClient,
            "the client may not use the authorization code flow",
        ));
    }

    // 6. Scope: narrowed to what the client may ask for; nothing left is an error.
    let requested = parse_scope(params.get("scope").unwrap_or_default())
        .map_err(|_| fail(E::InvalidScope, "scope has characters RFC 6749 forbids"))?;
    let scopes: Vec<String> = requested
        .into_iter()
        .filter(|s| client.allowed_scopes().any(|a| a == s))
        .collect();
    if scopes.is_empty() {
        return Err(fail(
            E::InvalidScope,
            "none of the requested scopes is allowed for this client",
        ));
    }

    // 7. PKCE S256, for every client.
    let code_challenge = params.get("code_challenge").ok_or_else(|| {
        fail(
            E::InvalidRequest,
            "code_challenge is required (PKCE with S256)",
        )
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(fail(
            E::InvalidRequest,
            "code_challenge_method must be S256",
        ));
    }
    if !pkce::is_valid_challenge(code_challenge) {
        return Err(fail(
            E::InvalidRequest,
            "code_challenge is not a S256 challenge",
        ));
    }

    // 8. prompt (OIDC Core §3.1.2.1): known values; `none` stands alone.
    let mut prompt = Prompt::default();
    for p in params
        .get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|p| !p.is_empty())
    {
        match p {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => prompt.select_account = true,
            _ => return Err(fail(E::InvalidRequest, "prompt has an unknown value")),
        }
    }
    if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
        return Err(fail(
            E::InvalidRequest,
            "prompt=none cannot be combined with other values",
        ));
    }

    // 9. max_age: a non-negative number of seconds.
    let max_age =
        match params.get("max_age") {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                fail(E::InvalidRequest, "max_age must be a non-negative integer")
            })?),
        };

    // 10. claims (OIDC Core §5.5): a JSON object whose id_token and userinfo members are
    // objects of claim names.
    let claims = match params.get("claims") {
        None => None,
        Some(v) => Some(ClaimsRequest::parse(v).map_err(|_| {
            fail(
                E::InvalidRequest,
                "claims must be a JSON object whose id_token and userinfo members are objects",
            )
        })?),
    };

    // 11. dpop_jkt (RFC 9449 §10): an RFC 7638 SHA-256 thumbprint, base64url (43 characters).
    let dpop_jkt = match params.get("dpop_jkt") {
        None => None,
        Some(j)
            if j.len() == 43
                && j.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(j.to_owned())
        }
        Some(_) => {
            return Err(fail(
                E::InvalidRequest,
                "dpop_jkt must be the base64url SHA-256 thumbprint of a key",
            ));
        }
    };

    // 12. resource (RFC 8707 §2): an absolute URI without a fragment (one: a repeated
    //     parameter was refused when the parameters were read).
    let resource = match params.get("resource") {
        None => None,
        Some(r) if url::Url::parse(r).is_ok_and(|u| u.has_host() && u.fragment().is_none()) => {
            Some(r.to_owned())
        }
        Some(_) => {
            return Err(fail(
                E::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            ));
        }
    };

    Ok(AuthzRequest {
        resource,
        dpop_jkt,
        scopes,
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        prompt,
        max_age,
        id_token_hint: params.get("id_token_hint").map(str::to_owned),
        login_hint: params.get("login_hint").map(str::to_owned),
        acr_values: params
            .get("acr_values")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        claims,
        redirect,
    })
}

/// ACR values for phishing-resistant sign-in (OpenID EAP ACR Values 1.0): `phr`, and `phrh`
/// for phishing-resistant and hardware-protected. A passkey sign-in is `phr` when the passkey
/// is synced, `phrh` when it is bound to its device.
pub const ACR_PHR: &str = "phr";
pub const ACR_PHRH: &str = "phrh";

/// Whether `acr_values` (space-separated, in preference order) asks for a phishing-resistant
/// sign-in, that is, names no method weaker than a passkey.
pub fn wants_phishing_resistant(acr_values: &[String]) -> bool {
    !acr_values.is_empty() && acr_values.iter().all(|a| a == ACR_PHR || a == ACR_PHRH)
}

/// Whether a session signed in at `acr` satisfies `acr_values`. Only phishing-resistant
/// requests are enforced; other values are voluntary (OIDC Core §3.1.2.1) and any session does.
pub fn acr_satisfied(acr_values: &[String], acr: &str) -> bool {
    if !wants_phishing_resistant(acr_values) {
        return true;
    }
    acr_values
        .iter()
        .any(|want| want == acr || (want == ACR_PHR && acr == ACR_PHRH))
}

/// The parameters of the authorization response (RFC 6749 §4.1.2, RFC 9207 `iss`).
pub fn success_params(
    redirect: &VerifiedRedirect,
    code: &str,
    issuer: &str,
) -> Vec<(String, String)> {
    let mut p = vec![("code".to_owned(), code.to_owned())];
    if let Some(state) = &redirect.state {
        p.push(("state".into(), state.clone()));
    }
    p.push(("iss".into(), issuer.to_owned()));
    p
}

pub fn error_params(
    redirect: &VerifiedRedirect,
    err: &AuthorizeError,
    issuer: &str,
) -> Vec<(String, String)> {
    let mut p = vec![
        ("error".to_owned(), err.code.as_str().to_owned()),
        ("error_description".to_owned(), err.description().to_owned()),
    ];
    if let Some(state) = &redirect.state {
        p.push(("state".into(), state.clone()));
    }
    p.push(("iss".into(), issuer.to_owned()));
    p
}

/// The URL to redirect to in query mode: the registered URI with our parameters appended to
/// any query it already has.
pub fn query_redirect_url(redirect: &VerifiedRedirect, params: &[(String, String)]) -> String {
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let sep = if redirect.uri.contains('?') { '&' } else { '?' };
    format!("{}{sep}{encoded}", redirect.uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client::{AuthMethod, ClientMetadata};

    fn client() -> Client {
        Client {
            client_id: "c1".into(),
            secret_digest: None,
            metadata: ClientMetadata {
                client_name: "App".into(),
                redirect_uris: vec!["https://app.example.com/cb".into()],
                grant_types: vec![GrantType::AuthorizationCode],
                response_types: vec!["code".into()],
                token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
                scope: "openid profile".into(),
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
            },
            origin: crate::oauth::client::ClientOrigin::Registered,
            previous_secret: None,
        }
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params(extra: &str) -> Params {
        Params::parse(
            format!(
                "client_id=c1&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn code_of(r: Result<AuthzRequest, Rejection>) -> &'static str {
        match r {
            Err(Rejection::Redirect(_, e)) => e.code.as_str(),
            Err(Rejection::Page(_)) => "page",
            Ok(_) => "ok",
        }
    }

    #[test]
    fn a_valid_request_passes() {
        let r = validate(&params(""), Some(&client())).unwrap();
        assert_eq!(r.scopes, ["openid"]);
        assert_eq!(r.redirect.state.as_deref(), Some("s"));
    }

    #[test]
    fn unknown_client_or_unregistered_redirect_uri_never_redirects() {
        assert_eq!(code_of(validate(&params(""), None)), "page");
        let mut p = params("");
        p.insert("redirect_uri", "https://evil.example.com/cb".into());
        assert_eq!(code_of(validate(&p, Some(&client()))), "page");
        p.remove("redirect_uri");
        assert_eq!(code_of(validate(&p, Some(&client()))), "page");
    }

    #[test]
    fn response_type_and_pkce_rules() {
        let mut p = params("");
        p.remove("response_type");
        assert_eq!(code_of(validate(&p, Some(&client()))), "invalid_request");
        p.insert("response_type", "token".into());
        assert_eq!(
            code_of(validate(&p, Some(&client()))),
            "unsupported_response_type"
        );

        let mut p = params("");
        p.insert("code_challenge_method", "plain".into());
        assert_eq!(code_of(validate(&p, Some(&client()))), "invalid_request");
        p.remove("code_challenge_method");
        assert_eq!(code_of(validate(&p, Some(&client()))), "invalid_request");
        let mut p = params("");
        p.remove("code_challenge");
        assert_eq!(code_of(validate(&p, Some(&client()))), "invalid_request");
    }

    #[test]
    fn prompt_max_age_claims_and_scope() {
        assert_eq!(
            code_of(validate(&params("&prompt=none+login"), Some(&client()))),
            "invalid_request"
        );
        assert_eq!(
            code_of(validate(&params("&prompt=bogus"), Some(&client()))),
            "invalid_request"
        );
        assert_eq!(
            code_of(validate(&params("&max_age=-1"), Some(&client()))),
            "invalid_request"
        );
        assert_eq!(
            code_of(validate(&params("&claims=%5B%5D"), Some(&client()))),
            "invalid_request"
        );
        assert_eq!(
            code_of(validate(&params("&request=x"), Some(&client()))),
            "request_not_supported"
        );
        let mut p = params("");
        p.insert("scope", "admin".into());
        assert_eq!(code_of(validate(&p, Some(&client()))), "invalid_scope");
        p.insert("scope", "profile openid admin".into());
        assert_eq!(
            validate(&p, Some(&client())).unwrap().scopes,
            ["profile", "openid"]
        );
        let ok = validate(
            &params("&prompt=login+consent&max_age=0&extra=foobar"),
            Some(&client()),
        )
        .unwrap();
        assert!(ok.prompt.login && ok.prompt.consent);
        assert_eq!(ok.max_age, Some(0));
    }

    #[test]
    fn phishing_resistant_acr_values_are_enforced_and_others_are_voluntary() {
        let v = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(acr_satisfied(&[], "1"));
        assert!(acr_satisfied(&v("urn:mace:incommon:iap:silver"), "1"));
        // A list naming a weaker method too is a preference, not a demand.
        assert!(acr_satisfied(&v("phr 1"), "1"));
        assert!(!acr_satisfied(&v("phr"), "1"));
        assert!(acr_satisfied(&v("phr"), "phr"));
        assert!(acr_satisfied(&v("phr"), "phrh"));
        assert!(!acr_satisfied(&v("phrh"), "phr"));
        assert!(acr_satisfied(&v("phrh"), "phrh"));
    }

    #[test]
    fn query_redirect_appends_to_an_existing_query() {
        let r = VerifiedRedirect {
            uri: "https://app.example.com/cb?x=1".into(),
            mode: ResponseMode::Query,
            state: Some("a b".into()),
        };
        let url = query_redirect_url(&r, &success_params(&r, "C", "https://id"));
        assert_eq!(
            url,
            "https://app.example.com/cb?x=1&code=C&state=a+b&iss=https%3A%2F%2Fid"
        );
    }
}
