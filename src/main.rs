//! The `portcullis` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;
use portcullis::socket_activation::InheritedListeners;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

/// The allocator is named once, in the library (`portcullis::memory::Allocator`), so the load
/// bench's plain Pingora can allocate as the gateway does.
#[global_allocator]
static GLOBAL: portcullis::memory::Allocator = portcullis::memory::ALLOCATOR;

fn main() -> ExitCode {
    // First, while this is the only thread: the environment is changed here.
    let inherited = listen_fds();
    portcullis::logging::init();
    portcullis::memory::set_release_hook(release_memory);
    portcullis::cli::run(portcullis::cli::Cli::parse(), inherited)
}

/// Returns the free memory in every allocator arena to the operating system.
fn release_memory() {
    // `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused dirty pages back to the system.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a void mallctl (no old or new value) on a NUL-terminated name jemalloc defines;
    // it takes the arenas' own locks, so any thread may call it at any time.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// The listening sockets handed to this process, as `sd_listen_fds(3)` defines it: when
/// `LISTEN_PID` is this process's id, `LISTEN_FDS` = n sockets are open as fds 3 .. 3+n. The
/// variables are removed either way, so no child of ours mistakes them for its own.
fn listen_fds() -> InheritedListeners {
    const FIRST: RawFd = 3;
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<RawFd>().ok())
        .filter(|_| for_us)
        .unwrap_or(0)
        .clamp(0, 1024);
    for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(key);
    }
    let fds = (FIRST..FIRST + count)
        // Where /proc can tell, only descriptors that are really open (a wrong count must not
        // make us close, or later claim, a number that is not ours).
        .filter(|fd| {
            !std::path::Path::new("/proc/self/fd").is_dir()
                || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok()
        })
        .map(|fd| {
            // SAFETY: `LISTEN_PID` names this process, so whoever started it promises that
            // fds 3 .. 3+LISTEN_FDS are open and handed to it; nothing in this process has
            // opened or claimed a descriptor yet (this runs first in `main`), so each is owned
            // by exactly this `OwnedFd`.
            (fd, unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect();
    InheritedListeners::new(fds)
}
