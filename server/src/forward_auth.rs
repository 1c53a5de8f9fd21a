//! Forward-auth's rules (`[forward_auth]`): which rule a proxied request falls under, whether
//! it bypasses sign-in, whether a session's sign-in meets the rule's policy, whether its user
//! is allowed, and which `rd` targets a sign-in may return to. No HTTP and no store here: the
//! endpoint (`http::forward_auth`) reads the request and the session, and asks.

use std::collections::HashMap;
use std::sync::Mutex;

use url::Url;

use crate::config::{ForwardAuthConfig, ForwardAuthPolicy, ForwardAuthRule, in_domain};
use crate::store::ForwardAuthSession;

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
    /// not make an http(s) URL with a host, make one that is too long, or when the path is one
    /// an upstream might read as another path than the rules would ([`canonical_path`]).
    pub fn new(proto: &str, host: &str, uri: &str) -> Option<Self> {
        let proto = proto.trim().to_ascii_lowercase();
        if proto != "https" && proto != "http" {
            return None;
        }
        if !uri.starts_with('/')
            || host.is_empty()
            || host.contains(['/', '@', '\\', '?', '#', ','])
        {
            return None;
        }
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        let path = canonical_path(path)?;
        let raw = match query {
            Some(q) => format!("{proto}://{host}{path}?{q}"),
            None => format!("{proto}://{host}{path}"),
        };
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
}

/// The path as the rules compare it: percent-encoded unreserved characters (letters, digits,
/// `-._~`) decoded, so `/%61dmin` is `/admin`; anything else percent-encoded stays as it came.
/// None for a path an upstream could route otherwise than the rules would read it: a `.` or
/// `..` segment (browsers resolve them before sending; upstreams differ on whether they do),
/// an encoded `/`, `\`, `%`, `;` or control character, a `%` without two hex digits, a raw
/// `;` (matrix parameters, which some servers drop), `//`, `\`, `#`, a control character or
/// anything outside ASCII. A proxy's check of such a request answers 403.
pub fn canonical_path(raw: &str) -> Option<String> {
    let refused = [";", "//", "\\", "#"];
    if refused.iter().any(|r| raw.contains(r)) || raw.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let b = raw
            .get(i + 1..i + 3)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok())?;
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if b < 0x20 || b == 0x7f || b"/\\%;".contains(&b) {
            return None;
        } else {
            out.push_str(&raw[i..i + 3]);
        }
        i += 3;
    }
    if out.split('/').any(|seg| seg == "." || seg == "..") {
        return None;
    }
    Some(out)
}

/// The first rule whose hosts match the target's and whose path prefix its path is under.
pub fn rule_for<'c>(config: &'c ForwardAuthConfig, target: &Target) -> Option<&'c ForwardAuthRule> {
    config
        .rules
        .iter()
        .find(|r| host_matches(r, &target.host) && protected_under(&target.path, &r.path_prefix))
}

fn host_matches(rule: &ForwardAuthRule, host: &str) -> bool {
    rule.hosts
        .iter()
        .any(|g| wildmatch::WildMatch::new(&g.to_ascii_lowercase()).matches(host))
}

/// Whether `path` is `prefix` or under it, on segment boundaries: `/admin` covers `/admin`
/// and `/admin/x`, not `/administrator` (a prefix ending in `/` covers what starts with it).
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// [`under`] for a rule's `path_prefix`, which also covers the bare path: `/admin/` protects
/// `/admin` too (a protection must not end at a missing slash; a bypass may).
fn protected_under(path: &str, prefix: &str) -> bool {
    under(path, prefix)
        || prefix
            .strip_suffix('/')
            .is_some_and(|bare| !bare.is_empty() && path == bare)
}

