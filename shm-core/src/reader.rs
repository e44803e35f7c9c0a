//! The reading side: discovering region files, validating and draining rings, decoding frames,
//! reading interning tables and overflow slots. Used by the collector (which consumes) and by
//! `shmtel dump`/`tail`/`stat` (which only look).
//!
//! Nothing read from shared memory is trusted: positions, frame lengths, string lengths, counts
//! and ids are all checked against the bounds they must respect, on a private copy of the bytes.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layout::*;
use crate::region::{MappedRing, RegionError, RegionFile, RegionName};
use crate::ring::{Consumer, RingError};

/// A region file found in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Full path.
    pub path: PathBuf,
    /// What its name says.
    pub name: RegionName,
}

/// List the region files of `dir` (files whose names are not region names are ignored).
pub fn scan_dir(dir: &Path) -> io::Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(RegionName::parse) else {
            continue;
        };
        out.push(DirEntry {
            path: entry.path(),
            name,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A typed value as decoded: strings are raw bytes (they may not be UTF-8 in a hostile file).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrValue<'a> {
    /// Null.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    I64(i64),
    /// Float.
    F64(f64),
    /// String bytes.
    Str(&'a [u8]),
    /// JSON text bytes.
    Json(&'a [u8]),
}

/// A key (symbol id) and a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr<'a> {
    /// Symbol id of the key.
    pub key: u32,
    /// The value.
    pub value: AttrValue<'a>,
}

/// A validated list of typed values inside a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attrs<'a> {
    bytes: &'a [u8],
    count: u16,
}

impl<'a> Attrs<'a> {
    /// Validate `count` values at the start of `bytes`; returns them and the bytes consumed.
    fn parse(bytes: &'a [u8], count: u16) -> Result<(Attrs<'a>, usize), DecodeError> {
        let mut at = 0;
        for _ in 0..count {
            let (_, used) = decode_value(&bytes[at..]).ok_or(DecodeError::BadValue)?;
            at += used;
        }
        Ok((
            Attrs {
                bytes: &bytes[..at],
                count,
            },
            at,
        ))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterate over the values.
    pub fn iter(&self) -> impl Iterator<Item = Attr<'a>> + 'a {
        let mut rest = self.bytes;
        (0..self.count).map_while(move |_| {
            let (attr, used) = decode_value(rest)?;
            rest = &rest[used..];
            Some(attr)
        })
    }
}

fn decode_value(b: &[u8]) -> Option<(Attr<'_>, usize)> {
    let tv: TypedValue = bytemuck::pod_read_unaligned(b.get(..16)?);
    let value = match tv.vtype {
        value_type::NULL => AttrValue::Null,
        value_type::BOOL => AttrValue::Bool(tv.value != 0),
        value_type::I64 => AttrValue::I64(tv.value as i64),
        value_type::F64 => AttrValue::F64(f64::from_bits(tv.value)),
        value_type::STR | value_type::JSON => {
            let n = usize::try_from(tv.value).ok().filter(|n| *n <= MAX_FRAME)?;
            let s = b.get(16..16 + n)?;
            if align8(n) + 16 > b.len() {
                return None;
            }
            let v = if tv.vtype == value_type::STR {
                AttrValue::Str(s)
            } else {
                AttrValue::Json(s)
            };
            return Some((
                Attr {
                    key: tv.key,
                    value: v,
                },
                16 + align8(n),
            ));
        }
        _ => return None,
    };
    Some((Attr { key: tv.key, value }, 16))
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Record<'a> {
    /// Counter increment.
    CounterAdd {
        /// Series id.
        series: u32,
        /// Amount.
        value: f64,
    },
    /// Gauge set.
    GaugeSet {
        /// Series id.
        series: u32,
        /// Ticks.
        ts: u64,
        /// Value.
        value: f64,
    },
    /// Gauge add.
    GaugeAdd {
        /// Series id.
        series: u32,
        /// Ticks.
        ts: u64,
        /// Delta.
        value: f64,
    },
    /// Histogram observation.
    Histogram {
        /// Series id.
        series: u32,
        /// Value.
        value: f64,
        /// Exemplar, if any.
        exemplar: Option<Exemplar>,
    },
    /// A finished span.
    Span(SpanRecord),
    /// An attribute of a span or of one of its events.
    SpanAttr {
        /// Span id.
        span_id: [u8; 8],
        /// 0: the span; n: its n-th event.
        event_seq: u16,
        /// Key and value.
        attr: Attr<'a>,
    },
    /// A span event.
    SpanEvent(SpanEvent),
    /// A span link.
    SpanLink(SpanLink),
    /// An attribute of a span link.
    SpanLinkAttr {
        /// Span id.
        span_id: [u8; 8],
        /// The link's `link_seq`.
        link_seq: u16,
        /// Key and value.
        attr: Attr<'a>,
    },
    /// A log event.
    Log {
        /// Fixed part.
        rec: LogRecord,
        /// Message bytes (UTF-8 unless hostile).
        message: &'a [u8],
        /// Correlation id bytes.
        correlation: &'a [u8],
        /// Fields.
        fields: Attrs<'a>,
    },
    /// A business metric event.
    Business {
        /// Fixed part.
        rec: BusinessEvent,
        /// Tags.
        tags: Attrs<'a>,
    },
}

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A kind this reader does not know (a newer minor writer): skipped, counted.
    UnknownKind(u16),
    /// The body is too short or inconsistent for its kind: the ring is corrupt.
    BadLength {
        /// Kind.
        kind: u16,
        /// Body length.
        len: usize,
    },
    /// A typed value is malformed.
    BadValue,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::BadLength { kind, len } => {
                write!(f, "record kind {kind} has an invalid body length {len}")
            }
            DecodeError::BadValue => write!(f, "malformed typed value"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn fixed<T: bytemuck::Pod>(kind: u16, body: &[u8]) -> Result<T, DecodeError> {
    body.get(..std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .ok_or(DecodeError::BadLength {
            kind,
            len: body.len(),
        })
}

/// Decode one frame body.
pub fn decode(kind: u16, flags: u16, body: &[u8]) -> Result<Record<'_>, DecodeError> {
    let bad = || DecodeError::BadLength {
        kind,
        len: body.len(),
    };
    Ok(match kind {
        KIND_COUNTER_ADD => {
            let r: CounterAdd = fixed(kind, body)?;
            Record::CounterAdd {
                series: r.series,
                value: r.value,
            }
        }
        KIND_GAUGE_SET | KIND_GAUGE_ADD => {
            let r: GaugeUpdate = fixed(kind, body)?;
            if kind == KIND_GAUGE_SET {
                Record::GaugeSet {
                    series: r.series,
                    ts: r.ts,
                    value: r.value,
                }
            } else {
                Record::GaugeAdd {
                    series: r.series,
                    ts: r.ts,
                    value: r.value,
                }
            }
        }
        KIND_HISTOGRAM => {
            let r: HistogramObserve = fixed(kind, body)?;
            let exemplar = if flags & FLAG_EXEMPLAR != 0 {
                Some(fixed::<Exemplar>(kind, body.get(16..).ok_or_else(bad)?)?)
            } else {
                None
            };
            Record::Histogram {
                series: r.series,
                value: r.value,
                exemplar,
            }
        }
        KIND_SPAN => Record::Span(fixed(kind, body)?),
        KIND_SPAN_ATTR => {
            let a: SpanAttr = fixed(kind, body)?;
            let (attr, _) = decode_value(&body[16..]).ok_or(DecodeError::BadValue)?;
            Record::SpanAttr {
                span_id: a.span_id,
                event_seq: a.event_seq,
                attr,
            }
        }
        KIND_SPAN_EVENT => Record::SpanEvent(fixed(kind, body)?),
        KIND_SPAN_LINK => Record::SpanLink(fixed(kind, body)?),
        KIND_SPAN_LINK_ATTR => {
            let a: SpanAttr = fixed(kind, body)?;
            let (attr, _) = decode_value(&body[16..]).ok_or(DecodeError::BadValue)?;
            Record::SpanLinkAttr {
                span_id: a.span_id,
                link_seq: a.event_seq,
                attr,
            }
        }
        KIND_LOG => {
            let rec: LogRecord = fixed(kind, body)?;
            let base = std::mem::size_of::<LogRecord>();
            let (m, c) = (rec.msg_len as usize, rec.corr_len as usize);
            let text_end = base
                .checked_add(m)
                .and_then(|x| x.checked_add(c))
                .ok_or_else(bad)?;
            let message = body.get(base..base + m).ok_or_else(bad)?;
            let correlation = body.get(base + m..text_end).ok_or_else(bad)?;
            let fields_at = base + align8(m + c);
            let rest = body.get(fields_at..).ok_or_else(bad)?;
            let (fields, _) = Attrs::parse(rest, rec.field_count)?;
            Record::Log {
                rec,
                message,
                correlation,
                fields,
            }
        }
        KIND_BUSINESS => {
            let rec: BusinessEvent = fixed(kind, body)?;
            let rest = &body[std::mem::size_of::<BusinessEvent>()..];
            let (tags, _) = Attrs::parse(rest, rec.tag_count)?;
            Record::Business { rec, tags }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// Counters and positions of a ring, as its writer and reader blocks say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Committed bytes (producer position).
    pub head: u64,
    /// Consumed bytes (consumer position).
    pub tail: u64,
    /// Data capacity.
    pub capacity: u64,
    /// Spans dropped.
    pub dropped_spans: u64,
    /// Logs dropped.
    pub dropped_logs: u64,
    /// Histogram observations and business events dropped.
    pub dropped_other: u64,
    /// Counter/gauge updates that went to overflow slots.
    pub coalesced: u64,
    /// Counter/gauge updates lost.
    pub dropped_metric: u64,
    /// Whether the writer thread has exited.
    pub closed: bool,
}

/// An overflow slot's content.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotValue {
    /// Cumulative adds.
    pub added: f64,
    /// Last gauge set value and its ticks (ticks 0: never set).
    pub set_value: f64,
    /// Ticks of the last gauge set.
    pub set_ts: u64,
    /// Change counter.
    pub seq: u64,
}

/// A validated ring, opened for draining (collector) or peeking (dump, tail).
pub struct RingReader {
    region: Arc<RegionFile>,
    consumer: Consumer<MappedRing>,
    position: u64,
}

impl RingReader {
    /// Open and validate a ring file. `writable`: map read-write so the tail can be released.
    pub fn open(path: &Path, writable: bool) -> Result<RingReader, RegionError> {
        let region = RegionFile::open(path, writable)?;
        if region.header().region_kind != REGION_RING {
            return Err(RegionError::BadHeader("not a ring file".into()));
        }
        let region = Arc::new(region);
        let consumer = Consumer::new(MappedRing::new(region.clone()));
        let position = consumer.positions().1;
        Ok(RingReader {
            region,
            consumer,
            position,
        })
    }

    /// The region file.
    pub fn region(&self) -> &RegionFile {
        &self.region
    }

    /// Our read position (starts at the shared tail).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Continue reading from `position` (a collector restoring its saved state).
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
    }

    /// Positions and counters.
    pub fn stats(&self) -> RingStats {
        let (head, tail) = self.consumer.positions();
        let r = &self.region;
        RingStats {
            head,
            tail,
            capacity: r.header().data_capacity,
            dropped_spans: r.load_u64(WRITER_BLOCK_OFFSET + 8),
            dropped_logs: r.load_u64(WRITER_BLOCK_OFFSET + 16),
            dropped_other: r.load_u64(WRITER_BLOCK_OFFSET + 24),
            coalesced: r.load_u64(WRITER_BLOCK_OFFSET + 32),
            dropped_metric: r.load_u64(WRITER_BLOCK_OFFSET + 40),
            closed: r.load_u64(WRITER_BLOCK_OFFSET + 48) != 0,
        }
    }

    /// Read up to `max_frames` frames from our position, decode each, and call `f`. With
    /// `consume`, the tail is then released to the writer (the collector); without, nothing in
    /// shared memory changes (dump, tail). Returns the number of frames read.
    pub fn read(
        &mut self,
        max_frames: usize,
        consume: bool,
        mut f: impl FnMut(u64, Result<Record<'_>, DecodeError>),
    ) -> Result<usize, RingError> {
        let mut n = 0;
        let end = self
            .consumer
            .read_from(self.position, max_frames, |frame| {
                n += 1;
                f(frame.position, decode(frame.kind, frame.flags, frame.body));
            })?;
        self.position = end;
        if consume && self.region.writable() {
            self.consumer.release(end);
        }
        Ok(n)
    }

    /// Read every overflow slot that was ever written; `f(series, value)`.
    pub fn read_slots(&self, mut f: impl FnMut(u32, SlotValue)) {
        let h = self.region.header();
        // Only slots below the writer's high-water mark were ever written. The mark is raised
        // before the slot is written and the slot's own seq tells whether it holds anything, so
        // a mark read before a concurrent slot write merely defers that slot to the next read.
        let high_water = self.region.load_u64(WRITER_BLOCK_OFFSET + 56);
        let n = h.overflow_slots.min(MAX_OVERFLOW_SLOTS).min(high_water);
        let base = h.overflow_offset as usize;
        for i in 0..n as usize {
            let off = base + i * 32;
            if let Some(v) = self.read_slot(off) {
                f(i as u32, v);
            }
        }
    }

    fn read_slot(&self, off: usize) -> Option<SlotValue> {
        let r = &self.region;
        for _ in 0..100 {
            let s1 = r.load_u64(off);
            if s1 == 0 {
                return None;
            }
            let added = r.load_u64(off + 8);
            let set_value = r.load_u64(off + 16);
            let set_ts = r.load_u64(off + 24);
            let s2 = r.load_u64(off);
            if s1 == s2 && s1 % 2 == 0 {
                return Some(SlotValue {
                    added: f64::from_bits(added),
                    set_value: f64::from_bits(set_value),
                    set_ts,
                    seq: s1,
                });
            }
            std::hint::spin_loop();
        }
        // The writer died mid-update (odd seq for ever) or is hostile: take the values as they
        // are: every 8-byte store is atomic, so each field is one the writer stored.
        Some(SlotValue {
            added: f64::from_bits(r.load_u64(off + 8)),
            set_value: f64::from_bits(r.load_u64(off + 16)),
            set_ts: r.load_u64(off + 24),
            seq: r.load_u64(off),
        })
    }
}

/// A metric family as defined in a table.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyInfo {
    /// Family id.
    pub id: u32,
    /// [`metric_type`] code.
    pub metric_type: u8,
    /// [`gauge_mode`] code.
    pub mode: u8,
    /// Name.
    pub name: String,
    /// Help text.
    pub help: String,
    /// Unit.
    pub unit: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Histogram bucket upper bounds (no +Inf).
    pub buckets: Vec<f64>,
}

/// A series as defined in a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesInfo {
    /// Series id.
    pub id: u32,
    /// Family id.
    pub family: u32,
    /// Label values, in the family's label-name order.
    pub values: Vec<String>,
}

/// Why a table could not be read.
#[derive(Debug)]
pub enum TableError {
    /// The file failed validation.
    Region(RegionError),
    /// An entry is malformed.
    BadEntry {
        /// Offset of the entry in the entry area.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Region(e) => write!(f, "{e}"),
            TableError::BadEntry { offset, what } => {
                write!(f, "bad table entry at {offset}: {what}")
            }
        }
    }
}

impl std::error::Error for TableError {}

impl From<RegionError> for TableError {
    fn from(e: RegionError) -> Self {
        TableError::Region(e)
    }
}

/// A process's interning table, read incrementally.
pub struct TableReader {
    region: RegionFile,
    parsed: u64,
    /// Symbols by id.
    pub symbols: HashMap<u32, String>,
    /// Families by id.
    pub families: HashMap<u32, FamilyInfo>,
    /// Series by id.
    pub series: HashMap<u32, SeriesInfo>,
}

/// Most label names a family may declare.
pub const MAX_LABELS: u32 = 64;
/// Most histogram buckets a family may declare.
pub const MAX_BUCKETS: u32 = 4096;

impl TableReader {
    /// Open and validate a table file and read the entries published so far.
    pub fn open(path: &Path) -> Result<TableReader, TableError> {
        let region = RegionFile::open(path, false)?;
        if region.header().region_kind != REGION_TABLE {
            return Err(RegionError::BadHeader("not a table file".into()).into());
        }
        let mut t = TableReader {
            region,
            parsed: 0,
            symbols: HashMap::new(),
            families: HashMap::new(),
            series: HashMap::new(),
        };
        t.refresh()?;
        Ok(t)
    }

    /// The region file.
    pub fn region(&self) -> &RegionFile {
        &self.region
    }

    /// Series refused by the writer's cardinality limit (they went to overflow series).
    pub fn overflowed_series(&self) -> u64 {
        self.region.load_u64(TABLE_USED_OFFSET + 16)
    }

    /// Read entries published since the last call; returns how many were added.
    pub fn refresh(&mut self) -> Result<usize, TableError> {
        let cap = self.region.header().data_capacity;
        let used = self.region.load_u64(TABLE_USED_OFFSET);
        if used > cap || used % 8 != 0 || used < self.parsed {
            return Err(TableError::BadEntry {
                offset: used,
                what: format!("used length {used} out of range"),
            });
        }
        if used == self.parsed {
            return Ok(0);
        }
        let mut buf = vec![0u8; (used - self.parsed) as usize];
        if !self
            .region
            .copy_out(TABLE_DATA_OFFSET + self.parsed as usize, &mut buf)
        {
            return Err(TableError::BadEntry {
                offset: self.parsed,
                what: "beyond the file".into(),
            });
        }
        let mut at = 0usize;
        let mut added = 0;
        while at < buf.len() {
            let offset = self.parsed + at as u64;
            let err = |what: &str| TableError::BadEntry {
                offset,
                what: what.to_owned(),
            };
            let h: EntryHeader = bytemuck::pod_read_unaligned(
                buf.get(at..at + ENTRY_HEADER_SIZE)
                    .ok_or_else(|| err("truncated header"))?,
            );
            let len = h.length as usize;
            if len < ENTRY_HEADER_SIZE || len % 8 != 0 || at + len > buf.len() {
                return Err(err("bad length"));
            }
            let mut p = Payload {
                b: &buf[at + ENTRY_HEADER_SIZE..at + len],
                at: 0,
            };
            match h.kind {
                ENTRY_SYMBOL => {
                    let s = p.string().ok_or_else(|| err("bad symbol"))?;
                    self.symbols.insert(h.id, s);
                }
                ENTRY_FAMILY => {
                    let name = p.string().ok_or_else(|| err("bad family name"))?;
                    let help = p.string().ok_or_else(|| err("bad help"))?;
                    let unit = p.string().ok_or_else(|| err("bad unit"))?;
                    let nl = p
                        .u32()
                        .filter(|n| *n <= MAX_LABELS)
                        .ok_or_else(|| err("bad label count"))?;
                    let labels = (0..nl)
                        .map(|_| p.string())
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| err("bad label name"))?;
                    let nb = p
                        .u32()
                        .filter(|n| *n <= MAX_BUCKETS)
                        .ok_or_else(|| err("bad bucket count"))?;
                    let buckets = (0..nb)
                        .map(|_| p.f64())
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| err("bad bucket"))?;
                    if !(1..=4).contains(&h.subkind) || h.mode > gauge_mode::LIVEMOSTRECENT {
                        return Err(err("bad metric type or mode"));
                    }
                    let family = FamilyInfo {
                        id: h.id,
                        metric_type: h.subkind,
                        mode: h.mode,
                        name,
                        help,
                        unit,
                        labels,
                        buckets,
                    };
                    self.families.insert(h.id, family);
                }
                ENTRY_SERIES => {
                    let n = p
                        .u32()
                        .filter(|n| *n <= MAX_LABELS)
                        .ok_or_else(|| err("bad value count"))?;
                    let values = (0..n)
                        .map(|_| p.string())
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| err("bad label value"))?;
                    let family = self
                        .families
                        .get(&h.parent)
                        .ok_or_else(|| err("series of an unknown family"))?;
                    if family.labels.len() != values.len() {
                        return Err(err("label value count differs from the family's"));
                    }
                    self.series.insert(
                        h.id,
                        SeriesInfo {
                            id: h.id,
                            family: h.parent,
                            values,
                        },
                    );
                }
                _ => {} // an entry kind from a newer minor version: skipped
            }
            at += len;
            added += 1;
        }
        self.parsed = used;
        Ok(added)
    }

    /// A symbol's text (`""` if unknown).
    pub fn symbol(&self, id: u32) -> &str {
        self.symbols.get(&id).map(|s| s.as_str()).unwrap_or("")
    }

    /// A series and its family.
    pub fn series_family(&self, id: u32) -> Option<(&SeriesInfo, &FamilyInfo)> {
        let s = self.series.get(&id)?;
        Some((s, self.families.get(&s.family)?))
    }
}

struct Payload<'a> {
    b: &'a [u8],
    at: usize,
}

impl Payload<'_> {
    fn u32(&mut self) -> Option<u32> {
        let v = u32::from_le_bytes(self.b.get(self.at..self.at + 4)?.try_into().ok()?);
        self.at += 4;
        Some(v)
    }
    fn f64(&mut self) -> Option<f64> {
        let v = f64::from_le_bytes(self.b.get(self.at..self.at + 8)?.try_into().ok()?);
        self.at += 8;
        Some(v)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let s = std::str::from_utf8(self.b.get(self.at..self.at.checked_add(n)?)?).ok()?;
        self.at += n;
        Some(s.to_owned())
    }
}
