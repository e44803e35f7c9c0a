//! `shmtel dump`: everything a region directory holds, once, without consuming anything.
//!
//! For each writer process: pid, start time, whether it is alive, its service and a summary of
//! its interning table; for each of its rings: thread, state, capacity, fill, drop counters, the
//! records still in it (between the shared tail and the head, oldest first, decoded with names
//! resolved through the process's table) and the overflow slots in use. Files that fail
//! validation are listed with the reason; they never stop the dump.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shmtel_core::reader::{RingReader, RingStats, TableError, TableReader};
use shmtel_core::region::{process_alive, RegionError};

use super::render::{
    self, clean, json_f64, quote, rfc3339_ns, series_display, RecordKind, RenderContext,
};
use super::{
    dir_error, exit_code, padded_text, read_batch, scan_processes, write_json, RingFile,
    DEFAULT_DIR,
};

/// Frames read from a ring per step.
const CHUNK_FRAMES: usize = 16 * 1024;

/// Arguments of `shmtel dump`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct DumpArgs {
    /// Region directory to read.
    #[arg(long, value_name = "DIR", env = "SHMTEL_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Records shown per ring, oldest first (0: all of them).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// Run `shmtel dump`, printing to stdout; returns the exit code (0, or 1 if the directory
/// cannot be read).
pub fn run(args: &DumpArgs) -> i32 {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    run_to(args, &mut out)
}

/// Run `shmtel dump`, printing to `out`; returns the exit code. Problems with individual files
/// are part of the output; only an unreadable directory fails (message on stderr, exit 1).
pub fn run_to(args: &DumpArgs, out: &mut dyn Write) -> i32 {
    let report = match collect(&args.dir, args.limit, args.json) {
        Ok(r) => r,
        Err(e) => return dir_error("dump", &args.dir, &e),
    };
    let written = if args.json {
        write_json(out, &report.to_json(), true)
    } else {
        report.write_text(out)
    };
    exit_code("dump", written.and_then(|()| out.flush()).map(|()| 0))
}

/// A record as shown: a human line or a JSON object, depending on `--json`.
enum Shown {
    Text(String),
    Json(Value),
}

struct Rejected {
    path: PathBuf,
    reason: &'static str,
    error: String,
}

struct TableSummary {
    path: PathBuf,
    symbols: usize,
    families: usize,
    series: usize,
    overflowed_series: u64,
}

struct OverflowSlot {
    series_id: u32,
    series: String,
    added: f64,
    /// Last gauge set: value and wall-clock ns.
    set: Option<(f64, u64)>,
}

struct RingReport {
    path: PathBuf,
    tid: u32,
    seq: u32,
    thread: String,
    state: &'static str,
    stats: RingStats,
    records_total: u64,
    counts: BTreeMap<&'static str, u64>,
    records: Vec<Shown>,
    skipped: u64,
    error: Option<String>,
    overflow: Vec<OverflowSlot>,
}

struct ProcessReport {
    pid: u32,
    start: u64,
    alive: bool,
    service: Option<String>,
    table: Option<TableSummary>,
    table_error: Option<String>,
    rings: Vec<RingReport>,
}

struct Report {
    dir: PathBuf,
    processes: Vec<ProcessReport>,
    rejected: Vec<Rejected>,
}

fn rejected_region(path: &Path, e: &RegionError) -> Rejected {
    Rejected {
        path: path.to_owned(),
        reason: e.reason(),
        error: e.to_string(),
    }
}

