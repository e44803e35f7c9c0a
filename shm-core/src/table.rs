//! The per-process interning table: symbols, metric families and series, each defined once per
//! process in the `<pid>-<start>.table` file so that records carry small ids.
//!
//! Interning is the slow path (a mutex and, the first time, file creation); handles such as
//! [`crate::Counter`] and [`Symbol`] cache the ids they were given. Entries are appended under
//! the mutex, then the table's `used` length is stored with release ordering: readers load it
//! with acquire ordering and parse only complete entries below it.
//!
//! After `fork()` the child copies the parent's entries into a table file of its own, so the
//! ids cached in handles stay valid in the child.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Error;
use crate::layout::*;
use crate::region::{NewRegion, ProcessIdentity, RegionFile};

/// An interned string (span name, attribute or field key, event name, unit): a small id valid
/// in this process and its forked children.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Symbol(pub(crate) u32);

impl Symbol {
    /// The empty symbol (id 0): "none" wherever a symbol is optional, e.g. a log's caller.
    pub const EMPTY: Symbol = Symbol(0);

    /// Intern `s` (slow path: takes the process's table lock). Returns the empty symbol (id 0)
    /// if the table cannot be written.
    pub fn intern(s: &str) -> Symbol {
        with_process(|p| p.symbol(s)).unwrap_or(Symbol(0))
    }

    /// The id recorded in frames.
    pub fn id(self) -> u32 {
        self.0
    }
}

/// A registered metric family as the writer remembers it: the same record a reader decodes.
pub(crate) type FamilyDef = crate::reader::FamilyInfo;

struct TableFile {
    region: Arc<RegionFile>,
    used: u64,
}

/// Everything process-wide on the writer side.
pub(crate) struct Process {
    pub identity: ProcessIdentity,
    pub dir: PathBuf,
    pub service: String,
    table: Option<TableFile>,
    symbols: HashMap<String, u32>,
    families: HashMap<String, FamilyDef>,
    series: HashMap<(u32, Vec<String>), u32>,
    overflow_series: HashMap<u32, u32>,
    next_symbol: u32,
    next_family: u32,
    next_series: u32,
    overflowed: u64,
    pub ring_seq: u32,
    pub max_series: u32,
}

/// Label value of the series that takes a family's updates once the cardinality limit is hit.
pub const OVERFLOW_LABEL_VALUE: &str = "__shmtel_overflow__";

/// Hard cap of series ids: `max_series` ordinary ones plus one overflow series per family, up to
/// this many extra.
const OVERFLOW_RESERVE: u32 = 1024;

static PROCESS: Mutex<Option<Process>> = Mutex::new(None);

/// Run `f` on the process state, creating it (and registering the at-fork handlers) on first
/// use. Errors if the region directory or table cannot be created.
pub(crate) fn with_process<R>(
    f: impl FnOnce(&mut Process) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut guard = PROCESS.lock();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let stale = guard.as_ref().is_some_and(|p| p.identity.pid != pid);
    if guard.is_none() || stale {
        let inherited = guard.take();
        *guard = Some(Process::new(inherited)?);
    }
    f(guard.as_mut().expect("process state initialised above"))
}

impl Process {
    fn new(inherited: Option<Process>) -> Result<Process, Error> {
        crate::writer::register_fork_handlers();
        crate::clock::init();
        let cfg = crate::config::get();
        let identity = ProcessIdentity::current().map_err(|e| Error::Io(e.to_string()))?;
        let dir = cfg.region_dir();
        let max_series = cfg.max_series.min(u32::MAX as usize / 2) as u32;
        let mut p = match inherited {
            Some(parent) => Process {
                identity,
                dir,
                service: cfg.service.clone(),
                table: None,
                ring_seq: 0,
                ..parent
            },
            None => Process {
                identity,
                dir,
                service: cfg.service.clone(),
                table: None,
                symbols: HashMap::new(),
                families: HashMap::new(),
                series: HashMap::new(),
                overflow_series: HashMap::new(),
                next_symbol: 1,
                next_family: 1,
                next_series: 1,
                overflowed: 0,
                ring_seq: 0,
                max_series,
            },
        };
        p.open_table(cfg.table_bytes as u64, cfg.file_mode)?;
        Ok(p)
    }

