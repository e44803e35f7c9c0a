//! OpenMetrics 1.0.0 text format.
//!
//! Differences from the Prometheus text format, all required or recommended by the
//! specification:
//! - metadata in the recommended order `# TYPE`, `# UNIT`, `# HELP` under the family name
//!   proper (a counter `foo` is `# TYPE foo counter` with samples `foo_total`); `# UNIT` only
//!   when the name ends with `_<unit>`; an empty help is left out (the spec treats it as absent);
//! - `_created` samples stay in their series, right after its other samples;
//! - histogram bucket and count values and summary counts are integers;
//! - a histogram's `_count` and `_sum` appear together and only when the sum may be exposed
//!   (no negative bucket bound and a non-negative sum); a summary's `_sum` only when it is
//!   non-negative;
//! - exemplars ` # {trace_id="…",span_id="…"} value [timestamp]` on counter totals and
//!   histogram buckets;
//! - the exposition ends with `# EOF`.

use super::format::{write_escaped_help_openmetrics, write_go_float, write_u64};
use super::{
    base_name, exemplar_is_valid, prepare_series, write_exemplar, FamilyNames, RenderStats,
    Scratch, SkipReason,
};
use crate::model::{ExemplarSnapshot, FamilySnapshot, MetricKind, SeriesValue};

/// Appends the OpenMetrics 1.0.0 exposition of `families` to `out`, ending with `# EOF\n`.
///
/// Families whose name or sample names are invalid or already used, series that break the data
/// model, and exemplars that do not fit their sample are left out and counted in the returned
/// [`RenderStats`]; the text written is always a valid exposition. Label pairs are sorted by
/// name.
pub fn render_openmetrics(families: &[FamilySnapshot], out: &mut String) -> RenderStats {
    let mut stats = RenderStats::default();
    let mut names = FamilyNames::new();
    let mut scratch = Scratch::new();

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
        write_metadata(out, base, family);
        scratch.start_family();

        for (series_index, series) in family.series.iter().enumerate() {
            if let Err(reason) = prepare_series(family, series_index, &mut scratch) {
                stats.skip_series(family_index, series_index, reason);
                continue;
            }
            stats.series += 1;
            write_series(out, base, &series.value, &mut scratch, &mut stats);
            if let Some(at) = series.created_unix_secs {
                if family.kind != MetricKind::Gauge && at.is_finite() {
                    scratch.write_series_name(out, base, "_created", None);
                    out.push(' ');
                    write_go_float(out, at);
                    out.push('\n');
                }
            }
        }
    }
    out.push_str("# EOF\n");
    stats
}

fn write_metadata(out: &mut String, base: &str, family: &FamilySnapshot) {
    out.push_str("# TYPE ");
    out.push_str(base);
    out.push(' ');
    out.push_str(family.kind.as_str());
    out.push('\n');
    let unit = family.unit.as_str();
    if !unit.is_empty()
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        && base
            .strip_suffix(unit)
            .is_some_and(|stem| stem.ends_with('_'))
    {
        out.push_str("# UNIT ");
        out.push_str(base);
        out.push(' ');
        out.push_str(unit);
        out.push('\n');
    }
    if !family.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(base);
        out.push(' ');
        write_escaped_help_openmetrics(out, &family.help);
        out.push('\n');
    }
}

fn write_series(
    out: &mut String,
    base: &str,
    value: &SeriesValue,
    scratch: &mut Scratch,
    stats: &mut RenderStats,
) {
    match value {
        SeriesValue::Counter { total, exemplar } => {
            scratch.write_series_name(out, base, "_total", None);
            out.push(' ');
            write_go_float(out, *total);
            maybe_exemplar(out, exemplar.as_ref(), None, stats);
            out.push('\n');
        }
        SeriesValue::Gauge(v) => {
            scratch.write_series_name(out, base, "", None);
            out.push(' ');
            write_go_float(out, *v);
            out.push('\n');
        }
        SeriesValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            let mut lower = f64::NEG_INFINITY;
            for (i, bucket) in buckets.iter().enumerate() {
                let le = scratch.format_number(i, bucket.upper);
                scratch.write_series_name(out, base, "_bucket", Some(("le", scratch.number(le))));
                out.push(' ');
                write_u64(out, bucket.cumulative);
                let range = Some((lower, bucket.upper));
                maybe_exemplar(out, bucket.exemplar.as_ref(), range, stats);
                out.push('\n');
                lower = bucket.upper;
            }
            // Negative bounds mean the sum is no counter, and `_count` goes with `_sum`.
            if buckets.first().is_some_and(|b| b.upper >= 0.0) && *sum >= 0.0 {
                count_and_sum(out, scratch, base, *count, Some(*sum));
            }
        }
        SeriesValue::Summary {
            quantiles,
            sum,
            count,
        } => {
            for (i, &(q, v)) in quantiles.iter().enumerate() {
                let q = scratch.format_number(i, q);
                scratch.write_series_name(out, base, "", Some(("quantile", scratch.number(q))));
                out.push(' ');
                write_go_float(out, v);
                out.push('\n');
            }
            count_and_sum(out, scratch, base, *count, (*sum >= 0.0).then_some(*sum));
        }
    }
}

fn count_and_sum(out: &mut String, scratch: &Scratch, base: &str, count: u64, sum: Option<f64>) {
    scratch.write_series_name(out, base, "_count", None);
    out.push(' ');
    write_u64(out, count);
    out.push('\n');
    if let Some(sum) = sum {
        scratch.write_series_name(out, base, "_sum", None);
        out.push(' ');
        write_go_float(out, sum);
        out.push('\n');
    }
}

fn maybe_exemplar(
    out: &mut String,
    exemplar: Option<&ExemplarSnapshot>,
    bucket: Option<(f64, f64)>,
    stats: &mut RenderStats,
) {
    if let Some(exemplar) = exemplar {
        if exemplar_is_valid(exemplar, bucket) {
            write_exemplar(out, exemplar);
        } else {
            stats.dropped_exemplars += 1;
        }
    }
}
