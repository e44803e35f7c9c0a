//! The OTLP mapping: spans to `ExportTraceServiceRequest` messages (the official generated
//! types of the `opentelemetry-proto` crate), encoded with prost.
//!
//! One `ResourceSpans` per (service, pid) in a batch, one `ScopeSpans` (scope `shmtel`) in each.
//! Span fields map one to one; the less obvious choices:
//! - `parent_span_id` is empty for a root span (an all-zero parent in the ring);
//! - `flags` carries the W3C trace flags (bit 0: sampled) in its low byte, and bits 8 and 9
//!   say whether the parent is remote (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE` is always set: the
//!   writer always knows);
//! - the attribute `otel.status_description` becomes the status message (of an error status:
//!   the specification ignores messages of other statuses) and is removed from the attributes;
//! - a JSON attribute (nested values, arrays) becomes an `ArrayValue` / `KeyValueList` when it
//!   parses, and a string otherwise;
//! - the ring's single count of dropped attributes and events goes to `dropped_attributes_count`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use std::sync::Arc;

use shmtel_core::layout::{span_status, SPAN_FLAG_REMOTE_PARENT, SPAN_FLAG_SAMPLED};

use super::resource::ResourceInfo;
use super::sender::Encoder;
use crate::sinks::{LinkData, Origin, OwnedValue, SpanData};

/// The instrumentation scope of every exported span.
pub const SCOPE_NAME: &str = "shmtel";
/// The attribute whose value becomes the status message.
pub const STATUS_DESCRIPTION: &str = "otel.status_description";
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
pub const FLAG_IS_REMOTE: u32 = 0x200;

/// `shmtel`'s instrumentation scope (name and version), on every scope message.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// The OTLP resource of what `origin` wrote ([`ResourceInfo::attributes`]).
pub(crate) fn resource(info: &ResourceInfo, origin: &Origin) -> Resource {
    Resource {
        attributes: key_values(info.attributes(origin)),
        ..Default::default()
    }
}

/// `items` grouped by the writer they came from (service and pid), the groups in the order of
/// their first item: `new_group` makes the message for a writer's first item, given how many
/// items that writer has in the batch (so that its list is allocated once, not grown item by
/// item: a prost `Span` is ~250 bytes), `push` adds each item to its writer's message. Batches
/// hold few distinct writers, so a linear search finds a group again.
pub(crate) fn group_by_origin<T, G>(
    items: Vec<T>,
    origin: impl Fn(&T) -> &Origin,
    mut new_group: impl FnMut(&Origin, usize) -> G,
    mut push: impl FnMut(&mut G, T),
) -> Vec<G> {
    // The writers, in the order of their first item, with their item counts.
    let mut keys: Vec<(Arc<str>, u32, usize)> = Vec::new();
    let mut index: Vec<usize> = Vec::with_capacity(items.len());
    for item in &items {
        let o = origin(item);
        let i = match keys
            .iter()
            .position(|(svc, pid, _)| *pid == o.pid && *svc == o.service)
        {
            Some(i) => i,
            None => {
                keys.push((o.service.clone(), o.pid, 0));
                keys.len() - 1
            }
        };
        keys[i].2 += 1;
        index.push(i);
    }
    let mut groups: Vec<G> = Vec::with_capacity(keys.len());
    for (item, i) in items.into_iter().zip(index) {
        if i == groups.len() {
            // A writer's first item (the groups are made in the order of their first items).
            groups.push(new_group(origin(&item), keys[i].2));
        }
        push(&mut groups[i], item);
    }
    groups
}

/// Encodes batches as protobuf `ExportTraceServiceRequest`s.
pub struct OtlpEncoder {
    resource: ResourceInfo,
}

impl OtlpEncoder {
    /// An encoder attaching `resource`.
    pub fn new(resource: ResourceInfo) -> OtlpEncoder {
        OtlpEncoder { resource }
    }

    /// The request for `spans`.
    pub fn request(&self, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        let groups = group_by_origin(
            spans,
            |s| &s.origin,
            |origin, n| ResourceSpans {
                resource: Some(resource(&self.resource, origin)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: Vec::with_capacity(n),
                    ..Default::default()
                }],
                ..Default::default()
            },
            |g: &mut ResourceSpans, s| g.scope_spans[0].spans.push(span_message(s)),
        );
        ExportTraceServiceRequest {
            resource_spans: groups,
        }
    }
}

