//! fuzz_reader: a bounded fuzzer for everything that reads shared memory (cargo-fuzz needs a
//! nightly toolchain; this runs on stable, in CI, for a fixed time).
//!
//! ```text
//! fuzz_reader --seconds N [--seed S]      fuzz for N seconds (default 10), seed S (default: time)
//! fuzz_reader --replay FILE...            run the readers on saved inputs (artifacts)
//! fuzz_reader ... --no-clock               skip the clock conversion checks (to fuzz past a
//!                                          known clock bug while it is being fixed)
//! ```
//!
//! At start it writes valid region files with the real writer (a table, a ring filled past its
//! capacity so that overflow slots are set, a small ring) into a temporary directory, and takes
//! the golden fixtures of `layout-spec/fixtures/v1/` as more seeds. Each case copies one seed,
//! mutates the copy (bit flips, random bytes, interesting values written over header fields,
//! positions, frame headers, table entries and overflow slots, truncation, extension, a
//! `file_size` that agrees with the new length), writes it to a fresh file (never truncating a
//! file that may be mapped: that would raise SIGBUS) and runs every reader on it:
//! `RegionFile::open`, `RingReader::open` + `read` + `read_slots` + `stats`,
//! `TableReader::open` + `refresh`, the clock conversion, and `decode` on mutated frame bodies.
//! Any panic is a failure: the seed and case are printed, the input is saved to
//! `target/fuzz-artifacts/`, and the process exits with status 1. At the end it prints the
//! number of cases and the rate.

use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmtel_core::layout::*;
use shmtel_core::reader::{decode, Record, RingReader, TableReader};
use shmtel_core::region::{RegionFile, RegionName};
use shmtel_core::{
    batch, business_event, flush_stats, log, set_correlation_id, Config, Counter, CounterVec,
    Gauge, GaugeMode, Histogram, Level, Span, SpanKind, SpanStatus, Symbol, Value,
};

/// splitmix64: small, fast, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }
    /// A value that tends to hit boundaries.
    fn interesting(&mut self, around: u64) -> u64 {
        match self.below(12) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => u32::MAX as u64,
            4 => u16::MAX as u64 + 1,
            5 => 1 << self.below(64),
            6 => around.wrapping_add(self.below(64) as u64),
            7 => around.wrapping_sub(self.below(64) as u64),
            8 => around.wrapping_add(8 * self.below(1024) as u64),
            9 => around ^ (1 << self.below(64)),
            10 => (MAX_FRAME as u64)
                .wrapping_add(self.below(16) as u64)
                .wrapping_sub(8),
            _ => self.next(),
        }
    }
}

/// How deep the cases got (printed at the end, to judge the mutations).
struct Depth {
    regions_opened: AtomicU64,
    rings_read_ok: AtomicU64,
    rings_rejected: AtomicU64,
    records_decoded: AtomicU64,
    records_malformed: AtomicU64,
    tables_opened: AtomicU64,
}

static DEPTH: Depth = Depth {
    regions_opened: AtomicU64::new(0),
    rings_read_ok: AtomicU64::new(0),
    rings_rejected: AtomicU64::new(0),
    records_decoded: AtomicU64::new(0),
    records_malformed: AtomicU64::new(0),
    tables_opened: AtomicU64::new(0),
};

fn bump(c: &AtomicU64) {
    // Ordering: Relaxed: a statistic on one thread.
    c.fetch_add(1, Ordering::Relaxed);
}

fn count(c: &AtomicU64) -> u64 {
    // Ordering: Relaxed: see `bump`.
    c.load(Ordering::Relaxed)
}

/// A valid region file to mutate.
#[derive(Clone)]
struct Seed {
    name: String,
    bytes: Vec<u8>,
    /// File offsets of frame headers (rings) or entry headers (tables) in the original.
    records: Vec<usize>,
}

/// The u64 at `off`, or 0 past the end (mutations may have truncated the copy).
fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        .unwrap_or(0)
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if off < b.len() {
        let n = v.len().min(b.len() - off);
        b[off..off + n].copy_from_slice(&v[..n]);
    }
}

/// Frame header offsets between tail and head, from a valid ring's bytes.
fn frame_offsets(b: &[u8]) -> Vec<usize> {
    let h: RegionHeader = bytemuck::pod_read_unaligned(&b[..HEADER_SIZE]);
    let cap = h.data_capacity;
    let (head, mut pos) = (u64_at(b, HEAD_OFFSET), u64_at(b, TAIL_OFFSET));
    let mut out = Vec::new();
    while pos < head {
        let off = RING_DATA_OFFSET + (pos & (cap - 1)) as usize;
        let fh: FrameHeader = bytemuck::pod_read_unaligned(&b[off..off + 8]);
        out.push(off);
        pos += align8(fh.length as usize).max(8) as u64;
    }
    out
}

