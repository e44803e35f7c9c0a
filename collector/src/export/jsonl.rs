//! The JSON lines exporter: one JSON object per span, appended to a file or written to stdout,
//! from the shared batching sender's thread (so a slow disk or a blocked pipe never holds up
//! the drain loop; the queue bound applies as for the network exporters).
//!
//! Each line follows the OTLP JSON mapping's field names, flattened for reading and grepping:
//!
//! ```json
//! {"resource":{"service.name":"api","host.name":"h","process.pid":42},"scope":{"name":"shmtel"},
//!  "traceId":"<32 hex>","spanId":"<16 hex>","parentSpanId":"<16 hex, or empty for a root>",
//!  "name":"GET /users/{id}","kind":2,"flags":257,
//!  "startTimeUnixNano":1700000000000000000,"endTimeUnixNano":1700000000250000000,
//!  "attributes":{"http.route":"/users/{id}"},
//!  "events":[{"name":"exception","timeUnixNano":1700000000100000000,"attributes":{}}],
//!  "links":[{"traceId":"<32 hex>","spanId":"<16 hex>","sampled":true,"remote":false,
//!            "attributes":{}}],
//!  "droppedAttributesCount":0,"status":{"code":2,"message":"boom"}}
//! ```
//!
//! `kind` and `status.code` are the OTLP enum numbers (kind 1 internal, 2 server, 3 client,
//! 4 producer, 5 consumer; status 0 unset, 1 ok, 2 error), `flags` as in OTLP (see
//! [`super::otlp`]), times are integers, attribute values are JSON values (JSON attributes
//! parsed).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use shmtel_core::layout::{span_status, SPAN_FLAG_REMOTE_PARENT, SPAN_FLAG_SAMPLED};

use super::otlp::{span_flags, take_status_description, SCOPE_NAME};
use super::resource::ResourceInfo;
use super::sender::{Encoder, Outcome, Transport};
use super::zipkin::hex;
use crate::sinks::{OwnedValue, SpanData};

/// Encodes batches as JSON lines.
pub struct JsonlEncoder {
    resource: ResourceInfo,
}

impl JsonlEncoder {
    /// An encoder attaching `resource`.
    pub fn new(resource: ResourceInfo) -> JsonlEncoder {
        JsonlEncoder { resource }
    }

    /// One span as a JSON object.
    pub fn span_json(&self, mut s: SpanData) -> Value {
        let description = take_status_description(&mut s.attributes);
        let flags = span_flags(&s);
        let resource: Map<String, Value> = self
            .resource
            .attributes(&s.origin)
            .into_iter()
            .map(|(k, v)| (k, v.to_json()))
            .collect();
        let message = match (s.status, description) {
            (span_status::ERROR, Some(d)) => d,
            _ => String::new(),
        };
        json!({
            "resource": resource,
            "scope": {"name": SCOPE_NAME},
            "traceId": hex(&s.trace_id),
            "spanId": hex(&s.span_id),
            "parentSpanId": if s.parent_span_id == [0; 8] { String::new() } else { hex(&s.parent_span_id) },
            "name": &*s.name,
            "kind": s.kind,
            "flags": flags,
            "startTimeUnixNano": s.start_ns,
            "endTimeUnixNano": s.end_ns,
            "attributes": object(&s.attributes),
            "events": s.events.iter().map(|e| json!({
                "name": &*e.name,
                "timeUnixNano": e.time_ns,
                "attributes": object(&e.attributes),
            })).collect::<Vec<_>>(),
            "links": s.links.iter().map(|l| json!({
                "traceId": hex(&l.trace_id),
                "spanId": hex(&l.span_id),
                "sampled": l.flags & SPAN_FLAG_SAMPLED != 0,
                "remote": l.flags & SPAN_FLAG_REMOTE_PARENT != 0,
                "attributes": object(&l.attributes),
            })).collect::<Vec<_>>(),
            "droppedAttributesCount": s.dropped,
            "status": {"code": s.status, "message": message},
        })
    }
}

