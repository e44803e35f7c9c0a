//! The HTTP transport of the OTLP and Zipkin exporters: one blocking POST per attempt (ureq,
//! keep-alive), with the status classified as the OTLP/HTTP specification says. `https://`
//! endpoints go over TLS as [`super::tls`] configures it.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::sender::{Outcome, Transport};
use super::tls::TlsFiles;

/// How long the endpoint's addresses are used without a new lookup (unless a connection to them
/// fails first).
pub const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// The endpoint's last lookup: ureq resolves the host before every request, also one that goes
/// out on a pooled keep-alive connection, and its default resolver runs each lookup on a new
/// thread when a timeout applies (ours always does): a thread per export, ~20 a second under
/// load. The addresses are kept for [`RESOLVE_TTL`] and forgotten when a send fails to connect,
/// so a moved endpoint is found again at the next attempt.
#[derive(Debug)]
struct CachingResolver {
    inner: Box<dyn Resolver>,
    /// (scheme and authority, when looked up, the addresses).
    last: Mutex<Option<(String, Instant, ResolvedSocketAddrs)>>,
}

impl CachingResolver {
    fn new(inner: Box<dyn Resolver>) -> CachingResolver {
        CachingResolver {
            inner,
            last: Mutex::new(None),
        }
    }

    fn last(&self) -> MutexGuard<'_, Option<(String, Instant, ResolvedSocketAddrs)>> {
        // A plain value: a panic while the lock was held leaves nothing half-written.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self) {
        *self.last() = None;
    }
}

/// The agent's handle on the shared cache.
#[derive(Debug, Clone)]
struct SharedResolver(Arc<CachingResolver>);

