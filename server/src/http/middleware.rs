//! Cross-cutting middleware: request body limit, security headers, and one log line plus
//! metrics per request. Logs carry the path only, never the query string: queries can hold
//! codes and tokens.

use std::sync::Arc;
use std::time::Instant;

use poem::error::ReadBodyError;
use poem::http::header::{self, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response, Result};

use poem::error::ResponseError as _;

use crate::metrics::Metrics;
use crate::views::{Msg, Views};

/// Our pages load scripts and styles from our own origin only; nothing inline.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn limit_body<E: Endpoint>(ep: Arc<E>, mut req: Request, max: usize) -> Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Ok(too_large(max));
    }
    let body = req.take_body();
    if !body.is_empty() {
        match body.into_bytes_limit(max).await {
            Ok(bytes) => req.set_body(bytes),
            Err(ReadBodyError::PayloadTooLarge) => return Ok(too_large(max)),
            Err(_) => {
                return Ok(Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body("request body could not be read"));
            }
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

fn too_large(max: usize) -> Response {
    Response::builder()
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .content_type("text/plain; charset=utf-8")
        .body(format!("request body is larger than {max} bytes"))
}

/// Refuses, before routing, a path that holds an encoded NUL or is not UTF-8 once decoded, so
/// no path parameter (a client id, a stream id) carries either into a handler or the database
/// (PostgreSQL text cannot hold a NUL). The answer is the 400 of the part of the site asked
/// for: RFC 6749-style JSON for the protocol and API endpoints, the HTML error page for pages.
pub async fn refuse_bad_path<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    views: Arc<Views>,
) -> Result<Response> {
    let path = req.uri().path();
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    if !decoded.contains(&0) && std::str::from_utf8(&decoded).is_ok() {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    const JSON_PATHS: &[&str] = &[
        "/api/",
        "/register",
        "/token",
        "/par",
        "/revoke",
        "/introspect",
        "/device_authorization",
        "/userinfo",
        "/.well-known/",
        "/jwks.json",
    ];
    if JSON_PATHS.iter().any(|p| path.starts_with(p)) {
        return Ok(super::error::ApiError::invalid("the request path is not valid").as_response());
    }
    Ok(super::error::PageError::bad_request(Msg::PathUnreadable).render(&views))
}

/// Where browser-based clients (MCP hosts, single-page apps, developer tools) may call from any
/// origin: discovery, the JWKS, `/token`, `/register` and `/revoke`. Never pages or
/// `/authorize`, which a browser reaches by navigation, not by script.
fn cors_allowed(path: &str) -> bool {
    matches!(
        path,
        "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
            | "/jwks.json"
            | "/token"
            | "/register"
            | "/revoke"
    ) || path.starts_with("/.well-known/oauth-authorization-server/")
        || path.starts_with("/.well-known/openid-configuration/")
        || path.starts_with("/.well-known/oauth-protected-resource")
}

/// CORS for [`cors_allowed`] paths: `Access-Control-Allow-Origin: *` and never credentials
/// (these endpoints take no cookies: a client authenticates in the request itself), and a
/// preflight (`OPTIONS`) answered here with what those requests may send.
pub async fn cors<E: Endpoint>(ep: Arc<E>, req: Request) -> Result<Response> {
    if !cors_allowed(req.uri().path()) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    if req.method() == poem::http::Method::OPTIONS {
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS")
            .header(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, DPoP",
            )
            .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
            .finish());
    }
    let mut resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("DPoP-Nonce, WWW-Authenticate"),
    );
    Ok(resp)
}

pub async fn security_headers<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    hsts: bool,
) -> Result<Response> {
    let mut resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    // A handler that needs a different policy (form_post) sets its own first.
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` on
        // form posts, and the CSRF check (rightly) refuses that.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    Ok(resp)
}

pub async fn observe<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    metrics: Arc<Metrics>,
) -> Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let elapsed = started.elapsed();
    let status = resp.status();
    metrics.observe_request(
        method.as_str(),
        route_label(&resp),
        status.as_u16(),
        elapsed,
    );
    if status.is_server_error() {
        tracing::warn!(%method, path, status = status.as_u16(), ms = elapsed.as_secs_f64() * 1e3, "request");
    } else if method != Method::GET || !matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics")
    {
        tracing::info!(%method, path, status = status.as_u16(), ms = elapsed.as_secs_f64() * 1e3, "request");
    }
    Ok(resp)
}

/// The metrics label of a request: the pattern of the route it matched (`/token`,
/// `/register/:client_id`, `/api/devices/:id`), which poem leaves on the response; `other`
/// for a path we do not serve (or a request refused before routing, such as a body too large).
fn route_label(resp: &Response) -> &str {
    resp.data::<PathPattern>().map_or("other", |p| &p.0)
}
