//! `/jwks.json` (RFC 7517 §5): every published public key, with a strong ETag and a short
//! `max-age`, so relying parties cache it but see a new key well before it signs.

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};

use super::error::ApiError;
use crate::state::AppState;

#[handler]
pub async fn jwks(req: &Request, Data(state): Data<&AppState>) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let ring = state.keys.keyring(now).await.map_err(ApiError::server)?;
    let cache = format!(
        "public, max-age={}",
        state.config.keys.jwks_max_age.as_secs()
    );
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == ring.etag() || t.trim() == "*")
        });
    let builder = Response::builder()
        .header(header::ETAG, ring.etag())
        .header(header::CACHE_CONTROL, cache);
    if not_modified {
        return Ok(builder.status(StatusCode::NOT_MODIFIED).finish());
    }
    Ok(builder
        .content_type("application/jwk-set+json")
        .body(ring.jwks_json().to_owned()))
}
