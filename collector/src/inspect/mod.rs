//! The inspection commands of the `shmtel` binary: `dump`, `tail` and `stat`.
//!
//! They read region files exactly as the collector does (every header and frame validated, see
//! [`shmtel_core::reader`]) but never write to them: rings are mapped read-only and read from a
//! private position, so inspecting a directory neither consumes records nor disturbs a running
//! collector or writer.
//!
//! - [`dump`]: everything in a directory, once: processes, tables, rings, the records still in
//!   each ring, overflow slots, and the files that failed validation with their reason.
//! - [`tail`]: records as they arrive, one line (or one JSON object) per record.
//! - [`stat`]: the interning tables: families, their series, symbol counts.
//! - [`render`]: pure record formatting shared by the three and by the collector's log sinks.
//!
//! Each command has a clap `Args` struct and a `run(&Args) -> i32` returning the exit code, plus
//! `run_to(&Args, &mut dyn Write)` writing to any sink (tests capture output that way).
//!
//! ## Reading without consuming
//!
//! A reader that does not own the ring's tail can be overtaken: once the collector has consumed
//! past our position, the writer may reuse those bytes while we copy them. [`read_batch`] checks
//! after each read whether that can have happened and then discards what it read and resumes at
//! the collector's tail (a frame boundary), reporting the skipped bytes; the frame validation of
//! the reader guarantees that a torn frame can at worst be discarded, never read out of bounds.

pub mod dump;
pub mod render;
pub mod stat;
pub mod tail;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use shmtel_core::layout::MAX_FRAME;
use shmtel_core::reader::{scan_dir, DecodeError, Record, RingReader};
use shmtel_core::region::RegionName;
use shmtel_core::ring::RingError;

/// The region directory the commands read when neither `--dir` nor `SHMTEL_DIR` is given.
pub const DEFAULT_DIR: &str = "/dev/shm/shmtel/default";

/// A ring file as its name describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RingFile {
    pub path: PathBuf,
    pub tid: u32,
    pub seq: u32,
}

/// The region files of one writer process (identified by pid and start time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessFiles {
    pub table: Option<PathBuf>,
    pub rings: Vec<RingFile>,
}

/// The region files of `dir`, grouped by writer process, in (pid, start) order; rings in
/// (seq, tid) order.
pub(crate) fn scan_processes(dir: &Path) -> io::Result<BTreeMap<(u32, u64), ProcessFiles>> {
    let mut out: BTreeMap<(u32, u64), ProcessFiles> = BTreeMap::new();
    for entry in scan_dir(dir)? {
        let files = out.entry(entry.name.process()).or_default();
        match entry.name {
            RegionName::Table { .. } => files.table = Some(entry.path),
            RegionName::Ring { tid, seq, .. } => files.rings.push(RingFile {
                path: entry.path,
                tid,
                seq,
            }),
        }
    }
    for files in out.values_mut() {
        files
            .rings
            .sort_by(|a, b| (a.seq, a.tid, &a.path).cmp(&(b.seq, b.tid, &b.path)));
    }
    Ok(out)
}

/// A NUL-padded name from a region header (thread name, service) as text.
pub(crate) fn padded_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Frames read by [`read_batch`].
pub(crate) struct Batch<T> {
    /// What the callback made of each frame we vouch for, with the frame's position.
    pub items: Vec<(u64, T)>,
    /// Bytes passed over because the writer overwrote them (we were lapped) or may have been
    /// overwriting them while we copied.
    pub skipped: u64,
    /// The ring is corrupt at our position (not explained by being lapped). The position is
    /// left at the bad frame.
    pub error: Option<RingError>,
}

/// Read up to `max_frames` frames from the reader's position without consuming, and advance
/// the position past what was read.
///
/// When the writer has lapped our position (it wrote more than a capacity past it, which it can
/// only do after the collector consumed those bytes), or may have been reusing the bytes while we
/// copied them, whatever was read there is discarded and the position jumps to the shared tail,
/// the collector's position, which is a frame boundary that the writer cannot pass by more than
/// the capacity. The check uses the positions loaded after the copy: a frame at `p` is safe if
/// the tail was still at or before `p` (the writer could not claim `p + capacity` yet), or if the
/// head is still at least a maximal uncommitted frame short of `p + capacity`.
pub(crate) fn read_batch<T>(
    reader: &mut RingReader,
    max_frames: usize,
    mut f: impl FnMut(u64, Result<Record<'_>, DecodeError>) -> T,
) -> Batch<T> {
    let start = reader.position();
    let mut items = Vec::new();
    let result = reader.read(max_frames, false, |position, record| {
        items.push((position, f(position, record)))
    });
    // Ordering: Acquire fence: the frame bytes copied above are ordered before the position loads
    // below, as a seqlock reader orders its data reads before re-checking the sequence. If the
    // loads show the writer could not have reached those bytes yet, the copies are intact.
    fence(Ordering::Acquire);
    let stats = reader.stats();
    let (mut end, mut error) = match result {
        Ok(_) => (reader.position(), None),
        Err(e @ RingError::BadFrame { position, .. }) => (position, Some(e)),
        Err(e @ RingError::BadPositions { .. }) => (start, Some(e)),
    };
    let cap = stats.capacity;
    if let Some(RingError::BadPositions { head, .. }) = error {
        let lapped = head > start && head - start > cap;
        if lapped && stats.tail > start && stats.tail <= stats.head && stats.tail % 8 == 0 {
            reader.set_position(stats.tail);
            return Batch {
                items: Vec::new(),
                skipped: stats.tail - start,
                error: None,
            };
        }
    }
    let margin = (cap / 4).min(MAX_FRAME as u64);
    let at_risk =
        stats.tail > start && stats.head.saturating_add(margin) > start.saturating_add(cap);
    let mut skipped = 0;
    if at_risk {
        let resync = stats.tail;
        let chained = end >= resync && (end == resync || items.iter().any(|(p, _)| *p == resync));
        if chained {
            items.retain(|(p, _)| *p >= resync);
        } else {
            // Everything read may be torn, including a "bad" frame: start over at the tail.
            items.clear();
            error = None;
            end = resync;
        }
        skipped = resync - start;
    }
    reader.set_position(end);
    Batch {
        items,
        skipped,
        error,
    }
}

/// Turn the outcome of writing a command's output into its exit code: a closed pipe
/// (`shmtel dump | head`) is a normal end, any other write error is reported.
pub(crate) fn exit_code(command: &str, result: io::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("shmtel {command}: cannot write output: {e}");
            1
        }
    }
}

/// The message and exit code for a directory that cannot be listed.
pub(crate) fn dir_error(command: &str, dir: &Path, e: &io::Error) -> i32 {
    eprintln!(
        "shmtel {command}: cannot read region directory {}: {e}",
        dir.display()
    );
    1
}

/// Write a JSON document followed by a newline.
pub(crate) fn write_json(
    out: &mut dyn Write,
    value: &serde_json::Value,
    pretty: bool,
) -> io::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(&mut *out, value)?;
    } else {
        serde_json::to_writer(&mut *out, value)?;
    }
    out.write_all(b"\n")
}
