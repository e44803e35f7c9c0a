//! The normative spec (`layout-spec/*.md`) and the code (`shmtel_core::layout`, the reader) must
//! agree. This test
//!
//! 1. parses every offset table (`<!-- layout: Struct size=N -->`) and the constants table
//!    (`<!-- constants -->`) out of the Markdown and checks each struct size, field offset and
//!    field size with `offset_of!`/`size_of`, and each constant's value, so spec and code cannot
//!    drift apart;
//! 2. decodes the golden fixtures (`layout-spec/fixtures/v1/`, written by an independent Python
//!    writer from the spec alone) with `shmtel_core::reader` and compares everything with
//!    `expected.json`;
//! 3. breaks the fixtures one rule at a time and checks that the reader rejects each with the
//!    reason the spec's validation list gives.
#![cfg(not(loom))] // uses the parts of the crate that `--cfg loom` leaves out

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use shmtel_core::clock::ClockAnchor;
use shmtel_core::layout::*;
use shmtel_core::reader::{decode, AttrValue, Attrs, DecodeError, Record, RingReader, TableReader};
use shmtel_core::region::{RegionFile, RegionName};

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../layout-spec")
}

fn spec_text() -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(spec_dir())
        .expect("layout-spec/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------------------------------------------------
// 1. Offset tables and constants
// ------------------------------------------------------------------------------------------------

/// (offset, size, field) rows of one `<!-- layout: ... -->` table.
#[derive(Debug)]
struct SpecStruct {
    size: usize,
    rows: Vec<(usize, usize, String)>,
}

fn table_rows<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        let line = line.trim();
        if line.is_empty() {
            if rows.is_empty() {
                continue;
            }
            break;
        }
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue; // the separator row
        }
        rows.push(cells);
    }
    if !rows.is_empty() {
        rows.remove(0); // the heading row
    }
    rows
}

fn spec_structs(text: &str) -> BTreeMap<String, SpecStruct> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- layout: ") else {
            continue;
        };
        let rest = rest.trim_end_matches("-->").trim();
        let (name, size) = rest
            .split_once(" size=")
            .expect("`<!-- layout: Name size=N -->`");
        let size: usize = size.trim().parse().expect("size is a number");
        let rows = table_rows(&mut lines)
            .into_iter()
            .map(|cells| {
                let offset = cells[0]
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: offset {:?}", cells[0]));
                let size = cells[1]
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: size {:?}", cells[1]));
                (offset, size, cells[2].trim_matches('`').to_owned())
            })
            .collect();
        let prev = out.insert(name.to_owned(), SpecStruct { size, rows });
        assert!(prev.is_none(), "{name} is specified twice");
    }
    out
}

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// (struct name, size, [(field, offset, size)]) from the Rust definitions.
macro_rules! rust_struct {
    ($t:ident { $($f:ident),* $(,)? }) => {
        (
            stringify!($t),
            std::mem::size_of::<$t>(),
            vec![$((stringify!($f), std::mem::offset_of!($t, $f), field_size(|s: &$t| &s.$f))),*],
        )
    };
}

type RustStruct = (&'static str, usize, Vec<(&'static str, usize, usize)>);

fn rust_structs() -> Vec<RustStruct> {
    vec![
        rust_struct!(RegionHeader {
            magic,
            layout_version,
            region_kind,
            file_size,
            header_size,
            owner_uid,
            pid,
            tid,
            process_start,
            created_wall_ns,
            clock_source,
            reserved0,
            anchor_ticks,
            anchor_wall_ns,
            ticks_per_sec_bits,
            data_offset,
            data_capacity,
            overflow_offset,
            overflow_slots,
            thread_name,
            service,
            reserved,
        }),
        rust_struct!(WriterBlock {
            head,
            dropped_spans,
            dropped_logs,
            dropped_other,
            coalesced_updates,
            dropped_metric_updates,
            closed,
            overflow_high_water,
            reserved,
        }),
        rust_struct!(ReaderBlock {
            tail,
            collector_pid,
            heartbeat_wall_ns,
            reserved
        }),
        rust_struct!(TableBlock {
            used,
            next_id,
            overflowed_series,
            reserved
        }),
        rust_struct!(FrameHeader {
            length,
            kind,
            flags
        }),
        rust_struct!(CounterAdd {
            series,
            reserved,
            value
        }),
        rust_struct!(GaugeUpdate {
            series,
            reserved,
            ts,
            value
        }),
        rust_struct!(HistogramObserve {
            series,
            reserved,
            value
        }),
        rust_struct!(Exemplar {
            trace_id,
            span_id,
            ts
        }),
        rust_struct!(SpanRecord {
            trace_id,
            span_id,
            parent_span_id,
            start_ts,
            end_ts,
            name,
            kind,
            status,
            flags,
            reserved0,
            attr_count,
            event_count,
            dropped_attrs,
            reserved1,
        }),
        rust_struct!(SpanAttr {
            span_id,
            event_seq,
            reserved
        }),
        rust_struct!(SpanEvent {
            span_id,
            ts,
            name,
            event_seq,
            reserved
        }),
        rust_struct!(SpanLink {
            span_id,
            linked_trace_id,
            linked_span_id,
            link_seq,
            flags,
            reserved
        }),
        rust_struct!(LogRecord {
            ts,
            trace_id,
            span_id,
            level,
            flags,
            field_count,
            caller,
            msg_len,
            corr_len
        }),
        rust_struct!(BusinessEvent {
            ts,
            value,
            name,
            unit,
            tag_count,
            reserved
        }),
        rust_struct!(TypedValue {
            key,
            vtype,
            reserved,
            value
        }),
        rust_struct!(OverflowSlot {
            seq,
            value_bits,
            set_value_bits,
            set_ts
        }),
        rust_struct!(EntryHeader {
            length,
            kind,
            subkind,
            mode,
            id,
            parent
        }),
    ]
}

