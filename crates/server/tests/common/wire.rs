//! A raw PostgreSQL wire-protocol client for tests that need control over message
//! boundaries (what a driver hides): which messages are sent before a Sync, and when the
//! server's replies arrive.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Wire {
    stream: TcpStream,
}

/// One backend message: its type byte and body.
#[derive(Debug)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'P', &b)
}

/// Bind with text-format parameters (`None` is NULL) and text results.
pub fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &b)
}

pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    cstr(&mut b, portal);
    frame(b'D', &b)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    frame(b'E', &b)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    frame(b'Q', &b)
}

pub fn copy_data(data: &[u8]) -> Vec<u8> {
    frame(b'd', data)
}

pub fn copy_done() -> Vec<u8> {
    frame(b'c', &[])
}

impl Wire {
    /// Connects and completes startup (user root, the given database).
    pub fn connect(addr: &str, database: &str) -> Wire {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut w = Wire { stream };
        let mut b = Vec::new();
        b.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [("user", "root"), ("database", database)] {
            cstr(&mut b, k);
            cstr(&mut b, v);
        }
        b.push(0);
        let mut msg = ((b.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&b);
        w.send(&msg);
        w.until(b'Z', Duration::from_secs(10));
        w
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next message, or `None` if none starts within `wait`.
    pub fn recv(&mut self, wait: Duration) -> Option<Msg> {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut head = [0u8; 5];
        match self.stream.read_exact(&mut head[..1]) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("read: {e}"),
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        self.stream.read_exact(&mut head[1..]).expect("read length");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body).expect("read body");
        Some(Msg { tag: head[0], body })
    }

    /// Reads messages until one of type `tag` (inclusive); returns their types in order.
    pub fn until(&mut self, tag: u8, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        let mut tags = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .recv(left.max(Duration::from_millis(1)))
                .unwrap_or_else(|| {
                    let last = &tags[tags.len().saturating_sub(8)..];
                    let last = String::from_utf8_lossy(last);
                    panic!(
                        "no {:?} within {wait:?}; {} messages, last {last:?}",
                        tag as char,
                        tags.len()
                    )
                });
            tags.push(m.tag);
            if m.tag == tag {
                return tags;
            }
        }
    }
}
