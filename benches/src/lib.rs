//! Helpers shared by the shmtel benchmarks (`benches/benches/*.rs`).
//!
//! The benchmarks themselves live in `benches/`; this crate holds only what more than one of them
//! needs: a pair of long-lived worker threads for the multi-threaded cases, and the choice of a
//! directory for region files.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod drain;

/// Long-lived worker threads that each run the same number of operations on command and report
/// how long their timed part took.
///
/// Criterion's `iter_custom` asks for `iters` operations and wants their duration back. Spawning
/// threads per sample would put thread creation (and, for shmtel, a new ring file per thread) into
/// the figures, so the workers are created once and reused. Each worker builds its own operation
/// on its own thread (`make(index)`), so per-thread state such as a thread-local ring is set up
/// before the first timed sample. All workers start together after a barrier; each operation
/// returns the time its own timed part took (see [`time_loop`] and [`time_chunks`]), and
/// [`WorkerThreads::run`] returns the slowest worker's, which is the per-thread cost of `iters`
/// operations when every worker runs concurrently.
pub struct WorkerThreads {
    commands: Vec<Sender<u64>>,
    results: Receiver<Duration>,
    handles: Vec<JoinHandle<()>>,
}

impl WorkerThreads {
    /// Starts `threads` workers; worker `i` calls `make(i)` once to build its operation, which is
    /// then called as `op(iters)` for every sample, must perform `iters` operations and returns
    /// how long they took.
    pub fn new<M, F>(threads: usize, make: M) -> Self
    where
        M: Fn(usize) -> F + Send + Sync + 'static,
        F: FnMut(u64) -> Duration + 'static,
    {
        let make = Arc::new(make);
        let barrier = Arc::new(Barrier::new(threads));
        let (result_tx, results) = channel();
        let (ready_tx, ready_rx) = channel::<()>();
        let mut commands = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let (command_tx, command_rx) = channel::<u64>();
            let make = Arc::clone(&make);
            let barrier = Arc::clone(&barrier);
            let result_tx = result_tx.clone();
            let ready_tx = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("bench-worker-{index}"))
                .spawn(move || {
                    let mut op = make(index);
                    // Warm the per-thread state (ring creation, series interning) untimed.
                    op(1);
                    if ready_tx.send(()).is_err() {
                        return;
                    }
                    while let Ok(iters) = command_rx.recv() {
                        barrier.wait();
                        let elapsed = op(iters);
                        if result_tx.send(elapsed).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn benchmark worker thread");
            commands.push(command_tx);
            handles.push(handle);
        }
        // Every worker has built its state (a shmtel worker: created its ring) before we return.
        drop(ready_tx);
        for _ in 0..threads {
            ready_rx.recv().expect("benchmark worker started");
        }
        Self {
            commands,
            results,
            handles,
        }
    }

    /// Runs `iters` operations on every worker at once; returns the slowest worker's time.
    pub fn run(&self, iters: u64) -> Duration {
        for command in &self.commands {
            command.send(iters).expect("benchmark worker is alive");
        }
        (0..self.commands.len())
            .map(|_| self.results.recv().expect("benchmark worker reports"))
            .max()
            .unwrap_or_default()
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        // Closing the command channels ends each worker's loop.
        self.commands.clear();
        for handle in self.handles.drain(..) {
            // A worker that panicked already printed its message; nothing more to report here.
            let _ = handle.join();
        }
    }
}

/// Runs `op` `iters` times back to back and returns how long that took.
#[inline(always)]
pub fn time_loop(iters: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed()
}

/// Operations per timed chunk in [`time_chunks`]: small enough that a chunk of the largest
/// record measured here (a log event with two fields, about 150 bytes) fills at most a third of
/// a 1 MiB ring, large enough that the two clock reads around a chunk cost nothing measurable.
pub const CHUNK: u64 = 2048;

/// Runs `op` `iters` times in chunks of [`CHUNK`], calling `between()` (untimed) before each
/// chunk, and returns the time spent in `op` only. `between` is where a benchmark drains its
/// thread's ring, so every timed operation finds room in the ring.
#[inline(always)]
pub fn time_chunks(iters: u64, mut between: impl FnMut(), mut op: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        between();
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

/// A fresh directory for shmtel region files, on tmpfs when the machine has `/dev/shm`.
///
/// Region files are memory-mapped; on a disk-backed file system the kernel would write dirty ring
/// pages back to disk during the run, which is not what a deployment (default `/dev/shm/shmtel`)
/// pays.
pub fn region_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = PathBuf::from("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("shmtel-bench-");
    if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
}
