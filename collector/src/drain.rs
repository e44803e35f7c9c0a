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
#[derive(Clone, Debug)]
pub struct DrainOptions {
    /// Region directory.
    pub dir: PathBuf,
    /// How often to re-scan the directory.
    pub discover_interval: Duration,
    /// Idle passes that spin before yielding.
    pub spin_iterations: u32,
    /// Idle passes that yield before sleeping.
    pub yield_iterations: u32,
    /// First sleep when idle.
    pub min_sleep: Duration,
    /// Longest sleep when idle.
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
            spin_iterations: 64,
            yield_iterations: 16,
            min_sleep: Duration::from_millis(1),
            max_sleep: Duration::from_millis(50),
            dead_grace: Duration::from_millis(0),
            max_pending_spans: 100_000,
            frames_per_ring: 65_536,
        }
    }
}

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
    service: String,
    table: Option<TableReader>,
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
    attributes: Vec<(String, OwnedValue)>,
    events: Vec<EventData>,
    links: Vec<LinkData>,
    first_seen: Option<Instant>,
}

/// The drain side of the collector.
pub struct Drainer {
    opts: DrainOptions,
    agg: Arc<Mutex<Aggregator>>,
    stats: Arc<Mutex<SelfStats>>,
    procs: HashMap<(u32, u64), ProcState>,
    rejected: HashSet<PathBuf>,
    saved: HashMap<String, RingSaved>,
    pending: HashMap<(u32, u64, [u8; 8]), PendingSpan>,
    span_sinks: Vec<Box<dyn SpanSink>>,
    log_sinks: Vec<Box<dyn LogSink>>,
    last_discover: Option<Instant>,
    last_sweep: Instant,
    idle: u32,
    sleep: Duration,
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
            pending: HashMap::new(),
            span_sinks: Vec::new(),
            log_sinks: Vec::new(),
            last_discover: None,
            last_sweep: Instant::now(),
            idle: 0,
            sleep,
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

    /// Drain with adaptive polling until `stop` is set or `period` has passed.
    pub fn run_for(&mut self, stop: &std::sync::atomic::AtomicBool, period: Duration) {
        let until = Instant::now() + period;
        // Ordering: Relaxed: a flag polled between passes; no data is published through it.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
            let t0 = Instant::now();
            let work = self.pass();
            let pass = t0.elapsed();
            if work > 0 {
                self.idle = 0;
                self.sleep = self.opts.min_sleep;
                self.stats.lock().drain_lag_seconds = pass.as_secs_f64();
                continue;
            }
            self.idle += 1;
            if self.idle <= self.opts.spin_iterations {
                std::hint::spin_loop();
            } else if self.idle <= self.opts.spin_iterations + self.opts.yield_iterations {
                std::thread::yield_now();
            } else {
                std::thread::sleep(self.sleep);
                self.stats.lock().drain_lag_seconds = (pass + self.sleep).as_secs_f64();
                self.sleep = (self.sleep * 2).min(self.opts.max_sleep);
            }
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
        let now = Instant::now();
        let discovering = self
            .last_discover
            .is_none_or(|t| now.duration_since(t) >= self.opts.discover_interval);
        if discovering {
            self.last_discover = Some(now);
            self.discover();
        }
        let mut work = 0;
        let mut agg = self.agg.lock();
        let mut stats = self.stats.lock();
        let mut backlog = 0;
        let (mut live, mut dead) = (0, 0);
        let keys: Vec<(u32, u64)> = self.procs.keys().copied().collect();
        for key in keys {
            let Some(p) = self.procs.get_mut(&key) else {
                continue;
            };
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
                backlog = backlog.max(st.head.saturating_sub(r.reader.position()));
                work += drain_ring(
                    r,
                    p.pid,
                    p.start,
                    &p.service,
                    &mut p.table,
                    &mut p.local,
                    &mut agg,
                    &mut stats,
                    &mut self.pending,
                    &mut self.span_sinks,
                    &mut self.log_sinks,
                    self.opts.frames_per_ring,
                    self.opts.max_pending_spans,
                );
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
                    stats.process_drops.remove(&(p.service.clone(), p.pid));
                    self.pending
                        .retain(|k, _| !(k.0 == p.pid && k.1 == p.start));
                    self.procs.remove(&key);
                }
            }
        }
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
                        p.service = service;
                        p.table = Some(t);
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
        service: String::new(),
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

fn symbol(table: &mut Option<TableReader>, id: u32) -> String {
    let Some(t) = table.as_mut() else {
        return String::new();
    };
    if id != 0 && !t.symbols.contains_key(&id) {
        let _ = t.refresh();
    }
    t.symbol(id).to_owned()
}

fn attrs(
    table: &mut Option<TableReader>,
    list: shmtel_core::reader::Attrs<'_>,
) -> Vec<(String, OwnedValue)> {
    list.iter()
        .map(|a| (symbol(table, a.key), OwnedValue::from_attr(&a.value)))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn drain_ring(
    r: &mut RingState,
    pid: u32,
    start: u64,
    service: &str,
    table: &mut Option<TableReader>,
    local: &mut Vec<u32>,
    agg: &mut Aggregator,
    stats: &mut SelfStats,
    pending: &mut HashMap<(u32, u64, [u8; 8]), PendingSpan>,
    span_sinks: &mut [Box<dyn SpanSink>],
    log_sinks: &mut [Box<dyn LogSink>],
    max_frames: usize,
    max_pending: usize,
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
                            service: service.to_owned(),
                            pid,
                            tid,
                        },
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent_span_id: s.parent_span_id,
                        name: symbol(table, s.name),
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
                if !pending.contains_key(&key) && pending.len() >= max_pending {
                    stats.pending_overflow += 1;
                    return;
                }
                let kv = (symbol(table, attr.key), OwnedValue::from_attr(&attr.value));
                let p = pending.entry(key).or_default();
                p.first_seen.get_or_insert_with(Instant::now);
                if event_seq == 0 {
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
                if !pending.contains_key(&key) && pending.len() >= max_pending {
                    stats.pending_overflow += 1;
                    return;
                }
                let p = pending.entry(key).or_default();
                p.first_seen.get_or_insert_with(Instant::now);
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
                if !pending.contains_key(&key) && pending.len() >= max_pending {
                    stats.pending_overflow += 1;
                    return;
                }
                let kv = (symbol(table, attr.key), OwnedValue::from_attr(&attr.value));
                let p = pending.entry(key).or_default();
                p.first_seen.get_or_insert_with(Instant::now);
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
                if !pending.contains_key(&key) && pending.len() >= max_pending {
                    stats.pending_overflow += 1;
                    return;
                }
                let name = symbol(table, ev.name);
                let p = pending.entry(key).or_default();
                p.first_seen.get_or_insert_with(Instant::now);
                let seq = ev.event_seq as usize;
                if (1..=4096).contains(&seq) {
                    while p.events.len() < seq {
                        p.events.push(EventData {
                            name: String::new(),
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
                            service: service.to_owned(),
                            pid,
                            tid,
                        },
                        time_ns: anchor.to_wall_ns(rec.ts),
                        level: rec.level,
                        message: String::from_utf8_lossy(message).into_owned(),
                        truncated: rec.flags & shmtel_core::layout::LOG_FLAG_TRUNCATED != 0,
                        correlation_id: String::from_utf8_lossy(correlation).into_owned(),
                        trace_id: rec.trace_id,
                        span_id: rec.span_id,
                        caller: symbol(table, rec.caller),
                        fields: attrs(table, fields),
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
