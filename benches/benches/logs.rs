//! Log-event benchmarks: shmtel's direct API and its `tracing` layer side by side with
//! `tracing-subscriber`'s JSON formatter.
//!
//! One criterion group, `log_event`; each function records "info with two fields (a str and an
//! int)", the event of `recording.rs`'s `log_2_fields`:
//! - `shmtel/log`: `shmtel_core::log(Info, "user logged in", [(user_id, I64), (region, Str)])`;
//! - `shmtel/tracing_layer`: `tracing::info!(user_id = 42, region = "eu-west", "user logged in")`
//!   through `tracing_subscriber::registry().with(ShmtelLayer::new())`;
//! - `tracing/json_fmt`: the same `info!` through `tracing_subscriber::fmt().json()` writing to
//!   `std::io::sink()` (what a user of `tracing` ships JSON lines with);
//! - `shmtel/log_filtered`, `shmtel/tracing_layer_filtered`: the same calls with shmtel's level
//!   at WARN (the filtered-out call);
//! - `tracing/json_fmt_filtered`: the `info!` with the JSON formatter's max level at WARN.
//!
//! shmtel records into real ring files in a temporary directory on `/dev/shm` (default 1 MiB
//! rings); the recording thread drains its own ring between timed chunks of 2048 events
//! (untimed), so every timed event finds room: the append path, as with a collector that keeps
//! up. Every sample checks that nothing was dropped.
//!
//! The `tracing` subscribers are installed with `tracing::dispatcher::with_default` around each
//! function (the process can have only one global default, and three subscribers are compared).
//! A scoped default costs `tracing` a thread-local look-up per call that a global one does not;
//! it is the same for the three `tracing` functions.

// `criterion_group!` expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use shmtel_benches::drain::OwnRing;
use shmtel_benches::time_chunks;
use shmtel_core::tracing_layer::ShmtelLayer;
use shmtel_core::{set_log_level, Level, Symbol, Value};
use tracing::dispatcher::{self, Dispatch};
use tracing_subscriber::layer::SubscriberExt;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Initialises shmtel once, with its regions in a fresh directory on tmpfs; returns it.
fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        let dir = shmtel_benches::region_dir()
            .expect("create a region directory")
            .keep();
        shmtel_core::init(shmtel_core::Config {
            dir: Some(dir.clone()),
            service: "shmtel-bench-logs".into(),
            ..Default::default()
        })
        .expect("initialise shmtel");
        dir
    })
}

/// Benchmarks `op` on the calling thread, draining the thread's ring between timed chunks.
fn with_own_ring(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    mut op: impl FnMut(),
) {
    op(); // creates this thread's ring and interns what the operation needs
    let mut own = OwnRing::open(dir()).expect("open this thread's ring");
    c.bench_function(id, |b| {
        b.iter_custom(|n| {
            let elapsed = time_chunks(
                n,
                || {
                    own.drain();
                },
                &mut op,
            );
            own.assert_clean(id);
            elapsed
        })
    });
    own.drain();
}

#[inline(always)]
fn tracing_info() {
    tracing::info!(
        user_id = black_box(42_i64),
        region = black_box("eu-west"),
        "user logged in"
    );
}

fn log_event(c: &mut Criterion) {
    dir();
    let mut group = c.benchmark_group("log_event");
    let user_id = Symbol::intern("user_id");
    let region = Symbol::intern("region");
    let direct = || {
        shmtel_core::log(
            Level::Info,
            black_box("user logged in"),
            &[
                (user_id, Value::I64(black_box(42))),
                (region, Value::Str(black_box("eu-west"))),
            ],
        )
    };

    set_log_level(Level::Trace);
    with_own_ring(&mut group, "shmtel/log", direct);

    let layer = Dispatch::new(tracing_subscriber::registry().with(ShmtelLayer::new()));
    dispatcher::with_default(&layer, || {
        with_own_ring(&mut group, "shmtel/tracing_layer", tracing_info);
    });

    let json = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish(),
    );
    dispatcher::with_default(&json, || {
        group.bench_function("tracing/json_fmt", |b| b.iter(tracing_info));
    });

    set_log_level(Level::Warn);
    group.bench_function("shmtel/log_filtered", |b| b.iter(direct));
    dispatcher::with_default(&layer, || {
        group.bench_function("shmtel/tracing_layer_filtered", |b| b.iter(tracing_info));
    });
    set_log_level(Level::Trace);

    let json_warn = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::sink)
            .finish(),
    );
    dispatcher::with_default(&json_warn, || {
        group.bench_function("tracing/json_fmt_filtered", |b| b.iter(tracing_info));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = logs;
    config = config();
    targets = log_event
}

// `criterion_main!` plus the removal of the ring files.
fn main() {
    logs();
    if let Some(dir) = DIR.get() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("shmtel bench: cannot remove {}: {e}", dir.display());
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
