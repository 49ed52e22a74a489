//! The in-flight byte budget: how many bytes of ingest bodies the server holds at once, read
//! and not yet answered, across all requests.
//!
//! Every request counts its body as it arrives, chunk by chunk (so a trickled body counts
//! from its first byte), and its gunzipped text as it is inflated, into one [`InFlight`]
//! guard. The guard travels with the body into the writer's queue ([`super::WriteJob`]) and
//! gives the bytes back when it is dropped: after the group commit, on any error, when the
//! client goes away, when the queue refuses the job. A request that would take the total over
//! [`Limits::in_flight_bytes`] is answered 503 `overloaded` with `Retry-After`, holding nothing.
//!
//! [`Limits::in_flight_bytes`]: crate::config::Limits::in_flight_bytes

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The server-wide budget: a limit and the bytes held now.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// Most bytes held at once.
    limit: usize,
    /// Bytes held now, by every live [`InFlight`].
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty guard of this budget.
    pub(crate) fn guard(self: &Arc<Self>) -> InFlight {
        InFlight {
            budget: Arc::clone(self),
            held: 0,
        }
    }
}

/// Bytes one request holds of the [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    budget: Arc<MemoryBudget>,
    held: usize,
}

/// The budget has no room for the bytes asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverBudget;

impl InFlight {
    /// Takes `n` more bytes of the budget, unless that would go over its limit.
    pub(crate) fn grow(&mut self, n: usize) -> Result<(), OverBudget> {
        let limit = self.budget.limit;
        self.budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .map_err(|_| OverBudget)?;
        self.held += n;
        Ok(())
    }

    /// Gives back `n` bytes (at most what is held): memory this request no longer holds.
    pub(crate) fn shrink(&mut self, n: usize) {
        let n = n.min(self.held);
        self.budget.used.fetch_sub(n, Ordering::AcqRel);
        self.held -= n;
    }

    /// Gives back everything held.
    pub(crate) fn release(&mut self) {
        self.shrink(self.held);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryBudget;

    #[test]
    fn guards_share_the_limit_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.guard();
        let mut b = budget.guard();
        a.grow(60).unwrap();
        assert!(b.grow(41).is_err(), "60 + 41 > 100");
        b.grow(40).unwrap();
        assert_eq!(budget.used(), 100);
        a.shrink(10);
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.grow(60).unwrap();
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
