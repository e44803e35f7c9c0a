//! Consumers of the benchmark process's own rings, built on `shmtel_core::reader`.
//!
//! A shmtel ring with no consumer fills within microseconds in a tight loop; after that a counter
//! increment takes the overflow-slot path and a span or log event is dropped and counted. Neither
//! is the path a deployment with a running collector takes, so the benchmarks consume their rings
//! in one of two ways:
//!
//! - [`OwnRing`]: the recording thread drains its own ring between timed chunks (untimed), so
//!   every timed operation finds room: the append path, as with a collector that keeps up.
//! - [`BackgroundDrain`]: a separate thread drains every ring of the directory while the
//!   benchmark records, as the collector would; the ring may still fill when the writer outruns
//!   the consumer, and [`RingLosses`] says how often it did.
//!
//! Only one consumer may own a ring at a time (single producer, single consumer): a benchmark
//! uses one of the two, never both at once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmtel_core::reader::{scan_dir, RingReader, RingStats};
use shmtel_core::region::RegionName;

/// Frames read per `RingReader::read` call: bounds one pass over a ring.
const READ_BATCH: usize = 4096;

/// The calling thread's own ring in `dir`, opened for consuming.
pub struct OwnRing {
    reader: RingReader,
    at_open: RingStats,
    path: PathBuf,
    drained: u64,
    undecodable: u64,
}

impl OwnRing {
    /// Opens the ring of the calling thread (the newest ring file of this pid and thread id).
    /// The thread must already have recorded something, which creates its ring.
    pub fn open(dir: &Path) -> io::Result<OwnRing> {
        let pid = std::process::id();
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        let path = scan_dir(dir)?
            .into_iter()
            .filter_map(|entry| match entry.name {
                RegionName::Ring {
                    pid: p,
                    tid: t,
                    seq,
                    ..
                } if p == pid && t == tid => Some((seq, entry.path)),
                _ => None,
            })
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, path)| path)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no ring for pid {pid} thread {tid} in {}", dir.display()),
                )
            })?;
        let reader = RingReader::open(&path, true)
            .map_err(|e| io::Error::other(format!("{}: {e:?}", path.display())))?;
        let at_open = reader.stats();
        Ok(OwnRing {
            reader,
            at_open,
            path,
            drained: 0,
            undecodable: 0,
        })
    }

    /// Consumes everything committed so far; returns the number of records read.
    pub fn drain(&mut self) -> u64 {
        let mut total = 0u64;
        loop {
            let mut bad = 0u64;
            let n = self
                .reader
                .read(READ_BATCH, true, |_, record| {
                    bad += u64::from(record.is_err())
                })
                .unwrap_or_else(|e| panic!("{}: ring unreadable: {e}", self.path.display()));
            self.undecodable += bad;
            total += n as u64;
            if n < READ_BATCH {
                break;
            }
        }
        self.drained += total;
        total
    }

    /// Records this reader consumed so far.
    pub fn drained(&self) -> u64 {
        self.drained
    }

    /// What the ring's writer block says was coalesced or dropped since this reader opened.
    pub fn losses(&self) -> RingLosses {
        RingLosses::between(&self.at_open, &self.reader.stats())
    }

    /// Fails loudly if any record since [`OwnRing::open`] missed the ring or did not decode:
    /// then the figure measured was not the append path it claims to be.
    pub fn assert_clean(&self, what: &str) {
        let losses = self.losses();
        assert!(
            losses.is_zero() && self.undecodable == 0,
            "{what}: the ring was supposed to have room for every record, yet {losses:?} and \
             {} undecodable records: the measurement is invalid",
            self.undecodable
        );
    }
}

/// Counter deltas of one or more rings' writer blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingLosses {
    /// Counter/gauge updates that found the ring full and went to overflow slots (not lost).
    pub coalesced: u64,
    /// Spans dropped because the ring was full.
    pub dropped_spans: u64,
    /// Log events dropped.
    pub dropped_logs: u64,
    /// Histogram observations and business events dropped.
    pub dropped_other: u64,
    /// Counter/gauge updates lost (no overflow slot).
    pub dropped_metric: u64,
}