impl Resolver for SharedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => return self.0.inner.resolve(uri, config, timeout),
        };
        if let Some((k, at, addrs)) = &*self.0.last() {
            if *k == key && at.elapsed() < RESOLVE_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.0.inner.resolve(uri, config, timeout)?;
        *self.0.last() = Some((key, Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// POSTs bodies to one URL.
pub struct HttpTransport {
    agent: ureq::Agent,
    resolver: Arc<CachingResolver>,
    url: String,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    gzip: bool,
    /// Over TLS (`https://`).
    tls: bool,
}

impl HttpTransport {
    /// A transport posting `content_type` bodies to `url` with extra `headers`, gzip-compressed
    /// when `gzip`, each attempt bounded by `timeout`; over TLS with `tls`'s files when `url`
    /// is `https://`.
    pub fn new(
        url: &str,
        content_type: &'static str,
        headers: Vec<(String, String)>,
        gzip: bool,
        timeout: Duration,
        tls: &TlsFiles,
    ) -> Result<HttpTransport, String> {
        check_url(url)?;
        let tls_config = if is_https(url) {
            tls.load()?
        } else {
            Default::default()
        };
        for (k, v) in &headers {
            ureq::http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name {k:?}"))?;
            ureq::http::HeaderValue::from_str(v)
                .map_err(|_| format!("invalid value of header {k:?}"))?;
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("shmtel/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(2)
            // Loopback and in-cluster backends: an HTTP_PROXY meant for other tools must not
            // capture the collector's exports.
            .proxy(None)
            .tls_config(tls_config)
            .build();
        let resolver = Arc::new(CachingResolver::new(Box::new(DefaultResolver::default())));
        let agent = ureq::Agent::with_parts(
            config,
            DefaultConnector::default(),
            SharedResolver(Arc::clone(&resolver)),
        );
        Ok(HttpTransport {
            agent,
            resolver,
            url: url.to_owned(),
            content_type,
            headers,
            gzip,
            tls: is_https(url),
        })
    }
}

/// Whether `url` goes over TLS.
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Check that `url` is an `http://` or `https://` URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url}: not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    url.parse::<ureq::http::Uri>()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(())
}

/// Check an exporter's endpoint and, when it is `https://`, its TLS files (read now, so that a
/// missing or wrong file stops the collector at start-up rather than failing every send).
/// Errors are (key, message), the key under `prefix` (`export.otlp`, ...).
pub(crate) fn check_endpoint(
    prefix: &str,
    url_key: &str,
    url: &str,
    tls: &TlsFiles,
) -> Result<(), (String, String)> {
    check_url(url).map_err(|m| (format!("{prefix}.{url_key}"), m))?;
    if is_https(url) {
        tls.load().map_err(|m| (format!("{prefix}.tls"), m))?;
    }
    Ok(())
}

impl Transport for HttpTransport {
    fn prepare(&mut self, body: Vec<u8>) -> Vec<u8> {
        if !self.gzip {
            return body;
        }
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&body);
        enc.finish().unwrap_or_default()
    }

    fn send(&mut self, body: &[u8]) -> Outcome {
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", self.content_type);
        if self.gzip {
            req = req.header("content-encoding", "gzip");
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        match req.send(body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                // Read (and discard) the body so the connection can be reused.
                let detail = resp
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_vec()
                    .unwrap_or_default();
                classify(status, retry_after, &detail)
            }
            Err(e) => {
                use ureq::Error as E;
                if matches!(e, E::Io(_) | E::HostNotFound | E::ConnectionFailed) {
                    // Look the endpoint up again at the next attempt: it may have moved.
                    self.resolver.forget();
                }
                match e {
                    // rustls reports its failures (a certificate the roots do not trust, a
                    // name it is not for, a failed handshake) as invalid data: sending again
                    // would fail the same way.
                    E::Io(io) if self.tls && io.kind() == std::io::ErrorKind::InvalidData => {
                        Outcome::Fail(format!("TLS: {io}"))
                    }
                    E::Io(_)
                    | E::Timeout(_)
                    | E::HostNotFound
                    | E::ConnectionFailed
                    | E::Protocol(_)
                    | E::BodyStalled => Outcome::Retry {
                        after: None,
                        why: e.to_string(),
                    },
                    other => Outcome::Fail(other.to_string()),
                }
            }
        }
    }
}

/// The OTLP/HTTP rules: 2xx delivered; 429, 502, 503, 504 retryable (after `Retry-After` when
/// given); anything else is a permanent failure.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        429 | 502 | 503 | 504 => Outcome::Retry {
            after: retry_after,
            why: format!("HTTP {status}"),
        },
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            Outcome::Fail(format!("HTTP {status}: {}", text.trim()))
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date, which is the wait until
/// then (a date already past: at once). Neither: None, and the exporter uses its own backoff.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    parse_retry_after_at(v, SystemTime::now())
}

