//! Tail sampling: buffer spans per trace, then keep or drop the whole trace.
//!
//! # When a trace is decided
//!
//! - When its **root span** arrives (parent id zero, or a parent marked remote: the local root
//!   of a trace continued from propagated headers), plus `decision_grace_ms` for children that
//!   end after it (they usually end before it; the grace covers other threads' and processes'
//!   rings drained a little later). A true root (parent zero) restarts the grace when it comes
//!   after a remote-parent local root of the same trace; further local roots do not.
//! - A trace whose root never arrives (the root is in another host's collector, or its writer
//!   died) is decided `decision_wait_ms` after its first span.
//! - Under memory pressure, before its time: when `max_pending_traces` traces or
//!   `max_pending_spans` spans are buffered, the oldest pending trace is decided at once on the
//!   spans it has (counted in `shmtel_tail_sampling_forced_decisions_total{reason}`).
//! - At shutdown (`flush`), every pending trace is decided on what it has.
//!
//! "Arrives" is the collector's time of reading the span, not the span's own timestamps, so a
//! writer's clock cannot hold a decision back; the time is the drain loop's last `tick` (at
//! most one drain pass, 50 ms when idle, behind the real time).
//!
//! # Policies, in order
//!
//! 1. **error**: any span with status error: kept.
//! 2. **latency**: the trace lasts longer than `latency_threshold_ms` (earliest start to latest
//!    end of its spans; with the root present, the root's duration): kept. 0 turns it off.
//! 3. **ratio**: otherwise kept when OpenTelemetry's `TraceIdRatioBased` rule keeps the trace id
//!    at `ratio` ([`shmtel_core::ratio_sampled`]): deterministic, so every collector (and a
//!    writer's head sampler at the same ratio) agrees on the same trace.
//! 4. **rate limit**: `max_traces_per_second` (0: none) is a token bucket (one second of burst)
//!    that only throttles the ratio policy: error and slow traces are what tail sampling is
//!    for, so they are always kept, but they take tokens too, so under an error storm the ratio
//!    sample is what gives way. Exported traces per second are thus at most the limit plus the
//!    error and slow traces beyond it.
//!
//! Spans arriving after their trace's decision follow it, for as long as the decision is
//! remembered (the latest `decision_cache` decisions; the oldest are forgotten first). A span of
//! a forgotten trace starts a new pending trace.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use shmtel_core::layout::{span_status, SPAN_FLAG_REMOTE_PARENT};

use super::hash::FoldState;
use crate::model::{FamilyProvider, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue};
use crate::sinks::{SpanData, SpanSink};

/// The `[traces.tail_sampling]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// Whether spans go through tail sampling before the exporters (default false).
    pub enabled: bool,
    /// Keep traces lasting longer than this (default 1000 ms; 0: no latency policy).
    pub latency_threshold_ms: u64,
    /// Fraction of the other traces kept, by trace id (default 0.1).
    pub ratio: f64,
    /// Cap on traces kept by the ratio policy per second (default 0: none).
    pub max_traces_per_second: f64,
    /// Wait after the root span arrives for late children (default 500 ms).
    pub decision_grace_ms: u64,
    /// Decide a trace whose root never arrives this long after its first span (default 5 s).
    pub decision_wait_ms: u64,
    /// Most traces buffered (default 50000); beyond, the oldest is decided early.
    pub max_pending_traces: usize,
    /// Most spans buffered (default 500000); beyond, the oldest trace is decided early.
    pub max_pending_spans: usize,
    /// Decisions remembered for late spans (default 100000).
    pub decision_cache: usize,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            enabled: false,
            latency_threshold_ms: 1000,
            ratio: 0.1,
            max_traces_per_second: 0.0,
            decision_grace_ms: 500,
            decision_wait_ms: 5000,
            max_pending_traces: 50_000,
            max_pending_spans: 500_000,
            decision_cache: 100_000,
        }
    }
}

impl TailSamplingConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        if !(0.0..=1.0).contains(&self.ratio) {
            return err("ratio", "must be between 0 and 1");
        }
        if !self.max_traces_per_second.is_finite() || self.max_traces_per_second < 0.0 {
            return err("max_traces_per_second", "must be 0 (no limit) or more");
        }
        if self.decision_wait_ms == 0 {
            return err("decision_wait_ms", "must be at least 1");
        }
        if self.decision_grace_ms > 3_600_000 || self.decision_wait_ms > 3_600_000 {
            return err("decision_wait_ms", "decision times are at most an hour");
        }
        if self.max_pending_traces == 0 {
            return err("max_pending_traces", "must be at least 1");
        }
        if self.max_pending_spans == 0 {
            return err("max_pending_spans", "must be at least 1");
        }
        Ok(())
    }
}

