//! A loopback HTTP receiver standing in for an OTLP or Zipkin backend: it answers every POST
//! with the status the test sets, records the (decompressed) bodies it accepted with 2xx, and
//! can go down (its listener closed: connections refused) and come back on the same port. With
//! [`Receiver::start_tls`] it speaks HTTPS (rustls), and may require a client certificate.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request path.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// The body, gunzipped when `content-encoding: gzip`.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    status: AtomicU16,
    /// Requests answered (any status).
    attempts: AtomicU64,
    accepted: Mutex<Vec<Request>>,
    /// TLS handshakes that failed.
    handshakes_failed: AtomicU64,
}

/// The receiver; stopped on drop.
pub struct Receiver {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Receiver {
    /// Listen on an ephemeral port, answering `status`.
    pub fn start(status: u16) -> Receiver {
        Receiver::listen(status, None)
    }

    /// [`start`](Self::start) over TLS with `config` (its certificate, and whether it asks for
    /// the client's). A handshake that fails is logged and the connection dropped, unanswered.
    pub fn start_tls(status: u16, config: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::listen(status, Some(config))
    }

    /// Handshakes that failed so far.
    pub fn failed_handshakes(&self) -> u64 {
        // Ordering: Relaxed: a statistic.
        self.state.handshakes_failed.load(Ordering::Relaxed)
    }

    fn listen(status: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State::default());
        // Ordering: Relaxed: the receiver thread reads it per request; no data rides on it.
        state.status.store(status, Ordering::Relaxed);
        let mut r = Receiver {
            port,
            state,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            tls,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let (state, stop, tls) = (self.state.clone(), self.stop.clone(), self.tls.clone());
        self.thread = Some(std::thread::spawn(move || {
            // Ordering: Relaxed: a stop flag; join synchronises.
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let served = match &tls {
                            None => prepare(&s).and_then(|()| handle(&mut &s, &state)),
                            Some(config) => serve_tls(s, config, &state),
                        };
                        if let Err(e) = served {
                            eprintln!("receiver: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => eprintln!("receiver: accept: {e}"),
                }
            }
        }));
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` over TLS (its certificate names
    /// the address).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Answer `status` from now on.
    pub fn set_status(&self, status: u16) {
        // Ordering: Relaxed: see `start`.
        self.state.status.store(status, Ordering::Relaxed);
    }

    /// Requests answered so far (any status).
    pub fn attempts(&self) -> u64 {
        // Ordering: Relaxed: a statistic.
        self.state.attempts.load(Ordering::Relaxed)
    }

    /// The accepted requests so far.
    pub fn accepted(&self) -> Vec<Request> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// Close the listener: connections are refused until [`Receiver::up`].
    pub fn down(&mut self) {
        // Ordering: Relaxed: see `serve`.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("receiver thread");
        }
    }

    /// Listen again on the same port.
    pub fn up(&mut self) {
        let mut last = None;
        for _ in 0..100 {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => {
                    self.stop = Arc::new(AtomicBool::new(false));
                    self.serve(l);
                    return;
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cannot listen on port {} again: {last:?}", self.port);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// A blocking accepted socket with a read timeout.
fn prepare(stream: &TcpStream) -> Result<(), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())
}

/// The TLS handshake, then the request as [`handle`] answers it.
fn serve_tls(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    state: &State,
) -> Result<(), String> {
    prepare(&stream)?;
    let conn = rustls::ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            // Ordering: Relaxed: a statistic.
            state.handshakes_failed.fetch_add(1, Ordering::Relaxed);
            return Err(format!("TLS handshake: {e}"));
        }
    }
    handle(&mut tls, state)?;
    tls.conn.send_close_notify();
    tls.flush().map_err(|e| e.to_string())
}

fn handle<S: Read + Write>(stream: &mut S, state: &State) -> Result<(), String> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    // Ordering: Relaxed: see `Receiver::start`.
    let status = state.status.load(Ordering::Relaxed);
    if (200..300).contains(&status) {
        if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("gunzip: {e}"))?;
            body = out;
        }
        state.accepted.lock().unwrap().push(Request {
            path,
            headers,
            body,
        });
    }
    // Ordering: Relaxed: a statistic.
    state.attempts.fetch_add(1, Ordering::Relaxed);
    let s = reader.get_mut();
    write!(
        s,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())
}
