//! Hostile: a region directory holds a valid writer's data plus files that are truncated,
//! zero-filled, random, from another layout version, owned by someone else, symlinked, or whose
//! ring positions or frames are corrupt. The collector keeps serving, exposes the valid data
//! exactly, counts each rejection by reason and logs it; `shmtel dump` lists each bad file with
//! its reason and exits 0.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmtel_core::layout::{HEADER_VERSION_OFFSET, HEAD_OFFSET, RING_DATA_OFFSET, TAIL_OFFSET};
use shmtel_e2e::*;

/// One bad file: where it is, the rejection reason labels one of which the collector must count
/// it under (empty when the contract leaves the label to the collector), and words one of which
/// the dump tool's explanation must contain.
struct BadFile {
    case: &'static str,
    path: PathBuf,
    reasons: &'static [&'static str],
    words: &'static [&'static str],
}

fn copy_into(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().expect("file name"));
    std::fs::copy(src, &dst)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), dst.display()));
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    dst
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o600);
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What `out` says about `name`: each line that mentions it, with the line after it (a reason
/// may wrap) and every following line indented deeper (a per-file block).
fn mentions(out: &str, name: &str) -> String {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = out.lines().collect();
    let mut found = String::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.contains(name) {
            continue;
        }
        found.push_str(l);
        found.push('\n');
        for (j, next) in lines.iter().enumerate().skip(i + 1) {
            if j > i + 1 && indent(next) <= indent(l) {
                break;
            }
            found.push_str(next);
            found.push('\n');
        }
    }
    found
}

