//! The file log sink: rendered lines (JSON, logfmt or plain) appended to a file that is rotated
//! by size and by time, keeping N rotated files, optionally gzipped.
//!
//! Rotated files are named as logrotate names them (the `file-rotate` crate's `AppendCount`
//! scheme): `app.log` is the live file, `app.log.1` the newest rotated one, `app.log.2` the one
//! before, ... (`app.log.1.gz`, ... when `compress = true`). Filebeat, Fluent Bit and Vector tail
//! such a set out of the box (a `path: app.log*` glob, or the live file with rename detection).
//!
//! - **Size**: a line never straddles two files. Before a write that would take the live file
//!   past `max_bytes`, the whole lines that still fit are written, the file is rotated and the
//!   rest goes to the new file; every write call carries whole lines only. A single line longer
//!   than `max_bytes` gets a file of its own (which is then larger than the limit).
//! - **Time**: with `rotate_every`, the live file is rotated when a write finds that a boundary
//!   (a multiple of the interval since the Unix epoch, UTC: `1h` rotates on the hour, `1d` at
//!   midnight UTC) passed since its first line was written. Rotation is checked when lines are
//!   written: an interval in which nothing was logged produces no file, and after a quiet spell
//!   the old file is rotated when the next line arrives, as logrotate-style tools expect. After a
//!   restart, a non-empty live file counts as written at its modification time.
//! - **Keep**: at most `keep` rotated files remain; older ones are deleted at rotation
//!   (`keep = 0`: rotated files are deleted at once).
//! - Lines are never lost or written twice across a rotation: the sink owns the file and writes
//!   it from one thread; a batch interrupted by a write error is resumed where it stopped when it
//!   is retried (a partly written line is cut off first). A failed rotation (rename, gzip) is
//!   logged and writing goes on into the live file.
//!
//! This sink owns its rotation: do not also point logrotate at the file. (A live file removed
//! or renamed by someone else is noticed at the next write, and a new one is created.)
//!
//! # Configuration
//!
//! ```toml
//! [[logs.file]]                # one section per file
//! path = "/var/log/app/app.log"    # required; relative to the configuration file's directory
//! name = "file"                # the `sink` label of its self-metrics (default file, file.1, ...)
//! format = "json"              # json | logfmt | plain (default: [logs] format)
//! max_bytes = 104857600        # rotate before passing this size; 0: no size rotation
//! rotate_every = "1d"          # rotate on multiples of this interval (s, m, h, d); default none
//! keep = 7                     # rotated files kept
//! compress = false             # gzip rotated files (app.log.1.gz, ...)
//! file_mode = "0640"           # mode of the files the sink creates (exactly; not masked)
//! batch_size = 512             # lines per write
//! batch_timeout_ms = 100       # longest a line waits before it is written
//! queue_size = 65536           # lines held at most; beyond, dropped and counted
//! ```
//!
//! A failed write (disk full) is retried with backoff (100 ms doubling to 2 s) for up to 10 s,
//! after which the batch counts as failed.

use std::fs::{File, OpenOptions, Permissions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use serde::Deserialize;

use super::render::{Format, Renderer};
use crate::export::check_batching;
use crate::export::sender::{BatchSettings, BatchSink, Outcome, Transport};
use crate::export::stats::ExporterStats;
use crate::sinks::LogSink;

/// `[[logs.file]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The file written to (required).
    pub path: PathBuf,
    /// The `sink` label of the self-metrics (default: chosen by the pipeline, `file`, `file.1`).
    pub name: Option<String>,
    /// Line format (default: `[logs] format`).
    pub format: Option<Format>,
    /// Size rotation threshold in bytes (default 100 MiB; 0: none).
    pub max_bytes: u64,
    /// Time rotation interval, e.g. `"1h"` (default none).
    pub rotate_every: Option<String>,
    /// Rotated files kept (default 7).
    pub keep: usize,
    /// Gzip rotated files (default false).
    pub compress: bool,
    /// Mode of created files, octal (default `"0640"`).
    pub file_mode: String,
    /// Lines per write (default 512).
    pub batch_size: usize,
    /// Longest a line waits before it is written (default 100).
    pub batch_timeout_ms: u64,
    /// Lines held at most (default 65536).
    pub queue_size: usize,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: PathBuf::new(),
            name: None,
            format: None,
            max_bytes: 100 << 20,
            rotate_every: None,
            keep: 7,
            compress: false,
            file_mode: "0640".into(),
            batch_size: 512,
            batch_timeout_ms: 100,
            queue_size: 65_536,
        }
    }
}

