//! Listening sockets handed over by whoever started the process (systemd socket activation, see
//! `sd_listen_fds(3)`): each is matched to a configured `listen` / `tls_listen` address by the
//! address it is bound to, and Pingora serves on it instead of binding that address itself.
//!
//! The binary takes the descriptors (`LISTEN_PID`, `LISTEN_FDS`, fds 3, 4, ...) before anything
//! else runs; this module checks and places them.

use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use socket2::{Socket, Type};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// The descriptors this process was handed as listening sockets, not yet checked.
#[derive(Debug, Default)]
pub struct InheritedListeners {
    fds: Vec<(RawFd, OwnedFd)>,
}

/// Why the handed-over sockets cannot be used; the gateway does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// A descriptor that is not a listening TCP socket.
    #[error("inherited file descriptor {fd} is not a listening TCP socket{detail}")]
    NotTcpListener {
        /// The descriptor's number as handed over.
        fd: RawFd,
        /// What was found instead, or the error that stopped the check.
        detail: String,
    },
    /// A socket bound to an address no listener of the config names.
    #[error(
        "inherited socket (fd {fd}) is bound to {addr}, which matches no `server.listen` or \
         `server.tls_listen` address; add it to the config or remove it from the socket unit"
    )]
    Unclaimed {
        /// The descriptor's number as handed over.
        fd: RawFd,
        /// The address the socket is bound to.
        addr: SocketAddr,
    },
    /// Two sockets bound to the same address.
    #[error("inherited sockets (fd {first} and fd {second}) are both bound to {addr}")]
    Duplicate {
        /// The first descriptor bound to `addr`.
        first: RawFd,
        /// The second one.
        second: RawFd,
        /// The address both are bound to.
        addr: SocketAddr,
    },
}

impl InheritedListeners {
    /// Wraps the handed-over descriptors, each with the number it was handed over as.
    pub fn new(fds: Vec<(RawFd, OwnedFd)>) -> InheritedListeners {
        InheritedListeners { fds }
    }

    /// Whether nothing was handed over.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Checks every descriptor and gives each one to the configured address it is bound to.
    /// Addresses no socket was handed over for are left out: the server binds those itself.
    ///
    /// # Errors
    /// [`ActivationError`] when a descriptor is not a listening TCP socket, when two are bound to
    /// one address, or when one is bound to an address that `configured` does not name.
    pub fn claim(self, configured: &[SocketAddr]) -> Result<Claimed, ActivationError> {
        let mut sockets: BTreeMap<SocketAddr, (RawFd, OwnedFd)> = BTreeMap::new();
        for (fd, owned) in self.fds {
            let addr = listening_tcp_addr(fd, &owned)?;
            if let Some((first, _)) = sockets.get(&addr) {
                return Err(ActivationError::Duplicate {
                    first: *first,
                    second: fd,
                    addr,
                });
            }
            if !configured.contains(&addr) {
                return Err(ActivationError::Unclaimed { fd, addr });
            }
            sockets.insert(addr, (fd, owned));
        }
        Ok(Claimed {
            sockets: sockets
                .into_iter()
                .map(|(addr, (_, owned))| (addr, owned))
                .collect(),
        })
    }
}

/// The address a handed-over listening TCP socket is bound to; the socket is made non-blocking
/// (Pingora's runtime needs that) and close-on-exec (no child of ours inherits it).
fn listening_tcp_addr(fd: RawFd, owned: &OwnedFd) -> Result<SocketAddr, ActivationError> {
    let not = |detail: String| ActivationError::NotTcpListener { fd, detail };
    let socket = Socket::from(
        owned
            .try_clone()
            .map_err(|e| not(format!(" (cannot use it: {e})")))?,
    );
    match socket.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(_) => return Err(not(" (not a stream socket)".into())),
        Err(e) => return Err(not(format!(" ({e})"))),
    }
    let addr = socket
        .local_addr()
        .map_err(|e| not(format!(" ({e})")))?
        .as_socket()
        .ok_or_else(|| not(" (not an IPv4 or IPv6 socket)".into()))?;
    if !socket.is_listener().map_err(|e| not(format!(" ({e})")))? {
        return Err(not(format!(" ({addr} is bound but not listening)")));
    }
    socket
        .set_nonblocking(true)
        .and_then(|()| socket.set_cloexec(true))
        .map_err(|e| not(format!(" ({e})")))?;
    Ok(addr)
}

