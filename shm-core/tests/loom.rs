//! Model checks of the ring protocol (`shmtel_core::ring`) with loom.
//!
//! Run with `make test-loom`, i.e.
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p shmtel-core --test loom --release
//! --target-dir target/loom`.
//!
//! The ring bytes are `loom::cell::UnsafeCell<u8>`s, not atomics: every byte the producer writes
//! and the consumer reads is checked by loom for a happens-before edge. If the producer's
//! Release store of `head` did not pair with the consumer's Acquire load (or the consumer's
//! Release store of `tail` with the producer's Acquire load before it reuses space), loom would
//! report a data race on those cells. The last test is a negative control: it breaks the protocol
//! on purpose (writes a frame after publishing it) and expects loom to catch the race.
//! Mutation check (done by hand when this file was written): weakening the producer's Release
//! store of `head`, the consumer's Release store of `tail`, or the producer's Acquire reload of
//! `tail` to Relaxed in `ring.rs` makes these tests fail with a loom causality violation.
//!
//! Each `Producer` is created before its thread is spawned. `Producer::new` loads `head`, and
//! loom's partial-order reduction remembers only the *last* access to an atomic: a load of
//! `head` by the producer thread itself, just before its first store, would hide the
//! consumer's earlier load and loom would never try the "producer first" schedules (the
//! negative control below caught exactly that).
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

use shmtel_core::layout::{align8, FrameHeader, FRAME_HEADER_SIZE};
use shmtel_core::ring::{Consumer, Producer, RingMemory};

/// A ring whose every data byte is a loom-tracked cell.
struct LoomRing {
    head: AtomicU64,
    tail: AtomicU64,
    data: Box<[UnsafeCell<u8>]>,
}

impl LoomRing {
    fn new(capacity: usize) -> Arc<LoomRing> {
        Arc::new(LoomRing {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            data: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }
}

/// Both sides share one `LoomRing` through an `Arc`, like two processes share one mapping.
#[derive(Clone)]
struct Shared(Arc<LoomRing>);

impl RingMemory for Shared {
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
        for (i, b) in src.iter().enumerate() {
            // SAFETY: the caller guarantees `offset + src.len() <= capacity` (so the index is in
            // bounds: indexing would panic otherwise) and that the producer owns these bytes;
            // loom checks that claim with its own causality tracking.
            self.0.data[offset + i].with_mut(|p| unsafe { *p = *b });
        }
    }
    unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds (indexing checks it); loom reports a data race if the producer's
            // write of this byte is not ordered before this read by the protocol.
            *d = self.0.data[offset + i].with(|p| unsafe { *p });
        }
    }
}

/// The frames the producer sends: (kind, body). Bodies carry a pattern that depends on the frame
/// index and the byte position, so a torn or misplaced frame cannot pass for a good one.
fn frames(sizes: &[usize]) -> Vec<(u16, Vec<u8>)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let body = (0..n)
                .map(|j| (i as u8).wrapping_mul(31) ^ (j as u8) ^ 0xa5)
                .collect();
            (2 + i as u16, body)
        })
        .collect()
}

/// Coverage counters: how many explored executions saw an interesting situation. Plain std
/// atomics, outside the model (loom does not track them); each test owns its counters.
struct Seen(AtomicUsize);

impl Seen {
    const fn new() -> Seen {
        Seen(AtomicUsize::new(0))
    }
    fn hit(&self) {
        // Ordering: Relaxed: a statistic read after `loom::model` returns (same OS thread).
        self.0.fetch_add(1, StdOrdering::Relaxed);
    }
    fn get(&self) -> usize {
        // Ordering: Relaxed: see `hit`.
        self.0.load(StdOrdering::Relaxed)
    }
}

