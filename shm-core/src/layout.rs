//! The binary layout, version 1: constants, offsets and `#[repr(C)]` records.
//!
//! This module is the executable twin of `layout-spec/` (the normative text). It holds only
//! constants, plain-old-data structs and offset helpers; the code that *uses* the layout lives in
//! `ring`, `region`, `table` and `reader`. Every struct size and field offset below is pinned by
//! `const` assertions at the bottom of the file and by `tests/layout_spec.rs`, which also checks the
//! golden fixtures in `layout-spec/fixtures/`.
//!
//! All integers are little-endian (every platform we map shared memory on is); all offsets are in
//! bytes from the start of the file; every record starts on an 8-byte boundary.

use bytemuck::{Pod, Zeroable};

/// The eight bytes every shmtel region file starts with.
pub const MAGIC: [u8; 8] = *b"SHMTEL\0\x01";
/// The layout version this crate writes and reads. Readers reject any other major version.
pub const LAYOUT_VERSION: u32 = 1;

/// Spacing of positions that two processes write: two 64-byte cache lines, pinned here rather
/// than taken from the target's cache-line size so that every writer agrees (adjacent-line
/// prefetch pulls lines in pairs on x86).
pub const POSITION_SPACING: usize = 128;

/// Size of the common header at offset 0 of every region file.
pub const HEADER_SIZE: usize = 256;
/// Offset of the writer block (head position, drop counters) in a ring file.
pub const WRITER_BLOCK_OFFSET: usize = HEADER_SIZE;
/// Offset of the reader block (tail position, heartbeat) in a ring file.
pub const READER_BLOCK_OFFSET: usize = WRITER_BLOCK_OFFSET + POSITION_SPACING;
/// Offset of the ring data in a ring file.
pub const RING_DATA_OFFSET: usize = READER_BLOCK_OFFSET + POSITION_SPACING;
/// Offset of the entry area in a table file (after the header and the table's writer block).
pub const TABLE_DATA_OFFSET: usize = HEADER_SIZE + POSITION_SPACING;

/// Smallest ring data capacity a reader accepts (bytes).
pub const MIN_RING_CAPACITY: u64 = 4096;
/// Largest ring data capacity a reader accepts (bytes).
pub const MAX_RING_CAPACITY: u64 = 1 << 30;
/// Largest table file a reader accepts (bytes).
pub const MAX_TABLE_SIZE: u64 = 1 << 30;
/// Largest overflow slot count a reader accepts.
pub const MAX_OVERFLOW_SLOTS: u64 = 1 << 20;

/// `region_kind` value of a process's interning table file (`<pid>-<start>.table`).
pub const REGION_TABLE: u32 = 1;
/// `region_kind` value of a thread's ring file (`<pid>-<start>-<tid>.ring`).
pub const REGION_RING: u32 = 2;

/// `clock_source` value: ticks are nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub const CLOCK_REALTIME_NS: u32 = 0;
/// `clock_source` value: ticks are x86 TSC values; convert with the anchor and `ticks_per_sec`.
pub const CLOCK_TSC: u32 = 1;

