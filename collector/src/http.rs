//! The collector's HTTP server: `GET /metrics` and `GET /healthz` over HTTP/1.1 (hyper 1 on
//! tokio).
//!
//! - `/metrics`: a fresh snapshot from the [`MetricsSource`], rendered as OpenMetrics 1.0.0
//!   when the `Accept` header asks for `application/openmetrics-text`, else as Prometheus text
//!   0.0.4; gzip-compressed when `Accept-Encoding` allows gzip.
//! - `/healthz`: `200` with the source's health JSON.
//! - `HEAD` is answered like `GET` without a body; other methods get `405`, other paths `404`.
//!
//! Taking the snapshot, rendering and compressing run on tokio's blocking pool, so a large
//! exposition never stalls the reactor. Connections are bounded ([`MAX_CONNECTIONS`]), a client
//! must send its request head within [`HEADER_READ_TIMEOUT`], and shutdown is graceful: the
//! listener closes, idle keep-alive connections are closed, requests in flight finish (for at
//! most [`SHUTDOWN_GRACE`]).

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exposition::{is_zero_quality, ExpositionFormat, RenderStats};
use crate::model::FamilySnapshot;

/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send a request head before its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight before dropping their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where the server gets what it serves. Implemented by the aggregator.
///
/// Both methods are called on tokio's blocking pool, one call per request: they may take a
/// lock or do some work, and concurrent scrapes call them concurrently.
pub trait MetricsSource: Send + Sync + 'static {
    /// A snapshot of every family, in exposition order.
    fn families(&self) -> Vec<FamilySnapshot>;

    /// The body of `/healthz`, e.g. `{"status":"ok", ...}`.
    fn health(&self) -> serde_json::Value;

    /// Told what each `/metrics` render skipped, so it can be logged or exported as a
    /// self-metric. The default does nothing.
    fn render_stats(&self, stats: &RenderStats) {
        let _ = stats;
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes, then shuts down
/// gracefully (see the module docs) and returns.
///
/// Accept errors (a client that went away, a file-descriptor limit) are logged and retried, not
/// returned: a scrape endpoint should outlive a bad moment. The result is `Ok` once shut down.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn MetricsSource>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = Arc::new(State {
        source,
        size_hint: AtomicUsize::new(0),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set stays as small as the open connections.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    if !is_connection_error(&error) {
                        // Typically EMFILE/ENFILE: back off instead of spinning on the error.
                        tracing::warn!(%error, "accepting an HTTP connection failed; retrying in 1 s");
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |request| respond(request, state.clone()));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }

    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open after the shutdown grace period; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

struct State {
    source: Arc<dyn MetricsSource>,
    /// Size of the last exposition, so the next one starts with a `String` big enough.
    size_hint: AtomicUsize,
}

type HttpResponse = Response<Full<Bytes>>;

async fn respond(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<HttpResponse, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let response = match request.uri().path() {
        "/metrics" => metrics(&request, state).await,
        "/healthz" => health(state).await,
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found; try /metrics or /healthz\n",
        ),
    };
    Ok(response)
}

async fn metrics(request: &Request<Incoming>, state: Arc<State>) -> HttpResponse {
    let headers = request.headers();
    let format =
        ExpositionFormat::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);

    let rendered = tokio::task::spawn_blocking(move || {
        let families = state.source.families();
        // Relaxed: only a capacity hint; any recent value will do.
        // Ordering: Relaxed: a capacity hint; any recent value will do.
        let mut text = String::with_capacity(state.size_hint.load(Ordering::Relaxed));
        let stats = format.render(&families, &mut text);
        drop(families);
        state
            .size_hint
            .store(text.len() + text.len() / 8, Ordering::Relaxed);
        state.source.render_stats(&stats);
        if gzip {
            gzip_bytes(text.as_bytes()).map(Bytes::from)
        } else {
            Ok(Bytes::from(text))
        }
    })
    .await;

    let body = match rendered {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            tracing::error!(%error, "compressing /metrics failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "compression failed\n");
        }
        Err(error) => {
            tracing::error!(%error, "rendering /metrics panicked");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n");
        }
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

async fn health(state: Arc<State>) -> HttpResponse {
    let rendered =
        tokio::task::spawn_blocking(move || serde_json::to_vec(&state.source.health())).await;
    match rendered {
        Ok(Ok(body)) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "serialising /healthz failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "health serialisation failed\n",
            )
        }
        Err(error) => {
            tracing::error!(%error, "the health source panicked");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "health check failed\n")
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether an `Accept-Encoding` header allows gzip (`gzip` or `x-gzip`, not with `q=0`).
fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|entry| {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
            && !parts.any(is_zero_quality)
    })
}