#[test]
fn spec_offset_tables_match_the_rust_structs() {
    let spec = spec_structs(&spec_text());
    let rust = rust_structs();
    let rust_names: BTreeSet<&str> = rust.iter().map(|r| r.0).collect();
    let spec_names: BTreeSet<&str> = spec.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        spec_names, rust_names,
        "the spec and layout.rs describe different sets of structs"
    );
    for (name, size, fields) in &rust {
        let s = &spec[*name];
        assert_eq!(s.size, *size, "{name}: size in the spec heading");
        // The spec's rows cover the struct exactly: contiguous, in order, no gap, no overlap.
        let mut at = 0;
        for (off, sz, field) in &s.rows {
            assert_eq!(
                *off, at,
                "{name}.{field}: the spec leaves a gap or overlaps before it"
            );
            at += sz;
        }
        assert_eq!(
            at, *size,
            "{name}: the spec's rows do not add up to the struct size"
        );
        let spec_fields: Vec<&str> = s.rows.iter().map(|r| r.2.as_str()).collect();
        let rust_fields: Vec<&str> = fields.iter().map(|f| f.0).collect();
        assert_eq!(
            spec_fields, rust_fields,
            "{name}: field names or order differ"
        );
        for ((off, sz, field), (_, roff, rsz)) in s.rows.iter().zip(fields) {
            assert_eq!(
                (off, sz),
                (roff, rsz),
                "{name}.{field}: (offset, size) spec vs Rust"
            );
        }
    }
}

fn rust_constant(name: &str) -> Option<u128> {
    Some(match name {
        "LAYOUT_VERSION" => LAYOUT_VERSION as u128,
        "HEADER_SIZE" => HEADER_SIZE as u128,
        "POSITION_SPACING" => POSITION_SPACING as u128,
        "WRITER_BLOCK_OFFSET" => WRITER_BLOCK_OFFSET as u128,
        "READER_BLOCK_OFFSET" => READER_BLOCK_OFFSET as u128,
        "RING_DATA_OFFSET" => RING_DATA_OFFSET as u128,
        "TABLE_DATA_OFFSET" => TABLE_DATA_OFFSET as u128,
        "HEAD_OFFSET" => HEAD_OFFSET as u128,
        "TAIL_OFFSET" => TAIL_OFFSET as u128,
        "TABLE_USED_OFFSET" => TABLE_USED_OFFSET as u128,
        "HEADER_VERSION_OFFSET" => HEADER_VERSION_OFFSET as u128,
        "MIN_RING_CAPACITY" => MIN_RING_CAPACITY as u128,
        "MAX_RING_CAPACITY" => MAX_RING_CAPACITY as u128,
        "MAX_TABLE_SIZE" => MAX_TABLE_SIZE as u128,
        "MAX_OVERFLOW_SLOTS" => MAX_OVERFLOW_SLOTS as u128,
        "REGION_TABLE" => REGION_TABLE as u128,
        "REGION_RING" => REGION_RING as u128,
        "CLOCK_REALTIME_NS" => CLOCK_REALTIME_NS as u128,
        "CLOCK_TSC" => CLOCK_TSC as u128,
        "FRAME_ALIGN" => FRAME_ALIGN as u128,
        "FRAME_HEADER_SIZE" => FRAME_HEADER_SIZE as u128,
        "MAX_FRAME" => MAX_FRAME as u128,
        "KIND_PADDING" => KIND_PADDING as u128,
        "KIND_COUNTER_ADD" => KIND_COUNTER_ADD as u128,
        "KIND_GAUGE_SET" => KIND_GAUGE_SET as u128,
        "KIND_GAUGE_ADD" => KIND_GAUGE_ADD as u128,
        "KIND_HISTOGRAM" => KIND_HISTOGRAM as u128,
        "KIND_SPAN" => KIND_SPAN as u128,
        "KIND_SPAN_ATTR" => KIND_SPAN_ATTR as u128,
        "KIND_SPAN_EVENT" => KIND_SPAN_EVENT as u128,
        "KIND_SPAN_LINK" => KIND_SPAN_LINK as u128,
        "KIND_SPAN_LINK_ATTR" => KIND_SPAN_LINK_ATTR as u128,
        "KIND_LOG" => KIND_LOG as u128,
        "KIND_BUSINESS" => KIND_BUSINESS as u128,
        "FLAG_EXEMPLAR" => FLAG_EXEMPLAR as u128,
        "SPAN_FLAG_SAMPLED" => SPAN_FLAG_SAMPLED as u128,
        "SPAN_FLAG_REMOTE_PARENT" => SPAN_FLAG_REMOTE_PARENT as u128,
        "LOG_FLAG_TRUNCATED" => LOG_FLAG_TRUNCATED as u128,
        "ENTRY_HEADER_SIZE" => ENTRY_HEADER_SIZE as u128,
        "ENTRY_SYMBOL" => ENTRY_SYMBOL as u128,
        "ENTRY_FAMILY" => ENTRY_FAMILY as u128,
        "ENTRY_SERIES" => ENTRY_SERIES as u128,
        "STRING_LEN_SIZE" => STRING_LEN_SIZE as u128,
        _ => return None,
    })
}