    /// Create this process's table file; after a fork, copy the parent's entries into it.
    fn open_table(&mut self, capacity: u64, mode: u32) -> Result<(), Error> {
        let name = self.identity.table_file_name();
        // A leftover file of a dead process with our pid and start time cannot exist (the start
        // time differs), but a crashed earlier attempt of ours could: replace it.
        let _ = std::fs::remove_file(self.dir.join(&name));
        let anchor = crate::clock::anchor();
        let region = RegionFile::create(&NewRegion {
            dir: &self.dir,
            name: &name,
            identity: &self.identity,
            tid: 0,
            kind: REGION_TABLE,
            data_capacity: capacity,
            slots: (self.max_series + OVERFLOW_RESERVE + 1) as u64,
            anchor,
            thread_name: "",
            service: &self.service,
            mode,
        })
        .map_err(|e| Error::Io(format!("{}: {e}", self.dir.join(&name).display())))?;
        let region = Arc::new(region);
        let mut table = TableFile { region, used: 0 };
        // Re-append every known definition in id order (a fork child, or a table re-created).
        let mut entries: Vec<(u16, u32, Vec<u8>, u8, u8, u32)> = Vec::new();
        for (s, &id) in &self.symbols {
            entries.push((ENTRY_SYMBOL, id, encode_strings(&[s.as_str()]), 0, 0, 0));
        }
        for f in self.families.values() {
            entries.push((
                ENTRY_FAMILY,
                f.id,
                encode_family(f),
                f.metric_type,
                f.mode,
                0,
            ));
        }
        for ((family, values), &id) in &self.series {
            let v: Vec<&str> = values.iter().map(|s| s.as_str()).collect();
            entries.push((ENTRY_SERIES, id, encode_series(&v), 0, 0, *family));
        }
        for (family, &id) in &self.overflow_series {
            if let Some(f) = self.families.values().find(|f| f.id == *family) {
                let v: Vec<&str> = f.labels.iter().map(|_| OVERFLOW_LABEL_VALUE).collect();
                entries.push((ENTRY_SERIES, id, encode_series(&v), 0, 0, *family));
            }
        }
        entries.sort_by_key(|e| (e.0, e.1));
        for (kind, id, payload, sub, mode, parent) in entries {
            table.append(kind, id, sub, mode, parent, &payload)?;
        }
        table.publish(
            self.next_symbol.max(self.next_series) as u64,
            self.overflowed,
        );
        self.table = Some(table);
        Ok(())
    }

    fn table(&mut self) -> Result<&mut TableFile, Error> {
        self.table.as_mut().ok_or(Error::TableFull)
    }

    pub fn symbol(&mut self, s: &str) -> Result<Symbol, Error> {
        if let Some(&id) = self.symbols.get(s) {
            return Ok(Symbol(id));
        }
        let id = self.next_symbol;
        let payload = encode_strings(&[s]);
        self.table()?.append(ENTRY_SYMBOL, id, 0, 0, 0, &payload)?;
        self.next_symbol += 1;
        self.symbols.insert(s.to_owned(), id);
        self.publish();
        Ok(Symbol(id))
    }

    /// Register a family, or return the existing one if its definition is identical.
    pub fn family(&mut self, def: FamilyDef) -> Result<FamilyDef, Error> {
        if let Some(existing) = self.families.get(&def.name) {
            let same = existing.metric_type == def.metric_type
                && existing.labels == def.labels
                && existing.mode == def.mode
                && (existing.buckets == def.buckets || def.metric_type != metric_type::HISTOGRAM);
            return if same {
                Ok(existing.clone())
            } else {
                Err(Error::Conflict(format!(
                    "{:?} is already registered as a different metric (type, labels, buckets or mode)",
                    def.name
                )))
            };
        }
        let def = FamilyDef {
            id: self.next_family,
            ..def
        };
        let payload = encode_family(&def);
        self.table()?
            .append(ENTRY_FAMILY, def.id, def.metric_type, def.mode, 0, &payload)?;
        self.next_family += 1;
        self.families.insert(def.name.clone(), def.clone());
        self.publish();
        Ok(def)
    }

    /// The series id of `values` in `family`, registering it if new. Past the cardinality
    /// limit, the family's overflow series.
    pub fn series(&mut self, family: &FamilyDef, values: &[&str]) -> Result<u32, Error> {
        if values.len() != family.labels.len() {
            return Err(Error::LabelCount {
                metric: family.name.clone(),
                expected: family.labels.len(),
                got: values.len(),
            });
        }
        let key = (
            family.id,
            values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>(),
        );
        if let Some(&id) = self.series.get(&key) {
            return Ok(id);
        }
        if self.next_series > self.max_series {
            if let Some(&id) = self.overflow_series.get(&family.id) {
                self.overflowed += 1;
                self.publish();
                return Ok(id);
            }
            if self.next_series > self.max_series + OVERFLOW_RESERVE {
                return Err(Error::TableFull);
            }
            let values: Vec<&str> = family.labels.iter().map(|_| OVERFLOW_LABEL_VALUE).collect();
            let id = self.append_series(family.id, &values)?;
            self.overflow_series.insert(family.id, id);
            self.overflowed += 1;
            self.publish();
            return Ok(id);
        }
        let id = self.append_series(family.id, values)?;
        self.series.insert(key, id);
        self.publish();
        Ok(id)
    }

