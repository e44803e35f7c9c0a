//! Span exporters: OTLP/HTTP protobuf, Zipkin v2 JSON, JSON lines.
//!
//! (Skeleton: the configuration type and the constructor the daemon calls; the exporters are
//! being written.)

use serde::Deserialize;

use crate::model::FamilyProvider;
use crate::sinks::SpanSink;

/// The `[export]` section of the collector's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {}

impl ExportConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}

/// The exporters a configuration asks for, and their self-metrics.
pub struct Exporters {
    /// One sink per configured exporter (each queues, batches and sends on its own thread).
    pub sinks: Vec<Box<dyn SpanSink>>,
    /// Self-metrics of the exporters (spans exported, failed, dropped, retried).
    pub metrics: Vec<std::sync::Arc<dyn FamilyProvider>>,
}

/// Build the exporters `cfg` configures, with the OTEL_* environment variables laid over it.
pub fn build(cfg: &ExportConfig) -> Result<Exporters, String> {
    let _ = cfg;
    Ok(Exporters {
        sinks: Vec::new(),
        metrics: Vec::new(),
    })
}