#[test]
fn spec_constants_match_the_rust_constants() {
    let text = spec_text();
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != "<!-- constants -->");
    assert!(
        lines.next().is_some(),
        "the spec has a `<!-- constants -->` table"
    );
    let rows = table_rows(&mut lines);
    assert!(
        rows.len() > 30,
        "constants table parsed: {} rows",
        rows.len()
    );
    let mut seen = BTreeSet::new();
    for cells in rows {
        let name = cells[0].trim_matches('`');
        let value = cells[1].trim_matches('`');
        seen.insert(name.to_owned());
        if name == "MAGIC" {
            let bytes: Vec<u8> = value
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect();
            assert_eq!(bytes, MAGIC, "MAGIC");
            continue;
        }
        let rust = rust_constant(name)
            .unwrap_or_else(|| panic!("spec constant {name} is unknown to the test"));
        assert_eq!(
            value.parse::<u128>().unwrap(),
            rust,
            "constant {name}: spec vs Rust"
        );
    }
    for name in [
        "LAYOUT_VERSION",
        "RING_DATA_OFFSET",
        "MAX_FRAME",
        "KIND_BUSINESS",
        "MIN_RING_CAPACITY",
    ] {
        assert!(seen.contains(name), "the spec lists {name}");
    }
}

#[test]
fn region_names_follow_the_spec() {
    assert_eq!(
        RegionName::parse("4242-987654.table"),
        Some(RegionName::Table {
            pid: 4242,
            start: 987654
        })
    );
    assert_eq!(
        RegionName::parse("4242-987654-4243-1.ring"),
        Some(RegionName::Ring {
            pid: 4242,
            start: 987654,
            tid: 4243,
            seq: 1
        })
    );
    for not_a_region in [
        "collector.state",
        "4242.table",
        "4242-1-2.ring",
        "4242-1-2-3-4.ring",
        "a-1.table",
        "4242-1.ring",
    ] {
        assert_eq!(RegionName::parse(not_a_region), None, "{not_a_region}");
    }
}

/// README.md §5: the TSC conversion, its example, and the clamp to [0, 2^64 - 1].
#[test]
fn clock_conversion_follows_the_spec() {
    let a = ClockAnchor {
        source: CLOCK_TSC,
        ticks: 1_000_000_000,
        wall_ns: 1_700_000_000_000_000_000,
        ticks_per_sec: 2e9,
    };
    assert_eq!(
        a.to_wall_ns(1_000_002_000),
        1_700_000_000_000_001_000,
        "the spec's example"
    );
    assert_eq!(
        a.to_wall_ns(999_996_000),
        1_699_999_999_999_998_000,
        "ticks before the anchor"
    );
    let rt = ClockAnchor {
        source: CLOCK_REALTIME_NS,
        ticks: 0,
        wall_ns: 0,
        ticks_per_sec: 1e9,
    };
    assert_eq!(rt.to_wall_ns(123), 123, "realtime ticks are ns");
    // Far before the epoch: clamped to 0.
    let early = ClockAnchor {
        source: CLOCK_TSC,
        ticks: u64::MAX,
        wall_ns: 5,
        ticks_per_sec: 1.0,
    };
    assert_eq!(early.to_wall_ns(0), 0);
    // Far after: clamped to u64::MAX.
    let late = ClockAnchor {
        source: CLOCK_TSC,
        ticks: 0,
        wall_ns: u64::MAX - 1,
        ticks_per_sec: 1e9,
    };
    assert_eq!(late.to_wall_ns(u64::MAX), u64::MAX);
    // A hostile header: a tiny positive frequency makes the quotient infinite. The result must
    // still be the clamp (u64::MAX), not a panic (debug) or a wrapped 0 (release).
    let hostile = ClockAnchor {
        source: CLOCK_TSC,
        ticks: 0,
        wall_ns: 1,
        ticks_per_sec: 1e-300,
    };
    assert_eq!(
        hostile.to_wall_ns(1),
        u64::MAX,
        "an infinite quotient saturates"
    );
}

// ------------------------------------------------------------------------------------------------
// 2. Golden fixtures
// ------------------------------------------------------------------------------------------------

