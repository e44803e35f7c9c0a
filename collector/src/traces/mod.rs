//! The span pipeline between the drain loop and the exporters: span-derived RED metrics and
//! tail sampling.
//!
//! (Skeleton: the configuration type and the constructor the daemon calls; the pipeline is
//! being written.)

use serde::Deserialize;

use crate::model::FamilyProvider;
use crate::sinks::{SpanData, SpanSink};

/// The `[traces]` section of the collector's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {}

impl TraceConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}

/// The pipeline's head (the sink the drain loop feeds) and its metric families.
pub struct Pipeline {
    /// Takes every assembled span; None when nothing would consume spans (the drain loop then
    /// skips assembling them).
    pub head: Option<Box<dyn SpanSink>>,
    /// RED metrics from spans and the sampler's self-metrics.
    pub metrics: Vec<std::sync::Arc<dyn FamilyProvider>>,
}

/// Build the pipeline: every span feeds the RED metrics; sampled spans go through tail
/// sampling (when configured) to `exporters`.
pub fn build(cfg: &TraceConfig, exporters: Vec<Box<dyn SpanSink>>) -> Result<Pipeline, String> {
    let _ = cfg;
    Ok(Pipeline {
        head: (!exporters.is_empty()).then(|| Box::new(FanOut(exporters)) as Box<dyn SpanSink>),
        metrics: Vec::new(),
    })
}

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
