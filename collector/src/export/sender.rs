//! The batching sender every exporter shares: a sink ([`SpanSink`] for spans, [`LogSink`] for
//! log events) that batches on the drain thread and a sending thread that encodes, delivers and
//! retries.
//!
//! The drain thread (through [`BatchSink::export`] and [`BatchSink::tick`]) collects spans into
//! a batch and hands the batch to the sending thread over a channel when it is full or old
//! enough; it never waits. Every span held anywhere (the open batch, the channel, the batch
//! being sent) is counted in [`ExporterStats::queued`]; when that count reaches the queue size,
//! further spans are dropped and counted, so memory is bounded whatever the backend does.
//!
//! The sending thread encodes each batch once ([`Encoder`]) and hands the bytes to a
//! [`Transport`] until it succeeds, fails for good, or the batch's retry budget runs out.
//! Retryable failures wait with exponential backoff and jitter, or as long as the backend's
//! `Retry-After` asks.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::stats::ExporterStats;
use crate::sinks::{LogData, LogSink, SpanData, SpanSink};

/// How long [`SpanSink::flush`] (and [`LogSink::flush`]) waits for queued batches to be delivered at shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns a batch of items (spans, log events) into one request body.
pub trait Encoder<T>: Send + 'static {
    /// Append the encoding of `items` to `out`.
    fn encode(&mut self, items: Vec<T>, out: &mut Vec<u8>);
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered.
    Done,
    /// Not delivered, worth trying again (after `after`, if the backend said so).
    Retry {
        /// The backend's `Retry-After`, if any.
        after: Option<Duration>,
        /// What went wrong, for the log.
        why: String,
    },
    /// Not delivered, and trying again would not help.
    Fail(String),
}

/// Delivers encoded batches.
pub trait Transport: Send + 'static {
    /// Transform a freshly encoded body once before the first attempt (compression).
    fn prepare(&mut self, body: Vec<u8>) -> Vec<u8> {
        body
    }
    /// One attempt.
    fn send(&mut self, body: &[u8]) -> Outcome;
}

/// Batching, queueing and retry settings of one exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Items per batch.
    pub batch_size: usize,
    /// Longest an item waits for its batch to fill.
    pub batch_timeout: Duration,
    /// Items held at most (open batch + queued + in flight).
    pub queue_size: usize,
    /// First retry delay (before jitter).
    pub initial_backoff: Duration,
    /// Longest retry delay (before jitter).
    pub max_backoff: Duration,
    /// Time budget of one batch, from its first attempt; 0 disables retries.
    pub max_elapsed: Duration,
}

enum Msg<T> {
    Batch(Vec<T>),
    Flush(mpsc::SyncSender<()>),
}

/// State the sink and its sending thread share.
struct Shared {
    stats: Arc<ExporterStats>,
    /// Set at shutdown: no retry may wait past it.
    closing: Mutex<Option<Instant>>,
}

