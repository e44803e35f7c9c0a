//! The OTLP/HTTP logs sink (protobuf, `/v1/logs`).
//!
//! SKELETON (lead): the log-sinks owner replaces this.

use std::sync::Arc;

use serde::Deserialize;

use crate::export::env::OtelEnv;
use crate::export::resource::ResourceInfo;
use crate::export::stats::ExporterStats;
use crate::sinks::LogSink;

/// `[logs.otlp]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpLogsConfig {
    /// Base URL; `/v1/logs` is appended.
    pub endpoint: String,
}

impl OtlpLogsConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}

/// The section with the OTEL_* environment laid over it: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_ENDPOINT` enable it when the file has no `[logs.otlp]`.
pub fn resolve(cfg: Option<&OtlpLogsConfig>, env: &OtelEnv) -> Option<OtlpLogsConfig> {
    let _ = env;
    cfg.cloned()
}

/// Start the sink.
pub fn start(
    cfg: &OtlpLogsConfig,
    resource: ResourceInfo,
    stats: Arc<ExporterStats>,
) -> Result<Box<dyn LogSink>, String> {
    let _ = (cfg, resource, stats);
    Err("the OTLP logs sink is not built yet".into())
}
