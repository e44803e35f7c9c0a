//! Region files: creation by writers, validated opening by readers.
//!
//! A writer creates each file with `O_CREAT | O_EXCL`, mode 0600, sizes it, maps it, fills the
//! header with `layout_version = 0`, and stores `layout_version` last with release ordering: a
//! reader that loads a non-zero version with acquire ordering sees a complete header.
//! A reader never trusts the bytes: [`RegionFile::open`] checks the file type, owner, mode, size,
//! magic, version and every offset the header declares before anything else touches the mapping.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering as StdOrdering};

use memmap2::{MmapOptions, MmapRaw};

use crate::clock::ClockAnchor;
use crate::layout::*;
use crate::ring::RingMemory;

/// Who wrote a region: the identity every file name and header carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
    /// Effective uid.
    pub uid: u32,
}

impl ProcessIdentity {
    /// The identity of the calling process (system calls: not for the hot path).
    pub fn current() -> io::Result<Self> {
        // SAFETY: getpid and geteuid have no preconditions.
        let (pid, uid) = unsafe { (libc::getpid() as u32, libc::geteuid()) };
        let start = process_start_time(pid)?
            .ok_or_else(|| io::Error::other("cannot read own /proc/self/stat"))?;
        Ok(ProcessIdentity { pid, start, uid })
    }

    /// File name of this process's table.
    pub fn table_file_name(&self) -> String {
        format!("{}-{}.table", self.pid, self.start)
    }

    /// File name of a thread ring.
    pub fn ring_file_name(&self, tid: u32, seq: u32) -> String {
        format!("{}-{}-{}-{}.ring", self.pid, self.start, tid, seq)
    }
}

/// Start time of `pid` in clock ticks since boot, or `None` if no such process.
pub fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After ')': field 3 (state) is index 0, so field 22 is index 19.
    let start = rest.split_whitespace().nth(19).and_then(|s| s.parse().ok());
    Ok(start)
}

/// Whether the process that wrote a region is still running: same pid and same start time.
/// A zombie counts as dead.
pub fn process_alive(pid: u32, start: u64) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    fields.nth(18).and_then(|s| s.parse::<u64>().ok()) == Some(start)
}

/// What a region file's name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionName {
    /// `<pid>-<start>.table`
    Table {
        /// Writer pid.
        pid: u32,
        /// Writer start time.
        start: u64,
    },
    /// `<pid>-<start>-<tid>-<seq>.ring`
    Ring {
        /// Writer pid.
        pid: u32,
        /// Writer start time.
        start: u64,
        /// Writer thread id.
        tid: u32,
        /// Per-process sequence number of the ring.
        seq: u32,
    },
}

impl RegionName {
    /// Parse a file name; `None` for files that are not regions.
    pub fn parse(name: &str) -> Option<RegionName> {
        let r = Self::parse_loose(name)?;
        // Only canonical spellings (no sign, no leading zeros) are region names.
        let canonical = match &r {
            RegionName::Table { pid, start } => format!("{pid}-{start}.table"),
            RegionName::Ring {
                pid,
                start,
                tid,
                seq,
            } => format!("{pid}-{start}-{tid}-{seq}.ring"),
        };
        (canonical == name).then_some(r)
    }

