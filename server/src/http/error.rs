//! The errors of the protocol and API endpoints, and the one place they become HTTP: RFC 6749
//! §5.2 JSON at the token, revocation, introspection and device authorization endpoints,
//! RFC 6750 §3 challenges where a bearer token is presented, the RFC 9470 step-up challenge,
//! and the resource APIs' JSON errors. Handlers return `Result<_, ApiError>` and use `?`;
//! none builds an error body of its own. Any internal failure is logged where it happens and
//! leaves as a bare `server_error`.

use std::borrow::Cow;

use poem::error::ResponseError;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use serde_json::json;

use crate::oauth::client::MetadataError;
use crate::oauth::error::{BearerError, BearerErrorCode as B, TokenError};

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
    /// RFC 6750 §3.1: no token was presented at all; a bare challenge, no error code.
    NoToken,
    /// RFC 9470 §3: the sign-in behind the token is older than `max_age` seconds.
    StepUp { max_age: i64 },
    /// 429 with `Retry-After`: the address (or client) must wait `wait` seconds; the body is
    /// an RFC 6749 `invalid_request` saying so.
    TooMany { wait: i64, why: String },
    /// RFC 7591 §3.2.2: `invalid_client_metadata`, `invalid_redirect_uri` and the rest.
    Registration(MetadataError),
    /// A request body or query the resource APIs cannot take (400 `invalid_request`).
    Invalid(Cow<'static, str>),
    /// Not the caller's, or not there (404): the same answer for both.
    NotFound,
    /// An internal failure, already logged.
    Server,
}

impl ApiError {
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
            Self::Bearer { error, .. } => write!(f, "{}", error.code.as_str()),
            Self::NoToken => f.write_str("no token"),
            Self::StepUp { .. } => f.write_str("insufficient_user_authentication"),
            Self::TooMany { .. } => f.write_str("too many requests"),
            Self::Registration(e) => write!(f, "{}", e.code()),
            Self::Invalid(why) => write!(f, "invalid_request: {why}"),
            Self::NotFound => f.write_str("not_found"),
            Self::Server => f.write_str("server_error"),
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
            Self::Bearer { error, .. } => match error.code {
                B::InvalidRequest => StatusCode::BAD_REQUEST,
                B::InvalidToken => StatusCode::UNAUTHORIZED,
                B::InsufficientScope => StatusCode::FORBIDDEN,
            },
            Self::NoToken | Self::StepUp { .. } => StatusCode::UNAUTHORIZED,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Invalid(_) | Self::Registration(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Server => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::NoToken => Response::builder()
                .status(status)
                .header(header::WWW_AUTHENTICATE, "Bearer realm=\"latchkey\"")
                .header(header::CACHE_CONTROL, "no-store")
                .finish(),
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
            Self::Invalid(why) => json_no_store(
                status,
                json!({ "error": "invalid_request", "error_description": why }),
            ),
            Self::NotFound => json_no_store(status, json!({ "error": "not_found" })),
            Self::Server => json_no_store(status, json!({ "error": "server_error" })),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.as_response()
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
}