fn expected() -> Json {
    let path = spec_dir().join("fixtures/v1/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixtures copied into a private directory, mode 0600, with `owner_uid` patched to our euid
/// (the spec's owner policy, README.md §6 and §8).
struct Fixtures {
    dir: tempfile::TempDir,
    table: PathBuf,
    ring: PathBuf,
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Overwrite bytes of a file in place (no truncation: the file may be mapped).
fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    assert!(offset + bytes.len() <= f.metadata().unwrap().len() as usize);
    f.write_all_at(bytes, offset as u64).unwrap();
}

fn fixtures() -> Fixtures {
    let e = expected();
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for key in ["table_file", "ring_file"] {
        let name = e[key].as_str().unwrap();
        let dst = dir.path().join(name);
        std::fs::copy(spec_dir().join("fixtures/v1").join(name), &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
        patch(
            &dst,
            std::mem::offset_of!(RegionHeader, owner_uid),
            &euid().to_le_bytes(),
        );
        paths.push(dst);
    }
    let ring = paths.pop().unwrap();
    let table = paths.pop().unwrap();
    Fixtures { dir, table, ring }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value_json(key: u32, v: AttrValue<'_>) -> Json {
    let (t, value) = match v {
        AttrValue::Null => ("null", Json::Null),
        AttrValue::Bool(b) => ("bool", json!(b)),
        AttrValue::I64(i) => ("i64", json!(i)),
        AttrValue::F64(f) => ("f64", json!(f)),
        AttrValue::Str(s) => ("str", json!(std::str::from_utf8(s).expect("UTF-8"))),
        AttrValue::Json(s) => ("json", json!(std::str::from_utf8(s).expect("UTF-8"))),
    };
    json!({"key": key, "type": t, "value": value})
}

fn attrs_json(a: &Attrs<'_>) -> Json {
    let v: Vec<Json> = a.iter().map(|x| value_json(x.key, x.value)).collect();
    assert_eq!(v.len(), a.len(), "every validated value iterates");
    Json::Array(v)
}

/// A decoded frame in the vocabulary of expected.json.
fn record_json(position: u64, r: Result<Record<'_>, DecodeError>) -> Json {
    let mut j = match r {
        Err(DecodeError::UnknownKind(k)) => json!({"kind": "unknown", "code": k}),
        Err(e) => panic!("fixture frame at {position} does not decode: {e}"),
        Ok(Record::CounterAdd { series, value }) => {
            json!({"kind": "counter_add", "series": series, "value": value})
        }
        Ok(Record::GaugeSet { series, ts, value }) => {
            json!({"kind": "gauge_set", "series": series, "ts": ts, "value": value})
        }
        Ok(Record::GaugeAdd { series, ts, value }) => {
            json!({"kind": "gauge_add", "series": series, "ts": ts, "value": value})
        }
        Ok(Record::Histogram {
            series,
            value,
            exemplar,
        }) => json!({
            "kind": "histogram", "series": series, "value": value,
            "exemplar": exemplar.map(|e| json!({"trace_id": hex(&e.trace_id), "span_id": hex(&e.span_id), "ts": e.ts})),
        }),
        Ok(Record::Span(s)) => json!({
            "kind": "span", "trace_id": hex(&s.trace_id), "span_id": hex(&s.span_id),
            "parent_span_id": hex(&s.parent_span_id), "start_ts": s.start_ts, "end_ts": s.end_ts,
            "name": s.name, "span_kind": s.kind, "status": s.status, "flags": s.flags,
            "attr_count": s.attr_count, "event_count": s.event_count, "dropped_attrs": s.dropped_attrs,
        }),
        Ok(Record::SpanAttr {
            span_id,
            event_seq,
            attr,
        }) => json!({
            "kind": "span_attr", "span_id": hex(&span_id), "event_seq": event_seq,
            "attr": value_json(attr.key, attr.value),
        }),
        Ok(Record::SpanEvent(e)) => json!({
            "kind": "span_event", "span_id": hex(&e.span_id), "ts": e.ts, "name": e.name, "event_seq": e.event_seq,
        }),
        Ok(Record::SpanLink(l)) => json!({
            "kind": "span_link", "span_id": hex(&l.span_id), "linked_trace_id": hex(&l.linked_trace_id),
            "linked_span_id": hex(&l.linked_span_id), "link_seq": l.link_seq, "flags": l.flags,
        }),
        Ok(Record::SpanLinkAttr {
            span_id,
            link_seq,
            attr,
        }) => json!({
            "kind": "span_link_attr", "span_id": hex(&span_id), "link_seq": link_seq,
            "attr": value_json(attr.key, attr.value),
        }),
        Ok(Record::Log {
            rec,
            message,
            correlation,
            fields,
        }) => json!({
            "kind": "log", "ts": rec.ts, "trace_id": hex(&rec.trace_id), "span_id": hex(&rec.span_id),
            "level": rec.level, "flags": rec.flags, "caller": rec.caller,
            "message": std::str::from_utf8(message).unwrap(),
            "correlation": std::str::from_utf8(correlation).unwrap(),
            "fields": attrs_json(&fields),
        }),
        Ok(Record::Business { rec, tags }) => json!({
            "kind": "business", "ts": rec.ts, "value": rec.value, "name": rec.name, "unit": rec.unit,
            "tags": attrs_json(&tags),
        }),
    };
    j["position"] = json!(position);
    j
}

fn c_string(b: &[u8]) -> String {
    String::from_utf8(b.iter().copied().take_while(|c| *c != 0).collect()).unwrap()
}

#[test]
fn golden_fixtures_headers() {
    let e = expected();
    let f = fixtures();
    let eh = &e["header"];
    for (path, kind, tid) in [
        (&f.table, REGION_TABLE, 0),
        (&f.ring, REGION_RING, eh["tid"].as_u64().unwrap()),
    ] {
        let r = RegionFile::open(path, false).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let h = r.header();
        assert_eq!(
            h.layout_version as u64,
            e["layout_version"].as_u64().unwrap()
        );
        assert_eq!(h.region_kind, kind);
        assert_eq!(h.pid as u64, eh["pid"].as_u64().unwrap());
        assert_eq!(h.process_start, eh["start"].as_u64().unwrap());
        assert_eq!(h.tid as u64, tid);
        assert_eq!(h.owner_uid, euid(), "patched by the test");
        assert_eq!(h.clock_source as u64, eh["clock_source"].as_u64().unwrap());
        assert_eq!(h.created_wall_ns, eh["created_wall_ns"].as_u64().unwrap());
        let a = r.anchor();
        assert_eq!(a.ticks, eh["anchor_ticks"].as_u64().unwrap());
        assert_eq!(a.wall_ns, eh["anchor_wall_ns"].as_u64().unwrap());
        assert_eq!(a.ticks_per_sec, eh["ticks_per_sec"].as_f64().unwrap());
        assert_eq!(c_string(&h.service), eh["service"].as_str().unwrap());
        let thread = if kind == REGION_RING {
            eh["thread_name"].as_str().unwrap()
        } else {
            ""
        };
        assert_eq!(c_string(&h.thread_name), thread);
        for w in e["ring"]["wall_ns"].as_array().unwrap() {
            assert_eq!(
                a.to_wall_ns(w["ticks"].as_u64().unwrap()),
                w["wall_ns"].as_u64().unwrap(),
                "{w}"
            );
        }
    }
}

#[test]
fn golden_fixtures_table() {
    let e = &expected()["table"];
    let f = fixtures();
    let t = TableReader::open(&f.table).unwrap_or_else(|e| panic!("table: {e}"));
    let symbols: BTreeMap<String, String> = t
        .symbols
        .iter()
        .map(|(id, s)| (id.to_string(), s.clone()))
        .collect();
    let want: BTreeMap<String, String> = serde_json::from_value(e["symbols"].clone()).unwrap();
    assert_eq!(symbols, want, "symbols");
    let fams = e["families"].as_array().unwrap();
    assert_eq!(t.families.len(), fams.len());
    for fam in fams {
        let got = &t.families[&(fam["id"].as_u64().unwrap() as u32)];
        let got = json!({
            "id": got.id, "metric_type": got.metric_type, "mode": got.mode, "name": got.name,
            "help": got.help, "unit": got.unit, "labels": got.labels, "buckets": got.buckets,
        });
        assert_eq!(&got, fam);
    }
    let series = e["series"].as_array().unwrap();
    assert_eq!(t.series.len(), series.len());
    for s in series {
        let got = &t.series[&(s["id"].as_u64().unwrap() as u32)];
        assert_eq!(
            &json!({"id": got.id, "family": got.family, "values": got.values}),
            s
        );
    }
    assert_eq!(
        t.overflowed_series(),
        e["overflowed_series"].as_u64().unwrap()
    );
    let (s, fam) = t.series_family(4).unwrap();
    assert_eq!(
        (s.values[0].as_str(), fam.name.as_str()),
        ("__shmtel_overflow__", "requests")
    );
}

#[test]
fn golden_fixtures_ring() {
    let e = &expected()["ring"];
    let f = fixtures();
    let mut r = RingReader::open(&f.ring, false).unwrap_or_else(|e| panic!("ring: {e}"));
    let st = r.stats();
    assert_eq!(st.head, e["head"].as_u64().unwrap());
    assert_eq!(st.tail, e["tail"].as_u64().unwrap());
    assert_eq!(st.capacity, e["capacity"].as_u64().unwrap());
    assert_eq!(st.dropped_spans, e["dropped_spans"].as_u64().unwrap());
    assert_eq!(st.dropped_logs, e["dropped_logs"].as_u64().unwrap());
    assert_eq!(st.dropped_other, e["dropped_other"].as_u64().unwrap());
    assert_eq!(st.coalesced, e["coalesced"].as_u64().unwrap());
    assert_eq!(st.dropped_metric, e["dropped_metric"].as_u64().unwrap());
    assert_eq!(st.closed, e["closed"].as_bool().unwrap());
    assert_eq!(
        r.region().load_u64(READER_BLOCK_OFFSET + 8),
        e["collector_pid"].as_u64().unwrap()
    );
    assert_eq!(r.position(), st.tail, "a reader starts at the shared tail");

    let mut got = Vec::new();
    let n = r
        .read(usize::MAX, false, |pos, rec| {
            got.push(record_json(pos, rec))
        })
        .expect("the fixture ring is valid");
    let want = e["records"].as_array().unwrap();
    assert_eq!(
        n,
        want.len(),
        "frames delivered (the padding frame is not one)"
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "record {i}");
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(r.position(), st.head, "read to the head");
    assert_eq!(
        r.stats().tail,
        st.tail,
        "a read-only reader never stores the tail"
    );

    let mut slots = Vec::new();
    r.read_slots(|series, v| {
        slots.push(json!({"series": series, "seq": v.seq, "added": v.added, "set_value": v.set_value, "set_ts": v.set_ts}))
    });
    assert_eq!(Json::Array(slots), e["slots"]);
}

/// The fixture again, read by a consuming reader (a mapping opened writable): the tail moves to
/// the head.
#[test]
fn golden_fixtures_consume() {
    let e = &expected()["ring"];
    let f = fixtures();
    let mut r = RingReader::open(&f.ring, true).unwrap();
    let mut n = 0;
    r.read(3, true, |_, _| n += 1).unwrap();
    assert_eq!(n, 3);
    let third_end = e["records"][3]["position"].as_u64().unwrap();
    assert_eq!(
        r.stats().tail,
        third_end,
        "tail released after the frames read"
    );
    r.read(usize::MAX, true, |_, _| n += 1).unwrap();
    assert_eq!(n, e["records"].as_array().unwrap().len());
    assert_eq!(r.stats().tail, e["head"].as_u64().unwrap());
    drop(r);
    // A new reader resumes from the shared tail: nothing left.
    let mut again = RingReader::open(&f.ring, false).unwrap();
    assert_eq!(
        again
            .read(usize::MAX, false, |_, _| panic!("already consumed"))
            .unwrap(),
        0
    );
}

// ------------------------------------------------------------------------------------------------
// 3. The validation rules of README.md §6, records.md §3.2 and table.md §4
// ------------------------------------------------------------------------------------------------

fn reject_reason(path: &Path) -> &'static str {
    match RegionFile::open(path, false) {
        Ok(_) => "accepted",
        Err(e) => e.reason(),
    }
}

#[test]
fn header_validation_rules() {
    use std::mem::offset_of;
    type Mutation = (&'static str, Box<dyn Fn(&Fixtures) -> PathBuf>);
    let patch_ring = |offset: usize, bytes: Vec<u8>| -> Box<dyn Fn(&Fixtures) -> PathBuf> {
        Box::new(move |f: &Fixtures| {
            patch(&f.ring, offset, &bytes);
            f.ring.clone()
        })
    };
    let u32le = |v: u32| v.to_le_bytes().to_vec();
    let u64le = |v: u64| v.to_le_bytes().to_vec();
    let cases: Vec<Mutation> = vec![
        ("accepted", Box::new(|f: &Fixtures| f.ring.clone())),
        ("bad_magic", patch_ring(0, b"SHMTEL\0\x02".to_vec())),
        ("not_ready", patch_ring(HEADER_VERSION_OFFSET, u32le(0))),
        (
            "unsupported_version",
            patch_ring(HEADER_VERSION_OFFSET, u32le(2)),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, header_size), u32le(128)),
        ),
        (
            "truncated",
            patch_ring(offset_of!(RegionHeader, file_size), u64le(4096)),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, region_kind), u32le(3)),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, data_offset), u64le(520)),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, data_capacity), u64le(3000)),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, data_capacity), u64le(2048)),
        ),
        (
            "bad_header",
            patch_ring(
                offset_of!(RegionHeader, overflow_slots),
                u64le(MAX_OVERFLOW_SLOTS + 1),
            ),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, overflow_slots), u64le(9)),
        ),
        (
            "bad_header",
            patch_ring(
                offset_of!(RegionHeader, overflow_offset),
                u64le(512 + 4096 + 4),
            ),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, overflow_offset), u64le(512 + 2048)),
        ),
        (
            "bad_header",
            patch_ring(offset_of!(RegionHeader, clock_source), u32le(2)),
        ),
        (
            "wrong_owner",
            patch_ring(
                offset_of!(RegionHeader, owner_uid),
                u32le(euid().wrapping_add(1)),
            ),
        ),
        (
            "name_mismatch",
            patch_ring(offset_of!(RegionHeader, pid), u32le(4241)),
        ),
        (
            "name_mismatch",
            patch_ring(offset_of!(RegionHeader, tid), u32le(1)),
        ),
        (
            "name_mismatch",
            patch_ring(offset_of!(RegionHeader, process_start), u64le(1)),
        ),
        (
            "name_mismatch",
            Box::new(|f: &Fixtures| {
                let p = f.dir.path().join("4242-987654.table");
                std::fs::remove_file(&p).unwrap();
                std::fs::rename(&f.ring, &p).unwrap();
                p
            }),
        ),
        (
            "insecure_mode",
            Box::new(|f: &Fixtures| {
                std::fs::set_permissions(&f.ring, std::fs::Permissions::from_mode(0o620)).unwrap();
                f.ring.clone()
            }),
        ),
        (
            "truncated",
            Box::new(|f: &Fixtures| {
                let b = std::fs::read(&f.ring).unwrap();
                std::fs::write(&f.ring, &b[..300]).unwrap();
                f.ring.clone()
            }),
        ),
        (
            "truncated",
            Box::new(|f: &Fixtures| {
                let mut b = std::fs::read(&f.ring).unwrap();
                b.extend_from_slice(&[0; 8]);
                std::fs::write(&f.ring, b).unwrap();
                f.ring.clone()
            }),
        ),
        (
            "not_regular_file",
            Box::new(|f: &Fixtures| {
                let p = f.dir.path().join("4242-987654-4243-2.ring");
                std::os::unix::fs::symlink(&f.ring, &p).unwrap();
                p
            }),
        ),
        (
            "not_regular_file",
            Box::new(|f: &Fixtures| {
                let p = f.dir.path().join("4242-987654-4243-3.ring");
                std::fs::create_dir(&p).unwrap();
                p
            }),
        ),
    ];
    for (i, (want, mutate)) in cases.iter().enumerate() {
        let f = fixtures();
        let path = mutate(&f);
        assert_eq!(reject_reason(&path), *want, "case {i}");
    }
    if euid() == 0 {
        let f = fixtures();
        std::os::unix::fs::chown(&f.ring, Some(12345), None).unwrap();
        assert_eq!(
            reject_reason(&f.ring),
            "wrong_owner",
            "a file another user owns"
        );
    }
    // A table whose entry area reaches beyond the file.
    let f = fixtures();
    patch(
        &f.table,
        offset_of!(RegionHeader, data_capacity),
        &(1u64 << 20).to_le_bytes(),
    );
    assert_eq!(reject_reason(&f.table), "bad_header");
    let f = fixtures();
    patch(
        &f.table,
        offset_of!(RegionHeader, data_offset),
        &512u64.to_le_bytes(),
    );
    assert_eq!(reject_reason(&f.table), "bad_header");
}

