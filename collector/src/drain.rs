//! Discovering regions and draining their rings into the aggregator.
//!
//! One drain thread owns every reader. A pass: re-scan the directory when due (every
//! `discover_interval`), then for each process refresh its table when a record names an id it
//! does not know, drain each ring (consuming: the tail is released to the writer), read the
//! overflow slots of rings whose coalesced counter moved, and account drops. Processes are
//! checked for liveness (pid + start time) every half second; a dead process's rings are drained
//! to the end, its last overflow slots read, its gauges marked dead, and its files removed.
//! Rings of exited threads (`closed`) of live processes are drained and removed the same way.
//!
//! A region that fails validation, or whose ring turns out corrupt while draining, is rejected:
//! logged once, counted by reason, and never touched again (its files are removed once its
//! process is dead, so a crashed writer's garbage does not accumulate).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use shmtel_core::clock::ClockAnchor;
use shmtel_core::reader::{scan_dir, DecodeError, Record, RingReader, RingStats, TableReader};
use shmtel_core::region::{process_alive, RegionError, RegionName};

use crate::aggregate::{Aggregator, ResolveError, StoredExemplar};
use crate::sinks::{EventData, LinkData, LogData, LogSink, Origin, OwnedValue, SpanData, SpanSink};
use crate::traces::hash::FoldState;

/// Record kinds counted in `shmtel_records_drained_total{kind}`.
pub const RECORD_KINDS: [&str; 9] = [
    "counter",
    "gauge_set",
    "gauge_add",
    "histogram",
    "span",
    "span_attr",
    "span_event",
    "log",
    "business",
];

/// Drop kinds of `shmtel_dropped_records_total{kind}` (writer-side drops, from ring headers).
pub const DROP_KINDS: [&str; 4] = ["span", "log", "other", "metric"];

/// The collector's counters about itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SelfStats {
    /// Records drained by kind (index into [`RECORD_KINDS`]).
    pub drained: [u64; 9],
    /// Writer-side drops by kind (index into [`DROP_KINDS`]).
    pub dropped: [u64; 4],
    /// Counter/gauge updates recovered from overflow slots.
    pub coalesced: u64,
    /// Regions rejected, by reason.
    pub rejected: HashMap<String, u64>,
    /// Records skipped because their kind is unknown (newer writer).
    pub unknown_kinds: u64,
    /// Records naming a series the table does not define, or that conflicts.
    pub unresolved: u64,
    /// Spans assembled and handed to the sinks.
    pub spans: u64,
    /// Log events handed to the sinks.
    pub logs: u64,
    /// Span attributes/events dropped because too many spans were pending.
    pub pending_overflow: u64,
    /// Business events received.
    pub business: u64,
    /// Span link and link attribute frames drained.
    #[serde(default)]
    pub links: u64,
    /// Processes whose files were removed after they died.
    pub processes_cleaned: u64,
    /// Writer-side drops per live process (service, pid), by kind (index into [`DROP_KINDS`]).
    #[serde(skip)]
    pub process_drops: HashMap<(String, u32), [u64; 4]>,
    /// Live/dead region counts at the last pass (not persisted meaningfully).
    #[serde(skip)]
    pub regions_live: u64,
    /// Regions of dead processes still being drained.
    #[serde(skip)]
    pub regions_dead: u64,
    /// Last pass duration plus the sleep before it, in seconds: an upper bound of how long a
    /// committed record waited to be drained.
    #[serde(skip)]
    pub drain_lag_seconds: f64,
    /// Largest backlog (head - tail) seen in any ring at the last pass, bytes.
    #[serde(skip)]
    pub max_backlog_bytes: u64,
}

/// Tuning of the drain loop.
///
/// # Polling
///
/// The defaults suit a collector that shares cores with the processes it drains: it never
/// spins or yields. After a pass that found work it sleeps a batching pause (the next pass
/// finds a batch of records, not one), first `min_sleep`, unless a ring is backlogged (more
/// than a quarter of its capacity was waiting at the start of the pass, or the pass stopped at
/// `frames_per_ring`), in which case it drains again at once until the backlog is gone. The
/// batching pause adapts to the write rate: when a pass that followed it finds a ring more
/// than 1/8 full, it halves (down to 0.1 ms); when it finds every ring under 1/16 full, it
/// doubles, up to `max_sleep`. So the fullest ring fills by between 1/16 and 1/8 of its
/// capacity per pause under a steady load, and the collector wakes no more often than that
/// takes (a light load: `1 / max_sleep` times a second). After a pass that found nothing it
/// sleeps too, doubling from `min_sleep` to `max_sleep`, so an idle collector also wakes at
/// most `1 / max_sleep` times a second (near-zero CPU).
///
/// How fast may a writer go before its ring fills? Between two looks at a ring there are at
/// most one sleep and one pass, so at a pause `P` a ring of capacity `C` absorbs a write rate
/// of about `C / P` bytes per second: at the first pause (1 MiB rings, 5 ms) about 200 MiB/s
/// per thread, and 12.8 MiB/s with the smallest ring the writers accept (64 KiB); at
/// `min_sleep_ms = 1`, 1 GiB/s and 64 MiB/s. A Python worker at 5,000 requests/s writes a few
/// MB/s (a request's spans, log event and metric updates are well under a kilobyte). A faster
/// writer shrinks the pause (above) until a pause fills an eighth of its ring: at 0.1 ms that
/// is sustained rates up to ~80 MiB/s for a 64 KiB ring and ~1.3 GiB/s for 1 MiB. What must
/// fit in the ring unadapted is a rise in rate within one pause: since a pause only grows
/// while it fills less than 1/16 of every ring, a rise of 8 times or more within one pause
/// always fits. Once a quarter of a ring is seen waiting, the loop stops sleeping until it
/// has caught up, so a burst only has to fit in the rest of the ring while the current sleep
/// ends. A burst that starts while the collector is idle, or after a light load, asleep for up
/// to `max_sleep`, must fit in the ring: 1 MiB per 50 ms is 20 MiB/s. A writer that outruns
/// this loses no counter increment (they go to the overflow slots); spans and log events are
/// dropped and counted.
///
/// Why pause at all, and why let the pause grow: every wake-up is a context switch on a core
/// the workers may be using (in a VM, ~10 µs of the collector's CPU each, plus the worker's
/// lost cache), and the collector's fixed cost per pass (a look at every ring, the sinks'
/// ticks) is spread over the records the pass finds. 200 wake-ups a second cost ~0.2% of a
/// core, against 1% at 1 ms; under the ASGI benchmark's load with four workers (~2 MB/s per
/// ring) the drain thread woke ~50 times a second (benches/README.md, "End to end", "What is
/// left"). Nothing downstream
/// needs fresher data: Prometheus scrapes every few seconds, logs wait 250 ms in the reorder
/// window, span batches up to a second.
///
/// Spinning (`spin_iterations`) and yielding (`yield_iterations`) remain for those who want
/// the lowest latency and can spare a core: when either is set, a pass that found work is
/// followed at once by the next (a busy collector never sleeps), and an empty pass spins, then
/// yields, then sleeps as above.
#[derive(Clone, Debug)]
pub struct DrainOptions {
    /// Region directory.
    pub dir: PathBuf,
    /// How often to re-scan the directory.
    pub discover_interval: Duration,
    /// Empty passes that spin before yielding (default 0). Non-zero: no pause after work.
    pub spin_iterations: u32,
    /// Empty passes that yield before sleeping (default 0). Non-zero: no pause after work.
    pub yield_iterations: u32,
    /// First pause after a pass that found work (unless spinning or yielding is configured, or
    /// a ring is backlogged; it then follows the write rate), and the first sleep when idle
    /// (default 5 ms).
    pub min_sleep: Duration,
    /// Longest pause after work, and longest sleep when idle (default 50 ms).
    pub max_sleep: Duration,
    /// How long a dead process's regions stay before removal once drained.
    pub dead_grace: Duration,
    /// Bound on spans whose attributes are buffered waiting for the span frame.
    pub max_pending_spans: usize,
    /// Frames read from one ring per pass before moving to the next (fairness).
    pub frames_per_ring: usize,
}