/// A sink that batches items (a [`SpanSink`] for `T = SpanData`, a [`LogSink`] for
/// `T = LogData`) and sends them from a thread of its own.
pub struct BatchSink<T> {
    settings: BatchSettings,
    open: Vec<T>,
    opened: Instant,
    tx: Option<mpsc::Sender<Msg<T>>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> BatchSink<T> {
    /// Start the sending thread for `encoder` and `transport`.
    pub fn start(
        settings: BatchSettings,
        stats: Arc<ExporterStats>,
        encoder: impl Encoder<T>,
        transport: impl Transport,
    ) -> Result<BatchSink<T>, String> {
        let shared = Arc::new(Shared {
            stats,
            closing: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            settings,
            shared: shared.clone(),
            encoder,
            transport,
            rng: seed(),
            _items: std::marker::PhantomData,
        };
        let thread = std::thread::Builder::new()
            .name(format!("shmtel-export-{}", shared.stats.name))
            .spawn(move || worker.run(rx))
            .map_err(|e| format!("cannot start the sending thread: {e}"))?;
        Ok(BatchSink {
            settings,
            open: Vec::new(),
            opened: Instant::now(),
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    fn hand_off(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.open);
        let n = batch.len() as u64;
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Batch(batch)).is_ok());
        if !sent {
            // The sending thread is gone (it panicked, or we are past flush).
            self.shared.stats.sub_queued(n);
            self.shared.stats.add_failed(n);
        }
    }

    /// Queue one item (dropped and counted when the queue is full).
    fn push(&mut self, item: T) {
        let stats = &self.shared.stats;
        if stats.queued() >= self.settings.queue_size as u64 {
            stats.add_dropped(1);
            return;
        }
        stats.add_queued(1);
        if self.open.is_empty() {
            self.opened = Instant::now();
            self.open.reserve(self.settings.batch_size);
        }
        self.open.push(item);
        if self.open.len() >= self.settings.batch_size {
            self.hand_off();
        }
    }

    /// Hand the open batch off when it is old enough.
    fn hand_off_if_old(&mut self) {
        if !self.open.is_empty() && self.opened.elapsed() >= self.settings.batch_timeout {
            self.hand_off();
        }
    }

    /// Hand everything off and wait (up to [`FLUSH_TIMEOUT`]) for it to be delivered.
    fn flush_all(&mut self) {
        self.hand_off();
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        *self.shared.closing.lock() = Some(deadline);
        let Some(tx) = self.tx.take() else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_err() {
            return;
        }
        drop(tx);
        let acked = ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok();
        if acked {
            // The channel is closed and empty: the thread is about to return.
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        } else {
            tracing::warn!(
                exporter = self.shared.stats.name,
                held = self.shared.stats.queued(),
                what = self.shared.stats.what,
                "exporter: shutdown flush timed out; what it still held is lost"
            );
        }
    }
}

impl SpanSink for BatchSink<SpanData> {
    fn export(&mut self, span: SpanData) {
        self.push(span);
    }

    fn tick(&mut self) {
        self.hand_off_if_old();
    }

    fn flush(&mut self) {
        self.flush_all();
    }
}

impl LogSink for BatchSink<LogData> {
    fn export(&mut self, log: LogData) {
        self.push(log);
    }

    fn tick(&mut self) {
        self.hand_off_if_old();
    }

    fn flush(&mut self) {
        self.flush_all();
    }
}

impl<T> Drop for BatchSink<T> {
    fn drop(&mut self) {
        // Without a flush, nothing waits for the sending thread: let it give up at its next
        // retry instead of retrying into the void.
        self.shared.closing.lock().get_or_insert_with(Instant::now);
    }
}

struct Worker<E, X, T> {
    settings: BatchSettings,
    shared: Arc<Shared>,
    encoder: E,
    transport: X,
    rng: u64,
    _items: std::marker::PhantomData<fn(T)>,
}

impl<T, E: Encoder<T>, X: Transport> Worker<E, X, T> {
    fn run(mut self, rx: mpsc::Receiver<Msg<T>>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Batch(batch) => {
                    let n = batch.len() as u64;
                    self.deliver(batch);
                    self.shared.stats.sub_queued(n);
                }
                Msg::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }

    fn deliver(&mut self, batch: Vec<T>) {
        let n = batch.len() as u64;
        let stats = self.shared.stats.clone();
        let mut body = Vec::new();
        self.encoder.encode(batch, &mut body);
        let body = self.transport.prepare(body);
        let start = Instant::now();
        let mut backoff = self.settings.initial_backoff;
        loop {
            let (after, why) = match self.transport.send(&body) {
                Outcome::Done => {
                    stats.add_exported(n);
                    return;
                }
                Outcome::Fail(why) => {
                    tracing::warn!(
                        exporter = stats.name,
                        items = n,
                        what = stats.what,
                        "batch rejected: {why}"
                    );
                    stats.add_failed(n);
                    return;
                }
                Outcome::Retry { after, why } => (after, why),
            };
            let wait = after.unwrap_or_else(|| self.jitter(backoff));
            backoff = (backoff * 2).min(self.settings.max_backoff);
            let mut deadline = start + self.settings.max_elapsed;
            if let Some(closing) = *self.shared.closing.lock() {
                deadline = deadline.min(closing);
            }
            if Instant::now() + wait > deadline {
                tracing::warn!(
                    exporter = stats.name,
                    items = n,
                    what = stats.what,
                    elapsed = ?start.elapsed(),
                    "batch given up after retries: {why}"
                );
                stats.add_failed(n);
                return;
            }
            tracing::debug!(
                exporter = stats.name,
                ?wait,
                what = stats.what,
                "batch will be retried: {why}"
            );
            stats.add_retry();
            std::thread::sleep(wait);
        }
    }

    /// `d` scaled by a factor uniform in [0.5, 1.5), so exporters that failed together do not
    /// retry together.
    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64*: plenty for spreading retries.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        let unit = r as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + unit)
    }
}

