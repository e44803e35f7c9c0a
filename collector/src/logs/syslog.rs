//! The syslog log sink: RFC 5424 over UDP, TCP or a unix socket.
//!
//! SKELETON (lead): the log-sinks owner replaces this.

use std::sync::Arc;

use serde::Deserialize;

use super::render::Renderer;
use crate::export::resource::ResourceInfo;
use crate::export::stats::ExporterStats;
use crate::sinks::LogSink;

/// `[[logs.syslog]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `udp://host:port`, `tcp://host:port` or `unix:///dev/log`.
    pub address: String,
}

impl SyslogConfig {
    /// Check the section; errors are (key, message), `key` prefixed with `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        if self.address.is_empty() {
            return Err((format!("{prefix}.address"), "is required".into()));
        }
        Ok(())
    }
}

/// Start the sink.
pub fn start(
    cfg: &SyslogConfig,
    renderer: Renderer,
    resource: &ResourceInfo,
    stats: Arc<ExporterStats>,
) -> Result<Box<dyn LogSink>, String> {
    let _ = (cfg, renderer, resource, stats);
    Err("the syslog log sink is not built yet".into())
}