/// Why a trace was kept or dropped (the `policy` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// A span had status error (kept).
    Error,
    /// The trace was slower than the threshold (kept).
    Latency,
    /// The ratio rule kept or dropped it.
    Ratio,
    /// The ratio rule kept it but the rate limit was reached (dropped).
    RateLimit,
}

/// Why a decision was taken before the root's grace ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forced {
    RootTimeout = 0,
    MaxPendingTraces = 1,
    MaxPendingSpans = 2,
    Shutdown = 3,
}

const FORCED_LABELS: [&str; 4] = [
    "root_timeout",
    "max_pending_traces",
    "max_pending_spans",
    "shutdown",
];

/// Counters shared with the `/metrics` provider. Every access is Relaxed: each is an
/// independent statistic, read without any need to agree with the others.
#[derive(Default)]
struct TailStats {
    kept_error: AtomicU64,
    kept_latency: AtomicU64,
    kept_ratio: AtomicU64,
    dropped_ratio: AtomicU64,
    dropped_rate_limit: AtomicU64,
    spans_dropped_policy: AtomicU64,
    spans_dropped_rate_limit: AtomicU64,
    late_kept: AtomicU64,
    late_dropped: AtomicU64,
    forced: [AtomicU64; 4],
    pending_traces: AtomicU64,
    pending_spans: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    // Ordering: Relaxed: a statistic (see TailStats).
    c.fetch_add(n, Ordering::Relaxed);
}

fn read(c: &AtomicU64) -> f64 {
    // Ordering: Relaxed: a statistic (see TailStats).
    c.load(Ordering::Relaxed) as f64
}

/// A trace whose decision is pending.
struct Pending {
    /// Tells this trace's queue entries from those of an earlier trace with the same id.
    generation: u64,
    spans: Vec<SpanData>,
    has_error: bool,
    min_start: u64,
    max_end: u64,
    /// When the root's grace runs out (None: no root yet).
    grace_deadline: Option<Instant>,
    true_root_seen: bool,
}

/// A remembered decision: kept, and the policy that decided (for late spans' counts).
#[derive(Clone, Copy)]
struct Decision {
    keep: bool,
    policy: Policy,
}

/// A token bucket holding up to one second of `rate`.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate.max(1.0));
    }

    /// Take a token if one is there.
    fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The tail-sampling sink: buffers spans per trace and forwards kept traces to `next`.
pub struct TailSampler {
    next: Box<dyn SpanSink>,
    latency_threshold_ns: u64,
    ratio: f64,
    grace: Duration,
    wait: Duration,
    max_pending_traces: usize,
    max_pending_spans: usize,
    decision_cache: usize,
    bucket: Option<TokenBucket>,
    pending: HashMap<[u8; 16], Pending, FoldState>,
    pending_spans: usize,
    generation: u64,
    /// (first span's arrival + wait, trace, generation), in arrival order.
    waits: VecDeque<(Instant, [u8; 16], u64)>,
    /// (root's arrival + grace, trace, generation), in arrival order.
    graces: VecDeque<(Instant, [u8; 16], u64)>,
    decided: HashMap<[u8; 16], Decision, FoldState>,
    decided_order: VecDeque<[u8; 16]>,
    /// The time of the last tick: spans are stamped with it (no clock read per span).
    now: Instant,
    stats: Arc<TailStats>,
}

impl TailSampler {
    /// A sampler with `cfg`'s policies (`cfg` is assumed valid) forwarding kept traces to
    /// `next`.
    pub fn new(cfg: &TailSamplingConfig, next: Box<dyn SpanSink>) -> TailSampler {
        let now = Instant::now();
        TailSampler {
            next,
            latency_threshold_ns: cfg.latency_threshold_ms.saturating_mul(1_000_000),
            ratio: cfg.ratio,
            grace: Duration::from_millis(cfg.decision_grace_ms),
            wait: Duration::from_millis(cfg.decision_wait_ms),
            max_pending_traces: cfg.max_pending_traces.max(1),
            max_pending_spans: cfg.max_pending_spans.max(1),
            decision_cache: cfg.decision_cache,
            bucket: (cfg.max_traces_per_second > 0.0).then(|| TokenBucket {
                rate: cfg.max_traces_per_second,
                tokens: cfg.max_traces_per_second.max(1.0),
                last: now,
            }),
            pending: HashMap::default(),
            pending_spans: 0,
            generation: 0,
            waits: VecDeque::new(),
            graces: VecDeque::new(),
            decided: HashMap::default(),
            decided_order: VecDeque::new(),
            now,
            stats: Arc::default(),
        }
    }