impl Encoder<SpanData> for OtlpEncoder {
    fn encode(&mut self, spans: Vec<SpanData>, out: &mut Vec<u8>) {
        super::envelope::encode_request(&self.request(spans).resource_spans, out);
    }
}

/// The OTLP `flags` of a span.
pub fn span_flags(s: &SpanData) -> u32 {
    let mut f = FLAG_HAS_IS_REMOTE;
    if s.flags & SPAN_FLAG_SAMPLED != 0 {
        f |= 0x01;
    }
    if s.flags & SPAN_FLAG_REMOTE_PARENT != 0 && s.parent_span_id != [0; 8] {
        f |= FLAG_IS_REMOTE;
    }
    f
}

/// Remove and return the status description attribute (as text).
pub fn take_status_description(attrs: &mut Vec<(Arc<str>, OwnedValue)>) -> Option<String> {
    let i = attrs.iter().position(|(k, _)| &**k == STATUS_DESCRIPTION)?;
    Some(match attrs.remove(i).1 {
        OwnedValue::Str(s) | OwnedValue::Json(s) => s,
        other => other.to_json().to_string(),
    })
}

/// One link as an OTLP message (flags: the linked context's W3C sampled bit, with its
/// remote-ness known and set as the proto documents).
fn link_message(l: LinkData) -> span::Link {
    let mut flags = FLAG_HAS_IS_REMOTE;
    if l.flags & SPAN_FLAG_SAMPLED != 0 {
        flags |= 0x01;
    }
    if l.flags & SPAN_FLAG_REMOTE_PARENT != 0 {
        flags |= FLAG_IS_REMOTE;
    }
    span::Link {
        trace_id: l.trace_id.to_vec(),
        span_id: l.span_id.to_vec(),
        trace_state: String::new(),
        attributes: key_values(l.attributes),
        dropped_attributes_count: 0,
        flags,
    }
}

/// One span as an OTLP message.
pub fn span_message(mut s: SpanData) -> Span {
    let description = take_status_description(&mut s.attributes);
    let flags = span_flags(&s);
    let message = match (s.status, description) {
        (span_status::ERROR, Some(d)) => d,
        _ => String::new(),
    };
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: if s.parent_span_id == [0; 8] {
            Vec::new()
        } else {
            s.parent_span_id.to_vec()
        },
        flags,
        name: String::from(&*s.name),
        kind: if s.kind <= 5 { i32::from(s.kind) } else { 0 },
        start_time_unix_nano: s.start_ns,
        end_time_unix_nano: s.end_ns,
        attributes: key_values(s.attributes),
        dropped_attributes_count: s.dropped,
        events: s
            .events
            .into_iter()
            .map(|e| span::Event {
                time_unix_nano: e.time_ns,
                name: String::from(&*e.name),
                attributes: key_values(e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: s.links.into_iter().map(link_message).collect(),
        dropped_links_count: 0,
        status: Some(Status {
            message,
            code: match s.status {
                span_status::OK => 1,
                span_status::ERROR => 2,
                _ => 0,
            },
        }),
    }
}

/// A key of an attribute list: owned (resource attributes) or shared (interned names).
pub trait AttrKey {
    /// The key as the owned string a protobuf message holds.
    fn into_key(self) -> String;
}

impl AttrKey for String {
    fn into_key(self) -> String {
        self
    }
}

impl AttrKey for Arc<str> {
    fn into_key(self) -> String {
        String::from(&*self)
    }
}

/// Attributes as OTLP key-values.
pub fn key_values<K: AttrKey>(attrs: Vec<(K, OwnedValue)>) -> Vec<KeyValue> {
    attrs
        .into_iter()
        .map(|(key, v)| KeyValue {
            key: key.into_key(),
            value: Some(any_value(v)),
            ..Default::default()
        })
        .collect()
}

/// An attribute value as an OTLP `AnyValue`.
pub fn any_value(v: OwnedValue) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        OwnedValue::Null => None,
        OwnedValue::Bool(b) => Some(V::BoolValue(b)),
        OwnedValue::I64(i) => Some(V::IntValue(i)),
        OwnedValue::F64(f) => Some(V::DoubleValue(f)),
        OwnedValue::Str(s) => Some(V::StringValue(s)),
        OwnedValue::Json(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(j) => return json_any_value(j),
            Err(_) => Some(V::StringValue(text)),
        },
    };
    AnyValue { value }
}

