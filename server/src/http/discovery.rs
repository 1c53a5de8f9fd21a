//! OpenID Provider metadata (OIDC Discovery §4) and OAuth authorization server metadata
//! (RFC 8414 §3): the same document, built by the protocol core from what is enabled. For an
//! issuer with a path (`https://id.example.com/tenant`) it is also answered where RFC 8414 §3.1
//! inserts the path after the well-known prefix (`/.well-known/oauth-authorization-server/tenant`,
//! and the same for `openid-configuration`, which MCP clients also try); any other path there
//! is 404.

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Response, handler};

use crate::oauth::discovery::{Offers, metadata};
use crate::state::AppState;

fn document(state: &AppState) -> Response {
    Response::builder()
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .body(
            metadata(
                &state.config.issuer,
                Offers {
                    registration: state.config.registration.policy
                        != crate::config::RegistrationPolicy::Closed,
                    par_required: state.config.par.required,
                    client_id_metadata_documents: state.config.client_id_metadata.enabled,
                },
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

/// RFC 9728 §3: the metadata of one of our protected resources (`oauth::resource`), at the
/// well-known prefix followed by the path of its identifier.
#[handler]
pub async fn protected_resource(
    Path(path): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let issuer = &state.config.issuer;
    match crate::oauth::resource::by_metadata_path(issuer, &path) {
        Some(api) => {
            let algs: Vec<&str> = crate::oauth::dpop::PROOF_ALGS
                .iter()
                .map(|a| a.as_str())
                .collect();
            Response::builder()
                .content_type("application/json")
                .header(header::CACHE_CONTROL, "public, max-age=300")
                .body(api.metadata(issuer, &algs).to_string())
        }
        None => Response::builder().status(StatusCode::NOT_FOUND).finish(),
    }
}

/// The path-inserted locations: the document when `path` is the issuer's path.
#[handler]
pub async fn path_inserted(Path(path): Path<String>, Data(state): Data<&AppState>) -> Response {
    let issuer_path = url::Url::parse(&state.config.issuer)
        .map(|u| u.path().trim_matches('/').to_owned())
        .unwrap_or_default();
    if !issuer_path.is_empty() && path.trim_matches('/') == issuer_path {
        document(state)
    } else {
        Response::builder().status(StatusCode::NOT_FOUND).finish()
    }
}