/// Handed-over sockets, each claimed by the configured address it is bound to.
#[derive(Debug, Default)]
pub struct Claimed {
    sockets: BTreeMap<SocketAddr, OwnedFd>,
}

impl Claimed {
    /// Whether `addr` came as a handed-over socket (the server must not bind it itself).
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.sockets.contains_key(addr)
    }

    /// How many sockets were handed over.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// `service` serving on these sockets where its bind address (the [`SocketAddr`]'s
    /// `to_string()`, as given to `add_tcp` / `add_tls_with_settings`) is one of theirs.
    pub fn serve_with<S: ServiceWithDependents>(self, service: S) -> HandedOver<S> {
        HandedOver {
            inner: service,
            sockets: self
                .sockets
                .into_iter()
                .map(|(addr, fd)| (addr.to_string(), fd))
                .collect(),
        }
    }
}

/// A Pingora service that finds its handed-over sockets in the listening-fd table Pingora gives
/// it (the table its graceful upgrade fills), so it takes them instead of binding.
pub struct HandedOver<S> {
    inner: S,
    sockets: Vec<(String, OwnedFd)>,
}

#[async_trait::async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for HandedOver<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let table = fds.unwrap_or_else(|| Arc::new(parking_lot::Mutex::new(Fds::new())));
        {
            let mut table = table.lock();
            for (bind, fd) in self.sockets.drain(..) {
                // Pingora owns (and closes) the descriptor from here on.
                table.add(bind, fd.into_raw_fd());
            }
        }
        self.inner
            .start_service(Some(table), shutdown, listeners_per_fd, ready_notifier)
            .await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn on_startup_delay(&self, time_waited: Duration) {
        self.inner.on_startup_delay(time_waited);
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    fn handed(l: impl Into<OwnedFd>, fd: RawFd) -> InheritedListeners {
        InheritedListeners::new(vec![(fd, l.into())])
    }

    #[test]
    fn a_socket_bound_to_a_configured_address_is_claimed_by_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let claimed = handed(l, 3).claim(&[addr]).unwrap();
        assert!(claimed.contains(&addr));
        assert_eq!(claimed.len(), 1);
    }

    #[test]
    fn a_socket_for_no_configured_address_is_refused_naming_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let err = handed(l, 3).claim(&[other]).unwrap_err();
        assert!(
            matches!(err, ActivationError::Unclaimed { fd: 3, addr: a } if a == addr),
            "{err}"
        );
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn what_is_not_a_listening_tcp_socket_is_refused() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        let bound = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
        bound
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let bound_addr = bound.local_addr().unwrap().as_socket().unwrap();
        let file = std::fs::File::open("Cargo.toml").unwrap();
        for (what, fd, addr) in [
            ("udp", OwnedFd::from(udp), udp_addr),
            ("bound, not listening", OwnedFd::from(bound), bound_addr),
            ("a file", OwnedFd::from(file), udp_addr),
        ] {
            let err = handed(fd, 4).claim(&[addr]).unwrap_err();
            assert!(
                matches!(err, ActivationError::NotTcpListener { fd: 4, .. }),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn two_sockets_on_one_address_are_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let dup = l.try_clone().unwrap();
        let err = InheritedListeners::new(vec![(3, l.into()), (4, dup.into())])
            .claim(&[addr])
            .unwrap_err();
        assert!(
            matches!(
                err,
                ActivationError::Duplicate {
                    first: 3,
                    second: 4,
                    ..
                }
            ),
            "{err}"
        );
    }
}
