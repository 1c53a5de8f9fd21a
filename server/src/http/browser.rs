//! The browser side: session and CSRF cookies, and the checks every state-changing form gets.
//!
//! Cookies are HttpOnly, SameSite=Lax, and `__Host-` prefixed and Secure when the issuer is
//! https. The session cookie holds 256 random bits; the database holds only their digest.
//! CSRF: a random cookie, and a form field that must carry its HMAC together with the
//! browser's session cookie, once it has one; plus, when the browser sends one, an `Origin`
//! equal to the issuer's. Binding the token to the session means a CSRF cookie planted in a
//! victim's browser (possible on an http issuer, or from a sibling domain) cannot be paired with
//! the attacker's own token: the attacker does not know the victim's session cookie.

use poem::Request;
use poem::http::header;

use crate::secrets::{Purpose, random_token};
use crate::state::AppState;
use crate::store::Session;

pub fn session_cookie_name(state: &AppState) -> &'static str {
    if state.config.issuer_is_https() {
        "__Host-latchkey_session"
    } else {
        "latchkey_session"
    }
}

fn csrf_cookie_name(state: &AppState) -> &'static str {
    if state.config.issuer_is_https() {
        "__Host-latchkey_csrf"
    } else {
        "latchkey_csrf"
    }
}

pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A `Set-Cookie` value. `max_age` None makes a session cookie; Some(0) deletes.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if state.config.issuer_is_https() {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// The forward-auth cookie's name (`forward_auth.cookie_name`, `__Secure-` before it on https).
pub fn forward_auth_cookie_name(state: &AppState) -> String {
    let name = &state.config.forward_auth.cookie_name;
    if state.config.issuer_is_https() {
        format!("__Secure-{name}")
    } else {
        name.clone()
    }
}

/// The forward-auth cookie: on `forward_auth.cookie_domain`, so every protected host gets it.
pub fn forward_auth_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let mut c = set_cookie(
        state,
        &forward_auth_cookie_name(state),
        value,
        Some(max_age),
    );
    if let Some(domain) = &state.config.forward_auth.cookie_domain {
        c.push_str("; Domain=");
        c.push_str(domain);
    }
    c
}

/// The `Set-Cookie` that removes the forward-auth cookie from a browser that signs out (the
/// forward-auth sessions themselves end with the Latchkey session); None when forward-auth
/// is off.
pub fn clear_forward_auth_cookie(state: &AppState) -> Option<String> {
    (!state.config.forward_auth.rules.is_empty()).then(|| forward_auth_cookie(state, "", 0))
}

