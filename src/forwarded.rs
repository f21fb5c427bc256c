//! Which peers may speak for the original request. `X-Forwarded-*` and `X-Original-*` are
//! believed only from `[server] trusted_proxies`; from anyone else they are ignored, and the
//! client address is the socket's.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The configured trusted networks.
#[derive(Debug, Clone)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts peers inside any of `nets` (the validated `[server] trusted_proxies`).
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `peer` is a trusted proxy; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&peer))
    }

    /// The real client: for a trusted peer, the right-most address in `X-Forwarded-For` that
    /// is not itself a trusted proxy (entries further left are the client's own claims);
    /// otherwise the peer.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
        while let Some(last) = chain.pop() {
            if !self.trusts(last) {
                return last;
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ])
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 10.0.0.9".parse().unwrap());
        let t = trusted();
        assert_eq!(
            t.client("127.0.0.1".parse().unwrap(), &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.client("8.8.8.8".parse().unwrap(), &h),
            "8.8.8.8".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_ipv4_is_matched() {
        assert!(trusted().trusts("::ffff:127.0.0.1".parse().unwrap()));
    }
}
