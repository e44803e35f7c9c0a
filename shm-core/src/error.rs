//! The error type of the recording API.

use std::fmt;

/// Why a metric, name or label set could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A metric or label name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels:
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`).
    InvalidName(String),
    /// The number of label values differs from the number of label names.
    LabelCount {
        /// Metric name.
        metric: String,
        /// Label names declared.
        expected: usize,
        /// Label values given.
        got: usize,
    },
    /// The name is already registered with another type, label names, buckets or mode.
    Conflict(String),
    /// Histogram buckets are not finite and strictly increasing.
    InvalidBuckets(String),
    /// The region directory or a region file could not be created.
    Io(String),
    /// The interning table is full (its size is fixed at creation).
    TableFull,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(n) => write!(f, "invalid metric or label name: {n:?}"),
            Error::LabelCount {
                metric,
                expected,
                got,
            } => write!(
                f,
                "metric {metric:?} has {expected} label name(s) but {got} label value(s) were given"
            ),
            Error::Conflict(s) => write!(f, "conflicting registration: {s}"),
            Error::InvalidBuckets(s) => write!(f, "invalid histogram buckets: {s}"),
            Error::Io(s) => write!(f, "shmtel region i/o error: {s}"),
            Error::TableFull => write!(f, "shmtel interning table is full"),
        }
    }
}

impl std::error::Error for Error {}