impl DrainOptions {
    /// Defaults for `dir`.
    pub fn new(dir: PathBuf) -> DrainOptions {
        DrainOptions {
            dir,
            discover_interval: Duration::from_millis(50),
            spin_iterations: 0,
            yield_iterations: 0,
            min_sleep: Duration::from_millis(5),
            max_sleep: Duration::from_millis(50),
            dead_grace: Duration::from_millis(0),
            max_pending_spans: 100_000,
            frames_per_ring: 65_536,
        }
    }

    /// Whether empty passes spin or yield before sleeping (the low-latency mode).
    fn busy_polling(&self) -> bool {
        self.spin_iterations > 0 || self.yield_iterations > 0
    }
}

/// What the drain loop does between two passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    /// The next pass at once.
    Now,
    /// One spin-loop hint.
    Spin,
    /// Yield the CPU once.
    Yield,
    /// Sleep.
    Sleep(Duration),
}

/// The shortest pause after work that the adaptation goes down to (below, the backlog rule
/// drains at once anyway).
const MIN_BATCH_PAUSE: Duration = Duration::from_micros(100);

/// A ring with more than `capacity / BACKLOG_FRACTION` bytes waiting is drained again at once.
const BACKLOG_FRACTION: u64 = 4;

/// What the collector remembers of an overflow slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotSeen {
    /// Cumulative adds already applied.
    pub added: f64,
    /// Ticks of the last set applied.
    pub set_ts: u64,
}

/// What is saved per ring across collector restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RingSaved {
    /// Read position.
    pub position: u64,
    /// Overflow slots already applied.
    pub slots: HashMap<u32, SlotSeen>,
    /// Drop counters already accounted.
    pub drops: [u64; 4],
    /// Coalesced counter already accounted.
    pub coalesced: u64,
}

struct RingState {
    reader: RingReader,
    file_name: String,
    tid: u32,
    anchor: ClockAnchor,
    saved: RingSaved,
    broken: bool,
    /// Positions and counters read at the start of the last pass. Once `closed` (or the writer
    /// is dead) `head` is final, so these tell whether the ring is fully drained.
    last: RingStats,
}

struct ProcState {
    pid: u32,
    start: u64,
    service: Arc<str>,
    table: Option<TableReader>,
    /// The table's symbols as shared strings, for the spans and log events of this process.
    names: Names,
    table_path: Option<PathBuf>,
    /// Local series id -> slab index + 1 (0: unresolved).
    local: Vec<u32>,
    /// Table series already given a slab entry by [`materialize`] (registered series show at
    /// 0 before their first record, as in prometheus_client).
    materialized: usize,
    rings: Vec<RingState>,
    alive: bool,
    dead_since: Option<Instant>,
    last_check: Instant,
    broken: bool,
}

#[derive(Default)]
struct PendingSpan {
    attributes: Vec<(Arc<str>, OwnedValue)>,
    events: Vec<EventData>,
    links: Vec<LinkData>,
    first_seen: Option<Instant>,
}

/// Attributes, events and links waiting for their span's frame, by (pid, start, span id).
/// Span ids are chosen by the writers, so the map uses the seeded fast hash of the span
/// pipeline rather than SipHash (one lookup per span frame and per attribute frame).
type PendingMap = HashMap<(u32, u64, [u8; 8]), PendingSpan, FoldState>;

/// The pending entry of `key`, created (first seen `now`) unless `max_pending` spans are
/// already pending: then None (the caller counts the overflow). One hash lookup.
fn pending_slot(
    pending: &mut PendingMap,
    key: (u32, u64, [u8; 8]),
    max_pending: usize,
    now: Instant,
) -> Option<&mut PendingSpan> {
    let full = pending.len() >= max_pending;
    match pending.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(_) if full => None,
        std::collections::hash_map::Entry::Vacant(e) => Some(e.insert(PendingSpan {
            first_seen: Some(now),
            ..PendingSpan::default()
        })),
    }
}