fn read_all(path: &Path) -> Result<usize, shmtel_core::ring::RingError> {
    let mut r = RingReader::open(path, false).expect("header still valid");
    r.read(usize::MAX, false, |_, _| {})
}

#[test]
fn ring_position_and_frame_rules() {
    let e = expected();
    let head = e["ring"]["head"].as_u64().unwrap();
    let tail = e["ring"]["tail"].as_u64().unwrap();
    let first = RING_DATA_OFFSET + (tail % 4096) as usize; // file offset of the first frame
    let cases: Vec<(usize, Vec<u8>, &str)> = vec![
        (
            HEAD_OFFSET,
            (tail - 8).to_le_bytes().to_vec(),
            "head behind tail",
        ),
        (
            HEAD_OFFSET,
            (tail + 4096 + 8).to_le_bytes().to_vec(),
            "head more than a capacity ahead",
        ),
        (
            HEAD_OFFSET,
            (head - 4).to_le_bytes().to_vec(),
            "head not 8-aligned",
        ),
        (
            TAIL_OFFSET,
            (tail + 4).to_le_bytes().to_vec(),
            "tail not 8-aligned",
        ),
        (first, 4u32.to_le_bytes().to_vec(), "length < 8"),
        (
            first,
            (MAX_FRAME as u32 + 8).to_le_bytes().to_vec(),
            "length > MAX_FRAME",
        ),
        (
            first,
            ((head - tail) as u32 + 8).to_le_bytes().to_vec(),
            "frame beyond head",
        ),
        (first + 4, 0u16.to_le_bytes().to_vec(), "kind 0"),
    ];
    for (offset, bytes, what) in cases {
        let f = fixtures();
        patch(&f.ring, offset, &bytes);
        assert!(read_all(&f.ring).is_err(), "{what}: must be rejected");
    }
    // A frame that would straddle the end of the data area: the frame just before the padding
    // frame, stretched over the end (its length stays below head - position).
    let f = fixtures();
    let recs = e["ring"]["records"].as_array().unwrap();
    let pad_at = recs
        .windows(2)
        .find(|w| w[1]["position"].as_u64().unwrap() % 4096 == 0)
        .unwrap()[0]["position"]
        .as_u64()
        .unwrap();
    let to_end = 4096 - pad_at % 4096;
    patch(
        &f.ring,
        RING_DATA_OFFSET + (pad_at % 4096) as usize,
        &(to_end as u32 + 16).to_le_bytes(),
    );
    assert!(
        read_all(&f.ring).is_err(),
        "a frame crossing the end must be rejected"
    );
    // Unknown kinds and malformed bodies are skipped, not fatal: the reader reaches the head.
    let f = fixtures();
    patch(&f.ring, first + 4, &0x7000u16.to_le_bytes());
    let mut r = RingReader::open(&f.ring, false).unwrap();
    let mut unknown = 0;
    r.read(usize::MAX, false, |_, rec| {
        unknown += matches!(rec, Err(DecodeError::UnknownKind(_))) as usize
    })
    .unwrap();
    assert_eq!(
        unknown, 2,
        "the fixture's unknown frame and the patched one"
    );
    assert_eq!(r.position(), head);
}

