//! Client authentication at the token, revocation and introspection endpoints (RFC 6749
//! §2.3.1, OIDC Core §9): which credentials a request presents. Checking them against the
//! registered client happens where the store is.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::{TokenError, TokenErrorCode as T};
use super::params::Params;

#[derive(PartialEq, Eq)]
pub enum Presented {
    /// `Authorization: Basic`, both halves form-urldecoded.
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the body.
    Post { client_id: String, secret: String },
    /// A public client: `client_id` only.
    None { client_id: String },
    /// `private_key_jwt` (RFC 7523 §2.2): a signed assertion; the client is its `sub`.
    Assertion {
        client_id: String,
        assertion: String,
    },
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id) = match self {
            Presented::Basic { client_id, .. } => ("basic", client_id),
            Presented::Post { client_id, .. } => ("post", client_id),
            Presented::None { client_id } => ("none", client_id),
            Presented::Assertion { client_id, .. } => ("private_key_jwt", client_id),
        };
        write!(f, "Presented::{kind}({id}, <secret redacted>)")
    }
}

impl Presented {
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::None { client_id }
            | Presented::Assertion { client_id, .. } => client_id,
        }
    }

    pub fn is_basic(&self) -> bool {
        matches!(self, Presented::Basic { .. })
    }
}

fn invalid_client(why: &'static str) -> TokenError {
    TokenError::new(T::InvalidClient, why)
}

/// Reads the credentials a request presents; more than one method is `invalid_request`.
pub fn presented(authorization: Option<&str>, params: &Params) -> Result<Presented, TokenError> {
    let basic = match authorization {
        Some(h) if h.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")) => {
            Some(decode_basic(&h[6..])?)
        }
        Some(_) => return Err(invalid_client("unsupported Authorization scheme")),
        None => None,
    };
    if params.contains("client_assertion") || params.contains("client_assertion_type") {
        if basic.is_some() || params.contains("client_secret") {
            return Err(TokenError::new(
                T::InvalidRequest,
                "use one client authentication method, not several",
            ));
        }
        return assertion(params);
    }
    match (basic, params.get("client_id"), params.get("client_secret")) {
        (Some(_), _, Some(_)) => Err(TokenError::new(
            T::InvalidRequest,
            "use one client authentication method, not several",
        )),
        (Some((id, secret)), body_id, None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(TokenError::new(
                    T::InvalidRequest,
                    "client_id does not match the Authorization header",
                ));
            }
            Ok(Presented::Basic {
                client_id: id,
                secret,
            })
        }
        (None, Some(id), Some(secret)) => Ok(Presented::Post {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        (None, Some(id), None) => Ok(Presented::None {
            client_id: id.to_owned(),
        }),
        (None, None, _) => Err(invalid_client("client authentication is required")),
    }
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn assertion(params: &Params) -> Result<Presented, TokenError> {
    if params.get("client_assertion_type") != Some(JWT_BEARER) {
        return Err(TokenError::new(
            T::InvalidRequest,
            "client_assertion_type must be jwt-bearer",
        ));
    }
    let jwt = params
        .get("client_assertion")
        .ok_or_else(|| TokenError::new(T::InvalidRequest, "client_assertion is missing"))?;
    // The client is the assertion's subject (RFC 7523 §3); the signature is checked later
    // with that client's keys.
    let sub = unverified_claim(jwt, "sub")
        .ok_or_else(|| invalid_client("the client assertion has no sub"))?;
    if params.get("client_id").is_some_and(|id| id != sub) {
        return Err(TokenError::new(
            T::InvalidRequest,
            "client_id does not match the assertion",
        ));
    }
    Ok(Presented::Assertion {
        client_id: sub,
        assertion: jwt.to_owned(),
    })
}

fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = latchkey_jwks::verify::unverified_payload(jwt)?;
    payload.get(name)?.as_str().map(str::to_owned)
}

fn decode_basic(b64: &str) -> Result<(String, String), TokenError> {
    let bad = || invalid_client("malformed Basic credentials");
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id);
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, form_decode(secret)))
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn basic_halves_are_form_urldecoded_and_split_on_the_first_colon() {
        // id "a b:c" -> "a+b%3Ac", secret "x:y%"
        let h = format!("Basic {}", STANDARD.encode("a+b%3Ac:x:y%25"));
        let got = presented(Some(&h), &p("")).unwrap();
        assert_eq!(
            got,
            Presented::Basic {
                client_id: "a b:c".into(),
                secret: "x:y%".into()
            }
        );
        assert!(!format!("{got:?}").contains("x:y"));
    }

    #[test]
    fn methods_are_exclusive() {
        let h = format!("Basic {}", STANDARD.encode("c:s"));
        assert_eq!(
            presented(Some(&h), &p("client_secret=s")).unwrap_err().code,
            T::InvalidRequest
        );
        assert_eq!(
            presented(Some(&h), &p("client_id=other")).unwrap_err().code,
            T::InvalidRequest
        );
        assert!(matches!(
            presented(None, &p("client_id=c&client_secret=s")).unwrap(),
            Presented::Post { .. }
        ));
        assert!(matches!(
            presented(None, &p("client_id=c")).unwrap(),
            Presented::None { .. }
        ));
        assert_eq!(presented(None, &p("")).unwrap_err().code, T::InvalidClient);
        assert_eq!(
            presented(Some("Basic !!!"), &p("")).unwrap_err().code,
            T::InvalidClient
        );
    }
}
