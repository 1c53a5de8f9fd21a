//! The errors of every endpoint, and the one place they become HTTP.
//!
//! [`ApiError`]: RFC 6749 §5.2 JSON at the token, revocation, introspection and device
//! authorization endpoints, RFC 6750 §3 challenges where a bearer token is presented, the
//! RFC 9470 step-up challenge, and the resource APIs' JSON errors.
//!
//! [`PageError`]: the readable HTML error page of the pages, the way to sign-in for a browser
//! without a session, and the small JSON answers of the pages' own scripts. Rendering the HTML
//! needs the templates, so page errors travel out of the handler as errors and
//! [`render_page_errors`] (middleware holding the views) turns them into pages.
//!
//! Handlers return `Result<_, ApiError>` or `Result<_, PageError>` and use `?`; none builds an
//! error body of its own. Any internal failure is logged where it happens and leaves as a bare
//! `server_error` or the generic error page.

use std::borrow::Cow;
use std::sync::Arc;

use poem::error::ResponseError;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};
use serde_json::json;

use crate::oauth::client::MetadataError;
use crate::oauth::error::{AuthorizeError, BearerError, BearerErrorCode as B, TokenError};
use crate::oauth::params::ParamsError;
use crate::views::{Msg, Views};

#[derive(Debug)]
pub enum ApiError {
    /// RFC 6749 §5.2; `basic`: the client authenticated with `Authorization: Basic`, so an
    /// `invalid_client` carries a Basic challenge.
    Token { error: TokenError, basic: bool },
    /// RFC 6750 §3, with the scope an `insufficient_scope` asks for.
    Bearer {
        error: BearerError,
        scope: Option<&'static str>,
    },
    /// RFC 9449 §7.1: a `WWW-Authenticate: DPoP` error (`invalid_dpop_proof`,
    /// `use_dpop_nonce`, or `invalid_token` for a token in the wrong scheme), with the server
    /// nonce when nonces are required.
    Dpop {
        error: BearerError,
        nonce: Option<String>,
        /// The scope an `insufficient_scope` asks for.
        scope: Option<&'static str>,
    },
    /// RFC 6750 §3.1: no token was presented at all; a bare challenge (Bearer, and DPoP with
    /// its algorithms, RFC 9449 §7.1), no error code.
    NoToken,
    /// RFC 9470 §3: the sign-in behind the token is older than `max_age` seconds.
    StepUp { max_age: i64 },
    /// 429 with `Retry-After`: the address (or client) must wait `wait` seconds; the body is
    /// an RFC 6749 `invalid_request` saying so.
    TooMany { wait: i64, why: String },
    /// RFC 7591 §3.2.2: `invalid_client_metadata`, `invalid_redirect_uri` and the rest.
    Registration(MetadataError),
    /// RFC 9126 §2.3: a pushed authorization request refused with an authorization error code
    /// (RFC 6749 §4.1.2.1), in the token endpoint's JSON format.
    Pushed(AuthorizeError),
    /// A request body or query the resource APIs cannot take (400 `invalid_request`).
    Invalid(Cow<'static, str>),
    /// Not the caller's, or not there (404): the same answer for both.
    NotFound,
    /// 403 `access_denied`: the token is valid but its user may not do this (an
    /// administrator's API asked with a token of someone who is not one).
    Forbidden(&'static str),
    /// An internal failure, already logged.
    Server,
    /// A refusal at one of our protected resources: its challenges also carry
    /// `resource_metadata` (RFC 9728 §5.1), the URL of the resource's metadata.
    AtResource {
        error: Box<ApiError>,
        metadata: String,
    },
}

impl ApiError {
    /// This refusal, at the protected resource whose metadata is at `metadata`.
    pub fn for_resource(self, metadata: String) -> Self {
        Self::AtResource {
            error: Box::new(self),
            metadata,
        }
    }

    /// An internal failure: the detail goes to the log only.
    pub fn server(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::Server
    }

    pub fn invalid(why: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid(why.into())
    }

    pub fn bearer(code: B, why: &'static str) -> Self {
        Self::Bearer {
            error: BearerError::new(code, why),
            scope: None,
        }
    }
}

impl From<BearerError> for ApiError {
    fn from(error: BearerError) -> Self {
        Self::Bearer { error, scope: None }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::server(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token { error, .. } => write!(f, "{}", error.code.as_str()),
            Self::Bearer { error, .. } | Self::Dpop { error, .. } => {
                write!(f, "{}", error.code.as_str())
            }
            Self::NoToken => f.write_str("no token"),
            Self::StepUp { .. } => f.write_str("insufficient_user_authentication"),
            Self::TooMany { .. } => f.write_str("too many requests"),
            Self::Registration(e) => write!(f, "{}", e.code()),
            Self::Pushed(e) => write!(f, "{}", e.code.as_str()),
            Self::Invalid(why) => write!(f, "invalid_request: {why}"),
            Self::NotFound => f.write_str("not_found"),
            Self::Forbidden(_) => f.write_str("access_denied"),
            Self::Server => f.write_str("server_error"),
            Self::AtResource { error, .. } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ApiError {}

fn json_no_store(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
        .body(body.to_string())
}

/// `algs` of a DPoP challenge: the proof algorithms we accept.
fn dpop_algs() -> String {
    crate::oauth::dpop::PROOF_ALGS
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn with_challenge(mut resp: Response, challenge: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        use crate::oauth::error::TokenErrorCode as T;
        match self {
            Self::Token { error, .. } => match error.code {
                T::InvalidClient => StatusCode::UNAUTHORIZED,
                T::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            Self::Bearer { error, .. } | Self::Dpop { error, .. } => match error.code {
                B::InvalidRequest => StatusCode::BAD_REQUEST,
                B::InvalidToken | B::InvalidDpopProof | B::UseDpopNonce => StatusCode::UNAUTHORIZED,
                B::InsufficientScope => StatusCode::FORBIDDEN,
            },
            Self::NoToken | Self::StepUp { .. } => StatusCode::UNAUTHORIZED,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Invalid(_) | Self::Registration(_) => StatusCode::BAD_REQUEST,
            Self::Pushed(e) if e.code == crate::oauth::error::AuthorizeErrorCode::ServerError => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Pushed(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Server => StatusCode::INTERNAL_SERVER_ERROR,
            Self::AtResource { error, .. } => error.status(),
        }
    }

    fn as_response(&self) -> Response {
        use crate::oauth::error::TokenErrorCode as T;
        let status = self.status();
        match self {
            Self::Token { error, basic } => {
                let body = if error.code == T::ServerError {
                    json!({ "error": "server_error" })
                } else {
                    json!({ "error": error.code.as_str(), "error_description": error.description() })
                };
                let resp = json_no_store(status, body);
                if error.code == T::InvalidClient && *basic {
                    with_challenge(resp, "Basic realm=\"latchkey\"")
                } else {
                    resp
                }
            }
            Self::Bearer { error, scope } => {
                let mut challenge = format!(
                    "Bearer realm=\"latchkey\", error=\"{}\", error_description=\"{}\"",
                    error.code.as_str(),
                    error.description()
                );
                if let Some(scope) = scope {
                    challenge.push_str(&format!(", scope=\"{scope}\""));
                }
                let body = json!({ "error": error.code.as_str(), "error_description": error.description() });
                with_challenge(json_no_store(status, body), &challenge)
            }
            Self::Dpop {
                error,
                nonce,
                scope,
            } => {
                let mut challenge = format!(
                    "DPoP algs=\"{}\", error=\"{}\", error_description=\"{}\"",
                    dpop_algs(),
                    error.code.as_str(),
                    error.description()
                );
                if let Some(scope) = scope {
                    challenge.push_str(&format!(", scope=\"{scope}\""));
                }
                let body = json!({ "error": error.code.as_str(), "error_description": error.description() });
                let mut resp = with_challenge(json_no_store(status, body), &challenge);
                if let Some(n) = nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
                    resp.headers_mut().insert("dpop-nonce", n);
                }
                resp
            }
            Self::NoToken => {
                let mut resp = Response::builder()
                    .status(status)
                    .header(header::WWW_AUTHENTICATE, "Bearer realm=\"latchkey\"")
                    .header(header::CACHE_CONTROL, "no-store")
                    .finish();
                if let Ok(v) = HeaderValue::from_str(&format!("DPoP algs=\"{}\"", dpop_algs())) {
                    resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
                resp
            }
            Self::StepUp { max_age } => {
                const WHY: &str = "a more recent sign-in is required";
                let challenge = format!(
                    "Bearer realm=\"latchkey\", error=\"insufficient_user_authentication\", \
                     error_description=\"{WHY}\", max_age=\"{max_age}\""
                );
                let body = json!({ "error": "insufficient_user_authentication", "error_description": WHY });
                with_challenge(json_no_store(status, body), &challenge)
            }
            Self::TooMany { wait, why } => {
                let mut resp = json_no_store(
                    status,
                    json!({ "error": "invalid_request", "error_description": why }),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*wait));
                resp
            }
            Self::Registration(e) => json_no_store(
                status,
                json!({ "error": e.code(), "error_description": e.description() }),
            ),
            Self::Pushed(e) => json_no_store(
                status,
                json!({ "error": e.code.as_str(), "error_description": e.description() }),
            ),
            Self::Invalid(why) => json_no_store(
                status,
                json!({ "error": "invalid_request", "error_description": why }),
            ),
            Self::NotFound => json_no_store(status, json!({ "error": "not_found" })),
            Self::Forbidden(why) => json_no_store(
                status,
                json!({ "error": "access_denied", "error_description": why }),
            ),
            Self::Server => json_no_store(status, json!({ "error": "server_error" })),
            Self::AtResource { error, metadata } => {
                let mut resp = error.as_response();
                let challenges: Vec<String> = resp
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(|c| format!("{c}, resource_metadata=\"{metadata}\""))
                    .collect();
                resp.headers_mut().remove(header::WWW_AUTHENTICATE);
                for c in challenges {
                    if let Ok(v) = HeaderValue::from_str(&c) {
                        resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
                    }
                }
                resp
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

/// What a page answers instead of the page asked for.
#[derive(Debug)]
pub enum PageError {
    /// The error page: a title and a message from the catalog.
    Show {
        status: StatusCode,
        title: Msg,
        message: Msg,
    },
    /// The error page with a catalog message that says `{why}`.
    Why {
        status: StatusCode,
        title: Msg,
        message: Msg,
        why: String,
    },
    /// Parameters that could not be read (repeated, too long, not UTF-8, a NUL): 400, naming
    /// the parameter.
    Params(ParamsError),
    /// A form whose CSRF token does not match: 403, "the form has expired".
    FormExpired,
    /// No signed-in session where one is needed: 303 to `location` (the account page, which
    /// sends a signed-out browser on to sign in, or the sign-in page itself).
    SignIn { location: &'static str },
    /// The answer of the endpoints called by the pages' own scripts: `{"error": message}`.
    /// The scripts show the page's own text on failure, never this one, so these are not in
    /// `messages.toml`.
    Script {
        status: StatusCode,
        message: Cow<'static, str>,
    },
    /// The page the handler could not show (the form again with its message, made by the page
    /// itself): passed through as it is.
    Page(Box<Response>),
    /// An internal failure, already logged: the generic error page.
    Server,
}

impl PageError {
    pub fn new(status: StatusCode, title: Msg, message: Msg) -> Self {
        Self::Show {
            status,
            title,
            message,
        }
    }

    /// 400 with the generic "invalid request" title.
    pub fn bad_request(message: Msg) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Msg::InvalidRequestTitle, message)
    }

    /// 404: not the user's, or not there, the same answer for both.
    pub fn not_found(message: Msg) -> Self {
        Self::new(StatusCode::NOT_FOUND, Msg::NotFoundTitle, message)
    }

    /// An internal failure: the detail goes to the log only.
    pub fn server(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "{what} failed");
        Self::Server
    }

    /// Back to the account page, which sends a browser without a session on to sign in.
    pub fn to_account() -> Self {
        Self::SignIn {
            location: "/account",
        }
    }

    /// The page the handler shows instead (the form again with its message).
    pub fn page(resp: Response) -> Self {
        Self::Page(Box::new(resp))
    }

    pub fn script(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Script {
            status,
            message: message.into(),
        }
    }

    /// The response, rendered with `views`; [`render_page_errors`] calls this.
    pub fn render(self, views: &Views) -> Response {
        let (status, title, message) = match self {
            Self::Show {
                status,
                title,
                message,
            } => (status, title, views.msg(message).to_owned()),
            Self::Why {
                status,
                title,
                message,
                why,
            } => (status, title, views.msg_with(message, &[("why", &why)])),
            Self::Params(e) => (
                StatusCode::BAD_REQUEST,
                Msg::InvalidRequestTitle,
                params_message(views, &e),
            ),
            Self::FormExpired => (
                StatusCode::FORBIDDEN,
                Msg::FormExpiredTitle,
                views.msg(Msg::FormExpiredMessage).to_owned(),
            ),
            Self::Server => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Msg::ErrorTitle,
                views.msg(Msg::ErrorMessage).to_owned(),
            ),
            Self::SignIn { location } => {
                return Response::builder()
                    .status(StatusCode::SEE_OTHER)
                    .header(header::LOCATION, location)
                    .header(header::CACHE_CONTROL, "no-store")
                    .finish();
            }
            Self::Script { status, message } => {
                return json_no_store(status, json!({ "error": message }));
            }
            Self::Page(resp) => return *resp,
        };
        let title = views.msg(title).to_owned();
        super::respond::page_of(
            views,
            status,
            "error.html",
            minijinja::context! { title => title, message => message },
        )
    }
}

/// What the user is told about parameters that could not be read.
fn params_message(views: &Views, e: &ParamsError) -> String {
    match e {
        ParamsError::Repeated(name) => views.msg_with(Msg::ParamRepeated, &[("name", name)]),
        ParamsError::TooLong(name) => views.msg_with(Msg::ParamTooLong, &[("name", name)]),
        ParamsError::TooMany => views.msg(Msg::ParamsTooMany).to_owned(),
        ParamsError::NotUtf8(name) => views.msg_with(Msg::ParamNotUtf8, &[("name", name)]),
        ParamsError::Nul(name) => views.msg_with(Msg::ParamNul, &[("name", name)]),
    }
}

impl From<ParamsError> for PageError {
    fn from(e: ParamsError) -> Self {
        Self::Params(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::server("a store call", e)
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Show { status, .. } | Self::Script { status, .. } | Self::Why { status, .. } => {
                write!(f, "{status}")
            }
            Self::Params(e) => write!(f, "unreadable parameters: {e:?}"),
            Self::FormExpired => f.write_str("form expired"),
            Self::SignIn { location } => write!(f, "sign in first ({location})"),
            Self::Page(resp) => write!(f, "page ({})", resp.status()),
            Self::Server => f.write_str("server error"),
        }
    }
}

impl std::error::Error for PageError {}

impl ResponseError for PageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Show { status, .. } | Self::Script { status, .. } | Self::Why { status, .. } => {
                *status
            }
            Self::Params(_) => StatusCode::BAD_REQUEST,
            Self::FormExpired => StatusCode::FORBIDDEN,
            Self::SignIn { .. } => StatusCode::SEE_OTHER,
            Self::Page(resp) => resp.status(),
            Self::Server => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Turns the [`PageError`] a page handler returned into its page; every other answer passes
/// through untouched. The route's metrics label stays on the response.
pub async fn render_page_errors<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    views: Arc<Views>,
) -> poem::Result<Response> {
    match ep.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => {
            let pattern = err.data::<PathPattern>().cloned();
            match err.downcast::<PageError>() {
                Ok(page) => {
                    let mut resp = page.render(&views);
                    if let Some(p) = pattern {
                        resp.set_data(p);
                    }
                    Ok(resp)
                }
                Err(err) => Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9470_step_up_is_a_bearer_challenge_with_max_age() {
        let resp = ApiError::StepUp { max_age: 300 }.as_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(challenge.contains("error=\"insufficient_user_authentication\""));
        assert!(challenge.contains("max_age=\"300\""));
    }

    #[test]
    fn rfc6750_insufficient_scope_names_the_scope_and_server_errors_say_nothing() {
        let resp = ApiError::Bearer {
            error: BearerError::new(B::InsufficientScope, "x"),
            scope: Some("devices:read"),
        }
        .as_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.contains("scope=\"devices:read\""), "{challenge}");
        let resp = ApiError::server("secret detail").as_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn page_errors_become_pages_and_keep_their_route_label() {
        use poem::{EndpointExt, Route, get, handler};

        #[handler]
        fn missing() -> Result<Response, PageError> {
            Err(PageError::not_found(Msg::DeviceNotFound))
        }
        #[handler]
        fn script() -> Result<Response, PageError> {
            Err(PageError::script(
                StatusCode::FORBIDDEN,
                "the form has expired",
            ))
        }
        #[handler]
        fn signed_out() -> Result<Response, PageError> {
            Err(PageError::to_account())
        }
        let views = Arc::new(Views::new(None).unwrap());
        let app = Route::new()
            .at("/things/:id", get(missing))
            .at("/script", get(script))
            .at("/out", get(signed_out))
            .around(move |ep, req| render_page_errors(ep, req, views.clone()));
        let call = |uri: &'static str| {
            let req = Request::builder()
                .uri(poem::http::Uri::from_static(uri))
                .finish();
            app.call(req)
        };

        let resp = call("/things/7").await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.data::<PathPattern>().map(|p| &*p.0),
            Some("/things/:id")
        );
        assert!(resp.content_type().unwrap().starts_with("text/html"));
        let html = resp.into_body().into_string().await.unwrap();
        assert!(
            html.contains("Not found") || html.contains("not found"),
            "{html}"
        );

        let resp = call("/script").await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body = resp.into_body().into_string().await.unwrap();
        assert_eq!(body, r#"{"error":"the form has expired"}"#);

        let resp = call("/out").await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[header::LOCATION], "/account");
    }

    #[test]
    fn unreadable_parameters_are_named_on_the_page() {
        let views = Views::new(None).unwrap();
        let resp = PageError::from(ParamsError::Repeated("scope".into())).render(&views);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let server = PageError::server("a test", "secret detail").render(&views);
        assert_eq!(server.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
