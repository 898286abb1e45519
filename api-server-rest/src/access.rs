//! Who may talk to the shim: only processes on the same host (in a pod: the containers that
//! share the pod's network namespace).

use std::net::{IpAddr, SocketAddr};

/// Whether a peer address is a loopback address: `127.0.0.0/8`, `::1`, or an IPv4-mapped
/// `::ffff:127.x.y.z` (what a dual-stack listener reports for an IPv4 loopback peer).
pub(crate) fn is_loopback_peer(peer: &SocketAddr) -> bool {
    match peer.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn loopback_peers_are_allowed() {
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.1.2.3",
        ] {
            assert!(is_loopback_peer(&peer(ip)), "{ip}");
        }
    }

    #[test]
    fn other_peers_are_refused() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "128.0.0.1",
            "126.255.255.255",
            "169.254.1.1",
            "192.168.1.10",
            "255.255.255.255",
            "::",
            "::2",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            // IPv4-mapped, but not loopback
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            // the deprecated IPv4-compatible form is not a loopback address
            "::127.0.0.1",
            // NAT64 of 127.0.0.1 routes off the host
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_loopback_peer(&peer(ip)), "{ip}");
        }
    }
}
