//! RFC 9126 pushed authorization requests: what a `request_uri` of ours looks like, and what
//! a pushed request may not carry.

/// Every `request_uri` we issue starts with this (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a pushed request can be used, in seconds (RFC 9126 §2.2 `expires_in`).
pub const LIFETIME: i64 = 60;

/// Client credentials a pushed request carries for authentication (RFC 9126 §2.1); they are
/// never stored with the request.
pub const CREDENTIALS: &[&str] = &["client_secret", "client_assertion", "client_assertion_type"];

/// The random part of one of our `request_uri`s; None for any other value.
pub fn random_part(request_uri: &str) -> Option<&str> {
    request_uri
        .strip_prefix(REQUEST_URI_PREFIX)
        .filter(|r| !r.is_empty() && r.len() <= 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_urns_have_a_random_part() {
        assert_eq!(
            random_part("urn:ietf:params:oauth:request_uri:abc"),
            Some("abc")
        );
        assert_eq!(random_part("urn:ietf:params:oauth:request_uri:"), None);
        assert_eq!(random_part("https://client.example/request.jwt"), None);
        assert_eq!(
            random_part(&format!("{REQUEST_URI_PREFIX}{}", "a".repeat(65))),
            None
        );
    }
}