/// Whether the rule lets the target through without a session (a `bypass` path).
pub fn bypassed(rule: &ForwardAuthRule, target: &Target) -> bool {
    rule.bypass.iter().any(|p| under(&target.path, p))
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

/// Entries a [`SessionCache`] holds before it starts over.
const CACHE_ENTRIES: usize = 10_000;

/// `forward_auth.cache_ttl`: an instance's recent session lookups, by cookie digest. Off (every
/// check reads the database) when the lifetime is zero. Only live sessions are kept. A session
/// ended through this instance is forgotten at once ([`SessionCache::forget_session`],
/// [`SessionCache::forget_user`]); every other change is seen within the lifetime.
pub struct SessionCache {
    ttl: i64,
    entries: Mutex<HashMap<String, (i64, ForwardAuthSession)>>,
    /// Bumped by every forget: a lookup read before one is not stored after it.
    generation: std::sync::atomic::AtomicU64,
}

impl SessionCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(60),
            entries: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Read before a database lookup, and given back to [`SessionCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The session looked up under `digest` less than the lifetime ago (a clock that went
    /// back makes every entry stale).
    pub fn get(&self, digest: &str, now: i64) -> Option<ForwardAuthSession> {
        if self.ttl == 0 {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(digest)
            .filter(|(at, _)| (0..self.ttl).contains(&(now - at)))
            .map(|(_, s)| s.clone())
    }

    /// Keeps a lookup made at `now`, unless something was forgotten since `generation`.
    pub fn put(&self, digest: &str, session: &ForwardAuthSession, now: i64, generation: u64) {
        if self.ttl == 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            // Under the lock, which forgets also take: no forget slips in between.
            if self.generation() != generation {
                return;
            }
            if entries.len() >= CACHE_ENTRIES {
                entries.retain(|_, (at, _)| (0..self.ttl).contains(&(now - *at)));
                if entries.len() >= CACHE_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(digest.to_owned(), (now, session.clone()));
        }
    }

    /// Notes that the session under `digest` was recorded as used at `now` (so the next hits
    /// do not record it again), keeping the lookup's own age.
    pub fn touched(&self, digest: &str, now: i64) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some((_, s)) = entries.get_mut(digest)
        {
            s.last_seen_at = now;
        }
    }

    fn forget(&self, gone: impl Fn(&ForwardAuthSession) -> bool) {
        if self.ttl == 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            entries.retain(|_, (_, s)| !gone(s));
        }
    }

    /// Forgets the lookups of the Latchkey session `sid` (it ended through this instance).
    pub fn forget_session(&self, sid: &str) {
        self.forget(|s| s.sid == sid);
    }

    /// Forgets every lookup of the user's sessions (all of them ended through this instance).
    pub fn forget_user(&self, user_id: &str) {
        self.forget(|s| s.user_id == user_id);
    }
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
        // Encoded unreserved characters are decoded before matching; case counts.
        for (uri, want) in [
            ("/%61dmin/x", ForwardAuthPolicy::Passkey),
            ("/%41dmin", ForwardAuthPolicy::OneFactor),
            ("/administrator", ForwardAuthPolicy::OneFactor),
        ] {
            assert_eq!(
                rule_for(&c, &target(uri)).map(|r| r.policy),
                Some(want),
                "{uri}"
            );
        }
        let deep = Target::new("http", "a.b.tools.example.com", "/").unwrap();
        assert!(rule_for(&c, &deep).is_some());
        let other = Target::new("https", "evil.example.org", "/").unwrap();
        assert!(rule_for(&c, &other).is_none());
        let case = Target::new("https", "APP.Example.COM", "/").unwrap();
        assert!(rule_for(&c, &case).is_some());
    }

    #[test]
    fn a_protected_prefix_with_a_slash_covers_the_bare_path() {
        assert!(protected_under("/admin", "/admin/"));
        assert!(protected_under("/admin/x", "/admin/"));
        assert!(!protected_under("/administrator", "/admin/"));
        assert!(protected_under("/anything", "/"));
        // A bypass ends where it says.
        assert!(!under("/static", "/static/"));
    }

    #[test]
    fn bypass_is_by_prefix_on_segment_boundaries() {
        let c = config();
        let r = &c.rules[1];
        assert!(bypassed(r, &target("/health")));
        assert!(bypassed(r, &target("/health/live")));
        assert!(!bypassed(r, &target("/healthz-internal")));
        assert!(bypassed(r, &target("/static/app.js")));
        assert!(!bypassed(r, &target("/")));
    }

    #[test]
    fn ambiguous_paths_make_no_target() {
        for uri in [
            // dot segments, plain or encoded: upstreams differ on resolving them
            "/static/../admin/x",
            "/admin/../static/x",
            "/static/%2e%2e/admin",
            "/static/%2E./admin",
            "/./admin",
            "/admin/.",
            // encodings an upstream may decode into another path
            "/static/%u002e%u002e/admin",
            "/static%3b/admin",
            "/a%0ab",
            "/a%7fb",
            "/a%",
            "/a%zz",
            "/static/..%2fadmin",
            "/static/%5c..%5cadmin",
            "/static/..;/admin",
            "//admin",
            "/static//../admin",
            "/static/%252e%252e/admin",
            "/a%00b",
            "/static/#/../admin",
            "/a\\b",
        ] {
            assert!(
                Target::new("https", "app.example.com", uri).is_none(),
                "{uri}"
            );
        }
        // The query is not the path: anything goes there.
        let t = Target::new("https", "app.example.com", "/x?a=%2f;b//c").unwrap();
        assert_eq!(t.path, "/x");
    }

    #[test]
    fn bad_forwarded_values_make_no_target() {
        assert!(Target::new("ftp", "app.example.com", "/").is_none());
        assert!(Target::new("https", "", "/").is_none());
        assert!(Target::new("https", "a@b.example.com", "/").is_none());
        assert!(Target::new("https", "app.example.com", "x").is_none());
        assert!(Target::new("https", "app.example.com", &"/a".repeat(3000)).is_none());
        assert!(Target::new("https", "app.example.com, evil.example.org", "/").is_none());
        assert!(Target::new("https", "app.example.com", "").is_none());
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
    fn the_cache_keeps_lookups_for_its_lifetime_only() {
        let s = ForwardAuthSession {
            sid: "s".into(),
            user_id: "u".into(),
            email: "a@example.com".into(),
            name: None,
            amr: vec![],
            last_seen_at: 0,
            groups: vec![],
        };
        let off = SessionCache::new(std::time::Duration::ZERO);
        off.put("d", &s, 100, off.generation());
        assert!(off.get("d", 100).is_none());
        let on = SessionCache::new(std::time::Duration::from_secs(2));
        on.put("d", &s, 100, on.generation());
        assert_eq!(on.get("d", 101), Some(s.clone()));
        assert!(on.get("d", 102).is_none());
        assert!(on.get("d", 99).is_none(), "a clock that went back");
        assert!(on.get("other", 100).is_none());
        // Forgotten by session or by user; a lookup read before a forget is not kept.
        on.put("d", &s, 100, on.generation());
        on.forget_session("other-sid");
        assert!(on.get("d", 100).is_some());
        on.forget_session("s");
        assert!(on.get("d", 100).is_none());
        on.put("d", &s, 100, on.generation());
        on.forget_user("u");
        assert!(on.get("d", 100).is_none());
        let before = on.generation();
        on.forget_session("s");
        on.put("d", &s, 100, before);
        assert!(on.get("d", 100).is_none());
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
