//! The per-thread ring writer behind every recording call.
//!
//! Each thread owns one ring file, created on its first recording. The hot path is: a
//! thread-local access, a comparison of the ring's fork generation with the process's (one
//! relaxed load, no `getpid()`), a claim in the ring, a few stores, and one release store of the
//! head. The slow paths (ring creation, interning, fork recovery) may take locks and make system
//! calls; they run once per thread or per name.
//!
//! After `fork()`, an at-fork child handler bumps [`GENERATION`]; the next recording on any
//! thread of the child sees its ring is from an older generation, abandons it without writing
//! a byte (it belongs to the parent) and creates a fresh one.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};

use crate::layout::*;
use crate::region::{MappedRing, NewRegion, RegionFile};
use crate::ring::Producer;

/// Bumped in the child after every fork.
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Threads whose ring could not be created (they record nothing and count here).
static RING_FAILURES: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

extern "C" fn fork_prepare() {
    // Hold the interning lock across fork so the child never inherits it locked by a thread
    // that does not exist there.
    std::mem::forget(crate::table::lock_for_fork());
}

extern "C" fn fork_parent() {
    crate::table::unlock_after_fork();
}

extern "C" fn fork_child() {
    crate::table::unlock_after_fork();
    // Ordering: Relaxed: the child is single-threaded here; threads it starts later are
    // synchronised with this store by thread creation.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Register the at-fork handlers once per process.
pub(crate) fn register_fork_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are `extern "C"` functions valid for the life of the process.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    });
}

/// Drop counters of a ring, in its writer block.
#[derive(Clone, Copy)]
pub(crate) enum DropKind {
    Span = 1,
    Log = 2,
    Other = 3,
    Coalesced = 4,
    Metric = 5,
}

pub(crate) struct ThreadRing {
    producer: Producer<MappedRing>,
    region: Arc<RegionFile>,
    slots: *mut OverflowSlot,
    nslots: u64,
    generation: u64,
    max_frame: usize,
    inherited: bool,
}

