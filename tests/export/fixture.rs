//! What the export tests' writer (`span_writer`) writes and the tests check: shared by both.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "export-e2e";
pub const REMOTE_TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
pub const REMOTE_PARENT: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

/// The span the server span links to (e.g. the message that caused the request).
pub const LINKED_TRACE: [u8; 16] = [0x11; 16];
/// See [`LINKED_TRACE`].
pub const LINKED_SPAN: [u8; 8] = [0x22; 8];

/// Wall-clock ns now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
