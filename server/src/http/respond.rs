//! The one place where protocol errors and pages become HTTP responses.

use poem::Response;
use poem::http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::oauth::authorize::{
    ResponseMode, VerifiedRedirect, error_params, query_redirect_url, success_params,
};
use crate::oauth::error::AuthorizeError;
use crate::state::AppState;
use crate::views::{Msg, Views};

/// A page with forms: `ctx` plus the `csrf_token` they carry (and its cookie, when the
/// browser has none yet).
pub fn form_page(
    state: &AppState,
    req: &poem::Request,
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
) -> Response {
    let (csrf, cookie) = super::browser::csrf_token(state, req);
    let mut resp = page(
        state,
        status,
        template,
        minijinja::context! { csrf_token => csrf, ..ctx },
    );
    super::browser::append_cookie(&mut resp, cookie);
    resp
}

/// A page rendered from a template; pages carry user data, so they are never cached.
pub fn page(state: &AppState, status: StatusCode, template: &str, ctx: impl Serialize) -> Response {
    page_of(&state.views, status, template, ctx)
}

/// [`page`] with the views alone, for middleware that has no state.
pub fn page_of(views: &Views, status: StatusCode, template: &str, ctx: impl Serialize) -> Response {
    match views.render(template, ctx) {
        Ok(html) => Response::builder()
            .status(status)
            .content_type("text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, template, "template failed");
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .content_type("text/plain; charset=utf-8")
                .body(views.msg(Msg::RenderFailed).to_owned())
        }
    }
}

fn json_no_store(status: StatusCode) -> poem::ResponseBuilder {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
}

pub fn json_ok(body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    json_no_store(StatusCode::OK).body(text)
}

pub fn authorize_success(state: &AppState, redirect: &VerifiedRedirect, code: &str) -> Response {
    deliver(
        state,
        redirect,
        success_params(redirect, code, &state.config.issuer),
    )
}

pub fn authorize_error(
    state: &AppState,
    redirect: &VerifiedRedirect,
    err: &AuthorizeError,
) -> Response {
    deliver(
        state,
        redirect,
        error_params(redirect, err, &state.config.issuer),
    )
}

fn deliver(
    state: &AppState,
    redirect: &VerifiedRedirect,
    params: Vec<(String, String)>,
) -> Response {
    match redirect.mode {
        ResponseMode::Query => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, query_redirect_url(redirect, &params))
            .header(header::CACHE_CONTROL, "no-store")
            .finish(),
        ResponseMode::FormPost => {
            let mut resp = page(
                state,
                StatusCode::OK,
                "form_post.html",
                minijinja::context! { action => redirect.uri(), fields => params },
            );
            // The auto-submitting form posts to the client: allow exactly that target.
            let csp = format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
                csp_source(redirect.uri())
            );
            if let Ok(v) = HeaderValue::from_str(&csp) {
                resp.headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, v);
            }
            resp
        }
    }
}

/// Lets the forms of a page lead, through our redirects, to `redirect_uri` (already verified
/// against the client's registration): browsers apply `form-action` to every redirect that
/// follows a form submission, so the sign-in, consent and logout forms, whose answers end at
/// the client, need its origin beside `'self'`.
pub fn allow_form_redirect(resp: &mut Response, redirect_uri: &str) {
    let csp = super::middleware::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", csp_source(redirect_uri)),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// A CSP source expression for a redirect URI: scheme, host and port (paths would not match
/// after a redirect anyway, and quoting rules make them fragile).
fn csp_source(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) => match (u.scheme(), u.host_str()) {
            (s, Some(h)) => match u.port() {
                Some(p) => format!("{s}://{h}:{p}"),
                None => format!("{s}://{h}"),
            },
            (s, None) => format!("{s}:"),
        },
        Err(_) => "'none'".into(),
    }
}
