//! Timestamps without a system call.
//!
//! On x86_64 with an invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`) record
//! timestamps are raw `rdtsc` values (~11 ns on the reference VM, against ~28 ns for a vDSO
//! `clock_gettime`). Each region header carries a calibration anchor (a TSC value, the wall-clock
//! time at that value, and the ticks per second) from which a reader converts ticks to
//! wall-clock nanoseconds. Elsewhere ticks are `CLOCK_REALTIME` nanoseconds read through the vDSO
//! (also no system call) and the anchor is the identity.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::layout::{CLOCK_REALTIME_NS, CLOCK_TSC};

/// A calibration anchor: what a region header stores so that readers can convert ticks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockAnchor {
    /// `CLOCK_TSC` or `CLOCK_REALTIME_NS`.
    pub source: u32,
    /// Tick value at the anchor.
    pub ticks: u64,
    /// Wall-clock ns since the Unix epoch at the anchor.
    pub wall_ns: u64,
    /// Ticks per second.
    pub ticks_per_sec: f64,
}

impl ClockAnchor {
    /// Convert a tick value read from a record into wall-clock ns since the Unix epoch.
    pub fn to_wall_ns(&self, ticks: u64) -> u64 {
        if self.source == CLOCK_REALTIME_NS
            || self.ticks_per_sec.is_nan()
            || self.ticks_per_sec <= 0.0
        {
            return ticks;
        }
        // Fast path, same result: when every operand is far from the i64 limits, i64 arithmetic
        // (and an f64 -> i64 truncation, one instruction) equals the i128 formula below, whose
        // float <-> i128 conversions are library calls. The collector converts every gauge set.
        const SMALL: u64 = 1 << 62;
        if ticks < SMALL && self.ticks < SMALL && self.wall_ns < SMALL {
            let ns = (ticks as i64 - self.ticks as i64) as f64 * 1e9 / self.ticks_per_sec;
            if ns.abs() < SMALL as f64 {
                return (self.wall_ns as i64 + ns as i64).max(0) as u64;
            }
        }
        let delta = ticks as i128 - self.ticks as i128;
        let ns = delta as f64 * 1e9 / self.ticks_per_sec;
        (self.wall_ns as i128)
            .saturating_add(ns as i128)
            .clamp(0, u64::MAX as i128) as u64
    }
}

struct Calibration {
    use_tsc: bool,
    first: (u64, u64),
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

/// Wall-clock ns since the Unix epoch (vDSO `clock_gettime(CLOCK_REALTIME)`).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn rdtsc() -> u64 {
    wall_ns()
}

fn tsc_is_invariant() -> bool {
    if !cfg!(target_arch = "x86_64")
        || std::env::var_os("SHMTEL_CLOCK").is_some_and(|v| v == "realtime")
    {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    has("constant_tsc") && has("nonstop_tsc")
}

fn calibration() -> &'static Calibration {
    CALIBRATION.get_or_init(|| {
        let use_tsc = tsc_is_invariant();
        let first = if use_tsc { sample_pair() } else { (0, 0) };
        Calibration { use_tsc, first }
    })
}

/// Read the TSC and the wall clock as close together as possible (the tightest of a few tries).
fn sample_pair() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let a = rdtsc();
        let w = wall_ns();
        let b = rdtsc();
        if b.wrapping_sub(a) < best.0 {
            best = (b.wrapping_sub(a), a / 2 + b / 2 + (a & b & 1), w);
        }
    }
    (best.1, best.2)
}

/// Must be called (it is, by region creation) before the first [`now_ticks`] of a process.
pub fn init() {
    let _ = calibration();
}

/// The current time in ticks (see the module docs). Hot path: no system call.
#[inline(always)]
pub fn now_ticks() -> u64 {
    match CALIBRATION.get() {
        Some(c) if c.use_tsc => rdtsc(),
        _ => wall_ns(),
    }
}

/// An anchor for a new region header. With the TSC, the frequency is measured between the
/// process's first sample and now, waiting until at least 2 ms separate them, so the estimate
/// improves for every region a long-lived process creates. May sleep: not for the hot path.
pub fn anchor() -> ClockAnchor {
    let c = calibration();
    if !c.use_tsc {
        return ClockAnchor {
            source: CLOCK_REALTIME_NS,
            ticks: 0,
            wall_ns: 0,
            ticks_per_sec: 1e9,
        };
    }
    let start = Instant::now();
    loop {
        let (t, w) = sample_pair();
        let dw = w.saturating_sub(c.first.1);
        if dw >= 2_000_000 {
            let hz = (t.wrapping_sub(c.first.0)) as f64 * 1e9 / dw as f64;
            return ClockAnchor {
                source: CLOCK_TSC,
                ticks: t,
                wall_ns: w,
                ticks_per_sec: hz,
            };
        }
        if start.elapsed() > Duration::from_millis(50) {
            // The wall clock went backwards or stood still: fall back to the identity anchor.
            return ClockAnchor {
                source: CLOCK_TSC,
                ticks: t,
                wall_ns: w,
                ticks_per_sec: 0.0,
            };
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