/// Claim, write (header then body) and, if `commit`, publish one frame; spin (yielding to loom)
/// while the ring is full, counting in `full` the executions that had to.
fn produce(p: &mut Producer<Shared>, kind: u16, body: &[u8], commit: bool, full: &Seen) {
    let len = FRAME_HEADER_SIZE + body.len();
    let mut waited = false;
    let off = loop {
        match p.claim(align8(len)) {
            Some(off) => break off,
            None => {
                if !waited {
                    full.hit();
                    waited = true;
                }
                // A full ring must not hold claimed-but-unpublished frames forever.
                p.commit();
                thread::yield_now();
            }
        }
    };
    let header = FrameHeader {
        length: len as u32,
        kind,
        flags: kind ^ 0x5a,
    };
    // SAFETY: [off, off + align8(len)) was just claimed by this producer and is not committed.
    unsafe {
        p.write(off, bytemuck::bytes_of(&header));
        p.write(off + FRAME_HEADER_SIZE, body);
    }
    if commit {
        p.commit();
    }
}

/// Read every frame until `expected.len()` have arrived, releasing space as we go, and check
/// each one: in order, intact, exactly once.
fn consume_all(c: &mut Consumer<Shared>, expected: &[(u16, Vec<u8>)]) -> u64 {
    let mut got: Vec<(u16, u16, Vec<u8>)> = Vec::new();
    let mut pos = 0u64;
    while got.len() < expected.len() {
        let before = got.len();
        pos = c
            .read_from(pos, usize::MAX, |f| {
                got.push((f.kind, f.flags, f.body.to_vec()))
            })
            .expect("a well-behaved producer never produces an invalid ring");
        c.release(pos);
        if got.len() == before {
            thread::yield_now();
        }
    }
    assert_eq!(got.len(), expected.len(), "exactly once");
    for (i, ((kind, flags, body), (ekind, ebody))) in got.iter().zip(expected).enumerate() {
        assert_eq!(kind, ekind, "frame {i}: kind");
        assert_eq!(*flags, ekind ^ 0x5a, "frame {i}: flags");
        assert_eq!(body, ebody, "frame {i}: body");
    }
    let (head, tail) = c.positions();
    assert_eq!(head, pos, "nothing past the last frame");
    assert_eq!(tail, pos);
    pos
}

/// One producer, one consumer, a 64-byte ring (largest frame: a quarter, 16 bytes) and 80
/// bytes of 16-byte frames: the producer must wait for the consumer to free space (the ring is
/// full after four frames), wraps exactly at the end (no padding) and reuses the space.
#[test]
fn spsc_frames_arrive_intact_in_order_once() {
    static FULL: Seen = Seen::new();
    static RUNS: Seen = Seen::new();
    loom::model(|| {
        RUNS.hit();
        let ring = LoomRing::new(64);
        let expected = frames(&[8, 8, 8, 8, 8]);
        let sent = expected.clone();
        let mut p = Producer::new(Shared(ring.clone()));
        let producer = thread::spawn(move || {
            for (kind, body) in &sent {
                produce(&mut p, *kind, body, true, &FULL);
            }
        });
        let mut c = Consumer::new(Shared(ring));
        consume_all(&mut c, &expected);
        producer.join().unwrap();
    });
    assert!(FULL.get() > 0, "no explored execution found the ring full");
    assert!(
        FULL.get() < RUNS.get(),
        "every execution found the ring full"
    );
}

/// Frame sizes that force a padding frame: 16 + 16 + 16 + 8 = 56, the next 16-byte frame does
/// not fit in the last 8 bytes, so the producer pads them and writes it at offset 0 once the
/// consumer has freed the first frame.
#[test]
fn spsc_padding_at_wrap() {
    static FULL: Seen = Seen::new();
    loom::model(|| {
        let ring = LoomRing::new(64);
        let expected = frames(&[8, 8, 8, 0, 8]);
        let sent = expected.clone();
        let mut p = Producer::new(Shared(ring.clone()));
        let producer = thread::spawn(move || {
            for (kind, body) in &sent {
                produce(&mut p, *kind, body, true, &FULL);
            }
        });
        let mut c = Consumer::new(Shared(ring));
        let end = consume_all(&mut c, &expected);
        producer.join().unwrap();
        // 56 bytes of frames, 8 of padding, then 16.
        assert_eq!(end, 56 + 8 + 16);
    });
    assert!(
        FULL.get() > 0,
        "no explored execution had to wait for space at the wrap"
    );
}

