//! Forward-auth for reverse proxies: `GET /forward-auth`, which nginx (`auth_request`),
//! Traefik (`forwardAuth`) and Caddy (`forward_auth`) ask before they pass a request on, and
//! the sign-in's way back (`/login?rd=`), which sets the cookie protected hosts carry.
//!
//! A check reads what the proxy forwards (`X-Forwarded-Proto`, `-Host`, `-Uri`, `-Method`),
//! from `http.trusted_proxies` only (anyone else, or a request without them, gets 403),
//! finds the rule (`forward_auth::rule_for`), and answers:
//! 200 for a bypassed path; 200 with the identity headers for a live forward-auth session
//! whose sign-in meets the rule's policy and whose user the rule allows; 403 for a user the
//! rule does not allow, or a host no rule protects; else a redirect to sign in, 302 (401 with
//! `?mode=auth_request`, which nginx needs; the `Location` is the same). One database read, no
//! signing.
//!
//! The cookie is `latchkey_forward_auth` (`__Secure-` first on https) on
//! `forward_auth.cookie_domain`, HttpOnly, SameSite=Lax: 256 random bits whose digest names a
//! row bound to the Latchkey session's `sid`. Signing out of Latchkey, or the session ending
//! any other way, ends every forward-auth session minted from it.

use poem::http::{HeaderName, HeaderValue, StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};

use super::browser::{cookie, current_session, forward_auth_cookie, forward_auth_cookie_name};
use super::error::PageError;
use super::pages::CARRIED_RD;
use crate::config::ForwardAuthPolicy;
use crate::forward_auth::{Target, allowed, bypassed, policy_met, return_target, rule_for};
use crate::oauth::params::Params;
use crate::secrets::{Purpose, random_token};
use crate::state::{AppState, secs};
use crate::views::Msg;

fn header_str<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Whether the request comes straight from one of `http.trusted_proxies`.
fn from_trusted_proxy(state: &AppState, req: &Request) -> bool {
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip())
        .is_some_and(|ip| {
            state
                .config
                .trusted_proxy_nets
                .iter()
                .any(|n| n.contains(&ip))
        })
}

/// What the proxy asks about, and its method, from its `X-Forwarded-Proto`, `-Host` and
/// `-Uri` (`-Method`: GET when absent). Err with why not: the peer is not a trusted proxy (its
/// headers are the client's own claims), a header is missing, the host is a list, or the URL
/// is one the rules cannot judge safely ([`crate::forward_auth::canonical_path`]).
fn target(state: &AppState, req: &Request) -> Result<(Target, String), &'static str> {
    if !from_trusted_proxy(state, req) {
        return Err("forward-auth answers the proxies in http.trusted_proxies only\n");
    }
    let (Some(proto), Some(host), Some(uri)) = (
        header_str(req, "x-forwarded-proto"),
        header_str(req, "x-forwarded-host"),
        header_str(req, "x-forwarded-uri"),
    ) else {
        return Err(
            "the proxy must send X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Uri\n",
        );
    };
    let method = header_str(req, "x-forwarded-method").unwrap_or("GET");
    let target = Target::new(proto, host, uri).ok_or("the forwarded request is refused\n")?;
    Ok((target, method.to_ascii_uppercase()))
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
}

/// The sign-in to send the browser to, coming back to `target`.
fn sign_in(state: &AppState, req: &Request, target: &Target, method: &str) -> Response {
    let rd = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", &target.url)
        .finish();
    let login = format!("{}/login?{rd}", state.config.issuer);
    let nginx = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "mode=auth_request"));
    // Only a page load can follow a redirect to a sign-in page; a script's request is told
    // 401 (with the same Location, for a client that wants it).
    let redirect = !nginx && matches!(method, "GET" | "HEAD");
    let status = if redirect {
        StatusCode::FOUND
    } else {
        StatusCode::UNAUTHORIZED
    };
    Response::builder()
        .status(status)
        .header(header::LOCATION, login)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body("sign in first\n")
}

