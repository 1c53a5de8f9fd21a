//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document, -01/-02; the
//! MCP authorization specification asks for them): a client whose `client_id` is an https URL
//! is known by the JSON client metadata served at that URL. This module holds the rules that
//! need no network: which URLs may be client ids (§3), what a document must be (§4, §4.1),
//! how long it is used (§5.2) and which hosts an operator lets in. Fetching and caching are in
//! `crate::clients`.

use url::Url;

use super::client::{AuthMethod, ClientMetadata, GrantType};
use super::registration::RegistrationRequest;

/// The longest client id URL taken (client ids are capped at this length everywhere).
pub const MAX_URL_LEN: usize = 256;

/// Whether `client_id` is meant as a metadata document's URL (registered ids never contain
/// `://`): such ids are refused or fetched, never looked up as anything else.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// §3: an https URL (http only when `allow_http`, for labs) with a host and a path, no
/// userinfo, no fragment, no `.` or `..` segments, in the form a URL parser writes it (so the
/// string compared with the document's `client_id` is the URL fetched).
pub fn check_url(client_id: &str, allow_http: bool) -> Result<Url, &'static str> {
    if client_id.len() > MAX_URL_LEN {
        return Err("the client_id URL is longer than 256 characters");
    }
    let url = Url::parse(client_id).map_err(|_| "the client_id is not a URL")?;
    if url.scheme() != "https" && !(allow_http && url.scheme() == "http") {
        return Err("a client_id URL must be https");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a client_id URL must not hold a user name or password");
    }
    if url.fragment().is_some() || client_id.contains('#') {
        return Err("a client_id URL must not have a fragment");
    }
    let after_authority = client_id
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
        .unwrap_or_default();
    let path = after_authority.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() {
        return Err("a client_id URL must have a path");
    }
    if path.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase();
        matches!(s.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
    }) {
        return Err("a client_id URL must not have . or .. path segments");
    }
    if url.host_str().is_none() {
        return Err("a client_id URL must have a host");
    }
    if url.as_str() != client_id {
        return Err(
            "a client_id URL must be written in its normal form (lowercase scheme and host, no default port, escaped characters)",
        );
    }
    Ok(url)
}

/// Whether documents from `host` are taken: not matched by a `deny` glob, and matched by an
/// `allow` glob when there are any. Globs take `*` and `?`; host names compare without case.
pub fn host_allowed(host: &str, allow: &[String], deny: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let matches = |g: &String| wildmatch::WildMatch::new(&g.to_ascii_lowercase()).matches(&host);
    !deny.iter().any(matches) && (allow.is_empty() || allow.iter().any(matches))
}

/// §4, §4.1: the document fetched from `client_id`, as the client's metadata. It must be a
/// JSON object whose `client_id` is that URL, exactly; it must not hold a shared secret, and
/// the client authenticates with `none` (the default) or `private_key_jwt` (with `jwks` or
/// `jwks_uri`); it may use the code flow and refresh tokens only. Other metadata follows the
/// rules of dynamic registration (unknown fields are ignored).
pub fn parse(client_id: &str, body: &[u8]) -> Result<ClientMetadata, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the document is not JSON".to_owned())?;
    let object = value
        .as_object()
        .ok_or_else(|| "the document is not a JSON object".to_owned())?;
    match object.get("client_id").and_then(|v| v.as_str()) {
        Some(id) if id == client_id => {}
        Some(_) => {
            return Err("the document's client_id is not the URL it was fetched from".into());
        }
        None => return Err("the document has no client_id".into()),
    }
    if object.contains_key("client_secret") || object.contains_key("client_secret_expires_at") {
        return Err("a client ID metadata document must not hold a client secret".into());
    }
    let mut request = RegistrationRequest::parse(body).map_err(|e| e.description().to_owned())?;
    match request.token_endpoint_auth_method.as_deref() {
        None => request.token_endpoint_auth_method = Some("none".into()),
        Some("none" | "private_key_jwt") => {}
        Some(other) => {
            return Err(format!(
                "token_endpoint_auth_method {other:?}: a document's client authenticates with none or private_key_jwt"
            ));
        }
    }
    if let Some(grants) = &request.grant_types
        && grants
            .iter()
            .any(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err("a document's client may use authorization_code and refresh_token only".into());
    }
    if request
        .client_name
        .as_deref()
        .is_none_or(|n| n.trim().is_empty())
    {
        request.client_name = Url::parse(client_id)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
    }
    request.client_id = None;
    let metadata = request
        .into_metadata()
        .map_err(|e| format!("{}: {}", e.code(), e.description()))?;
    debug_assert!(matches!(
        metadata.token_endpoint_auth_method,
        AuthMethod::None | AuthMethod::PrivateKeyJwt
    ));
    debug_assert!(!metadata.grant_types.contains(&GrantType::ClientCredentials));
    Ok(metadata)
}

