//! The file log sink: JSON lines (or logfmt/plain) appended to a file, rotated by size and by
//! time, keeping N rotated files, optionally gzipped.
//!
//! SKELETON (lead): the log-sinks owner replaces this.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::render::Renderer;
use crate::export::stats::ExporterStats;
use crate::sinks::LogSink;

/// `[[logs.file]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The file written to.
    pub path: PathBuf,
}

impl FileConfig {
    /// Check the section; errors are (key, message), `key` prefixed with `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err((format!("{prefix}.path"), "is required".into()));
        }
        Ok(())
    }

    /// Make a relative path relative to `base` (the configuration file's directory).
    pub fn anchor_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
    }
}

/// Start the sink.
pub fn start(
    cfg: &FileConfig,
    renderer: Renderer,
    stats: Arc<ExporterStats>,
) -> Result<Box<dyn LogSink>, String> {
    let _ = (cfg, renderer, stats);
    Err("the file log sink is not built yet".into())
}
