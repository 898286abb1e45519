//! A fault-injecting HTTP/1.1 front for a real registry: it proxies every request to the
//! registry unchanged (one request per connection, `Connection: close`), except the ones
//! whose path matches a rule, which get the faults a real registry cannot produce
//! (crafted replies, endless or trickling bodies, corrupted bytes, cut connections,
//! redirect loops). Every request is logged (method, path, `Authorization`), so tests
//! can count blob fetches and see where credentials went.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Longest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What to do with a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// answer with `status`, these headers and `body` (a `Content-Length` is added)
    Reply {
        /// HTTP status
        status: u16,
        /// extra headers
        headers: Vec<(String, String)>,
        /// the body
        body: Vec<u8>,
    },
    /// a 200 without a length whose body never ends (zeros, as fast as they are taken)
    Endless,
    /// the registry's head, then its body one byte every `interval`
    Trickle(Duration),
    /// the registry's answer with the byte at the middle of the body flipped
    Corrupt,
    /// the registry's head and the first `n` body bytes, then the connection is closed
    CutAfter(u64),
    /// a `302` to this location
    Redirect(String),
    /// the request is read and never answered (the connection stays open)
    Stall,
    /// the registry's answer, its body at most this many bytes per second (a slow link)
    Slow(u64),
}

/// One request the front received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// the method
    pub method: String,
    /// the path and query
    pub path: String,
    /// the `Authorization` header, if any
    pub authorization: Option<String>,
    /// bytes the front wrote back (head and body) before the answer ended or the
    /// client hung up
    pub sent: u64,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<(String, Fault)>,
    seen: Vec<Seen>,
}

/// A running front; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultFront {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultFront {
    /// A front on 127.0.0.1 proxying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_on(IpAddr::from([127, 0, 0, 1]), Some(upstream)).await
    }

    /// A front on `ip` (any free port); without `upstream`, requests that match no rule
    /// get a 404.
    pub async fn start_on(ip: IpAddr, upstream: Option<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut client = Counted {
                        stream,
                        sent: 0,
                        index: None,
                    };
                    if let Err(e) = serve(&mut client, upstream, &state).await {
                        tracing::debug!(error = %e, "fault front connection ended");
                    }
                    if let Some(i) = client.index {
                        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(seen) = state.seen.get_mut(i) {
                            seen.sent = client.sent;
                        }
                    }
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `ip:port` of the front (the registry part of image references through it).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The front's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests whose path contains `pattern` get `fault` (the first matching rule wins).
    pub fn set(&self, pattern: &str, fault: Fault) {
        self.lock().rules.push((pattern.to_string(), fault));
    }

    /// Removes every rule: everything is proxied again.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Bytes sent for the requests whose path contains `pattern`.
    pub fn sent(&self, pattern: &str) -> u64 {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.path.contains(pattern))
            .map(|s| s.sent)
            .sum()
    }

    /// How many `GET`s had a path containing `pattern`.
    pub fn gets(&self, pattern: &str) -> usize {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.method == "GET" && s.path.contains(pattern))
            .count()
    }

    /// Forgets the requests seen so far.
    pub fn reset_seen(&self) {
        self.lock().seen.clear();
    }
}

struct Head {
    bytes: Vec<u8>,
    /// bytes read past the head
    rest: Vec<u8>,
}

impl Head {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.text().lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Head>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some(Head { bytes: buf, rest }));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reply(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Fault\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The client side of a connection, counting what is sent to it.
struct Counted {
    stream: TcpStream,
    sent: u64,
    /// the request's entry in the log
    index: Option<usize>,
}

impl Counted {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // in pieces, so that what was sent before the client hung up is counted
        for piece in bytes.chunks(16 * 1024) {
            self.stream.write_all(piece).await?;
            self.sent += piece.len() as u64;
        }
        Ok(())
    }
}

async fn serve(
    client: &mut Counted,
    upstream: Option<SocketAddr>,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    // A TLS ClientHello (an insecure registry's HTTPS probe): close at once, so the
    // client falls back to plain HTTP without waiting for its probe timeout.
    let mut first = [0u8; 1];
    if client.stream.peek(&mut first).await? == 0 || first[0] == 0x16 {
        return Ok(());
    }
    let Some(request) = read_head(&mut client.stream).await? else {
        return Ok(());
    };
    let text = request.text();
    let mut line = text.lines().next().unwrap_or_default().split(' ');
    let method = line.next().unwrap_or_default().to_string();
    let path = line.next().unwrap_or_default().to_string();
    let fault = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        client.index = Some(state.seen.len());
        state.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            authorization: request.header("authorization"),
            sent: 0,
        });
        state
            .rules
            .iter()
            .find(|(pattern, _)| path.contains(pattern.as_str()))
            .map(|(_, f)| f.clone())
    };
    match &fault {
        Some(Fault::Reply {
            status,
            headers,
            body,
        }) => return client.write_all(&reply(*status, headers, body)).await,
        Some(Fault::Redirect(location)) => {
            let headers = [("Location".to_string(), location.clone())];
            return client.write_all(&reply(302, &headers, b"")).await;
        }
        Some(Fault::Stall) => return std::future::pending().await,
        Some(Fault::Endless) => {
            client
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n\r\n")
                .await?;
            let zeros = vec![0u8; 64 * 1024];
            loop {
                client.write_all(&zeros).await?;
            }
        }
        _ => {}
    }
    let Some(upstream) = upstream else {
        return client.write_all(&reply(404, &[], b"no upstream")).await;
    };
    let mut server = TcpStream::connect(upstream).await?;
    // The request head with `Host` and `Connection` rewritten: one request per connection.
    let mut head = String::new();
    for (i, l) in text.lines().enumerate() {
        let lower = l.to_ascii_lowercase();
        if i > 0 && (lower.starts_with("host:") || lower.starts_with("connection:")) {
            continue;
        }
        if l.is_empty() {
            continue;
        }
        head.push_str(l);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
    server.write_all(head.as_bytes()).await?;
    server.write_all(&request.rest).await?;
    if let Some(length) = request
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        let left = length.saturating_sub(request.rest.len() as u64);
        tokio::io::copy(&mut (&mut client.stream).take(left), &mut server).await?;
    }
    let Some(response) = read_head(&mut server).await? else {
        return Ok(());
    };
    client.write_all(&response.bytes).await?;
    let mut body = response.rest.clone();
    match fault {
        Some(Fault::Corrupt) => {
            let length = response
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(0);
            server.read_to_end(&mut body).await?;
            if let Some(b) = body.get_mut(length / 2) {
                *b ^= 0xff;
            }
            client.write_all(&body).await
        }
        Some(Fault::Trickle(interval)) => {
            server.read_to_end(&mut body).await?;
            for b in body {
                client.write_all(&[b]).await?;
                tokio::time::sleep(interval).await;
            }
            Ok(())
        }
        Some(Fault::CutAfter(n)) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            server.read_to_end(&mut body).await?;
            body.truncate(n);
            client.write_all(&body).await?;
            client.stream.shutdown().await
        }
        other => {
            let rate = match other {
                Some(Fault::Slow(rate)) => Some(rate.max(1)),
                _ => None,
            };
            let started = tokio::time::Instant::now();
            let mut written = body.len() as u64;
            client.write_all(&body).await?;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = server.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                client.write_all(&buf[..n]).await?;
                written += n as u64;
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64(written as f64 / rate as f64);
                    tokio::time::sleep_until(started + due).await;
                }
            }
        }
    }
}