/// The common header at offset 0 of every region file (256 bytes).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +---------------------------------------------------------------+
/// |                        magic (8 bytes)                        |  0
/// +---------------------------------------------------------------+
/// |        layout_version         |          region_kind          |  8
/// +---------------------------------------------------------------+
/// |                           file_size                           | 16
/// +---------------------------------------------------------------+
/// |          header_size          |           owner_uid           | 24
/// +---------------------------------------------------------------+
/// |              pid              |              tid              | 32
/// +---------------------------------------------------------------+
/// |               process_start (clock ticks since boot)          | 40
/// +---------------------------------------------------------------+
/// |                       created_wall_ns                         | 48
/// +---------------------------------------------------------------+
/// |         clock_source          |          reserved0            | 56
/// +---------------------------------------------------------------+
/// |                         anchor_ticks                          | 64
/// |                        anchor_wall_ns                         | 72
/// |                   ticks_per_sec (f64 bits)                    | 80
/// +---------------------------------------------------------------+
/// |   data_offset  | data_capacity | overflow_offset | slots      | 88..120
/// +---------------------------------------------------------------+
/// |                    thread_name (16 bytes)                     | 120
/// |                    service (32 bytes)                         | 136
/// |                    reserved (88 bytes)                        | 168
/// +---------------------------------------------------------------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct RegionHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`]; 0 while the file is being initialised. Written last, with release
    /// ordering: it is the "ready" flag.
    pub layout_version: u32,
    /// [`REGION_TABLE`] or [`REGION_RING`].
    pub region_kind: u32,
    /// Size of the whole file in bytes, as the writer created it.
    pub file_size: u64,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Effective uid of the writer process.
    pub owner_uid: u32,
    /// Writer process id.
    pub pid: u32,
    /// Writer thread id (`gettid`); 0 in a table file.
    pub tid: u32,
    /// Process start time, field 22 of `/proc/<pid>/stat` (clock ticks since boot). A live pid
    /// whose start time differs is a reused pid: the writer is dead.
    pub process_start: u64,
    /// Wall-clock creation time of this file (ns since the Unix epoch).
    pub created_wall_ns: u64,
    /// [`CLOCK_REALTIME_NS`] or [`CLOCK_TSC`]: what the `ts` fields of records hold.
    pub clock_source: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Tick value at the calibration anchor.
    pub anchor_ticks: u64,
    /// Wall-clock ns since the Unix epoch at the calibration anchor.
    pub anchor_wall_ns: u64,
    /// Ticks per second, as the bits of an IEEE-754 f64 (1e9 for [`CLOCK_REALTIME_NS`]).
    pub ticks_per_sec_bits: u64,
    /// Offset of the data area: the ring data ([`RING_DATA_OFFSET`]) or the table entries
    /// ([`TABLE_DATA_OFFSET`]).
    pub data_offset: u64,
    /// Ring: data capacity in bytes (a power of two). Table: entry area size in bytes.
    pub data_capacity: u64,
    /// Ring: offset of the overflow slot array (0 if none). Table: 0.
    pub overflow_offset: u64,
    /// Ring: number of overflow slots (one per series id). Table: maximum number of ids.
    pub overflow_slots: u64,
    /// Writer thread name, NUL padded (truncated to 16 bytes).
    pub thread_name: [u8; 16],
    /// Service name, NUL padded (truncated to 32 bytes).
    pub service: [u8; 32],
    /// Reserved, zero.
    pub reserved: [u8; 88],
}

/// Byte offset of `layout_version` (the ready flag) in [`RegionHeader`].
pub const HEADER_VERSION_OFFSET: usize = 8;

/// The writer block of a ring file, at [`WRITER_BLOCK_OFFSET`] (128 bytes). Only the ring's
/// writer thread stores here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct WriterBlock {
    /// Producer position: total bytes ever committed. Stored with release ordering after the
    /// frames it covers are completely written.
    pub head: u64,
    /// Spans dropped because the ring was full.
    pub dropped_spans: u64,
    /// Log events dropped because the ring was full.
    pub dropped_logs: u64,
    /// Histogram observations and business events dropped because the ring was full.
    pub dropped_other: u64,
    /// Counter/gauge updates that went to an overflow slot instead of the ring (not lost).
    pub coalesced_updates: u64,
    /// Counter/gauge updates lost because the series id had no overflow slot.
    pub dropped_metric_updates: u64,
    /// 1 once the writer thread has exited and will never write again.
    pub closed: u64,
    /// One more than the highest series id whose overflow slot was ever written (0: none).
    /// Readers need not look at slots at or above it.
    pub overflow_high_water: u64,
    /// Reserved, zero.
    pub reserved: [u64; 8],
}

/// The reader block of a ring file, at [`READER_BLOCK_OFFSET`] (128 bytes). Only the collector
/// stores here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct ReaderBlock {
    /// Consumer position: total bytes ever consumed. Stored with release ordering after the
    /// collector has finished reading the frames it covers.
    pub tail: u64,
    /// Pid of the collector that last drained this ring.
    pub collector_pid: u64,
    /// Wall-clock ns of the collector's last drain (heartbeat).
    pub heartbeat_wall_ns: u64,
    /// Reserved, zero.
    pub reserved: [u64; 13],
}

/// Byte offset of `head` in a ring file.
pub const HEAD_OFFSET: usize = WRITER_BLOCK_OFFSET;
/// Byte offset of `tail` in a ring file.
pub const TAIL_OFFSET: usize = READER_BLOCK_OFFSET;

/// The writer block of a table file, at offset [`HEADER_SIZE`] (128 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct TableBlock {
    /// Bytes of the entry area that hold complete entries. Stored with release ordering after
    /// the entries it covers are completely written.
    pub used: u64,
    /// Number of ids handed out (the next id is `next_id`). Informational.
    pub next_id: u64,
    /// Series that were refused because the cardinality limit was reached (they record into
    /// their family's overflow series).
    pub overflowed_series: u64,
    /// Reserved, zero.
    pub reserved: [u64; 13],
}

