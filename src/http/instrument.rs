//! Request metrics, in one place for every route: count by endpoint and outcome, and latency.
//! A handler says nothing about metrics except, for a node told to wait, a response extension.
//! A tower layer rather than axum's `from_fn`: no boxed future per request on the boot path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::MethodRouter;
use tower::{Layer, Service};

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

#[derive(Clone)]
struct Instrument {
    metrics: Arc<Metrics>,
    endpoint: Endpoint,
}

impl<S> Layer<S> for Instrument {
    type Service = Instrumented<S>;

    fn layer(&self, inner: S) -> Instrumented<S> {
        Instrumented {
            inner,
            tag: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Instrumented<S> {
    inner: S,
    tag: Instrument,
}

impl<S, R> Service<R> for Instrumented<S>
where
    S: Service<R, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Observed<S::Future> {
        Observed {
            inner: self.inner.call(request),
            tag: self.tag.clone(),
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The handler's future, observed when it completes.
    pub struct Observed<F> {
        #[pin]
        inner: F,
        tag: Instrument,
        start: Instant,
    }
}

impl<F, E> Future for Observed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let outcome = response
                .extensions()
                .get::<Outcome>()
                .copied()
                .unwrap_or_else(|| outcome_of(response.status()));
            this.tag
                .metrics
                .observe_request(this.tag.endpoint, outcome, this.start.elapsed());
        }
        Poll::Ready(result)
    }
}

/// `route` with its requests counted and timed as `endpoint`.
pub fn instrumented<S>(
    (metrics, endpoint): (Arc<Metrics>, Endpoint),
    route: MethodRouter<S>,
) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.layer(Instrument { metrics, endpoint })
}
