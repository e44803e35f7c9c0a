//! # shmtel-core
//!
//! The part of shmtel that is linked into every instrumented process: the binary layout
//! ([`layout`]), the single-producer ring protocol ([`ring`]), region files ([`region`]), the
//! per-process interning table, the per-thread ring writer behind the recording API
//! ([`Counter`], [`Gauge`], [`Histogram`], [`Span`], [`log()`], [`business_event`]) and the
//! reader used by the collector and the CLI ([`reader`]).
//!
//! Recording is a handful of stores into the calling thread's own ring and one release store
//! of its head: no lock, no system call. A thread's ring is created on its first recording;
//! a process's interning table on its first registered name. Nothing here waits for the
//! collector: when a ring is full, counter and gauge updates go to per-series overflow slots
//! (never lost), and spans, logs and histogram observations are dropped and counted.
//!
//! ## Background work
//! None. This crate starts no thread. Draining is the collector's job (`shmtel collect`).
//!
//! ## Configuration
//! [`init`] with a [`Config`], or environment variables read on first use: `SHMTEL_DIR`
//! (default `/dev/shm/shmtel/<service>`), `SHMTEL_SERVICE` (default: executable name),
//! `SHMTEL_RING_BYTES` (default 1 MiB), `SHMTEL_MAX_SERIES` (default 10000),
//! `SHMTEL_LOG_LEVEL` (default `trace`: everything), `SHMTEL_MAX_MESSAGE_BYTES` (default 8192).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod layout;
pub mod ring;
mod sync;

#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
mod config;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod logs;
#[cfg(not(loom))]
mod metrics;
#[cfg(not(loom))]
pub mod propagation;
#[cfg(not(loom))]
pub mod reader;
#[cfg(not(loom))]
pub mod region;
#[cfg(not(loom))]
pub mod sigbus;
#[cfg(not(loom))]
mod span;
#[cfg(not(loom))]
mod table;
#[cfg(all(feature = "tracing", not(loom)))]
pub mod tracing_layer;
#[cfg(not(loom))]
mod value;
#[cfg(not(loom))]
mod writer;

#[cfg(not(loom))]
pub use config::{init, Config};
#[cfg(not(loom))]
pub use error::Error;
#[cfg(not(loom))]
pub use logs::{
    business_event, correlation_id, log, log_enabled, log_in_context, log_in_span, log_with_caller,
    set_correlation_id, set_log_level, Level, LogContext,
};
#[cfg(not(loom))]
pub use metrics::{
    Counter, CounterVec, Gauge, GaugeMode, GaugeVec, Histogram, HistogramVec, Summary, SummaryVec,
    DEFAULT_BUCKETS,
};
#[cfg(not(loom))]
pub use span::{
    current_span, ratio_sampled, set_current_span, Span, SpanContext, SpanKind, SpanStatus,
};
#[cfg(not(loom))]
pub use table::Symbol;
#[cfg(all(feature = "tracing", not(loom)))]
pub use tracing_layer::{ShmtelLayer, ShmtelLevelFilter};
#[cfg(not(loom))]
pub use value::Value;
#[cfg(not(loom))]
pub use writer::{batch, flush_stats, WriterStats};