fn object(attrs: &[(Arc<str>, OwnedValue)]) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (String::from(&**k), v.to_json()))
            .collect(),
    )
}

impl Encoder<SpanData> for JsonlEncoder {
    fn encode(&mut self, spans: Vec<SpanData>, out: &mut Vec<u8>) {
        for s in spans {
            // Serialising a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &self.span_json(s));
            out.push(b'\n');
        }
    }
}

/// Appends batches to a file, or writes them to stdout.
pub enum LineWriter {
    /// A file opened for appending.
    File(File),
    /// Standard output.
    Stdout,
}

impl LineWriter {
    /// `-` is stdout; anything else a file, created (mode 0644) or appended to.
    pub fn open(path: &Path) -> Result<LineWriter, String> {
        if path.as_os_str() == "-" {
            return Ok(LineWriter::Stdout);
        }
        use std::os::unix::fs::OpenOptionsExt;
        File::options()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map(LineWriter::File)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }
}

impl Transport for LineWriter {
    fn send(&mut self, body: &[u8]) -> Outcome {
        // A batch is written with one write where the OS allows; lines from one batch are
        // never interleaved with another's (one thread writes).
        let r = match self {
            LineWriter::File(f) => f.write_all(body).and_then(|()| f.flush()),
            LineWriter::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(body).and_then(|()| out.flush())
            }
        };
        match r {
            Ok(()) => Outcome::Done,
            // Disk full, a pipe's reader gone slow: worth another try within the budget.
            Err(e) => Outcome::Retry {
                after: None,
                why: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{EventData, LinkData, Origin};

    #[test]
    fn a_span_as_a_line() {
        let s = SpanData {
            links: vec![LinkData {
                trace_id: [0x0a; 16],
                span_id: [0x0b; 8],
                flags: 3,
                attributes: vec![("m".into(), OwnedValue::I64(4))],
            }],
            origin: Origin {
                service: "api".into(),
                pid: 42,
                tid: 1,
            },
            trace_id: [0x0f; 16],
            span_id: [1; 8],
            parent_span_id: [0; 8],
            name: "root".into(),
            kind: 2,
            status: 2,
            flags: 1,
            start_ns: 10,
            end_ns: 20,
            attributes: vec![
                ("a".into(), OwnedValue::Json("[1,2]".into())),
                (
                    "otel.status_description".into(),
                    OwnedValue::Str("bad".into()),
                ),
            ],
            events: vec![EventData {
                name: "e".into(),
                time_ns: 15,
                attributes: vec![("k".into(), OwnedValue::Bool(true))],
            }],
            dropped: 1,
        };
        let r = ResourceInfo {
            host_name: "h".into(),
            ..Default::default()
        };
        let mut enc = JsonlEncoder::new(r);
        let mut out = Vec::new();
        enc.encode(vec![s.clone(), s], &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            v,
            json!({
                "resource": {"service.name": "api", "host.name": "h", "process.pid": 42},
                "scope": {"name": "shmtel"},
                "traceId": "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f",
                "spanId": "0101010101010101",
                "parentSpanId": "",
                "name": "root",
                "kind": 2,
                "flags": 0x101,
                "startTimeUnixNano": 10,
                "endTimeUnixNano": 20,
                "attributes": {"a": [1, 2]},
                "events": [{"name": "e", "timeUnixNano": 15, "attributes": {"k": true}}],
                "links": [{"traceId": "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", "spanId": "0b0b0b0b0b0b0b0b",
                           "sampled": true, "remote": true, "attributes": {"m": 4}}],
                "droppedAttributesCount": 1,
                "status": {"code": 2, "message": "bad"}
            })
        );
    }

    #[test]
    fn files_are_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spans.jsonl");
        std::fs::write(&p, "old\n").unwrap();
        let mut w = LineWriter::open(&p).unwrap();
        assert_eq!(w.send(b"new\n"), Outcome::Done);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old\nnew\n");
        assert!(LineWriter::open(&dir.path().join("no/such/dir/x")).is_err());
    }
}
