//! Prometheus text format 0.0.4, line for line as prometheus_client (Python) writes it.
//!
//! - A counter family `foo` (registered as `foo` or `foo_total`) gets `# HELP foo_total`,
//!   `# TYPE foo_total counter` and samples `foo_total`.
//! - Histograms: per series the `_bucket{le="…"}` samples, then `_count`, then `_sum` (left out
//!   when the lowest bucket bound is negative). Summaries: the `{quantile="…"}` samples, then
//!   `_count` and `_sum`. Counts are written as floats (`3.0`), as prometheus_client does.
//! - Creation times go to a separate gauge family `foo_created` after the family's samples,
//!   again as prometheus_client does.
//! - Exemplars and units do not exist in this format and are not written.

use super::format::{write_escaped_help_prometheus, write_go_float};
use super::{base_name, prepare_series, FamilyNames, RenderStats, Scratch, SkipReason};
use crate::model::{FamilySnapshot, MetricKind, SeriesValue};

/// Appends the Prometheus text format 0.0.4 exposition of `families` to `out`.
///
/// Families whose name or sample names are invalid or already used, and series that break the
/// data model, are left out and counted in the returned [`RenderStats`]; the text written is
/// always a valid exposition. Label pairs are sorted by name.
pub fn render_prometheus(families: &[FamilySnapshot], out: &mut String) -> RenderStats {
    let mut stats = RenderStats::default();
    let mut names = FamilyNames::new();
    let mut scratch = Scratch::new();
    // `<name>_created` samples of the current family, written after its own samples.
    let mut created = String::new();

    for (family_index, family) in families.iter().enumerate() {
        let Some(base) = base_name(family) else {
            stats.skip_family(family_index, SkipReason::InvalidMetricName);
            continue;
        };
        if !names.claim(base, family.kind) {
            stats.skip_family(family_index, SkipReason::NameClash);
            continue;
        }
        stats.families += 1;
        let type_suffix = if family.kind == MetricKind::Counter {
            "_total"
        } else {
            ""
        };
        write_metadata(out, base, type_suffix, &family.help, family.kind.as_str());
        scratch.start_family();

        created.clear();
        for (series_index, series) in family.series.iter().enumerate() {
            if let Err(reason) = prepare_series(family, series_index, &mut scratch) {
                stats.skip_series(family_index, series_index, reason);
                continue;
            }
            stats.series += 1;
            write_series(out, base, &series.value, &mut scratch);
            if let Some(at) = series.created_unix_secs {
                if family.kind != MetricKind::Gauge && at.is_finite() {
                    scratch.write_series_name(&mut created, base, "_created", None);
                    created.push(' ');
                    write_go_float(&mut created, at);
                    created.push('\n');
                }
            }
        }
        if !created.is_empty() {
            write_metadata(out, base, "_created", &family.help, "gauge");
            out.push_str(&created);
        }
    }
    stats
}

fn write_metadata(out: &mut String, base: &str, suffix: &str, help: &str, type_name: &str) {
    out.push_str("# HELP ");
    out.push_str(base);
    out.push_str(suffix);
    out.push(' ');
    write_escaped_help_prometheus(out, help);
    out.push_str("\n# TYPE ");
    out.push_str(base);
    out.push_str(suffix);
    out.push(' ');
    out.push_str(type_name);
    out.push('\n');
}

fn write_series(out: &mut String, base: &str, value: &SeriesValue, scratch: &mut Scratch) {
    match value {
        SeriesValue::Counter { total, .. } => sample(out, scratch, base, "_total", None, *total),
        SeriesValue::Gauge(v) => sample(out, scratch, base, "", None, *v),
        SeriesValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            for (i, bucket) in buckets.iter().enumerate() {
                let le = scratch.format_number(i, bucket.upper);
                let cumulative = bucket.cumulative as f64;
                let extra = Some(("le", scratch.number(le)));
                sample(out, scratch, base, "_bucket", extra, cumulative);
            }
            sample(out, scratch, base, "_count", None, *count as f64);
            if buckets.first().is_some_and(|b| b.upper >= 0.0) {
                sample(out, scratch, base, "_sum", None, *sum);
            }
        }
        SeriesValue::Summary {
            quantiles,
            sum,
            count,
        } => {
            for (i, &(q, v)) in quantiles.iter().enumerate() {
                let q = scratch.format_number(i, q);
                sample(
                    out,
                    scratch,
                    base,
                    "",
                    Some(("quantile", scratch.number(q))),
                    v,
                );
            }
            sample(out, scratch, base, "_count", None, *count as f64);
            sample(out, scratch, base, "_sum", None, *sum);
        }
    }
}

fn sample(
    out: &mut String,
    scratch: &Scratch,
    base: &str,
    suffix: &str,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    scratch.write_series_name(out, base, suffix, extra);
    out.push(' ');
    write_go_float(out, value);
    out.push('\n');
}