    /// The self-metrics' provider for `/metrics`.
    pub fn provider(&self) -> Arc<dyn FamilyProvider> {
        Arc::new(TailProvider(self.stats.clone()))
    }

    /// Traces and spans buffered now.
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.len(), self.pending_spans)
    }

    fn take(&mut self, span: SpanData) {
        let now = self.now;
        // The common case first: a span of a pending trace (one lookup).
        if let Some(p) = self.pending.get_mut(&span.trace_id) {
            Self::add(p, span, now, self.grace, &mut self.graces);
            self.pending_spans += 1;
            self.enforce_span_bound();
            return;
        }
        if let Some(d) = self.decided.get(&span.trace_id).copied() {
            if d.keep {
                bump(&self.stats.late_kept, 1);
                self.next.export(span);
            } else {
                bump(&self.stats.late_dropped, 1);
                self.count_dropped_spans(d.policy, 1);
            }
            return;
        }
        let trace_id = span.trace_id;
        while self.pending.len() >= self.max_pending_traces {
            if !self.decide_oldest(Forced::MaxPendingTraces) {
                break;
            }
        }
        self.generation += 1;
        let p = self.pending.entry(trace_id).or_insert(Pending {
            generation: self.generation,
            spans: Vec::with_capacity(4),
            has_error: false,
            min_start: u64::MAX,
            max_end: 0,
            grace_deadline: None,
            true_root_seen: false,
        });
        self.waits
            .push_back((now + self.wait, trace_id, self.generation));
        Self::add(p, span, now, self.grace, &mut self.graces);
        self.pending_spans += 1;
        self.enforce_span_bound();
    }

    /// Buffer `span` in its pending trace; a root starts the trace's grace.
    fn add(
        p: &mut Pending,
        span: SpanData,
        now: Instant,
        grace: Duration,
        graces: &mut VecDeque<(Instant, [u8; 16], u64)>,
    ) {
        p.has_error |= span.status == span_status::ERROR;
        p.min_start = p.min_start.min(span.start_ns);
        p.max_end = p.max_end.max(span.end_ns);
        let true_root = span.parent_span_id == [0; 8];
        let local_root = true_root || span.flags & SPAN_FLAG_REMOTE_PARENT != 0;
        if (true_root && !p.true_root_seen) || (local_root && p.grace_deadline.is_none()) {
            p.true_root_seen |= true_root;
            let deadline = now + grace;
            p.grace_deadline = Some(deadline);
            graces.push_back((deadline, span.trace_id, p.generation));
        }
        p.spans.push(span);
    }

    fn enforce_span_bound(&mut self) {
        while self.pending_spans > self.max_pending_spans {
            if !self.decide_oldest(Forced::MaxPendingSpans) {
                break;
            }
        }
    }

    /// Decide the pending trace that arrived first; false if nothing is pending.
    fn decide_oldest(&mut self, why: Forced) -> bool {
        // Every pending trace has a live entry in `waits`, or (once that entry has been
        // consumed because its root had arrived) in `graces`.
        for queue in [0, 1] {
            loop {
                let q = if queue == 0 {
                    &mut self.waits
                } else {
                    &mut self.graces
                };
                let Some(&(_, trace_id, generation)) = q.front() else {
                    break;
                };
                q.pop_front();
                if self
                    .pending
                    .get(&trace_id)
                    .is_some_and(|p| p.generation == generation)
                {
                    self.decide(trace_id, Some(why));
                    return true;
                }
            }
        }
        false
    }

    /// Take the decisions whose time has come.
    fn run_deadlines(&mut self) {
        let now = self.now;
        while let Some(&(deadline, trace_id, generation)) = self.graces.front() {
            if deadline > now {
                break;
            }
            self.graces.pop_front();
            if self
                .pending
                .get(&trace_id)
                .is_some_and(|p| p.generation == generation && p.grace_deadline == Some(deadline))
            {
                self.decide(trace_id, None);
            }
        }
        while let Some(&(deadline, trace_id, generation)) = self.waits.front() {
            if deadline > now {
                break;
            }
            self.waits.pop_front();
            match self.pending.get(&trace_id) {
                // A root arrived: the grace queue holds its deadline.
                Some(p) if p.generation == generation && p.grace_deadline.is_none() => {
                    self.decide(trace_id, Some(Forced::RootTimeout));
                }
                _ => {}
            }
        }
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        // Ordering: Relaxed: gauges read by the /metrics handler; no other data depends on them.
        (self.stats.pending_traces).store(self.pending.len() as u64, Ordering::Relaxed);
        // Ordering: Relaxed: as above.
        (self.stats.pending_spans).store(self.pending_spans as u64, Ordering::Relaxed);
    }

    fn policy(&mut self, trace_id: &[u8; 16], p: &Pending) -> Decision {
        let keep = |policy| Decision { keep: true, policy };
        let urgent = if p.has_error {
            Some(Policy::Error)
        } else if self.latency_threshold_ns > 0
            && p.max_end.saturating_sub(p.min_start) > self.latency_threshold_ns
        {
            Some(Policy::Latency)
        } else {
            None
        };
        if let Some(policy) = urgent {
            if let Some(b) = &mut self.bucket {
                b.try_take(self.now); // spends a token if there is one; kept either way
            }
            return keep(policy);
        }
        if !shmtel_core::ratio_sampled(trace_id, self.ratio) {
            return Decision {
                keep: false,
                policy: Policy::Ratio,
            };
        }
        let now = self.now;
        if self.bucket.as_mut().is_some_and(|b| !b.try_take(now)) {
            return Decision {
                keep: false,
                policy: Policy::RateLimit,
            };
        }
        keep(Policy::Ratio)
    }

    fn decide(&mut self, trace_id: [u8; 16], forced: Option<Forced>) {
        let Some(p) = self.pending.remove(&trace_id) else {
            return;
        };
        self.pending_spans -= p.spans.len();
        if let Some(f) = forced {
            bump(&self.stats.forced[f as usize], 1);
        }
        let d = self.policy(&trace_id, &p);
        let s = &self.stats;
        bump(
            match (d.keep, d.policy) {
                (true, Policy::Error) => &s.kept_error,
                (true, Policy::Latency) => &s.kept_latency,
                (true, _) => &s.kept_ratio,
                (false, Policy::RateLimit) => &s.dropped_rate_limit,
                (false, _) => &s.dropped_ratio,
            },
            1,
        );
        if d.keep {
            for span in p.spans {
                self.next.export(span);
            }
        } else {
            self.count_dropped_spans(d.policy, p.spans.len() as u64);
        }
        if self.decision_cache > 0 {
            if self.decided.insert(trace_id, d).is_none() {
                self.decided_order.push_back(trace_id);
            }
            while self.decided_order.len() > self.decision_cache {
                if let Some(old) = self.decided_order.pop_front() {
                    self.decided.remove(&old);
                }
            }
        }
    }

    fn count_dropped_spans(&self, policy: Policy, n: u64) {
        let s = &self.stats;
        bump(
            if policy == Policy::RateLimit {
                &s.spans_dropped_rate_limit
            } else {
                &s.spans_dropped_policy
            },
            n,
        );
    }

    /// Set the sampler's clock (the drain loop's tick time) and take due decisions.
    fn tick_at(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.run_deadlines();
    }
}