#[test]
fn table_entry_rules() {
    let e = expected();
    let used = e["table"]["used"].as_u64().unwrap();
    let entries = TABLE_DATA_OFFSET;
    let cases: Vec<(usize, Vec<u8>, &str)> = vec![
        (
            TABLE_USED_OFFSET,
            (2048u64 + 8).to_le_bytes().to_vec(),
            "used > capacity",
        ),
        (
            TABLE_USED_OFFSET,
            (used - 4).to_le_bytes().to_vec(),
            "used not 8-aligned",
        ),
        (entries, 8u32.to_le_bytes().to_vec(), "entry length < 16"),
        (
            entries,
            20u32.to_le_bytes().to_vec(),
            "entry length not a multiple of 8",
        ),
        (
            entries,
            (used as u32 + 8).to_le_bytes().to_vec(),
            "entry beyond used",
        ),
        (
            entries + 16,
            1000u32.to_le_bytes().to_vec(),
            "string beyond the entry",
        ),
        (entries + 20, vec![0xff, 0xfe], "string not UTF-8"),
    ];
    for (offset, bytes, what) in cases {
        let f = fixtures();
        patch(&f.table, offset, &bytes);
        assert!(
            TableReader::open(&f.table).is_err(),
            "{what}: must be rejected"
        );
    }
    // A series whose family is unknown: find the first series entry and point it elsewhere.
    let f = fixtures();
    let b = std::fs::read(&f.table).unwrap();
    let mut at = entries;
    loop {
        let h: EntryHeader = bytemuck::pod_read_unaligned(&b[at..at + 16]);
        if h.kind == ENTRY_SERIES {
            break;
        }
        at += h.length as usize;
    }
    patch(&f.table, at + 12, &77u32.to_le_bytes());
    assert!(
        TableReader::open(&f.table).is_err(),
        "series of an unknown family"
    );
    // used shrinking between two refreshes is rejected too.
    let f = fixtures();
    let mut t = TableReader::open(&f.table).unwrap();
    // Patched in place (same size), so the reader's mapping stays valid.
    patch(&f.table, TABLE_USED_OFFSET, &(used - 8).to_le_bytes());
    assert!(t.refresh().is_err(), "used went backwards");
}