fn seed() -> u64 {
    let t = crate::sinks::wall_clock_ns();
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Origin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn span(i: u64) -> SpanData {
        SpanData {
            links: Vec::new(),
            origin: Origin {
                service: "svc".into(),
                pid: 1,
                tid: 1,
            },
            trace_id: [1; 16],
            span_id: i.to_be_bytes(),
            parent_span_id: [0; 8],
            name: "s".into(),
            kind: 1,
            status: 0,
            flags: 1,
            start_ns: 1,
            end_ns: 2,
            attributes: Vec::new(),
            events: Vec::new(),
            dropped: 0,
        }
    }

    /// Encodes span ids as 8-byte big-endian words.
    struct Ids;
    impl Encoder<SpanData> for Ids {
        fn encode(&mut self, spans: Vec<SpanData>, out: &mut Vec<u8>) {
            for s in spans {
                out.extend_from_slice(&s.span_id);
            }
        }
    }

    /// Plays a script of outcomes, then succeeds; records delivered bodies.
    #[derive(Clone)]
    struct Script {
        outcomes: Arc<Mutex<Vec<Outcome>>>,
        attempts: Arc<AtomicUsize>,
        delivered: Arc<Mutex<Vec<Vec<u8>>>>,
    }
    impl Script {
        fn new(mut outcomes: Vec<Outcome>) -> Script {
            outcomes.reverse();
            Script {
                outcomes: Arc::new(Mutex::new(outcomes)),
                attempts: Arc::new(AtomicUsize::new(0)),
                delivered: Arc::new(Mutex::new(Vec::new())),
            }
        }
    }
    impl Transport for Script {
        fn send(&mut self, body: &[u8]) -> Outcome {
            // Ordering: Relaxed: a test counter.
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let o = self.outcomes.lock().pop().unwrap_or(Outcome::Done);
            if o == Outcome::Done {
                self.delivered.lock().push(body.to_vec());
            }
            o
        }
    }

    fn settings() -> BatchSettings {
        BatchSettings {
            batch_size: 4,
            batch_timeout: Duration::from_millis(20),
            queue_size: 10,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(2),
        }
    }

    fn retry() -> Outcome {
        Outcome::Retry {
            after: None,
            why: "503".into(),
        }
    }

    #[test]
    fn batches_by_size_and_time_and_retries_until_delivered() {
        let stats = Arc::new(ExporterStats::new("t"));
        let t = Script::new(vec![retry(), retry()]);
        let mut sink = BatchSink::start(settings(), stats.clone(), Ids, t.clone()).unwrap();
        for i in 0..5 {
            sink.export(span(i));
        }
        // One full batch went; one span waits for the timeout.
        std::thread::sleep(Duration::from_millis(30));
        sink.tick();
        sink.flush();
        assert_eq!(stats.exported(), 5);
        assert_eq!(stats.retries(), 2);
        assert_eq!(stats.failed() + stats.dropped() + stats.queued(), 0);
        let d = t.delivered.lock();
        assert_eq!(d.len(), 2, "two batches, each delivered once");
        assert_eq!(d[0].len(), 4 * 8);
        assert_eq!(d[1].len(), 8);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let stats = Arc::new(ExporterStats::new("t"));
        let t = Script::new(vec![Outcome::Fail("400".into())]);
        let mut sink = BatchSink::start(settings(), stats.clone(), Ids, t.clone()).unwrap();
        for i in 0..4 {
            sink.export(span(i));
        }
        sink.flush();
        // Ordering: Relaxed: a test counter, read after join.
        assert_eq!(t.attempts.load(Ordering::Relaxed), 1);
        assert_eq!(
            (stats.failed(), stats.exported(), stats.retries()),
            (4, 0, 0)
        );
    }

    #[test]
    fn retries_stop_at_the_time_budget() {
        let stats = Arc::new(ExporterStats::new("t"));
        let t = Script::new(vec![retry(); 1000]);
        let mut s = settings();
        s.max_elapsed = Duration::from_millis(100);
        let mut sink = BatchSink::start(s, stats.clone(), Ids, t.clone()).unwrap();
        for i in 0..4 {
            sink.export(span(i));
        }
        sink.flush();
        assert_eq!((stats.failed(), stats.exported()), (4, 0));
        assert!(stats.retries() >= 3, "retries: {}", stats.retries());
    }

    #[test]
    fn retry_after_is_honoured() {
        let stats = Arc::new(ExporterStats::new("t"));
        let t = Script::new(vec![Outcome::Retry {
            after: Some(Duration::from_millis(300)),
            why: "429".into(),
        }]);
        let mut sink = BatchSink::start(settings(), stats.clone(), Ids, t.clone()).unwrap();
        let t0 = Instant::now();
        for i in 0..4 {
            sink.export(span(i));
        }
        sink.flush();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(stats.exported(), 4);
    }

    #[test]
    fn the_queue_is_bounded_and_drops_are_counted() {
        let stats = Arc::new(ExporterStats::new("t"));
        // The backend is down for longer than the test: everything held stays held.
        let t = Script::new(vec![retry(); 100_000]);
        let mut s = settings();
        s.max_elapsed = Duration::from_secs(60);
        let mut sink = BatchSink::start(s, stats.clone(), Ids, t).unwrap();
        for i in 0..100 {
            sink.export(span(i));
            assert!(stats.queued() <= 10);
        }
        assert_eq!(stats.queued(), 10);
        assert_eq!(stats.dropped(), 90);
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        let mut w = Worker {
            settings: settings(),
            shared: Arc::new(Shared {
                stats: Arc::new(ExporterStats::new("t")),
                closing: Mutex::new(None),
            }),
            encoder: Ids,
            transport: Script::new(vec![]),
            rng: seed(),
            _items: std::marker::PhantomData,
        };
        let d = Duration::from_millis(1000);
        let samples: Vec<Duration> = (0..1000).map(|_| w.jitter(d)).collect();
        assert!(samples.iter().all(|s| *s >= d / 2 && *s < d.mul_f64(1.5)));
        let mean = samples.iter().sum::<Duration>() / 1000;
        assert!(mean > d.mul_f64(0.9) && mean < d.mul_f64(1.1), "{mean:?}");
    }
}