/// A sink name given in the configuration must be a non-empty label value.
pub(crate) fn check_name(prefix: &str, name: &Option<String>) -> Result<(), (String, String)> {
    match name {
        Some(n) if n.trim().is_empty() => {
            Err((format!("{prefix}.name"), "must not be empty".into()))
        }
        _ => Ok(()),
    }
}

impl FileConfig {
    /// Check the section; errors are (key, message), `key` prefixed with `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err((format!("{prefix}.path"), "is required".into()));
        }
        if self.path.file_name().is_none() {
            return Err((format!("{prefix}.path"), "must name a file".into()));
        }
        check_name(prefix, &self.name)?;
        self.every()
            .map_err(|m| (format!("{prefix}.rotate_every"), m))?;
        self.mode()
            .map_err(|m| (format!("{prefix}.file_mode"), m))?;
        check_batching(
            prefix,
            self.batch_size,
            self.batch_timeout_ms,
            self.queue_size,
        )
    }

    /// Make a relative path relative to `base` (the configuration file's directory).
    pub fn anchor_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
    }

    /// The time rotation interval.
    pub fn every(&self) -> Result<Option<Duration>, String> {
        self.rotate_every.as_deref().map(parse_interval).transpose()
    }

    /// The file mode.
    pub fn mode(&self) -> Result<u32, String> {
        parse_mode(&self.file_mode)
    }

    fn batch(&self) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size,
            batch_timeout: Duration::from_millis(self.batch_timeout_ms),
            queue_size: self.queue_size,
            // A failing write (disk full) is retried for a while like a network send.
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
        }
    }
}

/// `"30s"`, `"15m"`, `"1h"`, `"1d"`: a whole number of seconds, minutes, hours or days, at
/// least one second.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\", \"15m\", \"1h\", \"1d\""))?;
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be s, m, h or d (like \"30s\", \"15m\", \"1h\", \"1d\")"
            ))
        }
    };
    match n.checked_mul(unit_secs) {
        Some(0) => Err(format!("{text:?}: must be at least 1s")),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("{text:?} is too long")),
    }
}

/// An octal mode string (`"0640"`, `"640"`, `"0o640"`), at most `0777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if !digits.is_empty() && m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{text:?} is not an octal file mode like \"0640\" (at most 0777)"
        )),
    }
}

/// Start the sink.
pub fn start(
    cfg: &FileConfig,
    renderer: Renderer,
    stats: Arc<ExporterStats>,
) -> Result<Box<dyn LogSink>, String> {
    let out = RotatingFile::open(
        &RotateSettings::from_config(cfg)?,
        Box::new(crate::sinks::wall_clock_ns),
    )?;
    tracing::info!(path = %cfg.path.display(), sink = stats.name, "writing log lines to a file");
    let sink = BatchSink::start(cfg.batch(), stats, renderer, out)?;
    Ok(Box::new(sink))
}

/// What [`RotatingFile`] needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RotateSettings {
    /// The live file.
    pub path: PathBuf,
    /// Size threshold (0: none).
    pub max_bytes: u64,
    /// Time rotation interval, whole seconds.
    pub every_secs: Option<u64>,
    /// Rotated files kept.
    pub keep: usize,
    /// Gzip rotated files.
    pub compress: bool,
    /// Mode of created files.
    pub mode: u32,
}

impl RotateSettings {
    /// From a (validated) section.
    pub fn from_config(cfg: &FileConfig) -> Result<RotateSettings, String> {
        Ok(RotateSettings {
            path: cfg.path.clone(),
            max_bytes: cfg.max_bytes,
            every_secs: cfg.every()?.map(|d| d.as_secs()),
            keep: cfg.keep,
            compress: cfg.compress,
            mode: cfg.mode()?,
        })
    }
}

