//! Protobuf encoding of OTLP export requests with every message's length computed once.
//!
//! The three OTLP export requests share one shape: `repeated Resource* = 1`, each with
//! `resource = 1`, `repeated Scope* = 2` and `schema_url = 3`, each scope with `scope = 1`,
//! `repeated <item> = 2` and `schema_url = 3`. prost's `Message::encode` writes a nested message
//! as its length and then its fields, and computes that length by walking the message, so a
//! span (four levels down) is walked five times before it is written, its attributes six and
//! their values seven: most of the encoder's work. Here the items' lengths are computed once,
//! the envelope around them is written from those, and each item is written by prost's own
//! `encode_raw`. The bytes are exactly prost's (the tests compare them).

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

/// The key of a length-delimited field numbered 1, 2 and 3 (field number << 3 | wire type 2).
const FIELD_1: u8 = 0x0a;
const FIELD_2: u8 = 0x12;
const FIELD_3: u8 = 0x1a;

/// A `Resource*` message: its resource, its scopes and its schema URL.
pub(crate) trait ResourceGroup {
    type Scope: ScopeGroup;
    fn parts(&self) -> (Option<&Resource>, &[Self::Scope], &str);
}

/// A `Scope*` message: its scope, its items and its schema URL.
pub(crate) trait ScopeGroup {
    type Item: Message;
    fn parts(&self) -> (Option<&InstrumentationScope>, &[Self::Item], &str);
}

// The destructurings name every field, so that a field added to the generated types stops the
// build here instead of being left out of the bytes.
impl ResourceGroup for ResourceSpans {
    type Scope = ScopeSpans;
    fn parts(&self) -> (Option<&Resource>, &[ScopeSpans], &str) {
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = self;
        (resource.as_ref(), scope_spans, schema_url)
    }
}

impl ScopeGroup for ScopeSpans {
    type Item = opentelemetry_proto::tonic::trace::v1::Span;
    fn parts(&self) -> (Option<&InstrumentationScope>, &[Self::Item], &str) {
        let ScopeSpans {
            scope,
            spans,
            schema_url,
        } = self;
        (scope.as_ref(), spans, schema_url)
    }
}

impl ResourceGroup for ResourceLogs {
    type Scope = ScopeLogs;
    fn parts(&self) -> (Option<&Resource>, &[ScopeLogs], &str) {
        let ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        } = self;
        (resource.as_ref(), scope_logs, schema_url)
    }
}

impl ScopeGroup for ScopeLogs {
    type Item = opentelemetry_proto::tonic::logs::v1::LogRecord;
    fn parts(&self) -> (Option<&InstrumentationScope>, &[Self::Item], &str) {
        let ScopeLogs {
            scope,
            log_records,
            schema_url,
        } = self;
        (scope.as_ref(), log_records, schema_url)
    }
}

/// The bytes of a length-delimited field holding `len` bytes (a one-byte key).
fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// A length-delimited field's key and length.
fn put_header(key: u8, len: usize, out: &mut Vec<u8>) {
    out.push(key);
    // A Vec grows as needed: writing a length into it cannot fail.
    let _ = prost::encode_length_delimiter(len, out);
}

/// An optional embedded message (absent: nothing; present, even empty: the field).
fn message_len<M: Message>(m: Option<&M>) -> usize {
    m.map_or(0, |m| field_len(m.encoded_len()))
}

fn put_message<M: Message>(key: u8, m: Option<&M>, out: &mut Vec<u8>) {
    if let Some(m) = m {
        put_header(key, m.encoded_len(), out);
        m.encode_raw(out);
    }
}

/// A string field (proto3: the empty string is not written).
fn string_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(s.len())
    }
}

fn put_string(key: u8, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        put_header(key, s.len(), out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Append the export request whose field 1 is `groups` (`ExportTraceServiceRequest`,
/// `ExportLogsServiceRequest`) to `out`: the bytes prost's `encode` writes for it.
pub(crate) fn encode_request<G: ResourceGroup>(groups: &[G], out: &mut Vec<u8>) {
    // The lengths, in the order they are written: each group's, then each of its scopes', then
    // each of that scope's items'. Computed bottom up, stored top down.
    let mut item_lens: Vec<usize> = Vec::new();
    let mut scope_lens: Vec<usize> = Vec::new();
    let mut group_lens: Vec<usize> = Vec::with_capacity(groups.len());
    let mut total = 0;
    for g in groups {
        let (resource, scopes, schema_url) = g.parts();
        let mut glen = message_len(resource) + string_len(schema_url);
        for s in scopes {
            let (scope, items, schema_url) = s.parts();
            let mut slen = message_len(scope) + string_len(schema_url);
            for item in items {
                let ilen = item.encoded_len();
                item_lens.push(ilen);
                slen += field_len(ilen);
            }
            scope_lens.push(slen);
            glen += field_len(slen);
        }
        group_lens.push(glen);
        total += field_len(glen);
    }
    out.reserve(total);
    let (mut items_at, mut scopes_at) = (item_lens.iter(), scope_lens.iter());
    for (g, &glen) in groups.iter().zip(&group_lens) {
        let (resource, scopes, schema_url) = g.parts();
        put_header(FIELD_1, glen, out);
        put_message(FIELD_1, resource, out);
        for s in scopes {
            let (scope, items, schema_url) = s.parts();
            put_header(FIELD_2, *scopes_at.next().unwrap_or(&0), out);
            put_message(FIELD_1, scope, out);
            for item in items {
                put_header(FIELD_2, *items_at.next().unwrap_or(&0), out);
                item.encode_raw(out);
            }
            put_string(FIELD_3, schema_url, out);
        }
        put_string(FIELD_3, schema_url, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn span(name: &str, attrs: usize) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![1; 8],
            name: name.into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_250_000,
            // Enough attributes that lengths need two-byte varints.
            attributes: (0..attrs)
                .map(|i| kv(&format!("k{i}"), &"v".repeat(i)))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn spans_encode_as_prost_does() {
        let resource = Resource {
            attributes: vec![kv("service.name", "api")],
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "shmtel".into(),
            version: "0.1.0".into(),
            ..Default::default()
        };
        let cases = vec![
            ExportTraceServiceRequest::default(),
            ExportTraceServiceRequest {
                resource_spans: vec![
                    ResourceSpans {
                        resource: Some(resource.clone()),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(scope.clone()),
                            spans: vec![span("a", 0), span("b", 40), span("", 1)],
                            schema_url: String::new(),
                        }],
                        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    },
                    // Empty messages present, no scope, an empty scope list.
                    ResourceSpans {
                        resource: Some(Resource::default()),
                        scope_spans: vec![
                            ScopeSpans {
                                scope: None,
                                spans: vec![Span::default()],
                                schema_url: "s".into(),
                            },
                            ScopeSpans::default(),
                        ],
                        schema_url: String::new(),
                    },
                    ResourceSpans::default(),
                ],
            },
        ];
        for req in cases {
            let mut out = vec![0xff];
            encode_request(&req.resource_spans, &mut out);
            assert_eq!(out[1..], req.encode_to_vec()[..], "{req:?}");
            assert_eq!(ExportTraceServiceRequest::decode(&out[1..]).unwrap(), req);
        }
    }

    #[test]
    fn logs_encode_as_prost_does() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "api")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope::default()),
                    log_records: (0..30)
                        .map(|i| LogRecord {
                            time_unix_nano: i,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("x".repeat(i as usize))),
                            }),
                            attributes: vec![kv("user_id", "42")],
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let mut out = Vec::new();
        encode_request(&req.resource_logs, &mut out);
        assert_eq!(out, req.encode_to_vec());
    }
}
