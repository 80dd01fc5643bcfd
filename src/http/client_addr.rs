//! Who is asking: the peer address, or the client a trusted proxy names in `X-Forwarded-For`.
//! The header is believed only from `--trusted-proxies`, so no client can claim another
//! node's address (OpenCHAMI's cloud-init server believed it from anyone).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;
use nodeboot_core::snapshot::canonical_ip as canonical;

/// The TCP peer, put into request extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Walks `X-Forwarded-For` from the right while hops are trusted proxies; the first untrusted
/// hop is the client. When no hop is untrusted (every address is in a trusted range, as when
/// the ranges overlap the nodes' own), or an entry is malformed, the client is the peer
/// itself: an address nobody wrote into a header.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if !is_trusted(&canonical(ip)) => return canonical(ip),
            Ok(_) => {}
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        h
    }

    #[test]
    fn believes_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            client_ip(lo, &headers("10.1.0.7"), &trusted),
            "10.1.0.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(other, &headers("10.1.0.7"), &trusted), other);
        // A client-supplied entry left of the one the proxy appended is ignored.
        assert_eq!(
            client_ip(lo, &headers("10.9.9.9, 10.1.0.7"), &trusted),
            "10.1.0.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(lo, &headers("junk"), &trusted), lo);
        assert_eq!(client_ip(lo, &headers("10.1.0.7"), &[]), lo);
        // Overlapping ranges: a node inside the trusted range names another node; it gets
        // taken for itself, never for the address it wrote.
        let wide: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let node: IpAddr = "10.1.0.5".parse().unwrap();
        assert_eq!(client_ip(node, &headers("10.1.0.7"), &wide), node);
        assert_eq!(
            client_ip(node, &headers("192.0.2.1, 10.1.0.7"), &wide),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