/// Byte offset of the table's `used` length.
pub const TABLE_USED_OFFSET: usize = HEADER_SIZE;

// ----------------------------------------------------------------------------------------------
// Frames
// ----------------------------------------------------------------------------------------------

/// Alignment of every frame and every table entry.
pub const FRAME_ALIGN: usize = 8;

/// Round `n` up to [`FRAME_ALIGN`].
#[inline(always)]
pub const fn align8(n: usize) -> usize {
    (n + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The 8-byte header of every frame in a ring.
///
/// ```text
/// +-------------------------------+---------------+---------------+
/// |        length (u32)           |   kind (u16)  |  flags (u16)  |
/// +-------------------------------+---------------+---------------+
/// ```
/// `length` counts the header and the body but not the padding to the next 8-byte boundary;
/// the next frame starts at `align8(length)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct FrameHeader {
    /// Header plus body, in bytes (>= 8).
    pub length: u32,
    /// One of the `KIND_*` constants.
    pub kind: u16,
    /// Kind-specific flags.
    pub flags: u16,
}

/// Size of [`FrameHeader`].
pub const FRAME_HEADER_SIZE: usize = 8;
/// Largest frame a writer may append and a reader accepts (64 KiB).
pub const MAX_FRAME: usize = 64 * 1024;

/// Padding to the end of the ring; the reader skips it and continues at offset 0.
pub const KIND_PADDING: u16 = 1;
/// [`CounterAdd`].
pub const KIND_COUNTER_ADD: u16 = 2;
/// [`GaugeUpdate`]: set the gauge.
pub const KIND_GAUGE_SET: u16 = 3;
/// [`GaugeUpdate`]: add to the gauge (negative to subtract).
pub const KIND_GAUGE_ADD: u16 = 4;
/// [`HistogramObserve`], optionally followed by an [`Exemplar`].
pub const KIND_HISTOGRAM: u16 = 5;
/// [`SpanRecord`].
pub const KIND_SPAN: u16 = 6;
/// [`SpanAttr`] followed by a [`TypedValue`].
pub const KIND_SPAN_ATTR: u16 = 7;
/// [`SpanEvent`].
pub const KIND_SPAN_EVENT: u16 = 8;
/// [`LogRecord`] followed by message, correlation id and fields.
pub const KIND_LOG: u16 = 9;
/// [`BusinessEvent`] followed by tags.
pub const KIND_BUSINESS: u16 = 10;

/// A span link: another span this span relates to (body [`SpanLink`]).
pub const KIND_SPAN_LINK: u16 = 11;
/// An attribute of a span link (body [`SpanAttr`] with `event_seq` holding the link's
/// `link_seq`, then one [`TypedValue`]).
pub const KIND_SPAN_LINK_ATTR: u16 = 12;
/// Flag of [`KIND_HISTOGRAM`]: an [`Exemplar`] follows the observation.
pub const FLAG_EXEMPLAR: u16 = 1;

/// Body of [`KIND_COUNTER_ADD`] (frame: 24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct CounterAdd {
    /// Series id (from the process's table).
    pub series: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Amount added (finite, >= 0).
    pub value: f64,
}

/// Body of [`KIND_GAUGE_SET`] and [`KIND_GAUGE_ADD`] (frame: 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GaugeUpdate {
    /// Series id.
    pub series: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Time of the update, in ticks.
    pub ts: u64,
    /// New value (set) or delta (add).
    pub value: f64,
}

/// Body of [`KIND_HISTOGRAM`] (frame: 24 bytes, or 56 with [`FLAG_EXEMPLAR`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct HistogramObserve {
    /// Series id.
    pub series: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Observed value.
    pub value: f64,
}

/// Exemplar following a [`HistogramObserve`] when [`FLAG_EXEMPLAR`] is set (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct Exemplar {
    /// W3C trace id of the span the observation was made in.
    pub trace_id: [u8; 16],
    /// Span id, big-endian bytes.
    pub span_id: [u8; 8],
    /// Time of the observation, in ticks.
    pub ts: u64,
}

/// Span kinds (OpenTelemetry numbering).
pub mod span_kind {
    /// Unspecified.
    pub const UNSPECIFIED: u8 = 0;
    /// Internal operation.
    pub const INTERNAL: u8 = 1;
    /// Server side of a request.
    pub const SERVER: u8 = 2;
    /// Client side of a request.
    pub const CLIENT: u8 = 3;
    /// Producer of a message.
    pub const PRODUCER: u8 = 4;
    /// Consumer of a message.
    pub const CONSUMER: u8 = 5;
}

