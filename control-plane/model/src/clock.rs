//! Where "now" comes from. Handlers never read the system clock directly, so tests can pin and
//! advance time (token expiry) deterministically. Must not do anything but tell the time.

use std::sync::atomic::{AtomicI64, Ordering};

/// Unix time in whole seconds.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;

    /// Unix time in milliseconds, for the decision pipeline's cache lifetimes.
    fn now_ms(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

// The one place that reads the wall clock (control-plane/clippy.toml bans it elsewhere).
#[expect(clippy::disallowed_methods, reason = "SystemClock is the Clock every other reader goes through")]
impl Clock for SystemClock {
    fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
