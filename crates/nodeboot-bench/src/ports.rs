//! Free loopback ports for the servers under test: the kernel picks them, we release them.

use std::net::{Ipv4Addr, TcpListener};

/// `count` distinct ports free on 127.0.0.1 right now. Each is released before it is returned,
/// so another process could take it meanwhile; on an otherwise quiet loopback none does.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    // All held at once, so that the kernel cannot hand out the same port twice.
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn distinct_ports() {
        let mut ports = super::free_ports(3).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
    }
}
