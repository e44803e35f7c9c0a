//! The single-producer single-consumer ring protocol, independent of where its bytes live.
//!
//! Positions (`head`, `tail`) are byte counts that only grow; the offset of a position in the
//! data area is `position & (capacity - 1)`. The producer owns `head` and every byte in
//! `[head, tail + capacity)`; the consumer owns `tail` and every byte in `[tail, head)`.
//!
//! Ordering, and why it is enough:
//! - The producer writes a frame's bytes with plain stores, then stores `head` with `Release`.
//!   The consumer loads `head` with `Acquire`, so every byte below that `head` is visible to it:
//!   a frame is published completely or not at all (a producer killed mid-frame leaves `head`
//!   where it was, so the torn frame is never read).
//! - The consumer finishes reading frames (it copies each one out), then stores `tail` with
//!   `Release`. The producer loads `tail` with `Acquire` before it reuses that space, so the
//!   consumer's reads happen before the producer's overwrites.
//! - The producer's copy of `tail` (`cached_tail`) may be stale, which is always safe: it can only
//!   under-estimate free space. It is refreshed only when the stale value says "full".
//!
//! A frame never straddles the end of the data area: when the next frame does not fit before the
//! end, the producer first writes a padding frame covering the rest, and the frame goes at 0.

use crate::layout::{align8, FrameHeader, FRAME_HEADER_SIZE, KIND_PADDING, MAX_FRAME};
use crate::sync::{AtomicU64, Ordering};

/// Where a ring's positions and bytes live: a mapped file in production, loom-tracked cells in
/// the model tests.
pub trait RingMemory {
    /// Data capacity in bytes: a power of two, a multiple of 8.
    fn capacity(&self) -> u64;
    /// The producer position.
    fn head(&self) -> &AtomicU64;
    /// The consumer position.
    fn tail(&self) -> &AtomicU64;
    /// Copy `src` into the data area at `offset`.
    ///
    /// # Safety
    /// `offset + src.len() <= capacity`, and the caller owns those bytes under the protocol
    /// (the producer, for bytes at or past its committed head).
    unsafe fn write(&self, offset: usize, src: &[u8]);
    /// Copy bytes of the data area at `offset` into `dst`.
    ///
    /// # Safety
    /// `offset + dst.len() <= capacity`. The bytes may be concurrently modified by a hostile
    /// writer; the implementation must tolerate that (copy with volatile or byte-wise reads).
    unsafe fn read(&self, offset: usize, dst: &mut [u8]);
}

/// Why a ring could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// `head` is behind `tail`, more than a capacity ahead of it, or not 8-aligned.
    BadPositions {
        /// The head read.
        head: u64,
        /// The tail read.
        tail: u64,
    },
    /// A frame header is invalid (length too small, too large, or crossing the end).
    BadFrame {
        /// Position of the frame.
        position: u64,
        /// Its declared length.
        length: u32,
        /// Its kind.
        kind: u16,
    },
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::BadPositions { head, tail } => {
                write!(
                    f,
                    "ring positions are inconsistent (head {head}, tail {tail})"
                )
            }
            RingError::BadFrame {
                position,
                length,
                kind,
            } => write!(
                f,
                "invalid frame at position {position} (length {length}, kind {kind})"
            ),
        }
    }
}

impl std::error::Error for RingError {}

/// The producer side. Holds local copies of the positions; only [`Producer::commit`] publishes.
pub struct Producer<M: RingMemory> {
    mem: M,
    mask: u64,
    /// Position after the last claimed frame (published by `commit`).
    pending: u64,
    /// Last published head.
    committed: u64,
    /// The consumer's tail as last loaded; may be stale (never ahead of the real tail).
    cached_tail: u64,
}

impl<M: RingMemory> Producer<M> {
    /// Take over a ring as its producer, continuing from the positions in memory.
    pub fn new(mem: M) -> Self {
        // Ordering: Relaxed: only this (single) producer ever stores head.
        let head = mem.head().load(Ordering::Relaxed);
        // Ordering: Acquire pairs with the consumer's Release store of tail.
        let tail = mem.tail().load(Ordering::Acquire);
        let cap = mem.capacity();
        Producer {
            mask: cap - 1,
            pending: head,
            committed: head,
            cached_tail: tail,
            mem,
        }
    }

    /// The memory this producer writes.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Claim `len` contiguous bytes (a multiple of 8, at most a quarter of the capacity) for
    /// one frame; returns the data offset to write the frame at, or `None` if the ring is full.
    /// The frame becomes visible at the next [`Producer::commit`].
    #[inline(always)]
    pub fn claim(&mut self, len: usize) -> Option<usize> {
        debug_assert!(len % 8 == 0 && len >= FRAME_HEADER_SIZE);
        let cap = self.mask + 1;
        let len = len as u64;
        let idx = self.pending & self.mask;
        let to_end = cap - idx;
        let pad = if len <= to_end { 0 } else { to_end };
        let end = self.pending + pad + len;
        if end.wrapping_sub(self.cached_tail) > cap {
            // Ordering: Acquire pairs with the consumer's Release store of tail: its reads of
            // the space we are about to reuse happened before.
            self.cached_tail = self.mem.tail().load(Ordering::Acquire);
            if end.wrapping_sub(self.cached_tail) > cap {
                return None;
            }
        }
        if pad != 0 {
            let header = FrameHeader {
                length: pad as u32,
                kind: KIND_PADDING,
                flags: 0,
            };
            // SAFETY: idx + 8 <= cap (idx and cap are multiples of 8, idx < cap), and bytes
            // from `pending` on belong to the producer (checked against tail above).
            unsafe { self.mem.write(idx as usize, bytemuck::bytes_of(&header)) };
            self.pending += pad;
        }
        let offset = (self.pending & self.mask) as usize;
        self.pending += len;
        Some(offset)
    }

