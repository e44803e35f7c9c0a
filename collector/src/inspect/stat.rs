//! `shmtel stat`: the interning tables of a region directory: for each writer process, its
//! metric families (name, type, gauge mode, help, unit, label names, buckets) with their series
//! (id and label values), and how many symbols it interned. Tables that fail validation are
//! listed with the reason.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shmtel_core::layout::metric_type;
use shmtel_core::reader::{FamilyInfo, SeriesInfo, TableError, TableReader};
use shmtel_core::region::process_alive;

use super::render::{clean, gauge_mode_name, json_f64, metric_type_name, quote, series_display};
use super::{dir_error, exit_code, padded_text, scan_processes, write_json, DEFAULT_DIR};

/// Arguments of `shmtel stat`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct StatArgs {
    /// Region directory to read.
    #[arg(long, value_name = "DIR", env = "SHMTEL_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `shmtel stat`, printing to stdout; returns the exit code (0, or 1 if the directory
/// cannot be read).
pub fn run(args: &StatArgs) -> i32 {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    run_to(args, &mut out)
}

/// Run `shmtel stat`, printing to `out`; returns the exit code.
pub fn run_to(args: &StatArgs, out: &mut dyn Write) -> i32 {
    let tables = match collect(&args.dir) {
        Ok(t) => t,
        Err(e) => return dir_error("stat", &args.dir, &e),
    };
    let written = if args.json {
        write_json(out, &to_json(&args.dir, &tables), true)
    } else {
        write_text(out, &args.dir, &tables)
    };
    exit_code("stat", written.and_then(|()| out.flush()).map(|()| 0))
}

struct ProcessTable {
    pid: u32,
    start: u64,
    alive: bool,
    path: PathBuf,
    table: Result<TableReader, TableError>,
}

fn collect(dir: &Path) -> io::Result<Vec<ProcessTable>> {
    let mut out = Vec::new();
    for ((pid, start), files) in scan_processes(dir)? {
        let Some(path) = files.table else { continue };
        let table = TableReader::open(&path);
        out.push(ProcessTable {
            pid,
            start,
            alive: process_alive(pid, start),
            path,
            table,
        });
    }
    Ok(out)
}

/// Families in id order, each with its series in id order.
fn families(t: &TableReader) -> Vec<(&FamilyInfo, Vec<&SeriesInfo>)> {
    let mut fams: Vec<&FamilyInfo> = t.families.values().collect();
    fams.sort_by_key(|f| f.id);
    let mut series: Vec<&SeriesInfo> = t.series.values().collect();
    series.sort_by_key(|s| s.id);
    fams.into_iter()
        .map(|f| {
            (
                f,
                series
                    .iter()
                    .copied()
                    .filter(|s| s.family == f.id)
                    .collect(),
            )
        })
        .collect()
}

fn error_reason(e: &TableError) -> &'static str {
    match e {
        TableError::Region(r) => r.reason(),
        TableError::BadEntry { .. } => "bad_table_entry",
    }
}

fn write_text(out: &mut dyn Write, dir: &Path, tables: &[ProcessTable]) -> io::Result<()> {
    writeln!(
        out,
        "shmtel stat of {}: {} table{}",
        clean(&dir.display().to_string()),
        tables.len(),
        if tables.len() == 1 { "" } else { "s" }
    )?;
    for p in tables {
        writeln!(out)?;
        let state = if p.alive { "alive" } else { "dead" };
        let t = match &p.table {
            Ok(t) => t,
            Err(e) => {
                writeln!(out, "process {} (start {}): {state}", p.pid, p.start)?;
                writeln!(
                    out,
                    "  table {}: rejected: {} [{}]",
                    clean(&p.path.display().to_string()),
                    clean(&e.to_string()),
                    error_reason(e)
                )?;
                continue;
            }
        };
        let service = padded_text(&t.region().header().service);
        writeln!(
            out,
            "process {} (start {}): {state}, service {}",
            p.pid,
            p.start,
            quote(&service)
        )?;
        writeln!(
            out,
            "  table {}: {} symbols, {} families, {} series, {} overflowed series",
            clean(&p.path.display().to_string()),
            t.symbols.len(),
            t.families.len(),
            t.series.len(),
            t.overflowed_series()
        )?;
        for (f, series) in families(t) {
            let mode = if f.metric_type == metric_type::GAUGE {
                format!(" (mode {})", gauge_mode_name(f.mode))
            } else {
                String::new()
            };
            writeln!(
                out,
                "  {} {}{mode}: {}",
                metric_type_name(f.metric_type),
                clean(&f.name),
                quote(&f.help)
            )?;
            if !f.unit.is_empty() {
                writeln!(out, "    unit: {}", clean(&f.unit))?;
            }
            if !f.labels.is_empty() {
                let labels: Vec<String> = f.labels.iter().map(|l| clean(l).into_owned()).collect();
                writeln!(out, "    labels: {}", labels.join(", "))?;
            }
            if !f.buckets.is_empty() {
                let buckets: Vec<String> = f.buckets.iter().map(|b| b.to_string()).collect();
                writeln!(out, "    buckets: {}", buckets.join(", "))?;
            }
            writeln!(out, "    series: {}", series.len())?;
            for s in series {
                writeln!(
                    out,
                    "      {:>6} {}",
                    s.id,
                    clean(&series_display(Some(t), s.id))
                )?;
            }
        }
    }
    Ok(())
}

fn to_json(dir: &Path, tables: &[ProcessTable]) -> Value {
    let processes: Vec<Value> = tables
        .iter()
        .map(|p| {
            let mut v = json!({
                "pid": p.pid,
                "start": p.start,
                "alive": p.alive,
                "path": p.path.display().to_string(),
            });
            match &p.table {
                Err(e) => {
                    v["error"] = json!({"reason": error_reason(e), "error": e.to_string()});
                }
                Ok(t) => {
                    v["service"] = padded_text(&t.region().header().service).into();
                    v["symbols"] = t.symbols.len().into();
                    v["overflowed_series"] = t.overflowed_series().into();
                    let fams: Vec<Value> = families(t)
                        .into_iter()
                        .map(|(f, series)| {
                            let series: Vec<Value> = series
                                .iter()
                                .map(|s| {
                                    json!({
                                        "id": s.id,
                                        "labels": f.labels.iter().zip(&s.values)
                                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                                            .collect::<serde_json::Map<_, _>>(),
                                        "series": series_display(Some(t), s.id),
                                    })
                                })
                                .collect();
                            json!({
                                "id": f.id,
                                "name": f.name,
                                "type": metric_type_name(f.metric_type),
                                "mode": (f.metric_type == metric_type::GAUGE).then(|| gauge_mode_name(f.mode)),
                                "help": f.help,
                                "unit": f.unit,
                                "labels": f.labels,
                                "buckets": f.buckets.iter().map(|b| json_f64(*b)).collect::<Vec<_>>(),
                                "series": series,
                            })
                        })
                        .collect();
                    v["families"] = fams.into();
                }
            }
            v
        })
        .collect();
    json!({"dir": dir.display().to_string(), "processes": processes})
}
