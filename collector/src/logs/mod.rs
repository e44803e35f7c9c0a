//! The log pipeline: log events from the rings, redacted, reordered by time within a short
//! window, rendered and shipped to the configured sinks (stdout, files, syslog, OTLP).
//!
//! SKELETON (lead): the log-pipeline owner writes this module (config, pipeline, stdout sink,
//! wiring); the sinks' owner writes `file`, `syslog` and `otlp`.

pub mod file;
pub mod otlp;
pub mod render;
pub mod syslog;