    /// Write bytes into a claimed frame.
    ///
    /// # Safety
    /// `offset..offset + bytes.len()` lies within a frame returned by [`Producer::claim`] and not
    /// yet committed.
    #[inline(always)]
    pub unsafe fn write(&self, offset: usize, bytes: &[u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.mem.write(offset, bytes) }
    }

    /// Publish every claimed frame: one Release store of head.
    #[inline(always)]
    pub fn commit(&mut self) {
        if self.pending != self.committed {
            self.committed = self.pending;
            // Ordering: Release publishes the frames' bytes (written above with plain stores)
            // to the consumer's Acquire load of head.
            self.mem.head().store(self.pending, Ordering::Release);
        }
    }

    /// Bytes claimed but not committed, plus committed but not consumed (as last seen).
    pub fn used(&self) -> u64 {
        self.pending.wrapping_sub(self.cached_tail)
    }
}

/// A frame read from the ring: kind, flags and its body (the bytes after the frame header).
#[derive(Debug)]
pub struct FrameRef<'a> {
    /// Position of the frame in the ring.
    pub position: u64,
    /// Frame kind.
    pub kind: u16,
    /// Frame flags.
    pub flags: u16,
    /// The body, copied out of shared memory.
    pub body: &'a [u8],
}

/// Frame bodies up to this size are copied to the stack by the consumer.
const SMALL_FRAME_BODY: usize = 64;

/// The consumer side (the collector, or a read-only dump when `commit_tail` is false).
pub struct Consumer<M: RingMemory> {
    mem: M,
    mask: u64,
    buf: Vec<u8>,
}

impl<M: RingMemory> Consumer<M> {
    /// Attach to a ring as a reader.
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        Consumer {
            mask: cap - 1,
            mem,
            buf: Vec::with_capacity(256),
        }
    }

    /// The memory this consumer reads.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Current (head, tail) as published.
    pub fn positions(&self) -> (u64, u64) {
        // Ordering: Acquire pairs with the producer's Release store of head.
        let head = self.mem.head().load(Ordering::Acquire);
        // Ordering: Acquire: tail is ours (or another reader's) and only read for reporting.
        let tail = self.mem.tail().load(Ordering::Acquire);
        (head, tail)
    }

    /// Read frames from `from` up to the published head, at most `max_frames`, calling `f`
    /// for each non-padding frame. Returns the position after the last frame read. Does not
    /// store the tail: see [`Consumer::release`].
    pub fn read_from(
        &mut self,
        from: u64,
        max_frames: usize,
        mut f: impl FnMut(FrameRef<'_>),
    ) -> Result<u64, RingError> {
        let cap = self.mask + 1;
        // Ordering: Acquire pairs with the producer's Release store: all frame bytes below head
        // are visible.
        let head = self.mem.head().load(Ordering::Acquire);
        if head < from || head - from > cap || head % 8 != 0 || from % 8 != 0 {
            return Err(RingError::BadPositions { head, tail: from });
        }
        let mut pos = from;
        let mut frames = 0;
        while pos < head && frames < max_frames {
            let idx = (pos & self.mask) as usize;
            let mut hb = [0u8; FRAME_HEADER_SIZE];
            // SAFETY: idx is 8-aligned and < cap, so idx + 8 <= cap.
            unsafe { self.mem.read(idx, &mut hb) };
            let header: FrameHeader = bytemuck::pod_read_unaligned(&hb);
            let len = header.length as usize;
            let step = align8(len) as u64;
            let bad = !(FRAME_HEADER_SIZE..=MAX_FRAME).contains(&len)
                || step > head - pos
                || idx as u64 + step > cap
                || header.kind == 0;
            if bad {
                return Err(RingError::BadFrame {
                    position: pos,
                    length: header.length,
                    kind: header.kind,
                });
            }
            if header.kind != KIND_PADDING {
                let body_len = len - FRAME_HEADER_SIZE;
                // Metric frames are small: copy them to the stack, sparing the heap buffer's
                // zeroing; large frames (logs, attributes) use the reusable buffer.
                let mut small = [0u8; SMALL_FRAME_BODY];
                let body: &mut [u8] = if body_len <= SMALL_FRAME_BODY {
                    &mut small[..body_len]
                } else {
                    self.buf.resize(body_len, 0);
                    &mut self.buf[..body_len]
                };
                // SAFETY: idx + len <= idx + step <= cap, checked above.
                unsafe { self.mem.read(idx + FRAME_HEADER_SIZE, body) };
                f(FrameRef {
                    position: pos,
                    kind: header.kind,
                    flags: header.flags,
                    body,
                });
                frames += 1;
            }
            pos += step;
        }
        Ok(pos)
    }

    /// Give the bytes below `position` back to the producer.
    pub fn release(&self, position: u64) {
        // Ordering: Release orders our reads of the frames below `position` before the
        // producer's Acquire load of tail and its overwrites.
        self.mem.tail().store(position, Ordering::Release);
    }
}
