//! A plain Pingora pass-through proxy with no auth, built from the same pingora as the gateway:
//! the framework's own cost, the row signed-in proxying is judged against. The bench runs it
//! with the system allocator and, as `plain pingora (jemalloc)`, with the gateway's
//! (`alloc.rs`). Its upstream peer
//! has the same options as the gateway's (`src/proxy/upstream.rs`) and the same keep-alive pool.

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::net::SocketAddr;
use std::time::Duration;

struct Plain {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

/// Serves until the process is killed. Says its threads and allocator first (the bench checks
/// the allocator in its log).
pub(crate) fn run(listen: SocketAddr, upstream: SocketAddr, threads: usize) -> ! {
    eprintln!(
        "plain pingora: {threads} threads, allocator {}",
        crate::alloc::in_use()
    );
    let mut peer = HttpPeer::new(upstream, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(5));
    peer.options.total_connection_timeout = Some(Duration::from_secs(10));
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    let mut conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Plain { peer },
        "plain",
    );
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run_forever()
}
