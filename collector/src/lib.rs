//! shmtel's collector: drains the shared-memory rings that instrumented processes write,
//! aggregates what it reads, and exposes it.
//!
//! This crate holds the daemon's layers above the ring reader:
//! - [`model`]: the snapshot data model the aggregator hands to the renderers;
//! - [`exposition`]: pure functions rendering snapshots as Prometheus text 0.0.4 and
//!   OpenMetrics 1.0.0;
//! - [`http`]: the HTTP server for `/metrics` and `/healthz`;
//! - [`config`]: the `collect` command's flags, environment and TOML configuration;
//! - [`traces`]: the span pipeline (tail sampling, RED metrics from spans);
//! - [`export`]: span exporters (OTLP/HTTP, Zipkin, JSON lines);
//! - [`logs`]: the log pipeline (level filter, reorder window, rendering, sinks);
//! - [`redact`]: PII redaction of log events and spans before any export.
//!
//! # Background work
//!
//! The HTTP server renders on demand: each `GET /metrics` asks its [`http::MetricsSource`] for
//! a fresh snapshot and renders it on tokio's blocking pool, so a scrape never waits for, and
//! never holds up, the drain loop. See the crate README for who drains the rings and how often.

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod drain;
pub mod export;
pub mod exposition;
pub mod http;
pub mod inspect;
pub mod logs;
pub mod model;
pub mod redact;
pub mod sinks;
pub mod traces;
