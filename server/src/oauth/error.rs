//! Protocol errors, one closed set per place they can occur, named after the spec:
//! authorization endpoint (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6), token endpoint
//! (RFC 6749 §5.2, RFC 8693 §2.2.2) and bearer-token use (RFC 6750 §3.1). The HTTP layer turns
//! them into responses in one place.

use std::borrow::Cow;

macro_rules! error_codes {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code,)* }
            }
        }
    };
}

error_codes!(
    /// Errors an authorization request can end in, once the redirect URI is verified.
    AuthorizeErrorCode {
        InvalidRequest => "invalid_request",
        UnauthorizedClient => "unauthorized_client",
        AccessDenied => "access_denied",
        UnsupportedResponseType => "unsupported_response_type",
        InvalidScope => "invalid_scope",
        ServerError => "server_error",
        LoginRequired => "login_required",
        ConsentRequired => "consent_required",
        InteractionRequired => "interaction_required",
        AccountSelectionRequired => "account_selection_required",
        RequestNotSupported => "request_not_supported",
        InvalidRequestObject => "invalid_request_object",
        RequestUriNotSupported => "request_uri_not_supported",
        RegistrationNotSupported => "registration_not_supported",
        InvalidTarget => "invalid_target",
    }
);

error_codes!(
    /// Token endpoint errors.
    TokenErrorCode {
        InvalidRequest => "invalid_request",
        InvalidClient => "invalid_client",
        InvalidGrant => "invalid_grant",
        UnauthorizedClient => "unauthorized_client",
        UnsupportedGrantType => "unsupported_grant_type",
        InvalidScope => "invalid_scope",
        InvalidTarget => "invalid_target",
        AuthorizationPending => "authorization_pending",
        SlowDown => "slow_down",
        AccessDenied => "access_denied",
        ExpiredToken => "expired_token",
        InvalidDpopProof => "invalid_dpop_proof",
        UseDpopNonce => "use_dpop_nonce",
        ServerError => "server_error",
    }
);

error_codes!(
    /// Errors of a request that presents a bearer token.
    BearerErrorCode {
        InvalidRequest => "invalid_request",
        InvalidToken => "invalid_token",
        InsufficientScope => "insufficient_scope",
        InvalidDpopProof => "invalid_dpop_proof",
        UseDpopNonce => "use_dpop_nonce",
    }
);

/// An error code with its public description. Internal detail never goes here: it is logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError<C> {
    pub code: C,
    description: Cow<'static, str>,
}

impl<C: Copy> OAuthError<C> {
    pub fn new(code: C, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: sanitize(description.into()),
        }
    }

    /// RFC 6749 §5.2: `error_description` is limited to `%x20-21 / %x23-5B / %x5D-7E`; CR, LF,
    /// TAB, quotes and backslashes are replaced so the value is also safe in a header.
    pub fn description(&self) -> &str {
        &self.description
    }
}

fn sanitize(s: Cow<'static, str>) -> Cow<'static, str> {
    let ok = |c: char| matches!(c, '\u{20}'..='\u{21}' | '\u{23}'..='\u{5B}' | '\u{5D}'..='\u{7E}');
    if s.chars().all(ok) {
        s
    } else {
        Cow::Owned(s.chars().map(|c| if ok(c) { c } else { ' ' }).collect())
    }
}

pub type AuthorizeError = OAuthError<AuthorizeErrorCode>;
pub type TokenError = OAuthError<TokenErrorCode>;
pub type BearerError = OAuthError<BearerErrorCode>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_carry_crlf_tab_quote_or_backslash() {
        let e = TokenError::new(TokenErrorCode::InvalidRequest, "bad\r\n\t\"x\\y\" é");
        assert_eq!(e.description(), "bad    x y   ");
        assert_eq!(e.code.as_str(), "invalid_request");
    }
}