    fn parse_loose(name: &str) -> Option<RegionName> {
        if let Some(stem) = name.strip_suffix(".table") {
            let (pid, start) = stem.split_once('-')?;
            return Some(RegionName::Table {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            });
        }
        let stem = name.strip_suffix(".ring")?;
        let mut it = stem.split('-');
        let r = RegionName::Ring {
            pid: it.next()?.parse().ok()?,
            start: it.next()?.parse().ok()?,
            tid: it.next()?.parse().ok()?,
            seq: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(r)
    }

    /// (pid, start) of the writer.
    pub fn process(&self) -> (u32, u64) {
        match *self {
            RegionName::Table { pid, start } | RegionName::Ring { pid, start, .. } => (pid, start),
        }
    }
}

/// Why a region file was rejected. `reason()` is a short stable label for metrics.
#[derive(Debug)]
pub enum RegionError {
    /// An I/O error opening or mapping the file.
    Io(io::Error),
    /// A symlink, directory, FIFO, ...
    NotRegularFile,
    /// The file belongs to another user than the reader.
    WrongOwner {
        /// Owner of the file.
        file_uid: u32,
        /// The reader's effective uid.
        our_uid: u32,
    },
    /// Group or others may write the file.
    InsecureMode(u32),
    /// Shorter than its header, or than the header says.
    Truncated {
        /// Actual size.
        actual: u64,
        /// Size needed.
        needed: u64,
    },
    /// The magic bytes are wrong.
    BadMagic,
    /// `layout_version` is 0: the writer has not finished creating it (or died doing so).
    NotReady,
    /// A layout version this reader does not implement.
    UnsupportedVersion(u32),
    /// A header field is out of range.
    BadHeader(String),
    /// The file name and the header disagree.
    NameMismatch(String),
}

impl RegionError {
    /// A short label for the `reason` of the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            RegionError::Io(_) => "io",
            RegionError::NotRegularFile => "not_regular_file",
            RegionError::WrongOwner { .. } => "wrong_owner",
            RegionError::InsecureMode(_) => "insecure_mode",
            RegionError::Truncated { .. } => "truncated",
            RegionError::BadMagic => "bad_magic",
            RegionError::NotReady => "not_ready",
            RegionError::UnsupportedVersion(_) => "unsupported_version",
            RegionError::BadHeader(_) => "bad_header",
            RegionError::NameMismatch(_) => "name_mismatch",
        }
    }
}

impl std::fmt::Display for RegionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegionError::Io(e) => write!(f, "i/o error: {e}"),
            RegionError::NotRegularFile => {
                write!(f, "not a regular file (symlink or special file)")
            }
            RegionError::WrongOwner { file_uid, our_uid } => {
                write!(
                    f,
                    "owned by uid {file_uid}, not by this reader's uid {our_uid}"
                )
            }
            RegionError::InsecureMode(m) => write!(f, "mode {m:o} lets others write it"),
            RegionError::Truncated { actual, needed } => {
                write!(f, "truncated: {actual} bytes, at least {needed} needed")
            }
            RegionError::BadMagic => write!(f, "not a shmtel region (bad magic)"),
            RegionError::NotReady => write!(f, "header not initialised yet (layout_version 0)"),
            RegionError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "layout version {v} is not supported (this reader reads {LAYOUT_VERSION})"
                )
            }
            RegionError::BadHeader(s) => write!(f, "invalid header: {s}"),
            RegionError::NameMismatch(s) => write!(f, "file name does not match header: {s}"),
        }
    }
}

impl std::error::Error for RegionError {}

impl From<io::Error> for RegionError {
    fn from(e: io::Error) -> Self {
        RegionError::Io(e)
    }
}

/// A mapped region file.
pub struct RegionFile {
    /// Declared before `map`: it unregisters the range before the mapping goes away.
    guard: crate::sigbus::Registration,
    map: MmapRaw,
    path: PathBuf,
    header: RegionHeader,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through atomics or through
// the ring protocol, which gives each byte range a single owner at a time.
unsafe impl Send for RegionFile {}
// SAFETY: as above; shared references only read through atomics or copy bytes out.
unsafe impl Sync for RegionFile {}

/// Parameters of a new region.
pub struct NewRegion<'a> {
    /// Directory to create the file in (created with mode 0700 if missing).
    pub dir: &'a Path,
    /// File name.
    pub name: &'a str,
    /// Writer identity.
    pub identity: &'a ProcessIdentity,
    /// Writer thread id (0 for a table).
    pub tid: u32,
    /// [`REGION_RING`] or [`REGION_TABLE`].
    pub kind: u32,
    /// Ring capacity or table entry area size.
    pub data_capacity: u64,
    /// Overflow slots (ring) or max ids (table).
    pub slots: u64,
    /// Clock anchor.
    pub anchor: ClockAnchor,
    /// Thread name.
    pub thread_name: &'a str,
    /// Service name.
    pub service: &'a str,
    /// File mode (0o600 by default).
    pub mode: u32,
}

