//! RFC 9457 problem details: every error on the wire says what failed and how to fix it.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

/// Makes every error response a problem body, whoever made it: a method the route does not
/// serve (405), a timeout (408), the body limit (413), an extractor's plain-text rejection (a
/// path that is not UTF-8). Handlers' own problems pass as they are. Synchronous, so no
/// future is boxed for the responses that are fine.
pub fn every_error_a_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::BAD_REQUEST => {
            "the request could not be read: its path or query is not valid (UTF-8, percent-encoding)"
        }
        StatusCode::METHOD_NOT_ALLOWED => "only GET (and HEAD) is served here",
        StatusCode::REQUEST_TIMEOUT => "the request took longer than the server allows",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the server accepts",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let mut problem = Problem::new(status, detail).into_response();
    // Keep what the router said besides the body (Allow on a 405, say).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}