impl ThreadRing {
    /// The largest frame this ring takes (a quarter of its capacity, at most 64 KiB).
    #[inline(always)]
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    #[inline(always)]
    pub(crate) fn count(&self, kind: DropKind) {
        let a = self
            .region
            .atomic_u64(WRITER_BLOCK_OFFSET + 8 * kind as usize);
        // Ordering: Relaxed load + Release store: this thread is the only writer of the
        // counter; the collector's Acquire load sees a value that was current at some point.
        a.store(a.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// Claim a frame of `len` bytes (unaligned length, header included) and write its header.
    /// Returns the data offset of the frame.
    #[inline(always)]
    pub(crate) fn claim(&mut self, kind: u16, flags: u16, len: usize) -> Option<usize> {
        if len > self.max_frame {
            return None;
        }
        let off = self.producer.claim(align8(len))?;
        let header = FrameHeader {
            length: len as u32,
            kind,
            flags,
        };
        // SAFETY: the frame [off, off + align8(len)) was just claimed and is ours.
        unsafe { self.producer.write(off, bytemuck::bytes_of(&header)) };
        Some(off)
    }

    /// Write bytes into a claimed frame at `off` (data offset of the frame) + `at`.
    #[inline(always)]
    pub(crate) fn put(&mut self, off: usize, at: usize, bytes: &[u8]) {
        // SAFETY: callers write within the frame they claimed (at + len <= claimed length).
        unsafe { self.producer.write(off + at, bytes) };
    }

    /// Write `bytes` at `at` within the frame at `off`, zero-padded to 8 bytes: the last word is
    /// zeroed with one fixed-size store, then the bytes are copied over its start.
    #[inline(always)]
    pub(crate) fn put_padded(&mut self, off: usize, at: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if bytes.len() % 8 != 0 {
            self.put(off, at + align8(bytes.len()) - 8, &[0u8; 8]);
        }
        self.put(off, at, bytes);
    }

    #[inline(always)]
    pub(crate) fn commit(&mut self) {
        self.producer.commit();
    }

    #[inline(always)]
    fn slot(&self, series: u32) -> Option<&OverflowSlot> {
        if (series as u64) < self.nslots {
            let hw = self.region.atomic_u64(WRITER_BLOCK_OFFSET + 56);
            // Ordering: Relaxed load (we are its only writer); Release store, made before the
            // slot itself is written. A reader that misses the new mark misses only a slot whose
            // update it would also have missed; the writer bumps `coalesced` after the slot
            // update, so the reader scans again with the mark in view.
            if series as u64 + 1 > hw.load(Ordering::Relaxed) {
                hw.store(series as u64 + 1, Ordering::Release);
            }
            // SAFETY: series < nslots and the slot array lies within the mapping (validated at
            // creation); only this thread writes the slots.
            Some(unsafe { &*self.slots.add(series as usize) })
        } else {
            None
        }
    }
}

impl Drop for ThreadRing {
    fn drop(&mut self) {
        if !self.inherited {
            self.producer.commit();
            // Ordering: Release: the final head store above happens before the collector sees
            // `closed`.
            self.region
                .atomic_u64(WRITER_BLOCK_OFFSET + 48)
                .store(1, Ordering::Release);
        }
    }
}

/// This thread's ring and whether creating it failed, apart from the rest of the thread state so
/// that recording code can borrow the ring and other fields (the correlation id) at once.
pub(crate) struct RingSlot {
    ring: Option<ThreadRing>,
    /// Generation for which ring creation failed (do not retry until a fork).
    failed_generation: u64,
}

impl RingSlot {
    const fn new() -> Self {
        RingSlot {
            ring: None,
            failed_generation: 0,
        }
    }

    /// This thread's ring, creating it on first use or after a fork.
    #[inline(always)]
    pub(crate) fn get(&mut self) -> Option<&mut ThreadRing> {
        // Ordering: Relaxed: see `fork_child`.
        let generation = GENERATION.load(Ordering::Relaxed);
        match self.ring {
            Some(ref r) if r.generation == generation => self.ring.as_mut(),
            _ => self.create(generation),
        }
    }

    #[cold]
    #[inline(never)]
    fn create(&mut self, generation: u64) -> Option<&mut ThreadRing> {
        if let Some(mut old) = self.ring.take() {
            // A ring inherited across fork belongs to the parent: never write to it again.
            old.inherited = true;
        }
        if self.failed_generation == generation {
            return None;
        }
        match new_ring(generation) {
            Ok(r) => {
                self.ring = Some(r);
                self.ring.as_mut()
            }
            Err(e) => {
                self.failed_generation = generation;
                // Ordering: Relaxed: a statistic.
                RING_FAILURES.fetch_add(1, Ordering::Relaxed);
                // Ordering: Relaxed: only decides whether to print once.
                if !WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("shmtel: cannot create a ring, this thread records nothing: {e}");
                }
                None
            }
        }
    }
}

pub(crate) struct ThreadState {
    pub slot: RingSlot,
    pub batch_depth: u32,
    pub span: crate::span::ThreadSpans,
    pub correlation: crate::logs::Correlation,
    pub label_cache: crate::metrics::LabelCache,
}

impl ThreadState {
    const fn new() -> Self {
        ThreadState {
            slot: RingSlot::new(),
            batch_depth: 0,
            span: crate::span::ThreadSpans::new(),
            correlation: crate::logs::Correlation::new(),
            label_cache: crate::metrics::LabelCache::new(),
        }
    }

