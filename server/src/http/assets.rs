//! `/static/{name}`: the embedded stylesheet and script.

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{Response, handler};

use crate::views::STATIC;

#[handler]
pub async fn asset(Path(name): Path<String>) -> Response {
    match STATIC.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => Response::builder()
            .content_type(*content_type)
            .header(header::CACHE_CONTROL, "public, max-age=3600")
            .body(*body),
        None => Response::builder().status(StatusCode::NOT_FOUND).finish(),
    }
}