/// Span status codes (OpenTelemetry numbering).
pub mod span_status {
    /// Not set.
    pub const UNSET: u8 = 0;
    /// Completed successfully.
    pub const OK: u8 = 1;
    /// Completed with an error.
    pub const ERROR: u8 = 2;
}

/// Flag of [`SpanRecord::flags`]: the span is sampled (W3C trace-flags bit 0).
pub const SPAN_FLAG_SAMPLED: u8 = 1;
/// Flag of [`SpanRecord::flags`]: the parent is remote (came from propagated headers).
pub const SPAN_FLAG_REMOTE_PARENT: u8 = 2;

/// Body of [`KIND_SPAN`] (64 bytes; frame: 72 bytes), written when the span ends. Its attributes and
/// events are separate frames carrying the same `span_id`, written before it (by any thread of
/// the same process).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct SpanRecord {
    /// W3C trace id.
    pub trace_id: [u8; 16],
    /// Span id, big-endian bytes.
    pub span_id: [u8; 8],
    /// Parent span id, big-endian bytes; all zero for a root span.
    pub parent_span_id: [u8; 8],
    /// Start time, in ticks.
    pub start_ts: u64,
    /// End time, in ticks.
    pub end_ts: u64,
    /// Symbol id of the span name.
    pub name: u32,
    /// One of [`span_kind`].
    pub kind: u8,
    /// One of [`span_status`].
    pub status: u8,
    /// [`SPAN_FLAG_SAMPLED`] | [`SPAN_FLAG_REMOTE_PARENT`].
    pub flags: u8,
    /// Reserved, zero.
    pub reserved0: u8,
    /// Number of attribute frames written for this span (including dropped ones).
    pub attr_count: u16,
    /// Number of event frames written for this span.
    pub event_count: u16,
    /// Attributes or events not recorded because of the per-span limits.
    pub dropped_attrs: u16,
    /// Reserved, zero.
    pub reserved1: u16,
}

/// Body of [`KIND_SPAN_ATTR`] (16 bytes), followed by one [`TypedValue`]. `event_seq` 0 means an
/// attribute of the span itself; n > 0 an attribute of the span's n-th event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct SpanAttr {
    /// Span id the attribute belongs to, big-endian bytes.
    pub span_id: [u8; 8],
    /// 0 for the span, n for its n-th event (1-based).
    pub event_seq: u16,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

/// Body of [`KIND_SPAN_EVENT`] (frame: 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct SpanEvent {
    /// Span id, big-endian bytes.
    pub span_id: [u8; 8],
    /// Time of the event, in ticks.
    pub ts: u64,
    /// Symbol id of the event name.
    pub name: u32,
    /// 1-based sequence of this event within the span.
    pub event_seq: u16,
    /// Reserved, zero.
    pub reserved: u16,
}

/// Body of [`KIND_SPAN_LINK`] (40 bytes; frame: 48 bytes). The link's attributes are
/// [`KIND_SPAN_LINK_ATTR`] frames with the same `span_id` and `link_seq`, written after it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct SpanLink {
    /// Span id of the span that has the link, big-endian bytes.
    pub span_id: [u8; 8],
    /// Trace id of the linked span.
    pub linked_trace_id: [u8; 16],
    /// Span id of the linked span.
    pub linked_span_id: [u8; 8],
    /// 1-based sequence of this link within its span.
    pub link_seq: u16,
    /// [`SPAN_FLAG_SAMPLED`] | [`SPAN_FLAG_REMOTE_PARENT`] of the linked context (the second
    /// meaning "remote").
    pub flags: u8,
    /// Reserved, zero.
    pub reserved: [u8; 5],
}

/// Log levels.
pub mod log_level {
    /// Finest detail.
    pub const TRACE: u8 = 0;
    /// Debugging.
    pub const DEBUG: u8 = 1;
    /// Normal operation.
    pub const INFO: u8 = 2;
    /// Something unexpected but handled.
    pub const WARN: u8 = 3;
    /// An operation failed.
    pub const ERROR: u8 = 4;
    /// The process cannot continue.
    pub const FATAL: u8 = 5;
}

/// Flag of [`LogRecord::flags`]: the message was truncated to the writer's maximum size.
pub const LOG_FLAG_TRUNCATED: u8 = 1;