#[handler]
pub async fn check(req: &Request, Data(state): Data<&AppState>) -> Response {
    let config = &state.config.forward_auth;
    if config.rules.is_empty() {
        return plain(StatusCode::NOT_FOUND, "forward-auth is not configured\n");
    }
    let (target, method) = match target(state, req) {
        Ok(t) => t,
        Err(why) => return plain(StatusCode::FORBIDDEN, why),
    };
    let Some(rule) = rule_for(config, &target) else {
        return plain(
            StatusCode::FORBIDDEN,
            "no rule protects this host and path\n",
        );
    };
    if bypassed(rule, &target) {
        return plain(StatusCode::OK, "");
    }
    let now = state.clock.now();
    let Some(value) = cookie(req, &forward_auth_cookie_name(state)) else {
        return sign_in(state, req, &target, &method);
    };
    let digests = state
        .pepper
        .lookup_digests(Purpose::ForwardAuth, value.as_bytes());
    let idle = secs(state.config.sessions.idle_lifetime);
    let cache = &state.forward_auth_cache;
    let cached = digests.first().and_then(|d| cache.get(d, now));
    let generation = cache.generation();
    let session = match cached {
        Some(s) => s,
        None => match state.store.forward_auth_session(&digests, now, idle).await {
            Ok(Some(s)) => {
                if let Some(d) = digests.first() {
                    cache.put(d, &s, now, generation);
                }
                s
            }
            Ok(None) => return sign_in(state, req, &target, &method),
            Err(e) => {
                tracing::error!(error = %e, "forward-auth session lookup failed");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "try again\n");
            }
        },
    };
    if !policy_met(rule.policy, &session.amr) {
        return sign_in(state, req, &target, &method);
    }
    if !allowed(rule, &session.user_id, &session.email, &session.groups) {
        tracing::info!(user = %session.user_id, host = %target.host, "forward-auth: not allowed");
        return plain(StatusCode::FORBIDDEN, "you may not use this site\n");
    }
    // Using a protected site is using the session: recorded at most once a minute.
    if now - session.last_seen_at >= 60 {
        match state.store.touch_session(&session.sid, now).await {
            Ok(()) => {
                if let Some(d) = digests.first() {
                    cache.touched(d, now);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not record session use"),
        }
    }
    let mut resp = plain(StatusCode::OK, "");
    for (n, v) in identity_headers(&config.headers, &session) {
        resp.headers_mut().insert(n, v);
    }
    resp
}

/// What `/login?rd=` does: send the browser back, or show the sign-in page carrying `rd`
/// (with a notice of what the site asks for, when the browser is signed in with less).
pub enum ReturnTo {
    Back(Response),
    SignIn {
        carried: Params,
        notice: Option<Msg>,
    },
}

/// The identity headers of a 200: the address (as the user and the email), the name, the
/// groups (comma-separated; a name holding a comma is left out, or it would read as two) and
/// the id. Values go as UTF-8 bytes (a name like "Zoë" gets through, as proxies pass them
/// on); a value a header cannot hold (a control character) is left out.
fn identity_headers(
    h: &crate::config::ForwardAuthHeaders,
    session: &crate::store::ForwardAuthSession,
) -> Vec<(HeaderName, HeaderValue)> {
    let name = session.name.clone().unwrap_or_default();
    let groups = session
        .groups
        .iter()
        .filter(|g| !g.contains(','))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    [
        (&h.user, session.email.as_str()),
        (&h.email, session.email.as_str()),
        (&h.name, name.as_str()),
        (&h.groups, groups.as_str()),
        (&h.id, session.user_id.as_str()),
    ]
    .into_iter()
    .filter_map(|(header, value)| {
        Some((
            HeaderName::from_bytes(header.as_bytes()).ok()?,
            HeaderValue::from_bytes(value.as_bytes()).ok()?,
        ))
    })
    .collect()
}

/// `GET /login?rd=`: the way back to a protected page. `rd` must be on a host a rule
/// protects (else a readable refusal: no open redirect). A browser signed in well enough for
/// the rule's policy gets the forward-auth cookie and goes back to `rd`; any other sees the
/// sign-in page, which comes back here after the sign-in.
pub async fn login_with_rd(
    state: &AppState,
    req: &Request,
    rd: &str,
) -> Result<ReturnTo, PageError> {
    let config = &state.config.forward_auth;
    let Some(target) = return_target(config, rd, state.config.issuer_is_https()) else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            Msg::ForwardAuthRefusedTitle,
            Msg::ForwardAuthRefused,
        ));
    };
    let policy = rule_for(config, &target).map_or(ForwardAuthPolicy::OneFactor, |r| r.policy);
    let now = state.clock.now();
    let session = current_session(state, req, now).await;
    let mut carried = Params::default();
    carried.insert(CARRIED_RD, target.url.clone());
    let notice = match &session {
        Some(s) if policy_met(policy, &s.amr) => {
            return mint(state, s, &target, now).await.map(ReturnTo::Back);
        }
        Some(_) => match policy {
            ForwardAuthPolicy::Passkey => Some(Msg::ForwardAuthNeedsPasskey),
            _ => Some(Msg::ForwardAuthNeedsTwoFactor),
        },
        None => None,
    };
    Ok(ReturnTo::SignIn { carried, notice })
}

/// A new forward-auth session for the browser's Latchkey session, and back to `target`.
async fn mint(
    state: &AppState,
    session: &crate::store::Session,
    target: &Target,
    now: i64,
) -> Result<Response, PageError> {
    let value = random_token(32);
    let digest = state.pepper.digest(Purpose::ForwardAuth, value.as_bytes());
    let expires_at = session.expires_at;
    state
        .store
        .create_forward_auth_session(&digest, &session.sid, &session.user_id, now, expires_at)
        .await
        .map_err(|e| PageError::server("starting the forward-auth session", e))?;
    tracing::info!(user = %session.user_id, host = %target.host, "forward-auth session started");
    Ok(Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, target.url.as_str())
        .header(
            header::SET_COOKIE,
            forward_auth_cookie(state, &value, (expires_at - now).max(0)),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .finish())
}

#[cfg(test)]
mod tests {
    use super::identity_headers;

    #[test]
    fn identity_headers_carry_utf8_and_leave_out_what_cannot_be_said() {
        let session = crate::store::ForwardAuthSession {
            sid: "s".into(),
            user_id: "u1".into(),
            email: "zoe@example.com".into(),
            name: Some("Zoë Ørsted".into()),
            amr: vec![],
            last_seen_at: 0,
            groups: vec!["ops".into(), "x,admins".into(), "dev".into()],
        };
        let h = identity_headers(&Default::default(), &session);
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, v)| v.as_bytes().to_vec())
        };
        assert_eq!(get("remote-name"), Some("Zoë Ørsted".as_bytes().to_vec()));
        assert_eq!(get("remote-groups"), Some(b"ops,dev".to_vec()));
        assert_eq!(get("remote-user"), Some(b"zoe@example.com".to_vec()));
        assert_eq!(get("remote-id"), Some(b"u1".to_vec()));
        let bad = crate::store::ForwardAuthSession {
            name: Some("a\nb".into()),
            ..session
        };
        let h = identity_headers(&Default::default(), &bad);
        assert!(h.iter().all(|(k, _)| k.as_str() != "remote-name"));
    }
}