/// Where a retried batch resumes: the body a failed attempt was working on (identified by its
/// address, length and a hash, computed only when an attempt fails) and how much of it is done.
/// The batching sender retries with the very same buffer, so a match means "the same batch".
#[derive(Debug, Default)]
pub(crate) struct Resume {
    key: Option<(usize, usize, u64)>,
    done: usize,
}

impl Resume {
    fn hash(body: &[u8]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        h.finish()
    }

    /// Bytes of `body` already delivered by earlier attempts.
    pub(crate) fn start(&mut self, body: &[u8]) -> usize {
        match self.key.take() {
            Some((p, n, h))
                if p == body.as_ptr() as usize && n == body.len() && h == Self::hash(body) =>
            {
                std::mem::take(&mut self.done)
            }
            _ => {
                self.done = 0;
                0
            }
        }
    }

    /// An attempt stopped after `done` bytes of `body`.
    pub(crate) fn stopped(&mut self, body: &[u8], done: usize) {
        self.key = Some((body.as_ptr() as usize, body.len(), Self::hash(body)));
        self.done = done;
    }
}

/// The transport of the file sink: appends bodies of whole lines to the live file, rotating it
/// by size and time (`file-rotate` does the renames, the deletion of old files and the gzip).
pub struct RotatingFile {
    settings: RotateSettings,
    rotator: FileRotate<AppendCount>,
    /// Our own append handle (`FileRotate` would silently drop writes it cannot make).
    file: Option<File>,
    /// Bytes in the live file.
    size: u64,
    /// The time-rotation period the live file's first line was written in.
    period: Option<u64>,
    clock: Box<dyn Fn() -> u64 + Send>,
    resume: Resume,
    last_warning: Option<Instant>,
}

impl RotatingFile {
    /// Open (create) the live file; `clock` gives the wall clock in ns (time rotation).
    pub fn open(
        settings: &RotateSettings,
        clock: Box<dyn Fn() -> u64 + Send>,
    ) -> Result<RotatingFile, String> {
        let path = &settings.path;
        let show = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the directory of {show}: {e}"))?;
        }
        if path.is_dir() {
            return Err(format!("{show} is a directory"));
        }
        let file =
            open_live(path, settings.mode).map_err(|e| format!("cannot open {show}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat {show}: {e}"))?;
        let size = meta.len();
        let period = match settings.every_secs {
            Some(every) if size > 0 => meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() / every),
            _ => None,
        };
        let rotator =
            new_rotator(settings).ok_or_else(|| format!("cannot set up the rotation of {show}"))?;
        Ok(RotatingFile {
            settings: settings.clone(),
            rotator,
            file: Some(file),
            size,
            period,
            clock,
            resume: Resume::default(),
            last_warning: None,
        })
    }

    /// The rotated files, oldest first.
    pub fn rotated_paths(&mut self) -> Vec<PathBuf> {
        self.rotator.log_paths()
    }

    fn warn(&mut self, what: &str, e: &dyn std::fmt::Display) {
        // One warning a minute is enough to notice a broken rotation without flooding.
        if self
            .last_warning
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        tracing::warn!(path = %self.settings.path.display(), "log file {what}: {e}");
    }

    /// Rotate now. A failure is logged, and writing goes on into whatever file is live.
    fn rotate(&mut self) {
        self.file = None;
        if let Some(dir) = self.settings.path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    self.warn("rotation failed (no directory)", &e);
                    return;
                }
            }
        }
        // file-rotate panics (asserts) when the files on disk are not what it scanned: rebuild
        // its view then, rather than lose the sending thread.
        match catch_unwind(AssertUnwindSafe(|| self.rotator.rotate())) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.warn("rotation failed", &e),
            Err(_) => {
                if let Some(r) = new_rotator(&self.settings) {
                    self.rotator = r;
                }
                self.warn(
                    "rotation failed",
                    &"the rotated files changed under the sink",
                );
            }
        }
        if self.settings.compress {
            // flate2 creates the .gz files with the default mode.
            let perm = Permissions::from_mode(self.settings.mode);
            for p in self.rotator.log_paths() {
                let _ = std::fs::set_permissions(p, perm.clone());
            }
        }
    }

    /// The time-rotation period of the wall clock now (None without time rotation).
    fn current_period(&self) -> Option<u64> {
        self.settings
            .every_secs
            .map(|every| (self.clock)() / 1_000_000_000 / every)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let f = open_live(&self.settings.path, self.settings.mode)?;
        self.size = f.metadata()?.len();
        if self.size == 0 {
            self.period = None;
        }
        self.file = Some(f);
        Ok(())
    }

    /// Write `chunk` (whole lines) to the live file; on error, cut a partial write off.
    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("the file is not open"));
        };
        match f.write_all(chunk) {
            Ok(()) => {
                self.size += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = f.set_len(self.size);
                self.file = None;
                Err(e)
            }
        }
    }

    /// Write `body` from byte `from`; returns how far it got and the error that stopped it.
    fn write_from(&mut self, body: &[u8], from: usize) -> Result<(), (usize, io::Error)> {
        let mut off = from;
        if self
            .file
            .as_ref()
            .is_some_and(|f| !still_linked(f, &self.settings.path))
        {
            // Removed or renamed by someone else: write to a file at `path` again.
            self.file = None;
        }
        if self.file.is_none() {
            self.reopen().map_err(|e| (off, e))?;
        }
        let now = self.current_period();
        if self.size > 0 && now.is_some() && self.period.is_some_and(|p| Some(p) != now) {
            self.rotate();
            self.reopen().map_err(|e| (off, e))?;
        }
        let max = self.settings.max_bytes;
        while off < body.len() {
            let rest = &body[off..];
            let room = if max == 0 {
                usize::MAX
            } else {
                max.saturating_sub(self.size).min(usize::MAX as u64) as usize
            };
            let take = if rest.len() <= room {
                rest.len()
            } else if let Some(i) = rest[..room].iter().rposition(|&b| b == b'\n') {
                i + 1
            } else if self.size > 0 {
                // Not even one more line fits: start a new file.
                self.rotate();
                self.reopen().map_err(|e| (off, e))?;
                continue;
            } else {
                // One line longer than the limit: it gets a file of its own.
                rest.iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1)
            };
            if self.size == 0 || self.period.is_none() {
                self.period = now;
            }
            self.write_chunk(&rest[..take]).map_err(|e| (off, e))?;
            off += take;
        }
        Ok(())
    }
}