/// Body of [`KIND_LOG`] (48 bytes), followed by the message bytes (UTF-8, `msg_len` bytes), the
/// correlation id (`corr_len` bytes), padding to 8, then `field_count` [`TypedValue`]s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct LogRecord {
    /// Time, in ticks.
    pub ts: u64,
    /// Trace id of the current span; all zero if none.
    pub trace_id: [u8; 16],
    /// Span id of the current span; all zero if none.
    pub span_id: [u8; 8],
    /// One of [`log_level`].
    pub level: u8,
    /// [`LOG_FLAG_TRUNCATED`].
    pub flags: u8,
    /// Number of fields that follow.
    pub field_count: u16,
    /// Symbol id of the caller (`file:line function`), 0 if none.
    pub caller: u32,
    /// Length of the message in bytes.
    pub msg_len: u32,
    /// Length of the correlation id in bytes (0 if none).
    pub corr_len: u32,
}

/// Body of [`KIND_BUSINESS`] (32 bytes), followed by `tag_count` [`TypedValue`]s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BusinessEvent {
    /// Time, in ticks.
    pub ts: u64,
    /// Value.
    pub value: f64,
    /// Symbol id of the metric name.
    pub name: u32,
    /// Symbol id of the unit (0 if none).
    pub unit: u32,
    /// Number of tags that follow.
    pub tag_count: u16,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

/// Value types of a [`TypedValue`].
pub mod value_type {
    /// No value (JSON null).
    pub const NULL: u8 = 0;
    /// `value` is 0 or 1.
    pub const BOOL: u8 = 1;
    /// `value` is an i64.
    pub const I64: u8 = 2;
    /// `value` is the bits of an f64.
    pub const F64: u8 = 3;
    /// `value` is a byte length; that many UTF-8 bytes follow, padded to 8.
    pub const STR: u8 = 4;
    /// Like [`STR`], but the bytes are a JSON document (nested values, arrays).
    pub const JSON: u8 = 5;
}

/// A key and a typed value (16 bytes), used by span attributes, log fields and business tags.
/// For [`value_type::STR`] and [`value_type::JSON`] the bytes follow, padded to 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct TypedValue {
    /// Symbol id of the key.
    pub key: u32,
    /// One of [`value_type`].
    pub vtype: u8,
    /// Reserved, zero.
    pub reserved: [u8; 3],
    /// The value, or the byte length of a string.
    pub value: u64,
}

// ----------------------------------------------------------------------------------------------
// Overflow slots
// ----------------------------------------------------------------------------------------------

/// Overflow slot kinds.
pub mod slot_kind {
    /// Unused slot.
    pub const EMPTY: u32 = 0;
    /// `value` is the cumulative sum of counter increments that found the ring full.
    pub const COUNTER: u32 = 1;
    /// Gauge: `value` is the cumulative sum of adds; `set_value`/`set_ts` the last set.
    pub const GAUGE: u32 = 2;
}

/// One overflow slot (32 bytes), indexed by series id, in a ring file. Written only by the ring's
/// writer, read by the collector, never reset: the collector remembers what it has taken.
///
/// Store order (writer): `value`/`set_value`/`set_ts`, then `seq` with release ordering. The
/// reader loads `seq` with acquire ordering, then the values, then `seq` again; if the two
/// `seq` loads differ it retries (a seqlock with one writer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct OverflowSlot {
    /// Change counter; odd while the writer is updating the slot.
    pub seq: u64,
    /// Cumulative adds (f64 bits).
    pub value_bits: u64,
    /// Last gauge set (f64 bits); meaningful when `set_ts` != 0.
    pub set_value_bits: u64,
    /// Ticks of the last gauge set, 0 if none. The slot kind is implied by the series' type.
    pub set_ts: u64,
}

// ----------------------------------------------------------------------------------------------
// Table entries
// ----------------------------------------------------------------------------------------------

/// Header of a table entry (16 bytes); the payload follows, the entry is padded to 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct EntryHeader {
    /// Total entry length including this header and padding (a multiple of 8).
    pub length: u32,
    /// One of the `ENTRY_*` constants.
    pub kind: u16,
    /// Kind-specific: for [`ENTRY_FAMILY`] the metric type, for others 0.
    pub subkind: u8,
    /// Kind-specific: for [`ENTRY_FAMILY`] the gauge merge mode, for others 0.
    pub mode: u8,
    /// The id this entry defines (ids start at 1; 0 means "none").
    pub id: u32,
    /// For [`ENTRY_SERIES`] the family id; 0 otherwise.
    pub parent: u32,
}