/// [`parse_retry_after`] with the clock given.
fn parse_retry_after_at(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(seconds) = v.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must accept too.
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers every lookup with one address and counts them.
    #[derive(Debug, Default, Clone)]
    struct Counting(Arc<AtomicUsize>);

    impl Resolver for Counting {
        fn resolve(
            &self,
            _uri: &Uri,
            _config: &Config,
            _timeout: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            // Ordering: Relaxed: a counter read after the calls, on the same thread.
            self.0.fetch_add(1, Ordering::Relaxed);
            let mut a = self.empty();
            a.push("127.0.0.1:4318".parse::<SocketAddr>().unwrap());
            Ok(a)
        }
    }

    #[test]
    fn lookups_are_kept_per_endpoint_until_a_send_fails() {
        let count = Counting::default();
        let cache = Arc::new(CachingResolver::new(Box::new(count.clone())));
        let r = SharedResolver(Arc::clone(&cache));
        let config = Config::default();
        let lookup = |url: &str| {
            let uri: Uri = url.parse().unwrap();
            let addrs = r.resolve(&uri, &config, NextTimeout::default()).unwrap();
            assert_eq!(addrs.len(), 1);
        };
        // Ordering: Relaxed (all): see `Counting`.
        let calls = || count.0.load(Ordering::Relaxed);
        lookup("http://collector:4318/v1/traces");
        lookup("http://collector:4318/v1/traces");
        lookup("http://collector:4318/v1/logs");
        assert_eq!(calls(), 1, "one lookup for the same scheme and authority");
        lookup("http://other:4318/v1/traces");
        assert_eq!(calls(), 2, "another host is looked up");
        lookup("http://other:4318/v1/traces");
        assert_eq!(calls(), 2);
        cache.forget();
        lookup("http://other:4318/v1/traces");
        assert_eq!(calls(), 3, "looked up again after a failed send");
        // An entry past its time is looked up again.
        if let Some((_, at, _)) = &mut *cache.last() {
            *at -= RESOLVE_TTL;
        }
        lookup("http://other:4318/v1/traces");
        assert_eq!(calls(), 4);
    }

    #[test]
    fn statuses_are_classified_as_otlp_says() {
        assert_eq!(classify(200, None, b""), Outcome::Done);
        assert_eq!(classify(202, None, b""), Outcome::Done);
        for s in [429, 502, 503, 504] {
            assert!(
                matches!(classify(s, None, b""), Outcome::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 413, 500, 501] {
            assert!(matches!(classify(s, None, b""), Outcome::Fail(_)), "{s}");
        }
        assert_eq!(
            classify(503, Some(Duration::from_secs(2)), b""),
            Outcome::Retry {
                after: Some(Duration::from_secs(2)),
                why: "HTTP 503".into()
            }
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        // 2015-10-21T07:28:00Z, five seconds before the date the backend names.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_475);
        for date in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after_at(date, now),
                Some(Duration::from_secs(5)),
                "{date}"
            );
        }
        // A date already past: retry at once.
        let later = now + Duration::from_secs(60);
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:00 GMT", later),
            Some(Duration::ZERO)
        );
        for bad in ["-1", "1.5", "soon", "", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after_at(bad, now), None, "{bad:?}");
        }
    }

    /// A backend on loopback that reads one request and answers it with `response`.
    fn answering_once(response: String) -> (String, std::thread::JoinHandle<()>) {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader.get_mut().write_all(response.as_bytes()).unwrap();
        });
        (url, handle)
    }

    #[test]
    fn a_backends_retry_after_date_is_the_wait() {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
        let (url, backend) = answering_once(format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: {date}\r\ncontent-length: 0\r\n\r\n"
        ));
        let mut t = HttpTransport::new(
            &url,
            "application/x-protobuf",
            vec![],
            false,
            Duration::from_secs(5),
            &TlsFiles::default(),
        )
        .unwrap();
        let outcome = t.send(b"spans");
        backend.join().unwrap();
        // The date has whole seconds: the wait is what is left of the 3 s, over 1 s.
        match outcome {
            Outcome::Retry {
                after: Some(wait),
                why,
            } => {
                assert!(
                    wait > Duration::from_secs(1) && wait <= Duration::from_secs(3),
                    "{wait:?}"
                );
                assert_eq!(why, "HTTP 503");
            }
            other => panic!("expected a retry after the date, got {other:?}"),
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:4318/v1/traces").is_ok());
        assert!(check_url("http://collector/v1/traces").is_ok());
        assert!(check_url("https://collector/v1/traces").is_ok());
        assert!(check_url("https:///v1/traces").is_err());
        assert!(check_url("ftp://collector/v1/traces").is_err());
        assert!(check_url("collector:4318").is_err());
        assert!(check_url("http:///v1/traces").is_err());
    }

    #[test]
    fn gzip_round_trips() {
        let mut t = HttpTransport::new(
            "http://127.0.0.1:1/x",
            "application/json",
            vec![],
            true,
            Duration::from_secs(1),
            &TlsFiles::default(),
        )
        .unwrap();
        let body = t.prepare(b"hello hello hello".to_vec());
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
            .unwrap();
        assert_eq!(out, "hello hello hello");
    }
}
