//! Picks an app's upstream: round-robin over its addresses, peers built once.

use crate::config::{AppConfig, Upstream};
use pingora::upstreams::peer::HttpPeer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The upstreams of one app.
pub(super) struct UpstreamSet {
    peers: Vec<HttpPeer>,
    next: AtomicUsize,
}

impl UpstreamSet {
    pub(super) fn new(app: &AppConfig) -> Self {
        let peers = app
            .upstreams
            .iter()
            .filter_map(|u| match u {
                Upstream::Whoami => None,
                Upstream::Http { addr, tls, sni, .. } => {
                    let mut peer = HttpPeer::new(*addr, *tls, sni.clone());
                    peer.options.connection_timeout = Some(Duration::from_secs(5));
                    peer.options.total_connection_timeout = Some(Duration::from_secs(10));
                    peer.options.idle_timeout = Some(Duration::from_secs(60));
                    Some(peer)
                }
            })
            .collect();
        Self {
            peers,
            next: AtomicUsize::new(0),
        }
    }

    /// The next peer in turn, or `None` for an app served by the built-in demo.
    pub(super) fn pick(&self) -> Option<Box<HttpPeer>> {
        if self.peers.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len();
        Some(Box::new(self.peers[i].clone()))
    }

    pub(super) fn is_builtin(&self) -> bool {
        self.peers.is_empty()
    }
}
