//! A small HTTP/1.1 client of the apps' `GET /who` (`{"pid", "peer", "peer_port"}`): one
//! request on a new connection, keep-alive latencies side by side, and a light load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// What `/who` answered.
#[derive(Debug, Clone)]
pub struct Who {
    /// The process that served the request.
    pub pid: u32,
    /// The client address the framework reports.
    pub peer: Option<String>,
    pub peer_port: Option<u64>,
    /// The client's own port.
    pub local_port: u16,
}

impl Who {
    /// Whether the server saw this client: 127.0.0.1 and the client's own port.
    pub fn peer_is_right(&self) -> bool {
        self.peer.as_deref() == Some("127.0.0.1") && self.peer_port == Some(u64::from(self.local_port))
    }
}

/// One connection, kept alive while the server allows it (reconnecting when it does not).
pub struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

/// A response: status, body, whether the server closes the connection after it.
type Response = (u16, Vec<u8>, bool);

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        assert!(addr.ip().is_loopback(), "tests only talk to 127.0.0.0/8");
        Conn { addr, stream: None }
    }

    /// `GET path` (bounded by `limit`), with `Connection: close` if `close`; the local port too.
    pub async fn get(&mut self, path: &str, close: bool, limit: Duration) -> std::io::Result<(Response, u16)> {
        let answer = tokio::time::timeout(limit, self.exchange(path, close)).await;
        let answer = answer.unwrap_or_else(|_| Err(std::io::Error::other("timed out")));
        if !matches!(answer, Ok(((_, _, false), _))) {
            self.stream = None;
        }
        answer
    }

    async fn exchange(&mut self, path: &str, close: bool) -> std::io::Result<(Response, u16)> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(BufReader::new(TcpStream::connect(self.addr).await?)),
        };
        let local_port = stream.get_ref().local_addr()?.port();
        let connection = if close { "Connection: close\r\n" } else { "" };
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}\r\n");
        stream.get_mut().write_all(request.as_bytes()).await?;
        let eof = |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed {what}"));
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(eof("before the response"));
        }
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (mut length, mut chunked, mut closes) = (None, false, close || line.starts_with("HTTP/1.0"));
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Err(eof("in the headers"));
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((&header, ""));
            match (name, value.trim()) {
                ("content-length", v) => length = v.parse().ok(),
                ("transfer-encoding", v) => chunked = v.contains("chunked"),
                ("connection", v) => closes = v.contains("close") || (closes && !v.contains("keep-alive")),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            stream.read_exact(&mut body).await?;
        } else {
            stream.read_to_end(&mut body).await?;
            closes = true;
        }
        Ok(((status, body, closes), local_port))
    }
}

/// `GET /who` on a new connection, bounded by `limit`.
pub async fn who(addr: SocketAddr, limit: Duration) -> std::io::Result<Who> {
    let ((status, body, _), local_port) = Conn::new(addr).get("/who", true, limit).await?;
    if status != 200 {
        return Err(std::io::Error::other(format!("HTTP {status}")));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
    let pid = json["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    Ok(Who {
        pid: pid.ok_or_else(|| std::io::Error::other(format!("no pid in {json}")))?,
        peer: json["peer"].as_str().map(String::from),
        peer_port: json["peer_port"].as_u64(),
        local_port,
    })
}

/// The pids answering `n` requests on new connections (each bounded by 2 s, all by `limit`).
pub async fn pids(addr: SocketAddr, n: usize, limit: Duration) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    for _ in 0..n {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        if let Ok(w) = who(addr, Duration::from_secs(2)).await {
            out.push(w.pid);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Keep-alive latency, side by side: the median (ms) of `n` `GET /who` on one persistent
/// connection to each address, after `warm` untimed ones, the requests alternating between the
/// addresses (the order reversed every round), so that both see the same machine over the same
/// milliseconds; and how many timed responses closed their connection (gunicorn's sync worker
/// closes every one: its next request is on a new connection).
pub async fn keep_alive(addrs: &[SocketAddr], n: usize, warm: usize) -> std::io::Result<(Vec<f64>, Vec<usize>)> {
    let mut conns: Vec<Conn> = addrs.iter().map(|&a| Conn::new(a)).collect();
    let mut times = vec![Vec::new(); addrs.len()];
    let mut closed = vec![0; addrs.len()];
    for conn in &mut conns {
        for _ in 0..warm {
            conn.get("/who", false, Duration::from_secs(5)).await?;
        }
    }
    for round in 0..n {
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for j in order {
            let started = std::time::Instant::now();
            let ((status, _, closes), _) = conns[j].get("/who", false, Duration::from_secs(5)).await?;
            times[j].push(started.elapsed().as_secs_f64() * 1e3);
            if status != 200 {
                return Err(std::io::Error::other(format!("{}: HTTP {status}", addrs[j])));
            }
            closed[j] += usize::from(closes);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        if v.len() % 2 == 0 { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] }
    };
    Ok((times.into_iter().map(median).collect(), closed))
}

/// One `GET /who` every ~20 ms, a new connection each, until cancelled (at most 30 s). A
/// request may wait up to 20 s: during a rolling reload, one that lands on a slot whose new
/// worker is not serving yet (ready by a delay too short for a loaded machine) waits in the
/// socket's queue; that is slow, not lost.
pub struct LightLoad {
    pub stop: CancellationToken,
    pub ok: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl LightLoad {
    pub fn start(addr: SocketAddr) -> LightLoad {
        let (stop, ok) = (CancellationToken::new(), Arc::new(AtomicU64::new(0)));
        let (token, count) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut failed = BTreeMap::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !token.is_cancelled() && tokio::time::Instant::now() < deadline {
                match who(addr, Duration::from_secs(20)).await {
                    Ok(_) => _ = count.fetch_add(1, Ordering::Relaxed),
                    Err(e) => *failed.entry(e.to_string()).or_default() += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failed
        });
        LightLoad { stop, ok, task }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the load: the requests that succeeded, and the failures by error.
    pub async fn finish(self) -> (u64, BTreeMap<String, u64>) {
        self.stop.cancel();
        let failed = self.task.await.expect("load task");
        (self.ok.load(Ordering::Relaxed), failed)
    }
}
