//! The span pipeline between the drain loop and the exporters: span-derived RED metrics and
//! tail sampling.
//!
//! ```text
//! drain loop ──► redaction ([redaction], when configured)
//!                  └──► Head ──► SpanMetrics (every span the collector sees; /metrics)
//!                  └────► TailSampler (when enabled) ──► exporters (fan-out)
//!                  └────► exporters (fan-out), when tail sampling is off
//! ```
//!
//! - [`spanmetrics`]: calls, errors and a duration histogram per service, span name, kind and
//!   status, like the OpenTelemetry Collector's `spanmetrics` connector, with exemplars and
//!   series expiry.
//! - [`tail`]: buffers spans per trace and keeps or drops whole traces when their root ends
//!   (plus a grace period), by error, latency, ratio and rate-limit policies.
//!
//! # Configuration
//!
//! Every key is optional; the values shown are the defaults.
//!
//! ```toml
//! [traces.spanmetrics]
//! enabled = true
//! buckets = [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0]  # seconds
//! expiry_ms = 300000          # a series not updated for this long is removed
//! max_series = 10000          # beyond, new label sets go to one series {otel_metric_overflow="true"}
//!
//! [traces.tail_sampling]
//! enabled = false
//! latency_threshold_ms = 1000 # keep traces lasting longer (first span start to last span end); 0: off
//! ratio = 0.1                 # keep this fraction of the other traces (TraceIdRatioBased rule)
//! max_traces_per_second = 0   # cap on ratio-kept traces (0: none); error and slow traces are always kept
//! decision_grace_ms = 500     # wait this long after the root span ends for late children
//! decision_wait_ms = 5000     # decide traces whose root never arrives this long after their first span
//! max_pending_traces = 50000  # beyond, the oldest pending trace is decided early (counted)
//! max_pending_spans = 500000  # likewise for buffered spans
//! decision_cache = 100000     # decisions remembered for late spans (oldest forgotten first)
//! ```
//!
//! # Background work
//!
//! None of its own: the drain thread calls [`SpanSink::export`] for each span and
//! [`SpanSink::tick`] after every pass (at least every 50 ms); decisions whose time has come are
//! taken in `tick`. The `/metrics` handler reads the span metrics and the sampler's counters
//! through [`FamilyProvider`]s (a short lock for the span metrics, atomics for the rest).

use std::sync::Arc;

use serde::Deserialize;

use crate::model::FamilyProvider;
use crate::redact::Redactor;
use crate::sinks::{SpanData, SpanSink};

pub(crate) mod hash;
pub mod spanmetrics;
pub mod tail;

pub use spanmetrics::{SpanMetrics, SpanMetricsConfig};
pub use tail::{TailSampler, TailSamplingConfig};

/// The `[traces]` section of the collector's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// `[traces.spanmetrics]`: RED metrics from spans.
    pub spanmetrics: SpanMetricsConfig,
    /// `[traces.tail_sampling]`: which traces reach the exporters.
    pub tail_sampling: TailSamplingConfig,
}

impl TraceConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.spanmetrics
            .validate()
            .map_err(|(k, m)| (format!("traces.spanmetrics.{k}"), m))?;
        self.tail_sampling
            .validate()
            .map_err(|(k, m)| (format!("traces.tail_sampling.{k}"), m))
    }
}

/// The pipeline's head (the sink the drain loop feeds) and its metric families.
pub struct Pipeline {
    /// Takes every assembled span; None when nothing would consume spans (the drain loop then
    /// skips assembling them).
    pub head: Option<Box<dyn SpanSink>>,
    /// RED metrics from spans and the sampler's self-metrics.
    pub metrics: Vec<Arc<dyn FamilyProvider>>,
}