    /// This thread's ring, creating it on first use or after a fork.
    #[inline(always)]
    pub(crate) fn ring(&mut self) -> Option<&mut ThreadRing> {
        self.slot.get()
    }
}

fn new_ring(generation: u64) -> Result<ThreadRing, crate::Error> {
    let cfg = crate::config::get();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let thread_name = std::thread::current().name().unwrap_or("").to_owned();
    let (identity, dir, service, seq, nslots) = crate::table::with_process(|p| {
        p.ring_seq += 1;
        Ok((
            p.identity.clone(),
            p.dir.clone(),
            p.service.clone(),
            p.ring_seq,
            p.series_capacity(),
        ))
    })?;
    let name = identity.ring_file_name(tid, seq);
    let capacity = cfg.ring_capacity();
    let region = RegionFile::create(&NewRegion {
        dir: &dir,
        name: &name,
        identity: &identity,
        tid,
        kind: REGION_RING,
        data_capacity: capacity,
        slots: nslots,
        anchor: crate::clock::anchor(),
        thread_name: &thread_name,
        service: &service,
        mode: cfg.file_mode,
    })
    .map_err(|e| crate::Error::Io(format!("{}: {e}", dir.join(&name).display())))?;
    let region = Arc::new(region);
    let overflow_offset = region.header().overflow_offset as usize;
    // SAFETY: the overflow array lies within the mapping (sized at creation).
    let slots = unsafe { region.base().add(overflow_offset) } as *mut OverflowSlot;
    let producer = Producer::new(MappedRing::new(region.clone()));
    Ok(ThreadRing {
        producer,
        region,
        slots,
        nslots,
        generation,
        max_frame: (capacity as usize / 4).min(MAX_FRAME),
        inherited: false,
    })
}

thread_local! {
    static THREAD: UnsafeCell<ThreadState> = const { UnsafeCell::new(ThreadState::new()) };
}

/// Run `f` with this thread's state. Not reentrant: `f` must not record.
#[inline(always)]
pub(crate) fn with_thread<R>(f: impl FnOnce(&mut ThreadState) -> R) -> Option<R> {
    THREAD
        .try_with(|cell| {
            // SAFETY: the state is thread-local and no recording function calls another while
            // holding this reference (the closures passed here never re-enter `with_thread`).
            let st = unsafe { &mut *cell.get() };
            f(st)
        })
        .ok()
}

/// Append one fixed-size frame (header + `body`), commit unless in a batch. Returns false if it
/// did not fit (the caller decides what that costs).
#[inline(always)]
pub(crate) fn append<T: bytemuck::Pod>(
    st: &mut ThreadState,
    kind: u16,
    flags: u16,
    body: &T,
) -> bool {
    let batch = st.batch_depth != 0;
    let Some(ring) = st.ring() else { return false };
    let len = FRAME_HEADER_SIZE + std::mem::size_of::<T>();
    match ring.claim(kind, flags, len) {
        Some(off) => {
            ring.put(off, FRAME_HEADER_SIZE, bytemuck::bytes_of(body));
            if !batch {
                ring.commit();
            }
            true
        }
        None => false,
    }
}

/// Count a dropped record of `kind` in this thread's ring header.
#[cold]
pub(crate) fn count_drop(st: &mut ThreadState, kind: DropKind) {
    if let Some(ring) = st.ring() {
        ring.count(kind);
    }
}

/// A counter increment or gauge add that did not fit: add it to the series' overflow slot.
#[cold]
#[inline(never)]
pub(crate) fn overflow_add(st: &mut ThreadState, series: u32, delta: f64) {
    let Some(ring) = st.ring() else { return };
    let Some(slot) = ring.slot(series) else {
        ring.count(DropKind::Metric);
        return;
    };
    let value = atomic_field(&slot.value_bits);
    // Ordering: Relaxed load (we are the only writer), Release store: the collector's Acquire
    // load sees a complete f64.
    let v = f64::from_bits(value.load(Ordering::Relaxed)) + delta;
    value.store(v.to_bits(), Ordering::Release);
    bump_seq(slot);
    ring.count(DropKind::Coalesced);
}

/// A gauge set that did not fit: store it, with its time, in the series' overflow slot.
#[cold]
#[inline(never)]
pub(crate) fn overflow_set(st: &mut ThreadState, series: u32, ts: u64, value: f64) {
    let Some(ring) = st.ring() else { return };
    let Some(slot) = ring.slot(series) else {
        ring.count(DropKind::Metric);
        return;
    };
    let seq = atomic_field(&slot.seq);
    // Ordering: Relaxed load, Release stores: a one-writer seqlock. The odd value marks the
    // update in progress; readers retry while it is odd or changed.
    let s = seq.load(Ordering::Relaxed);
    seq.store(s | 1, Ordering::Release);
    // Ordering: Release: ordered after the odd seq store above for the reader's Acquire loads.
    atomic_field(&slot.set_value_bits).store(value.to_bits(), Ordering::Release);
    // Ordering: Release, as above.
    atomic_field(&slot.set_ts).store(ts.max(1), Ordering::Release);
    // Ordering: Release: publishes the two stores above with an even seq.
    seq.store((s | 1) + 1, Ordering::Release);
    ring.count(DropKind::Coalesced);
}

fn bump_seq(slot: &OverflowSlot) {
    let seq = atomic_field(&slot.seq);
    // Ordering: Relaxed load (single writer) + Release store: tells readers the slot changed.
    let s = seq.load(Ordering::Relaxed);
    seq.store((s | 1) + 1, Ordering::Release);
}

fn atomic_field(field: &u64) -> &AtomicU64 {
    // SAFETY: the slot lives in shared memory that is only accessed atomically; the field is an
    // 8-aligned u64 (the slot array is 8-aligned).
    unsafe { &*(field as *const u64 as *const AtomicU64) }
}

/// Record everything `f` records as one commit: the frames become visible together (one head
/// store), so a reader — or a crash — sees all of them or none. Overflow slots are not part of
/// the batch.
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    /// Ends the batch even if `f` panics (a caught panic must not leave the thread unable to
    /// commit for ever).
    struct EndBatch;
    impl Drop for EndBatch {
        fn drop(&mut self) {
            with_thread(|st| {
                st.batch_depth = st.batch_depth.saturating_sub(1);
                if st.batch_depth == 0 {
                    if let Some(ring) = st.ring() {
                        ring.commit();
                    }
                }
            });
        }
    }
    with_thread(|st| st.batch_depth += 1);
    let _end = EndBatch;
    f()
}

