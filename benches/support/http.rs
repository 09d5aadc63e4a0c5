//! A minimal blocking HTTP/1.1 client of 127.0.0.1: `GET`, one request per connection or
//! several on a keep-alive one, every step bounded by a timeout. Errors keep their kind (a
//! timeout is `WouldBlock` or `TimedOut`, see [`is_timeout`]) and say which step failed.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// An answer.
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The server closes the connection after it (`Connection: close`, or a body that runs to
    /// EOF).
    pub close: bool,
}

/// An open connection to 127.0.0.1:`port`.
pub struct Connection {
    stream: BufReader<TcpStream>,
    port: u16,
}

impl Connection {
    /// Connects, with `timeout` for the connect and for every later read and write.
    pub fn open(port: u16, timeout: Duration) -> io::Result<Connection> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(step("connect"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream: BufReader::new(stream), port })
    }

    /// `GET path`, keeping the connection open for the next request unless the answer says
    /// it closes (then the connection is done).
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request(path, false)
    }

    /// `GET path` with `Connection: close`: the server answers and closes the connection (so
    /// the TIME_WAIT is on its side, not on this client's ports).
    pub fn get_close(mut self, path: &str) -> io::Result<Response> {
        self.request(path, true)
    }

    fn request(&mut self, path: &str, close: bool) -> io::Result<Response> {
        let connection = if close { "Connection: close\r\n" } else { "" };
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{connection}\r\n", self.port);
        self.stream.get_mut().write_all(request.as_bytes()).map_err(step("write"))?;
        self.read_response().map_err(step("read"))
    }

    /// The status line, the headers, and the body (by `Content-Length`, else to EOF).
    fn read_response(&mut self) -> io::Result<Response> {
        let (mut status, mut length, mut close) = (None, None, false);
        let mut line = String::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a complete answer"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = Some(parse_status_line(line)?);
            } else if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.trim().eq_ignore_ascii_case("connection") {
                    close = value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                self.stream.read_exact(&mut body)?;
            }
            None => {
                self.stream.read_to_end(&mut body)?;
                close = true;
            }
        }
        let status = status.ok_or_else(|| io::Error::other("no status line"))?;
        Ok(Response { status, body: String::from_utf8_lossy(&body).into_owned(), close })
    }
}

/// One `GET path` to 127.0.0.1:`port` on a fresh connection (`Connection: close`).
pub fn get(port: u16, path: &str, timeout: Duration) -> io::Result<Response> {
    Connection::open(port, timeout)?.request(path, true)
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> io::Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))
}

/// Prefixes an error with the step that failed, keeping its kind.
fn step(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}
