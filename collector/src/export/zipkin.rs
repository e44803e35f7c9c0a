//! The Zipkin v2 mapping: spans to a JSON array for `POST /api/v2/spans`, as the OpenTelemetry
//! specification's Zipkin exporter maps them.
//!
//! `traceId`/`id`/`parentId` in lowercase hex (`parentId` absent for roots), `kind` SERVER,
//! CLIENT, PRODUCER or CONSUMER (absent for internal), `timestamp` and `duration` in
//! microseconds (a duration is at least 1 µs, as Zipkin requires), `localEndpoint.serviceName`,
//! every attribute as a string tag (JSON attributes as their text), `otel.scope.name`, the
//! status as `otel.status_code` (`OK`/`ERROR`) plus an `error` tag holding the description on
//! error, and events as annotations (`name`, or `"name": {attributes as JSON}`). Zipkin v2 has
//! no span links: they are left out (OTLP and JSON lines carry them).

use serde_json::{json, Map, Value};
use shmtel_core::layout::{span_kind, span_status};

use super::otlp::{take_status_description, SCOPE_NAME};
use super::resource::ResourceInfo;
use super::sender::Encoder;
use crate::sinks::{OwnedValue, SpanData};

/// The path appended to a Zipkin endpoint given without one.
pub const DEFAULT_PATH: &str = "/api/v2/spans";

/// Encodes batches as Zipkin v2 JSON.
pub struct ZipkinEncoder {
    resource: ResourceInfo,
}

impl ZipkinEncoder {
    /// An encoder naming services as `resource` says.
    pub fn new(resource: ResourceInfo) -> ZipkinEncoder {
        ZipkinEncoder { resource }
    }

    /// One span as a Zipkin JSON object.
    pub fn span_json(&self, mut s: SpanData) -> Value {
        let description = take_status_description(&mut s.attributes);
        let mut o = Map::new();
        o.insert("traceId".into(), hex(&s.trace_id).into());
        o.insert("id".into(), hex(&s.span_id).into());
        if s.parent_span_id != [0; 8] {
            o.insert("parentId".into(), hex(&s.parent_span_id).into());
        }
        o.insert("name".into(), (*s.name).into());
        let kind = match s.kind {
            span_kind::SERVER => Some("SERVER"),
            span_kind::CLIENT => Some("CLIENT"),
            span_kind::PRODUCER => Some("PRODUCER"),
            span_kind::CONSUMER => Some("CONSUMER"),
            _ => None,
        };
        if let Some(k) = kind {
            o.insert("kind".into(), k.into());
        }
        o.insert("timestamp".into(), (s.start_ns / 1000).into());
        let duration = (s.end_ns.saturating_sub(s.start_ns) / 1000).max(1);
        o.insert("duration".into(), duration.into());
        o.insert(
            "localEndpoint".into(),
            json!({ "serviceName": self.resource.service(&s.origin) }),
        );
        let mut tags = Map::new();
        for (k, v) in s.attributes {
            tags.insert(String::from(&*k), tag_value(&v).into());
        }
        tags.insert("otel.scope.name".into(), SCOPE_NAME.into());
        match s.status {
            span_status::OK => {
                tags.insert("otel.status_code".into(), "OK".into());
            }
            span_status::ERROR => {
                tags.insert("otel.status_code".into(), "ERROR".into());
                tags.insert("error".into(), description.unwrap_or_default().into());
            }
            _ => {}
        }
        o.insert("tags".into(), tags.into());
        if !s.events.is_empty() {
            let annotations: Vec<Value> = s
                .events
                .into_iter()
                .map(|e| {
                    let value = if e.attributes.is_empty() {
                        String::from(&*e.name)
                    } else {
                        let attrs: Map<String, Value> = e
                            .attributes
                            .iter()
                            .map(|(k, v)| (String::from(&**k), v.to_json()))
                            .collect();
                        format!("{}: {}", Value::from(&*e.name), Value::from(attrs))
                    };
                    json!({ "timestamp": e.time_ns / 1000, "value": value })
                })
                .collect();
            o.insert("annotations".into(), annotations.into());
        }
        Value::Object(o)
    }
}

impl Encoder<SpanData> for ZipkinEncoder {
    fn encode(&mut self, spans: Vec<SpanData>, out: &mut Vec<u8>) {
        let arr: Vec<Value> = spans.into_iter().map(|s| self.span_json(s)).collect();
        // Serialising a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &arr);
    }
}