/// A JSON value as an OTLP `AnyValue`: objects become key-value lists, arrays arrays, integers
/// that fit in i64 ints, other numbers doubles, null the empty value.
pub fn json_any_value(j: serde_json::Value) -> AnyValue {
    use any_value::Value as V;
    use serde_json::Value as J;
    let value = match j {
        J::Null => None,
        J::Bool(b) => Some(V::BoolValue(b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        J::String(s) => Some(V::StringValue(s)),
        J::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.into_iter().map(json_any_value).collect(),
        })),
        J::Object(o) => Some(V::KvlistValue(KeyValueList {
            values: o
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(json_any_value(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{EventData, Origin};
    use any_value::Value as V;
    use prost::Message;

    fn sample() -> SpanData {
        SpanData {
            links: vec![
                LinkData {
                    trace_id: [0x0a; 16],
                    span_id: [0x0b; 8],
                    flags: SPAN_FLAG_SAMPLED | SPAN_FLAG_REMOTE_PARENT,
                    attributes: vec![("messaging.id".into(), OwnedValue::Str("m-1".into()))],
                },
                LinkData {
                    trace_id: [0x0c; 16],
                    span_id: [0x0d; 8],
                    flags: 0,
                    attributes: Vec::new(),
                },
            ],
            origin: Origin {
                service: "api".into(),
                pid: 42,
                tid: 1,
            },
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: [9; 8],
            name: "GET /users/{id}".into(),
            kind: 2,
            status: span_status::ERROR,
            flags: SPAN_FLAG_SAMPLED | SPAN_FLAG_REMOTE_PARENT,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_250_000_000,
            attributes: vec![
                ("s".into(), OwnedValue::Str("x".into())),
                (STATUS_DESCRIPTION.into(), OwnedValue::Str("boom".into())),
                ("i".into(), OwnedValue::I64(-3)),
                ("f".into(), OwnedValue::F64(0.5)),
                ("b".into(), OwnedValue::Bool(true)),
                ("n".into(), OwnedValue::Null),
                ("a".into(), OwnedValue::Json("[1,\"two\",3.5]".into())),
                ("o".into(), OwnedValue::Json("{\"k\":{\"z\":null}}".into())),
                ("bad".into(), OwnedValue::Json("{nope".into())),
            ],
            events: vec![EventData {
                name: "exception".into(),
                time_ns: 1_700_000_000_100_000_000,
                attributes: vec![("exception.type".into(), OwnedValue::Str("E".into()))],
            }],
            dropped: 3,
        }
    }

    fn val(v: &Option<AnyValue>) -> Option<&V> {
        v.as_ref().and_then(|a| a.value.as_ref())
    }

    #[test]
    fn every_span_field_is_mapped() {
        let m = span_message(sample());
        assert_eq!(m.trace_id, vec![0xab; 16]);
        assert_eq!(m.span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.parent_span_id, vec![9; 8]);
        assert_eq!(m.name, "GET /users/{id}");
        assert_eq!(m.kind, 2);
        assert_eq!(m.flags, 0x01 | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE);
        assert_eq!(m.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(m.end_time_unix_nano, 1_700_000_000_250_000_000);
        assert_eq!(m.dropped_attributes_count, 3);
        let st = m.status.as_ref().unwrap();
        assert_eq!((st.code, st.message.as_str()), (2, "boom"));
        let keys: Vec<&str> = m.attributes.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["s", "i", "f", "b", "n", "a", "o", "bad"]);
        let a = &m.attributes;
        assert_eq!(val(&a[0].value), Some(&V::StringValue("x".into())));
        assert_eq!(val(&a[1].value), Some(&V::IntValue(-3)));
        assert_eq!(val(&a[2].value), Some(&V::DoubleValue(0.5)));
        assert_eq!(val(&a[3].value), Some(&V::BoolValue(true)));
        assert_eq!(val(&a[4].value), None);
        assert_eq!(
            val(&a[5].value),
            Some(&V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(V::IntValue(1))
                    },
                    AnyValue {
                        value: Some(V::StringValue("two".into()))
                    },
                    AnyValue {
                        value: Some(V::DoubleValue(3.5))
                    },
                ]
            }))
        );
        let Some(V::KvlistValue(o)) = val(&a[6].value) else {
            panic!("not a kvlist: {:?}", a[6])
        };
        assert_eq!(o.values[0].key, "k");
        let Some(V::KvlistValue(inner)) = val(&o.values[0].value) else {
            panic!("not nested")
        };
        assert_eq!(
            (inner.values[0].key.as_str(), val(&inner.values[0].value)),
            ("z", None)
        );
        assert_eq!(val(&a[7].value), Some(&V::StringValue("{nope".into())));
        assert_eq!(m.links.len(), 2);
        assert_eq!(
            (
                m.links[0].trace_id.as_slice(),
                m.links[0].span_id.as_slice()
            ),
            ([0x0a; 16].as_slice(), [0x0b; 8].as_slice())
        );
        assert_eq!(m.links[0].flags, 0x01 | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE);
        assert_eq!(m.links[0].attributes[0].key, "messaging.id");
        assert_eq!(m.links[1].flags, FLAG_HAS_IS_REMOTE, "unsampled, local");
        assert_eq!(m.events.len(), 1);
        assert_eq!(m.events[0].name, "exception");
        assert_eq!(m.events[0].time_unix_nano, 1_700_000_000_100_000_000);
        assert_eq!(m.events[0].attributes[0].key, "exception.type");
    }

    #[test]
    fn roots_statuses_and_flags() {
        let mut s = sample();
        s.parent_span_id = [0; 8];
        s.flags = SPAN_FLAG_SAMPLED | SPAN_FLAG_REMOTE_PARENT;
        s.status = span_status::OK;
        let m = span_message(s);
        assert!(m.parent_span_id.is_empty());
        assert_eq!(m.flags, 0x01 | FLAG_HAS_IS_REMOTE);
        let st = m.status.unwrap();
        assert_eq!(
            (st.code, st.message.as_str()),
            (1, ""),
            "message only for errors"
        );
        assert!(m.attributes.iter().all(|k| k.key != STATUS_DESCRIPTION));

        let mut s = sample();
        s.flags = 0;
        s.status = span_status::UNSET;
        s.kind = 9;
        let m = span_message(s);
        assert_eq!(m.flags, FLAG_HAS_IS_REMOTE);
        assert_eq!(m.status.unwrap().code, 0);
        assert_eq!(m.kind, 0);
    }

    #[test]
    fn batches_group_by_writer_and_decode() {
        let r = ResourceInfo {
            service_name: None,
            service_version: Some("9".into()),
            host_name: "h".into(),
            extra: vec![],
        };
        let mut enc = OtlpEncoder::new(r);
        let mut a = sample();
        let mut b = sample();
        b.origin.pid = 43;
        let mut c = sample();
        c.span_id = [7; 8];
        a.name = "a".into();
        b.name = "b".into();
        c.name = "c".into();
        let mut out = Vec::new();
        enc.encode(vec![a, b, c], &mut out);
        let req = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        assert_eq!(req.resource_spans.len(), 2);
        let names = |i: usize| -> Vec<String> {
            req.resource_spans[i].scope_spans[0]
                .spans
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(0), ["a", "c"]);
        assert_eq!(names(1), ["b"]);
        let scope = req.resource_spans[0].scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, SCOPE_NAME);
        let res = req.resource_spans[1].resource.as_ref().unwrap();
        let attr = |k: &str| {
            res.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(attr("service.name"), Some(V::StringValue("api".into())));
        assert_eq!(attr("service.version"), Some(V::StringValue("9".into())));
        assert_eq!(attr("process.pid"), Some(V::IntValue(43)));
        assert_eq!(attr("host.name"), Some(V::StringValue("h".into())));
    }
}