fn collect(dir: &Path, limit: usize, json: bool) -> io::Result<Report> {
    let mut report = Report {
        dir: dir.to_owned(),
        processes: Vec::new(),
        rejected: Vec::new(),
    };
    for ((pid, start), files) in scan_processes(dir)? {
        let mut service = None;
        let (table, table_error) = match &files.table {
            None => (None, Some("no table file".to_owned())),
            Some(path) => match TableReader::open(path) {
                Ok(t) => {
                    service = Some(padded_text(&t.region().header().service));
                    (Some(t), None)
                }
                Err(TableError::Region(e)) => {
                    report.rejected.push(rejected_region(path, &e));
                    (None, Some(e.to_string()))
                }
                Err(e @ TableError::BadEntry { .. }) => {
                    let error = e.to_string();
                    report.rejected.push(Rejected {
                        path: path.clone(),
                        reason: "bad_table_entry",
                        error: error.clone(),
                    });
                    (None, Some(error))
                }
            },
        };
        let alive = process_alive(pid, start);
        let mut rings = Vec::new();
        for file in &files.rings {
            match dump_ring(file, table.as_ref(), alive, limit, json) {
                Ok((ring, ring_service)) => {
                    service.get_or_insert(ring_service);
                    rings.push(ring);
                }
                Err(e) => report.rejected.push(rejected_region(&file.path, &e)),
            }
        }
        if table.is_none() && rings.is_empty() {
            continue; // nothing of this process validated: it only appears among the rejected
        }
        let table = table.map(|t| TableSummary {
            path: t.region().path().to_owned(),
            symbols: t.symbols.len(),
            families: t.families.len(),
            series: t.series.len(),
            overflowed_series: t.overflowed_series(),
        });
        report.processes.push(ProcessReport {
            pid,
            start,
            alive,
            service,
            table,
            table_error,
            rings,
        });
    }
    report.rejected.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// Read one ring without consuming it; also returns the service its header names.
fn dump_ring(
    file: &RingFile,
    table: Option<&TableReader>,
    alive: bool,
    limit: usize,
    json: bool,
) -> Result<(RingReport, String), RegionError> {
    let mut reader = RingReader::open(&file.path, false)?;
    let header = *reader.region().header();
    let ctx = RenderContext {
        table,
        anchor: reader.region().anchor(),
        source: None,
    };
    let stats = reader.stats();
    let mut counts = BTreeMap::new();
    let mut records = Vec::new();
    let mut records_total = 0u64;
    let mut skipped = 0;
    let mut error = None;
    // In chunks, up to the head seen at the start: memory stays bounded by what is shown, and a
    // busy writer cannot keep the dump going.
    loop {
        let before = reader.position();
        let mut shown = records.len();
        let batch = read_batch(&mut reader, CHUNK_FRAMES, |position, record| {
            let kind = record.as_ref().ok().map(RecordKind::of);
            if limit != 0 && shown >= limit {
                return (kind, None);
            }
            shown += 1;
            let rendered = match (&record, json) {
                (Ok(r), false) => Shown::Text(render::human_line(&ctx, r)),
                (Ok(r), true) => Shown::Json(render::json_value(&ctx, r)),
                (Err(e), false) => Shown::Text(render::human_undecodable(&ctx, position, e)),
                (Err(e), true) => Shown::Json(render::json_undecodable(&ctx, position, e)),
            };
            (kind, Some(rendered))
        });
        skipped += batch.skipped;
        records_total += batch.items.len() as u64;
        for (_, (kind, rendered)) in batch.items {
            *counts
                .entry(kind.map_or("undecodable", RecordKind::as_str))
                .or_insert(0u64) += 1;
            records.extend(rendered);
        }
        if let Some(e) = batch.error {
            error = Some(e.to_string());
            break;
        }
        if reader.position() == before || reader.position() >= stats.head {
            break;
        }
    }
    let mut overflow = Vec::new();
    reader.read_slots(|series_id, v| {
        if v.added != 0.0 || v.set_ts != 0 {
            overflow.push(OverflowSlot {
                series_id,
                series: series_display(table, series_id),
                added: v.added,
                set: (v.set_ts != 0).then(|| (v.set_value, ctx.anchor.to_wall_ns(v.set_ts))),
            });
        }
    });
    let state = if stats.closed {
        "closed"
    } else if alive {
        "alive"
    } else {
        "dead"
    };
    let ring = RingReport {
        path: file.path.clone(),
        tid: file.tid,
        seq: file.seq,
        thread: padded_text(&header.thread_name),
        state,
        stats,
        records_total,
        counts,
        records,
        skipped,
        error,
        overflow,
    };
    Ok((ring, padded_text(&header.service)))
}

fn fill(stats: &RingStats) -> (u64, f64) {
    let bytes = stats.head.saturating_sub(stats.tail);
    let percent = if stats.capacity == 0 {
        0.0
    } else {
        bytes as f64 * 100.0 / stats.capacity as f64
    };
    (bytes, percent)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Report {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let rings: usize = self.processes.iter().map(|p| p.rings.len()).sum();
        writeln!(
            out,
            "shmtel dump of {}: {}, {}, {}",
            clean(&self.dir.display().to_string()),
            plural(self.processes.len(), "process", "processes"),
            plural(rings, "ring", "rings"),
            plural(self.rejected.len(), "rejected file", "rejected files"),
        )?;
        for p in &self.processes {
            writeln!(out)?;
            let service = p
                .service
                .as_deref()
                .map(|s| format!(", service {}", quote(s)))
                .unwrap_or_default();
            let state = if p.alive { "alive" } else { "dead" };
            writeln!(
                out,
                "process {} (start {}): {state}{service}",
                p.pid, p.start
            )?;
            match (&p.table, &p.table_error) {
                (Some(t), _) => writeln!(
                    out,
                    "  table {}: {}, {}, {}, {} overflowed series",
                    clean(&t.path.display().to_string()),
                    plural(t.symbols, "symbol", "symbols"),
                    plural(t.families, "family", "families"),
                    plural(t.series, "series", "series"),
                    t.overflowed_series,
                )?,
                (None, Some(e)) => writeln!(
                    out,
                    "  table: unavailable ({}): names are shown as ids",
                    clean(e)
                )?,
                (None, None) => writeln!(out, "  table: unavailable")?,
            }
            for r in &p.rings {
                r.write_text(out)?;
            }
        }
        if !self.rejected.is_empty() {
            writeln!(out)?;
            writeln!(out, "rejected files:")?;
            for r in &self.rejected {
                writeln!(
                    out,
                    "  {}: {} [{}]",
                    clean(&r.path.display().to_string()),
                    clean(&r.error),
                    r.reason
                )?;
            }
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let processes: Vec<Value> = self
            .processes
            .iter()
            .map(|p| {
                let table = p.table.as_ref().map(|t| {
                    json!({
                        "path": t.path.display().to_string(),
                        "symbols": t.symbols,
                        "families": t.families,
                        "series": t.series,
                        "overflowed_series": t.overflowed_series,
                    })
                });
                json!({
                    "pid": p.pid,
                    "start": p.start,
                    "alive": p.alive,
                    "state": if p.alive { "alive" } else { "dead" },
                    "service": p.service,
                    "table": table,
                    "table_error": p.table_error,
                    "rings": p.rings.iter().map(RingReport::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let rejected: Vec<Value> = self
            .rejected
            .iter()
            .map(|r| json!({"path": r.path.display().to_string(), "reason": r.reason, "error": r.error}))
            .collect();
        json!({"dir": self.dir.display().to_string(), "processes": processes, "rejected": rejected})
    }
}

impl RingReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.stats;
        let (fill_bytes, fill_percent) = fill(s);
        writeln!(out, "  ring {}", clean(&self.path.display().to_string()))?;
        writeln!(
            out,
            "    tid {} thread {} seq {}: {}",
            self.tid,
            quote(&self.thread),
            self.seq,
            self.state
        )?;
        writeln!(
            out,
            "    capacity {} bytes, fill {fill_bytes} bytes ({fill_percent:.1}%), head {}, tail {}",
            s.capacity, s.head, s.tail
        )?;
        writeln!(
            out,
            "    dropped: spans {}, logs {}, other {}, metric {}; coalesced {}",
            s.dropped_spans, s.dropped_logs, s.dropped_other, s.dropped_metric, s.coalesced
        )?;
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let by_kind = if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        };
        writeln!(out, "    records: {}{by_kind}", self.records_total)?;
        for r in &self.records {
            if let Shown::Text(line) = r {
                writeln!(out, "      {line}")?;
            }
        }
        let more = self.records_total.saturating_sub(self.records.len() as u64);
        if more > 0 {
            writeln!(out, "      ... {more} more (--limit 0 shows all)")?;
        }
        if self.skipped > 0 {
            writeln!(
                out,
                "    skipped {} bytes the writer overwrote while they were read",
                self.skipped
            )?;
        }
        if let Some(e) = &self.error {
            writeln!(out, "    error: {}", clean(e))?;
        }
        if !self.overflow.is_empty() {
            writeln!(out, "    overflow slots:")?;
            for o in &self.overflow {
                write!(out, "      {}: added {}", clean(&o.series), o.added)?;
                if let Some((value, ns)) = o.set {
                    write!(out, ", last set {value} at {}", rfc3339_ns(ns))?;
                }
                writeln!(out)?;
            }
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let s = &self.stats;
        let (fill_bytes, fill_percent) = fill(s);
        let records: Vec<Value> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Shown::Json(v) => Some(v.clone()),
                Shown::Text(_) => None,
            })
            .collect();
        let overflow: Vec<Value> = self
            .overflow
            .iter()
            .map(|o| {
                json!({
                    "series_id": o.series_id,
                    "series": o.series,
                    "added": json_f64(o.added),
                    "set_value": o.set.map(|(v, _)| json_f64(v)),
                    "set_time": o.set.map(|(_, ns)| rfc3339_ns(ns)),
                })
            })
            .collect();
        json!({
            "path": self.path.display().to_string(),
            "tid": self.tid,
            "seq": self.seq,
            "thread": self.thread,
            "state": self.state,
            "capacity": s.capacity,
            "head": s.head,
            "tail": s.tail,
            "fill_bytes": fill_bytes,
            "fill_percent": json_f64(fill_percent),
            "dropped": {
                "spans": s.dropped_spans,
                "logs": s.dropped_logs,
                "other": s.dropped_other,
                "metric": s.dropped_metric,
            },
            "coalesced": s.coalesced,
            "records_total": self.records_total,
            "record_counts": self.counts,
            "records_shown": records.len(),
            "records": records,
            "skipped_bytes": self.skipped,
            "error": self.error,
            "overflow": overflow,
        })
    }
}