/// The drain side of the collector.
pub struct Drainer {
    opts: DrainOptions,
    agg: Arc<Mutex<Aggregator>>,
    stats: Arc<Mutex<SelfStats>>,
    procs: HashMap<(u32, u64), ProcState>,
    rejected: HashSet<PathBuf>,
    saved: HashMap<String, RingSaved>,
    pending: PendingMap,
    span_sinks: Vec<Box<dyn SpanSink>>,
    log_sinks: Vec<Box<dyn LogSink>>,
    last_discover: Option<Instant>,
    last_sweep: Instant,
    /// Consecutive passes that found nothing.
    idle: u32,
    /// Next idle sleep (doubles from `min_sleep` to `max_sleep`).
    sleep: Duration,
    /// How long the loop paused before the current pass (for `drain_lag_seconds`).
    slept: Duration,
    /// Set by a pass that left a ring backlogged: the next pass follows at once.
    backlogged: bool,
    /// Fullest ring at the start of the last pass (waiting bytes / capacity).
    fill: f64,
    /// The pause after a pass that found work: first `min_sleep`, halved while rings are found
    /// more than 1/8 full after it, doubled (up to `max_sleep`) while they are found under 1/16
    /// full.
    batch: Duration,
    /// Processes to forget at the end of a pass (kept to reuse its allocation).
    finished: Vec<(u32, u64)>,
}

/// The persisted state of the collector (aggregates, ring positions, self-stats).
#[derive(Serialize, Deserialize)]
pub struct SavedState {
    /// Format version of this file.
    pub version: u32,
    /// Aggregated metrics.
    pub aggregator: Aggregator,
    /// Per ring file name.
    pub rings: HashMap<String, RingSaved>,
    /// Self statistics.
    pub stats: SelfStats,
}

impl Drainer {
    /// A drainer over `opts.dir`, feeding `agg` and `stats`; `saved` restores ring positions.
    pub fn new(
        opts: DrainOptions,
        agg: Arc<Mutex<Aggregator>>,
        stats: Arc<Mutex<SelfStats>>,
        saved: HashMap<String, RingSaved>,
    ) -> Drainer {
        let sleep = opts.min_sleep;
        Drainer {
            opts,
            agg,
            stats,
            procs: HashMap::new(),
            rejected: HashSet::new(),
            saved,
            pending: PendingMap::default(),
            span_sinks: Vec::new(),
            log_sinks: Vec::new(),
            last_discover: None,
            last_sweep: Instant::now(),
            idle: 0,
            sleep,
            slept: Duration::ZERO,
            backlogged: false,
            fill: 0.0,
            batch: sleep,
            finished: Vec::new(),
        }
    }

    /// Add a span sink.
    pub fn add_span_sink(&mut self, sink: Box<dyn SpanSink>) {
        self.span_sinks.push(sink);
    }

    /// Add a log sink.
    pub fn add_log_sink(&mut self, sink: Box<dyn LogSink>) {
        self.log_sinks.push(sink);
    }

    /// Ring positions and slot memories to persist.
    pub fn ring_state(&self) -> HashMap<String, RingSaved> {
        let mut out = self.saved.clone();
        for p in self.procs.values() {
            for r in &p.rings {
                let mut s = r.saved.clone();
                s.position = r.reader.position();
                out.insert(r.file_name.clone(), s);
            }
        }
        out
    }