fn gzip_bytes(data: &[u8]) -> io::Result<Vec<u8>> {
    // Expositions are repetitive: fast compression already shrinks them several times over.
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write as _};
    use std::net::{SocketAddr, TcpStream};

    use super::*;
    use crate::exposition::{render_openmetrics, render_prometheus};
    use crate::model::{MetricKind, SeriesSnapshot, SeriesValue};

    struct FixedSource;

    impl MetricsSource for FixedSource {
        fn families(&self) -> Vec<FamilySnapshot> {
            vec![
                FamilySnapshot {
                    name: "requests".into(),
                    help: "Requests served.".into(),
                    unit: String::new(),
                    kind: MetricKind::Counter,
                    series: vec![SeriesSnapshot {
                        labels: vec![("route".into(), "/users".into())],
                        value: SeriesValue::Counter {
                            total: 3.0,
                            exemplar: None,
                        },
                        created_unix_secs: None,
                    }],
                },
                FamilySnapshot {
                    name: "temperature_celsius".into(),
                    help: "Room temperature.".into(),
                    unit: "celsius".into(),
                    kind: MetricKind::Gauge,
                    series: vec![SeriesSnapshot {
                        labels: vec![],
                        value: SeriesValue::Gauge(21.5),
                        created_unix_secs: None,
                    }],
                },
            ]
        }

        fn health(&self) -> serde_json::Value {
            serde_json::json!({"status": "ok", "regions": 2})
        }
    }

    struct Server {
        runtime: tokio::runtime::Runtime,
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<io::Result<()>>>,
    }

    impl Server {
        fn start() -> Server {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = runtime.spawn(serve(listener, Arc::new(FixedSource), async move {
                let _ = stopped.await;
            }));
            Server {
                runtime,
                addr,
                stop: Some(stop),
                task: Some(task),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }

        /// Stops the server and waits for `serve` to return; panics if it takes over 10 s.
        fn stop(&mut self) -> io::Result<()> {
            let _ = self.stop.take().unwrap().send(());
            let task = self.task.take().unwrap();
            self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("serve did not return within 10 s of shutdown")
                    .expect("serve panicked")
            })
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if self.stop.is_some() {
                let _ = self.stop();
            }
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn header<'a>(response: &'a hyper::http::Response<ureq::Body>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Sends a raw request on a fresh connection and returns the whole response text.
    fn raw(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn metrics_defaults_to_prometheus_text() {
        let server = Server::start();
        let mut response = agent().get(server.url("/metrics")).call().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "content-type"),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = response.body_mut().read_to_string().unwrap();
        let mut expected = String::new();
        render_prometheus(&FixedSource.families(), &mut expected);
        assert_eq!(body, expected);
        assert!(body.contains("requests_total{route=\"/users\"} 3.0\n"));
    }

    #[test]
    fn metrics_negotiates_openmetrics() {
        let server = Server::start();
        // What Prometheus 2.x sends.
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let mut response = agent()
            .get(server.url("/metrics"))
            .header("Accept", accept)
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "content-type"),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let body = response.body_mut().read_to_string().unwrap();
        let mut expected = String::new();
        render_openmetrics(&FixedSource.families(), &mut expected);
        assert_eq!(body, expected);
        assert!(body.contains("# UNIT temperature_celsius celsius\n"));
        assert!(body.ends_with("# EOF\n"));
    }

    #[test]
    fn metrics_gzip_when_accepted() {
        let server = Server::start();
        let mut response = agent()
            .get(server.url("/metrics"))
            .header("Accept-Encoding", "deflate, gzip;q=0.8")
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-encoding"), "gzip");
        let compressed = response.body_mut().read_to_vec().unwrap();
        let mut body = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut body)
            .unwrap();
        let mut expected = String::new();
        render_prometheus(&FixedSource.families(), &mut expected);
        assert_eq!(body, expected);

        let response = agent()
            .get(server.url("/metrics"))
            .header("Accept-Encoding", "gzip;q=0")
            .call()
            .unwrap();
        assert_eq!(header(&response, "content-encoding"), "");
    }

    #[test]
    fn healthz_is_json() {
        let server = Server::start();
        let mut response = agent().get(server.url("/healthz")).call().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "application/json");
        let body = response.body_mut().read_to_string().unwrap();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value, FixedSource.health());
    }

    #[test]
    fn unknown_path_is_404_and_other_methods_405() {
        let server = Server::start();
        let response = agent().get(server.url("/nope")).call().unwrap();
        assert_eq!(response.status(), 404);
        let response = agent().get(server.url("/metrics/extra")).call().unwrap();
        assert_eq!(response.status(), 404);

        let response = agent().post(server.url("/metrics")).send("x").unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(header(&response, "allow"), "GET, HEAD");
        let response = agent().delete(server.url("/healthz")).call().unwrap();
        assert_eq!(response.status(), 405);
    }

    #[test]
    fn head_has_headers_and_no_body() {
        let server = Server::start();
        let mut get = agent().get(server.url("/metrics")).call().unwrap();
        let get_len = get.body_mut().read_to_string().unwrap().len();

        let response = raw(
            server.addr,
            "HEAD /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {get_len}\r\n")),
            "{head}"
        );
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        assert_eq!(body, "");
    }

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let server = Server::start();
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
    }

    #[test]
    fn shutdown_is_graceful_with_idle_connections_open() {
        let mut server = Server::start();
        // An idle keep-alive connection after one request...
        let mut idle = TcpStream::connect(server.addr).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = idle.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        // ...and one that never sent anything.
        let _silent = TcpStream::connect(server.addr).unwrap();

        let started = std::time::Instant::now();
        server.stop().unwrap();
        assert!(
            started.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(2),
            "shutdown took {:?}",
            started.elapsed()
        );
        // The idle connection was closed by the server.
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest);
        // And nothing listens any more.
        assert!(TcpStream::connect(server.addr).is_err());
    }

    #[test]
    fn gzip_and_accept_parsing() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, GZIP;q=0.5"));
        assert!(accepts_gzip("x-gzip"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("gzip; q=0.000"));
        assert!(!accepts_gzip("identity, deflate"));
        assert!(!accepts_gzip("gzipx"));

        use ExpositionFormat::*;
        assert_eq!(ExpositionFormat::from_accept(None), PrometheusText);
        assert_eq!(ExpositionFormat::from_accept(Some("*/*")), PrometheusText);
        assert_eq!(
            ExpositionFormat::from_accept(Some("text/plain;version=0.0.4")),
            PrometheusText
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some("application/openmetrics-text")),
            OpenMetrics
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some(
                "text/plain;q=0.5, Application/OpenMetrics-Text; version=1.0.0"
            )),
            OpenMetrics
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some("application/openmetrics-text;q=0")),
            PrometheusText
        );
    }
}
