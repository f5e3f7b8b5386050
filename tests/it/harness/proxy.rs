//! An in-process HTTP/1.1 proxy that sits between isobuild and a registry: it records every
//! request (to count blob GETs, or to see which headers went where) and, on command, answers
//! with a status, a redirect or a canned body, or corrupts or cuts a response short.
//!
//! One request per connection (`Connection: close` both ways) keeps it small: std threads,
//! no parsing beyond the request line, headers and `Content-Length`.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
}

/// A request the proxy saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
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
    bearer: Mutex<Option<String>>,
    addr: SocketAddr,
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
    stop: AtomicBool,
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

    /// Ask for a bearer token on every `/v2/` request, handing out `token` at `/token`
    /// (to anyone: the registry behind stays anonymous).
    pub(crate) fn require_bearer(&self, token: &str) {
        *self.shared.bearer.lock().unwrap() = Some(token.to_owned());
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

    /// Forget the requests seen so far.
    pub(crate) fn clear(&self) {
        self.shared.seen.lock().unwrap().clear();
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
    shared.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
    });
    let length = content_length(&headers);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;

    let bearer = shared.bearer.lock().unwrap().clone();
    if let Some(token) = bearer {
        if path.starts_with("/token") {
            return respond(
                &mut client,
                200,
                &[],
                format!(r#"{{"token":"{token}"}}"#).as_bytes(),
            );
        }
        let authorized = headers.iter().any(|(key, value)| {
            key.eq_ignore_ascii_case("authorization") && *value == format!("Bearer {token}")
        });
        if path.starts_with("/v2/") && !authorized {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="isobuild-test""#,
                shared.addr
            );
            return respond(
                &mut client,
                401,
                &[("WWW-Authenticate".to_owned(), challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#,
            );
        }
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
    match fault {
        Some(Fault::Status {
            status,
            headers,
            body,
        }) => return respond(&mut client, status, &headers, &body),
        Some(Fault::Redirect(location)) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            client.write_all(head.as_bytes())?;
            return client.flush();
        }
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
    let mut head = format!("{status_line}\r\n");
    for (key, value) in &response_headers {
        if !key.eq_ignore_ascii_case("connection") {
            let _ = write!(head, "{key}: {value}\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes())?;

    let body_length = content_length(&response_headers);
    match fault {
        Some(Fault::Truncate(n)) => {
            let mut limited = upstream_reader.take(n as u64);
            io::copy(&mut limited, &mut client)?;
            client.flush()?;
            // A reset rather than a clean end, as a dropped connection looks.
            client.shutdown(Shutdown::Both)?;
        }
        Some(Fault::Corrupt) if body_length > 0 => {
            let mut body = Vec::new();
            upstream_reader.read_to_end(&mut body)?;
            if !body.is_empty() {
                let middle = body.len() / 2;
                body[middle] ^= 0xff;
            }
            client.write_all(&body)?;
        }
        _ => {
            io::copy(&mut upstream_reader, &mut client)?;
        }
    }
    client.flush()
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

fn content_length(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}
