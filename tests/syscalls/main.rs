//! Syscalls: recording makes no system call (invariant 1). A writer is run under `strace -f -c`
//! once with 10 000 iterations and once with 1 000 000, for each kind of record separately,
//! with no collector (so the rings overrun and the overflow/drop paths are exercised too). The
//! total number of system calls must not grow with the number of recordings.
//!
//! Requires `strace`. Without it the suite prints a notice and passes, unless
//! `SHMTEL_REQUIRE_STRACE=1` (CI), which makes it a failure.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use shmtel_e2e::*;

const KINDS: [&str; 6] = ["counter", "gauge", "histogram", "span", "log", "business"];
const SMALL: u64 = 10_000;
const LARGE: u64 = 1_000_000;
/// Allowed difference between the two runs. Start-up and exit are the same code in both runs,
/// but a few of their calls are not deterministic: futex wake-ups and waits between the main
/// thread and the worker it joins, an allocator arena growing by one more mmap/brk, and the
/// clock_nanosleep/sched_yield retries of std's thread join. None of those scales with the
/// iteration count: a call on the recording path would add at least 990 000 calls, so 50 is a
/// margin for noise that still catches one syscall per thousand recordings.
const SLACK: u64 = 50;

struct Trace {
    total: u64,
    per_call: BTreeMap<String, u64>,
}

/// Parse `strace -c` output: the per-syscall rows and the `total` row.
fn parse_summary(text: &str) -> Result<Trace, String> {
    let mut per_call = BTreeMap::new();
    let mut total = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue; // header, rulers, notes
        }
        // % time, seconds, usecs/call, calls, [errors], syscall
        let calls: u64 = fields[3]
            .parse()
            .map_err(|_| format!("bad calls column in {line:?}"))?;
        let name = fields[fields.len() - 1];
        if name == "total" {
            total = Some(calls);
        } else {
            per_call.insert(name.to_owned(), calls);
        }
    }
    let total = total.ok_or_else(|| format!("no total row in strace's summary:\n{text}"))?;
    Ok(Trace { total, per_call })
}

fn traced_run(strace: &std::path::Path, kind: &str, ops: u64) -> Trace {
    let sb = Sandbox::new(&format!("syscalls-{kind}-{ops}"));
    let out = sb.path("strace.txt");
    let mut cmd = Command::new(strace);
    cmd.arg("-f")
        .arg("-c")
        .arg("-o")
        .arg(&out)
        .arg(loadgen_bin())
        .arg("--dir")
        .arg(sb.regions())
        .args(["--threads", "1", "--ops", &ops.to_string(), "--kinds", kind]);
    remove_shmtel_env(&mut cmd);
    let (status, stdout, stderr) = run_captured(cmd, "strace loadgen", Duration::from_secs(300));
    assert!(
        status.success(),
        "strace -f -c loadgen --kinds {kind} --ops {ops} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no loadgen report:\n{stdout}"));
    let report = LoadgenReport::parse(report).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.ops, ops,
        "loadgen ran a different number of iterations: {}",
        report.raw
    );
    let text =
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()));
    parse_summary(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn recording_makes_no_system_calls() {
    let Some(strace) = which("strace") else {
        skip_or_fail("SHMTEL_REQUIRE_STRACE", "strace is not installed");
        return;
    };
    // Can we trace at all here (ptrace may be forbidden in a container)?
    let mut probe = Command::new(&strace);
    probe.args(["-f", "-c", "-o", "/dev/null", "true"]);
    let (status, _, stderr) = run_captured(probe, "strace true", Duration::from_secs(60));
    if !status.success() {
        skip_or_fail(
            "SHMTEL_REQUIRE_STRACE",
            &format!("strace cannot trace here ({status}): {}", stderr.trim()),
        );
        return;
    }

    let mut rows = Vec::new();
    for kind in KINDS {
        let small = traced_run(&strace, kind, SMALL);
        let large = traced_run(&strace, kind, LARGE);
        rows.push((kind, small, large));
    }

    println!(
        "{:<10} {:>14} {:>16} {:>8}",
        "kind", "syscalls@10k", "syscalls@1M", "diff"
    );
    for (kind, s, l) in &rows {
        println!(
            "{:<10} {:>14} {:>16} {:>8}",
            kind,
            s.total,
            l.total,
            l.total as i64 - s.total as i64
        );
    }
    let mut failures = Vec::new();
    for (kind, s, l) in &rows {
        if l.total > s.total + SLACK {
            let grew: Vec<String> = l
                .per_call
                .iter()
                .filter_map(|(name, n)| {
                    let before = s.per_call.get(name).copied().unwrap_or(0);
                    (*n > before).then(|| format!("{name}: {before} -> {n}"))
                })
                .collect();
            failures.push(format!(
                "--kinds {kind}: {} system calls for {LARGE} iterations vs {} for {SMALL} (allowed +{SLACK}); grew: {}",
                l.total,
                s.total,
                grew.join(", ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the recording path makes system calls:\n{}",
        failures.join("\n")
    );
}