/// Build the pipeline: every span is redacted first (with `redactor`, when given), then feeds
/// the RED metrics; sampled spans go through tail sampling (when configured) to `exporters`.
pub fn build(
    cfg: &TraceConfig,
    exporters: Vec<Box<dyn SpanSink>>,
    redactor: Option<Redactor>,
) -> Result<Pipeline, String> {
    cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
    let mut metrics: Vec<Arc<dyn FamilyProvider>> = Vec::new();
    let span_metrics = cfg.spanmetrics.enabled.then(|| {
        let m = SpanMetrics::new(&cfg.spanmetrics);
        metrics.push(m.provider());
        m
    });
    let downstream: Option<Box<dyn SpanSink>> = match exporters.len() {
        0 => None,
        1 => exporters.into_iter().next(),
        _ => Some(Box::new(FanOut(exporters))),
    };
    let next = match downstream {
        Some(d) if cfg.tail_sampling.enabled => {
            let sampler = TailSampler::new(&cfg.tail_sampling, d);
            metrics.push(sampler.provider());
            Some(Box::new(sampler) as Box<dyn SpanSink>)
        }
        other => other,
    };
    let head = match (span_metrics, next) {
        (None, None) => None,
        (None, Some(next)) => Some(next),
        (metrics, next) => Some(Box::new(Head { metrics, next }) as Box<dyn SpanSink>),
    };
    let head = match (head, redactor) {
        (Some(next), Some(redactor)) => {
            Some(Box::new(Redact { redactor, next }) as Box<dyn SpanSink>)
        }
        (head, _) => head,
    };
    Ok(Pipeline { head, metrics })
}

/// Redacts every span before anything else sees it (span metrics, tail sampling, exporters).
struct Redact {
    redactor: Redactor,
    next: Box<dyn SpanSink>,
}

impl SpanSink for Redact {
    fn export(&mut self, mut span: SpanData) {
        self.redactor.redact_span(&mut span);
        self.next.export(span);
    }
    fn tick(&mut self) {
        self.next.tick();
    }
    fn flush(&mut self) {
        self.next.flush();
    }
}

/// Records every span in the span metrics, then hands it on.
struct Head {
    metrics: Option<SpanMetrics>,
    next: Option<Box<dyn SpanSink>>,
}

impl SpanSink for Head {
    fn export(&mut self, span: SpanData) {
        if let Some(m) = &mut self.metrics {
            m.record(&span);
        }
        if let Some(n) = &mut self.next {
            n.export(span);
        }
    }
    fn tick(&mut self) {
        if let Some(m) = &mut self.metrics {
            m.tick();
        }
        if let Some(n) = &mut self.next {
            n.tick();
        }
    }
    fn flush(&mut self) {
        if let Some(n) = &mut self.next {
            n.flush();
        }
    }
}

/// Hands every span to each exporter.
struct FanOut(Vec<Box<dyn SpanSink>>);

impl SpanSink for FanOut {
    fn export(&mut self, span: SpanData) {
        if let Some((last, rest)) = self.0.split_last_mut() {
            for s in rest {
                s.export(span.clone());
            }
            last.export(span);
        }
    }
    fn tick(&mut self) {
        for s in &mut self.0 {
            s.tick();
        }
    }
    fn flush(&mut self) {
        for s in &mut self.0 {
            s.flush();
        }
    }
}

