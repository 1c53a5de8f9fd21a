//! OpenID Provider metadata (OIDC Discovery §4) and OAuth authorization server metadata
//! (RFC 8414 §3): the same document, built by the protocol core from what is enabled.

use poem::http::header;
use poem::web::Data;
use poem::{Response, handler};

use crate::oauth::discovery::metadata;
use crate::state::AppState;

fn document(state: &AppState) -> Response {
    Response::builder()
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .body(
            metadata(
                &state.config.issuer,
                state.config.registration.policy != crate::config::RegistrationPolicy::Closed,
                state.config.par.required,
            )
            .to_string(),
        )
}

#[handler]
pub async fn openid_configuration(Data(state): Data<&AppState>) -> Response {
    document(state)
}

#[handler]
pub async fn oauth_authorization_server(Data(state): Data<&AppState>) -> Response {
    document(state)
}
