//! Rendering a log event as one line: JSON (three schemas), logfmt or plain text.
//!
//! SKELETON (lead): the API is the contract between the log pipeline and the log sinks; the
//! implementation is replaced by the pipeline's owner.

use serde::Deserialize;

use crate::export::resource::ResourceInfo;
use crate::export::sender::Encoder;
use crate::sinks::LogData;

/// Field names of the JSON rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    /// shmtel's own schema (`@timestamp`, `level`, `message`, ...).
    #[default]
    Shmtel,
    /// Elastic Common Schema.
    Ecs,
    /// OpenTelemetry log data model field names.
    Otel,
}

/// How a line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object.
    #[default]
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// Human text.
    Plain,
}

/// Renders log events; cheap to clone (one per sink).
#[derive(Debug, Clone)]
pub struct Renderer {
    format: Format,
    schema: Schema,
    resource: ResourceInfo,
}

impl Renderer {
    /// A renderer of `format` (JSON with `schema`), naming services as `resource` says.
    pub fn new(format: Format, schema: Schema, resource: ResourceInfo) -> Renderer {
        Renderer {
            format,
            schema,
            resource,
        }
    }

    /// Append `log` as one line to `out`, without the trailing newline. The line never
    /// contains a raw newline.
    pub fn render(&mut self, log: &LogData, out: &mut Vec<u8>) {
        let _ = (self.format, self.schema);
        let v = serde_json::json!({
            "@timestamp": log.time_ns,
            "level": log.level,
            "message": log.message,
            "service": self.resource.service(&log.origin),
        });
        out.extend_from_slice(v.to_string().as_bytes());
    }
}

impl Encoder<LogData> for Renderer {
    fn encode(&mut self, items: Vec<LogData>, out: &mut Vec<u8>) {
        for log in &items {
            self.render(log, out);
            out.push(b'\n');
        }
    }
}
