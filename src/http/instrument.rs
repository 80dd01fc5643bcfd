//! Request metrics, in one place for every route: count by endpoint and outcome, and latency.
//! A handler says nothing about metrics except, for a node told to wait, a response extension.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;

use crate::metrics::{Endpoint, Metrics, Outcome};

fn outcome_of(status: StatusCode) -> Outcome {
    match status {
        StatusCode::BAD_REQUEST => Outcome::bad_request,
        StatusCode::FORBIDDEN => Outcome::forbidden,
        StatusCode::NOT_FOUND => Outcome::not_found,
        s if s.is_success() => Outcome::ok,
        _ => Outcome::error,
    }
}

async fn observe(
    State((metrics, endpoint)): State<(Arc<Metrics>, Endpoint)>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .copied()
        .unwrap_or_else(|| outcome_of(response.status()));
    metrics.observe_request(endpoint, outcome, start.elapsed());
    response
}

/// `route` with its requests counted and timed as `endpoint`.
pub fn instrumented<S>(
    (metrics, endpoint): (Arc<Metrics>, Endpoint),
    route: MethodRouter<S>,
) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.layer(middleware::from_fn_with_state((metrics, endpoint), observe))
}