fn copy_name<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Create a directory for regions (mode 0700) if it does not exist.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl RegionFile {
    /// Create and initialise a region file (writer side). The file is complete and marked ready
    /// when this returns.
    pub fn create(p: &NewRegion<'_>) -> io::Result<RegionFile> {
        ensure_dir(p.dir)?;
        let (data_offset, overflow_offset, size) = if p.kind == REGION_RING {
            let data_offset = RING_DATA_OFFSET as u64;
            let overflow_offset = data_offset + p.data_capacity;
            let size = overflow_offset + p.slots * std::mem::size_of::<OverflowSlot>() as u64;
            (
                data_offset,
                if p.slots > 0 { overflow_offset } else { 0 },
                size,
            )
        } else {
            let data_offset = TABLE_DATA_OFFSET as u64;
            (data_offset, 0, data_offset + p.data_capacity)
        };
        // Created under a name readers ignore, completed, then renamed into place: a reader
        // never sees a file with a region name whose header is still being written.
        let path = p.dir.join(p.name);
        let tmp = p.dir.join(format!(".{}.tmp", p.name));
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(p.mode)
            .open(&tmp)?;
        file.set_len(size)?;
        let map = MmapOptions::new().len(size as usize).map_raw(&file)?;
        let header = RegionHeader {
            magic: MAGIC,
            layout_version: 0,
            region_kind: p.kind,
            file_size: size,
            header_size: HEADER_SIZE as u32,
            owner_uid: p.identity.uid,
            pid: p.identity.pid,
            tid: p.tid,
            process_start: p.identity.start,
            created_wall_ns: crate::clock::wall_ns(),
            clock_source: p.anchor.source,
            reserved0: 0,
            anchor_ticks: p.anchor.ticks,
            anchor_wall_ns: p.anchor.wall_ns,
            ticks_per_sec_bits: p.anchor.ticks_per_sec.to_bits(),
            data_offset,
            data_capacity: p.data_capacity,
            overflow_offset,
            overflow_slots: p.slots,
            thread_name: copy_name(p.thread_name),
            service: copy_name(p.service),
            reserved: [0; 88],
        };
        // SAFETY: the mapping is `size` >= HEADER_SIZE bytes long, freshly created and not yet
        // visible as ready to anyone (layout_version is 0), so we are its only writer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytemuck::bytes_of(&header).as_ptr(),
                map.as_mut_ptr(),
                HEADER_SIZE,
            )
        };
        let region = RegionFile {
            guard: crate::sigbus::register(0, 0),
            map,
            path,
            header,
            writable: true,
        };
        // Ordering: Release: the header written above is visible to any reader whose Acquire
        // load of layout_version sees LAYOUT_VERSION.
        region
            .version_atomic()
            .store(LAYOUT_VERSION, StdOrdering::Release);
        if let Err(e) = std::fs::rename(&tmp, &region.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let mut h = region.header;
        h.layout_version = LAYOUT_VERSION;
        Ok(RegionFile {
            header: h,
            ..region
        })
    }

    /// Open and validate an existing region file (reader side). `writable` maps it read-write
    /// (the collector, which stores the tail); otherwise read-only (dump, tail, stat).
    pub fn open(path: &Path, writable: bool) -> Result<RegionFile, RegionError> {
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.file_type().is_file() {
            return Err(RegionError::NotRegularFile);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        Self::from_file(file, path, writable)
    }

    fn from_file(file: File, path: &Path, writable: bool) -> Result<RegionFile, RegionError> {
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(RegionError::NotRegularFile);
        }
        // SAFETY: geteuid has no preconditions.
        let our_uid = unsafe { libc::geteuid() };
        if meta.uid() != our_uid {
            return Err(RegionError::WrongOwner {
                file_uid: meta.uid(),
                our_uid,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(RegionError::InsecureMode(meta.mode() & 0o7777));
        }
        let actual = meta.len();
        if actual < (HEADER_SIZE + POSITION_SPACING) as u64 {
            return Err(RegionError::Truncated {
                actual,
                needed: (HEADER_SIZE + POSITION_SPACING) as u64,
            });
        }
        let map = if writable {
            MmapOptions::new().len(actual as usize).map_raw(&file)?
        } else {
            MmapOptions::new()
                .len(actual as usize)
                .map_raw_read_only(&file)?
        };
        let guard = crate::sigbus::register(map.as_ptr() as usize, map.len());
        let mut region = RegionFile {
            guard,
            map,
            path: path.to_owned(),
            header: bytemuck::Zeroable::zeroed(),
            writable,
        };
        // Ordering: Acquire pairs with the writer's Release store of the version: a non-zero
        // version means the rest of the header is complete.
        let version = region.version_atomic().load(StdOrdering::Acquire);
        let mut hb = [0u8; HEADER_SIZE];
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked above); we copy it out once
        // and validate the copy, so a concurrent hostile writer cannot change what we checked.
        unsafe { std::ptr::copy_nonoverlapping(region.map.as_ptr(), hb.as_mut_ptr(), HEADER_SIZE) };
        let h: RegionHeader = bytemuck::pod_read_unaligned(&hb);
        if h.magic != MAGIC {
            return Err(RegionError::BadMagic);
        }
        if version == 0 {
            return Err(RegionError::NotReady);
        }
        if version != LAYOUT_VERSION {
            return Err(RegionError::UnsupportedVersion(version));
        }
        validate_header(&h, actual)?;
        if h.owner_uid != meta.uid() {
            return Err(RegionError::WrongOwner {
                file_uid: h.owner_uid,
                our_uid,
            });
        }
        if let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(RegionName::parse)
        {
            let (pid, start) = name.process();
            let kind_ok = matches!(
                (&name, h.region_kind),
                (RegionName::Table { .. }, REGION_TABLE) | (RegionName::Ring { .. }, REGION_RING)
            );
            let tid_ok = match name {
                RegionName::Ring { tid, .. } => tid == h.tid,
                RegionName::Table { .. } => true,
            };
            if pid != h.pid || start != h.process_start || !kind_ok || !tid_ok {
                return Err(RegionError::NameMismatch(format!(
                    "header says pid {} start {} kind {} tid {}",
                    h.pid, h.process_start, h.region_kind, h.tid
                )));
            }
        }
        region.header = RegionHeader {
            layout_version: version,
            ..h
        };
        Ok(region)
    }

    /// The header as validated at open (or as written at create).
    pub fn header(&self) -> &RegionHeader {
        &self.header
    }

    /// Whether the file shrank under this reader: an access past its new end was absorbed by
    /// the SIGBUS guard (see [`crate::sigbus`]) and read zeros. The region must be rejected.
    pub fn poisoned(&self) -> bool {
        self.guard.poisoned()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clock anchor from the header.
    pub fn anchor(&self) -> ClockAnchor {
        ClockAnchor {
            source: self.header.clock_source,
            ticks: self.header.anchor_ticks,
            wall_ns: self.header.anchor_wall_ns,
            ticks_per_sec: f64::from_bits(self.header.ticks_per_sec_bits),
        }
    }

    /// Whether the mapping may be written (the collector's tail store).
    pub fn writable(&self) -> bool {
        self.writable
    }

    fn version_atomic(&self) -> &AtomicU32 {
        // SAFETY: offset 8 is 4-aligned within a page-aligned mapping of >= 256 bytes; the
        // location is only accessed atomically once the file exists.
        unsafe { &*(self.map.as_ptr().add(HEADER_VERSION_OFFSET) as *const AtomicU32) }
    }

    /// An atomic u64 at `offset` of the file.
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.map.len());
        // SAFETY: in bounds and 8-aligned (asserted; the mapping is page aligned); shared memory
        // positions and counters are only accessed through atomics.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// Load a u64 from the writer or reader block (Acquire).
    pub fn load_u64(&self, offset: usize) -> u64 {
        // Ordering: Acquire pairs with the Release stores of positions and counters.
        self.atomic_u64(offset).load(StdOrdering::Acquire)
    }

    /// Raw base pointer of the mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, for a valid region).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Copy `dst.len()` bytes at `offset` out of the mapping; bounds are checked.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> bool {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.map.len())
        {
            return false;
        }
        // SAFETY: bounds checked above; concurrent writes can only change the values copied.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        true
    }
}

