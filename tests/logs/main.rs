//! End-to-end tests of the log pipeline (schema, reorder, redaction).