/// Lowercase hex of `bytes` (trace and span ids).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Synthetic spans for the unit tests.

    use crate::sinks::{Origin, SpanData, SpanSink};
    use std::sync::{Arc, Mutex};

    /// A span of trace `t` (the trace id's low 8 bytes hold `t`, so ratio decisions can be
    /// steered), span id `s`, parent `p` (0: root).
    pub fn span(t: u64, s: u64, p: u64, start_ns: u64, end_ns: u64) -> SpanData {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
        trace_id[8..].copy_from_slice(&t.to_be_bytes());
        SpanData {
            links: Vec::new(),
            origin: Origin {
                service: "svc".into(),
                pid: 1,
                tid: 1,
            },
            trace_id,
            span_id: s.to_be_bytes(),
            parent_span_id: p.to_be_bytes(),
            name: "op".into(),
            kind: shmtel_core::layout::span_kind::SERVER,
            status: shmtel_core::layout::span_status::UNSET,
            flags: shmtel_core::layout::SPAN_FLAG_SAMPLED,
            start_ns,
            end_ns,
            attributes: Vec::new(),
            events: Vec::new(),
            dropped: 0,
        }
    }

    /// A sink that records what it was given.
    #[derive(Clone, Default)]
    pub struct Capture(pub Arc<Mutex<Vec<SpanData>>>);

    impl Capture {
        /// Spans exported so far.
        pub fn spans(&self) -> Vec<SpanData> {
            self.0.lock().unwrap().clone()
        }
    }

    impl SpanSink for Capture {
        fn export(&mut self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{span, Capture};
    use super::*;

    fn families(p: &Pipeline) -> Vec<String> {
        p.metrics
            .iter()
            .flat_map(|m| m.families())
            .map(|f| f.name)
            .collect()
    }

    #[test]
    fn defaults_validate_and_parse() {
        let cfg: TraceConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, TraceConfig::default());
        cfg.validate().unwrap();
        assert!(cfg.spanmetrics.enabled);
        assert!(!cfg.tail_sampling.enabled);
        let cfg: TraceConfig = toml::from_str(
            "[spanmetrics]\nenabled = false\n[tail_sampling]\nenabled = true\nratio = 0.5\n",
        )
        .unwrap();
        assert!(!cfg.spanmetrics.enabled);
        assert_eq!(cfg.tail_sampling.ratio, 0.5);
        assert!(toml::from_str::<TraceConfig>("[tail_sampling]\nbogus = 1\n").is_err());
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut cfg = TraceConfig::default();
        cfg.tail_sampling.ratio = 1.5;
        assert_eq!(cfg.validate().unwrap_err().0, "traces.tail_sampling.ratio");
        let mut cfg = TraceConfig::default();
        cfg.spanmetrics.buckets = vec![1.0, 0.5];
        assert_eq!(cfg.validate().unwrap_err().0, "traces.spanmetrics.buckets");
        assert!(build(&cfg, Vec::new(), None).is_err());
    }

    #[test]
    fn head_is_none_only_without_consumers() {
        let mut cfg = TraceConfig::default();
        cfg.spanmetrics.enabled = false;
        let p = build(&cfg, Vec::new(), None).unwrap();
        assert!(p.head.is_none() && p.metrics.is_empty());
        cfg.tail_sampling.enabled = true;
        assert!(build(&cfg, Vec::new(), None).unwrap().head.is_none());
        let p = build(&TraceConfig::default(), Vec::new(), None).unwrap();
        assert!(p.head.is_some());
        assert!(families(&p).contains(&"traces_span_metrics_calls".to_owned()));
    }

    #[test]
    fn without_tail_sampling_every_span_reaches_every_exporter() {
        let (a, b) = (Capture::default(), Capture::default());
        let p = build(
            &TraceConfig::default(),
            vec![Box::new(a.clone()), Box::new(b.clone())],
            None,
        )
        .unwrap();
        let mut head = p.head.unwrap();
        for i in 1..=10 {
            head.export(span(i, i, 0, 0, 1_000));
        }
        head.tick();
        head.flush();
        assert_eq!(a.spans().len(), 10);
        assert_eq!(b.spans(), a.spans());
    }

    #[test]
    fn with_tail_sampling_spans_are_held_until_decided() {
        let mut cfg = TraceConfig::default();
        cfg.tail_sampling.enabled = true;
        cfg.tail_sampling.ratio = 1.0;
        let out = Capture::default();
        let p = build(&cfg, vec![Box::new(out.clone())], None).unwrap();
        assert!(families(&p).contains(&"shmtel_tail_sampling_traces".to_owned()));
        let mut head = p.head.unwrap();
        head.export(span(7, 2, 1, 0, 1_000));
        head.tick();
        assert!(out.spans().is_empty(), "decided before the root ended");
        head.flush();
        assert_eq!(out.spans().len(), 1, "flush decides what is pending");
    }

    #[test]
    fn redaction_comes_before_every_consumer() {
        let out = Capture::default();
        let r = Redactor::new(&crate::redact::RedactionConfig::default()).unwrap();
        let p = build(
            &TraceConfig::default(),
            vec![Box::new(out.clone())],
            Some(r),
        )
        .unwrap();
        let mut head = p.head.unwrap();
        let mut s = span(1, 1, 0, 0, 1_000);
        s.name = "mail a@b.io".into();
        s.attributes = vec![(
            "password".into(),
            crate::sinks::OwnedValue::Str("hunter2".into()),
        )];
        head.export(s);
        head.flush();
        let got = out.spans();
        assert_eq!(&*got[0].name, "mail [REDACTED]");
        assert_eq!(
            got[0].attributes[0].1,
            crate::sinks::OwnedValue::Str("[REDACTED]".into())
        );
        // The RED metrics saw the redacted name too.
        let names = format!("{:?}", p.metrics[0].families());
        assert!(!names.contains("a@b.io"), "{names}");
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
