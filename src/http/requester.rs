//! The client address as an extractor: computed from the request's parts without copying its
//! headers, for handlers on the hot path that need it only sometimes.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::boot::BootState;
use super::client_addr::{Peer, client_ip};

/// The client (the peer, or whom a trusted proxy names).
#[derive(Debug, Clone, Copy)]
pub struct Requester(pub IpAddr);

impl FromRequestParts<BootState> for Requester {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &BootState,
    ) -> Result<Requester, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<Peer>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
        Ok(Requester(client_ip(
            peer,
            &parts.headers,
            &state.access.trusted_proxies,
        )))
    }
}
