//! An in-process HTTP/1.1 proxy that sits between isobuild and a registry: it records every
//! request (to count blob GETs, or to see which headers went where) and, on command, misbehaves
//! the way real networks and hostile registries do: a status, a redirect, a canned or endless
//! body, a corrupted, cut, padded, slowed or stalled response, a dropped connection.
//!
//! Faults are scripted per request: [`Proxy::fault`] adds a rule "the next `times` requests
//! whose path contains this text get this fault", and rules are tried in the order they were
//! added, so two rules on one path script a sequence (first a `500`, then a cut body, then
//! plain forwarding).
//!
//! One request per connection (`Connection: close` both ways) keeps it small: std threads,
//! no parsing beyond the request line, headers and `Content-Length`. A response held or
//! stalled by a fault ends when the client hangs up, when [`Proxy::release`] is called, or
//! when the proxy is dropped, so no thread outlives a test for long.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to do instead of plain forwarding.
#[derive(Clone, Debug)]
pub(crate) enum Fault {
    /// Answer this status without asking upstream.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Answer `307` to `location`.
    Redirect(String),
    /// Forward, but flip one byte in the middle of the body.
    Corrupt,
    /// Forward the headers and the first `n` body bytes, then close the connection.
    Truncate(usize),
    /// Close the connection as soon as the request is read: not even a status line.
    Reset,
    /// Read the request, then send nothing at all until the client gives up.
    Stall,
    /// Forward the headers and the first `n` body bytes, then send nothing more until
    /// [`Proxy::release`] (then the rest) or until the client gives up.
    Hold(usize),
    /// Forward everything, `chunk` bytes at a time with `pause` in between.
    Throttle { chunk: usize, pause: Duration },
    /// Forward the body followed by `extra` more bytes, with a `Content-Length` that counts
    /// them (`declare`) or without any `Content-Length` (the body ends when the connection
    /// closes).
    Append { extra: Vec<u8>, declare: bool },
    /// Answer `200` with `headers` and a body of `len` spaces, streamed without asking
    /// upstream, with or without a `Content-Length` (`declare`). The bytes the client
    /// actually took are in [`Seen::sent`].
    Flood {
        headers: Vec<(String, String)>,
        len: u64,
        declare: bool,
    },
}

/// A request the proxy saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    /// When the request arrived.
    pub(crate) at: Instant,
    /// Response body bytes written to the client so far.
    sent: Arc<AtomicU64>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Response body bytes the proxy managed to hand to the client.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

struct Rule {
    path_contains: String,
    fault: Fault,
    /// How many more requests it applies to.
    remaining: usize,
}

struct Shared {
    upstream: SocketAddr,
    /// When set, `/v2/…` wants `Authorization: Bearer <token>` and `/token` hands it out, as
    /// a registry with a token server does.
    bearer: Mutex<Option<Bearer>>,
    addr: SocketAddr,
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
    /// Responses that reached the point where a [`Fault::Hold`] waits.
    held: AtomicUsize,
    released: AtomicBool,
    stop: AtomicBool,
}

struct Bearer {
    token: String,
    /// The `Authorization` value `/token` wants, if any (else it hands the token to anyone).
    login: Option<String>,
    /// The OAuth2 refresh token `POST /token` wants (`grant_type=refresh_token`), if any.
    refresh: Option<String>,
}