/// An attribute value as a Zipkin tag (tags are strings).
pub fn tag_value(v: &OwnedValue) -> String {
    match v {
        OwnedValue::Null => String::new(),
        OwnedValue::Bool(b) => b.to_string(),
        OwnedValue::I64(i) => i.to_string(),
        OwnedValue::F64(f) => f.to_string(),
        OwnedValue::Str(s) | OwnedValue::Json(s) => s.clone(),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The URL to post to: `endpoint` as is when it has a path, else with [`DEFAULT_PATH`].
pub fn spans_url(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    match rest.find('/') {
        Some(i) if rest.len() > i + 1 => endpoint.to_owned(),
        _ => format!("{}{DEFAULT_PATH}", endpoint.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{EventData, Origin};

    fn sample() -> SpanData {
        SpanData {
            links: Vec::new(),
            origin: Origin {
                service: "api".into(),
                pid: 42,
                tid: 1,
            },
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: [0, 0, 0, 0, 0, 0, 0, 9],
            name: "get".into(),
            kind: span_kind::CLIENT,
            status: span_status::ERROR,
            flags: 1,
            start_ns: 1_700_000_000_123_456_789,
            end_ns: 1_700_000_000_223_456_789,
            attributes: vec![
                ("http.status_code".into(), OwnedValue::I64(503)),
                ("ok".into(), OwnedValue::Bool(false)),
                ("ratio".into(), OwnedValue::F64(0.25)),
                ("tags".into(), OwnedValue::Json("[\"a\",\"b\"]".into())),
                (
                    "otel.status_description".into(),
                    OwnedValue::Str("upstream down".into()),
                ),
            ],
            events: vec![
                EventData {
                    name: "retry".into(),
                    time_ns: 1_700_000_000_150_000_000,
                    attributes: vec![("attempt".into(), OwnedValue::I64(2))],
                },
                EventData {
                    name: "gave up".into(),
                    time_ns: 1_700_000_000_200_000_000,
                    attributes: vec![],
                },
            ],
            dropped: 0,
        }
    }

    #[test]
    fn a_span_maps_to_zipkin_v2() {
        let e = ZipkinEncoder::new(ResourceInfo::default());
        let v = e.span_json(sample());
        assert_eq!(
            v,
            json!({
                "traceId": "abababababababababababababababab",
                "id": "0102030405060708",
                "parentId": "0000000000000009",
                "name": "get",
                "kind": "CLIENT",
                "timestamp": 1_700_000_000_123_456u64,
                "duration": 100_000,
                "localEndpoint": {"serviceName": "api"},
                "tags": {
                    "http.status_code": "503",
                    "ok": "false",
                    "ratio": "0.25",
                    "tags": "[\"a\",\"b\"]",
                    "otel.scope.name": "shmtel",
                    "otel.status_code": "ERROR",
                    "error": "upstream down"
                },
                "annotations": [
                    {"timestamp": 1_700_000_000_150_000u64, "value": "\"retry\": {\"attempt\":2}"},
                    {"timestamp": 1_700_000_000_200_000u64, "value": "gave up"}
                ]
            })
        );
    }

    #[test]
    fn roots_internal_spans_and_short_durations() {
        let mut s = sample();
        s.parent_span_id = [0; 8];
        s.kind = span_kind::INTERNAL;
        s.status = span_status::UNSET;
        s.end_ns = s.start_ns + 10;
        s.events.clear();
        let r = ResourceInfo {
            service_name: Some("renamed".into()),
            ..Default::default()
        };
        let v = ZipkinEncoder::new(r).span_json(s);
        assert!(v.get("parentId").is_none());
        assert!(v.get("kind").is_none());
        assert!(v.get("annotations").is_none());
        assert_eq!(v["duration"], 1);
        assert_eq!(v["localEndpoint"]["serviceName"], "renamed");
        assert!(v["tags"].get("error").is_none());
        assert!(v["tags"].get("otel.status_code").is_none());
    }

    #[test]
    fn batches_are_arrays_and_urls_get_the_default_path() {
        let mut e = ZipkinEncoder::new(ResourceInfo::default());
        let mut out = Vec::new();
        e.encode(vec![sample(), sample()], &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(
            spans_url("http://zipkin:9411"),
            "http://zipkin:9411/api/v2/spans"
        );
        assert_eq!(
            spans_url("http://zipkin:9411/"),
            "http://zipkin:9411/api/v2/spans"
        );
        assert_eq!(spans_url("http://z/custom"), "http://z/custom");
    }
}
