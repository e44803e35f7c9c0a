//! Property tests of the ring protocol (`shmtel_core::ring`) over heap memory: random frame
//! sizes, kinds and flags, interleaved claims, commits and reads, small capacities so that
//! wrap-around, padding and a full ring happen all the time. A model (a queue of committed
//! frames, the exact free-space rule of records.md §3.1) says what must happen; the ring must
//! agree. Then hostile memory: random bytes and positions never panic the consumer.
//!
//! Failures are persisted in `tests/regressions/ring_proptest.txt` and replayed first.
#![cfg(not(loom))] // uses the parts of the crate that `--cfg loom` leaves out

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use shmtel_core::layout::{align8, FrameHeader, FRAME_HEADER_SIZE, KIND_PADDING, MAX_FRAME};
use shmtel_core::ring::{Consumer, Producer, RingMemory};

/// Ring memory on the heap, shared by a producer and a consumer on the same thread.
struct HeapRing {
    head: AtomicU64,
    tail: AtomicU64,
    data: Box<[UnsafeCell<u8>]>,
}

impl HeapRing {
    fn new(capacity: usize) -> HeapRing {
        HeapRing {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            data: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        }
    }
}

#[derive(Clone, Copy)]
struct Mem<'a>(&'a HeapRing);

impl RingMemory for Mem<'_> {
    fn capacity(&self) -> u64 {
        self.0.data.len() as u64
    }
    fn head(&self) -> &AtomicU64 {
        &self.0.head
    }
    fn tail(&self) -> &AtomicU64 {
        &self.0.tail
    }
    unsafe fn write(&self, offset: usize, src: &[u8]) {
        let cells = &self.0.data[offset..offset + src.len()];
        for (c, b) in cells.iter().zip(src) {
            // SAFETY: single-threaded test; no reference to this byte is alive.
            unsafe { *c.get() = *b };
        }
    }
    unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
        let cells = &self.0.data[offset..offset + dst.len()];
        for (c, d) in cells.iter().zip(dst) {
            // SAFETY: single-threaded test; no mutable reference to this byte is alive.
            *d = unsafe { *c.get() };
        }
    }
}

/// One step of a scenario.
#[derive(Clone, Debug)]
enum Op {
    /// Claim and write one frame of this kind/flags/body; commit it right away or leave it pending.
    Produce {
        kind: u16,
        flags: u16,
        body: Vec<u8>,
        commit: bool,
    },
    /// Commit everything pending.
    Commit,
    /// Read at most `max` frames and release them.
    Consume { max: usize },
    /// Read without releasing (a dump tool), from the current tail.
    Peek,
}

fn op(max_body: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (2u16..=u16::MAX, any::<u16>(), prop::collection::vec(any::<u8>(), 0..=max_body), any::<bool>())
            .prop_map(|(kind, flags, body, commit)| Op::Produce { kind, flags, body, commit }),
        1 => Just(Op::Commit),
        2 => (1usize..6).prop_map(|max| Op::Consume { max }),
        1 => Just(Op::Peek),
    ]
}

/// (capacity, ops): capacities 64..=1024, bodies up to a quarter of the capacity minus the
/// header (the largest frame a writer may claim).
fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (6u32..=10).prop_flat_map(|log2| {
        let cap = 1usize << log2;
        (
            Just(cap),
            prop::collection::vec(op(cap / 4 - FRAME_HEADER_SIZE), 1..200),
        )
    })
}

type Frame = (u16, u16, Vec<u8>);

/// The model of the producer: where the next claim goes and whether it fits (records.md §3.1).
struct Model {
    cap: u64,
    pending: u64,
    committed: u64,
    tail: u64,
    /// Frames committed and not consumed, with their positions.
    visible: VecDeque<(u64, Frame)>,
    /// Frames claimed, not yet committed.
    claimed: Vec<(u64, Frame)>,
}

impl Model {
    /// Position of the frame if it fits, else None (the ring is full).
    fn claim(&mut self, n: u64) -> Option<u64> {
        let idx = self.pending % self.cap;
        let pad = if n <= self.cap - idx {
            0
        } else {
            self.cap - idx
        };
        if self.pending + pad + n - self.tail > self.cap {
            return None;
        }
        let at = self.pending + pad;
        self.pending = at + n;
        Some(at)
    }
}

