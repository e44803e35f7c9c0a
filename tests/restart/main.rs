//! Restart: the collector is stopped with SIGTERM while writers are recording and a new one is
//! started with the same state file. Nothing still in a ring is lost, nothing is counted twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shmtel_e2e::*;

/// No business events: `dropped_other` then counts histogram observations only.
const KINDS: &str = "counter,gauge,histogram,span,log";
const WRITERS: usize = 2;
const THREADS: u64 = 2;
/// 200 000 iterations at 50 000 per second per thread: about 4 s of recording.
const OPS: u64 = 200_000;
const RATE: &str = "50000";

#[test]
fn collector_restart_loses_and_duplicates_nothing() {
    let sb = Sandbox::new("restart");
    let log1 = sb.path("collector-1.log");
    let mut first = Collector::start(&sb.regions(), &sb.state_file(), &log1);

    let (threads, ops) = (THREADS.to_string(), OPS.to_string());
    let args = [
        "--threads",
        threads.as_str(),
        "--ops",
        ops.as_str(),
        "--rate",
        RATE,
        "--kinds",
        KINDS,
    ];
    let started = Instant::now();
    let mut writers: Vec<Loadgen> = (0..WRITERS)
        .map(|_| Loadgen::spawn(&sb.regions(), &args, &[]))
        .collect();

    first.wait_exact(
        "the first collector to see some writer data",
        SETTLE_TIMEOUT,
        &[],
        |m| {
            if m.sum("loadgen_ops_total") > 0.0 {
                Ok(())
            } else {
                Err("no loadgen_ops_total yet".into())
            }
        },
    );
    let midway = Duration::from_millis(1500);
    if let Some(rest) = midway.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let seen_before_stop = first.scrape().sum("loadgen_ops_total");

    let status = first.terminate();
    assert!(
        status.success(),
        "the collector exited with {status} after SIGTERM (expected 0: drain, save state, exit); its log:\n{}",
        std::fs::read_to_string(&log1).unwrap_or_default()
    );
    assert!(
        sb.state_file().is_file(),
        "no state file {} after the collector's clean exit",
        sb.state_file().display()
    );
    let still_running = writers
        .iter_mut()
        .map(|w| w.exited())
        .filter(|done| !done)
        .count();
    println!(
        "first collector stopped {:.1?} after the writers started, having seen {seen_before_stop} ops; {still_running} writer(s) still running",
        started.elapsed()
    );
    if still_running == 0 {
        println!("NOTICE: the writers finished before the collector stopped; the restart was not under load");
    }

    // The writers keep recording with no collector for a moment.
    std::thread::sleep(Duration::from_millis(500));
    let mut second = Collector::start(&sb.regions(), &sb.state_file(), &sb.path("collector-2.log"));

    let reports: Vec<LoadgenReport> = writers
        .into_iter()
        .map(|w| w.report(LOADGEN_TIMEOUT))
        .collect();
    for r in &reports {
        println!("loadgen: {}", r.raw);
    }
    let t = Totals::of(&reports);
    assert_eq!(
        t.ops_total,
        WRITERS as u64 * THREADS * OPS,
        "a writer did not run every iteration"
    );
    let pids: HashSet<u32> = reports.iter().map(|r| r.pid).collect();

    let m = second.wait_exact("/metrics after the restart to equal what the writers committed", SETTLE_TIMEOUT, &[], |m| {
        expect_eq("loadgen_ops_total", m.require_sum("loadgen_ops_total")?, t.ops_total as f64)?;
        expect_eq("loadgen_bytes_total", m.require_sum("loadgen_bytes_total")?, t.bytes_total as f64)?;
        expect_eq(
            "loadgen_latency_seconds_count (observations made minus those the writers counted as dropped)",
            m.require_sum("loadgen_latency_seconds_count")?,
            (t.histogram_count - t.dropped_other) as f64,
        )?;
        for r in &reports {
            for th in 0..r.threads {
                let (pid, thread) = (r.pid.to_string(), th.to_string());
                let key = format!("loadgen_progress{{pid=\"{pid}\",thread=\"{thread}\"}}");
                let v = m.get(&key).ok_or_else(|| format!("{key} is absent"))?;
                expect_eq(&key, v, OPS as f64)?;
            }
        }
        Ok(())
    });
    if t.dropped_other == 0 {
        let sum = m
            .require_sum("loadgen_latency_seconds_sum")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            (sum - t.histogram_sum).abs() <= 1e-6 * t.histogram_sum,
            "loadgen_latency_seconds_sum: /metrics says {sum}, the writers observed {}",
            t.histogram_sum
        );
    }
    println!(
        "writers: {} coalesced counter/gauge updates, dropped spans {} logs {} histogram {}",
        t.coalesced, t.dropped_spans, t.dropped_logs, t.dropped_other
    );

    wait_region_files_gone(&sb.regions(), &pids, Duration::from_secs(20));
    // Still exact once the files are gone.
    let after = second.scrape();
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

    let status = second.terminate();
    assert!(
        status.success(),
        "the second collector exited with {status} after SIGTERM"
    );
}