/// Size of [`EntryHeader`].
pub const ENTRY_HEADER_SIZE: usize = 16;

/// A symbol: payload is one string (span names, attribute and field keys, event names, units).
pub const ENTRY_SYMBOL: u16 = 1;
/// A metric family: payload is name, help, unit, label count + label names, bucket count +
/// bucket bounds (f64).
pub const ENTRY_FAMILY: u16 = 2;
/// A series: payload is the label values (as many as the family has label names).
pub const ENTRY_SERIES: u16 = 3;

/// Metric types (the `subkind` of an [`ENTRY_FAMILY`]).
pub mod metric_type {
    /// Monotonic counter.
    pub const COUNTER: u8 = 1;
    /// Gauge.
    pub const GAUGE: u8 = 2;
    /// Histogram with buckets.
    pub const HISTOGRAM: u8 = 3;
    /// Summary (count, sum; quantiles computed by the collector).
    pub const SUMMARY: u8 = 4;
}

/// Gauge merge modes across processes (the `mode` of an [`ENTRY_FAMILY`]), as in
/// prometheus_client's multiprocess mode.
pub mod gauge_mode {
    /// One series per process, labelled `pid`.
    pub const ALL: u8 = 0;
    /// Like ALL, but only live processes.
    pub const LIVEALL: u8 = 1;
    /// Sum over processes.
    pub const SUM: u8 = 2;
    /// Sum over live processes.
    pub const LIVESUM: u8 = 3;
    /// Minimum over processes.
    pub const MIN: u8 = 4;
    /// Minimum over live processes.
    pub const LIVEMIN: u8 = 5;
    /// Maximum over processes.
    pub const MAX: u8 = 6;
    /// Maximum over live processes.
    pub const LIVEMAX: u8 = 7;
    /// The most recently set value, across processes.
    pub const MOSTRECENT: u8 = 8;
    /// The most recently set value, across live processes.
    pub const LIVEMOSTRECENT: u8 = 9;
}

/// Strings in table entries: a u32 byte length, then UTF-8 bytes (no padding between strings).
pub const STRING_LEN_SIZE: usize = 4;

// ----------------------------------------------------------------------------------------------
// Pinned sizes and offsets (the spec's tables, checked at compile time)
// ----------------------------------------------------------------------------------------------

const _: () = {
    assert!(core::mem::size_of::<RegionHeader>() == HEADER_SIZE);
    assert!(core::mem::size_of::<WriterBlock>() == POSITION_SPACING);
    assert!(core::mem::size_of::<ReaderBlock>() == POSITION_SPACING);
    assert!(core::mem::size_of::<TableBlock>() == POSITION_SPACING);
    assert!(core::mem::size_of::<FrameHeader>() == FRAME_HEADER_SIZE);
    assert!(core::mem::size_of::<CounterAdd>() == 16);
    assert!(core::mem::size_of::<GaugeUpdate>() == 24);
    assert!(core::mem::size_of::<HistogramObserve>() == 16);
    assert!(core::mem::size_of::<Exemplar>() == 32);
    assert!(core::mem::size_of::<SpanRecord>() == 64);
    assert!(core::mem::size_of::<SpanAttr>() == 16);
    assert!(core::mem::size_of::<SpanEvent>() == 24);
    assert!(core::mem::size_of::<LogRecord>() == 48);
    assert!(core::mem::size_of::<BusinessEvent>() == 32);
    assert!(core::mem::size_of::<TypedValue>() == 16);
    assert!(core::mem::size_of::<OverflowSlot>() == 32);
    assert!(core::mem::size_of::<EntryHeader>() == ENTRY_HEADER_SIZE);
    assert!(core::mem::offset_of!(RegionHeader, layout_version) == HEADER_VERSION_OFFSET);
    assert!(core::mem::offset_of!(RegionHeader, process_start) == 40);
    assert!(core::mem::offset_of!(RegionHeader, clock_source) == 56);
    assert!(core::mem::offset_of!(RegionHeader, anchor_ticks) == 64);
    assert!(core::mem::offset_of!(RegionHeader, data_offset) == 88);
    assert!(core::mem::offset_of!(RegionHeader, thread_name) == 120);
    assert!(core::mem::offset_of!(RegionHeader, service) == 136);
    assert!(core::mem::offset_of!(SpanRecord, name) == 48);
    assert!(core::mem::offset_of!(LogRecord, level) == 32);
    assert!(RING_DATA_OFFSET == 512);
    assert!(TABLE_DATA_OFFSET == 384);
};
