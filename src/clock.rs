//! Wall-clock time as unix seconds, the unit every expiry in the gateway is stored in, behind
//! the [`Clock`] port so tests can move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the gateway reads the time. Held as `Arc<dyn Clock>`: [`SystemClock`] in the
/// gateway, [`ManualClock`] in tests.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the unix epoch.
    fn now(&self) -> i64;
    /// Milliseconds since the unix epoch, where one second is too coarse to order two events
    /// (a user disabled, then re-enabled and signed in within the same second).
    fn now_ms(&self) -> i64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        now()
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that stands still until told to move: [`ManualClock::set`], [`ManualClock::advance`].
/// Share it as `Arc<ManualClock>` and hand a clone to the code under test as `Arc<dyn Clock>`.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    /// A clock showing `unix_secs` (seconds since the epoch).
    pub fn new(unix_secs: i64) -> Self {
        Self {
            ms: AtomicI64::new(unix_secs.saturating_mul(1000)),
        }
    }

    /// Sets the time to `unix_secs`, forwards or backwards.
    pub fn set(&self, unix_secs: i64) {
        self.ms
            .store(unix_secs.saturating_mul(1000), Ordering::SeqCst);
    }

    /// Sets the time to `unix_ms` milliseconds since the epoch.
    pub fn set_ms(&self, unix_ms: i64) {
        self.ms.store(unix_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs` seconds (backwards when negative).
    pub fn advance_secs(&self, secs: i64) {
        self.ms
            .fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// A clock at 2026-01-01T00:00:00Z, far from the epoch so "a minute ago" is positive.
    fn default() -> Self {
        Self::new(1_767_225_600)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.ms.load(Ordering::SeqCst).div_euclid(1000)
    }

    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

/// Seconds since the unix epoch on the system clock, for code that has no injected [`Clock`]
/// (the CLI, record constructors such as `User::new`).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the unix epoch on the system clock; see [`now`].
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_is_shared() {
        let clock = Arc::new(ManualClock::new(1_000));
        let seen: Arc<dyn Clock> = clock.clone();
        assert_eq!((seen.now(), seen.now_ms()), (1_000, 1_000_000));
        clock.advance(Duration::from_millis(1_500));
        assert_eq!((seen.now(), seen.now_ms()), (1_001, 1_001_500));
        clock.advance_secs(-2);
        assert_eq!(seen.now(), 999);
        clock.set(5);
        assert_eq!(seen.now_ms(), 5_000);
        clock.set_ms(-1);
        assert_eq!(
            seen.now(),
            -1,
            "before the epoch rounds down, as unix time does"
        );
    }

    #[test]
    fn the_system_clock_agrees_with_the_free_functions() {
        let c = SystemClock;
        let (a, b) = (now(), c.now());
        assert!((b - a).abs() <= 1);
        assert!((c.now_ms() / 1000 - c.now()).abs() <= 1);
    }
}