/// Entry header offsets below `used`, from a valid table's bytes.
fn entry_offsets(b: &[u8]) -> Vec<usize> {
    let used = u64_at(b, TABLE_USED_OFFSET) as usize;
    let mut at = 0;
    let mut out = Vec::new();
    while at < used {
        let off = TABLE_DATA_OFFSET + at;
        let eh: EntryHeader = bytemuck::pod_read_unaligned(&b[off..off + 16]);
        out.push(off);
        at += (eh.length as usize).max(16);
    }
    out
}

fn seed_from(path: &Path, patch_uid: bool) -> Seed {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if patch_uid {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        put(
            &mut bytes,
            std::mem::offset_of!(RegionHeader, owner_uid),
            &uid.to_le_bytes(),
        );
    }
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let records = if name.ends_with(".ring") {
        frame_offsets(&bytes)
    } else {
        entry_offsets(&bytes)
    };
    Seed {
        name,
        bytes,
        records,
    }
}

/// Record every kind of record with the real writer; returns the region directory.
fn write_seeds(dir: &Path) -> PathBuf {
    let regions = dir.join("regions");
    shmtel_core::init(Config {
        dir: Some(regions.clone()),
        service: "fuzz".into(),
        ring_bytes: 64 * 1024,
        max_series: 16,
        table_bytes: 64 * 1024,
        ..Default::default()
    })
    .expect("init");
    let record_everything = || {
        let c = CounterVec::new("fuzz_ops", "ops", &["kind"]).unwrap();
        let g = Gauge::new("fuzz_level", "level", GaugeMode::LiveMostRecent).unwrap();
        let h = Histogram::new("fuzz_seconds", "latency", &[0.1, 1.0]).unwrap();
        let (k1, k2, k3) = (
            Symbol::intern("db.system"),
            Symbol::intern("n"),
            Symbol::intern("doc"),
        );
        set_correlation_id("corr-0001");
        for i in 0..20 {
            c.with_label_values(&["a"]).inc();
            g.set(i as f64);
            g.add(-0.5);
            let mut s = Span::start(Symbol::intern("fuzz.op"));
            s.set_kind(SpanKind::Server);
            s.set_attribute(k1, Value::Str("postgres"));
            s.set_attribute(k2, Value::I64(i));
            s.set_attribute(k3, Value::Json("{\"a\":[1,2]}"));
            s.add_event(
                Symbol::intern("retry"),
                &[(k2, Value::F64(0.5)), (k1, Value::Bool(true))],
            );
            h.observe(0.05); // with an exemplar: inside a span
            log(
                Level::Warn,
                "a message é",
                &[(k1, Value::Str("x")), (k2, Value::Null)],
            );
            s.set_status(SpanStatus::Error);
            s.end();
            h.observe(2.0);
            business_event(
                Symbol::intern("orders"),
                9.5,
                Symbol::intern("usd"),
                &[(k1, Value::Str("eu"))],
            );
            batch(|| {
                c.with_label_values(&["b"]).add(2.0);
                g.set(1.0);
            });
        }
    };
    // Thread 1: a small ring.
    std::thread::spawn(record_everything).join().unwrap();
    // This thread: everything, then fill the ring so that overflow slots are used and the ring
    // is full (tail 0, head near the capacity).
    record_everything();
    let c = Counter::new("fuzz_fill", "fill").unwrap();
    let g = Gauge::new("fuzz_fill_gauge", "fill", GaugeMode::All).unwrap();
    while flush_stats().coalesced < 100 {
        c.inc();
        g.set(3.0);
    }
    flush_stats();
    regions
}

fn seeds(dir: &Path) -> Vec<Seed> {
    let regions = write_seeds(dir);
    let mut out: Vec<Seed> = shmtel_core::reader::scan_dir(&regions)
        .unwrap()
        .into_iter()
        .map(|e| seed_from(&e.path, false))
        .collect();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../layout-spec/fixtures/v1");
    for e in shmtel_core::reader::scan_dir(&fixtures).unwrap_or_default() {
        out.push(seed_from(&e.path, true));
    }
    assert!(
        out.len() >= 4,
        "expected the writer's table and rings and the fixtures"
    );
    out
}