impl RingLosses {
    fn between(before: &RingStats, after: &RingStats) -> RingLosses {
        RingLosses {
            coalesced: after.coalesced.saturating_sub(before.coalesced),
            dropped_spans: after.dropped_spans.saturating_sub(before.dropped_spans),
            dropped_logs: after.dropped_logs.saturating_sub(before.dropped_logs),
            dropped_other: after.dropped_other.saturating_sub(before.dropped_other),
            dropped_metric: after.dropped_metric.saturating_sub(before.dropped_metric),
        }
    }

    /// Whether nothing missed the ring.
    pub fn is_zero(&self) -> bool {
        *self == RingLosses::default()
    }

    /// Records that missed the ring, of any kind.
    pub fn total(&self) -> u64 {
        self.coalesced
            + self.dropped_spans
            + self.dropped_logs
            + self.dropped_other
            + self.dropped_metric
    }
}

/// Sum of the writer-block counters of every ring in `dir` (a snapshot).
pub fn dir_stats(dir: &Path) -> io::Result<RingStats> {
    let mut sum = RingStats::default();
    for entry in scan_dir(dir)? {
        if !matches!(entry.name, RegionName::Ring { .. }) {
            continue;
        }
        let Ok(reader) = RingReader::open(&entry.path, false) else {
            continue;
        };
        let s = reader.stats();
        sum.coalesced += s.coalesced;
        sum.dropped_spans += s.dropped_spans;
        sum.dropped_logs += s.dropped_logs;
        sum.dropped_other += s.dropped_other;
        sum.dropped_metric += s.dropped_metric;
    }
    Ok(sum)
}

/// Losses in `dir` since the snapshot `before` (from [`dir_stats`]).
pub fn dir_losses_since(dir: &Path, before: &RingStats) -> io::Result<RingLosses> {
    Ok(RingLosses::between(before, &dir_stats(dir)?))
}

/// A thread that drains every ring of a directory until stopped, polling like a collector:
/// spin while there is work, then yield, then sleep briefly when idle.
pub struct BackgroundDrain {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl BackgroundDrain {
    /// Starts draining `dir`. New ring files are picked up within 10 ms.
    pub fn start(dir: &Path) -> BackgroundDrain {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = dir.to_path_buf();
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("bench-drain".into())
            .spawn(move || drain_until(&dir, &flag))
            .expect("spawn the drain thread");
        BackgroundDrain {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread after one last pass; returns the number of records it drained.
    pub fn stop(mut self) -> u64 {
        self.finish()
    }

    fn finish(&mut self) -> u64 {
        // Ordering: Relaxed: a stop request; the join below synchronises everything else.
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("drain thread panicked"))
            .unwrap_or(0)
    }
}

impl Drop for BackgroundDrain {
    fn drop(&mut self) {
        self.finish();
    }
}

fn drain_until(dir: &Path, stop: &AtomicBool) -> u64 {
    let mut readers: HashMap<PathBuf, RingReader> = HashMap::new();
    let mut rescan_at = Instant::now();
    let mut idle_passes = 0u32;
    let mut drained = 0u64;
    loop {
        // Ordering: Relaxed: see `BackgroundDrain::finish`.
        let stopping = stop.load(Ordering::Relaxed);
        if Instant::now() >= rescan_at {
            for entry in scan_dir(dir).unwrap_or_default() {
                if matches!(entry.name, RegionName::Ring { .. })
                    && !readers.contains_key(&entry.path)
                {
                    if let Ok(reader) = RingReader::open(&entry.path, true) {
                        readers.insert(entry.path, reader);
                    }
                }
            }
            rescan_at = Instant::now() + Duration::from_millis(10);
        }
        let mut pass = 0u64;
        for (path, reader) in readers.iter_mut() {
            let n = reader
                .read(READ_BATCH, true, |_, _| {})
                .unwrap_or_else(|e| panic!("{}: ring unreadable: {e}", path.display()));
            pass += n as u64;
        }
        drained += pass;
        if stopping && pass == 0 {
            return drained;
        }
        if pass > 0 {
            idle_passes = 0;
        } else {
            idle_passes = idle_passes.saturating_add(1);
            if idle_passes < 64 {
                std::hint::spin_loop();
            } else if idle_passes < 256 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}