    /// Drain with adaptive polling until `stop` is set or `period` has passed (the policy is
    /// described at [`DrainOptions`]). The clock is read twice per pass: after a pause, and
    /// when the pass ends.
    pub fn run_for(&mut self, stop: &std::sync::atomic::AtomicBool, period: Duration) {
        let mut now = Instant::now();
        let until = now + period;
        // Ordering: Relaxed: a flag polled between passes; no data is published through it.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && now < until {
            let work = self.pass_at(now);
            let end = Instant::now();
            // An upper bound of how long a record committed just after the previous pass
            // looked at its ring waited: the pause plus this pass.
            self.stats.lock().drain_lag_seconds = (self.slept + (end - now)).as_secs_f64();
            let pause = match self.next_pause(work > 0) {
                Pause::Now => Duration::ZERO,
                Pause::Spin => {
                    std::hint::spin_loop();
                    Duration::ZERO
                }
                Pause::Yield => {
                    std::thread::yield_now();
                    Duration::ZERO
                }
                Pause::Sleep(d) => d,
            };
            self.slept = pause;
            if pause.is_zero() {
                now = end;
            } else {
                std::thread::sleep(pause.min(until.saturating_duration_since(end)));
                now = Instant::now();
            }
        }
    }

    /// What to do after a pass that found work (`worked`) or not (the policy of
    /// [`DrainOptions`]); updates the idle count and the next idle sleep.
    fn next_pause(&mut self, worked: bool) -> Pause {
        if worked {
            self.idle = 0;
            self.sleep = self.opts.min_sleep;
            if self.opts.busy_polling() {
                return Pause::Now;
            }
            // Only a pass that followed a sleep says how fast the rings fill during one.
            if !self.slept.is_zero() {
                if self.fill > 1.0 / 8.0 {
                    self.batch = (self.batch / 2).max(MIN_BATCH_PAUSE.min(self.opts.min_sleep));
                } else if self.fill < 1.0 / 16.0 {
                    // Never capped below min_sleep (DrainOptions made in code may have
                    // max_sleep < min_sleep; the configuration file cannot).
                    self.batch = (self.batch * 2).min(self.opts.max_sleep.max(self.opts.min_sleep));
                }
            }
            return if self.backlogged {
                Pause::Now
            } else {
                Pause::Sleep(self.batch)
            };
        }
        self.idle = self.idle.saturating_add(1);
        let spin = self.opts.spin_iterations;
        if self.idle <= spin {
            Pause::Spin
        } else if self.idle <= spin.saturating_add(self.opts.yield_iterations) {
            Pause::Yield
        } else {
            let d = self.sleep;
            self.sleep = (self.sleep * 2).min(self.opts.max_sleep);
            Pause::Sleep(d)
        }
    }

    /// Drain until every ring is empty (bounded: a writer still running could keep us here).
    pub fn drain_everything(&mut self) {
        self.last_discover = None;
        for _ in 0..1000 {
            if self.pass() == 0 {
                break;
            }
        }
        for s in &mut self.span_sinks {
            s.flush();
        }
        for s in &mut self.log_sinks {
            s.flush();
        }
    }

    /// One pass over every region; returns the number of records and slot updates applied.
    pub fn pass(&mut self) -> usize {
        self.pass_at(Instant::now())
    }

    /// [`pass`](Self::pass) with the clock read by the caller: every time-based decision of
    /// the pass uses `now`.
    fn pass_at(&mut self, now: Instant) -> usize {
        // The log events read in this pass are observed now (OpenTelemetry's observed time).
        let observed_ns = crate::sinks::wall_clock_ns();
        let discovering = self
            .last_discover
            .is_none_or(|t| now.duration_since(t) >= self.opts.discover_interval);
        if discovering {
            self.last_discover = Some(now);
            self.discover();
        }
        let mut work = 0;
        let mut backlogged = false;
        let mut fill = 0.0f64;
        let mut agg = self.agg.lock();
        let mut stats = self.stats.lock();
        let mut backlog = 0;
        let (mut live, mut dead) = (0, 0);
        let mut finished = std::mem::take(&mut self.finished);
        for (&key, p) in self.procs.iter_mut() {
            if now.duration_since(p.last_check) >= Duration::from_millis(500) {
                p.last_check = now;
                let was_alive = p.alive;
                p.alive = process_alive(p.pid, p.start);
                if was_alive && !p.alive {
                    p.dead_since = Some(now);
                }
            }
            let finishing = !p.alive;
            if discovering && p.alive {
                materialize(p, &mut agg, &mut stats);
            }
            for r in &mut p.rings {
                if r.broken {
                    continue;
                }
                let st = r.reader.stats();
                r.last = st;
                let waiting = st.head.saturating_sub(r.reader.position());
                backlog = backlog.max(waiting);
                backlogged |= waiting > st.capacity / BACKLOG_FRACTION;
                fill = fill.max(waiting as f64 / st.capacity.max(1) as f64);
                let frames = drain_ring(
                    r,
                    p.pid,
                    p.start,
                    &p.service,
                    &mut p.table,
                    &mut p.names,
                    &mut p.local,
                    &mut agg,
                    &mut stats,
                    &mut self.pending,
                    &mut self.span_sinks,
                    &mut self.log_sinks,
                    self.opts.frames_per_ring,
                    self.opts.max_pending_spans,
                    now,
                    observed_ns,
                );
                backlogged |= frames >= self.opts.frames_per_ring;
                work += frames;
                if !r.broken && r.reader.region().poisoned() {
                    reject_ring(r, "", &mut stats);
                    continue;
                }
                work += account_ring(
                    r,
                    st,
                    (p.pid, p.start, &p.service),
                    &mut p.table,
                    &mut p.local,
                    &mut agg,
                    &mut stats,
                    finishing || st.closed,
                );
                if p.alive {
                    live += 1;
                } else {
                    dead += 1;
                }
            }
            // Closed rings of live threads that are fully drained: remove.
            let mut removed_any = false;
            p.rings.retain(|r| {
                let done = r.last.closed && r.reader.position() >= r.last.head;
                if done && !r.broken {
                    let _ = std::fs::remove_file(r.reader.region().path());
                    removed_any = true;
                    false
                } else {
                    true
                }
            });
            let _ = removed_any;
            if !p.alive {
                let drained = p
                    .rings
                    .iter()
                    .all(|r| r.broken || r.reader.position() >= r.last.head);
                let grace = p
                    .dead_since
                    .is_none_or(|t| now.duration_since(t) >= self.opts.dead_grace);
                // A ring created just before the process died may not be discovered yet:
                // never remove files we have not drained. Rescan first.
                let unknown = drained && grace && {
                    let known: HashSet<&Path> = p
                        .rings
                        .iter()
                        .map(|r| r.reader.region().path())
                        .chain(p.table_path.as_deref())
                        .collect();
                    scan_dir(&self.opts.dir).is_ok_and(|entries| {
                        entries.iter().any(|e| {
                            e.name.process() == (p.pid, p.start)
                                && !known.contains(e.path.as_path())
                                && !self.rejected.contains(&e.path)
                        })
                    })
                };
                if unknown {
                    self.last_discover = None;
                } else if drained && grace {
                    agg.mark_dead(p.pid, p.start);
                    for r in &p.rings {
                        let _ = std::fs::remove_file(r.reader.region().path());
                        self.rejected.remove(r.reader.region().path());
                    }
                    if let Some(t) = &p.table_path {
                        let _ = std::fs::remove_file(t);
                        self.rejected.remove(t);
                    }
                    // Files of this process that were rejected or not ready.
                    remove_process_files(&self.opts.dir, p.pid, p.start, &mut self.rejected);
                    stats.processes_cleaned += 1;
                    stats.process_drops.remove(&(p.service.to_string(), p.pid));
                    self.pending
                        .retain(|k, _| !(k.0 == p.pid && k.1 == p.start));
                    finished.push(key);
                }
            }
        }
        for key in finished.drain(..) {
            self.procs.remove(&key);
        }
        self.finished = finished;
        self.backlogged = backlogged;
        self.fill = fill;
        stats.regions_live = live;
        stats.regions_dead = dead;
        stats.max_backlog_bytes = backlog;
        drop(stats);
        drop(agg);
        if now.duration_since(self.last_sweep) >= Duration::from_secs(10) {
            self.last_sweep = now;
            // Attributes whose span never ended (writer crashed mid-span): forget after 60 s.
            self.pending.retain(|_, v| {
                v.first_seen
                    .is_none_or(|t| now.duration_since(t) < Duration::from_secs(60))
            });
        }
        for s in &mut self.span_sinks {
            s.tick();
        }
        for s in &mut self.log_sinks {
            s.tick();
        }
        work
    }

    fn reject(&mut self, path: &Path, e: &dyn std::fmt::Display, reason: &str) {
        if self.rejected.insert(path.to_owned()) {
            tracing::warn!(path = %path.display(), reason, "rejected region: {e}");
            *self
                .stats
                .lock()
                .rejected
                .entry(reason.to_owned())
                .or_default() += 1;
        }
    }

    fn discover(&mut self) {
        let entries = match scan_dir(&self.opts.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(dir = %self.opts.dir.display(), "cannot scan region directory: {e}");
                return;
            }
        };
        let present: HashSet<&PathBuf> = entries.iter().map(|e| &e.path).collect();
        self.rejected.retain(|p| present.contains(p));
        // Everything already open, to skip it in one lookup per file.
        let open: HashSet<PathBuf> = self
            .procs
            .values()
            .flat_map(|p| {
                p.rings
                    .iter()
                    .map(|r| r.reader.region().path().to_owned())
                    .chain(p.table_path.clone())
            })
            .collect();
        // Tables first, so rings can resolve their series.
        let mut sorted = entries;
        sorted.sort_by_key(|e| matches!(e.name, RegionName::Ring { .. }));
        for e in sorted {
            if self.rejected.contains(&e.path) || open.contains(&e.path) {
                continue;
            }
            let (pid, start) = e.name.process();
            let known = self.procs.get(&(pid, start));
            let already = match (&e.name, known) {
                (RegionName::Table { .. }, Some(p)) => {
                    p.table_path.as_ref() == Some(&e.path) || p.broken
                }
                (RegionName::Ring { .. }, Some(p)) => {
                    p.rings.iter().any(|r| r.reader.region().path() == e.path)
                }
                _ => false,
            };
            if already {
                continue;
            }
            match e.name {
                RegionName::Table { .. } => match TableReader::open(&e.path) {
                    Ok(t) => {
                        let service = cstr(&t.region().header().service);
                        let p = self
                            .procs
                            .entry((pid, start))
                            .or_insert_with(|| new_proc(pid, start));
                        p.service = service.into();
                        p.table = Some(t);
                        p.names = Names::default();
                        p.table_path = Some(e.path.clone());
                    }
                    Err(shmtel_core::reader::TableError::Region(RegionError::NotReady)) => {
                        self.maybe_remove_unready(&e.path, pid, start)
                    }
                    Err(shmtel_core::reader::TableError::Region(err)) => {
                        let reason = err.reason();
                        self.reject(&e.path, &err, reason)
                    }
                    Err(err) => self.reject(&e.path, &err, "bad_table"),
                },
                RegionName::Ring { tid, .. } => match RingReader::open(&e.path, true) {
                    Ok(mut reader) => {
                        let file_name = e
                            .path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let mut saved = self.saved.remove(&file_name).unwrap_or_default();
                        let st = reader.stats();
                        if saved.position >= st.tail
                            && saved.position <= st.head
                            && saved.position % 8 == 0
                        {
                            reader.set_position(saved.position);
                        } else {
                            saved.position = reader.position();
                        }
                        let anchor = reader.region().anchor();
                        let p = self
                            .procs
                            .entry((pid, start))
                            .or_insert_with(|| new_proc(pid, start));
                        p.rings.push(RingState {
                            last: RingStats::default(),
                            reader,
                            file_name,
                            tid,
                            anchor,
                            saved,
                            broken: false,
                        });
                    }
                    Err(RegionError::NotReady) => self.maybe_remove_unready(&e.path, pid, start),
                    Err(err) => {
                        let reason = err.reason();
                        self.reject(&e.path, &err, reason)
                    }
                },
            }
        }
    }

    /// A file whose header was never completed: its writer died creating it. Remove it once the
    /// writer is dead; otherwise look again next time.
    fn maybe_remove_unready(&mut self, path: &Path, pid: u32, start: u64) {
        if !process_alive(pid, start) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Number of processes known.
    pub fn process_count(&self) -> usize {
        self.procs.len()
    }
}