impl SpanSink for TailSampler {
    fn export(&mut self, span: SpanData) {
        self.take(span);
    }

    fn tick(&mut self) {
        self.tick_at(Instant::now());
        self.next.tick();
    }

    fn flush(&mut self) {
        let ids: Vec<[u8; 16]> = self.waits.iter().map(|e| e.1).collect();
        for trace_id in ids
            .into_iter()
            .chain(self.graces.iter().map(|e| e.1).collect::<Vec<_>>())
        {
            self.decide(trace_id, Some(Forced::Shutdown));
        }
        self.waits.clear();
        self.graces.clear();
        self.publish_gauges();
        self.next.flush();
    }
}

struct TailProvider(Arc<TailStats>);

impl FamilyProvider for TailProvider {
    fn families(&self) -> Vec<FamilySnapshot> {
        let s = &self.0;
        let counter = |labels: &[(&str, &str)], v: f64| SeriesSnapshot {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: SeriesValue::Counter {
                total: v,
                exemplar: None,
            },
            created_unix_secs: None,
        };
        let gauge = |v: f64| SeriesSnapshot {
            labels: Vec::new(),
            value: SeriesValue::Gauge(v),
            created_unix_secs: None,
        };
        let family = |name: &str, help: &str, kind, series| FamilySnapshot {
            name: name.into(),
            help: help.into(),
            unit: String::new(),
            kind,
            series,
        };
        let kept = |p| [("decision", "kept"), ("policy", p)];
        let dropped = |p| [("decision", "dropped"), ("policy", p)];
        vec![
            family(
                "shmtel_tail_sampling_traces",
                "Traces decided by tail sampling, by decision and the policy that decided.",
                MetricKind::Counter,
                vec![
                    counter(&kept("error"), read(&s.kept_error)),
                    counter(&kept("latency"), read(&s.kept_latency)),
                    counter(&kept("ratio"), read(&s.kept_ratio)),
                    counter(&dropped("ratio"), read(&s.dropped_ratio)),
                    counter(&dropped("rate_limit"), read(&s.dropped_rate_limit)),
                ],
            ),
            family(
                "shmtel_tail_sampling_spans_dropped",
                "Spans of dropped traces (late ones included), by what dropped their trace.",
                MetricKind::Counter,
                vec![
                    counter(&[("reason", "policy")], read(&s.spans_dropped_policy)),
                    counter(
                        &[("reason", "rate_limit")],
                        read(&s.spans_dropped_rate_limit),
                    ),
                ],
            ),
            family(
                "shmtel_tail_sampling_late_spans",
                "Spans that arrived after their trace was decided, by the decision they followed.",
                MetricKind::Counter,
                vec![
                    counter(&[("decision", "kept")], read(&s.late_kept)),
                    counter(&[("decision", "dropped")], read(&s.late_dropped)),
                ],
            ),
            family(
                "shmtel_tail_sampling_forced_decisions",
                "Traces decided before their root's grace ran out: root never arrived \
                 (root_timeout), memory bounds (max_pending_traces, max_pending_spans), shutdown.",
                MetricKind::Counter,
                FORCED_LABELS
                    .iter()
                    .zip(&s.forced)
                    .map(|(r, c)| counter(&[("reason", r)], read(c)))
                    .collect(),
            ),
            family(
                "shmtel_tail_sampling_pending_traces",
                "Traces buffered awaiting a decision.",
                MetricKind::Gauge,
                vec![gauge(read(&s.pending_traces))],
            ),
            family(
                "shmtel_tail_sampling_pending_spans",
                "Spans buffered awaiting their trace's decision.",
                MetricKind::Gauge,
                vec![gauge(read(&s.pending_spans))],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{span, Capture};
    use super::*;

    const MS: u64 = 1_000_000;

    /// A trace id's low 64 bits for which the ratio rule keeps (`low`) or drops (`high`) at
    /// any ratio strictly between 0 and 1 used below.
    const KEEP: u64 = 1;
    const DROP: u64 = u64::MAX;

    struct Rig {
        s: TailSampler,
        out: Capture,
        t0: Instant,
    }

    impl Rig {
        fn new(cfg: TailSamplingConfig) -> Rig {
            cfg.validate().unwrap();
            let out = Capture::default();
            let s = TailSampler::new(&cfg, Box::new(out.clone()));
            let t0 = s.now;
            Rig { s, out, t0 }
        }
        fn at(&mut self, ms: u64) {
            self.s.tick_at(self.t0 + Duration::from_millis(ms));
        }
        fn exported_traces(&self) -> Vec<u64> {
            let mut v: Vec<u64> = self
                .out
                .spans()
                .iter()
                .map(|s| u64::from_be_bytes(s.trace_id[8..].try_into().unwrap()))
                .collect();
            v.dedup();
            v
        }
        fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            let f = self.s.provider().families();
            let fam = f.iter().find(|f| f.name == name).expect(name);
            let s = fam
                .series
                .iter()
                .find(|s| {
                    labels
                        .iter()
                        .all(|(k, v)| s.labels.contains(&((*k).into(), (*v).into())))
                })
                .expect("series");
            match s.value {
                SeriesValue::Counter { total, .. } => total,
                SeriesValue::Gauge(v) => v,
                _ => unreachable!(),
            }
        }
    }

    fn cfg() -> TailSamplingConfig {
        TailSamplingConfig {
            enabled: true,
            ratio: 0.5,
            latency_threshold_ms: 100,
            ..Default::default()
        }
    }

    fn error(mut s: SpanData) -> SpanData {
        s.status = span_status::ERROR;
        s
    }

    #[test]
    fn policies_keep_error_slow_and_ratio_traces() {
        let mut r = Rig::new(cfg());
        // Trace 10 (ratio drops it): a child with an error, then the root.
        r.s.export(error(span(DROP - 10, 2, 1, 0, 10 * MS)));
        r.s.export(span(DROP - 10, 1, 0, 0, 20 * MS));
        // Trace 20 (ratio drops it): slow root.
        r.s.export(span(DROP - 20, 1, 0, 0, 150 * MS));
        // Trace 30: ratio keeps it.
        r.s.export(span(KEEP + 30, 1, 0, 0, MS));
        // Trace 40: ratio drops it, fast, no error.
        r.s.export(span(DROP - 40, 2, 1, 0, MS));
        r.s.export(span(DROP - 40, 1, 0, 0, 2 * MS));
        // Exactly at the threshold is not slower than it.
        r.s.export(span(DROP - 50, 1, 0, 0, 100 * MS));
        r.at(499);
        assert!(r.out.spans().is_empty(), "decided before the grace ran out");
        assert_eq!(r.s.pending(), (5, 7));
        r.at(500);
        assert_eq!(r.exported_traces(), vec![DROP - 10, DROP - 20, KEEP + 30]);
        assert_eq!(r.out.spans().len(), 4, "every span of a kept trace");
        assert_eq!(r.s.pending(), (0, 0));
        assert_eq!(
            r.metric("shmtel_tail_sampling_traces", &[("policy", "error")]),
            1.0
        );
        assert_eq!(
            r.metric("shmtel_tail_sampling_traces", &[("policy", "latency")]),
            1.0
        );
        let kept_ratio = [("decision", "kept"), ("policy", "ratio")];
        let dropped_ratio = [("decision", "dropped"), ("policy", "ratio")];
        assert_eq!(r.metric("shmtel_tail_sampling_traces", &kept_ratio), 1.0);
        assert_eq!(r.metric("shmtel_tail_sampling_traces", &dropped_ratio), 2.0);
        assert_eq!(
            r.metric(
                "shmtel_tail_sampling_spans_dropped",
                &[("reason", "policy")]
            ),
            3.0
        );
        assert_eq!(r.metric("shmtel_tail_sampling_pending_traces", &[]), 0.0);
    }

    #[test]
    fn decision_waits_for_the_root_plus_grace_and_late_spans_follow_it() {
        let mut r = Rig::new(cfg());
        // Children arrive over 3 s; nothing is decided before the root ends.
        r.s.export(span(DROP - 1, 2, 1, 0, MS));
        r.at(3000);
        r.s.export(span(DROP - 1, 3, 1, 0, MS));
        r.at(4000);
        assert!(r.out.spans().is_empty());
        assert_eq!(r.s.pending(), (1, 2));
        r.s.export(error(span(DROP - 1, 1, 0, 0, 2 * MS))); // the root, with an error
        r.at(4400);
        r.s.export(span(DROP - 1, 4, 1, 0, MS)); // a late child within the grace
        assert!(r.out.spans().is_empty());
        r.at(4500);
        assert_eq!(r.out.spans().len(), 4);
        // After the decision: a late span of a kept trace goes straight through...
        r.s.export(span(DROP - 1, 5, 1, 0, MS));
        assert_eq!(r.out.spans().len(), 5);
        assert_eq!(
            r.metric("shmtel_tail_sampling_late_spans", &[("decision", "kept")]),
            1.0
        );
        // ...and one of a dropped trace is dropped, even if it has an error.
        r.s.export(span(DROP - 2, 1, 0, 0, MS));
        r.at(5000);
        r.s.export(error(span(DROP - 2, 2, 1, 0, MS)));
        r.at(6000);
        assert_eq!(r.out.spans().len(), 5);
        assert_eq!(
            r.metric(
                "shmtel_tail_sampling_late_spans",
                &[("decision", "dropped")]
            ),
            1.0
        );
        assert_eq!(
            r.metric(
                "shmtel_tail_sampling_spans_dropped",
                &[("reason", "policy")]
            ),
            2.0
        );
        assert_eq!(r.s.pending(), (0, 0));
    }

    #[test]
    fn a_remote_parent_is_a_local_root_and_a_true_root_restarts_the_grace() {
        let mut r = Rig::new(cfg());
        let mut server = span(KEEP, 2, 77, 0, MS);
        server.flags |= SPAN_FLAG_REMOTE_PARENT;
        r.s.export(server);
        r.at(300);
        // The caller's root shows up (same host): the grace restarts from it.
        r.s.export(span(KEEP, 77, 0, 0, 2 * MS));
        r.at(600);
        assert!(
            r.out.spans().is_empty(),
            "the true root restarted the grace"
        );
        r.at(800);
        assert_eq!(r.out.spans().len(), 2);
        // A second remote-parent local root does not move the deadline.
        let mut a = span(KEEP + 1, 2, 77, 0, MS);
        a.flags |= SPAN_FLAG_REMOTE_PARENT;
        r.s.export(a.clone());
        r.at(1200);
        a.span_id = 3u64.to_be_bytes();
        r.s.export(a);
        r.at(1300);
        assert_eq!(r.out.spans().len(), 4);
    }

    #[test]
    fn a_trace_without_root_is_decided_after_the_wait() {
        let mut r = Rig::new(TailSamplingConfig {
            decision_wait_ms: 2000,
            ..cfg()
        });
        r.s.export(error(span(DROP, 2, 1, 0, MS)));
        r.at(1999);
        assert!(r.out.spans().is_empty());
        r.at(2000);
        assert_eq!(r.out.spans().len(), 1);
        let forced = [("reason", "root_timeout")];
        assert_eq!(
            r.metric("shmtel_tail_sampling_forced_decisions", &forced),
            1.0
        );
    }

    #[test]
    fn pending_traces_are_bounded_by_deciding_the_oldest_early() {
        let mut r = Rig::new(TailSamplingConfig {
            max_pending_traces: 3,
            ..cfg()
        });
        for t in 0..10u64 {
            r.s.export(error(span(DROP - t, 2, 1, 0, MS)));
            assert!(r.s.pending().0 <= 3);
        }
        // 7 decided early (oldest first), all kept: nothing lost, only decided sooner.
        assert_eq!(
            r.exported_traces(),
            (0..7).map(|t| DROP - t).collect::<Vec<_>>()
        );
        let forced = [("reason", "max_pending_traces")];
        assert_eq!(
            r.metric("shmtel_tail_sampling_forced_decisions", &forced),
            7.0
        );
        r.s.flush();
        assert_eq!(r.exported_traces().len(), 10);
        assert_eq!(r.s.pending(), (0, 0));
        let forced = [("reason", "shutdown")];
        assert_eq!(
            r.metric("shmtel_tail_sampling_forced_decisions", &forced),
            3.0
        );
    }

    #[test]
    fn pending_spans_are_bounded_and_an_evicted_trace_follows_its_decision() {
        let mut r = Rig::new(TailSamplingConfig {
            max_pending_spans: 5,
            ..cfg()
        });
        // A trace with many spans, one error: when it passes the bound it is decided (kept)
        // and its further spans go straight through.
        for s in 0..20u64 {
            let sp = span(DROP, s + 2, 1, 0, MS);
            r.s.export(if s == 0 { error(sp) } else { sp });
            assert!(r.s.pending().1 <= 5);
        }
        assert_eq!(r.out.spans().len(), 20);
        let forced = [("reason", "max_pending_spans")];
        assert_eq!(
            r.metric("shmtel_tail_sampling_forced_decisions", &forced),
            1.0
        );
        // Other traces push out the oldest first.
        for t in 1..=4u64 {
            r.s.export(span(KEEP + t, 2, 1, 0, MS));
            r.s.export(span(KEEP + t, 3, 1, 0, MS));
        }
        assert!(r.s.pending().1 <= 5);
        assert_eq!(r.exported_traces()[1..], [KEEP + 1, KEEP + 2]);
    }

    #[test]
    fn the_decision_cache_is_bounded() {
        let mut r = Rig::new(TailSamplingConfig {
            decision_cache: 4,
            ..cfg()
        });
        for t in 0..10u64 {
            r.s.export(span(DROP - t, 1, 0, 0, MS));
        }
        r.at(500);
        assert_eq!(r.s.decided.len(), 4);
        assert_eq!(r.s.decided_order.len(), 4);
        // The oldest were forgotten: a late span of trace 0 starts a new pending trace.
        r.s.export(span(DROP, 9, 1, 0, MS));
        assert_eq!(r.s.pending(), (1, 1));
        // A remembered one follows its decision.
        r.s.export(span(DROP - 9, 9, 1, 0, MS));
        assert_eq!(r.s.pending(), (1, 1));
    }

    /// A deterministic stream of random trace ids (xorshift64*).
    fn random_ids(n: usize, mut x: u64) -> Vec<[u8; 16]> {
        (0..n)
            .map(|_| {
                let mut id = [0u8; 16];
                for half in id.chunks_mut(8) {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    half.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes());
                }
                id
            })
            .collect()
    }

    #[test]
    fn the_ratio_is_kept_within_statistical_bounds_and_agrees_with_head_sampling() {
        for ratio in [0.01, 0.1, 0.5, 0.9] {
            let mut r = Rig::new(TailSamplingConfig {
                ratio,
                max_pending_traces: 100_000,
                ..cfg()
            });
            let n = 20_000;
            let ids = random_ids(n, 0x9e37_79b9_7f4a_7c15 ^ ratio.to_bits());
            for id in &ids {
                let mut s = span(0, 1, 0, 0, MS);
                s.trace_id = *id;
                r.s.export(s);
            }
            r.at(500);
            let kept: Vec<[u8; 16]> = r.out.spans().iter().map(|s| s.trace_id).collect();
            // The same traces as OpenTelemetry's TraceIdRatioBased sampler at this ratio.
            let expected: Vec<[u8; 16]> = ids
                .iter()
                .copied()
                .filter(|id| shmtel_core::ratio_sampled(id, ratio))
                .collect();
            assert_eq!(kept, expected);
            // Binomial: within 5 standard deviations of n * ratio.
            let sd = (n as f64 * ratio * (1.0 - ratio)).sqrt();
            let dev = (kept.len() as f64 - n as f64 * ratio).abs();
            assert!(dev <= 5.0 * sd, "ratio {ratio}: kept {} of {n}", kept.len());
        }
    }

    #[test]
    fn the_rate_limit_throttles_the_ratio_sample_but_never_errors() {
        let mut r = Rig::new(TailSamplingConfig {
            ratio: 1.0,
            max_traces_per_second: 10.0,
            ..cfg()
        });
        for t in 0..100u64 {
            r.s.export(span(t, 1, 0, 0, MS));
        }
        r.at(500);
        // The bucket starts full: one second's worth.
        assert_eq!(r.exported_traces().len(), 10);
        let limited = [("decision", "dropped"), ("policy", "rate_limit")];
        assert_eq!(r.metric("shmtel_tail_sampling_traces", &limited), 90.0);
        assert_eq!(
            r.metric(
                "shmtel_tail_sampling_spans_dropped",
                &[("reason", "rate_limit")]
            ),
            90.0
        );
        // Errors are kept with the bucket empty.
        for t in 100..120u64 {
            r.s.export(error(span(t, 1, 0, 0, MS)));
        }
        r.at(1000);
        assert_eq!(r.exported_traces().len(), 30);
        // At 1 s, half a second had refilled 5 tokens, which the errors used up; 1.5 s more
        // refills the bucket to its capacity of 10.
        r.at(2000);
        for t in 200..300u64 {
            r.s.export(span(t, 1, 0, 0, MS));
        }
        r.at(2500);
        assert_eq!(r.exported_traces().len(), 40);
    }

    #[test]
    fn config_validation() {
        let ok = TailSamplingConfig::default();
        ok.validate().unwrap();
        for (c, key) in [
            (
                TailSamplingConfig {
                    ratio: -0.1,
                    ..ok.clone()
                },
                "ratio",
            ),
            (
                TailSamplingConfig {
                    ratio: f64::NAN,
                    ..ok.clone()
                },
                "ratio",
            ),
            (
                TailSamplingConfig {
                    max_traces_per_second: -1.0,
                    ..ok.clone()
                },
                "max_traces_per_second",
            ),
            (
                TailSamplingConfig {
                    decision_wait_ms: 0,
                    ..ok.clone()
                },
                "decision_wait_ms",
            ),
            (
                TailSamplingConfig {
                    max_pending_traces: 0,
                    ..ok.clone()
                },
                "max_pending_traces",
            ),
            (
                TailSamplingConfig {
                    max_pending_spans: 0,
                    ..ok.clone()
                },
                "max_pending_spans",
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().0, key);
        }
        let c: TailSamplingConfig =
            toml::from_str("enabled = true\nratio = 1\nmax_traces_per_second = 100\n").unwrap();
        assert_eq!((c.ratio, c.max_traces_per_second), (1.0, 100.0));
    }
}