#[test]
fn hostile_region_files_are_rejected_counted_and_survived() {
    let sb = Sandbox::new("hostile");
    let dir = sb.regions();

    // The valid data: a finished writer whose regions the collector must expose exactly.
    // No business events: `dropped_other` then counts histogram observations only.
    let kinds = ["--kinds", "counter,gauge,histogram,span,log"];
    let valid = run_loadgen(
        &dir,
        &[&["--threads", "2", "--ops", "5000"][..], &kinds].concat(),
        &[],
    );
    println!("valid loadgen: {}", valid.raw);
    let valid_ring = ring_files_of(&dir, valid.pid)
        .into_iter()
        .next()
        .expect("the valid writer left no ring");

    // A donor writer elsewhere, whose (consistently named) rings are copied in and damaged one
    // way each. Its table is copied intact so that the only defect is the one introduced.
    let donor_dir = sb.path("donor");
    let donor = run_loadgen(
        &donor_dir,
        &["--threads", "5", "--ops", "1000", "--service", "donor"],
        &[],
    );
    let donor_rings = ring_files_of(&donor_dir, donor.pid);
    assert_eq!(
        donor_rings.len(),
        5,
        "the donor writer should have one ring per thread: {donor_rings:?}"
    );
    copy_into(
        &table_file_of(&donor_dir, donor.pid).expect("the donor left no table"),
        &dir,
    );

    let mut bad = Vec::new();

    let p = copy_into(&donor_rings[0], &dir);
    patch_file(&p, HEADER_VERSION_OFFSET as u64, &2u32.to_le_bytes());
    bad.push(BadFile {
        case: "layout_version 2",
        path: p,
        reasons: &["unsupported_version"],
        words: &["version"],
    });

    let p = copy_into(&donor_rings[1], &dir);
    let capacity = std::fs::metadata(&p).expect("stat").len(); // any value far beyond the data capacity
    patch_file(
        &p,
        HEAD_OFFSET as u64,
        &(capacity.next_power_of_two() * 16).to_le_bytes(),
    );
    bad.push(BadFile {
        case: "head beyond capacity",
        path: p,
        reasons: &[],
        words: &["position", "head", "corrupt", "inconsistent"],
    });

    let p = copy_into(&donor_rings[2], &dir);
    assert!(
        read_u64_at(&p, HEAD_OFFSET as u64) > 0,
        "the donor ring holds no frame to corrupt"
    );
    assert_eq!(
        read_u64_at(&p, TAIL_OFFSET as u64),
        0,
        "the donor ring was consumed"
    );
    // The first frame's header: length 3 (shorter than a header), kind 0xBAD.
    let mut frame = [0u8; 8];
    frame[..4].copy_from_slice(&3u32.to_le_bytes());
    frame[4..6].copy_from_slice(&0xBADu16.to_le_bytes());
    patch_file(&p, RING_DATA_OFFSET as u64, &frame);
    bad.push(BadFile {
        case: "corrupt frame header",
        path: p,
        reasons: &[],
        words: &["frame", "corrupt"],
    });

    if is_root() {
        let p = copy_into(&donor_rings[3], &dir);
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).expect("chown 65534");
        bad.push(BadFile {
            case: "owned by uid 65534",
            path: p,
            reasons: &["wrong_owner"],
            words: &["owner", "uid"],
        });
    } else {
        println!("NOTICE: not running as root: the file-owned-by-another-user case did NOT run");
    }

    let p = copy_into(&donor_rings[4], &dir);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(4096)
        .expect("truncate");
    bad.push(BadFile {
        case: "truncated ring",
        path: p,
        reasons: &["truncated"],
        words: &["truncat"],
    });

    // Made-up names of processes that cannot exist (beyond any pid_max).
    let p = dir.join("999999902-1-1-1.ring");
    write_file(&p, &vec![0u8; (1 << 20) + RING_DATA_OFFSET]);
    // All zeros is also what a file looks like between its creation and its header being
    // written, so "not ready" is as good an answer as "bad magic".
    bad.push(BadFile {
        case: "zero-filled ring",
        path: p,
        reasons: &["bad_magic", "not_ready"],
        words: &["magic", "ready", "initialised", "version 0"],
    });

    let p = dir.join("999999903-1-1-1.ring");
    write_file(&p, &random_bytes(70_000));
    bad.push(BadFile {
        case: "random bytes named like a ring",
        path: p,
        reasons: &["bad_magic"],
        words: &["magic"],
    });

    let p = dir.join("999999903-1.table");
    write_file(&p, &random_bytes(70_000));
    bad.push(BadFile {
        case: "random bytes named like a table",
        path: p,
        reasons: &["bad_magic"],
        words: &["magic"],
    });

    let p = dir.join("999999904-1-1-1.ring");
    std::os::unix::fs::symlink(&valid_ring, &p).expect("symlink");
    bad.push(BadFile {
        case: "symlink to a valid ring",
        path: p,
        reasons: &["not_regular_file"],
        words: &["symlink", "regular", "link"],
    });

    // `shmtel dump` first: it only looks, and the collector will clean up dead writers' files.
    let dir_s = dir.to_str().expect("utf-8 path");
    let (status, stdout, stderr) = run_shmtel(&["dump", "--dir", dir_s]);
    let out = format!("{stdout}\n{stderr}");
    assert!(
        status.success(),
        "shmtel dump --dir D exited with {status} on a directory with bad files:\n{out}"
    );
    let mut dump_failures = Vec::new();
    for b in &bad {
        let name = b.path.file_name().and_then(|n| n.to_str()).expect("name");
        let said = mentions(&out, name);
        if said.is_empty() {
            dump_failures.push(format!("{} ({name}): not listed", b.case));
        } else if !b.words.iter().any(|w| said.to_lowercase().contains(w)) {
            dump_failures.push(format!(
                "{} ({name}): listed without a reason mentioning any of {:?}: {said}",
                b.case, b.words
            ));
        }
    }
    assert!(
        dump_failures.is_empty(),
        "shmtel dump:\n{}\n--- its output ---\n{out}",
        dump_failures.join("\n")
    );
    for b in &bad {
        assert!(
            b.path.symlink_metadata().is_ok(),
            "shmtel dump removed or renamed {} ({})",
            b.path.display(),
            b.case
        );
    }

    // The collector: valid data exact, every bad file rejected and counted, still serving.
    let mut collector = Collector::start(&dir, &sb.state_file(), &sb.path("collector.log"));
    // For each set of acceptable reasons: the rejections counted under those reasons must be
    // at least the number of bad files that may only be counted under (some of) them.
    let reason_sets: Vec<&[&str]> = bad
        .iter()
        .map(|b| b.reasons)
        .filter(|r| !r.is_empty())
        .collect();
    let expected_by_reasons: Vec<(&[&str], f64)> = reason_sets
        .iter()
        .map(|set| {
            let n = reason_sets
                .iter()
                .filter(|other| other.iter().all(|r| set.contains(r)))
                .count();
            (*set, n as f64)
        })
        .collect();
    let settled = collector.wait_metrics("valid data exact and every bad file rejected", SETTLE_TIMEOUT, |m| {
        expect_eq("loadgen_ops_total", m.require_sum("loadgen_ops_total")?, valid.ops_total as f64)?;
        expect_eq("loadgen_bytes_total", m.require_sum("loadgen_bytes_total")?, valid.bytes_total as f64)?;
        expect_eq(
            "loadgen_latency_seconds_count",
            m.require_sum("loadgen_latency_seconds_count")?,
            (valid.histogram_count - valid.dropped_other) as f64,
        )?;
        for (reasons, n) in &expected_by_reasons {
            let got: f64 = reasons.iter().map(|r| m.sum_where("shmtel_regions_rejected_total", &[("reason", r)])).sum();
            if got < *n {
                return Err(format!(
                    "shmtel_regions_rejected_total{{reason=~\"{}\"}} = {got}, expected at least {n}",
                    reasons.join("|")
                ));
            }
        }
        let total = m.sum("shmtel_regions_rejected_total");
        if total < bad.len() as f64 {
            return Err(format!("shmtel_regions_rejected_total summed over reasons = {total}, expected at least {}", bad.len()));
        }
        Ok(())
    });
    println!(
        "rejections:\n{}",
        settled
            .series("shmtel_regions_rejected_total")
            .map(|s| format!("  {:?} {}\n", s.labels, s.value))
            .collect::<String>()
    );

    // Still alive and serving a while later, and the valid data has not moved.
    std::thread::sleep(Duration::from_secs(2));
    let again = collector.scrape();
    assert_eq!(
        again.sum("loadgen_ops_total"),
        valid.ops_total as f64,
        "loadgen_ops_total changed"
    );
    let health = http_get(&collector.url("/healthz"), None).expect("/healthz");
    assert_eq!(
        health.status, 200,
        "/healthz after the bad files: {}",
        health.body
    );

    // Each rejection is logged with the file it concerns.
    let log = collector.log();
    let unlogged: Vec<String> = bad
        .iter()
        .filter(|b| !log.contains(b.path.file_name().and_then(|n| n.to_str()).expect("name")))
        .map(|b| format!("{} ({})", b.case, b.path.display()))
        .collect();
    assert!(unlogged.is_empty(), "the collector's log does not mention these rejected files: {unlogged:#?}\n--- log ---\n{log}");

    collector.assert_running();
    let status = collector.terminate();
    assert!(
        status.success(),
        "the collector exited with {status} after SIGTERM"
    );
}

