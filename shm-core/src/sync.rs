//! Atomics used by the ring protocol: std's normally, loom's under `cfg(loom)` so that the same
//! protocol code is model checked (crossbeam's habit).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
