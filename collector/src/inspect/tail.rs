//! `shmtel tail`: records as they arrive, one line (or one JSON object) per record.
//!
//! Read-only: every ring is mapped read-only and read from a position this command keeps in
//! memory, so tailing never consumes a record and never slows the collector or a writer.
//!
//! Without `--follow` it prints what each ring still holds (between the shared tail and the head)
//! and exits. With `--follow` it starts at each existing ring's head, prints new records as they
//! are committed (polling every 20 ms when idle), picks up rings created later from their start
//! (rescanning the directory every 100 ms), and stops cleanly on SIGINT or SIGTERM (a second
//! signal exits at once). Lines of different rings are interleaved per poll, not merged by time.
//!
//! Formats (`--format`): `text` (the default: one human line per record, see
//! [`super::render`]), `json` (one JSON object per record; `--json` is an alias), and `plain` or
//! `logfmt`, which render log events exactly as the collector's log sinks do
//! ([`crate::logs::render`]) and other records as in `text`.
//!
//! When the collector has consumed past our position and the writer has reused those bytes
//! before we printed them, the ring's records in between are gone: a notice
//! `... N bytes skipped` says so, and reading resumes at the collector's tail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shmtel_core::reader::{RingReader, TableReader};
use shmtel_core::ring::RingError;

use super::render::{self, RecordKind, RecordSource, RenderContext};
use super::{dir_error, exit_code, padded_text, read_batch, scan_processes, DEFAULT_DIR};
use crate::export::resource::ResourceInfo;
use crate::logs::render::{Format, Renderer, Schema};
use crate::sinks::{LogData, Origin, OwnedValue};

/// How often `--follow` looks for new ring files.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// How long `--follow` sleeps when no ring had anything new.
pub const IDLE_SLEEP: Duration = Duration::from_millis(20);
/// Most frames read from one ring per step (keeps a busy ring from starving the others).
pub const FRAMES_PER_POLL: usize = 4096;

/// Record kinds `--kinds` selects (the instrument names `loadgen --kinds` takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum KindFilter {
    /// Counter increments.
    Counter,
    /// Gauge sets and adds.
    Gauge,
    /// Histogram observations.
    Histogram,
    /// Spans, their attributes and events.
    Span,
    /// Log events.
    Log,
    /// Business metric events.
    Business,
}

impl KindFilter {
    /// Whether records of `kind` pass this filter.
    pub fn matches(self, kind: RecordKind) -> bool {
        let name = match self {
            KindFilter::Counter => "counter",
            KindFilter::Gauge => "gauge",
            KindFilter::Histogram => "histogram",
            KindFilter::Span => "span",
            KindFilter::Log => "log",
            KindFilter::Business => "business",
        };
        kind.category() == name
    }
}

/// How `shmtel tail` prints records (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    /// One human line per record.
    #[default]
    Text,
    /// One JSON object per record.
    Json,
    /// Log events as the collector's `plain` log format; other records as `text`.
    Plain,
    /// Log events as the collector's `logfmt` log format; other records as `text`.
    Logfmt,
}

/// Arguments of `shmtel tail`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct TailArgs {
    /// Region directory to read.
    #[arg(long, value_name = "DIR", env = "SHMTEL_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Keep printing new records until SIGINT/SIGTERM, starting at each ring's head.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per line instead of text (same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format: text, json, or plain/logfmt (log events as the collector writes them)
    /// [default: text]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<TailFormat>,
    /// Only these kinds, comma separated (default: all).
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    pub kinds: Vec<KindFilter>,
}

impl TailArgs {
    /// The output format: `--json`, else `--format`, else text.
    pub fn output_format(&self) -> TailFormat {
        if self.json {
            TailFormat::Json
        } else {
            self.format.unwrap_or_default()
        }
    }
}

/// Run `shmtel tail`, printing to stdout; returns the exit code.
pub fn run(args: &TailArgs) -> i32 {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    run_to(args, &mut out)
}