/// Header fields worth aiming at: (offset, width).
const HEADER_FIELDS: &[(usize, usize)] = &[
    (8, 4),   // layout_version
    (12, 4),  // region_kind
    (16, 8),  // file_size
    (24, 4),  // header_size
    (32, 4),  // pid
    (36, 4),  // tid
    (40, 8),  // process_start
    (56, 4),  // clock_source
    (64, 8),  // anchor_ticks
    (72, 8),  // anchor_wall_ns
    (80, 8),  // ticks_per_sec_bits
    (88, 8),  // data_offset
    (96, 8),  // data_capacity
    (104, 8), // overflow_offset
    (112, 8), // overflow_slots
    (256, 8), // head / used
    (264, 8), // dropped_spans / next_id
    (304, 8), // closed
    (384, 8), // tail
];

fn write_width(b: &mut [u8], off: usize, width: usize, v: u64) {
    put(b, off, &v.to_le_bytes()[..width]);
}

/// Mutate a copy of `seed`; returns the bytes and the file name to use.
fn mutate(seed: &Seed, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut b = seed.bytes.clone();
    let hot_end = {
        // Most of a ring's data area is empty: aim at the header, the blocks and the records.
        let last = seed.records.last().copied().unwrap_or(512);
        (last + 256).min(b.len())
    };
    let n = 1 + rng.below(4);
    for _ in 0..n {
        if b.is_empty() {
            break;
        }
        let hot = hot_end.min(b.len());
        match rng.below(11) {
            0 => {
                let at = rng.below(hot);
                b[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(b.len());
                b[at] = rng.next() as u8;
            }
            2 | 3 => {
                let (off, w) = HEADER_FIELDS[rng.below(HEADER_FIELDS.len())];
                let cur = if off + 8 <= b.len() {
                    u64_at(&b, off)
                } else {
                    0
                };
                let v = rng.interesting(cur);
                write_width(&mut b, off, w, v);
            }
            4 | 5 if !seed.records.is_empty() => {
                // A frame header (length, kind, flags) or an entry header (length, kind, ...).
                let at = seed.records[rng.below(seed.records.len())];
                match rng.below(4) {
                    0 => write_width(&mut b, at, 4, rng.interesting(0) & 0xffff_ffff),
                    1 => write_width(&mut b, at + 4, 2, rng.below(14) as u64),
                    2 => write_width(&mut b, at + 6, 2, rng.next() & 0xffff),
                    _ => {
                        // Inside the body: counts, lengths, typed-value types.
                        let body = at + 8 + 8 * rng.below(8);
                        let cur = if body + 8 <= b.len() {
                            u64_at(&b, body)
                        } else {
                            0
                        };
                        write_width(&mut b, body, 1 << rng.below(4), rng.interesting(cur));
                    }
                }
            }
            6 => {
                // Positions: head and tail relative to each other.
                let (head, tail) = (u64_at(&b, HEAD_OFFSET), u64_at(&b, TAIL_OFFSET));
                let which = if rng.chance(2) {
                    HEAD_OFFSET
                } else {
                    TAIL_OFFSET
                };
                let around = if rng.chance(2) { head } else { tail };
                write_width(&mut b, which, 8, rng.interesting(around));
            }
            7 if b.len() >= HEADER_SIZE => {
                // An overflow slot.
                let h: RegionHeader = bytemuck::pod_read_unaligned(&b[..HEADER_SIZE]);
                let slots = (h.overflow_slots as usize).min(64);
                if h.overflow_offset > 0 && slots > 0 {
                    let at = (h.overflow_offset as usize)
                        .saturating_add(32 * rng.below(slots) + 8 * rng.below(4));
                    let v = rng.interesting(0);
                    write_width(&mut b, at, 8, v);
                }
            }
            8 => {
                // Truncate (the copy, never a mapped file).
                let len = rng.below(b.len() + 1);
                b.truncate(len);
                if rng.chance(2) {
                    write_width(&mut b, 16, 8, len as u64);
                }
            }
            9 => {
                let extra = 1 + rng.below(4096);
                b.resize(b.len() + extra, rng.next() as u8);
                if rng.chance(2) {
                    let len = b.len() as u64;
                    write_width(&mut b, 16, 8, len);
                }
            }
            _ => {
                // A run of random bytes somewhere hot.
                let at = rng.below(hot);
                for i in 0..rng.below(32) {
                    if at + i < b.len() {
                        b[at + i] = rng.next() as u8;
                    }
                }
            }
        }
    }
    let name = if rng.chance(16) {
        // A region name that disagrees with the header, or no region name at all.
        match rng.below(3) {
            0 => format!("{}-{}.table", rng.below(100), rng.below(100)),
            1 => format!(
                "{}-{}-{}-{}.ring",
                rng.below(100),
                rng.below(100),
                rng.below(100),
                rng.below(3)
            ),
            _ => "not-a-region.bin".into(),
        }
    } else {
        seed.name.clone()
    };
    (b, name)
}

/// Run every reader on the file at `path`. Panics are the bugs we look for; errors are fine.
fn exercise(path: &Path, rng: &mut Rng, clock: bool) -> u64 {
    let mut work = 0u64;
    for writable in [false, true] {
        if let Ok(r) = RegionFile::open(path, writable) {
            bump(&DEPTH.regions_opened);
            // README.md §5: the conversion is a clamped, monotone function of the ticks, whatever
            // the anchor says (this catches a wrapped overflow even without overflow checks).
            let a = r.anchor();
            if !clock {
                continue;
            }
            let t1 = match rng.below(3) {
                0 => a.ticks, // the anchor itself converts without any division
                1 => a.ticks.wrapping_add(rng.below(1 << 20) as u64),
                _ => rng.next(),
            };
            let t2 = t1.saturating_add(rng.interesting(0) >> rng.below(64));
            let (w1, w2) = (a.to_wall_ns(t1), a.to_wall_ns(t2));
            assert!(
                w1 <= w2,
                "to_wall_ns is not monotone: {t1} -> {w1}, {t2} -> {w2} with {a:?}"
            );
            work += (w1 ^ w2) & 1;
            work += r.header().data_capacity & 1;
        }
    }
    let writable = rng.chance(2);
    if let Ok(mut r) = RingReader::open(path, writable) {
        let st = r.stats();
        work += st.head & 1;
        let consume = rng.chance(2);
        let max = if rng.chance(2) {
            usize::MAX
        } else {
            rng.below(8)
        };
        for max in [max, usize::MAX] {
            match r.read(max, consume, |_, rec| work += visit(rec)) {
                Ok(_) => bump(&DEPTH.rings_read_ok),
                Err(_) => bump(&DEPTH.rings_rejected),
            }
        }
        r.read_slots(|s, v| work += (s as u64 ^ v.seq) & 1);
        if rng.chance(4) {
            let p = rng.interesting(st.tail);
            r.set_position(p);
            let _ = r.read(usize::MAX, false, |_, rec| work += visit(rec));
        }
    }
    if let Ok(mut t) = TableReader::open(path) {
        bump(&DEPTH.tables_opened);
        let _ = t.refresh();
        for _ in 0..4 {
            let id = rng.below(64) as u32;
            work += t.symbol(id).len() as u64;
            if let Some((s, f)) = t.series_family(id) {
                work += (s.values.len() + f.labels.len()) as u64;
            }
        }
        work += t.overflowed_series() & 1;
    }
    work
}

/// Touch everything a decoded record exposes (iterating typed values validates them again).
fn visit(rec: Result<Record<'_>, shmtel_core::reader::DecodeError>) -> u64 {
    bump(if rec.is_ok() {
        &DEPTH.records_decoded
    } else {
        &DEPTH.records_malformed
    });
    match rec {
        Ok(Record::Log {
            message,
            correlation,
            fields,
            ..
        }) => (message.len() + correlation.len()) as u64 + fields.iter().count() as u64,
        Ok(Record::Business { tags, .. }) => tags.iter().count() as u64,
        Ok(Record::SpanAttr { attr, .. }) => attr.key as u64 & 1,
        Ok(_) => 1,
        Err(_) => 0,
    }
}

/// `decode` on a mutated body of a real frame, or on random bytes.
fn decode_case(seeds: &[Seed], rng: &mut Rng) -> (u16, u16, Vec<u8>) {
    let rings: Vec<&Seed> = seeds
        .iter()
        .filter(|s| s.name.ends_with(".ring") && !s.records.is_empty())
        .collect();
    if rng.chance(3) || rings.is_empty() {
        let len = rng.below(256);
        let body = (0..len).map(|_| rng.next() as u8).collect();
        return (rng.below(12) as u16, (rng.next() & 0xffff) as u16, body);
    }
    let s = rings[rng.below(rings.len())];
    let at = s.records[rng.below(s.records.len())];
    let fh: FrameHeader = bytemuck::pod_read_unaligned(&s.bytes[at..at + 8]);
    let len = (fh.length as usize).clamp(8, 4096).min(s.bytes.len() - at);
    let mut body = s.bytes[at + 8..at + len].to_vec();
    for _ in 0..1 + rng.below(3) {
        if body.is_empty() {
            break;
        }
        let i = rng.below(body.len());
        match rng.below(3) {
            0 => body[i] ^= 1 << rng.below(8),
            1 => {
                let v = rng.interesting(0).to_le_bytes();
                let n = (1usize << rng.below(4)).min(body.len() - i);
                body[i..i + n].copy_from_slice(&v[..n]);
            }
            _ => body.truncate(i),
        }
    }
    (fh.kind, fh.flags, body)
}

fn write_case(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("fuzz-artifacts")
}

fn fail(seed: u64, case: u64, what: &str, name: &str, bytes: &[u8]) -> ! {
    let dir = artifacts_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("seed{seed}-case{case}-{name}"));
    let saved = std::fs::write(&file, bytes)
        .map(|_| file.display().to_string())
        .unwrap_or_else(|e| e.to_string());
    eprintln!("fuzz_reader: PANIC in {what}: seed {seed}, case {case}; input saved to {saved}");
    eprintln!("fuzz_reader: replay with: cargo run -p shmtel-core --example fuzz_reader -- --replay {saved}");
    std::process::exit(1);
}