fn validate_header(h: &RegionHeader, actual: u64) -> Result<(), RegionError> {
    let bad = |s: String| Err(RegionError::BadHeader(s));
    if h.header_size as usize != HEADER_SIZE {
        return bad(format!("header_size {}", h.header_size));
    }
    if h.file_size != actual {
        return Err(RegionError::Truncated {
            actual,
            needed: h.file_size,
        });
    }
    match h.region_kind {
        REGION_RING => {
            if h.data_offset != RING_DATA_OFFSET as u64 {
                return bad(format!("ring data_offset {}", h.data_offset));
            }
            let cap = h.data_capacity;
            if !cap.is_power_of_two() || !(MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(&cap) {
                return bad(format!("ring capacity {cap}"));
            }
            let data_end = h.data_offset + cap;
            if data_end > actual {
                return Err(RegionError::Truncated {
                    actual,
                    needed: data_end,
                });
            }
            if h.overflow_slots > MAX_OVERFLOW_SLOTS {
                return bad(format!("overflow_slots {}", h.overflow_slots));
            }
            if h.overflow_slots > 0 {
                let end = h.overflow_offset.checked_add(h.overflow_slots * 32);
                if h.overflow_offset < data_end
                    || h.overflow_offset % 8 != 0
                    || end.is_none_or(|e| e > actual)
                {
                    return bad(format!(
                        "overflow area {}+{}",
                        h.overflow_offset, h.overflow_slots
                    ));
                }
            }
        }
        REGION_TABLE => {
            if h.data_offset != TABLE_DATA_OFFSET as u64 {
                return bad(format!("table data_offset {}", h.data_offset));
            }
            if h.data_capacity > MAX_TABLE_SIZE || h.data_offset + h.data_capacity > actual {
                return bad(format!("table capacity {}", h.data_capacity));
            }
        }
        k => return bad(format!("region_kind {k}")),
    }
    if h.clock_source > CLOCK_TSC {
        return bad(format!("clock_source {}", h.clock_source));
    }
    Ok(())
}

/// A ring's memory inside a mapped region file.
pub struct MappedRing {
    region: std::sync::Arc<RegionFile>,
    data: *mut u8,
    head: *const AtomicU64,
    tail: *const AtomicU64,
    cap: u64,
}

// SAFETY: see RegionFile; the raw pointer points into the mapping the Arc keeps alive.
unsafe impl Send for MappedRing {}

impl MappedRing {
    /// The ring of a validated ring region.
    pub fn new(region: std::sync::Arc<RegionFile>) -> MappedRing {
        assert_eq!(region.header.region_kind, REGION_RING);
        // SAFETY: data_offset + capacity <= len was validated at open (or set at create).
        let data = unsafe { region.base().add(region.header.data_offset as usize) };
        let cap = region.header.data_capacity;
        let head: *const AtomicU64 = region.atomic_u64(HEAD_OFFSET);
        let tail: *const AtomicU64 = region.atomic_u64(TAIL_OFFSET);
        MappedRing {
            region,
            data,
            head,
            tail,
            cap,
        }
    }

    /// The region file.
    pub fn region(&self) -> &std::sync::Arc<RegionFile> {
        &self.region
    }
}

impl RingMemory for MappedRing {
    #[inline(always)]
    fn capacity(&self) -> u64 {
        self.cap
    }
    #[inline(always)]
    fn head(&self) -> &AtomicU64 {
        // SAFETY: points into the mapping that `self.region` keeps alive (checked in `new`).
        unsafe { &*self.head }
    }
    #[inline(always)]
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: points into the mapping that `self.region` keeps alive (checked in `new`).
        unsafe { &*self.tail }
    }
    #[inline(always)]
    unsafe fn write(&self, offset: usize, src: &[u8]) {
        // SAFETY: the caller guarantees offset + len <= capacity and ownership of the bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data.add(offset), src.len()) }
    }
    #[inline(always)]
    unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
        // SAFETY: the caller guarantees offset + len <= capacity. A hostile writer may change
        // the bytes while we copy: we only ever validate the copy.
        unsafe { std::ptr::copy_nonoverlapping(self.data.add(offset), dst.as_mut_ptr(), dst.len()) }
    }
}
