//! Process-wide writer configuration: [`init`] or environment variables on first use.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::Error;

/// Writer configuration. Fields left at their defaults take the environment's values.
#[derive(Clone, Debug)]
pub struct Config {
    /// Region directory; default `$SHMTEL_DIR`, else `/dev/shm/shmtel/<service>`.
    pub dir: Option<PathBuf>,
    /// Service name; default `$SHMTEL_SERVICE`, else the executable's name.
    pub service: String,
    /// Ring data bytes per thread (rounded up to a power of two, at least 64 KiB); default
    /// `$SHMTEL_RING_BYTES` or 1 MiB.
    pub ring_bytes: usize,
    /// Maximum series per process; default `$SHMTEL_MAX_SERIES` or 10000. Past it, new label
    /// sets record into their family's overflow series.
    pub max_series: usize,
    /// Interning table bytes; default 8 MiB (sparse in tmpfs).
    pub table_bytes: usize,
    /// Longest log message in bytes; longer ones are truncated at a character boundary and
    /// marked. Default `$SHMTEL_MAX_MESSAGE_BYTES` or 8192.
    pub max_message_bytes: usize,
    /// Attributes recorded per span before further ones are counted as dropped (default 128,
    /// OpenTelemetry's).
    pub max_span_attributes: u16,
    /// Events recorded per span before further ones are counted as dropped (default 128).
    pub max_span_events: u16,
    /// Links recorded per span before further ones are counted as dropped (default 128).
    pub max_span_links: u16,
    /// File mode of region files (default 0o600).
    pub file_mode: u32,
}

impl Default for Config {
    fn default() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let num = |k: &str, d: usize| env(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let service = env("SHMTEL_SERVICE").unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "default".into())
        });
        Config {
            dir: env("SHMTEL_DIR").map(PathBuf::from),
            service,
            ring_bytes: num("SHMTEL_RING_BYTES", 1 << 20),
            max_series: num("SHMTEL_MAX_SERIES", 10_000),
            table_bytes: 8 << 20,
            max_message_bytes: num("SHMTEL_MAX_MESSAGE_BYTES", 8192),
            max_span_attributes: 128,
            max_span_events: 128,
            max_span_links: 128,
            file_mode: 0o600,
        }
    }
}

impl Config {
    /// The region directory this configuration names.
    pub fn region_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/shm/shmtel").join(&self.service))
    }

    /// Ring capacity actually used: a power of two within the layout's bounds.
    pub(crate) fn ring_capacity(&self) -> u64 {
        (self.ring_bytes.max(64 * 1024) as u64)
            .next_power_of_two()
            .min(crate::layout::MAX_RING_CAPACITY)
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Set the process's configuration. Must come before the first recording; returns an error if
/// a configuration is already in force (set by an earlier `init` or by first use).
pub fn init(config: Config) -> Result<(), Error> {
    if let Some(level) = std::env::var("SHMTEL_LOG_LEVEL")
        .ok()
        .and_then(|l| crate::Level::parse(&l))
    {
        crate::set_log_level(level);
    }
    CONFIG
        .set(config)
        .map_err(|_| Error::Io("shmtel is already initialised in this process".into()))
}

/// The configuration in force (from the environment if `init` was not called).
pub(crate) fn get() -> &'static Config {
    CONFIG.get_or_init(|| {
        if let Some(level) = std::env::var("SHMTEL_LOG_LEVEL")
            .ok()
            .and_then(|l| crate::Level::parse(&l))
        {
            crate::set_log_level(level);
        }
        Config::default()
    })
}