/// `decode` on bodies that are one byte too short for their kind never panics and reports a bad
/// length (records.md §3.2: malformed, skipped).
#[test]
fn short_bodies_are_malformed() {
    for (kind, flags, min) in [
        (KIND_COUNTER_ADD, 0, 16),
        (KIND_GAUGE_SET, 0, 24),
        (KIND_GAUGE_ADD, 0, 24),
        (KIND_HISTOGRAM, 0, 16),
        (KIND_HISTOGRAM, FLAG_EXEMPLAR, 48),
        (KIND_SPAN, 0, 64),
        (KIND_SPAN_ATTR, 0, 32),
        (KIND_SPAN_EVENT, 0, 24),
        (KIND_SPAN_LINK, 0, 40),
        (KIND_SPAN_LINK_ATTR, 0, 32),
        (KIND_LOG, 0, 48),
        (KIND_BUSINESS, 0, 32),
    ] {
        let body = vec![0u8; min - 1];
        assert!(
            decode(kind, flags, &body).is_err(),
            "kind {kind} flags {flags}: {} bytes",
            min - 1
        );
        let body = vec![0u8; min];
        assert!(
            decode(kind, flags, &body).is_ok(),
            "kind {kind} flags {flags}: {min} zero bytes decode"
        );
    }
    // A string value whose padding would run past the body.
    let mut body = vec![0u8; 32 + 8];
    body[16 + 4] = value_type::STR;
    body[16 + 8] = 9; // 9 bytes: needs 16 after the head, only 8 there
    assert_eq!(decode(KIND_SPAN_ATTR, 0, &body), Err(DecodeError::BadValue));
    body[16 + 4] = 6; // an undefined value type
    body[16 + 8] = 0;
    assert_eq!(decode(KIND_SPAN_ATTR, 0, &body), Err(DecodeError::BadValue));
}