/// §5.2: how long a document fetched now is used, in seconds: its `Cache-Control: max-age`
/// within `[min, max]`; `min` when it says `no-store`, `no-cache` or nothing usable.
pub fn lifetime(cache_control: Option<&str>, min: i64, max: i64) -> i64 {
    let mut max_age = None;
    for directive in cache_control.unwrap_or_default().split(',') {
        let d = directive.trim().to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return min;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<i64>().ok();
        }
    }
    max_age.unwrap_or(min).clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "https://app.example/oauth/client.json";

    #[test]
    fn client_id_urls_follow_section_3() {
        assert!(check_url(ID, false).is_ok());
        assert!(check_url("https://app.example:8443/c?v=1", false).is_ok());
        for (bad, why) in [
            ("http://app.example/c", "https"),
            ("https://app.example", "path"),
            ("https://u:p@app.example/c", "user name"),
            ("https://app.example/c#x", "fragment"),
            ("https://app.example/a/../c", ".."),
            ("https://app.example/a/./c", "."),
            ("https://app.example/a/%2E%2E/c", ".."),
            ("https://APP.example/c", "normal form"),
            ("https://app.example:443/c", "normal form"),
        ] {
            let e = check_url(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check_url("http://127.0.0.1:9/c", true).is_ok());
        assert!(check_url(&format!("https://a.example/{}", "x".repeat(300)), false).is_err());
    }

    #[test]
    fn host_globs_allow_and_deny() {
        let allow = vec!["*.example.com".to_owned(), "tools.example.org".to_owned()];
        let deny = vec!["evil.example.com".to_owned()];
        assert!(host_allowed("a.example.com", &allow, &deny));
        assert!(host_allowed("TOOLS.example.org", &allow, &deny));
        assert!(!host_allowed("evil.example.com", &allow, &deny));
        assert!(!host_allowed("example.net", &allow, &deny));
        assert!(host_allowed("example.net", &[], &deny));
        assert!(!host_allowed("evil.example.com", &[], &deny));
    }

    fn doc(extra: &str) -> String {
        format!(
            r#"{{"client_id":"{ID}","client_name":"Agent","redirect_uris":["http://127.0.0.1:33418/cb"]{extra}}}"#
        )
    }

    #[test]
    fn a_document_is_public_client_metadata_for_its_own_url() {
        let m = parse(ID, doc(r#","unknown":{"x":1}"#).as_bytes()).unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::None);
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(m.client_name, "Agent");
        let m = parse(
            ID,
            format!(r#"{{"client_id":"{ID}","redirect_uris":["https://app.example/cb"]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.client_name, "app.example", "no name: the host");

        for (body, why) in [
            (
                doc("").replace(ID, "https://other.example/c.json"),
                "not the URL",
            ),
            (r#"{"redirect_uris":[]}"#.to_owned(), "no client_id"),
            ("[1]".to_owned(), "not a JSON object"),
            ("{".to_owned(), "not JSON"),
            (doc(r#","client_secret":"s""#), "secret"),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_basic""#),
                "none or private_key_jwt",
            ),
            (
                doc(r#","token_endpoint_auth_method":"private_key_jwt""#),
                "jwks",
            ),
            (
                doc(r#","grant_types":["client_credentials"]"#),
                "authorization_code and refresh_token only",
            ),
            (doc(r#","scope":"streams:internal""#), "administrator"),
        ] {
            let e = parse(ID, body.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }

    #[test]
    fn cache_headers_set_the_lifetime_within_bounds() {
        assert_eq!(lifetime(None, 300, 86_400), 300);
        assert_eq!(lifetime(Some("public, max-age=3600"), 300, 86_400), 3600);
        assert_eq!(lifetime(Some("max-age=10"), 300, 86_400), 300);
        assert_eq!(lifetime(Some("max-age=999999"), 300, 86_400), 86_400);
        assert_eq!(lifetime(Some("no-store"), 300, 86_400), 300);
        assert_eq!(lifetime(Some("max-age=junk"), 300, 86_400), 300);
    }
}
