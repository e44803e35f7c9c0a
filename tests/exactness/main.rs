//! Exactness: three writer processes of four threads each record concurrently while a collector
//! drains them; afterwards /metrics says exactly what the writers say they committed, the dead
//! writers' files are cleaned up, and the counters stay where they were.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shmtel_e2e::*;

/// No business events: the writers' `dropped_other` then counts histogram observations only,
/// so the histogram's expected count is exact even if a ring ever filled up.
const KINDS: &str = "counter,gauge,histogram,span,log";
const PROCESSES: usize = 3;
const THREADS: u64 = 4;
const OPS: u64 = 200_000;
/// How long after the last writer exited its files may still be there.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn concurrent_writers_are_counted_exactly() {
    let sb = Sandbox::new("exactness");
    let mut collector =
        Collector::start(&sb.regions(), &sb.state_file(), &sb.path("collector.log"));

    // 16 MiB rings give the collector slack on a busy machine; drops would still be accounted.
    let env = [("SHMTEL_RING_BYTES", "16777216")];
    let (threads, ops) = (THREADS.to_string(), OPS.to_string());
    let args = [
        "--threads",
        threads.as_str(),
        "--ops",
        ops.as_str(),
        "--kinds",
        KINDS,
    ];
    let writers: Vec<Loadgen> = (0..PROCESSES)
        .map(|_| Loadgen::spawn(&sb.regions(), &args, &env))
        .collect();
    let reports: Vec<LoadgenReport> = writers
        .into_iter()
        .map(|w| w.report(LOADGEN_TIMEOUT))
        .collect();
    let exited_at = Instant::now();
    for r in &reports {
        println!("loadgen: {}", r.raw);
        assert_eq!(
            r.ops_total,
            THREADS * OPS,
            "loadgen pid {} did not run every iteration",
            r.pid
        );
    }
    let t = Totals::of(&reports);
    let pids: HashSet<u32> = reports.iter().map(|r| r.pid).collect();

    let expected_hist_count = t.histogram_count - t.dropped_other;
    let settled = collector.wait_exact("/metrics to equal what the writers committed", SETTLE_TIMEOUT, &[], |m| {
        expect_eq("loadgen_ops_total (all threads)", m.require_sum("loadgen_ops_total")?, t.ops_total as f64)?;
        for th in 0..THREADS {
            let label = th.to_string();
            expect_eq(
                &format!("loadgen_ops_total{{thread=\"{th}\"}}"),
                m.sum_where("loadgen_ops_total", &[("thread", &label)]),
                (PROCESSES as u64 * OPS) as f64,
            )?;
        }
        expect_eq("loadgen_bytes_total", m.require_sum("loadgen_bytes_total")?, t.bytes_total as f64)?;
        expect_eq(
            "loadgen_latency_seconds_count (observations made minus those the writers counted as dropped)",
            m.require_sum("loadgen_latency_seconds_count")?,
            expected_hist_count as f64,
        )?;
        let received = m.require_sum("shmtel_spans_received_total")?;
        let dropped = m.sum_where("shmtel_dropped_records_total", &[("kind", "span")]);
        expect_eq("shmtel_spans_received_total + shmtel_dropped_records_total{kind=\"span\"}", received + dropped, t.spans as f64)?;
        expect_eq("shmtel_dropped_records_total{kind=\"span\"}", dropped, t.dropped_spans as f64)?;
        expect_eq(
            "shmtel_logs_received_total",
            m.require_sum("shmtel_logs_received_total")?,
            (t.logs - t.dropped_logs) as f64,
        )?;
        Ok(())
    });

    // The histogram's sum: exact up to float rounding when nothing was dropped; otherwise it
    // lies between the full sum and the full sum minus the largest value (0.099) per drop.
    let sum = settled
        .require_sum("loadgen_latency_seconds_sum")
        .unwrap_or_else(|e| panic!("{e}"));
    let tol = 1e-6 * t.histogram_sum.abs();
    if t.dropped_other == 0 {
        assert!(
            (sum - t.histogram_sum).abs() <= tol,
            "loadgen_latency_seconds_sum: /metrics says {sum}, the writers observed {} (relative error {:e} > 1e-6)",
            t.histogram_sum,
            (sum - t.histogram_sum).abs() / t.histogram_sum
        );
    } else {
        println!(
            "NOTICE: {} histogram observations were dropped (ring full); checking the sum's bounds",
            t.dropped_other
        );
        let low = t.histogram_sum - 0.099 * t.dropped_other as f64 - tol;
        assert!(
            sum <= t.histogram_sum + tol && sum >= low,
            "loadgen_latency_seconds_sum {sum} outside [{low}, {}]",
            t.histogram_sum + tol
        );
    }
    let inf_bucket = settled.sum_where("loadgen_latency_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(
        inf_bucket, expected_hist_count as f64,
        "loadgen_latency_seconds_bucket{{le=\"+Inf\"}} != _count"
    );

    // The dead writers' regions are drained to the end, then removed.
    let budget = CLEANUP_TIMEOUT
        .saturating_sub(exited_at.elapsed())
        .max(Duration::from_secs(1));
    wait_region_files_gone(&sb.regions(), &pids, budget);
    println!(
        "dead writers' files removed {:.1?} after the last one exited",
        exited_at.elapsed()
    );

    // After cleanup the counters stay: nothing goes backwards, nothing changes.
    std::thread::sleep(Duration::from_secs(2));
    let after = collector.scrape();
    for (key, before) in &settled.samples {
        let name = key.split('{').next().unwrap_or(key);
        let monotonic =
            name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_bucket");
        if name.starts_with("loadgen_") && monotonic {
            let now = after.get(key).unwrap_or_else(|| {
                panic!("{key} (was {before}) disappeared from /metrics after the writers' files were removed")
            });
            assert!(
                now >= *before,
                "{key} went backwards after cleanup: {before} -> {now}"
            );
        }
    }
    assert_eq!(
        after.sum("loadgen_ops_total"),
        t.ops_total as f64,
        "loadgen_ops_total changed after cleanup"
    );
    assert_eq!(
        after.sum("loadgen_bytes_total"),
        t.bytes_total as f64,
        "loadgen_bytes_total changed after cleanup"
    );
    assert_eq!(
        after.sum("loadgen_latency_seconds_count"),
        expected_hist_count as f64,
        "loadgen_latency_seconds_count changed after cleanup"
    );
    collector.assert_running();
}