/// Run `shmtel tail`, printing to `out`. With `--follow`, installs SIGINT and SIGTERM handlers
/// for the duration of the call (the first signal stops the loop, a second exits the process).
pub fn run_to(args: &TailArgs, out: &mut dyn Write) -> i32 {
    if !args.follow {
        return run_until(args, out, &AtomicBool::new(false));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The conditional shutdown is registered first, so it sees the flag still unset on the
        // first signal and only the second one exits.
        let registered =
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
                .and_then(|a| Ok((a, signal_hook::flag::register(sig, Arc::clone(&stop))?)));
        match registered {
            Ok((a, b)) => ids.extend([a, b]),
            Err(e) => {
                eprintln!("shmtel tail: cannot install a signal handler: {e}");
                return 1;
            }
        }
    }
    let code = run_until(args, out, &stop);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    code
}

/// Run `shmtel tail`, printing to `out`, until `stop` is set (with `--follow`; without, one
/// pass). No signal handling: the caller owns `stop`.
pub fn run_until(args: &TailArgs, out: &mut dyn Write, stop: &AtomicBool) -> i32 {
    let mut tailer = Tailer::new(args);
    if let Err(e) = tailer.scan() {
        return dir_error("tail", &args.dir, &e);
    }
    if !args.follow {
        let printed = tailer.print_pending(out);
        return exit_code("tail", printed.and_then(|_| out.flush()).map(|()| 0));
    }
    let mut last_scan = Instant::now();
    let mut scan_failed = false;
    // Ordering: Relaxed: the flag carries no data; the signal handler only sets it.
    while !stop.load(Ordering::Relaxed) {
        if last_scan.elapsed() >= SCAN_INTERVAL {
            last_scan = Instant::now();
            match tailer.scan() {
                Ok(()) => scan_failed = false,
                Err(e) if !scan_failed => {
                    scan_failed = true;
                    eprintln!(
                        "shmtel tail: cannot read region directory {}: {e}",
                        args.dir.display()
                    );
                }
                Err(_) => {}
            }
        }
        match tailer.poll(out).and_then(|n| out.flush().map(|()| n)) {
            Ok(0) => std::thread::sleep(IDLE_SLEEP),
            Ok(_) => {}
            Err(e) => return exit_code("tail", Err(e)),
        }
    }
    exit_code("tail", out.flush().map(|()| 0))
}

struct TailRing {
    reader: RingReader,
    process: (u32, u64),
    tid: u32,
    /// The service its header names.
    service: String,
    /// Seen in the last directory scan; a ring whose file is gone is dropped once read to its
    /// head (the mapping stays valid after the file is unlinked).
    present: bool,
}

/// The state of a `tail`: the rings it reads, its own position in each, and the interning
/// tables that resolve their names. Public so that callers can drive polls themselves.
pub struct Tailer {
    dir: PathBuf,
    format: TailFormat,
    /// Renders log events for the plain and logfmt formats.
    renderer: Option<Renderer>,
    kinds: Vec<KindFilter>,
    /// Rings found in the first scan start at their head (else at the shared tail).
    from_head: bool,
    scanned: bool,
    rings: BTreeMap<PathBuf, TailRing>,
    tables: HashMap<(u32, u64), TableReader>,
    /// Consecutive failed opens per file: a file is reported on its second failure, so a file
    /// caught while its writer is still creating it goes unreported.
    failures: HashMap<PathBuf, u32>,
    /// Rings found corrupt: not read again.
    broken: HashSet<PathBuf>,
    warned_tables: HashSet<(u32, u64)>,
}

impl Tailer {
    /// A tailer for `args.dir`; nothing is read until [`Tailer::scan`].
    pub fn new(args: &TailArgs) -> Tailer {
        Tailer {
            dir: args.dir.clone(),
            format: args.output_format(),
            renderer: match args.output_format() {
                TailFormat::Plain => Some(Format::Plain),
                TailFormat::Logfmt => Some(Format::Logfmt),
                _ => None,
            }
            .map(|f| Renderer::new(f, Schema::Shmtel, ResourceInfo::default())),
            kinds: args.kinds.clone(),
            from_head: args.follow,
            scanned: false,
            rings: BTreeMap::new(),
            tables: HashMap::new(),
            failures: HashMap::new(),
            broken: HashSet::new(),
            warned_tables: HashSet::new(),
        }
    }

