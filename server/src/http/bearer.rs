//! Access tokens presented to us (RFC 6750 §2): where they may come from. Checking them is
//! `access`'s.

use poem::Request;
use poem::http::header;

use crate::oauth::error::{BearerError, BearerErrorCode as B};
use crate::oauth::params::Params;

/// The token from `Authorization: Bearer` or, for a form POST, the `access_token` field
/// (RFC 6750 §2.1, §2.2). Both at once is `invalid_request`. `Ok(None)`: none presented.
pub fn presented_token(
    req: &Request,
    form: Option<&Params>,
) -> Result<Option<String>, BearerError> {
    let header_token = match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => match h.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => Some(h[7..].trim().to_owned()),
            _ => return Err(BearerError::new(B::InvalidRequest, "use the Bearer scheme")),
        },
        None => None,
    };
    let body_token = form.and_then(|f| f.get("access_token")).map(str::to_owned);
    match (header_token, body_token) {
        (Some(_), Some(_)) => Err(BearerError::new(
            B::InvalidRequest,
            "present the token once",
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(Some(t)),
        (Some(_), None) | (None, Some(_)) => {
            Err(BearerError::new(B::InvalidRequest, "the token is empty"))
        }
        (None, None) => Ok(None),
    }
}