/// A running proxy; stopped when dropped.
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forward to `upstream` (a registry's address).
    pub(crate) fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            bearer: Mutex::default(),
            addr,
            seen: Mutex::default(),
            rules: Mutex::default(),
            held: AtomicUsize::new(0),
            released: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        // A client hanging up mid-way is not the proxy's problem.
                        let _ = handle(stream, &shared);
                    });
                }
            })
        };
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, to use as a registry host.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Apply `fault` to the next `times` requests whose path contains `path_contains`.
    pub(crate) fn fault(&self, path_contains: &str, fault: Fault, times: usize) {
        self.shared.rules.lock().unwrap().push(Rule {
            path_contains: path_contains.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Forget every fault rule, used or not.
    pub(crate) fn clear_faults(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Ask for a bearer token on every `/v2/` request, handing out `token` at `/token`
    /// (to anyone: the registry behind stays anonymous).
    pub(crate) fn require_bearer(&self, token: &str) {
        *self.shared.bearer.lock().unwrap() = Some(Bearer {
            token: token.to_owned(),
            login: None,
            refresh: None,
        });
    }

    /// Like [`Proxy::require_bearer`], but the token is handed out only for OAuth2's
    /// refresh-token grant with `refresh` (an identity token), in a `POST /token` form, as
    /// distribution's token spec describes.
    pub(crate) fn require_bearer_with_refresh_token(&self, token: &str, refresh: &str) {
        *self.shared.bearer.lock().unwrap() = Some(Bearer {
            token: token.to_owned(),
            login: None,
            refresh: Some(refresh.to_owned()),
        });
    }

    /// Like [`Proxy::require_bearer`], but `/token` hands the token out only to a client
    /// that logs in with basic auth as `username:password`, as Docker Hub's token server does
    /// for private repositories.
    pub(crate) fn require_bearer_with_login(&self, token: &str, username: &str, password: &str) {
        use base64::Engine as _;
        let login =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        *self.shared.bearer.lock().unwrap() = Some(Bearer {
            token: token.to_owned(),
            login: Some(format!("Basic {login}")),
            refresh: None,
        });
    }

    /// Every request so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests with `method` whose path contains `path_contains`.
    pub(crate) fn count(&self, method: &str, path_contains: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.method == method && seen.path.contains(path_contains))
            .count()
    }

    /// Requests with `method` whose path contains `path_contains`, in order.
    pub(crate) fn requests(&self, method: &str, path_contains: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|seen| seen.method == method && seen.path.contains(path_contains))
            .collect()
    }

    /// Forget the requests seen so far.
    pub(crate) fn clear(&self) {
        self.shared.seen.lock().unwrap().clear();
    }

    /// How many responses reached the point where a [`Fault::Hold`] waits.
    pub(crate) fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Wait until `n` responses are held; panics after `timeout`.
    #[track_caller]
    pub(crate) fn wait_held(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.held() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} responses held after {timeout:?}",
                self.held()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Let held responses go on.
    pub(crate) fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let (request_line, headers) = read_head(&mut reader)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let sent = Arc::new(AtomicU64::new(0));
    shared.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        at: Instant::now(),
        sent: sent.clone(),
    });
    let length = content_length(&headers).unwrap_or(0);
    let mut body = vec![0; usize::try_from(length).unwrap()];
    reader.read_exact(&mut body)?;

    if let Some(done) = check_bearer(&mut client, shared, (&method, &path), &headers, &body) {
        return done;
    }

    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|rule| rule.remaining > 0 && path.contains(&rule.path_contains))
            .map(|rule| {
                rule.remaining -= 1;
                rule.fault.clone()
            })
    };
    match &fault {
        Some(Fault::Status {
            status,
            headers,
            body,
        }) => return respond(&mut client, *status, headers, body),
        Some(Fault::Redirect(location)) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            client.write_all(head.as_bytes())?;
            return client.flush();
        }
        Some(Fault::Reset) => {
            // Unread data or SO_LINGER would make it a RST; a plain close is what a crashed
            // server or a cut cable looks like to the client either way: no response.
            return client.shutdown(Shutdown::Both);
        }
        Some(Fault::Stall) => {
            wait_for_hangup(&mut client, shared, || false);
            return Ok(());
        }
        Some(Fault::Flood {
            headers,
            len,
            declare,
        }) => return flood(&mut client, headers, *len, *declare, &sent),
        _ => {}
    }

    let mut upstream = TcpStream::connect(shared.upstream)?;
    let mut head = format!("{request_line}\r\n");
    for (key, value) in &headers {
        if !key.eq_ignore_ascii_case("connection") {
            let _ = write!(head, "{key}: {value}\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;

    let mut upstream_reader = BufReader::new(upstream);
    let (status_line, response_headers) = read_head(&mut upstream_reader)?;
    let body_length = content_length(&response_headers);
    let mut head = format!("{status_line}\r\n");
    for (key, value) in &response_headers {
        let skip = key.eq_ignore_ascii_case("connection")
            || (key.eq_ignore_ascii_case("content-length")
                && matches!(fault, Some(Fault::Append { .. })));
        if !skip {
            let _ = write!(head, "{key}: {value}\r\n");
        }
    }
    if let Some(Fault::Append {
        extra,
        declare: true,
    }) = &fault
    {
        let _ = write!(
            head,
            "Content-Length: {}\r\n",
            body_length.unwrap_or(0) + extra.len() as u64
        );
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes())?;

    let mut out = Counting {
        inner: client.try_clone()?,
        sent: sent.clone(),
    };
    match fault {
        Some(Fault::Truncate(n)) => {
            io::copy(&mut (&mut upstream_reader).take(n as u64), &mut out)?;
            out.flush()?;
            // A reset rather than a clean end, as a dropped connection looks.
            client.shutdown(Shutdown::Both)?;
        }
        Some(Fault::Corrupt) if body_length.unwrap_or(0) > 0 => {
            let mut body = Vec::new();
            upstream_reader.read_to_end(&mut body)?;
            if !body.is_empty() {
                let middle = body.len() / 2;
                body[middle] ^= 0xff;
            }
            out.write_all(&body)?;
        }
        Some(Fault::Hold(n)) => {
            io::copy(&mut (&mut upstream_reader).take(n as u64), &mut out)?;
            out.flush()?;
            shared.held.fetch_add(1, Ordering::SeqCst);
            if wait_for_hangup(&mut client, shared, || {
                shared.released.load(Ordering::SeqCst)
            }) {
                io::copy(&mut upstream_reader, &mut out)?;
            }
        }
        Some(Fault::Throttle { chunk, pause }) => {
            let mut buffer = vec![0; chunk.max(1)];
            loop {
                let n = upstream_reader.read(&mut buffer)?;
                if n == 0 || shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                out.write_all(&buffer[..n])?;
                out.flush()?;
                std::thread::sleep(pause);
            }
        }
        Some(Fault::Append { extra, .. }) => {
            io::copy(&mut upstream_reader, &mut out)?;
            out.write_all(&extra)?;
        }
        _ => {
            io::copy(&mut upstream_reader, &mut out)?;
        }
    }
    client.flush()
}

/// Play the token server and the registry's side of the bearer handshake, when asked to.
/// `Some` when the request was answered here.
fn check_bearer(
    client: &mut TcpStream,
    shared: &Shared,
    (method, path): (&str, &str),
    headers: &[(String, String)],
    body: &[u8],
) -> Option<io::Result<()>> {
    let bearer = shared.bearer.lock().unwrap();
    let bearer = bearer.as_ref()?;
    let authorization = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.as_str());
    if path.starts_with("/token") {
        if let Some(refresh) = &bearer.refresh {
            let form = String::from_utf8_lossy(body);
            let fields: Vec<&str> = form.split('&').collect();
            let granted = method == "POST"
                && fields.contains(&"grant_type=refresh_token")
                && fields.contains(&format!("refresh_token={refresh}").as_str())
                && fields
                    .iter()
                    .any(|field| field.starts_with("scope=repository"));
            return Some(if granted {
                respond(
                    client,
                    200,
                    &[],
                    format!(r#"{{"access_token":"{}"}}"#, bearer.token).as_bytes(),
                )
            } else {
                respond(client, 401, &[], br#"{"error":"invalid_grant"}"#)
            });
        }
        if let Some(login) = &bearer.login
            && authorization != Some(login.as_str())
        {
            return Some(respond(
                client,
                401,
                &[],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad login"}]}"#,
            ));
        }
        return Some(respond(
            client,
            200,
            &[],
            format!(r#"{{"token":"{}"}}"#, bearer.token).as_bytes(),
        ));
    }
    let authorized = authorization == Some(format!("Bearer {}", bearer.token).as_str());
    if path.starts_with("/v2/") && !authorized {
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="isobuild-test""#,
            shared.addr
        );
        return Some(respond(
            client,
            401,
            &[("WWW-Authenticate".to_owned(), challenge)],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#,
        ));
    }
    None
}

/// Send nothing and wait until the client hangs up (`true` is returned instead when
/// `go_on` says so first); the proxy stopping counts as a hang-up.
fn wait_for_hangup(client: &mut TcpStream, shared: &Shared, go_on: impl Fn() -> bool) -> bool {
    let _ = client.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buffer = [0; 512];
    loop {
        if go_on() {
            let _ = client.set_read_timeout(None);
            return true;
        }
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        match client.read(&mut buffer) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
}

/// `200` and `len` spaces (valid JSON whitespace, so only the size can make it fail).
fn flood(
    client: &mut TcpStream,
    headers: &[(String, String)],
    len: u64,
    declare: bool,
    sent: &AtomicU64,
) -> io::Result<()> {
    let mut head = String::from("HTTP/1.1 200 OK\r\nConnection: close\r\n");
    if declare {
        let _ = write!(head, "Content-Length: {len}\r\n");
    }
    for (key, value) in headers {
        let _ = write!(head, "{key}: {value}\r\n");
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    let chunk = vec![b' '; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
        client.write_all(&chunk[..n])?;
        sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    client.flush()
}

/// Counts the bytes written through it into [`Seen::sent`].
struct Counting {
    inner: TcpStream,
    sent: Arc<AtomicU64>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sent.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Answer without asking upstream.
fn respond(
    client: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (key, value) in headers {
        let _ = write!(head, "{key}: {value}\r\n");
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    client.write_all(body)?;
    client.flush()
}

/// The first line and the headers, up to the blank line.
fn read_head(reader: &mut impl BufRead) -> io::Result<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let first = line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((key, value)) = trimmed.split_once(':') {
            headers.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok((first, headers))
}

fn content_length(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
}