/// A writer (or anyone with its uid) truncates a ring file while the collector has it mapped:
/// every access past the new end would be SIGBUS. The collector must survive, reject that ring
/// (`truncated_while_mapped`), and keep serving; `shmtel dump` must survive it too.
#[test]
fn a_ring_that_shrinks_while_mapped_is_rejected_not_fatal() {
    let sandbox = Sandbox::new("shrink");
    let dir = sandbox.regions();
    let mut collector =
        Collector::start(&dir, &sandbox.state_file(), &sandbox.path("collector.log"));
    let mut cmd = std::process::Command::new(loadgen_bin());
    cmd.arg("--dir")
        .arg(&dir)
        .args([
            "--threads",
            "1",
            "--ops",
            "1000000",
            "--rate",
            "2000",
            "--kinds",
            "counter",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    remove_shmtel_env(&mut cmd);
    let mut writer = ChildGuard::spawn(cmd, "loadgen", false);
    collector.wait_metrics(
        "the writer's first increments",
        Duration::from_secs(20),
        |m| match m.series("loadgen_ops_total").map(|s| s.value).sum::<f64>() {
            v if v > 0.0 => Ok(()),
            _ => Err("no loadgen_ops_total yet".into()),
        },
    );
    let ring = std::fs::read_dir(&dir)
        .expect("read regions")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "ring"))
        .expect("the writer's ring file");
    // Keep the header, drop the positions' page and the data: the next access faults.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ring)
        .expect("open ring")
        .set_len(0)
        .expect("truncate ring");
    let m = collector.wait_metrics(
        "the shrunk ring's rejection",
        Duration::from_secs(20),
        |m| match m.get("shmtel_regions_rejected_total{reason=\"truncated_while_mapped\"}") {
            Some(v) if v >= 1.0 => Ok(()),
            other => Err(format!("truncated_while_mapped rejections: {other:?}")),
        },
    );
    assert!(
        m.has("shmtel_records_drained_total"),
        "the collector keeps serving its metrics"
    );
    collector.assert_running();
    assert!(
        collector.log().contains("shrank while mapped"),
        "the collector logs why it rejected the ring:\n{}",
        collector.log_tail()
    );
    // The writer itself faults on its next append into the truncated file: that is the
    // truncating party's doing, not the collector's.
    writer.kill();
    let (status, _out, err) = run_shmtel(&["dump", "--dir", dir.to_str().expect("utf-8 path")]);
    assert!(
        status.code().is_some(),
        "shmtel dump was killed by a signal: {status:?}\n{err}"
    );
    let status = collector.terminate();
    assert!(
        status.success(),
        "the collector exits 0 on SIGTERM, got {status:?}"
    );
}