fn config() -> Config {
    Config {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/regressions/ring_proptest.txt",
        ))),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The consumer sees exactly the committed frames, in order, once; never an uncommitted one;
    /// a claim fails exactly when the model says the ring is full.
    #[test]
    fn round_trip_with_wrap_around((cap, ops) in scenario()) {
        let ring = HeapRing::new(cap);
        let mut p = Producer::new(Mem(&ring));
        let mut c = Consumer::new(Mem(&ring));
        let mut m = Model { cap: cap as u64, pending: 0, committed: 0, tail: 0, visible: VecDeque::new(), claimed: Vec::new() };
        let mut pos = 0u64;
        for op in ops {
            match op {
                Op::Produce { kind, flags, body, commit } => {
                    let len = FRAME_HEADER_SIZE + body.len();
                    let want = m.claim(align8(len) as u64);
                    let got = p.claim(align8(len));
                    prop_assert_eq!(got.is_some(), want.is_some(), "claim of {} bytes: ring full?", align8(len));
                    let Some(off) = got else { continue };
                    let at = want.unwrap();
                    prop_assert_eq!(off as u64, at % cap as u64, "frame offset");
                    let header = FrameHeader { length: len as u32, kind, flags };
                    // SAFETY: [off, off + align8(len)) was just claimed and not committed.
                    unsafe {
                        p.write(off, bytemuck::bytes_of(&header));
                        p.write(off + FRAME_HEADER_SIZE, &body);
                    }
                    m.claimed.push((at, (kind, flags, body)));
                    if commit {
                        p.commit();
                        m.committed = m.pending;
                        m.visible.extend(m.claimed.drain(..));
                    }
                }
                Op::Commit => {
                    p.commit();
                    m.committed = m.pending;
                    m.visible.extend(m.claimed.drain(..));
                }
                Op::Consume { max } => {
                    let mut got: Vec<(u64, Frame)> = Vec::new();
                    let end = c
                        .read_from(pos, max, |f| got.push((f.position, (f.kind, f.flags, f.body.to_vec()))))
                        .map_err(|e| TestCaseError::fail(format!("valid ring rejected: {e}")))?;
                    let want: Vec<(u64, Frame)> = (0..max.min(m.visible.len())).map(|_| m.visible.pop_front().unwrap()).collect();
                    prop_assert_eq!(&got, &want);
                    // The consumer stops after the last frame it delivered, or at head (skipping
                    // a trailing padding frame) when it delivered everything visible.
                    let next = m.visible.front().map(|f| f.0);
                    match next {
                        Some(n) => prop_assert!(end <= n && end >= want.last().map(|w| w.0 + 8).unwrap_or(pos)),
                        None => prop_assert_eq!(end, m.committed),
                    }
                    prop_assert_eq!(end % 8, 0);
                    c.release(end);
                    pos = end;
                    m.tail = end;
                }
                Op::Peek => {
                    let mut n = 0;
                    let end = c
                        .read_from(pos, usize::MAX, |_| n += 1)
                        .map_err(|e| TestCaseError::fail(format!("valid ring rejected: {e}")))?;
                    prop_assert_eq!(n, m.visible.len(), "peek sees every committed frame, nothing pending");
                    prop_assert_eq!(end, m.committed);
                    prop_assert_eq!(c.positions(), (m.committed, m.tail), "peeking stores nothing");
                }
            }
            let (head, tail) = c.positions();
            prop_assert_eq!(head, m.committed);
            prop_assert!(tail <= head && head - tail <= cap as u64);
        }
        // Finally: commit and drain everything; the full history arrives.
        p.commit();
        m.visible.extend(m.claimed.drain(..));
        let mut got = Vec::new();
        let end = c.read_from(pos, usize::MAX, |f| got.push((f.position, (f.kind, f.flags, f.body.to_vec())))).unwrap();
        prop_assert_eq!(got, Vec::from(m.visible.clone()));
        prop_assert_eq!(end, m.pending);
    }

    /// A full ring refuses claims until the consumer releases space; then it accepts again.
    #[test]
    fn full_ring_refuses_claims(log2 in 7u32..=12, body in 0usize..=24) {
        let cap = 1usize << log2;
        let ring = HeapRing::new(cap);
        let mut p = Producer::new(Mem(&ring));
        let mut c = Consumer::new(Mem(&ring));
        let n = align8(FRAME_HEADER_SIZE + body);
        let mut frames = 0u64;
        while let Some(off) = p.claim(n) {
            let h = FrameHeader { length: (FRAME_HEADER_SIZE + body) as u32, kind: 2, flags: 0 };
            // SAFETY: claimed above.
            unsafe { p.write(off, bytemuck::bytes_of(&h)) };
            frames += 1;
            prop_assert!(frames <= (cap / n) as u64, "more frames than fit");
        }
        p.commit();
        prop_assert_eq!(frames, (cap / n) as u64, "the ring fills up completely before refusing");
        prop_assert!(p.claim(n).is_none(), "still full");
        if cap % n == 0 {
            prop_assert!(p.claim(8).is_none(), "frames tile the ring: no room for even a header");
        }
        // Release one frame: one more fits (after padding the rest of the lap, if any).
        let end = c.read_from(0, 1, |_| {}).unwrap();
        prop_assert_eq!(end, n as u64);
        c.release(end);
        prop_assert!(p.claim(n).is_some(), "freed space is reused");
        prop_assert!(p.claim(n).is_none(), "and only that much");
    }

    /// Hostile memory: random bytes, random head and tail, random read positions. The consumer
    /// returns an error or frames within bounds, never panics, never loops for ever.
    #[test]
    fn garbage_never_panics_the_consumer(
        log2 in 3u32..=10,
        bytes in prop::collection::vec(any::<u8>(), 1024),
        head in prop_oneof![any::<u64>(), 0u64..4096],
        from in prop_oneof![any::<u64>(), 0u64..4096],
        max in 0usize..64,
    ) {
        let cap = 1usize << log2;
        let ring = HeapRing::new(cap);
        // SAFETY: cap <= 1024 bytes of the vector.
        unsafe { Mem(&ring).write(0, &bytes[..cap]) };
        ring.head.store(head, std::sync::atomic::Ordering::Relaxed);
        let mut c = Consumer::new(Mem(&ring));
        let mut delivered = 0;
        let result = c.read_from(from, max, |f| {
            delivered += 1;
            assert!(f.body.len() + FRAME_HEADER_SIZE <= MAX_FRAME && f.body.len() < cap);
            assert!(f.kind != 0 && f.kind != KIND_PADDING);
        });
        if let Ok(end) = result {
            prop_assert!(end >= from && end <= head && end - from <= cap as u64);
            prop_assert!(delivered <= max);
        }
    }
}