/// Adds a `Set-Cookie` to a response, when there is one to add.
pub fn append_cookie(resp: &mut poem::Response, cookie: Option<String>) {
    if let Some(v) = cookie.and_then(|c| poem::http::HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The signed-in browser session, if the cookie names a live one.
pub async fn current_session(state: &AppState, req: &Request, now: i64) -> Option<Session> {
    let id = cookie(req, session_cookie_name(state))?;
    let digests = state.pepper.lookup_digests(Purpose::Session, id.as_bytes());
    let idle = crate::state::secs(state.config.sessions.idle_lifetime);
    match state.store.live_session(&digests, now, idle).await {
        Ok(Some(s)) => {
            // Record use at most once a minute: a write on every request would serialise
            // sign-in traffic on the database's writer.
            if now - s.last_seen_at >= 60
                && let Err(e) = state.store.touch_session(&s.sid, now).await
            {
                tracing::warn!(error = %e, "could not record session use");
            }
            Some(s)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            None
        }
    }
}

/// The CSRF token to put in a form, and a `Set-Cookie` when the browser has no CSRF cookie yet.
pub fn csrf_token(state: &AppState, req: &Request) -> (String, Option<String>) {
    let name = csrf_cookie_name(state);
    let (value, set) = match cookie(req, name) {
        Some(v) => (v, None),
        None => {
            let v = random_token(24);
            let set = set_cookie(state, name, &v, None);
            (v, Some(set))
        }
    };
    let bound = csrf_binding(&value, cookie(req, session_cookie_name(state)).as_deref());
    (state.pepper.digest(Purpose::Csrf, bound.as_bytes()), set)
}

/// What a CSRF token is the HMAC of: the CSRF cookie and the session cookie, if any (each
/// length-prefixed, so no two pairs make the same text). A form shown before a sign-in is
/// spent by it: the sign-in sets a new session cookie, and the pages after it carry new tokens.
fn csrf_binding(csrf_cookie: &str, session_cookie: Option<&str>) -> String {
    let session = session_cookie.unwrap_or_default();
    format!(
        "{}:{csrf_cookie}:{}:{session}",
        csrf_cookie.len(),
        session.len()
    )
}

/// What identifies this browser for as long as its session lasts: its CSRF cookie (random,
/// HttpOnly, never shown to scripts). Binds a sign-in link to the browser that asked for it.
pub fn browser_binding(state: &AppState, req: &Request) -> Option<String> {
    cookie(req, csrf_cookie_name(state))
}

/// Whether a form post carries a valid CSRF token and, if sent, a same-origin `Origin`.
pub fn csrf_ok(state: &AppState, req: &Request, form_token: Option<&str>) -> bool {
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        && origin != state.config.issuer_origin()
    {
        return false;
    }
    let (Some(csrf), Some(token)) = (cookie(req, csrf_cookie_name(state)), form_token) else {
        return false;
    };
    let bound = csrf_binding(&csrf, cookie(req, session_cookie_name(state)).as_deref());
    state.pepper.verify(Purpose::Csrf, bound.as_bytes(), token)
}

/// The client's address as the socket saw it.
/// The client's address: the TCP peer, or, when the peer is a trusted proxy
/// (`http.trusted_proxies`), the rightmost `X-Forwarded-For` entry that is not a trusted
/// proxy (entries to its left are the client's own claims and are not believed).
pub fn client_ip(state: &AppState, req: &Request) -> Option<String> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip())?;
    let trusted = &state.config.trusted_proxy_nets;
    Some(forwarded_client(peer, trusted, req.headers()).to_string())
}

fn forwarded_client(
    peer: std::net::IpAddr,
    trusted: &[ipnet::IpNet],
    headers: &poem::http::HeaderMap,
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Rightmost first: each hop appends the address it received the request from.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<std::net::IpAddr>() else {
            // A malformed entry: stop at the last address a trusted proxy vouched for.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

pub fn user_agent(req: &Request) -> Option<String> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// Where a request came from (its address behind trusted proxies, its user agent), kept for
/// the audit events it causes.
pub struct Seen {
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Seen {
    pub fn of(state: &AppState, req: &Request) -> Self {
        Self {
            ip: client_ip(state, req),
            user_agent: user_agent(req),
        }
    }

    pub fn origin(&self) -> crate::audit::Origin<'_> {
        crate::audit::Origin {
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
        }
    }
}

/// Records `e` in the audit log with the request's address and user agent; a failure to
/// record is logged and does not undo what happened.
pub async fn audit(state: &AppState, req: &Request, e: crate::audit::Event<'_>) {
    let seen = Seen::of(state, req);
    state
        .audit
        .note(state.clock.now(), e.from(seen.origin()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::forwarded_client;
    use poem::http::HeaderMap;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(
            forwarded_client(ip("203.0.113.9"), &trusted, &headers(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        // From a proxy: the rightmost untrusted hop; a spoofed entry on the left is ignored.
        assert_eq!(
            forwarded_client(
                ip("10.0.0.2"),
                &trusted,
                &headers(&["6.6.6.6, 198.51.100.7", "10.0.0.5"])
            ),
            ip("198.51.100.7")
        );
        // No header, or nothing usable: the proxy itself.
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &trusted, &headers(&[])),
            ip("10.0.0.2")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &trusted, &headers(&["junk"])),
            ip("10.0.0.2")
        );
        // Nothing trusted: the peer, always.
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &[], &headers(&["198.51.100.7"])),
            ip("10.0.0.2")
        );
    }
}