/// What this thread's ring recorded about itself (for tests and loadgen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Bytes committed.
    pub head: u64,
    /// Spans dropped because the ring was full.
    pub dropped_spans: u64,
    /// Logs dropped because the ring was full.
    pub dropped_logs: u64,
    /// Histogram observations and business events dropped.
    pub dropped_other: u64,
    /// Counter/gauge updates coalesced into overflow slots (not lost).
    pub coalesced: u64,
    /// Counter/gauge updates lost (no overflow slot).
    pub dropped_metric: u64,
    /// Threads of this process whose ring could not be created.
    pub ring_failures: u64,
}

/// Commit anything pending on this thread and return its ring's counters.
pub fn flush_stats() -> WriterStats {
    with_thread(|st| {
        let Some(ring) = st.ring() else {
            return WriterStats::default();
        };
        ring.commit();
        let r = &ring.region;
        WriterStats {
            head: r.load_u64(WRITER_BLOCK_OFFSET),
            dropped_spans: r.load_u64(WRITER_BLOCK_OFFSET + 8),
            dropped_logs: r.load_u64(WRITER_BLOCK_OFFSET + 16),
            dropped_other: r.load_u64(WRITER_BLOCK_OFFSET + 24),
            coalesced: r.load_u64(WRITER_BLOCK_OFFSET + 32),
            dropped_metric: r.load_u64(WRITER_BLOCK_OFFSET + 40),
            // Ordering: Relaxed: a statistic.
            ring_failures: RING_FAILURES.load(Ordering::Relaxed),
        }
    })
    .unwrap_or_default()
}
