//! Forward-auth's rules (`[forward_auth]`): which rule a proxied request falls under, whether
//! it bypasses sign-in, whether a session's sign-in meets the rule's policy, whether its user
//! is allowed, and which `rd` targets a sign-in may return to. No HTTP and no store here: the
//! endpoint (`http::forward_auth`) reads the request and the session, and asks.

use url::Url;

use crate::config::{ForwardAuthConfig, ForwardAuthPolicy, ForwardAuthRule, in_domain};

/// The longest original URL a check takes (the `rd` it would carry), in bytes.
pub const MAX_URL_BYTES: usize = 4096;

/// The request the proxy is asking about: its URL, the host without port (lowercase), and the
/// path with dot segments resolved (as the upstream will see it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub path: String,
}

impl Target {
    /// The target from the proxy's `X-Forwarded-Proto`, `-Host` and `-Uri`. None when they do
    /// not make an http(s) URL with a host, or make one that is too long.
    pub fn new(proto: &str, host: &str, uri: &str) -> Option<Self> {
        let proto = proto.trim().to_ascii_lowercase();
        if proto != "https" && proto != "http" {
            return None;
        }
        let uri = if uri.is_empty() { "/" } else { uri };
        if !uri.starts_with('/') || host.is_empty() || host.contains(['/', '@', '\\', '?', '#']) {
            return None;
        }
        let raw = format!("{proto}://{host}{uri}");
        if raw.len() > MAX_URL_BYTES {
            return None;
        }
        Self::parse(&raw)
    }

    /// A target from an absolute URL (`rd`): http(s), a host, no user info.
    pub fn parse(url: &str) -> Option<Self> {
        let u = Url::parse(url).ok()?;
        if !matches!(u.scheme(), "http" | "https")
            || !u.username().is_empty()
            || u.password().is_some()
        {
            return None;
        }
        let host = u.host_str()?.to_ascii_lowercase();
        Some(Self {
            path: u.path().to_owned(),
            host,
            url: u.into(),
        })
    }

    /// Whether the path holds an encoded slash or backslash, which an upstream may decode into
    /// a path other than the one the rules saw.
    fn ambiguous(&self) -> bool {
        let p = self.path.to_ascii_lowercase();
        p.contains("%2f") || p.contains("%5c") || p.contains('\\')
    }
}

/// The first rule whose hosts match the target's and whose path prefix its path is under.
pub fn rule_for<'c>(config: &'c ForwardAuthConfig, target: &Target) -> Option<&'c ForwardAuthRule> {
    config
        .rules
        .iter()
        .find(|r| host_matches(r, &target.host) && under(&target.path, &r.path_prefix))
}

fn host_matches(rule: &ForwardAuthRule, host: &str) -> bool {
    rule.hosts
        .iter()
        .any(|g| wildmatch::WildMatch::new(&g.to_ascii_lowercase()).matches(host))
}

fn under(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
}

/// Whether the rule lets the target through without a session (a `bypass` path). Never for a
/// path with an encoded slash.
pub fn bypassed(rule: &ForwardAuthRule, target: &Target) -> bool {
    !target.ambiguous() && rule.bypass.iter().any(|p| under(&target.path, p))
}

/// Whether a sign-in described by `amr` (RFC 8176) meets `policy`: a second factor or a
/// passkey (`mfa`) for `two_factor`, a passkey (`hwk`, `swk`) for `passkey`.
pub fn policy_met(policy: ForwardAuthPolicy, amr: &[String]) -> bool {
    let has = |m: &str| amr.iter().any(|a| a == m);
    match policy {
        ForwardAuthPolicy::OneFactor => true,
        ForwardAuthPolicy::TwoFactor => has("mfa"),
        ForwardAuthPolicy::Passkey => has("hwk") || has("swk"),
    }
}

/// Whether the user may pass: no lists, or named in `allow_users` (email, without case, or
/// id), or a member of a group in `allow_groups`.
pub fn allowed(rule: &ForwardAuthRule, user_id: &str, email: &str, groups: &[String]) -> bool {
    if rule.allow_users.is_empty() && rule.allow_groups.is_empty() {
        return true;
    }
    rule.allow_users
        .iter()
        .any(|u| u == user_id || u.eq_ignore_ascii_case(email))
        || rule.allow_groups.iter().any(|g| groups.contains(g))
}

