//! Overflow: a writer with a small ring and no collector overruns its ring many times. Counter
//! and gauge updates go to overflow slots and are never lost; spans, logs and histogram
//! observations are dropped and every drop is counted. A collector started afterwards exposes
//! the exact counters and the drop counts.

use std::collections::HashSet;
use std::time::Duration;

use shmtel_e2e::*;

const THREADS: u64 = 2;
const OPS: u64 = 200_000;

#[test]
fn full_rings_lose_no_counter_and_count_every_drop() {
    let sb = Sandbox::new("overflow");
    let (threads, ops) = (THREADS.to_string(), OPS.to_string());
    let r = run_loadgen(
        &sb.regions(),
        &["--threads", &threads, "--ops", &ops],
        &[("SHMTEL_RING_BYTES", "65536")],
    );
    println!("loadgen: {}", r.raw);
    assert!(
        r.dropped_spans > 0,
        "with a 64 KiB ring and no collector some spans must be dropped: {}",
        r.raw
    );
    assert!(
        r.dropped_logs > 0,
        "with a 64 KiB ring and no collector some logs must be dropped: {}",
        r.raw
    );
    assert!(
        r.coalesced > 0,
        "with a 64 KiB ring and no collector some counter updates must be coalesced: {}",
        r.raw
    );

    let mut collector =
        Collector::start(&sb.regions(), &sb.state_file(), &sb.path("collector.log"));
    let m = collector.wait_exact(
        "/metrics to equal what the writer committed",
        SETTLE_TIMEOUT,
        &[],
        |m| {
            expect_eq(
                "loadgen_ops_total",
                m.require_sum("loadgen_ops_total")?,
                r.ops_total as f64,
            )?;
            expect_eq(
                "loadgen_bytes_total",
                m.require_sum("loadgen_bytes_total")?,
                r.bytes_total as f64,
            )?;
            for th in 0..THREADS {
                let label = th.to_string();
                expect_eq(
                    &format!("loadgen_ops_total{{thread=\"{th}\"}}"),
                    m.sum_where("loadgen_ops_total", &[("thread", &label)]),
                    OPS as f64,
                )?;
                let key = format!("loadgen_progress{{pid=\"{}\",thread=\"{th}\"}}", r.pid);
                expect_eq(
                    &key,
                    m.get(&key).ok_or_else(|| format!("{key} is absent"))?,
                    OPS as f64,
                )?;
            }
            expect_eq(
                "shmtel_spans_received_total",
                m.require_sum("shmtel_spans_received_total")?,
                (r.spans - r.dropped_spans) as f64,
            )?;
            expect_eq(
                "shmtel_dropped_records_total{kind=\"span\"}",
                m.sum_where("shmtel_dropped_records_total", &[("kind", "span")]),
                r.dropped_spans as f64,
            )?;
            expect_eq(
                "shmtel_logs_received_total",
                m.require_sum("shmtel_logs_received_total")?,
                (r.logs - r.dropped_logs) as f64,
            )?;
            expect_eq(
                "shmtel_dropped_records_total{kind=\"log\"}",
                m.sum_where("shmtel_dropped_records_total", &[("kind", "log")]),
                r.dropped_logs as f64,
            )?;
            expect_eq(
                "shmtel_dropped_records_total{kind=\"other\"}",
                m.sum_where("shmtel_dropped_records_total", &[("kind", "other")]),
                r.dropped_other as f64,
            )?;
            Ok(())
        },
    );

    // Histogram observations share `dropped_other` with business events: the count lies between
    // the observations made minus every "other" drop, and the observations made.
    let count = m
        .require_sum("loadgen_latency_seconds_count")
        .unwrap_or_else(|e| panic!("{e}"));
    let low = r.histogram_count.saturating_sub(r.dropped_other) as f64;
    assert!(
        count >= low && count <= r.histogram_count as f64,
        "loadgen_latency_seconds_count {count} outside [{low}, {}]",
        r.histogram_count
    );

    let pids = HashSet::from([r.pid]);
    let took = wait_region_files_gone(&sb.regions(), &pids, Duration::from_secs(20));
    println!("the dead writer's files removed {took:.1?} after the counters settled");
    let after = collector.scrape();
    assert_eq!(
        after.sum("loadgen_ops_total"),
        r.ops_total as f64,
        "loadgen_ops_total changed after cleanup"
    );
    assert_eq!(
        after.sum("loadgen_bytes_total"),
        r.bytes_total as f64,
        "loadgen_bytes_total changed after cleanup"
    );
}
