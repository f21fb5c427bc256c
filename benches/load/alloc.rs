//! The load bench binary's allocator, and the one place that names the gateway's allocator for
//! the `plain pingora (jemalloc)` rows.
//!
//! Every process of this binary (the bench itself, the upstream, plain Pingora, the sign-in
//! helpers) allocates with the system allocator (glibc `malloc`, what a Rust program gets by
//! default, so `plain pingora` is the plain Pingora the bench always built) — except a process
//! started with `LOAD_BENCH_ALLOCATOR=jemalloc` in its environment, which allocates with
//! [`GATEWAY_ALLOCATOR`] instead. The bench starts the second plain Pingora that way, so both
//! come from the same `cargo bench --bench load` build with nothing else to build.
//!
//! The choice is made once, at the process's first allocation (before `main`, one thread),
//! from the environment read with libc's `getenv`, which does not allocate; it never changes
//! afterwards, so every block is freed by the allocator that gave it. The cost on the system
//! allocator's path is one relaxed atomic load and a predictable branch per call.
//!
//! The type follows `portcullis::memory::Allocator` (the one place the gateway's allocator is
//! named); when it changes, change [`GATEWAY_ALLOCATOR`]'s name here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// The gateway's allocator, as built into `plain pingora (jemalloc)`.
type Gateway = portcullis::memory::Allocator;
const GATEWAY: Gateway = portcullis::memory::ALLOCATOR;
/// Its name: in row names, the README, and the value of [`ENV`] that selects it.
pub(crate) const GATEWAY_ALLOCATOR: &str = "jemalloc";
/// The environment variable that selects [`GATEWAY`] for a process of this binary.
pub(crate) const ENV: &str = "LOAD_BENCH_ALLOCATOR";

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const THE_GATEWAYS: u8 = 2;
static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The allocator this process uses, by name.
pub(crate) fn in_use() -> &'static str {
    if gateways() {
        GATEWAY_ALLOCATOR
    } else {
        "system (glibc malloc)"
    }
}

#[inline]
fn gateways() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        SYSTEM => false,
        THE_GATEWAYS => true,
        _ => decide(),
    }
}

#[cold]
fn decide() -> bool {
    // SAFETY: the name is a NUL-terminated literal; getenv returns NULL or a NUL-terminated
    // string owned by the environment, which nothing in this binary modifies.
    let value = unsafe { libc::getenv(c"LOAD_BENCH_ALLOCATOR".as_ptr()) };
    let yes = !value.is_null()
        // SAFETY: non-null, NUL-terminated (above); read before anything could change it.
        && unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes() == GATEWAY_ALLOCATOR.as_bytes();
    CHOICE.store(if yes { THE_GATEWAYS } else { SYSTEM }, Ordering::Relaxed);
    yes
}

/// Hands every call to the allocator chosen at the first allocation.
struct Switch;

// SAFETY: each call goes to one of two sound allocators, always the same one for the life of
// the process (the choice is made once and never changes), so a block is always freed or
// resized by the allocator that gave it.
unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if gateways() {
            GATEWAY.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if gateways() {
            GATEWAY.alloc_zeroed(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if gateways() {
            GATEWAY.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if gateways() {
            GATEWAY.realloc(ptr, layout, new_size)
        } else {
            System.realloc(ptr, layout, new_size)
        }
    }
}

#[global_allocator]
static ALLOCATOR: Switch = Switch;