    fn append_series(&mut self, family: u32, values: &[&str]) -> Result<u32, Error> {
        let id = self.next_series;
        let payload = encode_series(values);
        self.table()?
            .append(ENTRY_SERIES, id, 0, 0, family, &payload)?;
        self.next_series += 1;
        Ok(id)
    }

    fn publish(&mut self) {
        let next = self.next_symbol.max(self.next_series) as u64;
        let overflowed = self.overflowed;
        if let Some(t) = self.table.as_mut() {
            t.publish(next, overflowed);
        }
    }

    /// Highest series id that may be handed out (sizes overflow slot arrays).
    pub fn series_capacity(&self) -> u64 {
        (self.max_series + OVERFLOW_RESERVE + 1) as u64
    }
}

impl TableFile {
    fn append(
        &mut self,
        kind: u16,
        id: u32,
        sub: u8,
        mode: u8,
        parent: u32,
        payload: &[u8],
    ) -> Result<(), Error> {
        let len = align8(ENTRY_HEADER_SIZE + payload.len());
        let cap = self.region.header().data_capacity;
        if self.used + len as u64 > cap || len > u32::MAX as usize {
            return Err(Error::TableFull);
        }
        let header = EntryHeader {
            length: len as u32,
            kind,
            subkind: sub,
            mode,
            id,
            parent,
        };
        let off = TABLE_DATA_OFFSET + self.used as usize;
        let base = self.region.base();
        // SAFETY: off + len <= TABLE_DATA_OFFSET + capacity <= file size (checked above and at
        // creation); bytes past `used` are not yet published, so no reader looks at them, and
        // the process mutex makes us their only writer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytemuck::bytes_of(&header).as_ptr(),
                base.add(off),
                ENTRY_HEADER_SIZE,
            );
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                base.add(off + ENTRY_HEADER_SIZE),
                payload.len(),
            );
            std::ptr::write_bytes(
                base.add(off + ENTRY_HEADER_SIZE + payload.len()),
                0,
                len - ENTRY_HEADER_SIZE - payload.len(),
            );
        }
        self.used += len as u64;
        Ok(())
    }

    fn publish(&mut self, next_id: u64, overflowed: u64) {
        // Ordering: Relaxed: informational counters, read only after `used` below.
        self.region
            .atomic_u64(TABLE_USED_OFFSET + 8)
            .store(next_id, Ordering::Relaxed);
        // Ordering: Relaxed: as above.
        self.region
            .atomic_u64(TABLE_USED_OFFSET + 16)
            .store(overflowed, Ordering::Relaxed);
        // Ordering: Release publishes the entries written below `used` to readers' Acquire load.
        self.region
            .atomic_u64(TABLE_USED_OFFSET)
            .store(self.used, Ordering::Release);
    }
}

/// Encode strings as u32 length + bytes each.
pub(crate) fn encode_strings(strings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        push_str(&mut out, s);
    }
    out
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_family(f: &FamilyDef) -> Vec<u8> {
    let mut out = encode_strings(&[&f.name, &f.help, &f.unit]);
    out.extend_from_slice(&(f.labels.len() as u32).to_le_bytes());
    for l in &f.labels {
        push_str(&mut out, l);
    }
    out.extend_from_slice(&(f.buckets.len() as u32).to_le_bytes());
    for b in &f.buckets {
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

fn encode_series(values: &[&str]) -> Vec<u8> {
    let mut out = (values.len() as u32).to_le_bytes().to_vec();
    for v in values {
        push_str(&mut out, v);
    }
    out
}

/// Whether `name` is a valid Prometheus metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid Prometheus label name (and not reserved).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Take the interning lock before `fork()` (the at-fork prepare handler forgets the guard).
pub(crate) fn lock_for_fork() -> parking_lot::MutexGuard<'static, Option<Process>> {
    PROCESS.lock()
}

/// Release the lock taken by [`lock_for_fork`] in the parent and in the child.
pub(crate) fn unlock_after_fork() {
    // SAFETY: called only by the at-fork parent/child handlers, after `fork_prepare` locked the
    // mutex and forgot its guard on this same thread.
    unsafe { PROCESS.force_unlock() }
}