fn new_proc(pid: u32, start: u64) -> ProcState {
    ProcState {
        pid,
        start,
        service: "".into(),
        names: Names::default(),
        table: None,
        table_path: None,
        local: Vec::new(),
        materialized: 0,
        rings: Vec::new(),
        alive: process_alive(pid, start),
        dead_since: None,
        last_check: Instant::now(),
        broken: false,
    }
}

fn remove_process_files(dir: &Path, pid: u32, start: u64, rejected: &mut HashSet<PathBuf>) {
    // Files the writer was creating when it died (`.<name>.tmp`, see RegionFile::create).
    let prefix = format!(".{pid}-{start}");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(entries) = scan_dir(dir) {
        for e in entries {
            if e.name.process() == (pid, start) {
                let _ = std::fs::remove_file(&e.path);
                rejected.remove(&e.path);
            }
        }
    }
}

fn cstr(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// Slab index of a local series id, refreshing the table if the id is new.
#[inline]
fn resolve(
    series: u32,
    table: &mut Option<TableReader>,
    local: &mut Vec<u32>,
    agg: &mut Aggregator,
    stats: &mut crate::drain::SelfStats,
) -> Option<u32> {
    if let Some(&v) = local.get(series as usize) {
        if v != 0 {
            return Some(v - 1);
        }
    }
    let t = table.as_mut()?;
    if !t.series.contains_key(&series) {
        let _ = t.refresh();
    }
    let Some((s, f)) = t.series_family(series) else {
        stats.unresolved += 1;
        return None;
    };
    match agg.resolve(f, s) {
        Ok(idx) => {
            if local.len() <= series as usize {
                local.resize(series as usize + 1, 0);
            }
            local[series as usize] = idx + 1;
            Some(idx)
        }
        Err(ResolveError::Conflict) | Err(ResolveError::Limit) => {
            stats.unresolved += 1;
            None
        }
    }
}

/// Give every series a live process registered, but has not recorded to yet, its slab entry:
/// a counter created and never incremented shows 0, a labelled child shows from `labels()`.
fn materialize(p: &mut ProcState, agg: &mut Aggregator, stats: &mut SelfStats) {
    let Some(t) = p.table.as_mut() else { return };
    // One atomic load when nothing was registered since the last call.
    if t.refresh().is_err() || t.series.len() == p.materialized {
        return;
    }
    p.materialized = t.series.len();
    let mut ids: Vec<u32> = t
        .series
        .keys()
        .copied()
        .filter(|&id| p.local.get(id as usize).is_none_or(|&v| v == 0))
        .collect();
    ids.sort_unstable();
    for id in ids {
        if let Some(idx) = resolve(id, &mut p.table, &mut p.local, agg, stats) {
            agg.touch(idx, p.pid, p.start);
        }
    }
}

/// The pending link with 1-based `seq` (created empty up to it); None for a sequence outside
/// what a writer can produce (its limits are u16 counts; 4096 bounds a hostile ring's cost).
fn link_slot(links: &mut Vec<LinkData>, seq: u16) -> Option<&mut LinkData> {
    let seq = seq as usize;
    if !(1..=4096).contains(&seq) {
        return None;
    }
    while links.len() < seq {
        links.push(LinkData {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
            attributes: Vec::new(),
        });
    }
    links.get_mut(seq - 1)
}

/// Symbols at or above this id are not cached (a hostile table cannot make the cache big);
/// writers number their symbols densely from 1.
const MAX_CACHED_SYMBOL: usize = 1 << 16;

/// One process's symbols as shared strings: each is copied out of the table once, then every
/// span, event, attribute and log field naming it gets a reference-counted clone.
#[derive(Default)]
struct Names {
    /// By symbol id; None: not looked up yet.
    by_id: Vec<Option<Arc<str>>>,
    /// The empty name (id 0, or an id the table does not define).
    empty: Arc<str>,
}

fn symbol(table: &mut Option<TableReader>, names: &mut Names, id: u32) -> Arc<str> {
    let i = id as usize;
    if let Some(Some(s)) = names.by_id.get(i) {
        return s.clone();
    }
    // Id 0 is the empty name (a log event without its caller: every request), not looked up.
    let Some(t) = table.as_mut().filter(|_| id != 0) else {
        return names.empty.clone();
    };
    if !t.symbols.contains_key(&id) {
        let _ = t.refresh();
    }
    // An id the table does not (yet) define reads as empty and is not cached: a later refresh
    // may define it.
    let Some(text) = t.symbols.get(&id) else {
        return names.empty.clone();
    };
    let s: Arc<str> = text.as_str().into();
    if i < MAX_CACHED_SYMBOL {
        if names.by_id.len() <= i {
            names.by_id.resize(i + 1, None);
        }
        names.by_id[i] = Some(s.clone());
    }
    s
}

fn attrs(
    table: &mut Option<TableReader>,
    names: &mut Names,
    list: shmtel_core::reader::Attrs<'_>,
) -> Vec<(Arc<str>, OwnedValue)> {
    let mut out = Vec::with_capacity(list.len());
    out.extend(
        list.iter()
            .map(|a| (symbol(table, names, a.key), OwnedValue::from_attr(&a.value))),
    );
    out
}

#[allow(clippy::too_many_arguments)]
fn drain_ring(
    r: &mut RingState,
    pid: u32,
    start: u64,
    service: &Arc<str>,
    table: &mut Option<TableReader>,
    names: &mut Names,
    local: &mut Vec<u32>,
    agg: &mut Aggregator,
    stats: &mut SelfStats,
    pending: &mut PendingMap,
    span_sinks: &mut [Box<dyn SpanSink>],
    log_sinks: &mut [Box<dyn LogSink>],
    max_frames: usize,
    max_pending: usize,
    now: Instant,
    observed_ns: u64,
) -> usize {
    let anchor = r.anchor;
    let tid = r.tid;
    let mut corrupt: Option<String> = None;
    let want_logs = !log_sinks.is_empty();
    let result = r.reader.read(max_frames, true, |_pos, rec| {
        if corrupt.is_some() {
            return;
        }
        let rec = match rec {
            Ok(rec) => rec,
            Err(DecodeError::UnknownKind(_)) => {
                stats.unknown_kinds += 1;
                return;
            }
            Err(e) => {
                corrupt = Some(e.to_string());
                return;
            }
        };
        match rec {
            Record::CounterAdd { series, value } => {
                stats.drained[0] += 1;
                if let Some(idx) = resolve(series, table, local, agg, stats) {
                    agg.add(idx, pid, start, value);
                }
            }
            Record::GaugeSet { series, ts, value } => {
                stats.drained[1] += 1;
                if let Some(idx) = resolve(series, table, local, agg, stats) {
                    agg.set(idx, pid, start, anchor.to_wall_ns(ts), value);
                }
            }
            Record::GaugeAdd { series, value, .. } => {
                stats.drained[2] += 1;
                if let Some(idx) = resolve(series, table, local, agg, stats) {
                    agg.add(idx, pid, start, value);
                }
            }
            Record::Histogram {
                series,
                value,
                exemplar,
            } => {
                stats.drained[3] += 1;
                if let Some(idx) = resolve(series, table, local, agg, stats) {
                    let ex = exemplar.map(|e| StoredExemplar {
                        trace_id: e.trace_id,
                        span_id: e.span_id,
                        value,
                        wall_ns: anchor.to_wall_ns(e.ts),
                    });
                    agg.observe(idx, value, ex);
                }
            }
            Record::Span(s) => {
                stats.drained[4] += 1;
                stats.spans += 1;
                let p = pending.remove(&(pid, start, s.span_id)).unwrap_or_default();
                if !span_sinks.is_empty() {
                    let data = SpanData {
                        origin: Origin {
                            service: service.clone(),
                            pid,
                            tid,
                        },
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent_span_id: s.parent_span_id,
                        name: symbol(table, names, s.name),
                        kind: s.kind,
                        status: s.status,
                        flags: s.flags,
                        start_ns: anchor.to_wall_ns(s.start_ts),
                        end_ns: anchor.to_wall_ns(s.end_ts),
                        attributes: p.attributes,
                        events: p.events,
                        // A link whose frame was lost (ring full) left only its attributes.
                        links: p
                            .links
                            .into_iter()
                            .filter(|l| l.span_id != [0; 8])
                            .collect(),
                        dropped: s.dropped_attrs as u32,
                    };
                    let (last, rest) = span_sinks.split_last_mut().expect("non-empty");
                    for sink in rest {
                        sink.export(data.clone());
                    }
                    last.export(data);
                }
            }
            Record::SpanAttr {
                span_id,
                event_seq,
                attr,
            } => {
                stats.drained[5] += 1;
                if span_sinks.is_empty() {
                    return;
                }
                let key = (pid, start, span_id);
                let kv = (
                    symbol(table, names, attr.key),
                    OwnedValue::from_attr(&attr.value),
                );
                let Some(p) = pending_slot(pending, key, max_pending, now) else {
                    stats.pending_overflow += 1;
                    return;
                };
                if event_seq == 0 {
                    if p.attributes.capacity() == 0 {
                        // Spans usually carry a few attributes: one allocation, not three.
                        p.attributes.reserve(8);
                    }
                    p.attributes.push(kv);
                } else if let Some(ev) = p.events.get_mut(event_seq as usize - 1) {
                    ev.attributes.push(kv);
                }
            }
            Record::SpanLink(l) => {
                stats.links += 1;
                if span_sinks.is_empty() {
                    return;
                }
                let key = (pid, start, l.span_id);
                let Some(p) = pending_slot(pending, key, max_pending, now) else {
                    stats.pending_overflow += 1;
                    return;
                };
                if let Some(link) = link_slot(&mut p.links, l.link_seq) {
                    link.trace_id = l.linked_trace_id;
                    link.span_id = l.linked_span_id;
                    link.flags = l.flags;
                }
            }
            Record::SpanLinkAttr {
                span_id,
                link_seq,
                attr,
            } => {
                stats.links += 1;
                if span_sinks.is_empty() {
                    return;
                }
                let key = (pid, start, span_id);
                let kv = (
                    symbol(table, names, attr.key),
                    OwnedValue::from_attr(&attr.value),
                );
                let Some(p) = pending_slot(pending, key, max_pending, now) else {
                    stats.pending_overflow += 1;
                    return;
                };
                if let Some(link) = link_slot(&mut p.links, link_seq) {
                    link.attributes.push(kv);
                }
            }
            Record::SpanEvent(ev) => {
                stats.drained[6] += 1;
                if span_sinks.is_empty() {
                    return;
                }
                let key = (pid, start, ev.span_id);
                let name = symbol(table, names, ev.name);
                let Some(p) = pending_slot(pending, key, max_pending, now) else {
                    stats.pending_overflow += 1;
                    return;
                };
                let seq = ev.event_seq as usize;
                if (1..=4096).contains(&seq) {
                    while p.events.len() < seq {
                        p.events.push(EventData {
                            name: names.empty.clone(),
                            time_ns: 0,
                            attributes: Vec::new(),
                        });
                    }
                    p.events[seq - 1].name = name;
                    p.events[seq - 1].time_ns = anchor.to_wall_ns(ev.ts);
                }
            }
            Record::Log {
                rec,
                message,
                correlation,
                fields,
            } => {
                stats.drained[7] += 1;
                stats.logs += 1;
                if want_logs {
                    let data = LogData {
                        origin: Origin {
                            service: service.clone(),
                            pid,
                            tid,
                        },
                        time_ns: anchor.to_wall_ns(rec.ts),
                        observed_ns,
                        level: rec.level,
                        message: crate::sinks::lossy_string(message),
                        truncated: rec.flags & shmtel_core::layout::LOG_FLAG_TRUNCATED != 0,
                        correlation_id: crate::sinks::lossy_string(correlation),
                        trace_id: rec.trace_id,
                        span_id: rec.span_id,
                        caller: symbol(table, names, rec.caller),
                        fields: attrs(table, names, fields),
                    };
                    let (last, rest) = log_sinks.split_last_mut().expect("non-empty");
                    for sink in rest {
                        sink.export(data.clone());
                    }
                    last.export(data);
                }
            }
            Record::Business { .. } => {
                stats.drained[8] += 1;
                stats.business += 1;
            }
        }
    });
    match result {
        Ok(n) => {
            if let Some(e) = corrupt {
                reject_ring(r, &e, stats);
            }
            n
        }
        Err(e) => {
            reject_ring(r, &e.to_string(), stats);
            0
        }
    }
}

fn reject_ring(r: &mut RingState, e: &str, stats: &mut SelfStats) {
    r.broken = true;
    let path = r.reader.region().path().display();
    let reason = if r.reader.region().poisoned() {
        tracing::warn!(%path, "rejected region: the file shrank while mapped (writer truncated it)");
        "truncated_while_mapped"
    } else {
        tracing::warn!(%path, "rejected region: corrupt ring: {e}");
        "corrupt_ring"
    };
    *stats.rejected.entry(reason.into()).or_default() += 1;
}

/// Read the ring's drop counters and (when they moved, or `final_read`) its overflow slots.
#[allow(clippy::too_many_arguments)]
fn account_ring(
    r: &mut RingState,
    st: RingStats,
    (pid, start, service): (u32, u64, &str),
    table: &mut Option<TableReader>,
    local: &mut Vec<u32>,
    agg: &mut Aggregator,
    stats: &mut SelfStats,
    final_read: bool,
) -> usize {
    let drops = [
        st.dropped_spans,
        st.dropped_logs,
        st.dropped_other,
        st.dropped_metric,
    ];
    for (i, d) in drops.iter().enumerate() {
        if *d > r.saved.drops[i] {
            let delta = d - r.saved.drops[i];
            stats.dropped[i] += delta;
            stats
                .process_drops
                .entry((service.to_owned(), pid))
                .or_default()[i] += delta;
            r.saved.drops[i] = *d;
        }
    }
    // The writer bumps `coalesced` after it updates a slot: a moved counter means a slot moved.
    // A final read (dead writer, closed ring) scans anyway, in case the writer died between
    // the two stores.
    if st.coalesced == r.saved.coalesced && !(final_read && st.coalesced > 0) {
        return 0;
    }
    r.saved.coalesced = st.coalesced;
    let mut updates = Vec::new();
    r.reader.read_slots(|series, v| updates.push((series, v)));
    let mut work = 0;
    for (series, v) in updates {
        let seen = r.saved.slots.entry(series).or_default();
        let delta = v.added - seen.added;
        let new_set = v.set_ts != 0 && v.set_ts != seen.set_ts;
        if delta == 0.0 && !new_set {
            continue;
        }
        seen.added = v.added;
        if new_set {
            seen.set_ts = v.set_ts;
        }
        let Some(idx) = resolve(series, table, local, agg, stats) else {
            continue;
        };
        work += 1;
        stats.coalesced += 1;
        if new_set {
            agg.set(idx, pid, start, r.anchor.to_wall_ns(v.set_ts), v.set_value);
        }
        if delta != 0.0 && delta.is_finite() {
            agg.add(idx, pid, start, delta);
        }
    }
    work
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drainer(opts: DrainOptions) -> Drainer {
        let agg = Arc::new(Mutex::new(Aggregator::new(Default::default(), 10)));
        Drainer::new(opts, agg, Default::default(), HashMap::new())
    }

    fn ms(n: u64) -> Pause {
        Pause::Sleep(Duration::from_millis(n))
    }

    #[test]
    fn by_default_work_is_batched_and_idleness_backs_off_without_spinning() {
        let mut d = drainer(DrainOptions::new("/nonexistent".into()));
        // Work: a batching pause; a backlogged ring: the next pass at once. (Rings found
        // between 1/16 and 1/8 full after a pause keep the pause where it is.)
        assert_eq!(d.next_pause(true), ms(5));
        d.slept = Duration::from_millis(5);
        d.fill = 0.1;
        d.backlogged = true;
        assert_eq!(d.next_pause(true), Pause::Now);
        d.backlogged = false;
        assert_eq!(d.next_pause(true), ms(5));
        // Idle: sleeps double up to max_sleep; never a spin or a yield.
        let idle: Vec<Pause> = (0..7).map(|_| d.next_pause(false)).collect();
        assert_eq!(
            idle,
            [ms(5), ms(10), ms(20), ms(40), ms(50), ms(50), ms(50)]
        );
        // Work resets the backoff.
        assert_eq!(d.next_pause(true), ms(5));
        assert_eq!(d.next_pause(false), ms(5));
    }

    #[test]
    fn the_batching_pause_follows_the_write_rate() {
        let mut d = drainer(DrainOptions::new("/nonexistent".into()));
        let after = |d: &mut Drainer, fill: f64| {
            d.fill = fill;
            d.backlogged = fill > 0.25;
            let p = d.next_pause(true);
            d.slept = match p {
                Pause::Sleep(t) => t,
                _ => Duration::ZERO,
            };
            p
        };
        // A ring found full after a full pause: drain at once, and pause half as long after.
        d.slept = Duration::from_millis(5);
        assert_eq!(after(&mut d, 1.0), Pause::Now);
        assert_eq!(
            after(&mut d, 0.0),
            Pause::Sleep(Duration::from_micros(2_500))
        );
        assert_eq!(
            after(&mut d, 0.2),
            Pause::Sleep(Duration::from_micros(1_250))
        );
        // Between 1/16 and 1/8: keep it; below 1/16: double, past min_sleep up to max_sleep.
        assert_eq!(
            after(&mut d, 0.1),
            Pause::Sleep(Duration::from_micros(1_250))
        );
        assert_eq!(
            after(&mut d, 0.05),
            Pause::Sleep(Duration::from_micros(2_500))
        );
        assert_eq!(after(&mut d, 0.05), ms(5));
        assert_eq!(after(&mut d, 0.01), ms(10));
        assert_eq!(after(&mut d, 0.07), ms(10));
        assert_eq!(after(&mut d, 0.01), ms(20));
        assert_eq!(after(&mut d, 0.0), ms(40));
        assert_eq!(after(&mut d, 0.0), ms(50));
        assert_eq!(after(&mut d, 0.0), ms(50));
        // A rise in rate: half as long again at once.
        assert_eq!(after(&mut d, 0.2), ms(25));
        // Idle passes do not touch it; work after idling resumes at it.
        assert_eq!(d.next_pause(false), ms(5));
        d.slept = Duration::from_millis(5);
        assert_eq!(after(&mut d, 0.1), ms(25));
        // Never below 0.1 ms.
        for _ in 0..20 {
            after(&mut d, 0.2);
        }
        assert_eq!(after(&mut d, 0.2), Pause::Sleep(MIN_BATCH_PAUSE));
    }

    #[test]
    fn spinning_and_yielding_when_configured_and_then_no_pause_after_work() {
        let mut opts = DrainOptions::new("/nonexistent".into());
        opts.spin_iterations = 2;
        opts.yield_iterations = 1;
        opts.min_sleep = Duration::from_millis(1);
        let mut d = drainer(opts);
        assert_eq!(d.next_pause(true), Pause::Now);
        let idle: Vec<Pause> = (0..5).map(|_| d.next_pause(false)).collect();
        assert_eq!(idle, [Pause::Spin, Pause::Spin, Pause::Yield, ms(1), ms(2)]);
        assert_eq!(d.next_pause(true), Pause::Now);
        assert_eq!(d.next_pause(false), Pause::Spin);
    }

    #[test]
    fn an_idle_directory_costs_a_few_wakeups() {
        let tmp = std::env::temp_dir().join(format!("shmtel-drain-idle-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut d = drainer(DrainOptions::new(tmp.clone()));
        let stop = std::sync::atomic::AtomicBool::new(false);
        let t0 = Instant::now();
        d.run_for(&stop, Duration::from_millis(300));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        // 5 + 10 + 20 + 40 + 50 + 50 + ...: about 9 passes; a spinning loop makes thousands.
        assert!(d.idle <= 20, "{} passes in 300 ms", d.idle);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