impl Transport for RotatingFile {
    fn send(&mut self, body: &[u8]) -> Outcome {
        let from = self.resume.start(body);
        match self.write_from(body, from) {
            Ok(()) => Outcome::Done,
            Err((done, e)) => {
                self.resume.stopped(body, done);
                Outcome::Retry {
                    after: None,
                    why: format!("{}: {e}", self.settings.path.display()),
                }
            }
        }
    }
}

/// Whether `path` still names the file `f` is open on.
fn still_linked(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Open the live file for appending; a file this creates gets exactly `mode`.
fn open_live(path: &Path, mode: u32) -> io::Result<File> {
    let existed = path.exists();
    let f = open_options(mode).open(path)?;
    if !existed {
        f.set_permissions(Permissions::from_mode(mode))?;
    }
    Ok(f)
}

fn open_options(mode: u32) -> OpenOptions {
    let mut o = OpenOptions::new();
    // file-rotate asks for read access on the handles it opens.
    o.read(true).create(true).append(true).mode(mode);
    o
}

/// The crate's rotator (renames, deletion beyond `keep`, gzip); `None` if it panicked.
fn new_rotator(s: &RotateSettings) -> Option<FileRotate<AppendCount>> {
    let compression = if s.compress {
        Compression::OnRotate(0)
    } else {
        Compression::None
    };
    catch_unwind(|| {
        FileRotate::new(
            &s.path,
            AppendCount::new(s.keep),
            ContentLimit::None,
            compression,
            Some(open_options(s.mode)),
        )
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn settings(dir: &Path) -> RotateSettings {
        RotateSettings {
            path: dir.join("app.log"),
            max_bytes: 0,
            every_secs: None,
            keep: 7,
            compress: false,
            mode: 0o640,
        }
    }

    fn read(p: &Path) -> String {
        let mut s = String::new();
        if p.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(File::open(p).unwrap())
                .read_to_string(&mut s)
                .unwrap();
        } else {
            File::open(p).unwrap().read_to_string(&mut s).unwrap();
        }
        s
    }

    fn lines(from: u64, to: u64) -> Vec<u8> {
        (from..to)
            .flat_map(|i| format!("line {i:05}\n").into_bytes())
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_interval(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "",
            "1",
            "h",
            "0s",
            "1w",
            "1.5h",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o644"), Ok(0o644));
        for bad in ["", "0o", "0999", "rw-r-----", "01777"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_defaults_and_errors() {
        let c: FileConfig = toml::from_str("path = \"a.log\"").unwrap();
        assert_eq!(
            (c.max_bytes, c.keep, c.compress, c.mode(), c.every()),
            (104_857_600, 7, false, Ok(0o640), Ok(None))
        );
        assert!(c.validate("logs.file[0]").is_ok());
        let c: FileConfig = toml::from_str(
            "path = \"a.log\"\nname = \"audit\"\nformat = \"logfmt\"\nrotate_every = \"1h\"\ncompress = true",
        )
        .unwrap();
        assert_eq!(c.format, Some(Format::Logfmt));
        assert_eq!(c.every(), Ok(Some(Duration::from_secs(3600))));
        assert!(toml::from_str::<FileConfig>("path = \"a\"\nmax_size = 1").is_err());
        let bad = |t: &str, key: &str| {
            let c: FileConfig = toml::from_str(t).unwrap();
            assert_eq!(c.validate("logs.file[1]").unwrap_err().0, key, "{t}");
        };
        bad("keep = 1", "logs.file[1].path");
        bad(
            "path = \"a\"\nrotate_every = \"1w\"",
            "logs.file[1].rotate_every",
        );
        bad("path = \"a\"\nfile_mode = \"rw\"", "logs.file[1].file_mode");
        bad("path = \"a\"\nbatch_size = 0", "logs.file[1].batch_size");
        bad("path = \"a\"\nqueue_size = 10", "logs.file[1].queue_size");
        bad("path = \"a\"\nname = \" \"", "logs.file[1].name");
        let mut c: FileConfig = toml::from_str("path = \"a.log\"").unwrap();
        c.anchor_paths(Path::new("/etc/shmtel"));
        assert_eq!(c.path, Path::new("/etc/shmtel/a.log"));
    }

    #[test]
    fn size_rotation_keeps_lines_whole_and_names_files_like_logrotate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_bytes = 100; // 9 lines of 11 bytes
        s.keep = 3;
        let mut f = RotatingFile::open(&s, Box::new(|| 0)).unwrap();
        assert_eq!(f.send(&lines(0, 20)), Outcome::Done);
        assert_eq!(f.send(&lines(20, 30)), Outcome::Done);
        assert_eq!(
            names(dir.path()),
            ["app.log", "app.log.1", "app.log.2", "app.log.3"]
        );
        let all: String = [".3", ".2", ".1", ""]
            .iter()
            .map(|x| read(&dir.path().join(format!("app.log{x}"))))
            .collect();
        assert_eq!(all.as_bytes(), &lines(0, 30)[..]);
        for x in [".3", ".2", ".1"] {
            let t = read(&dir.path().join(format!("app.log{x}")));
            assert_eq!(t.len(), 99, "{x}: {t:?}");
        }
        // One more file: the oldest goes (keep = 3).
        assert_eq!(f.send(&lines(30, 40)), Outcome::Done);
        assert_eq!(
            names(dir.path()),
            ["app.log", "app.log.1", "app.log.2", "app.log.3"]
        );
        assert!(read(&dir.path().join("app.log.3")).starts_with("line 00009"));
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn an_overlong_line_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_bytes = 20;
        let mut f = RotatingFile::open(&s, Box::new(|| 0)).unwrap();
        let long = format!("{}\n", "x".repeat(50));
        let body = [b"a\n".as_slice(), long.as_bytes(), b"b\n"].concat();
        assert_eq!(f.send(&body), Outcome::Done);
        assert_eq!(read(&dir.path().join("app.log.2")), "a\n");
        assert_eq!(read(&dir.path().join("app.log.1")), long);
        assert_eq!(read(&s.path), "b\n");
    }

    #[test]
    fn time_rotation_on_interval_boundaries_with_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.every_secs = Some(60);
        s.compress = true;
        s.keep = 2;
        s.mode = 0o600;
        let now = Arc::new(AtomicU64::new(120 * 1_000_000_000));
        let clock = now.clone();
        // Ordering: Relaxed: a test clock read on this thread.
        let mut f =
            RotatingFile::open(&s, Box::new(move || clock.load(Ordering::Relaxed))).unwrap();
        let at = |secs: u64| now.store(secs * 1_000_000_000, Ordering::Relaxed);
        assert_eq!(f.send(b"a\n"), Outcome::Done);
        at(179);
        assert_eq!(f.send(b"b\n"), Outcome::Done);
        assert_eq!(names(dir.path()), ["app.log"], "still the same minute");
        at(180);
        assert_eq!(f.send(b"c\n"), Outcome::Done);
        assert_eq!(names(dir.path()), ["app.log", "app.log.1.gz"]);
        assert_eq!(read(&dir.path().join("app.log.1.gz")), "a\nb\n");
        // A quiet hour: one rotation when the next line comes, no empty files.
        at(4000);
        assert_eq!(f.send(b"d\n"), Outcome::Done);
        at(4100);
        assert_eq!(f.send(b"e\n"), Outcome::Done);
        assert_eq!(
            names(dir.path()),
            ["app.log", "app.log.1.gz", "app.log.2.gz"]
        );
        assert_eq!(read(&dir.path().join("app.log.2.gz")), "c\n");
        assert_eq!(read(&dir.path().join("app.log.1.gz")), "d\n");
        assert_eq!(read(&s.path), "e\n");
        for n in names(dir.path()) {
            let m = std::fs::metadata(dir.path().join(&n))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600, "{n}");
        }
    }

    #[test]
    fn a_restart_continues_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_bytes = 4;
        {
            let mut f = RotatingFile::open(&s, Box::new(|| 0)).unwrap();
            assert_eq!(f.send(b"a\nb\nc\n"), Outcome::Done);
        }
        let mut f = RotatingFile::open(&s, Box::new(|| 0)).unwrap();
        assert_eq!(f.send(b"d\n"), Outcome::Done);
        assert_eq!(read(&s.path), "c\nd\n", "the size on disk counts");
        assert_eq!(f.send(b"e\n"), Outcome::Done);
        assert_eq!(names(dir.path()), ["app.log", "app.log.1", "app.log.2"]);
        assert_eq!(read(&dir.path().join("app.log.2")), "a\nb\n");
        assert_eq!(read(&dir.path().join("app.log.1")), "c\nd\n");
        assert_eq!(read(&s.path), "e\n");
        assert_eq!(f.rotated_paths().len(), 2);
    }

    #[test]
    fn a_retry_resumes_where_the_write_stopped() {
        let mut r = Resume::default();
        let body = b"one\ntwo\n".to_vec();
        assert_eq!(r.start(&body), 0);
        r.stopped(&body, 4);
        assert_eq!(r.start(&body), 4, "the same buffer again");
        let other = b"one\ntwo\n".to_vec();
        r.stopped(&body, 4);
        assert_eq!(r.start(&other), 0, "another buffer is another batch");
    }

    #[test]
    fn a_live_file_removed_behind_the_sinks_back_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut f = RotatingFile::open(&s, Box::new(|| 0)).unwrap();
        assert_eq!(f.send(b"a\n"), Outcome::Done);
        std::fs::remove_file(&s.path).unwrap();
        assert_eq!(f.send(b"b\n"), Outcome::Done);
        assert_eq!(read(&s.path), "b\n");
    }

    #[test]
    fn unopenable_paths_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let s = RotateSettings {
            path: dir.path().to_owned(),
            ..settings(dir.path())
        };
        assert!(RotatingFile::open(&s, Box::new(|| 0)).is_err());
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let s = RotateSettings {
            path: blocker.join("app.log"),
            ..settings(dir.path())
        };
        assert!(RotatingFile::open(&s, Box::new(|| 0)).is_err());
    }
}
