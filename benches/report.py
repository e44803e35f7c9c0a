#!/usr/bin/env python3
"""Turn one criterion run of `cargo bench -p shmtel-benches` into the Markdown ratio tables.

Reads `<criterion dir>/<group>/<function>/new/estimates.json` (the median point estimate, in
nanoseconds per operation) and prints:

1. the summary: one row per case with shmtel's time, its target, whether it was met, and each
   competitor's time with its ratio competitor/shmtel (above 1 means shmtel is faster);
2. every measured variant, one row each, with the same ratio;
3. for shmtel's consumer modes without room guaranteed, how many records missed the ring
   (`shmtel_losses.json`, written by the benchmark itself).

Usage: python3 benches/report.py [CRITERION_DIR]   (default: target/criterion from the
workspace root). Only one run's figures are ever compared: criterion overwrites `new/` each run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (group, description, shmtel target in ns or None)
CASES = [
    ("counter_inc_1t", "counter inc, 1 thread", 3.0),
    ("counter_inc_2t", "counter inc, 2 threads, own series (per thread)", 3.0),
    ("labeled_inc", "labeled lookup + inc (2 labels)", 15.0),
    ("histogram_observe", "histogram observe (11 buckets)", 5.0),
    ("span_1_attr", "span with 1 attribute", 50.0),
    ("span_sampled", "span with 1 attribute, sampled root (ratio 1)", 50.0),
    ("span_unsampled", "span with 1 attribute, unsampled root (ratio 0)", 5.0),
    ("log_2_fields", "log event with 2 fields", 30.0),
    ("floor", "machine floors (no library)", None),
]

# The function inside each group that the summary's shmtel column and the targets use.
SHMTEL = "shmtel"
# A second shmtel column: the same recording with a consumer draining the rings concurrently.
SHMTEL_DRAINING = "shmtel_draining"

# Summary columns: (header, function names tried in order; the first present is shown).
COMPETITORS = [
    ("prometheus", ["prometheus"]),
    ("metrics + Prometheus recorder", ["metrics"]),
    ("opentelemetry SDK (batch)", ["otel_batch", "otel_ratio_0"]),
    ("tracing + JSON fmt", ["tracing_json"]),
]

# What each function name means, for the detail table.
VARIANTS = {
    "shmtel": "shmtel, ring with room (drained between timed chunks, untimed)",
    "shmtel_draining": "shmtel, a consumer thread draining concurrently",
    "shmtel_ring_full": "shmtel, no consumer: ring full (overflow slots / counted drops)",
    "shmtel_cached": "shmtel, series handle looked up once",
    "prometheus": "prometheus",
    "prometheus_shared": "prometheus, both threads on one series",
    "metrics": "metrics macro on every call (registry lookup)",
    "metrics_handle": "metrics, handle looked up once",
    "otel_simple": "opentelemetry SDK, SimpleSpanProcessor",
    "otel_batch": "opentelemetry SDK, BatchSpanProcessor",
    "shmtel_child": "shmtel, child of an unsampled remote parent",
    "otel_always_off": "opentelemetry SDK, AlwaysOff sampler",
    "otel_ratio_0": "opentelemetry SDK, TraceIdRatioBased(0.0) sampler",
    "otel_child": "opentelemetry SDK, ParentBased(AlwaysOn), unsampled remote parent",
    "tracing_json": "tracing, JSON formatter to io::sink()",
    "atomic_add": "AtomicU64::fetch_add(Relaxed)",
    "plain_add": "plain add through black_box",
    "instant_now": "Instant::now()",
    "shmtel_now_ticks": "shmtel_core::clock::now_ticks() (TSC or vDSO clock)",
}


def median_ns(path: Path) -> float | None:
    est = path / "new" / "estimates.json"
    try:
        data = json.loads(est.read_text())
    except (OSError, ValueError):
        return None
    return float(data["median"]["point_estimate"])


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "–"
    if ns >= 1000:
        return f"{ns:,.0f}"
    if ns >= 100:
        return f"{ns:.0f}"
    if ns >= 10:
        return f"{ns:.1f}"
    return f"{ns:.2f}"


def ratio(other: float | None, base: float | None) -> str:
    if other is None or base is None or base <= 0:
        return ""
    return f"{other / base:.1f}×"


def main() -> int:
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
    else:
        root = Path(__file__).resolve().parent.parent / "target" / "criterion"
    if not root.is_dir():
        print(
            f"no criterion results under {root}: run `cargo bench -p shmtel-benches` first",
            file=sys.stderr,
        )
        return 1

    results: dict[str, dict[str, float]] = {}
    for group, _, _ in CASES:
        gdir = root / group
        if not gdir.is_dir():
            continue
        for fdir in sorted(p for p in gdir.iterdir() if p.is_dir() and p.name != "report"):
            ns = median_ns(fdir)
            if ns is not None:
                results.setdefault(group, {})[fdir.name] = ns

    header = ["case", "target", "shmtel ns", "met?", "shmtel, concurrent drain ns"]
    header += [f"{name} ns (ratio)" for name, _ in COMPETITORS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group, desc, target in CASES:
        if target is None:
            continue
        funcs = results.get(group, {})
        if not funcs:
            continue  # not measured (a filtered run)
        base = funcs.get(SHMTEL)
        met = "" if base is None else ("yes" if base <= target else "**no**")
        row = [desc, f"≤ {target:g}", fmt_ns(base), met, fmt_ns(funcs.get(SHMTEL_DRAINING))]
        for _, names in COMPETITORS:
            found = next((n for n in names if n in funcs), None)
            if found is None:
                row.append("–")
            else:
                r = ratio(funcs[found], base)
                row.append(fmt_ns(funcs[found]) + (f" ({r})" if r else ""))
        print("| " + " | ".join(row) + " |")

    print()
    print("| case | implementation | median ns | ratio to shmtel |")
    print("|---|---|---|---|")
    for group, desc, _ in CASES:
        funcs = results.get(group, {})
        base = funcs.get(SHMTEL)
        for name in sorted(funcs, key=lambda n: (not n.startswith("shmtel"), n)):
            label = VARIANTS.get(name, name)
            r = "" if group == "floor" else ratio(funcs[name], base)
            print(f"| {desc} | {label} (`{group}/{name}`) | {fmt_ns(funcs[name])} | {r} |")
    collector_rows = []
    for bench_id, desc in [
        ("collector_drain/counter_records", "drain, counter records"),
        ("collector_drain/mixed_metric_records", "drain, counter/gauge/histogram records"),
    ]:
        ns = median_ns(root / bench_id)
        if ns is not None:
            rate = 1e3 / ns
            collector_rows.append(
                (
                    desc,
                    f"{rate:.0f} M records/s ({ns:.1f} ns/record)",
                    "≥ 50 M records/s",
                    "yes" if rate >= 50 else "**no**",
                )
            )
    for bench_id, desc in [
        (
            "collector_scrape/scrape_prometheus_10k",
            "snapshot + render Prometheus text, 10,000 series",
        ),
        ("collector_scrape/scrape_openmetrics_10k", "snapshot + render OpenMetrics, 10,000 series"),
        ("collector_scrape/snapshot_10k", "snapshot alone, 10,000 series"),
    ]:
        ns = median_ns(root / bench_id)
        if ns is not None:
            ms = ns / 1e6
            target = "≤ 10 ms" if "render" in desc else ""
            met = ("yes" if ms <= 10 else "**no**") if target else ""
            collector_rows.append((desc, f"{ms:.2f} ms", target, met))
    for bench_id, desc, target in [
        ("collector_spans/assemble", "spans assembled (drain: ring to SpanData, batched)", None),
        ("collector_spans/encode_otlp", "spans OTLP-encoded (batches of 512)", None),
        ("collector_spans/assemble_encode_otlp", "spans assembled and OTLP-encoded, one core", 1.0),
        (
            "collector_spans/encode_otlp_gzip",
            "spans OTLP-encoded + gzip (fast), batches of 512",
            None,
        ),
    ]:
        ns = median_ns(root / bench_id)
        if ns is not None:
            rate = 1e3 / ns
            collector_rows.append(
                (
                    desc,
                    f"{rate:.2f} M spans/s ({ns:.0f} ns/span)",
                    f"≥ {target:g} M spans/s" if target else "",
                    ("yes" if rate >= target else "**no**") if target else "",
                )
            )
    try:
        proc = json.loads((root / "shmtel_collector_process.json").read_text())
    except (OSError, ValueError):
        proc = None
    if proc:
        rss_mb = proc["vm_rss_kb"] / 1024
        collector_rows.append(
            (
                f"daemon RSS, {proc['series']:,} series, {proc['writer_threads']} rings",
                f"{rss_mb:.0f} MB (anon {proc['rss_anon_kb'] / 1024:.0f}, "
                f"file {proc['rss_file_kb'] / 1024:.0f}, shmem {proc['rss_shmem_kb'] / 1024:.0f})",
                "< 100 MB",
                "yes" if rss_mb < 100 else "**no**",
            )
        )
        cpu = 100 * proc["idle_cpu_fraction_of_a_core"]
        collector_rows.append(
            (
                f"daemon idle CPU over {proc['idle_window_seconds']:.0f} s (64 idle rings)",
                f"{cpu:.1f}% of a core",
                "< 1%",
                "yes" if cpu < 1 else "**no**",
            )
        )
    if collector_rows:
        print()
        print("| collector | measured | target | met? |")
        print("|---|---|---|---|")
        for row in collector_rows:
            print("| " + " | ".join(row) + " |")

    losses_path = root / "shmtel_losses.json"
    try:
        losses = json.loads(losses_path.read_text())
    except (OSError, ValueError):
        losses = {}
    if losses:
        print()
        print(
            "| consumer mode | records written | drained by the consumer | missed the ring "
            "| of which counter updates coalesced into overflow slots (not lost) "
            "| spans / logs / other dropped |"
        )
        print("|---|---|---|---|---|---|")
        for bench_id, n in sorted(losses.items()):
            records = n["ops"] * n["records_per_op"]
            missed = (
                n["coalesced"]
                + n["dropped_spans"]
                + n["dropped_logs"]
                + n["dropped_other"]
                + n["dropped_metric"]
            )
            share = 100.0 * missed / records if records else 0.0
            print(
                f"| `{bench_id}` | {records:,} | {n['drained']:,} | {missed:,} ({share:.0f}%) "
                f"| {n['coalesced']:,} "
                f"| {n['dropped_spans']:,} / {n['dropped_logs']:,} / {n['dropped_other']:,} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
