//! Redirect URI matching (RFC 6749 §3.1.2.3, OIDC Core §3.1.2.1): the requested URI must equal
//! a registered one character for character. One exception, RFC 8252 §7.3: for a native app
//! (a public client) and a loopback IP literal over http, the port may differ, since native
//! apps bind whatever port is free. A confidential (web) client's loopback redirect is matched
//! exactly like any other: a port it never registered may be another program's.

use url::Url;

/// Whether `requested` is one of the `registered` redirect URIs; `native`: the client is a
/// public one, for which the loopback port may differ.
pub fn matches_registered(requested: &str, registered: &[String], native: bool) -> bool {
    registered
        .iter()
        .any(|r| r == requested || (native && loopback_port_match(requested, r)))
}

fn loopback_port_match(requested: &str, registered: &str) -> bool {
    let (Ok(req), Ok(mut candidate)) = (Url::parse(requested), Url::parse(registered)) else {
        return false;
    };
    let loopback_ip = |u: &Url| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                _ => false,
            }
    };
    if !loopback_ip(&req) || !loopback_ip(&candidate) || candidate.as_str() != registered {
        return false;
    }
    // The registered URI with the requested port must equal the request character for
    // character: no normalisation (dot segments, case, escapes) can make two URIs match.
    if candidate.set_port(req.port()).is_err() {
        return false;
    }
    candidate.as_str() == requested
}

#[cfg(test)]
mod tests {
    fn reg(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|s| s.to_string()).collect()
    }

    fn matches_registered(requested: &str, registered: &[String]) -> bool {
        super::matches_registered(requested, registered, true)
    }

    #[test]
    fn rfc8252_7_3_any_port_only_for_native_clients() {
        let r = reg(&["http://127.0.0.1:3000/cb"]);
        assert!(super::matches_registered(
            "http://127.0.0.1:4000/cb",
            &r,
            true
        ));
        assert!(!super::matches_registered(
            "http://127.0.0.1:4000/cb",
            &r,
            false
        ));
        assert!(super::matches_registered(
            "http://127.0.0.1:3000/cb",
            &r,
            false
        ));
    }

    #[test]
    fn only_exact_matches_pass() {
        let r = reg(&["https://app.example.com/cb"]);
        assert!(matches_registered("https://app.example.com/cb", &r));
        for altered in [
            "https://APP.example.com/cb",
            "https://app.example.com/CB",
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#x",
            "https://app.example.com:8443/cb",
            "https://app.example.com/cb/../cb",
            "https://app.example.com.evil.com/cb",
            "https://app.example.com@evil.com/cb",
            "http://app.example.com/cb",
            "https://app.example.com/c%62",
        ] {
            assert!(!matches_registered(altered, &r), "{altered}");
        }
    }

    #[test]
    fn rfc8252_loopback_ip_may_change_port_only() {
        let r = reg(&["http://127.0.0.1/cb", "http://[::1]:1234/cb"]);
        assert!(matches_registered("http://127.0.0.1:53123/cb", &r));
        assert!(matches_registered("http://[::1]:9/cb", &r));
        assert!(!matches_registered("http://127.0.0.1:53123/other", &r));
        assert!(!matches_registered("http://127.0.0.2:53123/cb", &r));
        assert!(!matches_registered("http://127.0.0.1:53123/x/../cb", &r));
        assert!(!matches_registered("http://127.0.0.1:53123/cb?x", &r));
        // `localhost` is a name, not a loopback literal: exact match only.
        let r = reg(&["http://localhost/cb"]);
        assert!(!matches_registered("http://localhost:8000/cb", &r));
    }
}
