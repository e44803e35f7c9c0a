//! The process's own view of its metrics: shadow values kept beside each core handle, read by
//! `render_process_metrics()` and zeroed by `reset_process_view()` in a fork child.
//!
//! All accesses are `Relaxed`: every cell is an independent statistic, a render may see one
//! series' update and not another's, and nothing else is published through them.
//!
//! Read-modify-writes: with a GIL, every caller holds it for the whole update (no Python code
//! or GIL release happens between the load and the store), so a plain load and store cannot
//! lose an update and saves the locked instruction (~5 ns, measured); a free-threaded
//! interpreter gets atomic read-modify-writes. [`set_serialized`] chooses at module init.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Whether updates are serialised by the GIL (see the module doc).
static SERIALIZED: AtomicBool = AtomicBool::new(false);

/// Declare whether the interpreter serialises callers with a GIL.
pub fn set_serialized(gil: bool) {
    // Ordering: Relaxed: set once at module init, before any metric object exists (creating
    // one goes through the interpreter, which orders it after this store).
    SERIALIZED.store(gil, Ordering::Relaxed);
}

#[inline(always)]
fn serialized() -> bool {
    // Ordering: Relaxed: see `set_serialized`.
    SERIALIZED.load(Ordering::Relaxed)
}

/// Add 1 to a count.
#[inline(always)]
fn bump(c: &AtomicU64) {
    if serialized() {
        // Ordering: Relaxed: the GIL serialises writers (module doc); readers need atomicity only.
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    } else {
        // Ordering: Relaxed: an independent statistic.
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// An f64 in an atomic (its bits).
#[derive(Default)]
pub struct F64Cell(AtomicU64);

impl F64Cell {
    /// Add `v` (compare-and-swap loop).
    #[inline(always)]
    pub fn add(&self, v: f64) {
        if serialized() {
            // Ordering: Relaxed: the GIL serialises writers (module doc).
            let cur = self.0.load(Ordering::Relaxed);
            // Ordering: Relaxed: as above.
            self.0
                .store((f64::from_bits(cur) + v).to_bits(), Ordering::Relaxed);
            return;
        }
        // Ordering: Relaxed: an independent statistic (see the module doc).
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            // Ordering: Relaxed on success and failure: the loop only needs atomicity.
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Replace the value.
    #[inline(always)]
    pub fn set(&self, v: f64) {
        // Ordering: Relaxed: see the module doc.
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The value.
    #[inline]
    pub fn get(&self) -> f64 {
        // Ordering: Relaxed: see the module doc.
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// One series' shadow: a value (counters, gauges) or count, sum and per-bucket counts
/// (histograms: one per bound plus +Inf; summaries: none).
pub struct Series {
    /// Label values in label-name order.
    pub labelvalues: Vec<String>,
    /// Counter or gauge value.
    pub value: F64Cell,
    /// Observations (histograms, summaries).
    pub count: AtomicU64,
    /// Sum of observations.
    pub sum: F64Cell,
    /// Histogram bucket upper bounds (without +Inf).
    pub bounds: Arc<[f64]>,
    /// Non-cumulative count per bucket, the last one +Inf.
    pub buckets: Box<[AtomicU64]>,
}

impl Series {
    /// A zeroed series; `bounds` empty for anything but a histogram.
    pub fn new(labelvalues: Vec<String>, bounds: Arc<[f64]>, histogram: bool) -> Series {
        let n = if histogram { bounds.len() + 1 } else { 0 };
        Series {
            labelvalues,
            value: F64Cell::default(),
            count: AtomicU64::new(0),
            sum: F64Cell::default(),
            bounds,
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Record an observation (histogram or summary).
    #[inline(always)]
    pub fn observe(&self, v: f64) {
        if !self.buckets.is_empty() {
            // prometheus_client: the first bucket whose bound is >= v; NaN lands in none (and
            // so is not counted in `_count`, which is the +Inf bucket).
            if !v.is_nan() {
                let i = self
                    .bounds
                    .iter()
                    .position(|b| v <= *b)
                    .unwrap_or(self.bounds.len());
                bump(&self.buckets[i]);
            }
        } else {
            // Summaries only: a histogram's count is its +Inf cumulative bucket.
            bump(&self.count);
        }
        self.sum.add(v);
    }

    /// Zero every cell.
    pub fn reset(&self) {
        self.value.set(0.0);
        self.sum.set(0.0);
        // Ordering: Relaxed: see the module doc.
        self.count.store(0, Ordering::Relaxed);
        for b in self.buckets.iter() {
            // Ordering: Relaxed: see the module doc.
            b.store(0, Ordering::Relaxed);
        }
    }

    /// Observation count.
    pub fn count(&self) -> u64 {
        // Ordering: Relaxed: see the module doc.
        self.count.load(Ordering::Relaxed)
    }

    /// Cumulative bucket counts (`le` order, ending with +Inf).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0u64;
        self.buckets
            .iter()
            .map(|b| {
                // Ordering: Relaxed: see the module doc.
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let s = Series::new(Vec::new(), Arc::from(vec![1.0, 2.0]), true);
        for v in [0.5, 1.0, 1.5, 3.0, f64::NAN] {
            s.observe(v);
        }
        assert_eq!(s.cumulative(), vec![2, 3, 4]);
        s.reset();
        assert_eq!(s.cumulative(), vec![0, 0, 0]);
    }

    #[test]
    fn f64_cell_adds() {
        let c = F64Cell::default();
        c.add(1.5);
        c.add(2.0);
        assert_eq!(c.get(), 3.5);
    }
}
