//! A hybrid logical clock: timestamps are `wall_ms << 16 | logical`, strictly increasing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kestrel_storage::Ts;

#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

fn wall() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ms << 16
}

impl Clock {
    /// A clock that never issues a timestamp at or below `floor`.
    pub fn new(floor: Ts) -> Self {
        Self {
            last: AtomicU64::new(floor.0),
        }
    }

    /// A fresh timestamp, greater than every one issued or observed before.
    pub fn now(&self) -> Ts {
        let w = wall();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = w.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ts(next),
                Err(actual) => last = actual,
            }
        }
    }

    /// Makes every later timestamp greater than `ts`.
    pub fn observe(&self, ts: Ts) {
        self.last.fetch_max(ts.0, Ordering::AcqRel);
    }

    /// A timestamp `ms` milliseconds ahead of the current one (for persisting a floor).
    pub fn ahead_ms(&self, ms: u64) -> Ts {
        Ts(self.now().0 + (ms << 16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_respects_floor() {
        let far = Ts(wall() + (1_000_000 << 16));
        let c = Clock::new(far);
        let a = c.now();
        let b = c.now();
        assert!(a > far && b > a);
        c.observe(Ts(b.0 + 100));
        assert!(c.now().0 > b.0 + 100);
    }
}