/// The `rd` a sign-in may send the browser back to: an absolute http(s) URL (https only, when
/// the issuer is https) whose host a rule protects. Anything else is refused: no open
/// redirect.
pub fn return_target(config: &ForwardAuthConfig, rd: &str, https_only: bool) -> Option<Target> {
    if rd.len() > MAX_URL_BYTES {
        return None;
    }
    let target = Target::parse(rd)?;
    if https_only && !target.url.starts_with("https:") {
        return None;
    }
    let domain = config.cookie_domain.as_deref()?.to_ascii_lowercase();
    let protected = in_domain(&target.host, &domain)
        && config.rules.iter().any(|r| host_matches(r, &target.host));
    protected.then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ForwardAuthConfig {
        let toml = r#"
            cookie_domain = "example.com"
            [[rules]]
            hosts = ["app.example.com"]
            path_prefix = "/admin"
            policy = "passkey"
            allow_groups = ["ops"]
            [[rules]]
            hosts = ["app.example.com", "*.tools.example.com"]
            bypass = ["/health", "/static/"]
            allow_users = ["ada@example.com"]
        "#;
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(toml))
            .extract()
            .unwrap()
    }

    fn target(uri: &str) -> Target {
        Target::new("https", "app.example.com:8443", uri).unwrap()
    }

    #[test]
    fn first_matching_rule_by_host_and_path() {
        let c = config();
        assert_eq!(
            rule_for(&c, &target("/admin/x")).unwrap().policy,
            ForwardAuthPolicy::Passkey
        );
        assert_eq!(
            rule_for(&c, &target("/x")).unwrap().policy,
            ForwardAuthPolicy::OneFactor
        );
        // Dot segments are resolved before matching, as the upstream resolves them.
        assert_eq!(
            rule_for(&c, &target("/static/../admin/x")).unwrap().policy,
            ForwardAuthPolicy::Passkey
        );
        assert_eq!(
            rule_for(&c, &target("/static/%2e%2e/admin"))
                .unwrap()
                .policy,
            ForwardAuthPolicy::Passkey
        );
        let deep = Target::new("http", "a.b.tools.example.com", "/").unwrap();
        assert!(rule_for(&c, &deep).is_some());
        let other = Target::new("https", "evil.example.org", "/").unwrap();
        assert!(rule_for(&c, &other).is_none());
        let case = Target::new("https", "APP.Example.COM", "/").unwrap();
        assert!(rule_for(&c, &case).is_some());
    }

    #[test]
    fn bypass_is_by_prefix_and_never_for_encoded_slashes() {
        let c = config();
        let r = &c.rules[1];
        assert!(bypassed(r, &target("/health")));
        assert!(bypassed(r, &target("/static/app.js")));
        assert!(!bypassed(r, &target("/static/../secret")));
        assert!(!bypassed(r, &target("/static/..%2fsecret")));
        assert!(!bypassed(r, &target("/")));
    }

    #[test]
    fn bad_forwarded_values_make_no_target() {
        assert!(Target::new("ftp", "app.example.com", "/").is_none());
        assert!(Target::new("https", "", "/").is_none());
        assert!(Target::new("https", "a@b.example.com", "/").is_none());
        assert!(Target::new("https", "app.example.com", "x").is_none());
        assert!(Target::new("https", "app.example.com", &"/a".repeat(3000)).is_none());
        assert_eq!(target("").path, "/");
    }

    #[test]
    fn policies_and_allow_lists() {
        let amr = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        use ForwardAuthPolicy::*;
        assert!(policy_met(OneFactor, &amr(&["pwd"])));
        assert!(!policy_met(TwoFactor, &amr(&["pwd"])));
        assert!(policy_met(TwoFactor, &amr(&["pwd", "otp", "mfa"])));
        assert!(policy_met(TwoFactor, &amr(&["hwk", "mfa"])));
        assert!(!policy_met(Passkey, &amr(&["pwd", "otp", "mfa"])));
        assert!(policy_met(Passkey, &amr(&["swk", "mfa"])));
        let c = config();
        assert!(allowed(&c.rules[1], "u1", "ADA@example.com", &[]));
        assert!(!allowed(
            &c.rules[1],
            "u2",
            "bob@example.com",
            &["ops".into()]
        ));
        assert!(allowed(
            &c.rules[0],
            "u2",
            "bob@example.com",
            &["ops".into()]
        ));
        assert!(!allowed(
            &c.rules[0],
            "u2",
            "bob@example.com",
            &["Ops".into()]
        ));
    }

    #[test]
    fn return_targets_are_protected_hosts_only() {
        let c = config();
        assert!(return_target(&c, "https://app.example.com/x?y=1", true).is_some());
        assert!(return_target(&c, "https://x.tools.example.com/", true).is_some());
        assert!(return_target(&c, "http://app.example.com/", true).is_none());
        assert!(return_target(&c, "http://app.example.com/", false).is_some());
        assert!(return_target(&c, "https://evil.example.org/", true).is_none());
        assert!(return_target(&c, "https://app.example.com.evil.org/", true).is_none());
        assert!(return_target(&c, "https://ada@app.example.com/", true).is_none());
        assert!(return_target(&c, "//app.example.com/", true).is_none());
        assert!(return_target(&c, "javascript:alert(1)", true).is_none());
        assert!(return_target(&c, "/relative", true).is_none());
    }
}
