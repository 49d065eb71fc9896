//! Memory a statement's operators may hold: its own limit and, for a principal's statement,
//! its department's quota, which all of the department's statements in flight share (HTTP
//! and the Postgres wire alike). Without the quota a department's worst case was its
//! statement quota times the statement limit (16 × 2 GiB by default).
//!
//! Key decision: the quota is a pool every statement's pool draws from as well as its own,
//! so operators that spill on a refused reservation (sorts, aggregations) spill under the
//! quota too, and a refusal names which bound was hit.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};

/// What the refusal of a department's quota starts with, so it can be told from a
/// statement's own limit once DataFusion hands it back (`classify`).
pub(crate) const QUOTA_REFUSED: &str = "department memory quota: ";

/// A department's memory in use by its statements, against its quota.
#[derive(Debug)]
pub(crate) struct DepartmentMemory {
    department: String,
    quota: usize,
    used: AtomicUsize,
}

impl DepartmentMemory {
    fn try_take(&self, bytes: usize) -> Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.quota)
            })
            .map(|_| ())
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "{QUOTA_REFUSED}{}'s statements hold {used} bytes, {bytes} more would pass its quota of {} bytes",
                    self.department, self.quota
                ))
            })
    }

    fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// The departments' quotas, one entry per department that has run a statement.
#[derive(Debug, Default)]
pub(crate) struct Quotas(Mutex<HashMap<String, Arc<DepartmentMemory>>>);

impl Quotas {
    pub(crate) fn of(&self, department: &str, quota: usize) -> Arc<DepartmentMemory> {
        self.0
            .lock()
            .expect("quota lock")
            .entry(department.to_string())
            .or_insert_with(|| {
                Arc::new(DepartmentMemory {
                    department: department.to_string(),
                    quota,
                    used: AtomicUsize::new(0),
                })
            })
            .clone()
    }
}

/// One statement's pool: its own limit (with DataFusion's report of the largest consumers
/// when hit), and its department's quota when a principal runs it.
pub(crate) struct StatementPool {
    own: TrackConsumersPool<GreedyMemoryPool>,
    department: Option<Arc<DepartmentMemory>>,
}

impl StatementPool {
    pub(crate) fn new(limit: usize, department: Option<Arc<DepartmentMemory>>) -> Self {
        Self {
            own: TrackConsumersPool::new(
                GreedyMemoryPool::new(limit),
                NonZeroUsize::new(5).expect("five"),
            ),
            department,
        }
    }
}

impl fmt::Debug for StatementPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementPool")
            .field("reserved", &self.own.reserved())
            .field("department", &self.department)
            .finish()
    }
}

impl fmt::Display for StatementPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatementPool(reserved: {})", self.own.reserved())
    }
}

impl MemoryPool for StatementPool {
    fn name(&self) -> &str {
        "citybrain-statement"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.own.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.own.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        if let Some(d) = &self.department {
            d.used.fetch_add(additional, Ordering::Relaxed);
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        if let Some(d) = &self.department {
            d.give_back(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.own.try_grow(reservation, additional)?;
        if let Some(d) = &self.department
            && let Err(e) = d.try_take(additional)
        {
            self.own.shrink(reservation, additional);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_departments_statements_share_its_quota_and_give_it_back() {
        let quotas = Quotas::default();
        let first: Arc<dyn MemoryPool> =
            Arc::new(StatementPool::new(1000, Some(quotas.of("tourism", 1500))));
        let second: Arc<dyn MemoryPool> =
            Arc::new(StatementPool::new(1000, Some(quotas.of("tourism", 1500))));
        let other: Arc<dyn MemoryPool> =
            Arc::new(StatementPool::new(1000, Some(quotas.of("market", 1500))));
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        let c = MemoryConsumer::new("c").register(&other);
        a.try_grow(900).unwrap();
        // The statement's own limit is named as before.
        let own = a.try_grow(200).unwrap_err().to_string();
        assert!(!own.contains(QUOTA_REFUSED), "{own}");
        // The second statement fits its own limit but not what the department has left.
        let quota = b.try_grow(700).unwrap_err().to_string();
        assert!(
            quota.contains(QUOTA_REFUSED) && quota.contains("tourism"),
            "{quota}"
        );
        // Refused, it holds nothing: its own pool was given back what it took.
        assert_eq!(second.reserved(), 0);
        b.try_grow(600).unwrap();
        // Another department is not touched.
        c.try_grow(1000).unwrap();
        // What the first gives back, the second may take.
        a.shrink(500);
        b.try_grow(400).unwrap();
        drop(a);
        drop(b);
        assert_eq!(quotas.of("tourism", 1500).used.load(Ordering::Relaxed), 0);
    }
}
