//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database does too).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Response, handler};

use crate::state::AppState;

#[handler]
pub async fn healthz() -> Response {
    Response::builder()
        .content_type("text/plain; charset=utf-8")
        .header("cache-control", "no-store")
        .body("ok")
}

#[handler]
pub async fn readyz(Data(state): Data<&AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Response::builder()
            .content_type("text/plain; charset=utf-8")
            .header("cache-control", "no-store")
            .body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .content_type("text/plain; charset=utf-8")
                .header("cache-control", "no-store")
                .body("database unavailable")
        }
    }
}