    /// Number of rings being read.
    pub fn rings(&self) -> usize {
        self.rings.len()
    }

    fn failed(&mut self, path: &Path, what: &dyn std::fmt::Display) {
        let n = self.failures.entry(path.to_owned()).or_insert(0);
        *n += 1;
        if *n == 2 {
            eprintln!("shmtel tail: ignoring {}: {what}", path.display());
        }
    }

    /// Look for new ring and table files. Rings found by the first scan of a `--follow` tailer
    /// start at their current head; all others at the shared tail (everything not yet consumed).
    /// Fails only if the directory cannot be listed.
    pub fn scan(&mut self) -> io::Result<()> {
        let processes = scan_processes(&self.dir)?;
        let first = !self.scanned;
        self.scanned = true;
        for ring in self.rings.values_mut() {
            ring.present = false;
        }
        let listed: HashSet<(u32, u64)> = processes.keys().copied().collect();
        for (process, files) in processes {
            if let (Some(path), false) = (&files.table, self.tables.contains_key(&process)) {
                match TableReader::open(path) {
                    Ok(t) => {
                        self.failures.remove(path);
                        self.tables.insert(process, t);
                    }
                    Err(e) => self.failed(path, &e),
                }
            }
            for file in files.rings {
                if let Some(ring) = self.rings.get_mut(&file.path) {
                    ring.present = true;
                    continue;
                }
                if self.broken.contains(&file.path) {
                    continue;
                }
                match RingReader::open(&file.path, false) {
                    Ok(mut reader) => {
                        self.failures.remove(&file.path);
                        if first && self.from_head {
                            let head = reader.stats().head;
                            reader.set_position(head);
                        }
                        let service = padded_text(&reader.region().header().service);
                        let ring = TailRing {
                            reader,
                            process,
                            tid: file.tid,
                            service,
                            present: true,
                        };
                        self.rings.insert(file.path, ring);
                    }
                    Err(e) => self.failed(&file.path, &e),
                }
            }
        }
        // A table is kept while its process has files in the directory or rings still being read.
        let reading: HashSet<(u32, u64)> = self.rings.values().map(|r| r.process).collect();
        self.tables
            .retain(|p, _| listed.contains(p) || reading.contains(p));
        self.failures.retain(|path, _| path.exists());
        Ok(())
    }

    /// Print what every ring has committed since the last poll (at most [`FRAMES_PER_POLL`]
    /// frames per ring); returns the number of lines printed.
    pub fn poll(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.poll_rings(out, false)
    }

    /// Print everything up to each ring's head as it is now (in steps of [`FRAMES_PER_POLL`]
    /// frames, so memory stays bounded); returns the number of lines printed.
    pub fn print_pending(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.poll_rings(out, true)
    }

    fn poll_rings(&mut self, out: &mut dyn Write, to_head: bool) -> io::Result<usize> {
        for (process, table) in &mut self.tables {
            if let Err(e) = table.refresh() {
                if self.warned_tables.insert(*process) {
                    eprintln!(
                        "shmtel tail: table of pid {} is corrupt, names may show as ids: {e}",
                        process.0
                    );
                }
            }
        }
        let mut printed = 0;
        let mut finished = Vec::new();
        for (path, ring) in &mut self.rings {
            let table = self.tables.get(&ring.process);
            let target = ring.reader.stats().head;
            let mut broken = false;
            loop {
                let before = ring.reader.position();
                let (n, error) = read_ring(
                    ring,
                    table,
                    self.format,
                    self.renderer.as_mut(),
                    &self.kinds,
                    out,
                )?;
                printed += n;
                if let Some(e) = error {
                    // Not explained by being lapped: the ring's bytes are corrupt.
                    eprintln!(
                        "shmtel tail: {}: {e}; no longer reading this ring",
                        path.display()
                    );
                    broken = true;
                    break;
                }
                let position = ring.reader.position();
                if !to_head || position == before || position >= target {
                    break;
                }
            }
            if broken || (!ring.present && ring.reader.position() >= ring.reader.stats().head) {
                finished.push((path.clone(), broken));
            }
        }
        for (path, broken) in finished {
            self.rings.remove(&path);
            if broken {
                self.broken.insert(path);
            }
        }
        Ok(printed)
    }
}

