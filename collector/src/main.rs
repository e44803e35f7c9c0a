//! `shmtel`: the collector daemon (`collect`) and the inspection commands (`dump`, `tail`,
//! `stat`).

use clap::{Parser, Subcommand};

use shmtel_collector::{collect, config::CollectArgs, inspect};

/// mimalloc instead of glibc's malloc: the collector allocates and frees many short-lived
/// buffers per batch (decoded records, OTLP messages, log lines), and under load glibc's
/// `malloc`/`free` (bins, consolidation) were ~30 % of its instructions (callgrind; see
/// benches/README.md, "End to end").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// shmtel: shared-memory telemetry. Drains the rings instrumented processes write, serves
/// Prometheus metrics, and inspects regions (also those of crashed processes).
#[derive(Parser)]
#[command(name = "shmtel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector: discover, validate and drain regions; serve /metrics and /healthz.
    Collect(CollectArgs),
    /// Print every region with its header and the records still in it (read-only).
    Dump(inspect::dump::DumpArgs),
    /// Print records as they arrive (read-only).
    Tail(inspect::tail::TailArgs),
    /// Print the interned series table of every process.
    Stat(inspect::stat::StatArgs),
}

fn main() {
    let cli = Cli::parse();
    // Region files are shared with other processes: one that shrinks under us must not kill us.
    shmtel_core::sigbus::install();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHMTEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let code = match &cli.command {
        Command::Collect(args) => collect::run(args),
        Command::Dump(args) => inspect::dump::run(args),
        Command::Tail(args) => inspect::tail::run(args),
        Command::Stat(args) => inspect::stat::run(args),
    };
    std::process::exit(code);
}