/// A batch: several claims, one commit (one Release store of head). The consumer sees either
/// none or all of the batch, never a prefix.
#[test]
fn batch_commit_is_all_or_nothing() {
    static NONE: Seen = Seen::new();
    static ALL: Seen = Seen::new();
    static FULL: Seen = Seen::new();
    loom::model(|| {
        let ring = LoomRing::new(64);
        let expected = frames(&[8, 0, 8]);
        let sent = expected.clone();
        let mut p = Producer::new(Shared(ring.clone()));
        let producer = thread::spawn(move || {
            for (kind, body) in &sent {
                produce(&mut p, *kind, body, false, &FULL);
            }
            p.commit();
        });
        let mut c = Consumer::new(Shared(ring));
        let mut seen = Vec::new();
        let pos = c.read_from(0, usize::MAX, |f| seen.push(f.kind)).unwrap();
        assert!(
            seen.is_empty() || seen.len() == expected.len(),
            "saw a partial batch: {seen:?}"
        );
        assert!(pos == 0 || pos == 40);
        if seen.is_empty() {
            NONE.hit()
        } else {
            ALL.hit()
        }
        producer.join().unwrap();
        let mut all = Vec::new();
        c.read_from(0, usize::MAX, |f| all.push(f.kind)).unwrap();
        assert_eq!(all, expected.iter().map(|f| f.0).collect::<Vec<_>>());
    });
    assert!(NONE.get() > 0 && ALL.get() > 0, "both outcomes explored");
    assert_eq!(FULL.get(), 0);
}

/// A producer that dies (here: stops) after writing a frame but before committing it leaves
/// nothing visible: no torn record.
#[test]
fn uncommitted_frame_is_never_visible() {
    static EARLY: Seen = Seen::new();
    static LATE: Seen = Seen::new();
    static FULL: Seen = Seen::new();
    loom::model(|| {
        let ring = LoomRing::new(64);
        let mut p = Producer::new(Shared(ring.clone()));
        let producer = thread::spawn(move || {
            produce(&mut p, 2, &[1; 8], true, &FULL);
            produce(&mut p, 3, &[2; 8], false, &FULL); // never committed: the "crash"
        });
        let mut c = Consumer::new(Shared(ring));
        let mut seen = Vec::new();
        c.read_from(0, usize::MAX, |f| seen.push((f.kind, f.body.to_vec())))
            .unwrap();
        if seen.is_empty() {
            EARLY.hit()
        } else {
            LATE.hit()
        }
        producer.join().unwrap();
        c.read_from(seen.len() as u64 * 16, usize::MAX, |f| {
            seen.push((f.kind, f.body.to_vec()))
        })
        .unwrap();
        assert_eq!(seen, vec![(2, vec![1; 8])]);
    });
    assert!(EARLY.get() > 0 && LATE.get() > 0, "both outcomes explored");
}

/// Negative control: publishing a frame *before* writing its body is a data race, and the model
/// must say so. If this test stopped panicking, the cells above would no longer be checked.
#[test]
#[should_panic]
fn negative_control_write_after_commit_is_a_race() {
    loom::model(|| {
        let ring = LoomRing::new(64);
        let mut p = Producer::new(Shared(ring.clone()));
        let producer = thread::spawn(move || {
            let off = p.claim(16).unwrap();
            let header = FrameHeader {
                length: 16,
                kind: 2,
                flags: 0,
            };
            // SAFETY: claimed above (the protocol violation is the commit before the body).
            unsafe { p.write(off, bytemuck::bytes_of(&header)) };
            p.commit();
            // SAFETY: in bounds; deliberately racing with the consumer.
            unsafe { p.write(off + FRAME_HEADER_SIZE, &[7; 8]) };
        });
        let mut c = Consumer::new(Shared(ring));
        c.read_from(0, usize::MAX, |_| {}).unwrap();
        producer.join().unwrap();
    });
}
