//! `/metrics`: the Prometheus text of [`crate::metrics::Metrics`].

use poem::web::Data;
use poem::{Response, handler};

use crate::state::AppState;

#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}
