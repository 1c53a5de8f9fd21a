//! Provider metadata. Advertises only what this server does: each field joins the document in
//! the same change that makes it true.

use serde_json::{Value, json};

/// The metadata document for `issuer`.
pub fn metadata(issuer: &str) -> Value {
    // No authorization or token endpoint yet, so no response or grant types: the lists say
    // so rather than promise flows that do not exist.
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "response_types_supported": [],
        "grant_types_supported": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_and_jwks_uri_are_derived_from_the_issuer() {
        let m = metadata("https://id.example.com");
        assert_eq!(m["issuer"], "https://id.example.com");
        assert_eq!(m["jwks_uri"], "https://id.example.com/jwks.json");
    }
}