fn replay(files: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        // The artifact's name ends with the region file name it was tested under.
        let name = f
            .rsplit_once("-case")
            .and_then(|(_, r)| r.split_once('-'))
            .map(|(_, n)| n)
            .unwrap_or("x.ring");
        if let Some(kind) = name.strip_prefix("decode-kind") {
            let (kind, flags) = kind.split_once("-flags").unwrap_or((kind, "0"));
            let flags = flags.split('.').next().unwrap_or("0");
            let _ = decode(
                kind.parse().unwrap_or(0),
                flags.parse().unwrap_or(0),
                &bytes,
            );
        } else {
            let path = dir.path().join(name);
            write_case(&path, &bytes);
            exercise(&path, &mut Rng(0), true);
        }
        println!("replayed {f}: no panic");
    }
}

fn usage() -> ! {
    eprintln!("usage: fuzz_reader [--seconds N] [--seed S] [--no-clock] | --replay FILE...");
    std::process::exit(2);
}

fn main() {
    let mut seconds = 10u64;
    let mut seed = None;
    let mut clock = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--seed" => {
                seed = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--no-clock" => clock = false,
            "--replay" => return replay(&args.collect::<Vec<_>>()),
            _ => usage(),
        }
    }
    let seed = seed.unwrap_or_else(|| shmtel_core::clock::wall_ns() ^ std::process::id() as u64);
    let tmp = tempfile::tempdir().expect("temp dir");
    let seeds = seeds(tmp.path());
    let cases_dir = tmp.path().join("cases");
    std::fs::create_dir_all(&cases_dir).unwrap();
    println!(
        "fuzz_reader: seed {seed}, {} seed files ({}), {seconds} s",
        seeds.len(),
        seeds
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let (mut cases, mut work) = (0u64, 0u64);
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut rng = Rng(seed ^ cases.wrapping_mul(0x2545_f491_4f6c_dd1d));
            if rng.chance(4) {
                let (kind, flags, body) = decode_case(&seeds, &mut rng);
                let r = catch_unwind(|| {
                    decode(kind, flags, &body)
                        .map(|rec| visit(Ok(rec)))
                        .unwrap_or(0)
                });
                match r {
                    Ok(w) => work += w,
                    Err(_) => fail(
                        seed,
                        cases,
                        "decode",
                        &format!("decode-kind{kind}-flags{flags}.bin"),
                        &body,
                    ),
                }
            } else {
                let s = &seeds[rng.below(seeds.len())];
                let (bytes, name) = mutate(s, &mut rng);
                let path = cases_dir.join(&name);
                write_case(&path, &bytes);
                match catch_unwind(AssertUnwindSafe(|| exercise(&path, &mut rng, clock))) {
                    Ok(w) => work += w,
                    Err(_) => fail(seed, cases, "a region reader", &name, &bytes),
                }
                if rng.chance(64) {
                    let r = catch_unwind(|| RegionName::parse(&name));
                    if r.is_err() {
                        fail(
                            seed,
                            cases,
                            "RegionName::parse",
                            "name.txt",
                            name.as_bytes(),
                        );
                    }
                }
                let _ = std::fs::remove_file(&path);
            }
            cases += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz_reader: {cases} cases in {secs:.1} s ({:.0} cases/s), no panic (checksum {work})",
        cases as f64 / secs
    );
    println!(
        "fuzz_reader: depth: {} regions opened, {} ring reads ok, {} rings rejected, {} records decoded, \
         {} malformed, {} tables opened",
        count(&DEPTH.regions_opened),
        count(&DEPTH.rings_read_ok),
        count(&DEPTH.rings_rejected),
        count(&DEPTH.records_decoded),
        count(&DEPTH.records_malformed),
        count(&DEPTH.tables_opened),
    );
}