/// Read up to [`FRAMES_PER_POLL`] frames of one ring and print those `kinds` selects, after a
/// notice if bytes were skipped. Returns the lines printed and the ring's corruption, if any.
fn read_ring(
    ring: &mut TailRing,
    table: Option<&TableReader>,
    format: TailFormat,
    mut renderer: Option<&mut Renderer>,
    kinds: &[KindFilter],
    out: &mut dyn Write,
) -> io::Result<(usize, Option<RingError>)> {
    let json = format == TailFormat::Json;
    let service: std::sync::Arc<str> = ring.service.as_str().into();
    let mut line = Vec::new();
    let source = RecordSource {
        pid: ring.process.0,
        tid: ring.tid,
    };
    let ctx = RenderContext {
        table,
        anchor: ring.reader.region().anchor(),
        source: Some(source),
    };
    let selected = |kind: RecordKind| kinds.is_empty() || kinds.iter().any(|k| k.matches(kind));
    // The log events of this poll are observed now (the otel schema's `ObservedTimestamp`).
    let observed_ns = crate::sinks::wall_clock_ns();
    let batch = read_batch(
        &mut ring.reader,
        FRAMES_PER_POLL,
        |position, record| match record {
            Ok(r) if !selected(RecordKind::of(&r)) => None,
            Ok(r) if json => Some(render::json_value(&ctx, &r).to_string()),
            Ok(shmtel_core::reader::Record::Log {
                rec,
                message,
                correlation,
                fields,
            }) if renderer.is_some() => {
                let log = LogData {
                    origin: Origin {
                        service: service.clone(),
                        pid: source.pid,
                        tid: source.tid,
                    },
                    time_ns: ctx.anchor.to_wall_ns(rec.ts),
                    observed_ns,
                    level: rec.level,
                    message: String::from_utf8_lossy(message).into_owned(),
                    truncated: rec.flags & shmtel_core::layout::LOG_FLAG_TRUNCATED != 0,
                    correlation_id: String::from_utf8_lossy(correlation).into_owned(),
                    trace_id: rec.trace_id,
                    span_id: rec.span_id,
                    caller: if rec.caller == 0 {
                        "".into()
                    } else {
                        render::symbol_text(table, rec.caller).into()
                    },
                    fields: fields
                        .iter()
                        .map(|a| {
                            (
                                render::symbol_text(table, a.key).into(),
                                OwnedValue::from_attr(&a.value),
                            )
                        })
                        .collect(),
                };
                line.clear();
                if let Some(r) = renderer.as_deref_mut() {
                    r.render(&log, &mut line);
                }
                Some(String::from_utf8_lossy(&line).into_owned())
            }
            Ok(r) => Some(render::human_line(&ctx, &r)),
            Err(_) if !kinds.is_empty() => None,
            Err(e) if json => Some(render::json_undecodable(&ctx, position, &e).to_string()),
            Err(e) => Some(render::human_undecodable(&ctx, position, &e)),
        },
    );
    let mut printed = 0;
    if batch.skipped > 0 {
        let line = if json {
            json!({"notice": "skipped", "bytes": batch.skipped, "pid": source.pid, "tid": source.tid})
                .to_string()
        } else {
            format!(
                "... {} bytes skipped pid={} tid={} (overwritten by the writer before they were read)",
                batch.skipped, source.pid, source.tid
            )
        };
        writeln!(out, "{line}")?;
        printed += 1;
    }
    for line in batch.items.into_iter().filter_map(|(_, line)| line) {
        writeln!(out, "{line}")?;
        printed += 1;
    }
    Ok((printed, batch.error))
}