#[test]
fn unknown_kind_is_reported_not_fatal() {
    assert_eq!(decode(13, 0, &[]), Err(DecodeError::UnknownKind(13)));
    assert_eq!(
        decode(0xffff, 0xffff, &[1, 2, 3]),
        Err(DecodeError::UnknownKind(0xffff))
    );
}

// ------------------------------------------------------------------------------------------------
// 4. The Rust writer writes what the spec says (records.md §4: frame lengths per kind)
// ------------------------------------------------------------------------------------------------

/// Record one of each kind with the real writer and check every frame's `length` against the
/// table of records.md §4 (the only test in this binary that records, so the one `init`).
#[test]
fn rust_writer_frames_have_the_spec_lengths() {
    use shmtel_core::{Counter, Gauge, GaugeMode, Histogram, Level, Span, Symbol, Value};
    let dir = tempfile::tempdir().unwrap();
    shmtel_core::init(shmtel_core::Config {
        dir: Some(dir.path().to_owned()),
        service: "spec".into(),
        ..Default::default()
    })
    .unwrap();
    let k = Symbol::intern("k");
    let c = Counter::new("spec_counter", "h").unwrap();
    let g = Gauge::new("spec_gauge", "h", GaugeMode::All).unwrap();
    let h = Histogram::new("spec_hist", "h", &[1.0]).unwrap();
    let mut want: Vec<(u16, usize)> = Vec::new();
    c.inc();
    want.push((KIND_COUNTER_ADD, 24));
    g.set(1.0);
    want.push((KIND_GAUGE_SET, 32));
    g.add(1.0);
    want.push((KIND_GAUGE_ADD, 32));
    h.observe(1.0);
    want.push((KIND_HISTOGRAM, 24));
    let mut s = Span::start(Symbol::intern("spec.span"));
    h.observe(1.0); // inside a span: with an exemplar
    want.push((KIND_HISTOGRAM, 56));
    for n in [0usize, 3, 8, 13] {
        s.set_attribute(k, Value::Str(&"s".repeat(n)));
        want.push((KIND_SPAN_ATTR, 40 + align8(n)));
    }
    s.set_attribute(k, Value::I64(1));
    want.push((KIND_SPAN_ATTR, 40));
    s.add_event(Symbol::intern("ev"), &[]);
    want.push((KIND_SPAN_EVENT, 32));
    let other = s.context();
    s.add_link(other, false, &[(k, Value::I64(7))]);
    want.push((KIND_SPAN_LINK, 48));
    want.push((KIND_SPAN_LINK_ATTR, 40));
    s.end();
    want.push((KIND_SPAN, 72));
    shmtel_core::log(
        Level::Info,
        "hello",
        &[(k, Value::Str("abc")), (k, Value::F64(1.0))],
    );
    want.push((KIND_LOG, 8 + 48 + align8(5) + (16 + 8) + 16));
    shmtel_core::business_event(k, 1.0, k, &[(k, Value::Str("x"))]);
    want.push((KIND_BUSINESS, 8 + 32 + 16 + 8));
    shmtel_core::flush_stats();

    let ring = shmtel_core::reader::scan_dir(dir.path())
        .unwrap()
        .into_iter()
        .find(|e| matches!(e.name, RegionName::Ring { .. }))
        .unwrap()
        .path;
    let mut r = RingReader::open(&ring, false).unwrap();
    let cap = r.region().header().data_capacity;
    let mut positions = Vec::new();
    r.read(usize::MAX, false, |pos, _| positions.push(pos))
        .unwrap();
    let got: Vec<(u16, usize)> = positions
        .iter()
        .map(|pos| {
            let mut b = [0u8; 8];
            assert!(r
                .region()
                .copy_out(RING_DATA_OFFSET + (pos % cap) as usize, &mut b));
            let fh: FrameHeader = bytemuck::pod_read_unaligned(&b);
            (fh.kind, fh.length as usize)
        })
        .collect();
    assert_eq!(
        got, want,
        "(kind, length) of every frame the Rust writer wrote"
    );
}
