//! A budget for the memory requests hold outside the store: request bodies buffered before a
//! handler runs, and batch answers on their way to the client. Each draws its size from one
//! process-wide budget before it is held and returns it after; when the budget is spent, a
//! request waits (briefly) for room, then gets 503. So however many large bodies or answers
//! arrive at once, they never hold more than the budget: RSS stays near `maxMemory` + budget.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Accounting unit: 1 KiB (a semaphore counts in u32).
const UNIT: u64 = 1024;

#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    units: u32,
}

/// Bytes drawn from the budget, returned when dropped.
#[derive(Debug)]
pub struct Draw {
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no room for {bytes} more bytes of request data within {waited:?} (budget {budget} bytes)")]
pub struct Busy {
    pub bytes: u64,
    pub budget: u64,
    pub waited: Duration,
}

impl Draw {
    /// A draw of nothing (for what is too small to count).
    pub fn none() -> Draw {
        Draw { _permit: None }
    }
}

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Budget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Draws `bytes` (capped at the whole budget, so that one request larger than the budget
    /// can still run alone), waiting up to `wait` for room.
    pub async fn draw(&self, bytes: u64, wait: Duration) -> Result<Draw, Busy> {
        let units = bytes.div_ceil(UNIT).min(u64::from(self.units)) as u32;
        if units == 0 {
            return Ok(Draw { _permit: None });
        }
        match tokio::time::timeout(wait, self.sem.clone().acquire_many_owned(units)).await {
            Ok(Ok(p)) => Ok(Draw { _permit: Some(p) }),
            _ => Err(Busy {
                bytes,
                budget: self.bytes(),
                waited: wait,
            }),
        }
    }

    /// Bytes drawn right now.
    pub fn in_use(&self) -> u64 {
        u64::from(self.units).saturating_sub(self.sem.available_permits() as u64) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draws_wait_for_room_then_give_up_and_return_what_they_took() {
        let b = Budget::new(10 * 1024);
        let a = b.draw(6 * 1024, Duration::from_millis(10)).await.unwrap();
        assert_eq!(b.in_use(), 6 * 1024);
        let busy = b
            .draw(6 * 1024, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(busy.budget, 10 * 1024);
        drop(a);
        assert_eq!(b.in_use(), 0);
        // Larger than the whole budget: capped, runs alone.
        let big = b.draw(1 << 30, Duration::from_millis(10)).await.unwrap();
        assert_eq!(b.in_use(), 10 * 1024);
        drop(big);
        assert!(b.draw(0, Duration::ZERO).await.is_ok());
    }
}
