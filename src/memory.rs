//! Gives freed memory back to the operating system after bursts of large, short-lived
//! allocations (oversized request heads), through a hook the binary installs: a purge of the
//! global allocator's arenas, which this library (no unsafe code) cannot call itself.
//!
//! Freed heap memory stays in the allocator's per-thread arenas, and a burst of hundreds of
//! half-sent 32 KiB heads on every worker leaves tens of MB resident after the connections are
//! gone. A release is asked for when such a connection ends and done at most once a second, on
//! a thread of its own, never on the request path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The global allocator of the `portcullis` binary (set there with `#[global_allocator]`, never
/// in this library), named here once so another binary that should allocate as the gateway
/// does (the load bench's plain Pingora row) can follow it: `#[global_allocator] static A:
/// portcullis::memory::Allocator = portcullis::memory::ALLOCATOR;`.
///
/// jemalloc (`tikv-jemallocator`), chosen by measurement in issue 15 (benches/README.md):
/// under callgrind it cut instructions per signed-in request by about 11 % against glibc;
/// mimalloc cut about 15 % but held 89 MiB resident idle instead of 21 MiB and kept the
/// memory of 800 oversized heads (the slow-client test) even after `mi_collect`. The binary's
/// release hook purges jemalloc's arenas (`arena.<all>.purge`).
pub type Allocator = tikv_jemallocator::Jemalloc;

/// The value of [`Allocator`] for a `#[global_allocator]` static.
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;

static HOOK: OnceLock<fn()> = OnceLock::new();
static PENDING: AtomicBool = AtomicBool::new(false);

/// Installs how memory is given back (once; later calls are ignored).
pub fn set_release_hook(release: fn()) {
    let _ = HOOK.set(release);
}

/// Asks for a release within the next second.
pub(crate) fn release_soon() {
    PENDING.store(true, Ordering::Relaxed);
}

/// Releases at once, on this thread: for the end of start-up, so the loading of the
/// database and the revocation list leaves nothing behind before the first request.
pub(crate) fn release_now() {
    if let Some(release) = HOOK.get() {
        PENDING.store(false, Ordering::Relaxed);
        release();
    }
}

/// Starts the thread that releases memory when asked, if a hook is installed.
pub(crate) fn spawn_releaser() {
    let Some(release) = HOOK.get().copied() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("portcullis-memory".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            if PENDING.swap(false, Ordering::Relaxed) {
                release();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the memory release thread");
    }
}
